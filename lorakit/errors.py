"""One error family for everything lorakit refuses to do.

The CLI turns these into a message and an exit code in one place (`cli.main`); library callers
catch `LorakitError`. Exit codes (`ExitCode`): 2 for input the user can correct before anything
runs (a bad path, option or value), 1 for a plan or run that failed its checks or its training,
130 for a run stopped by Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # findings imports pydantic, which `lorakit --help` must not pay for
    from lorakit.findings import Finding


class ExitCode(IntEnum):
    """Every exit code the `lorakit` command returns."""

    OK = 0
    FAILED = 1  # a plan, check or run that failed; what failed has been printed
    USAGE = 2  # input the user can correct (click uses 2 for its own usage errors too)
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: 128 + SIGINT, as shells report it


class LorakitError(Exception):
    """Base class: a message for people, and the exit code the CLI should return."""

    exit_code = ExitCode.FAILED

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

    exit_code = ExitCode.USAGE


class ConfigError(UserError):
    """Several problems in presets or overrides, reported together so one edit fixes them all."""

    def __init__(self, problems: Sequence[str], *, context: str = "the configuration"):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) in {context}:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class GateError(LorakitError):
    """A plan whose checks found errors; carries the findings so callers can show them."""

    def __init__(self, message: str, findings: Sequence[Finding] = (), *, fix: str | None = None):
        super().__init__(message, fix=fix)
        self.findings = list(findings)


class Busy(LorakitError):
    """What the command needs is held by another lorakit process (a plan that is training, a batch being run).

    Exit 1, not 2: nothing in the input is wrong; the other process has to end first."""


class LaunchError(LorakitError):
    """The trainer could not be started or ended badly; carries the command and the log's tail."""

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


class CommandExit(LorakitError):
    """A command that has printed its outcome and only has an exit code left to give.

    Raised where the outcome is not success (a plan written with gate errors, a failed check, an
    interrupted run); `message`, when given, is printed on stderr as it is, without the `lorakit:` prefix.
    """

    def __init__(self, exit_code: ExitCode, message: str = ""):
        super().__init__(message)
        self.exit_code = exit_code


class SetupError(LorakitError):
    """`lorakit setup` could not make the trainer environment: a command failed, or its result is still wrong."""
