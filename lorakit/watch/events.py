"""What a training run says, as typed events: parsed from sd-scripts' output or observed by the launcher.

The log parser (`lorakit.watch.parse`) turns the trainer's text into these; the launcher adds the
process and GPU events. Consumers (the live display, the TensorBoard writer, run.json, the batch
runner) receive them in order through one callback and never read the text themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

ProblemKind = Literal[
    "out-of-memory", "nan-loss", "missing-module", "bad-arguments", "no-data", "model-missing", "crash", "killed",
    "disk-full",
]


@lru_cache(maxsize=8192)
def parse_interval(text: str) -> float | None:
    """tqdm's `MM:SS`, `H:MM:SS` or `Nd H:MM:SS` as seconds; None for `?`."""
    days = 0
    if "d " in text:
        day_text, _, text = text.partition("d ")
        days = int(day_text) if day_text.strip().isdigit() else 0
    seconds = 0
    try:
        for part in text.split(":"):
            seconds = seconds * 60 + int(part)
    except ValueError:
        return None
    return days * 86400 + seconds


@lru_cache(maxsize=8192)
def parse_rate(text: str) -> float | None:
    """tqdm's `1.52it/s` or `27.77s/it` as iterations per second."""
    text = text.strip()
    try:
        if text.endswith("it/s"):
            return float(text[:-4])
        if text.endswith("s/it"):
            value = float(text[:-4])
            return 1.0 / value if value > 0 else None
    except ValueError:
        return None
    return None


@dataclass(slots=True)
class BarFrame:
    """A redraw of sd-scripts' `steps` bar. Times stay tqdm's text until asked for, which keeps parsing fast."""

    step: int
    total: int
    loss: float | None
    elapsed: str = "?"
    remaining: str = "?"
    rate: str = "?"

    @property
    def elapsed_s(self) -> float | None:
        return parse_interval(self.elapsed)

    @property
    def remaining_s(self) -> float | None:
        return parse_interval(self.remaining)

    @property
    def it_per_s(self) -> float | None:
        return parse_rate(self.rate)


@dataclass(slots=True)
class Progress(BarFrame):
    """One redraw of the bar (two per step: before and after the loss is known)."""


@dataclass(slots=True)
class Step(BarFrame):
    """A finished optimizer step with its `avr_loss` (sent once the bar has moved past it or closed)."""


@dataclass(slots=True)
class Epoch:
    epoch: int
    epochs: int


@dataclass(slots=True)
class TrainingSummary:
    """sd-scripts' "running training" block: what it will actually do."""

    train_images: int | None = None
    reg_images: int | None = None
    batches_per_epoch: int | None = None
    epochs: int | None = None
    batch_sizes: list[int] = field(default_factory=list)
    gradient_accumulation_steps: int | None = None
    total_steps: int | None = None


@dataclass(slots=True)
class CheckpointSaved:
    path: str


@dataclass(slots=True)
class CheckpointRemoved:
    path: str


@dataclass(slots=True)
class StateSaved:
    """`saving state at step N` / `at epoch N` / `saving last state.`"""

    step: int | None
    epoch: int | None


@dataclass(slots=True)
class Resumed:
    """`skipping N steps`: a start with --resume and --skip_until_initial_step continues after the saved step N."""

    step: int


@dataclass(slots=True)
class SampleStarted:
    step: int


@dataclass(slots=True)
class ModelSaved:
    """`model saved.`: sd-scripts wrote the final LoRA and is about to exit."""


@dataclass(slots=True)
class LogMessage:
    """A WARNING, ERROR or CRITICAL log record, wrapped lines joined back into one message."""

    level: str
    message: str


@dataclass(slots=True)
class Problem:
    """Something that ends or ruins the run, recognised in the output."""

    kind: ProblemKind
    message: str
    detail: str = ""  # e.g. the missing module's name, or the signal


@dataclass(slots=True)
class Started:
    pid: int
    command: list[str]


@dataclass(slots=True)
class GpuSample:
    memory_used_gib: float
    utilization_pct: float | None


@dataclass(slots=True)
class Mismatch:
    """sd-scripts will do something other than the plan predicted (steps, epochs, batches)."""

    message: str


@dataclass(slots=True)
class Exited:
    exit_code: int | None
    signal: str | None


Event = (
    Progress | Step | Epoch | TrainingSummary | CheckpointSaved | CheckpointRemoved | StateSaved | SampleStarted
    | Resumed | ModelSaved | LogMessage | Problem | Started | GpuSample | Mismatch | Exited
)
