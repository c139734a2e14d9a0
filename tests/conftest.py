"""Test-wide settings: offline, tiny assets built once per session, real shared data when present."""

import os
from pathlib import Path

import pytest

from tests.shared_data import SHARED_DATA

# Before anything imports huggingface_hub, which reads this once: tests never wait on network retries.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session", autouse=True)
def offline_session(tmp_path_factory: pytest.TempPathFactory):
    """No hub, and every cache in one temporary folder, so tests never touch the user's own caches."""
    import torch

    # The tiny models are too small to gain from a second thread, and lose up to 7x when cores are shared.
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("caches")
    saved = {
        key: os.environ.get(key) for key in ("HW_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_CACHE", "HF_HOME")
    }
    os.environ.update(
        HW_CACHE=str(root / "hw"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_CACHE=str(root / "datasets"),
        HF_HOME=str(root / "hf"),
    )
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def shared_data() -> Path:
    """The real public data beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
