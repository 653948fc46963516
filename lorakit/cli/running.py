"""Commands around one training run: fetch-model, doctor, launch, runs, logs, push."""

from __future__ import annotations

from pathlib import Path

import click

from lorakit.cli import options
from lorakit.cli.options import PATH, emit_json, emit_json_list, recover_settings, with_recover_options, with_trainer_options


@click.command("fetch-model")
@click.argument("plan_dir", metavar="PLAN", type=PATH)
@click.option("--only", "wanted", metavar="KEY",
              help="Fetch one model of the plan: its argument (ae, clip_l, t5xxl, vae, pretrained_model_name_or_path) "
                   "or role (base), or `tokenizers`.")
def fetch_model(plan_dir: Path, wanted: str | None) -> None:
    """Download PLAN's model files and sd-scripts' tokenizers into the Hugging Face cache.

    Every file the plan's family needs (SDXL and SD 1.5: the base model and a VAE; FLUX.1: the
    transformer, ae, clip_l and t5xxl; Chroma: no clip_l), or the one --only names. Uses
    huggingface_hub's own progress bars and cache (HF_HOME, HF_HUB_CACHE); what is cached
    already is not downloaded again. Prints the paths sd-scripts will be given and each file's SHA-256.
    """
    from lorakit.models.fetch import ensure_local, ensure_one, relocate
    from lorakit.models.source import ROLE_LABEL, human_bytes
    from lorakit.plan.build import load_plan

    plan = load_plan(plan_dir)
    here = relocate(plan.model)
    models = ensure_one(here, Path(plan.plan_dir), wanted) if wanted else ensure_local(here, Path(plan.plan_dir)).all()
    for model in models:
        what = ROLE_LABEL[model.role]
        how = "downloaded" if model.downloaded else "already here"
        click.echo(f"{what} {model.value}: {how}, {human_bytes(model.bytes)}\n  {model.path}\n  sha256 {model.sha256}")
    click.echo(f"Next: lorakit launch {plan_dir}")


@click.command()
@click.argument("plan_dir", metavar="PLAN", type=PATH)
@click.option("--repo", "repo_id", required=True, metavar="USER/NAME", help="The Hub model repo to push to (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo as private (an existing repo keeps its visibility).")
@click.option("--file", "lora_file", type=PATH, help="Push this LoRA file instead of the run's final one (e.g. an epoch save).")
@click.option("--license", "license_id", metavar="ID", help="The card's licence (default: the base model's, openrail++ for SDXL 1.0).")
@click.option("--base-model", metavar="REPO_ID", help="The base model's Hub id, when training used a local file.")
@click.option("--dry-run", is_flag=True, help="Print the model card and the files; upload nothing.")
def push(plan_dir: Path, repo_id: str, private: bool, lora_file: Path | None, license_id: str | None,
         base_model: str | None, dry_run: bool) -> None:
    """Upload PLAN's trained LoRA, its latest samples and a model card (README.md) to the Hub.

    The LoRA is the run's final file (from run.json, else where the plan predicts it). The token is
    HF_TOKEN or your `hf auth login`; it is never printed or written.
    """
    from lorakit.models.source import human_bytes
    from lorakit.publish.push import PushRequest
    from lorakit.publish.push import push as push_to_hub

    result = push_to_hub(PushRequest(plan_dir=plan_dir, repo_id=repo_id, private=private, file=lora_file,
                                     license_id=license_id, base_model=base_model, dry_run=dry_run))
    if dry_run:
        click.echo(result.card)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    verb = "Would upload" if dry_run else "Uploaded"
    for upload in result.uploads:
        click.echo(f"{verb} {upload.path_in_repo} ({human_bytes(upload.bytes)})")
    if result.url:
        click.echo(f"Pushed to {result.url}" + (f" ({result.commit_url})" if result.commit_url else ""))


@click.command()
@click.argument("plan_dir", metavar="[PLAN]", type=PATH, required=False)
@with_trainer_options
@options.as_json()
def doctor(plan_dir: Path | None, sd_scripts, python, gpus, cpu, as_json: bool) -> None:
    """Gate 4: check sd-scripts, the trainer's Python and packages, CUDA, the base model and disk (for PLAN)."""
    from lorakit.errors import CommandExit, ExitCode
    from lorakit.plan.build import load_plan
    from lorakit.run.doctor import DoctorOptions, run_doctor

    plan = load_plan(plan_dir) if plan_dir is not None else None
    report = run_doctor(plan, DoctorOptions(sd_scripts, python, gpus, cpu))
    if as_json:
        emit_json(report)
    else:
        from lorakit.cli.views import console, print_doctor

        print_doctor(console(), report)
    if not report.ok:
        raise CommandExit(ExitCode.FAILED)


@click.command()
@click.argument("plan_dir", metavar="PLAN", type=PATH)
@with_trainer_options
@click.option("--resume", is_flag=True, help="Continue from the newest saved state (*-state folder) in the output folder.")
@click.option("--resume-if-possible", is_flag=True,
              help="--resume when there is a saved state, a plain start when the plan never ran (requeued jobs).")
@click.option("--fresh", is_flag=True, help="Start again; earlier outputs, log and run.json move to PLAN/previous/TIME/.")
@click.option("--dry-run", is_flag=True, help="Check everything and print the exact command and environment; start nothing.")
@click.option("--no-tensorboard", is_flag=True, help="Do not write lorakit's TensorBoard events.")
@click.option("--plain", is_flag=True, help="Plain progress lines instead of a bar (the default without a terminal).")
@click.option("--every", default=30.0, show_default=True, metavar="SECONDS", help="Seconds between plain progress lines.")
@with_recover_options
def launch(plan_dir: Path, sd_scripts, python, gpus, cpu, resume, resume_if_possible, fresh, dry_run, no_tensorboard, plain, every,
           no_recover, max_recoveries, recover_mode) -> None:
    """Train PLAN with sd-scripts through accelerate, watch it live, and record the run in PLAN/run.json.

    When the trainer dies of CUDA out-of-memory, lorakit re-plans one notch down (the same recipe:
    gradient accumulation, checkpointing, caching, attention; never a value you set), keeps the old plan
    in PLAN/.lorakit-history/ and trains on, resuming from the newest saved state when it can.

    Ctrl-C (or SIGTERM) stops the trainer cleanly: its process group gets SIGINT, then SIGTERM, then
    SIGKILL; press Ctrl-C again to escalate at once. Exit code 0 when the run succeeded, 1 when it
    failed (with a diagnosis and what to do), 130 when it was interrupted.
    """
    from lorakit.cli.views import console
    from lorakit.run.launch import LaunchOptions, prepare_launch
    from lorakit.run.process import Stopper, stop_on_signals
    from lorakit.run.recover import launch as launch_recovering

    options = LaunchOptions(sd_scripts=sd_scripts, python=python, gpus=gpus, cpu=cpu, resume=resume, fresh=fresh,
                            resume_if_possible=resume_if_possible, tensorboard=not no_tensorboard)
    recover = recover_settings(no_recover, max_recoveries, recover_mode)
    out = console()
    if dry_run:
        from lorakit.cli.views import print_setup

        print_setup(out, prepare_launch(plan_dir, options, check_outputs=False))
        return
    from lorakit.cli.display import make_display
    from lorakit.cli.views import print_run
    from lorakit.errors import CommandExit, ExitCode, LaunchError
    from lorakit.watch.logfile import log_tail

    display = make_display(out, plain=True if plain else None, every_s=every)
    stopper = Stopper()
    try:
        with stop_on_signals(stopper):
            record = launch_recovering(plan_dir, options, recover, on_event=display, stopper=stopper)
    finally:
        display.close()
    print_run(out, record)
    for line in record.attempt_lines():  # the starts of a run an out-of-memory recovery went on with
        out.print(f"  {line}", markup=False)
    if record.state == "failed":
        raise LaunchError(f"training failed: {record.diagnosis}.", command=record.command,
                          log_tail=log_tail(Path(record.log)) if record.log else "", fix=record.suggestion)
    if record.state == "interrupted":
        raise CommandExit(ExitCode.INTERRUPTED)


@click.command()
@click.argument("root", metavar="[DIR]", type=PATH, default=Path("plans"))
@options.as_json(help="Print the run records as JSON.")
def runs(root: Path, as_json: bool) -> None:
    """A table of the runs under DIR (plan folders, their previous/ runs; default plans/)."""
    from lorakit.run.record import DamagedRun, find_runs

    found = find_runs(root)
    if as_json:
        emit_json_list(found)
        return
    if not found:
        click.echo(f"No runs under {root} (a run leaves PLAN/run.json).")
        return
    from lorakit.cli.views import console, runs_table

    console().print(runs_table(found, root))
    damaged = [run for run in found if isinstance(run, DamagedRun)]
    if damaged:
        click.echo(f"{len(damaged)} run record(s) are damaged (see the problem column): {damaged[0].fix}.", err=True)


@click.command()
@click.argument("logfile", type=PATH)
@click.option("--tensorboard", type=PATH, metavar="DIR", help="Write lorakit's TensorBoard summaries of the log into DIR.")
@options.as_json(help="Print the summary as JSON.")
def logs(logfile: Path, tensorboard: Path | None, as_json: bool) -> None:
    """Read an sd-scripts console log (lorakit's train.log, or one saved from a GUI run): steps, loss, errors."""
    from lorakit.watch.logfile import read_log

    report = read_log(logfile, tensorboard)
    if as_json:
        emit_json(report)
        return
    from lorakit.cli.views import console, print_log_report

    print_log_report(console(), report)
