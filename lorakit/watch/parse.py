"""sd-scripts' console output → typed events (docs/sd-scripts.md §9, §10).

One `StreamParser` per stream (or one for a merged log file or a pseudo-terminal). It copes with
what sd-scripts really writes: the tqdm bar redrawn behind `\\r` with no newline, log records written
straight after the bar text on the same line, Rich log records wrapped at 80 columns (or
`$COLUMNS`) with the time column left blank when the second repeats, `--console_log_simple`'s bare
messages, ANSI colours and cursor moves from a terminal, and Python tracebacks.

Text arrives in arbitrary chunks; `feed` returns the events that are complete so far and `close`
the rest. The bar line is the hot path (two redraws per step), so it is matched first and cheaply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from rich.cells import cell_len

from lorakit.watch.events import (
    CheckpointRemoved,
    CheckpointSaved,
    Epoch,
    Event,
    LogMessage,
    ModelSaved,
    Problem,
    Progress,
    Resumed,
    SampleStarted,
    StateSaved,
    Step,
    TrainingSummary,
)

_TERMINATOR = re.compile(r"(\r\n|\r|\n)")
_ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# sd-scripts' training bar (desc "steps"): n, total, elapsed, remaining, rate, postfix
_STEPS_BAR = re.compile(r"\s*steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^<\]]*)<([^,\]]*),\s*([^,\]]*)(,[^\]]*)?\]")
# any other tqdm bar (caching latents, validation, sampling), skipped
_OTHER_BAR = re.compile(r"\s*[^|\r\n]*?:\s*\d+%\|[^|]*\|[^\[\]]*\[[^\]]*\]")
_RICH = re.compile(
    r"(?:\[?\d{2,4}[-/]\d\d[-/]\d{2,4}[ T]\d\d:\d\d:\d\d\]?|\[?\d\d:\d\d:\d\d\]?| {8,})"
    r" (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) +(?P<message>.*)"
)
_RICH_PATH = re.compile(r"\s+(?P<path>[\w.\-]+\.py:\d+)\s*$")
_CONTINUATION_INDENT = 20  # the message column starts at 29; a wrapped line is indented at least this far
_EPOCH = re.compile(r"epoch (\d+)/(\d+)$")
_SUMMARY_LINE = re.compile(r"\s+(?P<key>[^/:=]+?)\s*/[^:=]*[:=]\s*(?P<value>.+)$")
_SUMMARY_KEYS = {
    "num train images * repeats": "train_images",
    "num reg images": "reg_images",
    "num batches per epoch": "batches_per_epoch",
    "num epochs": "epochs",
    "batch size per device": "batch_sizes",
    "gradient accumulation steps": "gradient_accumulation_steps",
    "total optimization steps": "total_steps",
}
_STATE = re.compile(r"saving (?:last )?state(?: at (step|epoch) (\d+))?")
_SAMPLE = re.compile(r"generating sample images at step[^:]*:\s*(\d+)")
_SKIPPING = re.compile(r"skipping (\d+) steps")  # not "skipping epoch N because ...": that one repeats per epoch
_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")
_SD_SCRIPTS_IMPORT = re.compile(r"ImportError: No (\w+) /")
_DIED = re.compile(r"died with <Signals\.(\w+): (\d+)>")
_BAD_ARGS = re.compile(r"error: (unrecognized arguments: .*|argument \S+: .*)$")
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b.*")


def _loss(postfix: str | None) -> float | None:
    """`avr_loss` from the bar's postfix (tqdm sorts the keys, so it comes after capitalised ones)."""
    if not postfix:
        return None
    at = postfix.rfind("avr_loss=")
    if at < 0:
        return None
    text = postfix[at + 9:].split(",", 1)[0].strip()
    try:
        return float(text)  # "nan" too
    except ValueError:
        return None


def _cut_mid_word(previous: str, piece: str, width: int | None) -> bool:
    """Whether Rich cut a word between two wrapped lines of a record, rather than breaking at a space.

    Rich (`rich._wrap.divide_line`) moves a word that does not fit to the next line, dropping the space,
    and only a word longer than the column (a path) is cut, in pieces that start a line of their own and
    fill it: the piece before a cut has no space and the cut word's next character no longer fits. (A
    word exactly as wide as the column, then a break at a space, looks the same and is joined as cut. A
    long word cut right before its space is told apart by the caller: the space starts the next line.)
    """
    if not width or not piece or " " in previous:
        return False
    return cell_len(previous) + cell_len(piece[0]) > width


class StreamParser:
    """Incremental parser for one text stream of sd-scripts (or a merged log)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._events: list[Event] = []
        self._frame: Progress | None = None  # the bar's latest redraw (its step is not finished yet)
        self._done: tuple[int, int | None] = (0, None)  # the last finished (step, total)
        # a Rich record that may get wrapped lines: level, pieces, message width, message column
        self._record: tuple[str, list[str], int | None, int] | None = None
        self._summary: TrainingSummary | None = None
        self._in_traceback = False
        self._seen_problems: set[tuple[str, str]] = set()

    # --- input ------------------------------------------------------------------------------------

    def feed(self, text: str) -> list[Event]:
        data = self._buffer + text
        parts = _TERMINATOR.split(data)
        # parts = [segment, terminator, segment, terminator, ..., tail]
        tail = parts.pop()
        if tail == "" and parts and parts[-1] == "\r":
            # a lone \r at the end may be the first half of \r\n: wait for the next chunk
            parts.pop()
            tail = parts.pop() + "\r"
        for index in range(0, len(parts), 2):
            self._segment(parts[index])
        self._buffer = tail
        if tail and not tail.endswith("\r"):
            self._peek(tail)
        return self._take()

    def close(self) -> list[Event]:
        tail, self._buffer = self._buffer.rstrip("\r"), ""
        if tail:
            self._segment(tail)
        self._end_record()
        self._finish_step()
        self._end_summary()
        return self._take()

    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # --- segments ---------------------------------------------------------------------------------

    def _peek(self, partial: str) -> None:
        """Show the bar's newest redraw at once; tqdm writes `\\r` before a frame, not after it."""
        if "%|" not in partial:
            return
        text = _ANSI.sub("", partial) if "\x1b" in partial else partial
        found = _STEPS_BAR.match(text)
        if found and found.end() >= len(text.rstrip()):
            self._bar(found.groups())

    def _segment(self, text: str) -> None:
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        while "%|" in text:
            steps = _STEPS_BAR.match(text)
            found = steps or _OTHER_BAR.match(text)
            if not found:
                break
            if self._record is not None:
                self._end_record()  # a bar ends the log record before it
            if steps:
                self._bar(steps.groups())
            text = text[found.end():]
            if not text or text.isspace():
                # A newline after the bar does not finish its step: in a merged log it is stdout's
                # "\nsaving checkpoint: …" between the step's two redraws, and the second carries its loss.
                return
        if self._record is not None or not text.isspace():
            self._line(text)

    def _bar(self, groups: tuple) -> None:
        n, total_text, elapsed, remaining, rate, postfix = groups
        step, total = int(n), int(total_text)
        loss = _loss(postfix)
        previous = self._frame
        if previous is not None:
            if step != previous.step or total != previous.total:
                self._finish_step()
            elif previous.loss == loss and (loss is not None or previous.loss is None):
                return  # the same redraw again
        frame = Progress(step, total, loss, elapsed, remaining, rate)
        self._frame = frame
        self._events.append(frame)

    def _finish_step(self) -> None:
        frame, self._frame = self._frame, None
        if frame is not None and frame.total == self._done[1] and frame.step <= self._done[0]:
            return  # the same step drawn again after a line broke the bar (tqdm redraws it when it closes)
        if frame is not None and frame.step > 0:
            self._done = (frame.step, frame.total)
            self._events.append(Step(frame.step, frame.total, frame.loss, frame.elapsed, frame.remaining, frame.rate))
            if frame.loss is not None and math.isnan(frame.loss):
                self._problem("nan-loss", f"the loss is NaN (avr_loss=nan at step {frame.step})", "avr_loss")

    # --- lines ------------------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        record = _RICH.match(line)
        if record:
            self._end_record()
            self._end_summary()
            start = record.start("message")
            path = _RICH_PATH.search(line, start)
            # Rich pads the message column with spaces up to one column before the source location: its width
            width = cell_len(line[start:path.start("path")]) - 1 if path else None
            message = line[start:path.start()] if path else line[start:]
            self._record = (record.group("level"), [message.strip()], width, start)
            return
        if self._record is not None:
            indent = len(line) - len(line.lstrip(" "))
            if indent >= _CONTINUATION_INDENT and line.strip():
                # a line indented past the message column starts with a space Rich kept (see _end_record)
                self._record[1].append((" " if indent > self._record[3] else "") + line.strip())
                return
            self._end_record()
            if not line.strip():
                return
        self._plain(line.rstrip())

    def _end_record(self) -> None:
        if self._record is None:
            return
        level, pieces, width, _ = self._record
        self._record = None
        message = pieces[0]
        for previous, piece in zip(pieces, pieces[1:], strict=False):
            if piece.startswith(" "):
                # Rich cut a word longer than the column right before its space, which went to the next line
                message += piece
            else:
                message += ("" if _cut_mid_word(previous.lstrip(), piece, width) else " ") + piece
        if level in ("WARNING", "ERROR", "CRITICAL"):
            self._events.append(LogMessage(level, message))
        self._message(message)

    def _plain(self, line: str) -> None:
        """A line that is not a Rich record: stdout's prints, simple log messages, tracebacks."""
        if self._summary is not None and self._summary_line(line):
            return
        self._end_summary()
        stripped = line.strip()
        if self._in_traceback:
            if line.startswith((" ", "\t")) or stripped.startswith("^"):
                return
            self._in_traceback = False
            if stripped and _EXCEPTION_LINE.match(stripped):
                self._exception(stripped)
                return
        if stripped.startswith("Traceback (most recent call last)"):
            self._in_traceback = True
            return
        if stripped.startswith("epoch "):
            found = _EPOCH.match(stripped)
            if found:
                self._events.append(Epoch(int(found.group(1)), int(found.group(2))))
                return
        if stripped.startswith("running training"):
            self._summary = TrainingSummary()
            return
        if stripped.startswith("saving checkpoint: "):
            self._events.append(CheckpointSaved(stripped[len("saving checkpoint: "):]))
            return
        if stripped.startswith("removing old checkpoint: "):
            self._events.append(CheckpointRemoved(stripped[len("removing old checkpoint: "):]))
            return
        self._message(stripped)

    def _message(self, message: str) -> None:
        """Log messages, whether they came as Rich records or as --console_log_simple lines."""
        if message == "model saved.":
            self._events.append(ModelSaved())
        elif message.startswith("saving ") and "state" in message[:20]:
            found = _STATE.match(message)
            if found:
                where, number = found.group(1), found.group(2)
                self._events.append(StateSaved(int(number) if where == "step" else None,
                                               int(number) if where == "epoch" else None))
        elif message.startswith("generating sample images"):
            found = _SAMPLE.match(message)
            if found:
                self._events.append(SampleStarted(int(found.group(1))))
        elif message.startswith("skipping "):
            found = _SKIPPING.match(message)
            if found:
                self._events.append(Resumed(int(found.group(1))))
        elif message.startswith("No data found"):
            self._problem("no-data", message.split(" / ")[0])
        elif message.startswith("model is not found as a file"):
            self._problem("model-missing", message.split(" / ")[0] + ": " + message.rpartition(": ")[2],
                          message.rpartition(": ")[2])
        elif "CUDA out of memory" in message:
            self._problem("out-of-memory", message)
        elif "died with <Signals." in message:
            self._died(message)
        elif "error: " in message:
            found = _BAD_ARGS.search(message)
            if found:
                self._problem("bad-arguments", found.group(1))

    def _exception(self, line: str) -> None:
        if "CUDA out of memory" in line or "OutOfMemoryError" in line or "can't allocate memory" in line:
            self._problem("out-of-memory", line)
        elif "CalledProcessError" in line:
            if "died with" in line:
                self._died(line)
            # otherwise accelerate only repeats that its child failed; the child's own error came first
        elif line.startswith(("KeyboardInterrupt", "SystemExit")):
            return
        elif "No space left on device" in line or "Disk quota exceeded" in line:
            self._problem("disk-full", line)
        else:
            found = _MISSING_MODULE.search(line) or _SD_SCRIPTS_IMPORT.search(line)
            if found:
                self._problem("missing-module", line, found.group(1))
            else:
                self._problem("crash", line)

    def _died(self, text: str) -> None:
        found = _DIED.search(text)
        if found:
            self._problem("killed", f"the trainer was killed by {found.group(1)}", found.group(1))

    def _problem(self, kind: str, message: str, detail: str = "") -> None:
        key = (kind, detail or message)
        if key in self._seen_problems:
            return
        self._seen_problems.add(key)
        self._events.append(Problem(kind, message, detail))  # type: ignore[arg-type]

    # --- the "running training" block -------------------------------------------------------------

    def _summary_line(self, line: str) -> bool:
        found = _SUMMARY_LINE.match(line)
        if not found:
            return False
        field = _SUMMARY_KEYS.get(found.group("key").strip())
        value = found.group("value").strip()
        assert self._summary is not None
        if field == "batch_sizes":
            self._summary.batch_sizes = [int(v) for v in re.findall(r"\d+", value)]
        elif field is not None and value.isdigit():
            setattr(self._summary, field, int(value))
        if field == "total_steps":
            self._end_summary()
        return True

    def _end_summary(self) -> None:
        if self._summary is not None:
            self._events.append(self._summary)
            self._summary = None


def parse_stream(chunks: Iterable[str]) -> Iterable[Event]:
    """Every event in a whole stream given as text chunks (a log file read in blocks)."""
    parser = StreamParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
