"""`lorakit batch`: plan, run, compare and export many trainings."""

from __future__ import annotations

from pathlib import Path

import click

from lorakit.cli import options
from lorakit.cli.options import PATH, emit_json, emit_json_list


@click.group()
def batch() -> None:
    """Plan, run and compare many trainings: presets × sweeps, resumable, one run per GPU."""


@batch.command("plan")
@options.dataset
@options.preset(help="One alternative per --preset (repeatable); join presets with + to combine them, e.g. pony+character.")
@click.option("--sweep", "sweeps", multiple=True, metavar="KEY=V1,V2,...",
              help="Try each value of KEY (repeatable; the batch is every combination). Separate values with | if they contain commas.")
@options.overrides()
@options.reg()
@options.token(help="Class tokens for a flat DATASET folder.")
@options.target_gpu(help="Plan every run for this catalog GPU instead of the probed one.")
@options.out(required=True, help="The batch folder: one plan folder per run plus batch.json.")
@options.name(help="Base name of the LoRA files (default: the dataset folder's name).")
@options.force(help="Plan combinations with gate errors too, and re-plan an existing batch.")
@options.as_json(help="Print batch.json instead of the summary.")
@options.sd_scripts(help="The sd-scripts checkout the plans should use.")
@options.python(help="The trainer's Python the plans should use.")
@options.presets_dirs()
@click.option("--max-runs", type=click.IntRange(min=1), default=200, show_default=True,
              help="Refuse a batch of more combinations than this (each one is a training).")
def batch_plan(preset_names: tuple[str, ...], sweeps: tuple[str, ...], out: Path, as_json: bool, max_runs: int,
               **shared) -> None:
    """Write one plan folder per combination of the --preset alternatives and --sweep values."""
    from lorakit.batch.manifest import BatchRequest, plan_batch
    from lorakit.errors import CommandExit, ExitCode

    def progress(index: int, total: int, run_id: str) -> None:
        click.echo(f"planning {index}/{total}: {run_id}", err=True)

    manifest = plan_batch(BatchRequest(plan=options.plan_request(shared), out=out, presets=list(preset_names),
                                       sweeps=list(sweeps), max_runs=max_runs, on_progress=progress))
    if as_json:
        emit_json(manifest)
        return
    for run in manifest.runs:
        mark = "planned" if run.status == "planned" else "[skipped: gate errors]"
        click.echo(f"{run.id}  {mark}")
        for finding in run.findings:
            click.echo(f"    {finding.code}: {finding.message}")
    planned = len(manifest.planned())
    if not planned:
        raise CommandExit(ExitCode.FAILED, f"No run could be planned in {out}: every combination has gate errors (above).")
    click.echo(f"{planned} of {len(manifest.runs)} run(s) planned in {out}. Next: lorakit batch run {out}")


@batch.command("run")
@click.argument("batch_dir", type=PATH)
@click.option("--gpus", help="GPU ids to use, one run per GPU at a time (e.g. 0,1); default: one run at a time.")
@click.option("--sd-scripts", "sd_scripts", help="The sd-scripts checkout (default: $LORAKIT_SD_SCRIPTS, then vendor/sd-scripts).")
@click.option("--python", help="The trainer's Python (default: $LORAKIT_PYTHON, then lorakit's own).")
@click.option("--retry-failed", is_flag=True, help="Run failed runs again (from scratch; their old outputs are kept aside).")
@click.option("--stop-on-failure", is_flag=True, help="Start no new run once one has failed.")
@click.option("--no-tensorboard", is_flag=True, help="Do not write lorakit's TensorBoard events.")
@click.option("--every", default=60.0, show_default=True, metavar="SECONDS", help="Seconds between progress lines per run.")
@options.with_recover_options
def batch_run(batch_dir: Path, gpus, sd_scripts, python, retry_failed, stop_on_failure, no_tensorboard, every,
              no_recover, max_recoveries, recover_mode) -> None:
    """Train the batch's plans with the launch code; rerunning resumes (succeeded runs are skipped).

    An interrupted run resumes from its newest saved state (or starts again without one); failed runs
    rerun only with --retry-failed. A run that dies of CUDA out-of-memory is re-planned one notch down
    and trained on, as `lorakit launch` does. Ctrl-C stops every running trainer cleanly. Exit code 1 when a run
    failed or could not start, 130 when interrupted.
    """
    from lorakit.batch.run import BatchRunOptions, run_batch
    from lorakit.cli.display import PlainDisplay
    from lorakit.cli.views import console, outcome_line
    from lorakit.errors import CommandExit, ExitCode, UserError
    from lorakit.run.process import Stopper, stop_on_signals

    slots = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    if gpus is not None and not slots:
        raise UserError(f"--gpus {gpus!r} names no GPU.", fix="give ids such as --gpus 0,1")
    out = console()
    displays: dict[str, PlainDisplay] = {}

    def on_event(run_id: str, event) -> None:
        if run_id not in displays:
            displays[run_id] = PlainDisplay(out, every, prefix=f"[{run_id}] ")
        displays[run_id](event)

    run_options = BatchRunOptions(gpus=slots, sd_scripts=sd_scripts, python=python, retry_failed=retry_failed,
                                  stop_on_failure=stop_on_failure, tensorboard=not no_tensorboard,
                                  recover=options.recover_settings(no_recover, max_recoveries, recover_mode))
    stopper = Stopper()
    with stop_on_signals(stopper, interrupt_when_idle=False):
        result = run_batch(batch_dir, run_options, stopper=stopper, on_event=on_event,
                           on_outcome=lambda outcome: out.print(outcome_line(outcome)))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    counts = result.counts()
    click.echo(f"{result.total} run(s): {counts.succeeded} succeeded, {counts.failed} failed or could not start, "
               f"{counts.interrupted} interrupted, {counts.not_started} not started. "
               f"`lorakit batch status {batch_dir}` compares them.")
    if stopper.stopped.is_set():
        raise CommandExit(ExitCode.INTERRUPTED)
    if counts.failed:
        raise CommandExit(ExitCode.FAILED)


@batch.command("status")
@click.argument("batch_dir", type=PATH)
@click.option("--json", "fmt", flag_value="json", help="Print JSON.")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV.")
@click.option("--markdown", "fmt", flag_value="markdown", help="Print a Markdown table.")
def batch_status(batch_dir: Path, fmt: str | None) -> None:
    """One row per run: swept values, state, steps, final and lowest loss, time, speed, peak VRAM, output; ★ the best."""
    from lorakit.batch.status import batch_status as read_status
    from lorakit.batch.status import to_csv, to_markdown

    status = read_status(batch_dir)
    rows = status.rows
    for warning in status.warnings:
        click.echo(f"warning: {warning}", err=True)
    if fmt == "json":
        emit_json_list(rows)
    elif fmt == "csv":
        click.echo(to_csv(rows), nl=False)
    elif fmt == "markdown":
        click.echo(to_markdown(rows), nl=False)
    else:
        from lorakit.cli.views import batch_table, console

        console().print(batch_table(rows))


@batch.command("report")
@click.argument("batch_dir", type=PATH)
@click.option("-o", "--output", type=PATH, help="The HTML file to write (default: BATCH_DIR/report.html, rewritten each time).")
@click.option("--force", is_flag=True, help="Replace -o FILE if it exists.")
def batch_report(batch_dir: Path, output: Path | None, force: bool) -> None:
    """Write one self-contained HTML page: the runs' table, all loss curves on one chart, and the samples side by side."""
    from lorakit.batch.report import write_report

    click.echo(f"Wrote {write_report(batch_dir, output, force=force)}")


@batch.command("export-slurm")
@click.argument("batch_dir", type=PATH)
@click.option("-o", "--output", "script", type=PATH, required=True, help="The sbatch script to write.")
@click.option("--partition", help="Slurm partition (#SBATCH --partition).")
@click.option("--gpus-per-task", type=int, default=1, show_default=True, help="GPUs per array task.")
@click.option("--time", "time_limit", help="Time limit per run, e.g. 12:00:00.")
@click.option("--cpus-per-task", type=int, help="CPUs per array task.")
@click.option("--mem", help="Memory per array task, e.g. 64G.")
def batch_export_slurm(batch_dir: Path, script: Path, partition, gpus_per_task, time_limit, cpus_per_task, mem) -> None:
    """Write an sbatch array script: one array task per planned run, each running `lorakit launch PLAN`."""
    from lorakit.batch.manifest import SlurmOptions, export_slurm

    count = export_slurm(batch_dir, script, SlurmOptions(partition, gpus_per_task, time_limit, cpus_per_task, mem))
    click.echo(f"Wrote {script}: an array of {count} task(s). Submit it with: sbatch {script}")
