"""The estimator's two machine-dependent numbers per GPU, read from the calibration file: a constant
overhead and an efficiency (`lorakit calibrate`, in lorakit.run.calibrate, writes them).

The file is `$LORAKIT_CALIBRATION`, else `$XDG_CONFIG_HOME/lorakit/calibration.toml`
(`~/.config/lorakit/calibration.toml`). One table per GPU, named by its catalog id (or by the name the
driver reports for a card the catalog does not know):

    [gpus.rtx4090]
    overhead_gib = 1.4   # C: CUDA context + allocator reserve measured here (replaces 1.0 GiB)
    efficiency = 0.11    # model-FLOPs utilisation at batch 1 (replaces the assumed 15%)

Without an entry for the GPU, the estimator's assumed overhead and utilisation curve apply.

A run that ran out of GPU memory adds a measured "did not fit" point to its GPU's table (`out_of_memory`,
written by lorakit.run.recover and `lorakit calibrate`): the setup, its estimate without the overhead and
the budget it was planned for. The overhead used for that GPU is then at least what puts each such setup
just over its budget, so the fit never chooses it again (docs/estimator.md §7.1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from lorakit.errors import ConfigError, UserError
from lorakit.machine.probe import TargetGpu
from lorakit.plan.estimate import default_overhead_gib
from lorakit.util import tomlio
from lorakit.util.resources import user_config_dir

CALIBRATION_ENV = "LORAKIT_CALIBRATION"
# Sane calibrated values; outside them a number is a broken measurement or a typo, not a property of the card.
# The overhead is at least a CUDA context, and more than this is an estimate gone wrong, not an overhead.
OVERHEAD_RANGE_GIB = (0.3, 64.0)
EFFICIENCY_RANGE = (0.005, 0.9)  # the share of the card's peak FLOP/s a batch-1 step reaches


OOM_STEP_GIB = 0.25  # how far over its budget a setup that ran out of memory is put: clear of rounding


class OutOfMemoryPoint(BaseModel):
    """A setup that ran out of GPU memory on this card although its estimate was within the budget."""

    model_config = ConfigDict(extra="forbid")

    plan: str
    setup: str  # the setup in words, for people
    estimate_gib: float  # the estimate it was planned with
    rest_gib: float  # the estimate without the overhead C
    budget_gib: float  # the budget it was planned for
    at: str
    # The family's estimate it corrects: a FLUX run that ran out of memory says nothing of SDXL's estimate.
    family: str = "sdxl"

    @property
    def overhead_floor_gib(self) -> float:
        """The least overhead that puts this setup over its budget."""
        return round(self.budget_gib - self.rest_gib + OOM_STEP_GIB, 3)


class GpuCalibration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overhead_gib: float | None = None
    efficiency: float | None = None
    runs: list[str] = []
    updated: str | None = None
    out_of_memory: list[OutOfMemoryPoint] = []  # measured "did not fit" points (docs/estimator.md §7.1)


class CalibrationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpus: dict[str, GpuCalibration] = {}


@dataclass
class Assumptions:
    """The two machine-dependent numbers the estimator uses, and where they come from."""

    overhead_gib: float
    efficiency: float | None  # None: the assumed docs/estimator.md §6 utilisation curve
    vram_calibrated: bool
    time_calibrated: bool
    source: str | None  # the calibration file, when it had an entry for this GPU

    @classmethod
    def uncalibrated(cls) -> Assumptions:
        return cls(default_overhead_gib(), None, False, False, None)


def calibration_path() -> Path:
    if os.environ.get(CALIBRATION_ENV):
        return Path(os.environ[CALIBRATION_ENV]).expanduser()
    return user_config_dir() / "calibration.toml"


def load_calibration(path: Path | None = None) -> CalibrationFile:
    path = path or calibration_path()
    if not path.is_file():
        return CalibrationFile()
    fix = f"fix or delete it (set {CALIBRATION_ENV} to use another file), or rebuild it with `lorakit calibrate PLAN...`"
    try:
        data = CalibrationFile.model_validate(tomlio.load_file(path))
    except (tomlio.TOMLDecodeError, ValidationError, OSError) as exc:
        raise UserError(f"cannot read the calibration file {path}: {str(exc).splitlines()[0]}", fix=fix) from None
    problems = [problem for gpu, entry in data.gpus.items() for problem in _out_of_range(gpu, entry)]
    if problems:
        error = ConfigError(problems, context=f"the calibration file {path}")
        error.fix = fix.replace("fix or delete it", "fix or delete those entries")
        raise error
    return data


def _out_of_range(gpu: str, entry: GpuCalibration) -> list[str]:
    checks = (("overhead_gib", entry.overhead_gib, OVERHEAD_RANGE_GIB, " GiB"), ("efficiency", entry.efficiency, EFFICIENCY_RANGE, ""))
    return [f"[gpus.{gpu}] {name} = {value!r} is outside the sane {low:g}–{high:g}{unit}, so it was not used"
            for name, value, (low, high), unit in checks if value is not None and not low <= value <= high]


def gpu_key(target: TargetGpu) -> str:
    return target.catalog_id or target.name


def assumptions_for(target: TargetGpu, path: Path | None = None, family: str = "sdxl") -> Assumptions:
    """The calibrated overhead and efficiency for this GPU where the file has them, else the defaults; the
    "did not fit" points raise the overhead of plans of their own family only."""
    path = path or calibration_path()
    entry = load_calibration(path).gpus.get(gpu_key(target))
    overhead = entry.overhead_gib if entry else None
    efficiency = entry.efficiency if entry else None
    floors = [point.overhead_floor_gib for point in entry.out_of_memory if point.family == family] if entry else []
    floor = max(floors, default=None)
    if floor is not None and floor > (overhead if overhead is not None else default_overhead_gib()):
        overhead = min(OVERHEAD_RANGE_GIB[1], floor)  # a setup that ran out of memory is over the budget from now on
    return Assumptions(
        overhead_gib=overhead if overhead is not None else default_overhead_gib(),
        efficiency=efficiency,
        vram_calibrated=overhead is not None,
        time_calibrated=efficiency is not None,
        source=str(path) if entry else None,
    )
