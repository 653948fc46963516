"""A resumed start's steps moved onto the plan's steps, for everything lorakit shows (docs/sd-scripts.md §8).

With `--resume` and `--skip_until_initial_step`, sd-scripts' `steps` bar counts only the steps of this
start, so the true step is the saved step plus the bar's. The bar's total is not always the remaining
steps (past the first epoch sd-scripts subtracts only the part of the saved step inside its epoch), so
the true total is the "running training" block's total optimization steps when it printed one.

`launch` knows the saved step from the state it resumes; a log read afterwards (`lorakit logs`) learns
it from sd-scripts' own `skipping N steps` line, and one log may hold several starts (an out-of-memory
recovery appends its next attempt): a new "running training" block after steps were counted is a new
start, which counts from 0 until its own `skipping` line says otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from lorakit.watch.events import Event, Progress, Resumed, Step, TrainingSummary


class ResumedSteps:
    def __init__(self, offset: int = 0, *, from_log: bool = False) -> None:
        self.offset = offset  # the saved step this start continues from
        self.trainer_total: int | None = None  # max_train_steps as the trainer's summary says it
        self.from_log = from_log  # learn the offset from the log's own lines
        self._stepped = False  # a bar was seen since the offset was last set

    def __call__(self, event: Event) -> Event:
        if isinstance(event, TrainingSummary):
            self.trainer_total = event.total_steps
            # stdout's summary and stderr's `skipping` line may arrive in either order: only a summary after
            # steps of the earlier start begins a new one
            if self.from_log and self._stepped:
                self.offset, self._stepped = 0, False
        elif isinstance(event, Resumed) and self.from_log:
            self.offset, self._stepped = event.step, False
        if not isinstance(event, (Progress, Step)):
            return event
        self._stepped = True
        if not self.offset:
            return event
        return replace(event, step=event.step + self.offset, total=self.trainer_total or event.total + self.offset)
