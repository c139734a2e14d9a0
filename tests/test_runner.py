"""The runner and the run record: a task's `RunRecord` becomes the run's files and fragment, from rank 0 only."""

import dataclasses
import json
import os
import signal
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hw import interrupts, runs
from hw.config import RunOptions, TrainConfig
from hw.errors import HwError, Interrupted
from hw.interrupts import continue_command
from hw.record import RunRecord
from hw.runner import run_homework
from tests.invoking import one_line_error

STATE = {"log_history": [{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.5}], "global_step": 2}
RECORD = RunRecord(
    final={"accuracy": 0.75},
    epochs=[{"epoch": 1.0, "step": 2, "training_loss": 2.0, "validation_loss": 1.5, "accuracy": 0.75}],
    weights="fine-tuned in this run",
    dataset="tiny:poems",
    data={"train": 8, "test": 4},
    model={"trainable_parameters": 10, "total_parameters": 100},
    tables=[{"title": "Extra", "columns": ["a", "b"], "rows": [[1, "x"]]}],
    notes=["a note"],
    samples=[{"input": "床前明月光", "prediction": "疑是地上霜"}],
    trainer_state=STATE,
)


def test_a_record_writes_metrics_samples_and_trainer_state_and_reads_back(tmp_path: Path) -> None:
    RECORD.write(tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics) == [
        "final", "epochs", "weights", "dataset", "data", "model", "tables", "notes", "wall_seconds"
    ]  # fmt: skip
    assert runs.read_jsonl(tmp_path / "samples.jsonl") == RECORD.samples
    state_text = (tmp_path / "trainer_state.json").read_text(encoding="utf-8")
    assert state_text == json.dumps(STATE, indent=2, sort_keys=True) + "\n"  # as the Trainer writes it
    assert RunRecord.read(tmp_path) == RECORD


def test_a_record_without_samples_or_training_writes_only_metrics(tmp_path: Path) -> None:
    RunRecord(final={"f1": 1.0}, weights="base", dataset="squad", data={"eval": 1}).write(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]


def test_a_record_is_written_by_the_main_process_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    RECORD.write(tmp_path)
    assert list(tmp_path.iterdir()) == []


@dataclass(frozen=True)
class FakeConfig:
    """The two groups the runner reads of every homework's config."""

    run: RunOptions
    train: TrainConfig = field(default_factory=TrainConfig)


@pytest.fixture
def fake_task(monkeypatch: pytest.MonkeyPatch) -> FakeConfig:
    """`hw.tasks.tang` replaced by a task that returns `RECORD` at once (no model, no data)."""
    task = types.ModuleType("hw.tasks.tang")
    task.run = lambda cfg, run_dir: RECORD
    monkeypatch.setitem(sys.modules, "hw.tasks.tang", task)
    return FakeConfig(run=RunOptions(homework="tang", variant="tang"))


def test_the_runner_writes_the_record_with_its_wall_time_and_the_fragment(
    fake_task: FakeConfig, tmp_path: Path
) -> None:
    run_dir = run_homework(fake_task, output_dir=tmp_path / "run", reports_dir=tmp_path / "reports")
    assert {"config.yaml", "env.json", "run.log", "metrics.json", "samples.jsonl", "trainer_state.json"} <= {
        path.name for path in run_dir.iterdir()
    }
    written = RunRecord.read(run_dir)
    assert written.wall_seconds is not None and written.wall_seconds >= 0
    assert {**vars(written), "wall_seconds": None} == vars(RECORD)
    fragment = (tmp_path / "reports" / "fragments" / "tang" / "run.md").read_text(encoding="utf-8")
    assert "\n- **Data:** tiny:poems — 8 train / 4 test examples\n" in fragment
    assert f"**time:** {written.wall_seconds} s" in fragment
    assert "| 床前明月光 | 疑是地上霜 |" in fragment and "> **Note:** a note" in fragment


def test_only_the_main_process_writes_the_record_and_the_fragment(
    fake_task: FakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    # The run directory the main process chose, as `runs.agreed` hands it to the others under a launcher.
    monkeypatch.setattr(runs, "agreed", lambda mine: (tmp_path / "run", tmp_path / "run"))
    run_dir = run_homework(fake_task, output_dir=tmp_path / "run", reports_dir=tmp_path / "reports")
    assert list(run_dir.iterdir()) == []
    assert not (tmp_path / "reports").exists()


def test_a_checkpoint_without_eval_only_is_refused_by_the_config_so_doctor_refuses_it_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert RunOptions(homework="yelp", variant="yelp", checkpoint="x", eval_only=True).problems() == []
    monkeypatch.chdir(tmp_path)
    expected = (
        "invalid configuration: run.checkpoint: --checkpoint is only read with --eval-only; "
        "to keep training a saved model, use --set model.name_or_path=DIR"
    )
    assert one_line_error(["yelp", "--tiny", "--checkpoint", "x"]) == expected
    assert one_line_error(["doctor", "yelp", "--tiny", "--checkpoint", "x"]) == expected


def test_every_tiny_asset_a_config_names_is_built_before_the_task_lists_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hw import runner
    from hw.tiny import assets

    built = []
    monkeypatch.setattr(assets, "materialize", built.append)  # the walk is under test, not the builders
    settings = {
        "model": {"name_or_path": "tiny:whisper"},
        "data": {"dataset": "tiny:atcosim", "eval_sets": [{"name": "atco2", "dataset": "tiny:atco2"}]},
        "run": {"homework": "atc"},
    }
    runner.build_tiny_assets(settings)
    assert built == ["tiny:whisper", "tiny:atcosim", "tiny:atco2"]


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def test_the_manifest_is_written_first_and_says_finished_after_the_fragment(
    fake_task: FakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setattr(
        sys.modules["hw.tasks.tang"], "run", lambda cfg, run_dir: seen.append(_manifest(run_dir)) or RECORD
    )
    run_dir = run_homework(fake_task, output_dir=tmp_path / "run", reports_dir=tmp_path / "reports")
    (during,) = seen
    assert during["status"] == "running" and during["finished"] is None
    after = _manifest(run_dir)
    assert {key: after[key] for key in ("homework", "variant", "tiny", "eval_only", "scored", "status")} == {
        "homework": "tang", "variant": "tang", "tiny": False, "eval_only": False, "scored": None, "status": "finished"
    }  # fmt: skip
    assert after["training"] == {"train": dataclasses.asdict(TrainConfig())}  # `run` defines no training
    assert after["created"] == during["created"] and after["finished"] >= after["created"]
    assert len(after["config_hash"]) == 16 and after["hw_version"]


def test_a_task_that_raises_leaves_a_failed_run_that_resume_continues(
    fake_task: FakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(cfg, run_dir):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sys.modules["hw.tasks.tang"], "run", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_homework(fake_task, runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports")
    (crashed,) = (tmp_path / "runs" / "tang").iterdir()
    assert _manifest(crashed)["status"] == "failed"
    monkeypatch.setattr(sys.modules["hw.tasks.tang"], "run", lambda cfg, run_dir: RECORD)
    resumed = dataclasses.replace(fake_task, run=dataclasses.replace(fake_task.run, resume=True))
    assert run_homework(resumed, runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports") == crashed
    assert _manifest(crashed)["status"] == "finished"


def _resume(cfg: FakeConfig, tmp_path: Path, **overrides) -> str:
    """The one-line refusal of resuming `cfg` with these `RunOptions` changes (`output_dir` apart)."""
    output_dir = overrides.pop("output_dir", None)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, resume=True, **overrides))
    with pytest.raises(HwError) as refused:
        run_homework(
            cfg, output_dir=output_dir, runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports"
        )
    return str(refused.value)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_resume_refuses_every_run_it_cannot_continue_and_changes_nothing(
    fake_task: FakeConfig, tmp_path: Path
) -> None:
    finished = run_homework(fake_task, runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports")
    before = _snapshot(tmp_path)
    assert _resume(fake_task, tmp_path) == (
        f"run {str(finished)!r} is finished; nothing to resume (start a new run, or --eval-only --checkpoint "
        f"{finished})"
    )
    assert _resume(fake_task, tmp_path, output_dir=finished).startswith(f"run {str(finished)!r} is finished")
    assert _resume(fake_task, tmp_path, output_dir=tmp_path / "gone") == (
        f"--resume --output-dir {str(tmp_path / 'gone')!r}: no such run directory; --resume only continues an "
        "existing run (drop --resume to start a new one there)"
    )
    assert _resume(fake_task, tmp_path, output_dir=finished, variant="tang-breeze", tiny=True) == (
        f"run {str(finished)!r} is a tang (variant tang) run, not tang (variant tang-breeze, tiny); "
        "resume it with hw tang and its variant, or give --output-dir a run of this one"
    )
    assert _snapshot(tmp_path) == before


def test_resume_continues_the_newest_unfinished_run_with_its_own_training_settings(
    fake_task: FakeConfig, tmp_path: Path
) -> None:
    runs_root, reports = tmp_path / "runs", tmp_path / "reports"
    unfinished = runs_root / "tang" / "tang-20250101-000000"
    run_homework(fake_task, output_dir=unfinished, reports_dir=reports)
    (unfinished / "run.json").write_text(json.dumps({**_manifest(unfinished), "status": "running"}))
    run_homework(fake_task, runs_root=runs_root, reports_dir=reports)  # a newer run, finished
    reseeded = dataclasses.replace(fake_task, train=TrainConfig(seed=7, learning_rate=1e-4))
    assert _resume(reseeded, tmp_path) == (
        f"run {str(unfinished)!r} was trained with other settings (train.learning_rate: 5e-05 in the run, "
        "0.0001 now; train.seed: 42 in the run, 7 now); resume it with the same options, or start a new run"
    )
    resumed = dataclasses.replace(fake_task, run=dataclasses.replace(fake_task.run, resume=True))
    assert run_homework(resumed, runs_root=runs_root, reports_dir=reports) == unfinished
    assert _manifest(unfinished)["status"] == "finished"


def test_runs_from_before_the_manifest_count_as_finished_by_their_metrics(
    fake_task: FakeConfig, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text("run: {}")
    resumed = dataclasses.replace(fake_task, run=dataclasses.replace(fake_task.run, resume=True))
    assert run_homework(resumed, output_dir=old, reports_dir=tmp_path / "reports") == old  # unfinished
    (old / "run.json").unlink()
    assert "is finished; nothing to resume" in _resume(fake_task, tmp_path, output_dir=old)


def test_a_new_run_never_writes_over_an_unfinished_training_run_or_the_weights_it_scores(
    fake_task: FakeConfig, tmp_path: Path
) -> None:
    crashed = tmp_path / "crashed"
    run_homework(fake_task, output_dir=crashed, reports_dir=tmp_path / "reports")
    (crashed / "run.json").write_text(json.dumps({**_manifest(crashed), "status": "failed"}))
    before = _snapshot(tmp_path)
    with pytest.raises(
        HwError, match=r"holds an unfinished tang \(variant tang\) run; continue it with --resume"
    ):
        run_homework(fake_task, output_dir=crashed, reports_dir=tmp_path / "reports")
    scoring = dataclasses.replace(
        fake_task, run=dataclasses.replace(fake_task.run, eval_only=True, checkpoint=str(crashed / "model"))
    )
    with pytest.raises(
        HwError, match=r"holds the weights --checkpoint scores; an eval-only run writes a new"
    ):
        run_homework(scoring, output_dir=crashed, reports_dir=tmp_path / "reports")
    assert _snapshot(tmp_path) == before
    scored = run_homework(scoring, runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports")
    assert scored.parent == tmp_path / "runs" / "tang" and _manifest(scored)["scored"] == str(
        crashed / "model"
    )
    assert {path: data for path, data in _snapshot(tmp_path).items() if path.startswith(str(crashed))} == {
        path: data for path, data in before.items() if path.startswith(str(crashed))
    }


def test_eval_only_with_resume_is_refused_by_the_config_so_doctor_refuses_it_too() -> None:
    options = RunOptions(homework="yelp", variant="yelp", eval_only=True, resume=True)
    assert options.problems() == [
        "resume: --eval-only scores weights in a new run; drop --resume, pass --checkpoint RUN"
    ]


def test_an_unexpected_error_leaves_its_traceback_in_run_log(
    fake_task: FakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(cfg, run_dir):
        raise RuntimeError("a bug in hw")

    monkeypatch.setattr(sys.modules["hw.tasks.tang"], "run", crash)
    with pytest.raises(RuntimeError):
        run_homework(fake_task, output_dir=tmp_path / "run", reports_dir=tmp_path / "reports")
    log = (tmp_path / "run" / "run.log").read_text(encoding="utf-8")
    assert "unexpected error:\nTraceback (most recent call last):\n" in log
    assert log.endswith('raise RuntimeError("a bug in hw")\nRuntimeError: a bug in hw\n')


@pytest.mark.parametrize(
    ("signum", "eval_only", "continue_with"),
    [
        (signal.SIGTERM, False, "hw tang --tiny --resume --output-dir {run}"),
        (signal.SIGINT, True, "hw tang --tiny"),  # an evaluation is not resumed: it starts again
    ],
)
def test_a_signal_outside_training_stops_at_once_and_keeps_the_run_to_continue(
    signum: int, eval_only: bool, continue_with: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preprocessing, say: no checkpoint yet, and still the run directory stays for the command that continues."""
    task = types.ModuleType("hw.tasks.tang")
    task.run = lambda cfg, run_dir: os.kill(os.getpid(), signum) or time.sleep(30)
    monkeypatch.setitem(sys.modules, "hw.tasks.tang", task)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/hw", "tang", "--tiny"])
    cfg = FakeConfig(run=RunOptions(homework="tang", variant="tang", eval_only=eval_only, checkpoint="x"))
    run = tmp_path / "runs" / "run"
    started = time.monotonic()
    with pytest.raises(Interrupted) as raised:
        run_homework(cfg, output_dir=run, reports_dir=tmp_path / "reports")
    assert time.monotonic() - started < 20
    assert raised.value.exit_code == 128 + signum
    assert str(raised.value) == "interrupted; continue with: " + continue_with.format(run=run)
    assert (run / "config.yaml").is_file() and (run / "run.log").is_file()
    assert signal.getsignal(signum) is not interrupts._on_signal


def test_a_signal_while_the_record_is_written_names_the_command_that_continues(
    fake_task: FakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the task, before the fragment: the same one line as in training, and no half-written record."""
    written = RunRecord.write

    def write_then_signal(record: RunRecord, run_dir: Path) -> None:
        written(record, run_dir)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RunRecord, "write", write_then_signal)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/hw", "tang", "--tiny"])
    run = tmp_path / "run"
    with pytest.raises(Interrupted) as raised:
        run_homework(fake_task, output_dir=run, reports_dir=tmp_path / "reports")
    assert str(raised.value) == f"interrupted; continue with: hw tang --tiny --resume --output-dir {run}"
    assert raised.value.exit_code == 143
    assert not (tmp_path / "reports").exists()
    assert signal.getsignal(signal.SIGTERM) is not interrupts._on_signal


def test_the_command_that_continues_adds_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["hw", "qa", "--set", "train.learning_rate=3e-5", "--resume"])
    assert continue_command(Path("runs/qa/my run")) == (
        "hw qa --set train.learning_rate=3e-5 --resume --output-dir 'runs/qa/my run'"
    )
    monkeypatch.setattr(sys, "argv", ["hw", "qa", "--output-dir=runs/x"])
    assert continue_command(Path("runs/x")) == "hw qa --output-dir=runs/x --resume"
    monkeypatch.setattr(
        sys, "argv", ["hw", "atc", "--eval-only"]
    )  # reads its cached stages back, no --resume
    assert continue_command(Path("runs/y"), resume=False) == "hw atc --eval-only --output-dir runs/y"


def test_a_second_signal_exits_at_once(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    def exit_now(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_now)
    monkeypatch.setattr(interrupts._state, "training", True)
    monkeypatch.setattr(interrupts._state, "signum", None)
    interrupts._on_signal(signal.SIGINT, None)
    assert interrupts._state.signum == signal.SIGINT  # training goes on to the step's end
    with pytest.raises(SystemExit) as exited:
        interrupts._on_signal(signal.SIGINT, None)
    assert exited.value.code == 130
    assert capfd.readouterr().err.endswith("\nhw: interrupted again: exiting now, without saving\n")


def test_a_symlinked_run_log_is_replaced_and_its_target_never_written(tmp_path: Path) -> None:
    """`run.log` is appended to: through a link it wrote wherever the link pointed (someone else's file)."""
    import logging

    from hw.runner import logging_to

    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not hw's\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.log").symlink_to(elsewhere)
    with logging_to(run_dir / "run.log"):
        logging.getLogger("hw.test").info("into the run's own log")
    assert elsewhere.read_text() == "not hw's\n"
    assert not (run_dir / "run.log").is_symlink()
    text = (run_dir / "run.log").read_text()
    assert "was a symbolic link (to " in text and "into the run's own log" in text
