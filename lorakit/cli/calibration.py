"""`lorakit calibrate`: the estimator's constants measured from runs that happened."""

from __future__ import annotations

from pathlib import Path

import click

from lorakit.cli import options
from lorakit.cli.options import PATH, emit_json


@click.command()
@click.argument("plans", nargs=-1, required=True, type=PATH)
@click.option("--file", "path", type=PATH, help="The calibration file (default: $LORAKIT_CALIBRATION, else "
              "~/.config/lorakit/calibration.toml).")
@options.as_json()
def calibrate(plans: tuple[Path, ...], path: Path | None, as_json: bool) -> None:
    """Measure the estimator's overhead and efficiency for each GPU from launched PLANS (their run.json)."""
    from lorakit.run.calibrate import calibrate as run_calibration

    update = run_calibration(list(plans), path)
    if as_json:
        emit_json(update.report())
        return
    from lorakit.cli.views import console, print_calibration

    print_calibration(console(), update)
