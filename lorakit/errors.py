"""One error family for everything lorakit refuses to do.

The CLI turns these into a message and an exit code in one place (`cli.main`); library callers
catch `LorakitError`. Exit codes: 2 for input the user can correct before anything runs (a bad
path, option or value), 1 for a plan or run that failed its checks or its training.
"""

from __future__ import annotations

from collections.abc import Sequence


class LorakitError(Exception):
    """Base class: a message for people, and the exit code the CLI should return."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = self.message.rstrip()
        if self.fix:
            text += f"\nFix: {self.fix}"
        return text


class UserError(LorakitError):
    """Bad input: a path, option or value the user can correct."""

    exit_code = 2


class ConfigError(UserError):
    """Several problems in presets or overrides, reported together so one edit fixes them all."""

    def __init__(self, problems: Sequence[str], *, context: str = "the configuration"):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) in {context}:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class GateError(LorakitError):
    """A plan whose checks found errors; carries the findings so callers can show them."""

    exit_code = 1

    def __init__(self, message: str, findings: Sequence[object] = (), *, fix: str | None = None):
        super().__init__(message, fix=fix)
        self.findings = list(findings)


class LaunchError(LorakitError):
    """The trainer could not be started or ended badly; carries the command and the log's tail."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        log_tail: str = "",
        fix: str | None = None,
    ):
        super().__init__(message, fix=fix)
        self.command = list(command)
        self.log_tail = log_tail

    def render(self) -> str:
        text = super().render()
        if self.log_tail:
            text += "\nLast lines of the trainer's output:\n" + self.log_tail.rstrip()
        return text
