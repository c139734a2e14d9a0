"""`hw` run in-process the way the tests check it: a command that works, or one that fails as a user error."""

from typer.testing import CliRunner

from hw.cli import app

runner = CliRunner()


def invoke(args: list[str]) -> str:
    """Run `hw ARGS`, assert that it succeeded, and return its output."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def one_line_error(args: list[str]) -> str:
    """Run `hw ARGS` and assert it failed as a user error; return the message of its one `hw: error:` line.

    A user error exits with code 2, shows no traceback, and ends stderr with exactly one `hw: error:` line.
    """
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("hw: error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    return errors[0].removeprefix("hw: error: ")
