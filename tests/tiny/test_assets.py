"""`tiny:NAME` is built once by `assets.materialize`, then found by `tiny.resolve`, which imports no builder."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hw import sources, speech_sources, tiny
from hw.errors import HwError
from hw.tiny import assets
from tests.test_runs import mode, umask


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
        speech_sources.load_speech_splits("tiny:commonvoice-fr")


@pytest.mark.parametrize(("mask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_a_built_asset_is_readable_as_the_umask_allows(
    tmp_path: Path, mask: int, folder: int, file: int
) -> None:
    from safetensors.torch import save_file
    from torch import zeros

    def build(directory: Path) -> None:  # weights as save_pretrained writes them: safetensors makes them 0600
        save_file({"weight": zeros(2)}, str(directory / "model.safetensors"))
        (directory / "config.json").write_text("{}")

    with umask(mask):
        built = assets.build_once(tmp_path / "model-v1", build)
    assert {path.name: mode(path) for path in [built, *built.iterdir()]} == {
        "model-v1": folder,
        "model.safetensors": file,
        "config.json": file,
    }


def test_a_killed_builds_staging_folder_is_removed_by_the_next_build(tmp_path: Path) -> None:
    stale = tmp_path / ".note-v1-0badc0de"
    (stale / "half").mkdir(parents=True)
    other = tmp_path / ".notes-v1-0badc0de"  # another asset's build, maybe in progress
    other.mkdir()
    assets.build_once(tmp_path / "note-v1", lambda folder: (folder / "a.txt").write_text("a"))
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == [
        ".notes-v1-0badc0de",
        "note-v1",
    ]


# A second process needing the asset the first is building: the first builds `tiny:tang` (the quickest real
# builder) only once the test lets it, so the second arrives mid-build.
_GATED_BUILD = """
import logging, sys, time
from pathlib import Path
from hw.tiny import assets

gate = Path(sys.argv[1])
logging.basicConfig(filename=gate / f"{sys.argv[2]}.log", level=logging.INFO, format="%(message)s")
real = assets._builders()["tang"]

def gated(folder):
    with (gate / "builds").open("a") as builds:
        builds.write(sys.argv[2] + "\\n")
    while not (gate / "release").exists():
        time.sleep(0.05)
    real(folder)

assets._builders = lambda: {"tang": gated}
print(assets.materialize("tiny:tang"))
"""


def _until(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_processes_building_one_asset_build_it_once(tmp_path: Path) -> None:
    environment = {**os.environ, "HW_CACHE": str(tmp_path / "cache")}
    builds = tmp_path / "builds"

    def start(name: str) -> subprocess.Popen:
        command = [sys.executable, "-c", _GATED_BUILD, str(tmp_path), name]
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)

    first = start("first")
    _until(builds.exists)
    second = start("second")
    waiting = tmp_path / "second.log"
    _until(
        lambda: (
            "waiting for another process" in (waiting.read_text() if waiting.exists() else "")
            or (builds.read_text().count("\n") > 1)
        )
    )
    (tmp_path / "release").touch()
    outputs = [process.communicate(timeout=120)[0].strip() for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0]
    assert builds.read_text() == "first\n"  # the second process waited and used the first one's build
    assert outputs == [str(tmp_path / "cache" / "tiny" / f"tang-v{tiny.VERSION}")] * 2
    assert sorted(path.name for path in Path(outputs[0]).iterdir()) == [
        "Tang_testing_data.json",
        "Tang_testing_gt.txt",
        "Tang_training_data.json",
    ]
    assert [path.name for path in Path(outputs[0]).parent.iterdir() if path.is_dir()] == [
        f"tang-v{tiny.VERSION}"
    ]


def test_without_wait_an_asset_another_process_builds_is_left_to_it(tmp_path: Path) -> None:
    import filelock

    target = tmp_path / "note-v1"
    with filelock.FileLock(tmp_path / ".note-v1.lock"):  # another process is building it
        assert (
            assets.build_once(target, lambda folder: (folder / "a.txt").write_text("a"), wait=False) is None
        )
    assert not target.exists()


def test_building_ahead_builds_in_a_second_process_while_this_one_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HW_CACHE", str(tmp_path))
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("building ahead needs two cores")
    with assets.building_ahead(["tiny:tang"]) as log_file:
        pass  # this process builds nothing: leaving the block waits for the other one
    assert tiny.folder("tang").is_dir()
    assert log_file == tiny.cache_root() / "built-ahead.log"
    assert f"built tang-v{tiny.VERSION} in" in log_file.read_text()
    with assets.building_ahead(["tiny:tang"]) as nothing_left:
        assert nothing_left is None  # built already: no second process
