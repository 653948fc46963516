"""`lorakit calibrate PLAN...`: derive each GPU's overhead and efficiency from runs that have happened.

C is what the measured peak VRAM (`<plan>/run.json`, written by `lorakit launch`) leaves after the
estimator's other components (the largest over the runs, so the estimate errs on the safe side); the
efficiency is the measured seconds per step against the plan's FLOPs, scaled back to batch 1 (the
median over the runs). Both go into the calibration file that lorakit.plan.assumptions reads.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.plan.assumptions import (
    EFFICIENCY_RANGE,
    OVERHEAD_RANGE_GIB,
    CalibrationFile,
    GpuCalibration,
    calibration_path,
    gpu_key,
    load_calibration,
)
from lorakit.plan.build import load_plan
from lorakit.plan.estimate import TrainingSetup, estimate_vram, setup_from_values
from lorakit.plan.timing import assumed_mfu, step_time
from lorakit.util import tomlio
from lorakit.util.files import write_text_atomic
from lorakit.util.reading import read_json

MEASURED_STATES = ("succeeded", "interrupted")


class MeasuredRun(BaseModel):
    """The part of `<plan>/run.json` calibration reads; the rest belongs to `lorakit launch`."""

    model_config = ConfigDict(extra="ignore")

    state: str
    peak_vram_gib: float | None = None
    seconds_per_step: float | None = None


@dataclass
class RunCalibration:
    plan_dir: Path
    gpu: str | None = None
    overhead_gib: float | None = None
    efficiency: float | None = None
    skipped: list[str] = field(default_factory=list)  # why a number could not be derived


@dataclass
class CalibrationUpdate:
    path: Path
    runs: list[RunCalibration]
    before: dict[str, GpuCalibration]
    after: dict[str, GpuCalibration]

    def report(self) -> CalibrationReport:
        return CalibrationReport(file=str(self.path), gpus=self.after, runs=[
            RunReport(plan=str(r.plan_dir), gpu=r.gpu, overhead_gib=r.overhead_gib, efficiency=r.efficiency,
                      skipped=r.skipped) for r in self.runs])


class RunReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: str
    gpu: str | None
    overhead_gib: float | None
    efficiency: float | None
    skipped: list[str]


class CalibrationReport(BaseModel):
    """`lorakit calibrate --json`: the file, every GPU's calibration in it now, and what each run gave."""

    model_config = ConfigDict(extra="forbid")

    file: str
    gpus: dict[str, GpuCalibration]
    runs: list[RunReport]


def calibrate_from_run(plan_dir: Path) -> RunCalibration:
    plan = load_plan(plan_dir)
    result = RunCalibration(plan_dir=Path(plan.plan_dir), gpu=gpu_key(plan.target))
    run_file = Path(plan.plan_dir) / "run.json"
    if not run_file.is_file():
        run_file = plan_dir / "run.json"
    if not run_file.is_file():
        result.skipped.append("no run.json: the plan has not been launched")
        return result
    try:
        run = MeasuredRun.model_validate(read_json(run_file))
    except (ValueError, OSError) as exc:
        result.skipped.append(f"cannot read {run_file}: {str(exc).splitlines()[0]}")
        return result
    if run.state not in MEASURED_STATES:
        result.skipped.append(f"the run {run.state}; only runs that {' or were '.join(MEASURED_STATES)} measure the card")
        return result
    setup = setup_from_values(plan.value_set)
    if run.peak_vram_gib is None:
        result.skipped.append("run.json has no peak_vram_gib")
    else:
        result.overhead_gib = overhead_from_peak(setup, run.peak_vram_gib)
    if run.seconds_per_step is None or run.seconds_per_step <= 0:
        result.skipped.append("run.json has no seconds_per_step")
    elif not plan.target.bf16_tflops:
        result.skipped.append(f"{plan.target.name} is not in the GPU catalog, so its peak FLOP/s is unknown")
    else:
        result.efficiency = efficiency_from_speed(setup, plan.target.bf16_tflops, run.seconds_per_step)
    return result


def overhead_from_peak(setup: TrainingSetup, peak_vram_gib: float) -> float:
    """C = the measured peak minus everything else the estimator counts."""
    rest = estimate_vram(setup, 0.0).total
    low, high = OVERHEAD_RANGE_GIB  # the bounds the reader holds the file to (lorakit.plan.assumptions)
    return min(high, max(low, peak_vram_gib - rest))


def efficiency_from_speed(setup: TrainingSetup, peak_tflops: float, seconds_per_step: float) -> float:
    """The batch-1 utilisation that makes the time model predict the measured seconds per step."""
    assumed_seconds = step_time(setup, peak_tflops).seconds_per_step
    efficiency = assumed_mfu(peak_tflops, 1) * assumed_seconds / seconds_per_step
    low, high = EFFICIENCY_RANGE
    return min(high, max(low, efficiency))


def calibrate(plan_dirs: list[Path], path: Path | None = None) -> CalibrationUpdate:
    """Derive each GPU's calibration from the runs and write it into the file, keeping other GPUs' entries."""
    path = path or calibration_path()
    current = load_calibration(path)
    runs = [calibrate_from_run(d) for d in plan_dirs]
    after = dict(current.gpus)
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for gpu in dict.fromkeys(r.gpu for r in runs if r.gpu):
        mine = [r for r in runs if r.gpu == gpu]
        overheads = [r.overhead_gib for r in mine if r.overhead_gib is not None]
        efficiencies = [r.efficiency for r in mine if r.efficiency is not None]
        if not overheads and not efficiencies:
            continue
        old = current.gpus.get(gpu, GpuCalibration())
        after[gpu] = GpuCalibration(
            overhead_gib=round(max(overheads), 3) if overheads else old.overhead_gib,
            efficiency=round(statistics.median(efficiencies), 4) if efficiencies else old.efficiency,
            runs=[str(r.plan_dir) for r in mine if r.overhead_gib is not None or r.efficiency is not None],
            updated=stamp,
        )
    if after != current.gpus:
        _write(path, CalibrationFile(gpus=after))
    return CalibrationUpdate(path=path, runs=runs, before=current.gpus, after=after)


def _write(path: Path, data: CalibrationFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# lorakit calibration: measured constant overhead (GiB) and batch-1 efficiency per GPU.\n"
            "# Written by `lorakit calibrate`; read by `lorakit plan`.\n")
    text += tomlio.dumps(data.model_dump(exclude_none=True))
    write_text_atomic(path, text)
