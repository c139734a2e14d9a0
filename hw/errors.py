"""User-facing errors: anything a user can get wrong (exit code 2), or a signal that stopped a run, ends as one
line on stderr."""

import contextlib
from collections.abc import Iterator


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


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an `HwError` into one line on stderr and its exit code; anything else is a bug and keeps its traceback."""
    try:
        yield
    except HwError as error:
        import typer  # only a command line catches errors this way; the library raises them

        kind = "" if isinstance(error, Interrupted) else "error: "  # an interruption is no mistake
        typer.echo(f"hw: {kind}{error}", err=True)
        raise typer.Exit(error.exit_code) from None
