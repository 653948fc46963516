"""A batch as SkyPilot managed jobs: one task file per planned run, in one folder.

A multi-document SkyPilot YAML is a pipeline whose tasks run one after another; a batch's runs are
independent, so each gets its own file and `sky jobs launch` runs them side by side.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.batch.manifest import load_batch
from lorakit.errors import UserError
from lorakit.plan.build import load_plan
from lorakit.publish.skypilot import SkyOptions, render_task, skypilot_task
from lorakit.util.files import check_output_file, write_text_atomic


def export_batch_skypilot(batch_dir: Path, folder: Path, options: SkyOptions, *, force: bool = False) -> list[Path]:
    """Write `folder/<run id>.yaml` for each planned run; returns the files written."""
    manifest = load_batch(batch_dir)
    runs = manifest.planned()
    if not runs:
        raise UserError(f"batch '{batch_dir}' has no planned runs to export.", fix="re-plan it with valid combinations")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"-o '{folder}' is a file; a batch is written as one task file per run into a folder.",
                        fix="give -o a folder name, such as sky-jobs/")
    texts = {folder / f"{run.id}.yaml": render_task(skypilot_task(load_plan(Path(run.plan_dir)), options)) for run in runs}
    for path in texts:  # refuse before writing any, so a refusal never leaves half the files
        check_output_file(path, replace=force)
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        write_text_atomic(path, text)
    return list(texts)
