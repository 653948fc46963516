"""`lorakit logs`: read any sd-scripts console log (lorakit's train.log, a GUI run's saved output) after the fact;
`log_tail`: the end of one as people read it."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.errors import UserError
from lorakit.watch.events import Problem
from lorakit.watch.parse import StreamParser
from lorakit.watch.resumed import ResumedSteps
from lorakit.watch.tally import RunTally

BLOCK = 1 << 20


class LogReport(BaseModel):
    """What a log says about its run; `lorakit logs --json` prints it."""

    model_config = ConfigDict(extra="forbid")

    path: str
    steps_done: int
    total_steps: int | None
    epoch: int | None
    epochs: int | None
    last_loss: float | None
    min_loss: float | None
    seconds_per_step: float | None
    checkpoints: list[str]
    model_saved: bool
    problems: list[Problem]
    errors: list[str]
    tensorboard: str | None = None
    events: int = 0


def read_events(path: Path):
    """Every event in a log file; `\\r` is kept (newline="") since the bar's redraws depend on it."""
    if not path.is_file():
        raise UserError(f"'{path}' is not a file.", fix="give the path of a saved sd-scripts console log")
    parser = StreamParser()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        while block := f.read(BLOCK):
            yield from parser.feed(block)
    yield from parser.close()


def read_log(path: Path, tensorboard: Path | None = None) -> LogReport:
    """Parse `path`; with `tensorboard`, also write lorakit's TensorBoard summaries of it there."""
    writer = None
    if tensorboard is not None:
        from lorakit.watch.tbwriter import TensorBoardWriter

        writer = TensorBoardWriter(tensorboard)
    tally = RunTally()
    count = 0
    consumer = writer if writer is not None else (lambda event: None)
    true_steps = ResumedSteps(from_log=True)  # a resumed start's steps continue from its saved step, as in `launch`
    try:
        for event in read_events(path):
            event = true_steps(event)
            count += 1
            tally.add(event)
            consumer(event)
    finally:
        if writer is not None:
            writer.close()
    return LogReport(
        path=str(path), steps_done=tally.steps_done, total_steps=tally.total_steps, epoch=tally.epoch,
        epochs=tally.epochs, last_loss=tally.last_loss, min_loss=tally.min_loss,
        seconds_per_step=tally.seconds_per_step, checkpoints=tally.checkpoints, model_saved=tally.model_saved,
        problems=tally.problems, errors=tally.warnings, tensorboard=str(tensorboard) if tensorboard else None,
        events=count,
    )


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a trainer log, with the bar's `\\r` redraws reduced to their last frame."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join([line for line in shown if line.strip()][-lines:])
