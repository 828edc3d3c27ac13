"""User-facing errors: one line naming the problem and the fix, exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, absurd option).

    The message is shown as a single line; it should name the problem and the fix.
    """

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = self.problem.rstrip(".")
        if self.fix:
            text += f". Fix: {self.fix.rstrip('.')}."
        else:
            text += "."
        return " ".join(text.split())


def require(condition: bool, problem: str, fix: str | None = None) -> None:
    """Raise :class:`UserError` unless ``condition`` holds."""
    if not condition:
        raise UserError(problem, fix)
