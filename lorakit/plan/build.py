"""`lorakit plan`: probe → resolve → fit → scan → step math → check → render → write.

`make_plan` does everything in memory and returns the plan and its files; `write_plan` puts them
on disk. Nothing is written when a gate finds an error (unless forced), and an existing plan
folder is never overwritten silently.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, PrivateAttr

from lorakit import SD_SCRIPTS_COMMIT, __version__
from lorakit.config.family import DEFAULT_FAMILY, family_named
from lorakit.config.presets import ImportedPreset, PresetRegistry
from lorakit.config.resolve import Resolution, resolve
from lorakit.config.values import ResolvedValue, Values
from lorakit.dataset.scan import Subset, resolve_path
from lorakit.dataset.steps import SaveEvent, StepMath, predict_sample_steps, predict_saves
from lorakit.errors import GateError, UserError
from lorakit.findings import Finding, finding, has_errors, sort_findings
from lorakit.machine.probe import TargetGpu, choose_target, free_disk_gib
from lorakit.machine.trainer import TRAIN_SCRIPT, SdScriptsCheckout, describe_sd_scripts, find_python, trainer_command
from lorakit.models.gate import resolve_models
from lorakit.models.source import ModelSection, make_links, trainer_values
from lorakit.plan.analysis import DatasetStats, analyse_scans, scan_folders
from lorakit.plan.assumptions import Assumptions, assumptions_for
from lorakit.plan.check import check_parameters
from lorakit.plan.cpu import fit_for_cpu, is_cpu
from lorakit.plan.cpu import ram_gib as cpu_ram_gib
from lorakit.plan.cpu import time_report as cpu_time_report
from lorakit.plan.estimate import estimate_vram, setup_from_values
from lorakit.plan.fit import FIT_MODES, FitResult, fit_to_gpu
from lorakit.plan.hardware import check_hardware
from lorakit.plan.paths import anchor_paths, here, located
from lorakit.plan.prompts import sample_prompt_lines
from lorakit.plan.render import render_config, render_dataset, render_launch, render_prompts
from lorakit.plan.state import plan_periodic_state
from lorakit.plan.timing import TimeReport, time_report
from lorakit.plan.vramreport import VramReport, explain_vram, vram_report
from lorakit.util.files import check_output_folder, write_text_atomic
from lorakit.util.lock import PLAN_LOCK_FILE, PidLock
from lorakit.util.reading import read_json

PLAN_FILES = ("plan.json", "config.toml", "dataset.toml", "sample_prompts.txt", "launch.sh")
HISTORY_DIR = ".lorakit-history"
PLAN_FOLDER = "auto:plan-folder"


@dataclass
class PlanRequest:
    dataset: Path
    presets: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    reg: Path | None = None
    token: str | None = None
    target_gpu: str | None = None
    out: Path | None = None
    name: str | None = None
    force: bool = False
    presets_dirs: list[Path] = field(default_factory=list)
    sd_scripts: str | None = None
    python: str | None = None
    fit: str = "speed"  # speed | memory | off (lorakit.plan.fit)
    imported: ImportedPreset | None = None  # e.g. a Kohya SS GUI config, applied as a preset right after the base
    revision: Resolution | None = None  # an earlier plan's values, changed (lorakit.plan.revise): not resolved again


class Plan(BaseModel):
    """plan.json: the source of truth for launch, export and batch.

    `plan_dir` is where the plan folder is: plan.json keeps where it was made, and `load_plan` sets it to
    where it is read from, so a copied or moved plan works on itself (lorakit.plan.paths).
    """

    model_config = ConfigDict(extra="forbid")

    lorakit_version: str
    sd_scripts_commit: str  # the commit lorakit writes for (lorakit.SD_SCRIPTS_COMMIT)
    created: str
    name: str
    plan_dir: str
    family: str = DEFAULT_FAMILY  # the model family (plans made before families were SDXL)
    script: str = TRAIN_SCRIPT  # the sd-scripts training script `launch` runs
    presets: list[str]
    notes: list[str]
    target: TargetGpu
    model: ModelSection
    dataset: DatasetStats
    total_steps: int
    epochs: int
    batches_per_epoch: int
    steps_per_epoch: int
    step_math: StepMath
    saves: list[SaveEvent]
    sample_steps: list[int]
    values: dict[str, ResolvedValue]
    findings: list[Finding]
    command: list[str]
    files: list[str]
    vram: VramReport | None = None
    time: TimeReport | None = None
    sd_scripts: SdScriptsCheckout | None = None  # the checkout found when planning (launch looks again)
    _planned_in: str | None = PrivateAttr(default=None)  # plan.json's plan_dir, when load_plan found it elsewhere

    @property
    def planned_in(self) -> str:
        """The folder the plan was made in (plan.json's plan_dir)."""
        return self._planned_in or self.plan_dir

    @property
    def value_set(self) -> Values:
        """The values, the plan folder's relative paths made absolute against where the plan is now."""
        return here(self.values, Path(self.plan_dir))

    @property
    def error_count(self) -> int:
        return sum(1 for f in self.findings if f.level == "error")


class VramPart(NamedTuple):
    """One component of the VRAM estimate and how it was counted (`lorakit plan --explain-vram`)."""

    name: str
    gib: float
    how: str


@dataclass
class PlanResult:
    plan: Plan
    files: dict[str, str]  # file name in the plan folder → text
    vram_parts: list[VramPart] = field(default_factory=list)  # kept from planning for printing; not in plan.json

    @property
    def plan_dir(self) -> Path:
        return Path(self.plan.plan_dir)


_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f]")


def _plan_name(request: PlanRequest) -> str:
    name = request.name if request.name is not None else resolve_path(request.dataset, what="dataset", option="DATASET").name
    name = name.strip()
    if not name or name in (".", "..") or _UNSAFE_NAME.search(name):
        raise UserError(
            f"--name {name!r} cannot be used as a file name (no slashes, control characters, or empty names).",
            fix="pass --name with letters, digits, spaces, dashes or underscores",
        )
    return name


def _check_output_name(output_name: str) -> None:
    """sd-scripts joins output_name to output_dir: an empty one writes hidden `.safetensors` files, a slash writes elsewhere."""
    if not output_name.strip() or _UNSAFE_NAME.search(output_name):  # too long: Gate 2's params/output-name-too-long
        raise UserError(f"output_name {output_name[:80]!r} cannot be used as a file name (empty, or with slashes or "
                        "control characters).",
                        fix="--set output_name=NAME with letters, digits, spaces, dashes or underscores")


def make_plan(request: PlanRequest) -> PlanResult:
    gui = request.imported
    resolution = request.revision or resolve(PresetRegistry(request.presets_dirs), request.presets, request.overrides,
                                              imported=[gui] if gui else [])
    values = resolution.values
    if request.fit not in FIT_MODES:
        raise UserError(f"--fit {request.fit!r} is not one of {', '.join(FIT_MODES)}.", fix="--fit speed (the default)")
    target = choose_target(request.target_gpu)
    assumptions = assumptions_for(target, family=values.family)
    name = _plan_name(request)
    plan_dir = (request.out or Path("plans") / name).expanduser().resolve()
    anchor_paths(values, plan_dir, Path.cwd(), skip_source=PLAN_FOLDER)

    train, reg = scan_folders(values, request.dataset, request.reg, request.token)
    if is_cpu(target):
        fit = FitResult(mode=request.fit, findings=fit_for_cpu(values, target) if request.fit != "off" else [])
    else:
        fit = fit_to_gpu(values, target, assumptions, mode=request.fit,
                         images=train.image_count + (reg.image_count if reg else 0))
    data = analyse_scans(values, train, reg)
    subsets, steps = data.subsets, data.steps

    _set_plan_paths(values, name)
    _check_output_name(values["output_name"])
    prompt_lines = _sampling(values, subsets)
    estimated = estimates(values, target, assumptions, steps.total_steps, request.fit)
    plan_periodic_state(values, estimated.time, steps.total_steps, cpu=is_cpu(target), fit=request.fit)
    saves = predict_saves(
        steps,
        output_name=values["output_name"],
        extension=values["save_model_as"] or "safetensors",
        save_every_n_epochs=values["save_every_n_epochs"],
        save_every_n_steps=values["save_every_n_steps"],
        save_n_epoch_ratio=values["save_n_epoch_ratio"],
        save_last_n_epochs=values["save_last_n_epochs"],
        save_last_n_steps=values["save_last_n_steps"],
        save_state=bool(values["save_state"]),
        save_state_on_train_end=bool(values["save_state_on_train_end"]),
        save_last_n_steps_state=values["save_last_n_steps_state"],
        save_last_n_epochs_state=values["save_last_n_epochs_state"],
    )
    sample_steps = predict_sample_steps(
        steps,
        sample_every_n_steps=values["sample_every_n_steps"],
        sample_every_n_epochs=values["sample_every_n_epochs"],
        sample_at_first=bool(values["sample_at_first"]),
    ) if values["sample_prompts"] else []

    findings = data.train.findings + (data.reg.findings if data.reg else []) + fit.findings
    context = data.context(values, target, resolution.required, saves=saves, assumptions=assumptions,
                           disk_free_gib=free_disk_gib(Path(located(values["output_dir"], plan_dir))))
    findings += check_parameters(context) + check_hardware(context)
    models, model_findings = resolve_models(values, plan_dir=plan_dir)
    findings += model_findings
    findings += gui.findings if gui else []
    if steps.total_steps == 0 and not has_errors(findings):
        findings.append(finding("dataset/no-steps", "error", 1, "the plan has no training steps (no usable images).",
                                "check the dataset folder"))

    python, _ = find_python(request.python)
    family = family_named(values.family)
    checkout = describe_sd_scripts(request.sd_scripts, family.script)
    sd_scripts = Path(checkout.path)
    config_path = Path("config.toml")  # the trainer starts in the plan folder
    plan = Plan(
        lorakit_version=__version__,
        sd_scripts_commit=SD_SCRIPTS_COMMIT,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        name=name,
        plan_dir=str(plan_dir),
        family=family.name,
        script=family.script,
        presets=[p.name for p in resolution.presets],
        notes=resolution.notes,
        target=target,
        model=models,
        dataset=data.stats(),
        total_steps=steps.total_steps,
        epochs=steps.epochs,
        batches_per_epoch=steps.batches_per_epoch,
        steps_per_epoch=steps.steps_per_epoch,
        step_math=steps,
        saves=saves,
        sample_steps=sample_steps,
        values=dict(values.items()),
        findings=sort_findings(findings),
        command=trainer_command(python, sd_scripts, config_path, values, cpu=is_cpu(target)),
        files=[],
        vram=estimated.vram,
        time=estimated.time,
        sd_scripts=checkout,
    )
    files = {
        "config.toml": render_config(plan, trainer_values(values, models), config_path),
        "dataset.toml": render_dataset(plan, values, subsets),
        "launch.sh": render_launch(plan, command=plan.command,
                                   cpu_command=trainer_command(python, sd_scripts, config_path, values, cpu=True)),
    }
    if prompt_lines:
        files["sample_prompts.txt"] = render_prompts(plan, prompt_lines)
    plan.files = ["plan.json", *files]
    files["plan.json"] = plan.model_dump_json(indent=2) + "\n"
    return PlanResult(plan, files, vram_parts=estimated.vram_parts)


@dataclass
class Estimates:
    vram: VramReport
    time: TimeReport
    vram_parts: list[VramPart]


def estimates(values: Values, target: TargetGpu, assumptions: Assumptions, total_steps: int, fit: str) -> Estimates:
    """plan.json's `vram` and `time` for the final values, and the VRAM estimate's parts explained."""
    setup = setup_from_values(values)
    where = f"calibrated in {assumptions.source}"
    overhead = where if assumptions.vram_calibrated else f"assumed {assumptions.overhead_gib:g} GiB (docs/estimator.md §5.3)"
    efficiency = where if assumptions.time_calibrated else "assumed (docs/estimator.md §6)"
    breakdown = estimate_vram(setup, assumptions.overhead_gib)
    vram = vram_report(setup, overhead_gib=assumptions.overhead_gib, budget_gib=target.budget_gib,
                       vram_total_gib=target.vram_total_gib, calibrated=assumptions.vram_calibrated,
                       overhead_source=overhead, fit=fit, ram_available_gib=target.ram_available_gib)
    if is_cpu(target):  # the run's RAM: the same parts, never less than the measured CPU run (lorakit.plan.cpu)
        ram = round(cpu_ram_gib(setup, assumptions.overhead_gib), 3)
        vram = vram.model_copy(update={"estimate_gib": ram, "fits": ram <= vram.budget_gib})
    return Estimates(
        vram=vram,
        time=cpu_time_report(setup, target, total_steps) if is_cpu(target) else
        time_report(setup, peak_tflops=target.bf16_tflops, efficiency=assumptions.efficiency,
                    total_steps=total_steps, efficiency_source=efficiency),
        vram_parts=[VramPart(*part) for part in explain_vram(setup, breakdown, overhead)],
    )


def _set_plan_paths(values: Values, name: str) -> None:
    # Relative to the plan folder, where the trainer starts, so a copied plan trains into its own folder.
    values.set("dataset_config", "dataset.toml", PLAN_FOLDER, "the plan's dataset.toml")
    if not values.user_set("output_dir"):
        values.set("output_dir", "output", PLAN_FOLDER, "LoRA files go into the plan folder")
    if not values.user_set("output_name"):
        values.set("output_name", name, PLAN_FOLDER, "the plan's name")
    if not values.user_set("logging_dir"):
        values.set("logging_dir", "tensorboard/sd-scripts", PLAN_FOLDER,
                   "sd-scripts' own TensorBoard events, beside lorakit's")


def _sampling(values: Values, subsets: list[Subset]) -> list[str]:
    """The sample prompt lines to write; empty when sampling is off or the user brings a prompt file."""
    every = [values["sample_every_n_steps"], values["sample_every_n_epochs"]]
    enabled = any(n is not None and n > 0 for n in every) or values["sample_at_first"]
    if not enabled or values.user_set("sample_prompts"):
        return []
    lines = sample_prompt_lines(values, subsets)
    if lines:
        values.set("sample_prompts", "sample_prompts.txt", PLAN_FOLDER,
                   "prompts built from the dataset's class tokens")
    return lines


# --- writing --------------------------------------------------------------------------------------

def write_plan(result: PlanResult, *, force: bool = False, lock_held: bool = False) -> Path:
    plan_dir = result.plan_dir
    if has_errors(result.plan.findings) and not force:
        raise GateError(
            f"the plan has {result.plan.error_count} error(s); nothing was written.",
            result.plan.findings,
        )
    check_output_folder(plan_dir, replace=force, marker="plan.json", kind="plan",
                        replace_note=f"the old plan files move to {HISTORY_DIR}/ inside it; training outputs are never touched")
    # --force must not swap the files of a plan that is training under the trainer's feet
    if not lock_held:  # a revision is written by the run that holds the lock, between its attempts (lorakit.run.recover)
        PidLock(plan_dir / PLAN_LOCK_FILE, what="this plan", doing="training",
                why="Replacing its files now would leave run.json describing another plan.").refuse_if_held()
    plan_dir.mkdir(parents=True, exist_ok=True)
    _keep_previous(plan_dir)
    for name, text in result.files.items():
        write_text_atomic(plan_dir / name, text)
    os.chmod(plan_dir / "launch.sh", 0o755)
    make_links(result.plan.model)
    return plan_dir


def _keep_previous(plan_dir: Path) -> None:
    old = [plan_dir / n for n in PLAN_FILES if (plan_dir / n).exists()]
    if not old:
        return
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    keep = plan_dir / HISTORY_DIR / stamp
    keep.mkdir(parents=True)
    for path in old:
        shutil.move(str(path), keep / path.name)


def load_plan(plan_dir: Path) -> Plan:
    """Read `<plan>/plan.json` (the folder or the file itself); `plan_dir` is set to where the folder is now."""
    path = plan_dir / "plan.json" if plan_dir.is_dir() else plan_dir
    if not path.is_file():
        raise UserError(f"'{plan_dir}' is not a lorakit plan (no plan.json).",
                        fix="make one with `lorakit plan DATASET --out DIR`")
    try:
        plan = Plan.model_validate(read_json(path))
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {path}: {exc}".splitlines()[0],
                        fix="re-create the plan with `lorakit plan ... --force`") from None
    here = str(path.resolve().parent)
    if here != plan.plan_dir:
        plan._planned_in, plan.plan_dir = plan.plan_dir, here
    return plan
