"""A full disk, met for real on a small tmpfs: one line and exit 2, nothing half-written kept, resume works."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hw import runs, weight_checks
from hw.errors import HwError
from tests.invoking import invoke, one_line_error


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2.2 MB tmpfs: room for a tiny yelp run's first checkpoint (1.5 MB), not for its second."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2200k", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.slow
def test_a_checkpoint_that_fills_the_disk_is_one_line_and_the_run_resumes_once_space_is_freed(
    small_disk: Path, tmp_path: Path
) -> None:
    run_dir = small_disk / "run"
    command = ["yelp", "--tiny", "--output-dir", str(run_dir), "--reports-dir", str(tmp_path / "reports")]
    message = one_line_error(command)
    # A torch.save that ran out of room said "unexpected pos 83264 vs 83152" with a traceback, then the manifest
    # update's own failure replaced it.
    assert message.startswith(f"cannot write '{run_dir}' (No space left on device;")
    assert "MB free); free at least" in message and "--output-dir" in message
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    assert checkpoints, "the first checkpoint fitted"
    for checkpoint in checkpoints:  # the half-saved one is gone: only complete ones stay
        assert json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        assert weight_checks.torn_file(checkpoint, (".safetensors", ".pt", ".pth", ".bin")) is None
    assert not list(run_dir.rglob("*.partial")) and not (run_dir / "metrics.json").exists()
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["status"] == "failed"

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    invoke([*command, "--resume"])
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["status"] == "finished"
    assert json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["final"]["accuracy"] > 0.2


def test_an_atomic_write_on_a_full_disk_is_one_line_and_leaves_no_partial_file(small_disk: Path) -> None:
    """Every file hw writes itself (manifest, metrics, fragment, summary) goes through `runs.write_bytes`."""
    with (small_disk / "filler").open("wb") as filler, pytest.raises(OSError):
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()
    summary = small_disk / "reports" / "summary.md"
    with pytest.raises(HwError) as raised:
        runs.write_text(summary, "x" * 100_000)
    assert str(raised.value).startswith(f"cannot write '{summary}' (No space left on device; 0.0 MB free)")
    assert not summary.exists() and not list(small_disk.rglob("*.partial"))
