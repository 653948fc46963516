"""`lorakit calibrate PLAN...`: derive each GPU's overhead and efficiency from runs that have happened.

C is what the measured peak VRAM (`<plan>/run.json`, written by `lorakit launch`) leaves after the
estimator's other components (the largest over the runs, so the estimate errs on the safe side); the
efficiency is the measured seconds per step against the plan's FLOPs, scaled back to batch 1 (the
median over the runs). Both go into the calibration file that lorakit.plan.assumptions reads.

A run that ran out of GPU memory gives a "did not fit" point instead (docs/estimator.md §7.1): the
out-of-memory recovery records it at once (`record_out_of_memory`), and `calibrate` reads it again from
each attempt in run.json that ran out of memory, so a calibration file rebuilt from the runs keeps it.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.plan.assumptions import (
    EFFICIENCY_RANGE,
    OVERHEAD_RANGE_GIB,
    CalibrationFile,
    GpuCalibration,
    OutOfMemoryPoint,
    calibration_path,
    gpu_key,
    load_calibration,
)
from lorakit.plan.build import Plan, load_plan
from lorakit.plan.estimate import TrainingSetup, estimate_vram, setup_from_values
from lorakit.plan.timing import assumed_mfu, step_time
from lorakit.util import tomlio
from lorakit.util.files import write_text_atomic
from lorakit.util.reading import read_json

MEASURED_STATES = ("succeeded", "interrupted")
_FILE_LOCK = threading.Lock()


class MeasuredAttempt(BaseModel):
    model_config = ConfigDict(extra="ignore")

    problem: str | None = None
    plan_files: str | None = None  # set when a recovery replaced the plan it ran out of memory with


class MeasuredRun(BaseModel):
    """The part of `<plan>/run.json` calibration reads; the rest belongs to `lorakit launch`."""

    model_config = ConfigDict(extra="ignore")

    state: str
    peak_vram_gib: float | None = None
    seconds_per_step: float | None = None
    attempts: list[MeasuredAttempt] = []


@dataclass
class RunCalibration:
    plan_dir: Path
    gpu: str | None = None
    overhead_gib: float | None = None
    efficiency: float | None = None
    skipped: list[str] = field(default_factory=list)  # why a number could not be derived
    out_of_memory: list[OutOfMemoryPoint] = field(default_factory=list)  # setups that did not fit


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
    # the plans the recoveries replaced are kept beside the old plan files (lorakit.plan.revise)
    result.out_of_memory = [out_of_memory_point(load_plan(Path(a.plan_files))) for a in run.attempts
                            if a.problem == "out-of-memory" and a.plan_files and (Path(a.plan_files) / "plan.json").is_file()]
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


def out_of_memory_point(plan: Plan) -> OutOfMemoryPoint:
    """The plan's setup as a "did not fit" point for its GPU."""
    setup = setup_from_values(plan.value_set)
    rest = estimate_vram(setup, 0.0).total
    words = (f"batch {setup.batch_size} × accumulation {setup.gradient_accumulation_steps}, "
             f"{'with' if setup.gradient_checkpointing else 'without'} gradient checkpointing, {setup.width}×{setup.height}, "
             f"rank {setup.network_dim}, {setup.mixed_precision}, attention {setup.attention}")
    return OutOfMemoryPoint(plan=plan.plan_dir, setup=words, estimate_gib=round(plan.vram.estimate_gib if plan.vram else rest, 3),
                            rest_gib=round(rest, 3), budget_gib=round(plan.target.budget_gib, 3),
                            at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), family=plan.family)


def record_out_of_memory(plan: Plan, path: Path | None = None) -> OutOfMemoryPoint:
    """Add the plan's setup to its GPU's "did not fit" points in the calibration file (once per setup)."""
    path = path or calibration_path()
    point = out_of_memory_point(plan)
    with _FILE_LOCK:  # `batch run` recovers runs in several threads: one read-modify-write at a time
        current = load_calibration(path)
        gpus = dict(current.gpus)
        entry = gpus.get(gpu_key(plan.target), GpuCalibration())
        if not _known(entry, point):
            gpus[gpu_key(plan.target)] = entry.model_copy(update={"out_of_memory": [*entry.out_of_memory, point]})
            _write(path, CalibrationFile(gpus=gpus))
    return point


def _known(entry: GpuCalibration, point: OutOfMemoryPoint) -> bool:
    return any((p.setup, p.rest_gib, p.budget_gib) == (point.setup, point.rest_gib, point.budget_gib)
               for p in entry.out_of_memory)


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
        old = current.gpus.get(gpu, GpuCalibration())
        points = list(old.out_of_memory)
        for point in (p for r in mine for p in r.out_of_memory):
            if not _known(GpuCalibration(out_of_memory=points), point):
                points.append(point)
        if not overheads and not efficiencies:
            if points != old.out_of_memory:
                after[gpu] = old.model_copy(update={"out_of_memory": points})
            continue
        after[gpu] = GpuCalibration(
            overhead_gib=round(max(overheads), 3) if overheads else old.overhead_gib,
            efficiency=round(statistics.median(efficiencies), 4) if efficiencies else old.efficiency,
            runs=[str(r.plan_dir) for r in mine if r.overhead_gib is not None or r.efficiency is not None],
            updated=stamp, out_of_memory=points,
        )
    if after != current.gpus:
        _write(path, CalibrationFile(gpus=after))
    return CalibrationUpdate(path=path, runs=runs, before=current.gpus, after=after)


def _write(path: Path, data: CalibrationFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# lorakit calibration: measured constant overhead (GiB) and batch-1 efficiency per GPU.\n"
            "# Written by `lorakit calibrate`; read by `lorakit plan`.\n")
    dumped = data.model_dump(exclude_none=True)
    for entry in dumped["gpus"].values():
        if not entry["out_of_memory"]:
            del entry["out_of_memory"]  # most cards never ran out of memory: no empty list for them
    text += tomlio.dumps(dumped)
    write_text_atomic(path, text)
