"""User-facing errors: anything a user can get wrong ends as one line on stderr and exit code 2."""

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


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an `HwError` into one line on stderr and exit code 2; anything else is a bug and keeps its traceback."""
    try:
        yield
    except HwError as error:
        import typer  # only a command line catches errors this way; the library raises them

        typer.echo(f"hw: error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
