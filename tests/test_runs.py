"""Run directories: atomic writes fail as one user error and leave no trace, failed runs leave no folder,
and which process writes (`hw.runs` outside a real distributed launch).
"""

import contextlib
import errno
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process umask set to `mask` for the block."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    monkeypatch.setattr(runs, "os", FullDisk())
    with pytest.raises(
        HwError,
        match=r"cannot write '.*metrics\.json' \(No space left on device; [\d.]+ MB free\); free space",
    ):
        runs.write_json(target, {"new": 1})
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]
    assert target.read_text() == "old"


def test_a_folder_in_place_of_the_parent_is_one_user_error(tmp_path: Path) -> None:
    (tmp_path / "reports").write_text("a file where a folder should be")
    with pytest.raises(HwError, match=r"cannot write '.*reports/summary\.md' \(File exists\)"):
        runs.write_text(tmp_path / "reports" / "summary.md", "# summary")


def test_a_folder_written_after_training_is_checked_before_it_and_nothing_is_created(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where a folder should be")
    with pytest.raises(
        HwError,
        match=r"^cannot write to report folder '.*/taken/reports/fragments' \(Not a directory\); "
        r"choose a writable --reports-dir$",
    ):
        runs.require_writable(tmp_path / "taken" / "reports" / "fragments", "report folder", "--reports-dir")
    runs.require_writable(tmp_path / "new" / "reports" / "fragments", "report folder", "--reports-dir")
    runs.require_writable(tmp_path, "report folder", "--reports-dir")
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]


def _fail(directory: Path, error: Exception, checkpoint: bool = False) -> None:
    with pytest.raises(type(error)), runs.removed_on_user_error(directory, runs.topmost_missing(directory)):
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


def test_only_the_main_process_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    runs.write_json(tmp_path / "metrics.json", {"final": {}})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    runs.write_json(tmp_path / "metrics.json", {"final": {}})
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_one_process_does_all_the_work_in_order_and_agrees_with_itself() -> None:
    assert runs.world_size() == 1 and runs.is_main_process()
    assert runs.spread(lambda batch: [text.upper() for text in batch], [["a", "b"], ["c"]]) == [
        ["A", "B"],
        ["C"],
    ]
    assert runs.agreed("yelp-20261124-130734") == "yelp-20261124-130734"
    with runs.main_process_first():
        pass


def test_alone_hides_the_launcher_and_gives_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    launched = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    for name, value in launched.items():
        monkeypatch.setenv(name, value)
    with runs.alone():
        assert not set(launched) & set(os.environ)
        assert runs.world_size() == 1
    assert {name: os.environ[name] for name in launched} == launched


def test_a_resumed_run_loses_the_unfinished_writes_of_the_killed_one(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / ".metrics.json.x1y2.partial").write_text('{"final": ')
    (tmp_path / "checkpoints" / ".trainer_state.json.a.partial").write_text("{")
    (tmp_path / "samples.jsonl").write_text("{}\n")
    runs.prepare(tmp_path)
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == [
        "checkpoints",
        "samples.jsonl",
    ]


def test_a_resumed_run_keeps_the_folder_of_an_unfinished_stage(tmp_path: Path) -> None:
    # hw.stages builds a stage in `.<name>-<key>.partial/`; its checkpoints are what `--resume` continues from.
    stage = tmp_path / "stages" / ".asr_train-0123456789abcdef.partial"
    (stage / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (stage / "checkpoints" / "checkpoint-5" / "model.safetensors").write_text("weights")
    (tmp_path / ".x.partial").write_text("half")
    runs.prepare(tmp_path)
    assert sorted(str(path.relative_to(tmp_path / "stages")) for path in stage.parent.rglob("*")) == [
        ".asr_train-0123456789abcdef.partial",
        ".asr_train-0123456789abcdef.partial/checkpoints",
        ".asr_train-0123456789abcdef.partial/checkpoints/checkpoint-5",
        ".asr_train-0123456789abcdef.partial/checkpoints/checkpoint-5/model.safetensors",
    ]
    assert not (tmp_path / ".x.partial").exists()


def test_an_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    runs.write_text(tmp_path / "results.txt", "1. 秦川雄帝宅\n")
    assert [path.name for path in tmp_path.iterdir()] == ["results.txt"]


def test_an_atomic_write_syncs_the_file_and_then_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[bool, int]] = []  # (a folder?, the file's size when synced)

    def fsync(descriptor: int) -> None:
        found = os.fstat(descriptor)
        synced.append((stat.S_ISDIR(found.st_mode), 0 if stat.S_ISDIR(found.st_mode) else found.st_size))

    monkeypatch.setattr(os, "fsync", fsync)
    runs.write_bytes(tmp_path / "metrics.json", b"{}")
    assert synced == [(False, 2), (True, 0)]


def test_jsonl_keeps_the_line_breaks_that_only_unicode_counts_inside_its_strings(tmp_path: Path) -> None:
    # str.splitlines() breaks at all of these; json.dumps escapes those below U+0020 (\x0b → \\u000b) but,
    # with ensure_ascii=False, writes U+0085 (NEL, in IMDB reviews), U+2028 and U+2029 raw.
    rows = [
        {"text": "Great movie\x85 loved it", "label": 1},
        {"text": "a\u2028b\u2029c"},
        {"text": "tab\x0bfeed\x0cgroup\x1dfile\x1crecord\x1e"},
    ]
    runs.write_jsonl(tmp_path / "samples.jsonl", rows)
    assert (tmp_path / "samples.jsonl").read_bytes().count(b"\n") == 3
    assert runs.read_jsonl(tmp_path / "samples.jsonl") == rows


def test_a_finished_stage_keeps_the_run_directory_and_the_error_says_how_to_continue(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "atc" / "atc-20260101-000000"
    resume = f"hw atc --resume --output-dir {run_dir}"
    with pytest.raises(HwError) as raised, runs.removed_on_user_error(run_dir, tmp_path / "runs", resume):
        for name in ("asr_train", "transcribe"):
            (run_dir / "stages" / name).mkdir(parents=True)
            (run_dir / "stages" / name / "stage.json").write_text("{}")
            time.sleep(0.01)  # the markers' times give the order the stages finished in
        (run_dir / "stages" / ".correct-0123.partial").mkdir()  # an unfinished stage does not count
        raise HwError("corrector.model.name_or_path: 'x' cannot be loaded")
    assert str(raised.value) == (
        f"corrector.model.name_or_path: 'x' cannot be loaded; finished stage(s) asr_train, transcribe kept in "
        f"{run_dir}: once fixed, continue with: {resume}"
    )
    assert (run_dir / "stages" / "transcribe" / "stage.json").is_file()


def test_a_run_that_wrote_its_record_keeps_its_directory(tmp_path: Path) -> None:
    recorded = tmp_path / "runs" / "yelp" / "eval"
    with pytest.raises(HwError), runs.removed_on_user_error(recorded, tmp_path / "runs"):
        recorded.mkdir(parents=True)
        (recorded / "metrics.json").write_text("{}")
        raise HwError("the report folder filled up")
    assert (recorded / "metrics.json").is_file()


CLAIM = """
import sys, time
from pathlib import Path
from hw.runs import run_directory
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(run_directory("yelp", "yelp", runs_root=Path(sys.argv[1]), tiny=True)[0])
"""


def test_runs_started_in_the_same_second_get_distinct_directories(tmp_path: Path) -> None:
    start = int(time.time()) + 3.2  # all three ask at this moment, well inside one second
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(tmp_path / "runs"), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(3)
    ]
    names = sorted(Path(process.communicate(timeout=60)[0].strip()).name for process in processes)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start))
    assert names == [f"yelp-tiny-{stamp}", f"yelp-tiny-{stamp}-2", f"yelp-tiny-{stamp}-3"]
    assert sorted(path.name for path in (tmp_path / "runs" / "yelp").iterdir()) == names


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, mask: int, expected: int) -> None:
    """A TA or a teammate in the group reads the run (issue 13: mkstemp made every file 0600)."""
    with umask(mask):
        runs.write_text(tmp_path / "results.txt", "text")
        runs.write_json(tmp_path / "metrics.json", {"accuracy": 0.5})
        runs.write_json(tmp_path / "metrics.json", {"accuracy": 0.6})  # a replaced file too
    assert {path.name: mode(path) for path in tmp_path.iterdir()} == {
        "results.txt": expected,
        "metrics.json": expected,
    }


@pytest.mark.parametrize(("mask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_weights_safetensors_wrote_0600_are_opened_to_the_umask(
    tmp_path: Path, mask: int, folder: int, file: int
) -> None:
    import torch
    from safetensors.torch import save_file

    weights, private = tmp_path / "model" / "model.safetensors", tmp_path / "model" / "private"
    with umask(mask):
        weights.parent.mkdir()
        save_file({"weight": torch.zeros(2)}, str(weights))
        private.mkdir(mode=0o700)
        runs.open_to_umask(tmp_path / "model")
    assert (mode(weights.parent), mode(weights), mode(private)) == (folder, file, folder)
    weights.chmod(0o664)
    runs.open_to_umask(tmp_path / "model")
    assert mode(weights) == 0o664 | file  # widened, never narrowed
