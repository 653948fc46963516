"""Why a run ended as it did, and the concrete next step (issue: failed runs carry both).

The verdict comes from what the parser recognised (`Problem` events), the exit code, and whether
the final LoRA file exists: accelerate exits 1 whatever went wrong, and sd-scripts exits 0 when it
found no data, so the exit code alone says little (docs/sd-scripts.md §10).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from lorakit import SD_SCRIPTS_COMMIT
from lorakit.plan.build import Plan
from lorakit.util.files import DISK_FULL_FIX, free_bytes
from lorakit.util.text import show
from lorakit.watch.events import Problem

# The problem that explains a run best comes first; later ones are usually its consequences.
# how a diagnosis of CUDA out-of-memory begins: the one ending lorakit.run.recover recovers from
GPU_OUT_OF_MEMORY = "the GPU ran out of memory"
PRIORITY = ["disk-full", "out-of-memory", "missing-module", "model-missing", "bad-arguments", "no-data", "nan-loss", "crash", "killed"]
# import name → pip package, where they differ or sd-scripts names the optimizer instead of the module
PIP_NAMES = {
    "cv2": "opencv-python", "lion_pytorch": "lion-pytorch", "Prodigy": "prodigyopt", "prodigyplus": "prodigy-plus-schedule-free",
    "lycoris": "lycoris-lora", "PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn", "google": "protobuf",
}


@dataclass
class Verdict:
    state: str
    problem: str | None = None
    diagnosis: str | None = None
    suggestion: str | None = None


@dataclass
class Ending:
    """How the trainer ended, as the launcher saw it."""

    exit_code: int | None
    signal: str | None
    problems: list[Problem]
    final_output: bool  # the final LoRA file exists and was written by this run
    stopped: str | None = None  # why lorakit stopped the trainer: "interrupted" or a problem kind
    log: str = "logs/train.log"


def diagnose(ending: Ending, plan: Plan, *, python: str, sd_scripts: str) -> Verdict:
    problems = {p.kind: p for p in ending.problems}
    if ending.stopped == "interrupted" and "nan-loss" not in problems:
        return Verdict("interrupted", None, "stopped on request (Ctrl-C or SIGTERM) before the end", None)
    if ending.exit_code == 0 and ending.final_output and "nan-loss" not in problems:
        # A run that finished and saved its LoRA succeeded, whatever it printed on the way (a failed optional
        # import prints a traceback too); what was seen stays on record.
        seen = "; ".join(p.message for p in ending.problems)
        return Verdict("succeeded", None, f"finished and saved its LoRA; the log also shows: {seen}" if seen else None)
    for kind in PRIORITY:
        if kind in problems:
            diagnosis, suggestion = _explain(problems[kind], plan, python=python, sd_scripts=sd_scripts, log=ending.log)
            return Verdict("failed", kind, diagnosis, suggestion)
    if ending.exit_code == 0:
        return Verdict("failed", "no-output", "the trainer exited with code 0 but wrote no LoRA file",
                       f"read {ending.log} for what sd-scripts did instead of training")
    if ending.signal:
        diagnosis, suggestion = _explain(Problem("killed", f"the trainer was killed by {ending.signal}", ending.signal),
                                         plan, python=python, sd_scripts=sd_scripts, log=ending.log)
        return Verdict("failed", "killed", diagnosis, suggestion)
    return Verdict("failed", "exit-code", f"the trainer exited with code {ending.exit_code} without a recognised error",
                   f"read the end of {ending.log}; `lorakit doctor {shlex.quote(plan.plan_dir)}` checks the environment")


def _explain(problem: Problem, plan: Plan, *, python: str, sd_scripts: str, log: str) -> tuple[str, str]:
    values = plan.value_set
    kind = problem.kind
    if kind == "out-of-memory":
        if "CUDA" not in problem.message:
            return (f"the machine ran out of RAM: {problem.message}",
                    "close other programs or run one training at a time; "
                    + replan_command(plan, {"cache_latents_to_disk": True, "max_data_loader_n_workers": 0}))
        return (f"{GPU_OUT_OF_MEMORY}: {problem.message.split('. Tried')[0]}",
                "plan a smaller run: " + replan_command(plan, _smaller_settings(values)))
    if kind == "nan-loss":
        changes = {"learning_rate": values["learning_rate"] / 2} if values["learning_rate"] else {}
        if values["unet_lr"]:
            changes["unet_lr"] = values["unet_lr"] / 2
        if values["mixed_precision"] == "fp16" and not values["no_half_vae"]:
            changes["no_half_vae"] = True
        return (f"{problem.message}: the LoRA is ruined from there (usually a learning rate too high, or the fp16 VAE)",
                "lower the learning rate" + (" and keep the VAE in fp32" if "no_half_vae" in changes else "") + ": "
                + replan_command(plan, changes))
    if kind == "missing-module":
        module = (problem.detail or "").split(".")[0]
        package = PIP_NAMES.get(module, module)
        return (f"a Python package is missing in the trainer's environment: {problem.message}",
                f"{shlex.quote(python)} -m pip install {package}")
    if kind == "model-missing":
        return (f"sd-scripts cannot find the base model {values['pretrained_model_name_or_path']!r}",
                replan_command(plan, {"pretrained_model_name_or_path": "/path/to/sdxl-model.safetensors"}))
    if kind == "bad-arguments":
        return (f"sd-scripts refused lorakit's arguments ({problem.message}): this checkout is not the sd-scripts "
                f"lorakit was made for",
                f"git -C {shlex.quote(sd_scripts)} checkout {SD_SCRIPTS_COMMIT} (for vendor/: "
                "`git submodule update --init vendor/sd-scripts`), then `lorakit doctor`")
    if kind == "no-data":
        return ("sd-scripts found no training images (it says \"No data found\" and exits 0)",
                f"check that the folders in dataset.toml still hold images: lorakit dataset check "
                f"{shlex.quote(plan.dataset.root)}, then re-plan")
    if kind == "disk-full":
        free = free_bytes(Path(plan.plan_dir))
        left = f" ({free / 1e9:.2f} GB free now on the disk that holds the plan)" if free is not None else ""
        return (f"a disk filled up: {problem.message}{left}",
                f"{DISK_FULL_FIX}; then `lorakit launch {shlex.quote(plan.plan_dir)} --fresh` (or --resume from a saved state)")
    if kind == "killed":
        if problem.detail == "SIGKILL":
            return ("the trainer was killed by SIGKILL, usually the kernel's out-of-memory killer: the machine ran out of RAM",
                    "close other programs or run one training at a time; "
                    + replan_command(plan, {"cache_latents_to_disk": True, "max_data_loader_n_workers": 0}))
        return (f"the trainer was killed by {problem.detail} from outside lorakit", f"see who sent it; {log} has the output")
    return (f"sd-scripts crashed: {problem.message}",
            f"read the traceback in {log}; `lorakit doctor {shlex.quote(plan.plan_dir)}` checks the environment")


def _smaller_settings(values) -> dict:
    """The cheapest memory savings the plan does not use yet, in the order the seeds recommend them."""
    changes: dict = {}
    if not values["gradient_checkpointing"]:
        changes["gradient_checkpointing"] = True
    if values["train_batch_size"] > 1:
        changes["train_batch_size"] = max(1, values["train_batch_size"] // 2)
    if not values["cache_latents"]:
        changes["cache_latents"] = True
    if not changes and values["network_dim"] and values["network_dim"] > 8:
        changes["network_dim"] = values["network_dim"] // 2
    if not changes:
        changes["resolution"] = "768,768"
    return changes


def replan_command(plan: Plan, changes: dict) -> str:
    """The `lorakit plan` command that remakes this plan with `changes` (the user's own --set kept)."""
    values = plan.value_set
    words = ["lorakit", "plan", plan.dataset.root]
    for preset in plan.presets:
        # an imported GUI config is no preset `--preset` can load: its values follow as --set (they are yours)
        if preset != "sdxl-base" and not preset.startswith("kohya-gui:"):
            words += ["--preset", preset]
    if plan.target.source == "catalog" and plan.target.catalog_id:
        words += ["--target-gpu", plan.target.catalog_id]
    if plan.dataset.layout == "flat" and plan.dataset.subsets and plan.dataset.subsets[0].class_tokens:
        words += ["--token", plan.dataset.subsets[0].class_tokens]
    if plan.dataset.reg_root:
        words += ["--reg", plan.dataset.reg_root]
    for key in values:
        if values.user_set(key) and key not in changes:
            words += ["--set", f"{key}={_text(values[key])}"]
    for key, value in changes.items():
        words += ["--set", f"{key}={_text(value)}"]
    words += ["--name", plan.name, "--out", plan.plan_dir, "--force"]
    return shlex.join(words)


def _text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return show(value)
