"""A plan as a SkyPilot managed job: `lorakit export skypilot PLAN -o FILE`, then `sky jobs launch FILE`.

The task mounts the plan folder and its dataset at the same absolute paths they have here, because
config.toml and dataset.toml name them by absolute path; its setup installs lorakit and runs `lorakit setup`,
its run is `lorakit launch --resume-if-possible PLAN`, so a job SkyPilot restarts after a preemption
resumes from the newest saved state (when the plan folder outlives the machine: `--bucket`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lorakit import __version__
from lorakit.errors import UserError
from lorakit.plan.build import Plan

# lorakit's GPU catalog ids (presets/hardware/gpus.toml) -> SkyPilot accelerator names (`sky show-gpus`).
# Cards without a name here that every SkyPilot cloud agrees on need `--accelerator NAME`.
ACCELERATORS: dict[str, str] = {
    "t4": "T4",
    "v100-16gb": "V100",
    "l4": "L4",
    "a10g": "A10G",
    "l40s": "L40S",
    "a100-40gb": "A100",
    "a100-80gb": "A100-80GB",
    "h100": "H100",
    "h100-pcie": "H100",
    "h200": "H200",
    "rtx3090": "RTX3090",
    "rtx4090": "RTX4090",
}

# SkyPilot accepts task names of letters and digits joined by single ., _ or -.
_NAME_GAPS = re.compile(r"[^A-Za-z0-9]+")


def job_name(plan_name: str) -> str:
    return "lorakit-" + (_NAME_GAPS.sub("-", plan_name).strip("-") or "plan")[:60].strip("-")


@dataclass
class SkyOptions:
    accelerator: str | None = None  # a SkyPilot accelerator name; None: from the plan's target GPU
    bucket: str | None = None  # e.g. s3://my-bucket: the plan folder and dataset are mounted from it
    use_spot: bool = True
    max_restarts_on_errors: int = 2  # SkyPilot's restarts after a non-zero exit (preemptions are always recovered)
    lorakit_spec: str = f"lorakit=={__version__}"  # what `pip install` installs on the machine


@dataclass
class Mount:
    remote: str  # the absolute path on the cloud machine (the same as here)
    local: str | None  # a folder uploaded from this machine, or
    bucket: str | None  # a bucket folder mounted read-write


@dataclass
class SkyTask:
    name: str
    plan_dir: str
    accelerators: str
    use_spot: bool
    max_restarts_on_errors: int
    mounts: list[Mount]
    setup: str
    run: str
    uploads: list[tuple[str, str]]  # (local folder, bucket folder) the user copies before launching with --bucket


def accelerator_for(plan: Plan, override: str | None) -> str:
    """`NAME:COUNT` for SkyPilot's `resources.accelerators`."""
    target = plan.target
    if target.device == "cpu":
        raise UserError(f"plan '{plan.name}' trains on the CPU; a SkyPilot job for it would rent a GPU it never uses.",
                        fix="re-plan it with `--target-gpu` for the cloud card (e.g. --target-gpu a100-80gb)")
    name = override or ACCELERATORS.get(target.catalog_id or "")
    if not name:
        raise UserError(f"lorakit does not know SkyPilot's name for the plan's GPU '{target.name}'.",
                        fix="pass `--accelerator NAME` with a name from `sky show-gpus` (e.g. --accelerator A100-80GB)")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"--accelerator {name!r} is not a SkyPilot accelerator name.",
                        fix="use a name from `sky show-gpus`, such as A100-80GB or H100")
    return f"{name}:{max(target.count, 1)}"


def _folders(plan: Plan) -> list[str]:
    """The plan folder and the dataset folders (train and regularization) the plan reads."""
    folders = [plan.plan_dir, plan.dataset.root]
    if plan.dataset.reg_root:
        folders.append(plan.dataset.reg_root)
    return list(dict.fromkeys(folders))


def _model_mount(plan: Plan) -> list[Mount]:
    """The base model file config.toml names by path (a file, or lorakit's link to a Hub download), copied from here.

    The file the link points to is uploaded, to the path config.toml names; a Hub id needs no mount.
    """
    item = plan.values.get("pretrained_model_name_or_path")
    named = str(item.value) if item is not None and item.value else ""
    if not named.startswith("/") or Path(named).is_relative_to(plan.plan_dir):
        return []
    if not Path(named).exists():
        raise UserError(f"the plan's base model {named} is not on this machine, so it cannot be sent to the cloud.",
                        fix=f"download it with `lorakit fetch-model {shlex.quote(plan.plan_dir)}`, then export again")
    return [Mount(remote=named, local=str(Path(named).resolve()), bucket=None)]


def _mounts(plan: Plan, bucket: str | None) -> tuple[list[Mount], list[tuple[str, str]]]:
    folders = _folders(plan)
    model = _model_mount(plan)
    if bucket is None:
        return [Mount(remote=f, local=f, bucket=None) for f in folders] + model, []
    names = [PurePosixPath(f).name for f in folders]
    if len(set(names)) != len(names):
        raise UserError(f"the plan folder and its dataset share a folder name ({', '.join(names)}), so they would "
                        "be the same folder in the bucket.", fix="rename one of them, or export without --bucket")
    base = bucket.rstrip("/")
    if "://" not in base:
        raise UserError(f"--bucket {bucket!r} is not a bucket URI.", fix="give one such as s3://my-bucket or gs://my-bucket")
    pairs = [(f, f"{base}/{name}") for f, name in zip(folders, names, strict=True)]
    return [Mount(remote=f, local=None, bucket=b) for f, b in pairs] + model, pairs


def skypilot_task(plan: Plan, options: SkyOptions) -> SkyTask:
    if options.max_restarts_on_errors < 0:
        raise UserError("--max-restarts must be 0 or more.")
    mounts, uploads = _mounts(plan, options.bucket)
    return SkyTask(
        name=job_name(plan.name),
        plan_dir=plan.plan_dir,
        accelerators=accelerator_for(plan, options.accelerator),
        use_spot=options.use_spot,
        max_restarts_on_errors=options.max_restarts_on_errors,
        mounts=mounts,
        setup=f"pip install {shlex.quote(options.lorakit_spec)} && lorakit setup",
        run=shlex.join(["lorakit", "launch", "--resume-if-possible", plan.plan_dir]),
        uploads=uploads,
    )


def render_task(task: SkyTask) -> str:
    from lorakit.plan.render import render

    return render("skypilot.yaml.j2", task=task, version=__version__)


def export_plan_skypilot(plan_dir: Path, output: Path, options: SkyOptions, *, force: bool = False) -> SkyTask:
    from lorakit.plan.build import load_plan
    from lorakit.util.files import check_output_file, write_text_atomic

    task = skypilot_task(load_plan(plan_dir), options)
    check_output_file(output, replace=force, example="train.sky.yaml")
    write_text_atomic(output, render_task(task))
    return task
