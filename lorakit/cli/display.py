"""The live view of a run, one consumer of launch events: a progress bar on a terminal, plain lines otherwise.

The bar shows step/total, loss, speed, ETA and GPU memory; saves, epochs, warnings and errors are
printed above it. Without a terminal (CI, a log file, the batch runner) a progress line is printed
every `every_s` seconds, and the other messages as they happen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lorakit.util.text import duration_text, loss_text
from lorakit.watch.events import (
    CheckpointSaved,
    Epoch,
    Event,
    Exited,
    GpuSample,
    LogMessage,
    Mismatch,
    ModelSaved,
    Problem,
    Progress,
    SampleStarted,
    Started,
    StateSaved,
    Step,
    TrainingSummary,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


def format_rate(it_per_s: float | None) -> str:
    if not it_per_s:
        return "–"
    return f"{it_per_s:.2f} it/s" if it_per_s >= 1 else f"{1 / it_per_s:.1f} s/it"


class Display:
    """Shared message text; subclasses decide how progress is drawn."""

    def __init__(self, console: Console):
        self.console = console
        self.gpu_gib: float | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.progress(event)
        elif isinstance(event, Step):
            self.step(event)
        elif isinstance(event, GpuSample):
            self.gpu_gib = event.memory_used_gib
        else:
            text = self.message(event)
            if text:
                self.say(text)

    def message(self, event: Event) -> str | None:
        from rich.markup import escape

        if isinstance(event, Started):
            return f"[dim]trainer started (pid {event.pid})[/]"
        if isinstance(event, TrainingSummary):
            return (f"sd-scripts: {event.total_steps} steps, {event.epochs} epoch(s), {event.batches_per_epoch} batches "
                    f"per epoch, {event.train_images} train + {event.reg_images} reg samples")
        if isinstance(event, Mismatch):
            return f"[yellow]WARNING[/] {escape(event.message)}"
        if isinstance(event, Epoch):
            return f"epoch {event.epoch}/{event.epochs}"
        if isinstance(event, CheckpointSaved):
            return f"saved {escape(event.path)}"
        if isinstance(event, StateSaved):
            where = f"step {event.step}" if event.step else (f"epoch {event.epoch}" if event.epoch else "the end")
            return f"state saved at {where}"
        if isinstance(event, SampleStarted):
            return f"making sample images at step {event.step}"
        if isinstance(event, ModelSaved):
            return "[green]model saved.[/]"
        if isinstance(event, LogMessage):
            style = "yellow" if event.level == "WARNING" else "red"
            return f"[{style}]{event.level}[/] {escape(event.message)}"
        if isinstance(event, Problem):
            return f"[bold red]{event.kind}:[/] {escape(event.message)}"
        if isinstance(event, Exited):
            how = f"killed by {event.signal}" if event.signal else f"exit code {event.exit_code}"
            return f"[dim]trainer ended ({how})[/]"
        return None

    def progress_text(self, event: Progress | Step) -> str:
        share = f" ({100 * event.step / event.total:.0f}%)" if event.total else ""
        gpu = f"  GPU {self.gpu_gib:.1f} GiB" if self.gpu_gib is not None else ""
        return (f"step {event.step}/{event.total}{share}  loss {loss_text(event.loss)}  {format_rate(event.it_per_s)}  "
                f"ETA {duration_text(event.remaining_s)}{gpu}")

    def progress(self, event: Progress) -> None:
        raise NotImplementedError

    def step(self, event: Step) -> None:
        """A finished step, with its own loss (the bar already showed it)."""

    def say(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        pass


class PlainDisplay(Display):
    """A progress line every `every_s` seconds (and at the last step), for logs and pipes."""

    def __init__(self, console: Console, every_s: float = 30.0, clock=None, prefix: str = ""):
        import time

        super().__init__(console)
        self.prefix = prefix  # tells runs apart when several print to one console (the batch runner)
        self.every_s = every_s
        self.clock = clock or time.monotonic
        self._last: float | None = None
        self._drawn: int | None = None  # the step of the bar's latest redraw
        self._known = 0  # the last step whose own loss has been seen (printed or not)

    def progress(self, event: Progress) -> None:
        # A step's first redraw still shows the previous step's loss (docs/sd-scripts.md §9); its second
        # redraw, or else its Step event, has its own. A line names a step with that step's loss.
        second = event.step == self._drawn
        self._drawn = event.step
        if second:
            self._known_loss(event)

    def step(self, event: Step) -> None:
        self._known_loss(event)

    def _known_loss(self, event: Progress | Step) -> None:
        if event.step <= self._known:
            return
        self._known = event.step
        now = self.clock()
        if self._last is None or now - self._last >= self.every_s or event.step == event.total:
            self._last = now
            self.say(self.progress_text(event))

    def say(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(escape(self.prefix) + text)


class BarDisplay(Display):
    """A rich progress bar on a terminal."""

    def __init__(self, console: Console):
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as Bar

        super().__init__(console)
        self.bar = Bar(TextColumn("[bold]training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                       TextColumn("ETA {task.fields[eta]}"), TextColumn("{task.fields[gpu]}"), console=console)
        self.task: TaskID | None = None

    def progress(self, event: Progress) -> None:
        fields: dict[str, Any] = {"loss": loss_text(event.loss), "rate": format_rate(event.it_per_s),
                  "eta": duration_text(event.remaining_s),
                  "gpu": f"GPU {self.gpu_gib:.1f} GiB" if self.gpu_gib is not None else ""}
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("training", total=event.total, completed=event.step, **fields)
        else:
            self.bar.update(self.task, total=event.total, completed=event.step, **fields)

    def say(self, text: str) -> None:
        (self.bar.console if self.task is not None else self.console).print(text)

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()


def make_display(console: Console, *, plain: bool | None = None, every_s: float = 30.0) -> Display:
    """A bar on a terminal, plain lines otherwise (or when `plain` says so)."""
    if plain is None:
        plain = not console.is_terminal
    return PlainDisplay(console, every_s) if plain else BarDisplay(console)
