"""SIGINT and SIGTERM during a run: training stops after its current step with a checkpoint, anything else at
once, and either way the user reads one line saying how to continue; a second signal exits at once."""

import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hw import runs
from hw.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what a preempted cloud machine or `kill` sends


class Stopped(BaseException):
    """Raised where a signal stopped the task; a `BaseException`, as `KeyboardInterrupt` is, so that no
    `except Exception` in a task or a library swallows it. `interruptible` turns it into `Interrupted`."""

    def __init__(self, signum: int, step: int | None = None) -> None:
        super().__init__(signum, step)
        self.signum = signum
        self.step = step


class _State:
    """What the handler shares with the training loop: the signal received, whether a Trainer is stepping."""

    signum: int | None = None
    training = False


_state = _State()


def _on_signal(signum: int, frame: Any) -> None:
    if _state.signum is not None:
        os.write(2, b"\nhw: interrupted again: exiting now, without saving\n")
        os._exit(128 + signum)
    _state.signum = signum
    if not _state.training:
        raise Stopped(signum)
    # Saving a 7B model's checkpoint takes a while: say why nothing seems to happen.
    os.write(
        2, b"\nhw: stopping after this training step to save a checkpoint (signal again to quit at once)\n"
    )


@contextlib.contextmanager
def interruptible(run_dir: Path, *, resumable: bool = True) -> Iterator[None]:
    """Run the block with SIGINT/SIGTERM handled: a signal ends it with `Interrupted` and the command that
    continues the run (`--resume --output-dir RUN_DIR`; the same command again when not `resumable`)."""
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    _state.signum, _state.training = None, False
    try:
        yield
    except Stopped as stopped:
        where = "" if stopped.step is None else f" after step {stopped.step}"
        command = continue_command(run_dir) if resumable else shlex.join(["hw", *sys.argv[1:]])
        raise Interrupted(stopped.signum, f"interrupted{where}; continue with: {command}") from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.signum, _state.training = None, False


def continue_command(run_dir: Path, resume: bool = True) -> str:
    """This process's `hw` command line with `--resume` (unless not `resume`: an eval-only run, which reads its
    cached stages back from its directory) and `--output-dir RUN_DIR` added where missing."""
    arguments = sys.argv[1:]
    if resume and "--resume" not in arguments:
        arguments = [*arguments, "--resume"]
    if not any(argument == "--output-dir" or argument.startswith("--output-dir=") for argument in arguments):
        arguments = [*arguments, "--output-dir", str(run_dir)]
    return shlex.join(["hw", *arguments])


def stop_if_interrupted(step: int) -> None:
    """After `Trainer.train` returns: raise `Stopped` when a signal stopped it at `step`."""
    if _state.signum is not None:
        raise Stopped(_state.signum, step)


class StopWhenInterrupted(TrainerCallback):
    """Ends training at the first step end after a signal, saving a checkpoint there (`interruptible`)."""

    def __init__(self) -> None:
        self.mid_epoch = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        _state.training = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        _state.training = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if _agreed(_state.signum is not None, args.device):
            # The loop's last step of an epoch gives an integral epoch; at the last step of all, training ends
            # anyway: only then does the loop go on to evaluate and save as if never interrupted.
            self.mid_epoch = not (control.should_training_stop or float(state.epoch).is_integer())
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.mid_epoch:
            # The step's checkpoint is saved; an evaluation here would be one an uninterrupted run never makes,
            # and its log entry would go into the checkpoint a resumed run continues from.
            control.should_evaluate = False
            control.should_save = False
        return control


def _agreed(stop: bool, device: Any) -> bool:
    """Whether any process received a signal: all must stop at the same step, or the others wait forever for
    the stopped one (under DDP the signal reaches each process at a slightly different moment)."""
    stop = runs.any_process(stop, device)
    if stop and _state.signum is None:
        _state.signum = signal.SIGTERM  # stopped by another process's signal
    return stop
