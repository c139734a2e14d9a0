"""`tiny:NAME` is built once by `assets.materialize`, then found by `tiny.resolve`, which imports no builder."""

import subprocess
import sys
from pathlib import Path

import pytest

from hw import sources, tiny
from hw.errors import HwError
from hw.tiny import assets


def test_sources_import_and_resolve_no_tiny_builder() -> None:
    # A fresh interpreter: the builders import speech and training, which import sources.
    code = (
        "import sys\n"
        "from hw import sources\n"
        "try:\n"
        "    sources.load_dataset_dict('tiny:yelp')\n"
        "except Exception:\n"
        "    pass\n"
        "loaded = [name for name in sys.modules if name.startswith('hw.tiny.') or name == 'hw.speech']\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolve_finds_what_materialize_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HW_CACHE", str(tmp_path))
    monkeypatch.setattr(
        assets, "_builders", lambda: {"note": lambda folder: (folder / "a.txt").write_text("a")}
    )
    with pytest.raises(
        HwError, match=r"tiny asset 'tiny:note' is not built .*hw.tiny.assets.materialize\('tiny:note'\)"
    ):
        tiny.resolve("tiny:note")
    built = assets.materialize("tiny:note")
    assert tiny.resolve("tiny:note") == built == str(tiny.folder("note"))
    assert (Path(built) / "a.txt").read_text() == "a"
    assert tiny.resolve("org/model") == "org/model"


def test_a_source_named_by_an_unbuilt_tiny_asset_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HW_CACHE", str(tmp_path))
    with pytest.raises(HwError, match=r"tiny asset 'tiny:whisper' is not built"):
        sources.resolve_model("tiny:whisper")
    with pytest.raises(HwError, match=r"tiny asset 'tiny:commonvoice-fr' is not built"):
        sources.load_speech_splits("tiny:commonvoice-fr")
