"""Every refusal becomes a message and an exit code in one place: the `lorakit` group's handler."""

from __future__ import annotations

import errno
import os

import click
import pytest

from lorakit.cli.main import LorakitGroup, cli
from lorakit.errors import CommandExit, ExitCode, GateError, LaunchError, UserError


def raising(exc: BaseException) -> click.Group:
    group = LorakitGroup("lorakit")

    @group.command()
    def boom() -> None:
        raise exc

    return group


@pytest.mark.parametrize(("exc", "code", "stderr"), [
    (UserError("no such folder 'x'.", fix="give a folder"), ExitCode.USAGE, "lorakit: no such folder 'x'.\nFix: give a folder\n"),
    (LaunchError("training failed: out of memory."), ExitCode.FAILED, "lorakit: training failed: out of memory.\n"),
    (GateError("the plan has 0 error(s).", fix="edit it."), ExitCode.FAILED,
     "No findings: every gate passed.\nlorakit: the plan has 0 error(s). edit it.\n"),
    (CommandExit(ExitCode.FAILED, "No run could be planned."), ExitCode.FAILED, "No run could be planned.\n"),
    (CommandExit(ExitCode.INTERRUPTED), ExitCode.INTERRUPTED, ""),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED, "lorakit: interrupted.\n"),
    (PermissionError(13, "Permission denied", "/x"), ExitCode.FAILED, "lorakit: Permission denied (/x).\n"),
])
def test_each_refusal_has_its_message_and_exit_code(exc, code, stderr):
    result = click.testing.CliRunner().invoke(raising(exc), ["boom"])
    assert (result.exit_code, result.stderr) == (code, stderr)


@pytest.mark.parametrize(("code", "what"), [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "your disk quota is used up")])
def test_a_full_disk_names_the_file_the_free_space_and_a_fix(tmp_path, code, what):
    exc = OSError(code, os.strerror(code), str(tmp_path / "plan" / "run.json"))
    result = click.testing.CliRunner().invoke(raising(exc), ["boom"])
    assert result.exit_code == ExitCode.FAILED
    first, fix = result.stderr.splitlines()
    assert first.startswith(f"lorakit: cannot write {tmp_path / 'plan' / 'run.json'}: {what} (")
    assert first.endswith(f" free there) [{os.strerror(code)}].")
    assert fix.startswith("Fix: free space on that disk") and fix.endswith("then run the command again.")


def test_exit_codes_are_the_documented_numbers():
    assert [int(code) for code in ExitCode] == [0, 1, 2, 130]
    assert (UserError("x").exit_code, GateError("x").exit_code, LaunchError("x").exit_code) == (2, 1, 1)


def test_the_exit_codes_are_documented_in_help_and_in_the_readme():
    from pathlib import Path

    shown = click.testing.CliRunner().invoke(cli, ["--help"]).output.split("Exit codes:")[1]
    commands = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split("## Commands")[1].split("###")[0]
    for code in ExitCode:
        assert f"\n    {int(code):<4} " in shown
        assert f"**{int(code)}**" in commands


def test_a_plan_written_with_gate_errors_exits_failed(runner, character_dataset, tmp_path):
    out = tmp_path / "p"
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out),
                                 "--set", "bucket_reso_steps=48", "--force"])
    assert result.exit_code == ExitCode.FAILED and (out / "plan.json").is_file()
    assert "params/bucket-steps" in result.output and "lorakit:" not in result.output
