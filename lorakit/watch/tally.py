"""Running totals of a training run, kept from its events: what run.json and `lorakit logs` report."""

from __future__ import annotations

import math
import statistics

from lorakit.watch.events import (
    CheckpointSaved,
    Epoch,
    Event,
    GpuSample,
    LogMessage,
    ModelSaved,
    Problem,
    Progress,
    Step,
    TrainingSummary,
)


class RunTally:
    def __init__(self, start_step: int = 0) -> None:
        """`start_step`: the step a resumed run continues from (its steps are counted from the plan's start)."""
        self.start_step = start_step
        self.steps_done = start_step
        self.total_steps: int | None = None
        self.last_loss: float | None = None
        self.min_loss: float | None = None
        self.epoch: int | None = None
        self.epochs: int | None = None
        self.summary: TrainingSummary | None = None
        self.problems: list[Problem] = []
        self.checkpoints: list[str] = []
        self.warnings: list[str] = []
        self.model_saved = False
        self.peak_vram_gib: float | None = None
        self._tqdm_rate: float | None = None
        self._step_seconds: list[float] = []  # seconds per step after the first (which includes warm-up)
        self._last_seen: tuple[int, float] | None = None

    def add(self, event: Event, at: float | None = None) -> None:
        """Count one event; `at` is when it arrived (time.monotonic()), None when reading a finished log."""
        if isinstance(event, Step):
            self._step(event, at)
        elif isinstance(event, Progress):
            self.total_steps = event.total
            self._time_step(event.step, at)
        elif isinstance(event, Epoch):
            self.epoch, self.epochs = event.epoch, event.epochs
        elif isinstance(event, TrainingSummary):
            self.summary = event
            self.total_steps = event.total_steps or self.total_steps
            self.epochs = event.epochs or self.epochs
        elif isinstance(event, CheckpointSaved):
            self.checkpoints.append(event.path)
        elif isinstance(event, ModelSaved):
            self.model_saved = True
        elif isinstance(event, Problem):
            self.problems.append(event)
        elif isinstance(event, LogMessage) and event.level != "WARNING":
            self.warnings.append(f"{event.level}: {event.message}")
        elif isinstance(event, GpuSample):
            self.peak_vram_gib = max(self.peak_vram_gib or 0.0, event.memory_used_gib)

    def _step(self, step: Step, at: float | None) -> None:
        self.steps_done = max(self.steps_done, step.step)
        self.total_steps = step.total
        if step.loss is not None:
            self.last_loss = None if math.isnan(step.loss) else step.loss
            if not math.isnan(step.loss):
                self.min_loss = step.loss if self.min_loss is None else min(self.min_loss, step.loss)
        if step.it_per_s:
            self._tqdm_rate = step.it_per_s

    def _time_step(self, step: int, at: float | None) -> None:
        """A step ends when the bar first shows it; the time between two such moments is one step's time."""
        if at is None or (self._last_seen is not None and step <= self._last_seen[0]):
            return
        if self._last_seen is not None and at <= self._last_seen[1]:
            return  # read in the same chunk as the last step (a busy reader): no time between them was seen
        if self._last_seen is not None and self._last_seen[0] > self.start_step:
            self._step_seconds.append((at - self._last_seen[1]) / (step - self._last_seen[0]))
        self._last_seen = (step, at)

    @property
    def seconds_per_step(self) -> float | None:
        """Median seconds per step after the first (which includes warm-up); tqdm's average otherwise."""
        if self._step_seconds:
            return statistics.median(self._step_seconds)
        return 1.0 / self._tqdm_rate if self._tqdm_rate else None

    @property
    def it_per_s(self) -> float | None:
        seconds = self.seconds_per_step
        return 1.0 / seconds if seconds else None
