"""Run directories: atomic writes fail as one user error and leave no trace; failed runs leave no folder."""

import errno
import os
from pathlib import Path

import pytest

from hw import runs
from hw.errors import HwError


class FullDisk:
    """`os` as `hw.runs` sees it, except that a file opened for writing fails like a full disk."""

    def __getattr__(self, name: str):
        return getattr(os, name)

    @staticmethod
    def fdopen(descriptor: int, *args, **kwargs):
        os.close(descriptor)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    monkeypatch.setattr(runs, "os", FullDisk())
    with pytest.raises(
        HwError, match=r"cannot write '.*metrics\.json' \(No space left on device\); free disk"
    ):
        runs.write_json(target, {"new": 1})
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]
    assert target.read_text() == "old"


def test_a_folder_in_place_of_the_parent_is_one_user_error(tmp_path: Path) -> None:
    (tmp_path / "reports").write_text("a file where a folder should be")
    with pytest.raises(HwError, match=r"cannot write '.*reports/summary\.md' \(File exists\)"):
        runs.write_text(tmp_path / "reports" / "summary.md", "# summary")


def _fail(directory: Path, error: Exception, checkpoint: bool = False) -> None:
    with pytest.raises(type(error)), runs.removed_on_user_error(directory):
        (directory / "checkpoints" / ("checkpoint-10" if checkpoint else "")).mkdir(parents=True)
        (directory / "config.yaml").write_text("run: {}")
        raise error


def test_a_user_error_removes_every_folder_the_run_created(tmp_path: Path) -> None:
    _fail(tmp_path / "runs" / "yelp" / "yelp-20260101-000000", HwError("bad column"))
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_an_older_folder_or_a_bug_keeps_the_run_directory(tmp_path: Path) -> None:
    resumable = tmp_path / "resumable"
    _fail(resumable, HwError("bad data after the first epoch"), checkpoint=True)
    assert (resumable / "checkpoints" / "checkpoint-10").is_dir()
    existing = tmp_path / "mine"
    existing.mkdir()
    _fail(existing, HwError("bad column"))
    assert (existing / "config.yaml").is_file()
    crashed = tmp_path / "crashed"
    _fail(crashed, RuntimeError("a bug: its run.log is worth keeping"))
    assert (crashed / "config.yaml").is_file()
