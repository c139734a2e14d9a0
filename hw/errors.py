"""User-facing errors: anything a user can get wrong (exit code 2), or a signal that stopped a run, ends as one
line on stderr."""

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class HwError(Exception):
    """A problem the user can fix: say what was wrong, the value received, what is allowed and how to fix it."""

    exit_code = 2


class ConfigError(HwError):
    """One or more configuration problems, all reported together."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))


class Interrupted(HwError):
    """A run stopped by a signal, its work saved: exit code 128 + the signal's number (130 for SIGINT, 143 for
    SIGTERM), as a shell reports a process the signal ended."""

    def __init__(self, signum: int, message: str):
        self.exit_code = 128 + signum
        super().__init__(message)


class Terminated(BaseException):
    """SIGTERM outside a run's training (`hw.interrupts` handles it there), raised as Ctrl-C raises
    `KeyboardInterrupt`: writes in progress clean up (`runs.write_bytes`) instead of the process vanishing."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an `HwError` into one line on stderr and its exit code; Ctrl-C or SIGTERM (outside training, which
    saves a checkpoint first) into one line and exit 130 or 143; anything else is a bug and keeps its traceback."""
    import typer  # only a command line catches errors this way; the library raises them

    handling = threading.current_thread() is threading.main_thread()  # where Python lets a handler be set
    previous = signal.signal(signal.SIGTERM, _terminate) if handling else None
    try:
        yield
    except HwError as error:
        kind = "" if isinstance(error, Interrupted) else "error: "  # an interruption is no mistake
        typer.echo(f"hw: {kind}{error}", err=True)
        raise typer.Exit(error.exit_code) from None
    except (KeyboardInterrupt, Terminated) as stop:
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        typer.echo(
            f"hw: interrupted ({signum.name}); nothing was left half-written: run the command again", err=True
        )
        raise typer.Exit(128 + signum) from None
    finally:
        if handling:
            signal.signal(signal.SIGTERM, previous)
