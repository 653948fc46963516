"""What Gates 2 and 3 read: the resolved values, the scanned dataset and its step math, the target
card, and what `lorakit plan` adds for Gate 3. Their rules (lorakit.plan.check, lorakit.plan.advice,
lorakit.plan.hardware) are small functions of one CheckContext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lorakit.config.values import Values
from lorakit.dataset.scan import DatasetScan
from lorakit.dataset.steps import SaveEvent, StepMath
from lorakit.machine.probe import TargetGpu

if TYPE_CHECKING:
    from lorakit.plan.assumptions import Assumptions


@dataclass
class CheckContext:
    values: Values
    dataset: DatasetScan
    reg: DatasetScan | None
    repeats: list[int]  # per subset of dataset, then of reg
    steps: StepMath
    target: TargetGpu | None  # None when only the dataset is checked
    required: list[str]
    # Gate 3 (lorakit.plan.hardware) also reads these; `lorakit plan` fills them
    saves: list[SaveEvent] = field(default_factory=list)
    disk_free_gib: float | None = None
    assumptions: Assumptions | None = None
