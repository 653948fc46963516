"""What the commands print for people (rich tables); JSON output is the models' own dump."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.config.family import FAMILIES
from lorakit.config.values import HEADLINE_KEYS
from lorakit.findings import EXAMPLES, Finding
from lorakit.util.text import duration_text, gib_text, hours_text, loss_text, show

if TYPE_CHECKING:
    from rich.console import Console

    from lorakit.batch.run import Outcome
    from lorakit.config.presets import Preset
    from lorakit.config.resolve import Resolution
    from lorakit.config.values import Values
    from lorakit.dataset.steps import StepMath
    from lorakit.machine.probe import HostInfo
    from lorakit.machine.trainer import SdScriptsCheckout
    from lorakit.models.source import ModelSection
    from lorakit.plan.build import Plan, VramPart
    from lorakit.plan.datacheck import DatasetReport
    from lorakit.plan.vramreport import VramReport
    from lorakit.run.calibrate import CalibrationUpdate

LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Without a terminal there is no width to fit: rich would wrap at 80 columns, in the middle of values.
# Text lines are then never wrapped, and tables get this much room, far more than any row needs.
PIPED_WIDTH = 1000


def console(stderr: bool = False) -> Console:
    """A console for people: wrapped to a terminal's width, or unwrapped lines when piped to a file or program."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, soft_wrap=True, width=PIPED_WIDTH)
    return out


def print_findings(out: Console, findings: list[Finding]) -> None:
    if not findings:
        out.print("[green]No findings: every gate passed.[/]")
        return
    from rich.markup import escape

    for f in findings:
        out.print(f"[{LEVEL_STYLE[f.level]}]{f.level.upper():7}[/] [dim]{f.code}[/] {escape(f.message)}")
        if f.fix:
            out.print(f"        [dim]fix:[/] {escape(f.fix)}")
        for path in f.paths:
            out.print(f"        [dim]{escape(path)}[/]")


def values_table(values: Values, keys: list[str] | None = None, title: str | None = None, *, why: bool = True):
    """Value and source side by side; with `why`, the reason and what the value replaced."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_edge=False, pad_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", style="cyan", no_wrap=True)
    if why:
        table.add_column("why", style="dim", overflow="fold")
    for key in keys if keys is not None else list(values):
        entry = values.entry(key)
        if entry is None or entry.value is None:
            continue
        row = [key, escape(show(entry.value)), escape(entry.source)]
        if why:
            earlier = [e for e in entry.replaced if e.value != entry.value][-2:]
            note = entry.note + (" (was " + ", ".join(f"{show(e.value)} from {e.source}" for e in earlier) + ")" if earlier else "")
            row.append(escape(note.strip()))
        table.add_row(*row)
    return table


def step_lines(steps: StepMath) -> list[str]:
    lines = [
        f"{steps.num_train_images} train samples per epoch (images × repeats)"
        + (f" + {steps.reg_samples} regularisation samples" if steps.reg_samples else ""),
        f"{len(steps.buckets)} bucket(s) → {steps.batches_per_epoch} batches of {steps.batch_size} per epoch"
        + (f" ({steps.batches_per_process} per process × {steps.num_processes})" if steps.num_processes > 1 else ""),
    ]
    if steps.validation_images:
        lines.insert(1, f"{steps.validation_images} image(s) held out of training for validation (validation_split)")
    if steps.gradient_accumulation_steps > 1:
        lines.append(f"gradient accumulation {steps.gradient_accumulation_steps} → {steps.steps_per_epoch} steps per epoch")
    lines.append(f"{steps.epochs} epochs × {steps.steps_per_epoch} steps = [bold]{steps.total_steps} total steps[/]")
    return lines


def bucket_table(steps: StepMath):
    from rich.table import Table

    table = Table(title="buckets", show_edge=False, pad_edge=False)
    for column in ("width", "height", "images", "samples", "batches"):
        table.add_column(column, justify="right")
    table.add_column("", style="green")
    widest = max((b.samples for b in steps.buckets), default=1)
    for b in steps.buckets:
        bar = "█" * max(1, round(20 * b.samples / widest))
        table.add_row(str(b.width), str(b.height), str(b.images), str(b.samples), str(b.batches), bar)
    return table


def subsets_table(plan_dataset: Any):
    from rich.table import Table

    table = Table(title="folders", show_edge=False, pad_edge=False)
    for column in ("folder", "images", "captions", "repeats", "from", "class tokens", "seen per image"):
        table.add_column(column)
    for s in plan_dataset.subsets:
        table.add_row(
            s.folder + (" (reg)" if s.is_reg else ""), str(s.images), str(s.captions), str(s.num_repeats),
            s.repeats_source, s.class_tokens or "", "" if s.steps_per_image is None else str(s.steps_per_image),
        )
    return table


def held_out_lines(plan_dataset: Any) -> list[str]:
    """Which images validation_split keeps out of training, per folder (plan.json lists them all)."""
    lines = []
    for s in plan_dataset.subsets:
        if s.held_out:
            names = ", ".join(s.held_out_images[:EXAMPLES]) + (" …" if s.held_out > EXAMPLES else "")
            lines.append(f"held out of '{s.folder}' for validation: {s.held_out} of {s.images} ({names})")
    return lines


def estimate_lines(plan: Plan) -> list[str]:
    """The VRAM estimate against the budget, and the ETA."""
    lines = []
    vram, time = plan.vram, plan.time
    memory = "RAM" if plan.target.device == "cpu" else "VRAM"
    if vram is not None:
        verdict = "[green]fits[/]" if vram.fits else f"[bold red]over by {vram.estimate_gib - vram.budget_gib:.1f} GiB[/]"
        lines.append(f"{memory}: est. [bold]{vram.estimate_gib:.1f} GiB[/] of the {vram.budget_gib:.1f} GiB budget — {verdict} "
                     f"(--fit {vram.fit}; overhead {'calibrated' if vram.calibrated else 'assumed'}; --explain-vram shows the parts)")
        if vram.ram_gib is not None and plan.target.device != "cpu":
            lines.append(f"system RAM: {vram.ram_text()}")
    if time is not None and time.seconds_per_step is not None and time.total_hours is not None:
        if time.mfu is None or time.peak_tflops is None:
            where = time.efficiency_source  # the CPU target's rough figure
        else:
            where = "calibrated" if time.calibrated else f"assumed {time.mfu:.0%} of {time.peak_tflops:g} TFLOP/s"
        lines.append(f"ETA: ~{time.seconds_per_step:.2f} s/step × {plan.total_steps} steps ≈ [bold]{hours_text(time.total_hours)}[/] "
                     f"of training ({where})")
    elif time is not None:
        lines.append("ETA: unknown (the GPU is not in the catalog, so its peak FLOP/s is unknown)")
    return lines


def vram_table(plan: Plan, vram: VramReport, parts: list[VramPart]):
    """Each component of the VRAM estimate with how planning counted it (`lorakit plan --explain-vram`)."""
    from rich.table import Table

    table = Table(title=f"VRAM estimate on {plan.target.name}", show_edge=False, pad_edge=False)
    table.add_column("component", style="bold", no_wrap=True)
    table.add_column("GiB", justify="right")
    table.add_column("how", style="dim", overflow="fold")
    for part in parts:
        table.add_row(part.name, f"{part.gib:.2f}", part.how)
    table.add_row("[bold]estimate[/]", f"[bold]{vram.estimate_gib:.2f}[/]", "peak of one training step")
    table.add_row("budget", f"{vram.budget_gib:.2f}", f"{vram.vram_total_gib:.1f} GiB less the 20% safety margin (free VRAM, if less)")
    return table


def print_calibration(out: Console, update: CalibrationUpdate) -> None:
    from rich.markup import escape
    from rich.table import Table

    runs = Table(title="runs", show_edge=False, pad_edge=False)
    for column in ("plan", "GPU", "overhead GiB", "efficiency", "not derived"):
        runs.add_column(column, overflow="fold")
    for r in update.runs:
        runs.add_row(escape(str(r.plan_dir)), r.gpu or "", "" if r.overhead_gib is None else f"{r.overhead_gib:.2f}",
                     "" if r.efficiency is None else f"{r.efficiency:.1%}", escape("; ".join(r.skipped)))
    out.print(runs)
    changed = [gpu for gpu in update.after if update.after[gpu] != update.before.get(gpu)]
    if not changed:
        out.print(f"Nothing to calibrate; {escape(str(update.path))} is unchanged.", soft_wrap=True)
        return
    for gpu in changed:
        new, old = update.after[gpu], update.before.get(gpu)
        was = f" (was {old.overhead_gib} GiB, {old.efficiency})" if old else ""
        out.print(f"{gpu}: overhead {new.overhead_gib} GiB, efficiency {new.efficiency} at batch 1{was}")
    out.print(f"Wrote {escape(str(update.path))}; `lorakit plan` uses it from now on.", soft_wrap=True)


def print_plan(out: Console, plan: Plan, *, explain: bool = False, written: bool = True,
               vram_parts: list[VramPart] | None = None) -> None:
    """The plan's summary; with `vram_parts` (from planning), the VRAM estimate part by part too."""
    from rich.markup import escape

    values = plan.value_set
    target = plan.target
    trains = f"{escape(FAMILIES[plan.family].title)} ({plan.script}), " if plan.family in FAMILIES else ""
    out.print(f"[bold]Plan {escape(plan.name)}[/] — {trains}presets: {', '.join(plan.presets)}")
    if target.device == "cpu":
        out.print(f"Device: {escape(target.name)}: trains on the CPU (accelerate --cpu), RAM budget "
                  f"{target.budget_gib:.1f} GiB (80%)")
    else:
        out.print(f"GPU: {escape(target.name)} ({target.source}), {target.vram_total_gib:.1f} GiB, "
                  f"budget {target.budget_gib:.1f} GiB (80%), bf16 {'yes' if target.bf16 else 'no'}")
    for line in model_lines(plan.model):
        out.print(escape(line))
    if plan.sd_scripts is not None:
        out.print(escape(sd_scripts_line(plan.sd_scripts, plan.sd_scripts_commit)))
    out.print(subsets_table(plan.dataset))
    for line in held_out_lines(plan.dataset):
        out.print(line, markup=False)
    for line in step_lines(plan.step_math):
        out.print(line)
    keep = [s for s in plan.saves if s.kept]
    states = sum(1 for s in plan.saves if s.state_dir and s.state_kept)
    kept_states = f", {states} state folder(s) kept" if states else ""
    out.print(f"saves: {len(keep)} file(s){kept_states}, the last [bold]{escape(plan.saves[-1].file)}[/]"
              if plan.saves else "saves: none")
    if plan.sample_steps:
        shown = ", ".join(str(s) for s in plan.sample_steps[:8]) + (" …" if len(plan.sample_steps) > 8 else "")
        out.print(f"samples at steps: {shown}")
    for line in estimate_lines(plan):
        out.print(line)
    if vram_parts is not None and plan.vram is not None:
        out.print(vram_table(plan, plan.vram, vram_parts))
    for note in plan.notes:
        out.print(f"[dim]note:[/] {escape(note)}")
    keys = None if explain else [k for k in HEADLINE_KEYS if k in values]
    out.print(values_table(values, keys, title="values" if explain else "main values (--explain shows all, with reasons)",
                           why=explain))
    print_findings(out, plan.findings)
    if written:
        out.print(f"\nWrote {', '.join(plan.files)} to [bold]{escape(plan.plan_dir)}[/]")
        out.print(f"Next: lorakit launch {escape(plan.plan_dir)}")


def sd_scripts_line(found: SdScriptsCheckout, written_for: str) -> str:
    """Which sd-scripts the plan was made beside, and the commit lorakit writes for."""
    follows = f"lorakit writes for {written_for[:8]}"
    if not found.has_train_script:
        return f"sd-scripts: none at {found.path} ({found.found_by}); {follows}"
    version = f" ({found.version})" if found.version else ""
    commit = found.commit[:8] if found.commit != "unknown" else "commit unknown"
    return f"sd-scripts: {found.path}, {commit}{version}; {follows}"


def model_lines(section: ModelSection) -> list[str]:
    """One line per model input: what it is and whether it is cached, local or still to download."""
    from lorakit.models.source import status_line

    lines = [f"{s.label}: {s.reference} — {status_line(s, section.offline)}" for s in section.files()]
    waiting = [s.value for s in section.tokenizers if s.status == "download"]
    if waiting:
        lines.append(f"tokenizers: {', '.join(waiting)} not in the Hub cache; sd-scripts downloads them when it starts")
    return lines


def print_probe(out: Console, host: HostInfo) -> None:
    from rich.markup import escape

    if host.gpus:
        for gpu in host.gpus:
            known = f", catalog {gpu.catalog_id}" if gpu.catalog_id else ""
            free = f", {gpu.vram_free_mib / 1024:.1f} GiB free" if gpu.vram_free_mib is not None else ""
            out.print(f"GPU {gpu.index}: [bold]{escape(gpu.name)}[/] — {gpu.vram_total_gib:.1f} GiB{free}, "
                      f"compute capability {gpu.compute_capability}, bf16 {'yes' if gpu.bf16 else 'no'}{known}")
            out.print(f"       VRAM budget for training: {gpu.budget_gib:.1f} GiB (80% of total, 20% safety margin)")
        out.print(f"driver: {host.driver}")
    else:
        out.print(f"[yellow]No NVIDIA GPU:[/] {escape(host.no_gpu_reason or 'none found')}.")
        out.print("Plan for a card you do not have with --target-gpu (see `lorakit probe --catalog`).")
    out.print(f"RAM: {host.ram_total_gib:.1f} GiB ({host.ram_available_gib:.1f} available), CPUs: {host.cpu_count}, "
              f"free disk at {escape(host.disk_path)}: {host.disk_free_gib:.1f} GiB")


def print_preset(out: Console, name: str, preset: Preset, resolution: Resolution) -> None:
    """`lorakit presets NAME`: what the preset applies, what it requires, and the values it resolves to."""
    from rich.markup import escape

    out.print(f"[bold]{escape(name)}[/] — {escape(preset.description)}")
    out.print(f"applies: {' → '.join(p.name for p in resolution.presets)} (file: {escape(str(preset.path))})")
    for key in resolution.required:
        out.print(f"[yellow]requires[/] --set {key}=...")
    for note in resolution.notes:
        out.print(f"[dim]note:[/] {escape(note)}")
    out.print(values_table(resolution.values))


def print_dataset_report(out: Console, report: DatasetReport) -> None:
    """`lorakit dataset check`: the folders, the buckets, the step math and Gate 1's findings."""
    stats = report.analysis.stats()
    out.print(subsets_table(stats))
    for line in held_out_lines(stats):
        out.print(line, markup=False)
    out.print(bucket_table(report.analysis.steps))
    for line in step_lines(report.analysis.steps):
        out.print(line)
    print_findings(out, report.findings)


def print_presets(out: Console, presets: list[Preset], shadowed: set[str]) -> None:
    """One table per family (its base presets and those made for it alone), then the presets for every family."""
    from rich.markup import escape
    from rich.table import Table

    from lorakit.config.family import FAMILIES

    groups: dict[str, list[Preset]] = {}
    for p in presets:
        home = p.header.family or (", ".join(p.header.families) if p.header.families else "")
        groups.setdefault(home, []).append(p)
    order = [*(name for name in FAMILIES if name in groups), *sorted(k for k in groups if k and k not in FAMILIES), ""]
    for home in [key for key in order if key in groups]:
        title = (escape(f"{FAMILIES[home].title} (--preset {FAMILIES[home].base_preset} picks it)") if home in FAMILIES
                 else f"for {home}" if home else "for every family (with a family's own values where noted)")
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column, style in (("preset", "bold"), ("kind", None), ("extends", None)):
            table.add_column(column, style=style)
        table.add_column("description", overflow="fold")
        for p in groups[home]:
            origin = "" if p.builtin else (" (user, replaces built-in)" if p.name in shadowed else " (user)")
            own = f" [dim](own values for {', '.join(sorted(p.by_family))})[/]" if p.by_family and not home else ""
            table.add_row(p.name + origin, p.header.kind, ", ".join(p.header.extends), escape(p.description) + own)
        out.print(table)


STATE_STYLE = {"succeeded": "bold green", "failed": "bold red", "interrupted": "yellow", "running": "cyan",
               "damaged": "bold red"}


def print_doctor(out: Console, report: Any) -> None:
    from rich.markup import escape

    version = f", version {report.sd_scripts_version}" if report.sd_scripts_version else ""
    out.print(f"sd-scripts: {escape(report.sd_scripts)} ({report.sd_scripts_found_by}), commit {report.sd_scripts_commit}{version}")
    if report.sd_scripts_checked_by:
        out.print(f"plan checked by: {escape(report.sd_scripts_checked_by)}"
                  + (" (cached verdict)" if report.sd_scripts_verdict_cached else ""))
    counts = report.sd_scripts_counts
    if counts is not None:
        out.print(f"sd-scripts counts: {counts.num_train_images} train images × repeats, {counts.num_reg_images} reg, "
                  f"{counts.batches_per_epoch} batches per epoch, {counts.epochs} epoch(s), {counts.total_steps} steps")
    out.print(f"trainer Python: {escape(report.python)} ({report.python_found_by})"
              + (f", Python {report.python_version}" if report.python_version else ""))
    if report.packages:
        out.print("packages: " + ", ".join(f"{name} {version or '[red]missing[/]'}" for name, version in report.packages.items()))
    out.print(f"CUDA devices: {report.cuda_devices}" + (" → training on the CPU (accelerate --cpu)" if report.cpu else ""))
    for line in report.model_files or ([f"base model: {report.base_model}"] if report.base_model else []):
        out.print(escape(line))
    if report.free_disk_gib is not None:
        out.print(f"free disk for outputs: {report.free_disk_gib:.1f} GiB")
    print_findings(out, report.findings)


def print_run(out: Console, record: Any) -> None:
    from rich.markup import escape

    out.print(f"[{STATE_STYLE[record.state]}]{record.state}[/] — {escape(record.plan)}: "
              f"{record.steps_done}/{record.total_steps or record.planned_steps or '?'} steps, "
              f"final loss {loss_text(record.last_loss)} (lowest {loss_text(record.min_loss)}), {duration_text(record.duration_s)}"
              + (f", {record.seconds_per_step:.2f} s/step" if record.seconds_per_step else "")
              + f", peak GPU memory {gib_text(record.peak_vram_gib)}")
    for output in record.outputs:
        out.print(f"  {escape(output.path)} ({output.bytes / 1e6:.1f} MB, {len(output.metadata)} metadata keys)")
    if record.diagnosis:
        out.print(f"[bold]diagnosis:[/] {escape(record.diagnosis)}")
    if record.suggestion:
        out.print(f"[bold]next:[/] {escape(record.suggestion)}")
    out.print(f"[dim]record: {escape(record.plan_dir)}/run.json · log: {escape(record.log or '')}"
              + (f" · tensorboard --logdir {escape(str(Path(record.tensorboard).parent.parent))}" if record.tensorboard else "")
              + "[/]")


def runs_table(runs: list[Any], root: Path):
    """The runs found under `root`; the folder column tells apart plans of one name (relative to `root`)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("plan", no_wrap=True)
    table.add_column("folder", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for column in ("steps", "loss", "time", "s/step", "VRAM"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("problem")
    for run in runs:
        path = Path(run.record)
        folder = escape(_relative_folder(path.parent, root))
        style = STATE_STYLE.get(run.state, "yellow")
        if run.state == "damaged":
            table.add_row("?", folder, "", f"[{style}]damaged[/]", "–", "–", "–", "–", "–", escape(run.damage))
            continue
        # a "stale" record: lorakit was killed while watching; the next launch of the plan closes it
        earlier = " (earlier)" if path.parent.parent.name == "previous" else ""
        table.add_row(
            escape(run.plan) + earlier, folder, (run.started or "")[5:16].replace("T", " "), f"[{style}]{run.state}[/]{run.attempts_note}",
            f"{run.steps_done}/{run.total_steps or run.planned_steps or '?'}", loss_text(run.last_loss),
            duration_text(run.duration_s), f"{run.seconds_per_step:.2f}" if run.seconds_per_step else "–",
            gib_text(run.peak_vram_gib), escape(run.problem or ""),
        )
    return table


def _relative_folder(folder: Path, root: Path) -> str:
    base = root.parent if root.is_file() else root
    try:
        return str(folder.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(folder)


def print_log_report(out: Console, report: Any) -> None:
    from rich.markup import escape

    out.print(f"{escape(report.path)}: {report.steps_done}/{report.total_steps or '?'} steps"
              + (f", epoch {report.epoch}/{report.epochs}" if report.epoch else "")
              + f", final loss {loss_text(report.last_loss)} (lowest {loss_text(report.min_loss)})"
              + (f", {report.seconds_per_step:.2f} s/step" if report.seconds_per_step else ""))
    out.print(f"{len(report.checkpoints)} checkpoint(s) saved" + ("; model saved." if report.model_saved else "; no 'model saved.'"))
    for problem in report.problems:
        out.print(f"[bold red]{problem.kind}:[/] {escape(problem.message)}")
    for error in report.errors:
        out.print(f"[red]{escape(error)}[/]")
    if report.tensorboard:
        out.print(f"TensorBoard events written to {escape(report.tensorboard)} (tensorboard --logdir {escape(report.tensorboard)})")


def command_lines(command: list[str]) -> list[list[str]]:
    """A trainer command as people read it: `python -m module`, then one option (and its value) per line."""
    lines = [command[:3]]
    for word in command[3:]:
        last = lines[-1]
        if len(last) == 1 and last[0].startswith("--") and not word.startswith("--"):
            last.append(word)
        else:
            lines.append([word])
    return lines


def print_setup(out: Console, setup: Any) -> None:
    """What `launch --dry-run` shows: warnings, the environment lorakit sets, the exact command."""
    import shlex

    from rich.markup import escape

    for warning in setup.warnings:
        out.print(f"[yellow]WARNING[/] {escape(warning)}")
    if setup.resume_from:
        out.print(f"resumes from {escape(str(setup.resume_from))}")
    out.print("environment (set by lorakit):")
    for key, value in setup.env_changes.items():
        out.print(f"  {escape(key)}={escape(shlex.quote(value))}", soft_wrap=True)
    out.print(f"in folder (the plan's paths are relative to it): {escape(shlex.quote(str(setup.plan_dir)))}", soft_wrap=True)
    out.print("command:")
    text = " \\\n".join("  " + " ".join(shlex.quote(w) for w in line) for line in command_lines(setup.command))
    out.print(escape(text), soft_wrap=True)


def batch_table(rows: list[Any]):
    """`lorakit batch status`: the rows of lorakit.batch.status, best run starred."""
    from rich.markup import escape
    from rich.table import Table

    from lorakit.batch.status import COLUMNS, cells

    table = Table(show_edge=False, pad_edge=False)
    for column in COLUMNS:
        table.add_column("" if column == "best" else column.replace("_", " "),
                         justify="right" if column in ("steps", "final_loss", "min_loss", "it_per_s", "peak_vram_gib") else "left",
                         overflow="fold" if column == "why" else "ellipsis", no_wrap=column != "why")
    for row in rows:
        text = cells(row)
        style = STATE_STYLE.get(row.state)
        table.add_row(*[f"[{style}]{escape(text[c])}[/]" if c == "state" and style else escape(text[c]) for c in COLUMNS])
    return table


ACTION_TEXT = {"start": "started", "resume": "resumed from its saved state", "restart": "started again"}


def outcome_line(outcome: Outcome) -> str:
    """`lorakit batch run`: what happened to one run, as it happens."""
    from rich.markup import escape

    where = f" on GPU {outcome.slot}" if outcome.slot is not None else ""
    run = escape(f"[{outcome.run}]")
    if outcome.action == "skip":
        return f"{run} skipped: {escape(outcome.reason)}"
    if outcome.error:
        return f"{run} [red]could not start[/]{where}: {escape(outcome.error)}"
    if outcome.state is None:
        return f"{run} not started: {escape(outcome.reason)}"
    return f"{run} {outcome.state}{where} ({ACTION_TEXT[outcome.action]})"
