"""The runner and the run record: a task's `RunRecord` becomes the run's files and fragment, from rank 0 only."""

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
from hw.errors import Interrupted
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
    fragment = (tmp_path / "reports" / "fragments" / "tang-tang.md").read_text(encoding="utf-8")
    assert "\n- **Data:** tiny:poems — 8 train / 4 test examples\n" in fragment
    assert f"**time:** {written.wall_seconds} s" in fragment
    assert "| 床前明月光 | 疑是地上霜 |" in fragment and "> **Note:** a note" in fragment


def test_only_the_main_process_writes_the_record_and_the_fragment(
    fake_task: FakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
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


def test_the_command_that_continues_adds_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["hw", "qa", "--set", "train.learning_rate=3e-5", "--resume"])
    assert continue_command(Path("runs/qa/my run")) == (
        "hw qa --set train.learning_rate=3e-5 --resume --output-dir 'runs/qa/my run'"
    )
    monkeypatch.setattr(sys, "argv", ["hw", "qa", "--output-dir=runs/x"])
    assert continue_command(Path("runs/x")) == "hw qa --output-dir=runs/x --resume"


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
