"""`lorakit export skypilot`: a plan or a batch as SkyPilot managed jobs."""

from __future__ import annotations

from pathlib import Path

import click

from lorakit.cli.gui import export_group
from lorakit.cli.options import PATH


@export_group.command("skypilot")
@click.argument("source", metavar="PLAN|BATCH", type=PATH)
@click.option("-o", "--output", type=PATH, required=True,
              help="The task YAML to write (for a BATCH: a folder, one <run>.yaml per planned run).")
@click.option("--bucket", metavar="URI", help="Mount the plan folder and dataset from this bucket (e.g. s3://my-bucket), "
              "read-write, so saved states outlive a preempted machine; you copy them there first.")
@click.option("--accelerator", metavar="NAME", help="SkyPilot's GPU name (`sky show-gpus`); default: the plan's target GPU.")
@click.option("--on-demand", is_flag=True, help="Rent on-demand machines instead of spot ones.")
@click.option("--max-restarts", type=int, default=2, show_default=True,
              help="Restarts after the job fails (preemptions are recovered regardless).")
@click.option("--force", is_flag=True, help="Replace files that exist.")
def export_skypilot(source: Path, output: Path, bucket: str | None, accelerator: str | None, on_demand: bool,
                    max_restarts: int, force: bool) -> None:
    """Write PLAN (or each run of BATCH) as a SkyPilot managed job that `sky jobs launch FILE` starts on any cloud."""
    from lorakit.batch.manifest import MANIFEST
    from lorakit.batch.skypilot import export_batch_skypilot
    from lorakit.publish.skypilot import SkyOptions, export_plan_skypilot

    options = SkyOptions(accelerator=accelerator, bucket=bucket, use_spot=not on_demand, max_restarts_on_errors=max_restarts)
    if (source / MANIFEST).is_file():
        files = export_batch_skypilot(source, output, options, force=force)
        click.echo(f"Wrote {len(files)} SkyPilot task(s) into {output}. Launch each with: sky jobs launch FILE, e.g.")
        click.echo(f"  for f in {output}/*.yaml; do sky jobs launch -y \"$f\"; done")
        return
    task = export_plan_skypilot(source, output, options, force=force)
    for local, remote in task.uploads:
        click.echo(f"Copy {local} to {remote} before launching.")
    click.echo(f"Wrote {output} ({task.accelerators}{', spot' if task.use_spot else ''}). Launch it with: "
               f"sky jobs launch {output}")
