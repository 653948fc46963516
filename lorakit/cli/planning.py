"""Commands that look and plan, and never train: probe, presets, keys, plan, dataset check/prepare."""

from __future__ import annotations

from pathlib import Path

import click

from lorakit.cli import options
from lorakit.cli.options import PATH, emit_json, emit_json_list


@click.command()
@options.as_json()
@click.option("--catalog", is_flag=True, help="List the GPUs --target-gpu knows instead of probing.")
def probe(as_json: bool, catalog: bool) -> None:
    """Show this machine's GPUs (pynvml), RAM, CPUs and disk, and the VRAM budget (80%)."""
    if catalog:
        from lorakit.machine.gpus import CatalogEntry
        from lorakit.machine.gpus import catalog as gpu_catalog

        gpus = list(gpu_catalog().values())
        if as_json:
            emit_json_list([CatalogEntry.of(g) for g in gpus])
            return
        for g in gpus:
            click.echo(f"{g.id:16} {g.vram_gib:6.1f} GiB  cc {g.compute_capability:4}  "
                       f"bf16 {'yes' if g.bf16 else 'no ':3}  {g.bf16_tflops:7.1f} TFLOP/s  {g.name}")
        return
    from lorakit.machine.probe import probe as run_probe

    host = run_probe()
    if as_json:
        emit_json(host)
        return
    from lorakit.cli.views import console, print_probe

    print_probe(console(), host)


@click.command()
@click.argument("name", required=False)
@options.as_json()
@click.option("--copy-to", type=PATH, help="Copy the preset file here, to edit as your own preset.")
@options.presets_dirs()
@options.family(help="With NAME: resolve it on this family's base preset (default: NAME's own family, else SDXL).",
                default=None)
def presets(name: str | None, as_json: bool, copy_to: Path | None, presets_dirs: tuple[Path, ...],
            family: str | None) -> None:
    """List the presets grouped by model family, or show NAME's resolved values and where each comes from."""
    from lorakit.config.presets import PresetRegistry, copy_preset

    registry = PresetRegistry(list(presets_dirs))
    if name is None:
        items, broken = registry.load_all()
        if as_json:
            emit_json_list([p.summary() for p in items])
        else:
            from lorakit.cli.views import console, print_presets

            print_presets(console(), items, {p.name for p in items if registry.shadowed(p.name)})
        for problem in broken:
            click.echo(f"lorakit: skipped a preset: {problem.render()}", err=True)
        return
    preset = registry.get(name)
    if copy_to is not None:
        click.echo(f"Copied {preset.path} to {copy_preset(preset, copy_to)}")
        return
    from lorakit.config.family import family_named
    from lorakit.config.resolve import resolve

    bases = [] if family is None or preset.header.kind == "base" else [family_named(family).base_preset]
    resolution = resolve(registry, [*bases, name], [])
    if as_json:
        emit_json(resolution.report(name, preset.description))
        return
    from lorakit.cli.views import console, print_preset

    print_preset(console(), name, preset, resolution)


@click.command()
@click.argument("pattern", required=False, default="")
@options.as_json()
@options.family()
def keys(pattern: str, as_json: bool, family: str) -> None:
    """List the keys --set accepts in a family's plans (its script's sd-scripts arguments and lorakit keys), optionally filtered."""
    from lorakit.config.schema import settable_keys

    specs = settable_keys(pattern, family)
    if as_json:
        emit_json_list([s.info() for s in specs])
        return
    for s in specs:
        click.echo(f"{s.name:36} {s.kind:12} {s.target:8} {s.help}")


@click.command()
@options.dataset
@options.preset()
@options.overrides()
@options.reg()
@options.token()
@options.target_gpu()
@options.out()
@options.name()
@options.force()
@options.as_json(help="Print plan.json instead of the summary.")
@click.option("--explain", is_flag=True, help="Show every value with its source and reason.")
@click.option("--fit", "fit_mode", type=click.Choice(["speed", "memory", "off"]), default="speed", show_default=True,
              help="Fit what you did not --set to the GPU: the fastest settings that fit, the least memory, or nothing.")
@click.option("--explain-vram", is_flag=True, help="Show the VRAM estimate component by component.")
@options.sd_scripts()
@options.python()
@click.option("--from-kohya-gui", "from_kohya_gui", type=PATH, metavar="FILE",
              help="Start from a Kohya SS GUI LoRA config (JSON), applied right after the base preset of its model family.")
@options.presets_dirs()
def plan(as_json: bool, explain: bool, fit_mode: str, explain_vram: bool, from_kohya_gui: Path | None, **shared) -> None:
    """Check DATASET, resolve presets and overrides, fit the GPU, and write a plan folder for sd-scripts."""
    from lorakit.errors import CommandExit, ExitCode
    from lorakit.findings import has_errors
    from lorakit.plan.build import make_plan, write_plan

    request = options.plan_request(shared, fit=fit_mode)
    if from_kohya_gui is not None:
        from lorakit.kohya_gui.importer import import_gui_config

        request.imported = import_gui_config(from_kohya_gui).imported()
    result = make_plan(request)
    write_plan(result, force=request.force)
    if as_json:
        click.echo(result.files["plan.json"], nl=False)
    else:
        from lorakit.cli.views import console, print_plan

        print_plan(console(), result.plan, explain=explain, vram_parts=result.vram_parts if explain_vram else None)
    if has_errors(result.plan.findings):
        raise CommandExit(ExitCode.FAILED)  # written with --force: the plan is there, its errors above


@click.group()
def dataset() -> None:
    """Check a dataset folder, or lay a flat folder out as Kohya repeat folders."""


@dataset.command("check")
@click.argument("path", type=PATH)
@options.reg(help="Regularisation images to check with it.")
@options.token(help="Class tokens for a flat folder.")
@options.preset()
@options.overrides()
@options.as_json()
@click.option("--deep", is_flag=True, help="Also decode every image with Pillow, as sd-scripts will (slow).")
def dataset_check(path: Path, reg: Path | None, token: str | None, preset_names, overrides, as_json: bool, deep: bool) -> None:
    """Gate 1 on PATH: the findings, a per-folder table and a bucket histogram."""
    from lorakit.errors import CommandExit, ExitCode
    from lorakit.findings import has_errors
    from lorakit.plan.datacheck import check_dataset

    report = check_dataset(path, reg=reg, token=token, presets=list(preset_names), overrides=list(overrides), deep=deep)
    if as_json:
        emit_json(report.summary())
    else:
        from lorakit.cli.views import console, print_dataset_report

        print_dataset_report(console(), report)
    if has_errors(report.findings):
        raise CommandExit(ExitCode.FAILED)


@dataset.command("prepare")
@click.argument("src", type=PATH)
@click.argument("dest", type=PATH)
@click.option("--token", required=True, help="Class tokens, e.g. 'sks dog': the folder becomes N_sks dog.")
@click.option("--repeats", default="auto", show_default=True, help="Repeats per image, or auto (the seeds' step ranges).")
@click.option("--mode", type=click.Choice(["link", "symlink", "copy"]), default="link", show_default=True,
              help="Hard-link (copies where linking is impossible), symlink or copy the files.")
@click.option("--upright", is_flag=True,
              help="Write upright copies of photos stored turned by an EXIF tag (sd-scripts trains them as stored); needs Pillow.")
@options.preset()
@options.overrides()
def dataset_prepare(src: Path, dest: Path, token: str, repeats: str, mode: str, upright: bool, preset_names, overrides) -> None:
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
                           presets=list(preset_names), overrides=list(overrides), upright=upright)
    click.echo(f"Laid out {done.files} file(s) in {done.folder} ({done.repeats} repeats: {done.repeats_reason}).")
    if done.copied_instead_of_linked:
        click.echo(f"{done.copied_instead_of_linked} file(s) were copied: hard links cannot cross file systems.")
    if done.upright_copies:
        click.echo(f"{done.upright_copies} EXIF-rotated photo(s) were written as upright copies.")
    if done.rotated_left:
        click.echo(f"{done.rotated_left} photo(s) are stored turned (EXIF orientation) and sd-scripts trains them as stored: "
                   "run again with --upright to write upright copies.")
    click.echo(f"Next: lorakit plan {done.folder.parent}")
