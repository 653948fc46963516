"""Commands that trade configs with the Kohya SS GUI: export kohya-gui, import kohya-gui."""

from __future__ import annotations

from pathlib import Path

import click

from lorakit.cli.options import PATH


@click.group("export")
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
    print_findings(console(), exported.findings)
    click.echo(f"Wrote {path} (Kohya SS GUI {gui_version}, {len(exported.config)} keys). In the GUI: LoRA → "
               "Training → Configuration → type the path into 'Load/Save Config file' and press Load.")


@click.group("import")
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
    click.echo(f"Wrote {path}: {len(imported.entries)} value(s) that differ from {imported.base} "
               f"(a {imported.family} LoRA config).")
    click.echo(f"Next: lorakit plan DATASET --preset {path.stem}" + ("" if output is None else f" --presets-dir {path.parent}"))
