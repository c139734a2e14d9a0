"""User-facing errors: anything a user can get wrong ends as one line on stderr and exit code 2."""


class HwError(Exception):
    """A problem the user can fix: say what was wrong, the value received, what is allowed and how to fix it."""

    exit_code = 2


class ConfigError(HwError):
    """One or more configuration problems, all reported together."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))
