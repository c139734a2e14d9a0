"""A run's provenance (its `env.json`): package versions, device, git revision, seed and the models and data it
named."""

import os
import platform
import subprocess
import time
from importlib import metadata
from typing import Any

from hw import runs

_PACKAGES = ("hw", "torch", "transformers", "datasets", "peft", "accelerate", "tokenizers", "bitsandbytes")


def environment(seed: int, sources: dict[str, str]) -> dict[str, Any]:
    """What a reader needs to repeat the run: versions, device, git revision, seed and the data/model ids.

    Deliberately no environment variables: they may hold Hub tokens.
    """
    import torch

    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)",
        "world_size": runs.world_size(),
        "cuda": torch.version.cuda if cuda else None,
        "git_revision": _git_revision(),
        "seed": seed,
        "sources": sources,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _git_revision() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def sources_of(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Every model, dataset, checkpoint and revision named in a config, by dotted key."""
    found = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            found.update(sources_of(value, f"{prefix}{key}."))
        elif key in ("name_or_path", "dataset", "checkpoint", "revision") and value is not None:
            found[f"{prefix}{key}"] = str(value)
    return found
