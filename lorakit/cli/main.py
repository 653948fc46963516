"""The `lorakit` command: parses options, calls the core, prints. Nothing else lives here.

Only click is imported at module level so that `lorakit --help` stays fast; each command imports
the core modules it needs. Every LorakitError becomes a message on stderr and its exit code here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

PATH = click.Path(path_type=Path)


class LorakitGroup(click.Group):
    """Turns lorakit's errors into one clear paragraph and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        from lorakit.errors import GateError, LorakitError

        try:
            return super().invoke(ctx)
        except GateError as exc:
            from lorakit.cli.views import console, print_findings

            err = console(stderr=True)
            print_findings(err, [f for f in exc.findings if f.level == "error"])
            hint = exc.fix or "Fix the errors above, or pass --force to write the plan anyway."
            click.echo(f"lorakit: {exc.message.rstrip()} {hint}", err=True)
            ctx.exit(exc.exit_code)
        except LorakitError as exc:
            click.echo(f"lorakit: {exc.render()}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("lorakit: interrupted.", err=True)
            ctx.exit(130)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"lorakit: {exc.strerror or exc}{where}.", err=True)
            ctx.exit(1)


@click.group(cls=LorakitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="lorakit", prog_name="lorakit")
def cli() -> None:
    """Plan, fit, launch and watch SDXL LoRA training with kohya-ss sd-scripts.

    \b
    lorakit probe                      what GPU this machine has
    lorakit presets                    the presets and what they set
    lorakit plan DATASET --preset character --target-gpu rtx4090
    """


def _emit_json(data) -> None:
    import json

    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# --- probe ----------------------------------------------------------------------------------------

@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--catalog", is_flag=True, help="List the GPUs --target-gpu knows instead of probing.")
def probe(as_json: bool, catalog: bool) -> None:
    """Show this machine's GPUs (pynvml), RAM, CPUs and disk, and the VRAM budget (80%)."""
    if catalog:
        from lorakit.machine.gpus import catalog as gpu_catalog

        gpus = list(gpu_catalog().values())
        if as_json:
            _emit_json([g.model_dump() | {"vram_gib": round(g.vram_gib, 2), "bf16": g.bf16} for g in gpus])
            return
        for g in gpus:
            click.echo(f"{g.id:16} {g.vram_gib:6.1f} GiB  cc {g.compute_capability:4}  "
                       f"bf16 {'yes' if g.bf16 else 'no ':3}  {g.bf16_tflops:7.1f} TFLOP/s  {g.name}")
        return
    from lorakit.machine.probe import probe as run_probe

    host = run_probe()
    if as_json:
        _emit_json(host.model_dump() | {"gpus": [g.model_dump() | {"budget_gib": round(g.budget_gib, 2)} for g in host.gpus]})
        return
    from lorakit.cli.views import console, print_probe

    print_probe(console(), host)


# --- presets and keys -----------------------------------------------------------------------------

presets_dir_option = click.option(
    "--presets-dir", "presets_dirs", multiple=True, type=PATH,
    help="A folder of extra presets (*.toml); repeatable. The per-user folder is always read.",
)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--copy-to", type=PATH, help="Copy the preset file here, to edit as your own preset.")
@presets_dir_option
def presets(name: str | None, as_json: bool, copy_to: Path | None, presets_dirs: tuple[Path, ...]) -> None:
    """List the presets, or show NAME's resolved values and where each comes from."""
    from lorakit.config.presets import PresetRegistry
    from lorakit.errors import UserError

    registry = PresetRegistry(list(presets_dirs))
    if name is None:
        items = [registry.get(n) for n in registry.names()]
        if as_json:
            _emit_json([{"name": p.name, "kind": p.header.kind, "extends": p.header.extends,
                         "description": p.description, "path": str(p.path), "builtin": p.builtin} for p in items])
            return
        from lorakit.cli.views import console, print_presets

        print_presets(console(), items, {p.name for p in items if registry.shadowed(p.name)})
        return
    preset = registry.get(name)
    if copy_to is not None:
        import shutil

        target = copy_to / preset.path.name if copy_to.is_dir() else copy_to
        if target.exists():
            raise UserError(f"'{target}' already exists; lorakit does not overwrite it.", fix="choose another path")
        shutil.copyfile(preset.path, target)
        click.echo(f"Copied {preset.path} to {target}")
        return
    from lorakit.config.resolve import resolve

    resolution = resolve(registry, [name], [])
    if as_json:
        _emit_json({"name": name, "chain": [p.name for p in resolution.presets], "description": preset.description,
                    "requires": resolution.required, "notes": resolution.notes, "values": resolution.values.to_json()})
        return
    from lorakit.cli.views import console, values_table

    out = console()
    out.print(f"[bold]{name}[/] — {preset.description}")
    out.print(f"applies: {' → '.join(p.name for p in resolution.presets)} (file: {preset.path})")
    for key in resolution.required:
        out.print(f"[yellow]requires[/] --set {key}=...")
    for note in resolution.notes:
        out.print(f"[dim]note:[/] {note}")
    out.print(values_table(resolution.values))


@cli.command()
@click.argument("pattern", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def keys(pattern: str, as_json: bool) -> None:
    """List the keys --set accepts (sd-scripts arguments and lorakit keys), optionally filtered."""
    from lorakit.config.schema import RESERVED_KEYS, registry

    specs = [s for s in registry().values() if pattern in s.name and s.name not in RESERVED_KEYS]
    if as_json:
        _emit_json([{"key": s.name, "type": s.kind, "written_to": s.target, "default": s.default,
                     "choices": s.choices, "help": s.help} for s in specs])
        return
    for s in specs:
        click.echo(f"{s.name:36} {s.kind:12} {s.target:8} {s.help}")


# --- plan -----------------------------------------------------------------------------------------

preset_option = click.option("--preset", "-p", "preset_names", multiple=True,
                             help="A preset to apply (repeatable, applied in order; default sdxl-base).")
set_option = click.option("--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override one value, typed by its key (repeatable): --set network_dim=32.")


@cli.command()
@click.argument("dataset", type=PATH)
@preset_option
@set_option
@click.option("--reg", type=PATH, help="Regularisation images (same folder convention as DATASET).")
@click.option("--token", help="Class tokens for a flat DATASET folder, e.g. 'sks dog'.")
@click.option("--target-gpu", help="Plan for this catalog GPU instead of the probed one (see `lorakit probe --catalog`).")
@click.option("--out", type=PATH, help="The plan folder to write (default: plans/NAME).")
@click.option("--name", help="The plan's and the LoRA file's name (default: the dataset folder's name).")
@click.option("--force", is_flag=True, help="Write even with gate errors, and replace an existing plan (kept in .lorakit-history/).")
@click.option("--json", "as_json", is_flag=True, help="Print plan.json instead of the summary.")
@click.option("--explain", is_flag=True, help="Show every value with its source and reason.")
@click.option("--fit", "fit_mode", type=click.Choice(["speed", "memory", "off"]), default="speed", show_default=True,
              help="Fit what you did not --set to the GPU: the fastest settings that fit, the least memory, or nothing.")
@click.option("--explain-vram", is_flag=True, help="Show the VRAM estimate component by component.")
@click.option("--sd-scripts", "sd_scripts", help="The sd-scripts checkout launch.sh should use.")
@click.option("--python", help="The trainer's Python launch.sh should use.")
@click.option("--from-kohya-gui", "from_kohya_gui", type=PATH, metavar="FILE",
              help="Start from a Kohya SS GUI LoRA config (JSON), applied right after the SDXL base.")
@presets_dir_option
def plan(dataset: Path, preset_names, overrides, reg, token, target_gpu, out, name, force, as_json, explain,
         fit_mode, explain_vram, sd_scripts, python, from_kohya_gui, presets_dirs) -> None:
    """Check DATASET, resolve presets and overrides, fit the GPU, and write a plan folder for sd-scripts."""
    from lorakit.findings import has_errors
    from lorakit.plan.build import PlanRequest, make_plan, write_plan

    request = PlanRequest(
        dataset=dataset, presets=list(preset_names), overrides=list(overrides), reg=reg, token=token,
        target_gpu=target_gpu, out=out, name=name, force=force, presets_dirs=list(presets_dirs),
        sd_scripts=sd_scripts, python=python, fit=fit_mode,
    )
    if from_kohya_gui is not None:
        from lorakit.kohya_gui.importer import import_gui_config

        request.imported = import_gui_config(from_kohya_gui).imported()
    result = make_plan(request)
    write_plan(result, force=force)
    if as_json:
        click.echo(result.files["plan.json"], nl=False)
    else:
        from lorakit.cli.views import console, print_plan

        print_plan(console(), result.plan, explain=explain, explain_vram=explain_vram)
    if has_errors(result.plan.findings):
        sys.exit(1)


# --- calibrate ------------------------------------------------------------------------------------

@cli.command()
@click.argument("plans", nargs=-1, required=True, type=PATH)
@click.option("--file", "path", type=PATH, help="The calibration file (default: $LORAKIT_CALIBRATION, else "
              "~/.config/lorakit/calibration.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def calibrate(plans: tuple[Path, ...], path: Path | None, as_json: bool) -> None:
    """Measure the estimator's overhead and efficiency for each GPU from launched PLANS (their run.json)."""
    from lorakit.run.calibrate import calibrate as run_calibration

    update = run_calibration(list(plans), path)
    if as_json:
        _emit_json({"file": str(update.path), "gpus": {k: v.model_dump() for k, v in update.after.items()},
                    "runs": [{"plan": str(r.plan_dir), "gpu": r.gpu, "overhead_gib": r.overhead_gib,
                              "efficiency": r.efficiency, "skipped": r.skipped} for r in update.runs]})
        return
    from lorakit.cli.views import console, print_calibration

    print_calibration(console(), update)


# --- Kohya SS GUI ---------------------------------------------------------------------------------

@cli.group("export")
def export_group() -> None:
    """Write a plan in another tool's format."""


@export_group.command("kohya-gui")
@click.argument("plan_dir", metavar="PLAN", type=PATH)
@click.option("-o", "--output", type=PATH, help="The JSON file to write (default: PLAN/kohya_gui.json).")
@click.option("--gui-version", type=click.Choice(["master", "v26", "v25", "v24"]), default="master", show_default=True,
              help="The GUI release to write for: its set of LoRA keys and the values it accepts.")
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def export_kohya_gui(plan_dir: Path, output: Path | None, gui_version: str, force: bool) -> None:
    """Write PLAN as a Kohya SS GUI LoRA config that trains the same run (open it with Load in the GUI)."""
    from lorakit.cli.views import console, print_findings
    from lorakit.kohya_gui.export import default_output, export_plan, write_export
    from lorakit.plan.build import load_plan

    plan_data = load_plan(plan_dir)
    exported = export_plan(plan_data, gui_version)
    path = write_export(exported, output or default_output(plan_data), force=force)
    out = console()
    print_findings(out, exported.findings)
    click.echo(f"Wrote {path} (Kohya SS GUI {gui_version}, {len(exported.config)} keys). In the GUI: LoRA → "
               "Training → Configuration → type the path into 'Load/Save Config file' and press Load.")


@cli.group("import")
def import_group() -> None:
    """Turn another tool's config into a lorakit preset."""


@import_group.command("kohya-gui")
@click.argument("file", type=PATH)
@click.option("-o", "--output", type=PATH, metavar="PRESET.toml",
              help="The preset file to write (default: kohya-NAME.toml in your presets folder); never overwritten.")
def import_kohya_gui(file: Path, output: Path | None) -> None:
    """Read a Kohya SS GUI LoRA config (JSON) as the GUI does and write it as a lorakit preset."""
    from lorakit.cli.views import console, print_findings
    from lorakit.kohya_gui.importer import default_preset_path, import_gui_config, write_preset

    imported = import_gui_config(file)
    path = write_preset(imported, output or default_preset_path(file))
    print_findings(console(), imported.findings)
    click.echo(f"Wrote {path}: {len(imported.entries)} value(s) that differ from sdxl-base.")
    click.echo(f"Next: lorakit plan DATASET --preset {path.stem}" + ("" if output is None else f" --presets-dir {path.parent}"))


# --- dataset --------------------------------------------------------------------------------------

@cli.group()
def dataset() -> None:
    """Check a dataset folder, or lay a flat folder out as Kohya repeat folders."""


@dataset.command("check")
@click.argument("path", type=PATH)
@click.option("--reg", type=PATH, help="Regularisation images to check with it.")
@click.option("--token", help="Class tokens for a flat folder.")
@preset_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def dataset_check(path: Path, reg, token, preset_names, overrides, as_json: bool) -> None:
    """Gate 1 on PATH: the findings, a per-folder table and a bucket histogram."""
    from lorakit.findings import has_errors
    from lorakit.plan.datacheck import check_dataset

    report = check_dataset(path, reg=reg, token=token, presets=list(preset_names), overrides=list(overrides))
    analysis = report.analysis
    if as_json:
        _emit_json({"dataset": analysis.stats().model_dump(), "step_math": analysis.steps.model_dump(),
                    "findings": [f.model_dump() for f in report.findings]})
    else:
        from lorakit.cli.views import bucket_table, console, print_findings, step_lines, subsets_table

        out = console()
        out.print(subsets_table(analysis.stats()))
        out.print(bucket_table(analysis.steps))
        for line in step_lines(analysis.steps):
            out.print(line)
        print_findings(out, report.findings)
    if has_errors(report.findings):
        sys.exit(1)


@dataset.command("prepare")
@click.argument("src", type=PATH)
@click.argument("dest", type=PATH)
@click.option("--token", required=True, help="Class tokens, e.g. 'sks dog': the folder becomes N_sks dog.")
@click.option("--repeats", default="auto", show_default=True, help="Repeats per image, or auto (the seeds' step ranges).")
@click.option("--mode", type=click.Choice(["link", "symlink", "copy"]), default="link", show_default=True,
              help="Hard-link (copies where linking is impossible), symlink or copy the files.")
@preset_option
@set_option
def dataset_prepare(src: Path, dest: Path, token: str, repeats: str, mode: str, preset_names, overrides) -> None:
    """Lay flat folder SRC out as DEST/N_TOKEN (images and captions linked or copied; SRC is untouched)."""
    from lorakit.errors import UserError
    from lorakit.plan.prepare import prepare_dataset

    if repeats == "auto":
        count = None
    else:
        try:
            count = int(repeats)
        except ValueError:
            raise UserError(f"--repeats {repeats!r} is neither a whole number nor 'auto'.") from None
    done = prepare_dataset(src, dest, token=token, repeats=count, mode=mode,
                           presets=list(preset_names), overrides=list(overrides))
    click.echo(f"Laid out {done.files} file(s) in {done.folder} ({done.repeats} repeats: {done.repeats_reason}).")
    if done.copied_instead_of_linked:
        click.echo(f"{done.copied_instead_of_linked} file(s) were copied: hard links cannot cross file systems.")
    click.echo(f"Next: lorakit plan {done.folder.parent}")


# --- the Hugging Face Hub -------------------------------------------------------------------------

@cli.command("fetch-model")
@click.argument("plan_dir", metavar="PLAN", type=PATH)
def fetch_model(plan_dir: Path) -> None:
    """Download PLAN's base model, VAE and sd-scripts' tokenizers into the Hugging Face cache.

    Uses huggingface_hub's own progress bars and cache (HF_HOME, HF_HUB_CACHE); what is cached
    already is not downloaded again. Prints the paths sd-scripts will be given and each file's SHA-256.
    """
    from lorakit.models.fetch import ensure_local, relocate
    from lorakit.models.source import ROLE_LABEL, human_bytes
    from lorakit.plan.build import load_plan

    plan = load_plan(plan_dir)
    models = ensure_local(relocate(plan.model), Path(plan.plan_dir))
    for model in models.all():
        what = ROLE_LABEL[model.role]
        how = "downloaded" if model.downloaded else "already here"
        click.echo(f"{what} {model.value}: {how}, {human_bytes(model.bytes)}\n  {model.path}\n  sha256 {model.sha256}")
    click.echo(f"Next: lorakit launch {plan_dir}")


@cli.command()
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


# --- doctor, launch, runs, logs -------------------------------------------------------------------

trainer_options = [
    click.option("--sd-scripts", "sd_scripts", help="The sd-scripts checkout (default: $LORAKIT_SD_SCRIPTS, then vendor/sd-scripts)."),
    click.option("--python", help="The trainer's Python (default: $LORAKIT_PYTHON, then lorakit's own)."),
    click.option("--gpus", help="GPU ids for accelerate's --gpu_ids, e.g. 0 or 0,1 (default: the plan's gpu_ids)."),
    click.option("--cpu", is_flag=True, help="Train on the CPU even if CUDA is there (chosen anyway when it is not)."),
]


def with_trainer_options(function):
    for option in reversed(trainer_options):
        function = option(function)
    return function


@cli.command()
@click.argument("plan_dir", metavar="[PLAN]", type=PATH, required=False)
@with_trainer_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def doctor(plan_dir: Path | None, sd_scripts, python, gpus, cpu, as_json: bool) -> None:
    """Gate 4: check sd-scripts, the trainer's Python and packages, CUDA, the base model and disk (for PLAN)."""
    from lorakit.plan.build import load_plan
    from lorakit.run.doctor import DoctorOptions, run_doctor

    plan = load_plan(plan_dir) if plan_dir is not None else None
    report = run_doctor(plan, DoctorOptions(sd_scripts, python, gpus, cpu))
    if as_json:
        _emit_json(report.model_dump())
    else:
        from lorakit.cli.views import console, print_doctor

        print_doctor(console(), report)
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("plan_dir", metavar="PLAN", type=PATH)
@with_trainer_options
@click.option("--resume", is_flag=True, help="Continue from the newest saved state (*-state folder) in the output folder.")
@click.option("--fresh", is_flag=True, help="Start again; earlier outputs, log and run.json move to PLAN/previous/TIME/.")
@click.option("--dry-run", is_flag=True, help="Check everything and print the exact command and environment; start nothing.")
@click.option("--no-tensorboard", is_flag=True, help="Do not write lorakit's TensorBoard events.")
@click.option("--plain", is_flag=True, help="Plain progress lines instead of a bar (the default without a terminal).")
@click.option("--every", default=30.0, show_default=True, metavar="SECONDS", help="Seconds between plain progress lines.")
def launch(plan_dir: Path, sd_scripts, python, gpus, cpu, resume, fresh, dry_run, no_tensorboard, plain, every) -> None:
    """Train PLAN with sd-scripts through accelerate, watch it live, and record the run in PLAN/run.json.

    Ctrl-C (or SIGTERM) stops the trainer cleanly: its process group gets SIGINT, then SIGTERM, then
    SIGKILL; press Ctrl-C again to escalate at once. Exit code 0 when the run succeeded, 1 when it
    failed (with a diagnosis and what to do), 130 when it was interrupted.
    """
    from lorakit.cli.views import console
    from lorakit.run.launch import LaunchOptions, prepare_launch, run_plan
    from lorakit.run.process import Stopper, stop_on_signals

    options = LaunchOptions(sd_scripts=sd_scripts, python=python, gpus=gpus, cpu=cpu, resume=resume, fresh=fresh,
                            tensorboard=not no_tensorboard)
    out = console()
    if dry_run:
        from lorakit.cli.views import print_setup

        print_setup(out, prepare_launch(plan_dir, options, check_outputs=False))
        return
    from lorakit.cli.display import make_display
    from lorakit.cli.views import print_run
    from lorakit.errors import LaunchError
    from lorakit.run.launch import log_tail

    display = make_display(out, plain=True if plain else None, every_s=every)
    stopper = Stopper()
    try:
        with stop_on_signals(stopper):
            record = run_plan(plan_dir, options, on_event=display, stopper=stopper)
    finally:
        display.close()
    print_run(out, record)
    if record.state == "failed":
        raise LaunchError(f"training failed: {record.diagnosis}.", command=record.command,
                          log_tail=log_tail(Path(record.log)) if record.log else "", fix=record.suggestion)
    if record.state == "interrupted":
        sys.exit(130)


@cli.command()
@click.argument("root", metavar="[DIR]", type=PATH, default=Path("plans"))
@click.option("--json", "as_json", is_flag=True, help="Print the run records as JSON.")
def runs(root: Path, as_json: bool) -> None:
    """A table of the runs under DIR (plan folders, their previous/ runs; default plans/)."""
    from lorakit.run.record import find_runs

    found = find_runs(root)
    if as_json:
        _emit_json([{"record": str(path)} | record.model_dump() for path, record in found])
        return
    if not found:
        click.echo(f"No runs under {root} (a run leaves PLAN/run.json).")
        return
    from lorakit.cli.views import console, runs_table

    console(wide=True).print(runs_table(found))


@cli.command()
@click.argument("logfile", type=PATH)
@click.option("--tensorboard", type=PATH, metavar="DIR", help="Write lorakit's TensorBoard summaries of the log into DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def logs(logfile: Path, tensorboard: Path | None, as_json: bool) -> None:
    """Read an sd-scripts console log (lorakit's train.log, or one saved from a GUI run): steps, loss, errors."""
    from lorakit.watch.logfile import read_log

    report = read_log(logfile, tensorboard)
    if as_json:
        import dataclasses

        _emit_json(dataclasses.asdict(report))
        return
    from lorakit.cli.views import console, print_log_report

    print_log_report(console(), report)


# --- batch ----------------------------------------------------------------------------------------

@cli.group()
def batch() -> None:
    """Plan, run and compare many trainings: presets × sweeps, resumable, one run per GPU."""


@batch.command("plan")
@click.argument("dataset", type=PATH)
@click.option("--preset", "-p", "preset_names", multiple=True,
              help="One alternative per --preset (repeatable); join presets with + to combine them, e.g. pony+character.")
@click.option("--sweep", "sweeps", multiple=True, metavar="KEY=V1,V2,...",
              help="Try each value of KEY (repeatable; the batch is every combination). Separate values with | if they contain commas.")
@set_option
@click.option("--reg", type=PATH, help="Regularisation images (same folder convention as DATASET).")
@click.option("--token", help="Class tokens for a flat DATASET folder.")
@click.option("--target-gpu", help="Plan every run for this catalog GPU instead of the probed one.")
@click.option("--out", type=PATH, required=True, help="The batch folder: one plan folder per run plus batch.json.")
@click.option("--name", help="Base name of the LoRA files (default: the dataset folder's name).")
@click.option("--force", is_flag=True, help="Plan combinations with gate errors too, and re-plan an existing batch.")
@click.option("--json", "as_json", is_flag=True, help="Print batch.json instead of the summary.")
@click.option("--sd-scripts", "sd_scripts", help="The sd-scripts checkout the plans should use.")
@click.option("--python", help="The trainer's Python the plans should use.")
@presets_dir_option
def batch_plan(dataset: Path, preset_names, sweeps, overrides, reg, token, target_gpu, out, name, force, as_json,
               sd_scripts, python, presets_dirs) -> None:
    """Write one plan folder per combination of the --preset alternatives and --sweep values."""
    from lorakit.batch.manifest import BatchRequest, plan_batch

    manifest = plan_batch(BatchRequest(
        dataset=dataset, out=out, presets=list(preset_names), sweeps=list(sweeps), overrides=list(overrides),
        reg=reg, token=token, target_gpu=target_gpu, name=name, force=force, presets_dirs=list(presets_dirs),
        sd_scripts=sd_scripts, python=python,
    ))
    if as_json:
        _emit_json(manifest.model_dump(mode="json"))
        return
    for run in manifest.runs:
        mark = "planned" if run.status == "planned" else "[skipped: gate errors]"
        click.echo(f"{run.id}  {mark}")
        for finding in run.findings:
            click.echo(f"    {finding.code}: {finding.message}")
    planned = len(manifest.planned())
    if not planned:
        click.echo(f"No run could be planned in {out}: every combination has gate errors (above).", err=True)
        sys.exit(1)
    click.echo(f"{planned} of {len(manifest.runs)} run(s) planned in {out}. Next: lorakit batch run {out}")


ACTION_TEXT = {"start": "started", "resume": "resumed from its saved state", "restart": "started again"}


@batch.command("run")
@click.argument("batch_dir", type=PATH)
@click.option("--gpus", help="GPU ids to use, one run per GPU at a time (e.g. 0,1); default: one run at a time.")
@click.option("--sd-scripts", "sd_scripts", help="The sd-scripts checkout (default: $LORAKIT_SD_SCRIPTS, then vendor/sd-scripts).")
@click.option("--python", help="The trainer's Python (default: $LORAKIT_PYTHON, then lorakit's own).")
@click.option("--retry-failed", is_flag=True, help="Run failed runs again (from scratch; their old outputs are kept aside).")
@click.option("--stop-on-failure", is_flag=True, help="Start no new run once one has failed.")
@click.option("--no-tensorboard", is_flag=True, help="Do not write lorakit's TensorBoard events.")
@click.option("--every", default=60.0, show_default=True, metavar="SECONDS", help="Seconds between progress lines per run.")
def batch_run(batch_dir: Path, gpus, sd_scripts, python, retry_failed, stop_on_failure, no_tensorboard, every) -> None:
    """Train the batch's plans with the launch code; rerunning resumes (succeeded runs are skipped).

    An interrupted run resumes from its newest saved state (or starts again without one); failed runs
    rerun only with --retry-failed. Ctrl-C stops every running trainer cleanly. Exit code 1 when a run
    failed or could not start, 130 when interrupted.
    """
    from lorakit.batch.run import BatchRunOptions, run_batch
    from lorakit.cli.display import PlainDisplay
    from lorakit.cli.views import console
    from lorakit.errors import UserError
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

    def on_outcome(outcome) -> None:
        from rich.markup import escape

        where = f" on GPU {outcome.slot}" if outcome.slot is not None else ""
        run = escape(f"[{outcome.run}]")
        if outcome.action == "skip":
            out.print(f"{run} skipped: {escape(outcome.reason)}")
        elif outcome.error:
            out.print(f"{run} [red]could not start[/]{where}: {escape(outcome.error)}")
        elif outcome.state is None:
            out.print(f"{run} not started: {escape(outcome.reason)}")
        else:
            out.print(f"{run} {outcome.state}{where} ({ACTION_TEXT[outcome.action]})")

    options = BatchRunOptions(gpus=slots, sd_scripts=sd_scripts, python=python, retry_failed=retry_failed,
                              stop_on_failure=stop_on_failure, tensorboard=not no_tensorboard)
    stopper = Stopper()
    with stop_on_signals(stopper, interrupt_when_idle=False):
        result = run_batch(batch_dir, options, stopper=stopper, on_event=on_event, on_outcome=on_outcome)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    failed = result.failed
    counts = {state: sum(o.state == state for o in result.outcomes) for state in ("succeeded", "interrupted")}
    waiting = sum(o.state is None and not o.error for o in result.outcomes) + result.not_reached
    click.echo(f"{result.total} run(s): {counts['succeeded']} succeeded, {len(failed)} failed or could not start, "
               f"{counts['interrupted']} interrupted, {waiting} not started. `lorakit batch status {batch_dir}` compares them.")
    if stopper.stopped.is_set():
        sys.exit(130)
    if failed:
        sys.exit(1)


@batch.command("status")
@click.argument("batch_dir", type=PATH)
@click.option("--json", "fmt", flag_value="json", help="Print JSON.")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV.")
@click.option("--markdown", "fmt", flag_value="markdown", help="Print a Markdown table.")
def batch_status(batch_dir: Path, fmt: str | None) -> None:
    """One row per run: swept values, state, steps, final and lowest loss, time, speed, peak VRAM, output; ★ the best."""
    from lorakit.batch.status import batch_rows, to_csv, to_markdown

    rows = batch_rows(batch_dir)
    if fmt == "json":
        _emit_json([row.model_dump() for row in rows])
    elif fmt == "csv":
        click.echo(to_csv(rows), nl=False)
    elif fmt == "markdown":
        click.echo(to_markdown(rows), nl=False)
    else:
        from lorakit.cli.views import batch_table, console

        console(wide=True).print(batch_table(rows))


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


def main() -> None:
    cli(prog_name="lorakit")


if __name__ == "__main__":
    main()
