"""Resume after a crash: a run killed (SIGKILL) after its first checkpoint, or stopped by SIGTERM in the middle of
an epoch, ends, with --resume, as if never killed; SIGTERM at a random moment of any homework leaves every file
whole and a command that finishes the run."""

import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest
import safetensors.torch
import torch

from hw import manifest, report, weight_checks
from hw.training import last_complete_checkpoint, mean_logged_loss, train

REPO = Path(__file__).resolve().parents[1]


def _command(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "hw", *arguments]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _run(arguments: list[str], cwd: Path) -> None:
    result = subprocess.run(
        _command(arguments), cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]


def _popen(arguments: list[str], cwd: Path) -> subprocess.Popen:
    """Start `hw ARGUMENTS` in `cwd`, its stderr captured (the interrupted line is read from it)."""
    return subprocess.Popen(
        _command(arguments),
        cwd=cwd,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signal_after_checkpoint(
    arguments: list[str], cwd: Path, checkpoints: Path, signum: int, name: str | None = None
) -> tuple[str, subprocess.CompletedProcess]:
    """Start a run, send it `signum` as soon as a checkpoint (the one called `name`, or any) is complete;
    return that checkpoint's name and the ended process (its stderr captured)."""
    process = _popen(arguments, cwd)
    try:
        deadline = time.monotonic() + 240
        while True:
            complete = last_complete_checkpoint(checkpoints)
            if complete is not None and name in (None, Path(complete).name):
                break
            assert process.poll() is None, f"the run ended before checkpoint {name or 'one'} was complete"
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.02)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    return Path(complete).name, subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory):
    """The run directory of `hw ARGUMENTS` run to its end, run once per module for each ARGUMENTS."""
    done: dict[tuple[str, ...], Path] = {}

    def run(arguments: list[str]) -> Path:
        if tuple(arguments) not in done:
            root = tmp_path_factory.mktemp("uninterrupted")
            _run([*arguments, "--output-dir", "whole", "--reports-dir", "reports-whole"], root)
            done[tuple(arguments)] = root / "whole"
        return done[tuple(arguments)]

    return run


def _results(run_dir: Path) -> dict:
    """Everything a run reports, except the training-loss averages the Trainer restarts at a resume.

    After resuming at step 63 its first logged loss averages steps 64-70 (63 is where logging restarts), where an
    uninterrupted run's averages 61-70; `train_loss` covers the resumed steps only. The steps themselves are the
    same: every logged gradient norm and learning rate must match.
    """
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {
        "final": metrics["final"],
        "epochs": [
            {key: value for key, value in row.items() if key != "training_loss"} for row in metrics["epochs"]
        ],
        "data": metrics["data"],
        "model": metrics["model"],
        "samples": (run_dir / "samples.jsonl").read_text(),
        "steps": [
            (entry["step"], entry["grad_norm"], entry["learning_rate"])
            for entry in history
            if "loss" in entry
        ],
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments",
    [["yelp", "--tiny"], ["yelp", "--variant", "imdb-lora", "--tiny"]],
    ids=["full-fine-tuning", "lora-adapter"],
)
def test_a_killed_run_resumes_to_the_results_of_an_uninterrupted_one(
    arguments: list[str], tmp_path: Path, uninterrupted
) -> None:
    crashed = tmp_path / "crashed"
    run = [*arguments, "--output-dir", "crashed", "--reports-dir", "reports-crashed"]
    first, killed = _signal_after_checkpoint(run, tmp_path, crashed / "checkpoints", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    # Nothing of the killed run passes for a result: no metrics, no report, no state file outside checkpoints.
    assert not (crashed / "metrics.json").exists() and not (crashed / "trainer_state.json").exists()
    assert not (tmp_path / "reports-crashed" / "fragments").exists()
    # What a kill in the middle of a save, and of an atomic write, would have left.
    step = int(first.removeprefix("checkpoint-"))
    half_written = crashed / "checkpoints" / f"checkpoint-{step + 1000}"
    shutil.copytree(crashed / "checkpoints" / first, half_written)
    (half_written / "trainer_state.json").write_text('{"global_step": ')
    torn = crashed / "checkpoints" / f"checkpoint-{step + 2000}"  # whole state, truncated weights
    shutil.copytree(crashed / "checkpoints" / first, torn)
    for weights in torn.glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (crashed / ".metrics.json.k1ll3d.partial").write_text('{"final": ')

    _run([*run, "--resume"], tmp_path)
    log = (crashed / "run.log").read_text()
    assert f"resuming from {Path('crashed', 'checkpoints', first)}\n" in log
    assert not half_written.exists() and not torn.exists()
    assert re.search(
        rf"deleting {re.escape(str(Path('crashed', 'checkpoints', torn.name)))}: \w+\.safetensors is damaged \(",
        log,
    )
    assert not list(crashed.rglob("*.partial"))
    assert _results(crashed) == _results(uninterrupted(arguments))
    assert (tmp_path / "reports-crashed" / "fragments").is_dir()


@pytest.mark.slow
def test_sigterm_saves_the_step_and_the_command_it_prints_continues_to_the_uninterrupted_results(
    tmp_path: Path, uninterrupted
) -> None:
    """What a preempted cloud GPU sends: sent just after the first epoch's checkpoint (step 63 of 189), it stops
    training a step or a few later, in the middle of the second epoch, and saves that step."""
    arguments = ["yelp", "--tiny"]
    stopped = tmp_path / "stopped"
    run = [*arguments, "--output-dir", "stopped", "--reports-dir", "reports-stopped"]
    first, ended = _signal_after_checkpoint(run, tmp_path, stopped / "checkpoints", signal.SIGTERM)

    assert ended.returncode == 143, ended.stderr[-4000:]
    assert "Traceback" not in ended.stderr
    last = ended.stderr.rstrip().splitlines()[-1]
    step = int(re.fullmatch(r"hw: interrupted after step (\d+); continue with: .*", last)[1])
    assert last.endswith(
        "continue with: hw yelp --tiny --output-dir stopped --reports-dir reports-stopped --resume"
    )
    assert [line for line in ended.stderr.splitlines() if line.startswith("hw: interrupted")] == [last]
    assert step > int(first.removeprefix("checkpoint-"))
    assert last_complete_checkpoint(stopped / "checkpoints") == str(
        stopped / "checkpoints" / f"checkpoint-{step}"
    )
    assert not (stopped / "metrics.json").exists()

    _run(shlex.split(last.partition("continue with: hw ")[2]), tmp_path)
    assert (
        f"resuming from {Path('stopped', 'checkpoints', f'checkpoint-{step}')}\n"
        in (stopped / "run.log").read_text()
    )
    assert _results(stopped) == _results(uninterrupted(arguments))


@pytest.mark.slow
def test_a_run_resumed_from_its_last_checkpoint_reports_the_training_loss_of_every_step(
    tmp_path: Path, uninterrupted
) -> None:
    # Killed once its last checkpoint is complete, the run resumes with no step left to train: the Trainer's
    # own `train_loss` then averages none (0.0). The logged losses come back with the checkpoint's state.
    whole = uninterrupted(["tang", "--tiny"])
    steps = json.loads((whole / "trainer_state.json").read_text())["global_step"]
    run = ["tang", "--tiny", "--output-dir", "crashed", "--reports-dir", "reports-crashed"]
    last = f"checkpoint-{steps}"
    _, killed = _signal_after_checkpoint(
        run, tmp_path, tmp_path / "crashed" / "checkpoints", signal.SIGKILL, last
    )
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    _run([*run, "--resume"], tmp_path)
    log = (tmp_path / "crashed" / "run.log").read_text()
    assert f"resuming from {Path('crashed', 'checkpoints', last)}\n" in log
    resumed = json.loads((tmp_path / "crashed" / "metrics.json").read_text())["final"]
    assert resumed["training_loss"] > 0
    assert resumed == pytest.approx(json.loads((whole / "metrics.json").read_text())["final"], rel=1e-6)


def _started(arguments: list[str], cwd: Path, run_dir: Path) -> subprocess.Popen:
    """Start `hw ARGUMENTS`; return it once it wrote `run_dir`'s run.json (its signal handlers are set by then)."""
    process = _popen(arguments, cwd)
    deadline = time.monotonic() + 240
    while not (run_dir / "run.json").exists():
        assert process.poll() is None, process.communicate()[1][-4000:]
        assert time.monotonic() < deadline, "no run.json after 240 s"
        time.sleep(0.01)
    return process


def _all_whole(*roots: Path) -> None:
    """Every file under `roots` is whole: no unfinished atomic write, every JSON (line) parses, every weight and
    torch file is as long as its header or zip directory says, every figure ends, every fragment has its end."""
    for root in roots:
        for path in root.rglob("*"):  # none when the run stopped before it made `root`
            if path.is_dir():
                assert weight_checks.torn_file(path, (".safetensors", ".pt", ".pth", ".bin")) is None, path
                continue
            text = path.read_bytes()
            assert not path.name.endswith(".partial"), path  # a stage's `.partial/` folder is its checkpoints
            if path.suffix == ".json":
                json.loads(text)
            elif path.suffix == ".jsonl":
                for line in text.splitlines():
                    json.loads(line)
            elif path.suffix == ".png":
                assert text.endswith(b"IEND\xaeB`\x82"), path
            elif path.suffix == ".md" and "fragments" in path.parts:
                assert text.decode("utf-8").rstrip("\n").endswith(report.END), path


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments",
    [["qa", "--tiny"], ["whisper", "--lang", "fr", "--tiny"], ["tang", "--tiny"], ["atc", "--tiny"]],
    ids=lambda arguments: arguments[0],
)
def test_sigterm_at_a_random_moment_leaves_every_file_whole_and_a_command_that_finishes_the_run(
    arguments: list[str], tmp_path: Path
) -> None:
    """The moment is drawn (seeded) from the time an uninterrupted run took once its run.json was written, so it
    falls in data preparation, training, evaluation or the report: wherever it falls, the run ends in one line
    and its files are whole."""
    homework = arguments[0]
    whole = [*arguments, "--output-dir", "whole", "--reports-dir", "reports-whole"]
    process = _started(whole, tmp_path, tmp_path / "whole")
    began = time.monotonic()
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-4000:]
    # Less the time it took to build the tiny assets, which the killed run finds built.
    log = (tmp_path / "whole" / "run.log").read_text(encoding="utf-8")
    duration = time.monotonic() - began - sum(map(int, re.findall(r" built \S+ in (\d+) s$", log, re.M)))
    moment = random.Random(f"sigterm {homework}").uniform(0, duration)

    killed = tmp_path / "killed"
    run = [*arguments, "--output-dir", "killed", "--reports-dir", "reports-killed"]
    process = _started(run, tmp_path, killed)
    time.sleep(moment)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    last = stderr.rstrip().splitlines()[-1] if stderr.strip() else ""
    print(f"{homework}: SIGTERM {moment:.1f} s after run.json; exit {process.returncode}; {last}")
    _all_whole(killed, tmp_path / "reports-killed")
    status = manifest.status(killed)
    if process.returncode != 143:
        # The run was faster this time and finished first; after its last write, the usual SIGTERM death.
        assert process.returncode in (0, -signal.SIGTERM) and status == "finished", stderr[-4000:]
        warnings.warn(
            f"{homework}: the run finished before SIGTERM at {moment:.1f} s reached it", stacklevel=1
        )
        return
    assert "Traceback" not in stderr and status != "finished", stderr[-4000:]
    assert [line for line in stderr.splitlines() if line.startswith("hw: interrupted")] == [last], stderr
    if "; continue with: hw " in last:
        _run(shlex.split(last.partition("; continue with: hw ")[2]), tmp_path)
    else:  # stopped before the run's record began (the instant after run.json): it starts again there
        assert last == "hw: interrupted (SIGTERM); nothing was left half-written: run the command again", last
        _run([*run, "--resume"], tmp_path)
    assert manifest.status(killed) == "finished"
    _all_whole(killed, tmp_path / "reports-killed")


def test_the_mean_logged_loss_weighs_each_logged_loss_by_its_steps() -> None:
    history = [{"loss": 4.0, "step": 10}, {"eval_loss": 9.0, "step": 10}, {"loss": 1.0, "step": 15},
               {"train_loss": 0.0, "step": 15}]  # fmt: skip
    assert mean_logged_loss(history) == pytest.approx((4 * 10 + 1 * 5) / 15)
    assert mean_logged_loss([{"train_loss": 0.5, "step": 3}]) is None  # fewer steps than logging_steps


def _checkpoints(root: Path, states: dict[int, str | None]) -> Path:
    """`checkpoint-<step>` folders with weights and, unless None, this text as their trainer_state.json."""
    weights = safetensors.torch.save({"weight": torch.zeros(4)})
    for step, state in states.items():
        (root / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (root / "checkpoints" / f"checkpoint-{step}" / "model.safetensors").write_bytes(weights)
        if state is not None:
            (root / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (root / "checkpoints" / "checkpoint-99.old").mkdir()  # not the Trainer's: never chosen, never deleted
    return root / "checkpoints"


class _RecordingTrainer:
    state = types.SimpleNamespace(global_step=0)

    def train(self, resume_from_checkpoint: str | None) -> None:
        self.resumed_from = resume_from_checkpoint


def test_resume_takes_the_newest_checkpoint_with_a_complete_state_and_deletes_half_written_ones(
    tmp_path: Path,
) -> None:
    checkpoints = _checkpoints(
        tmp_path, {5: "{}", 10: "{}", 15: '{"log_history": [', 20: None, 25: "{}", 30: "{}"}
    )
    # A whole state beside a truncated weight file (a partial copy, a power loss): not complete either.
    torn = checkpoints / "checkpoint-25" / "model.safetensors"
    torn.write_bytes(torn.read_bytes()[:-1])
    optimizer = io.BytesIO()
    torch.save({"state": torch.zeros(100)}, optimizer)
    (checkpoints / "checkpoint-30" / "optimizer.pt").write_bytes(optimizer.getvalue()[:-100])
    assert last_complete_checkpoint(checkpoints) == str(checkpoints / "checkpoint-10")
    trainer = _RecordingTrainer()
    train(trainer, tmp_path, resume=True)
    assert trainer.resumed_from == str(checkpoints / "checkpoint-10")
    assert sorted(path.name for path in checkpoints.iterdir()) == [
        "checkpoint-10",
        "checkpoint-5",
        "checkpoint-99.old",
    ]


def test_resume_without_a_complete_checkpoint_trains_from_the_start(tmp_path: Path) -> None:
    checkpoints = _checkpoints(tmp_path, {3: None})
    trainer = _RecordingTrainer()
    train(trainer, tmp_path, resume=True)
    assert trainer.resumed_from is None
    assert [path.name for path in checkpoints.iterdir()] == ["checkpoint-99.old"]


def test_without_resume_checkpoints_are_neither_read_nor_deleted(tmp_path: Path) -> None:
    checkpoints = _checkpoints(tmp_path, {3: None, 4: "{}"})
    trainer = _RecordingTrainer()
    train(trainer, tmp_path, resume=False)
    assert trainer.resumed_from is None
    assert len(list(checkpoints.iterdir())) == 3
