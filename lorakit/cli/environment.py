"""`lorakit setup`: the trainer environment (sd-scripts, a venv, torch, requirements), then `doctor`."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import click

from lorakit.cli.options import PATH

INDENT = "      "


class PrintedProgress:
    """A line per step (`[n/N] what`), the commands it runs, then `done`, `skipped` or `would run` and why."""

    def step(self, number: int, total: int, label: str) -> None:
        click.echo(f"[{number}/{total}] {label}")

    def note(self, text: str) -> None:
        click.echo(f"{INDENT}note: {text}")

    def command(self, argv: Sequence[str]) -> None:
        click.echo(f"{INDENT}$ {shlex.join(argv)}")

    def outcome(self, kind: str, why: str) -> None:
        first, *rest = why.splitlines() or [""]
        click.echo(f"{INDENT}{kind}: {first}")
        for line in rest:
            click.echo(f"{INDENT}  {line}")


@click.command()
@click.option("--venv", type=PATH, default=".trainer", show_default=True, help="The trainer's virtual environment.")
@click.option("--sd-scripts", "sd_scripts", help="An sd-scripts checkout to use (default: $LORAKIT_SD_SCRIPTS, then "
              "vendor/sd-scripts, checked out from its git submodule when empty).")
@click.option("--torch", "torch_build", default="auto", show_default=True, metavar="auto|cpu|cuXXX",
              help="The torch build: auto reads the driver's CUDA version (no NVIDIA driver: cpu).")
@click.option("--torch-index", metavar="URL|pip", help="The index for torch and torchvision (default: "
              "https://download.pytorch.org/whl/VARIANT); 'pip' uses the indexes pip is configured with.")
@click.option("--xformers", is_flag=True, help="Install xformers too (from the torch index).")
@click.option("--base-python", metavar="PATH", help="The Python the venv is made from (default: lorakit's own).")
@click.option("--dry-run", is_flag=True, help="Print the exact commands; change nothing.")
def setup(venv: Path, sd_scripts: str | None, torch_build: str, torch_index: str | None, xformers: bool,
          base_python: str | None, dry_run: bool) -> None:
    """Make the trainer environment `launch` needs, or check it: a second run changes nothing.

    Steps: sd-scripts, a virtual environment, torch + torchvision for this machine's driver, sd-scripts'
    requirements (without its `-e .`), xformers with --xformers, then `lorakit doctor`. Only git,
    `python -m venv` and pip are run, so pip's own configuration (indexes, constraints, cache) applies.
    """
    from lorakit.errors import CommandExit, ExitCode
    from lorakit.run.setup import SetupRequest
    from lorakit.run.setup import setup as run_setup

    request = SetupRequest(venv=venv, sd_scripts=sd_scripts, torch=torch_build, torch_index=torch_index,
                           xformers=xformers, dry_run=dry_run)
    if base_python:
        request.base_python = base_python
    result = run_setup(request, PrintedProgress())
    if dry_run:
        click.echo("Dry run: nothing was changed.")
        return
    if result.changed:
        click.echo(f"Trainer environment ready ({len(result.changed)} step(s) changed it): {result.venv_python}")
    else:
        click.echo(f"Nothing changed: the trainer environment was already complete: {result.venv_python}")
    if result.doctor is not None:
        from lorakit.cli.views import console, print_doctor

        print_doctor(console(), result.doctor)
        if not result.doctor.ok:
            raise CommandExit(ExitCode.FAILED)
    click.echo(f"Next: lorakit plan DATASET --out PLAN, then lorakit launch PLAN "
               f"--python {shlex.quote(result.venv_python)} --sd-scripts {shlex.quote(result.sd_scripts)}")
