"""`<plan>/run.json`: the true record of one training run, rewritten atomically while it runs.

`state` is `running` while the trainer lives and always ends as `succeeded`, `failed` (with a
diagnosis and a suggestion) or `interrupted`. Field names are relied on by `lorakit runs` and the
batch runner; add fields, do not rename them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer

from lorakit.errors import LorakitError, UserError
from lorakit.models.fetch import LocalModels
from lorakit.run.outputs import OutputFile
from lorakit.run.process import process_alive
from lorakit.util.files import DISK_FULL_FIX, disk_full_text, write_text_atomic
from lorakit.util.reading import read_json

RUN_FILE = "run.json"
PREVIOUS_DIR = "previous"
RunState = Literal["running", "succeeded", "failed", "interrupted"]
FINAL_STATES = ("succeeded", "failed", "interrupted")
# folders of a plan that never hold run records, skipped when looking for runs
_NOT_RUNS = {"output", "tensorboard", "logs", ".lorakit-history", "sample"}


class Change(BaseModel):
    """One value an out-of-memory recovery changed (lorakit.run.recover): the plan's value before and after."""

    model_config = ConfigDict(extra="forbid")

    key: str
    old: Any = None
    new: Any = None


class Attempt(BaseModel):
    """One start of the trainer within a run: the first, or one after an out-of-memory recovery."""

    model_config = ConfigDict(extra="forbid")

    number: int
    changes: list[Change] = []  # what the recovery before it changed in the plan (none for the first)
    why: str | None = None  # how it started: resumed from which state, or started again and why
    quality: bool = False  # a recovery that gave up quality (--recover quality): rank, resolution or precision
    plan_files: str | None = None  # where the plan files it trained with are kept, once a recovery replaced them
    state: RunState = "running"
    problem: str | None = None
    steps_done: int = 0
    peak_vram_gib: float | None = None
    resumed_from: str | None = None
    started: str | None = None
    ended: str | None = None
    duration_s: float | None = None

    def follow(self, record: RunRecord) -> None:
        """Take this attempt's outcome from the record its launch keeps."""
        self.state, self.problem, self.steps_done = record.state, record.problem, record.steps_done
        self.peak_vram_gib, self.resumed_from = record.peak_vram_gib, record.resumed_from
        self.started, self.ended, self.duration_s = record.started, record.ended, record.duration_s

    def changes_text(self) -> str:
        return ", ".join(f"{c.key} {_short(c.old)} → {_short(c.new)}" for c in self.changes) or "the plan as made"


def _short(value: Any) -> str:
    return "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: RunState
    plan: str
    plan_dir: str
    plan_created: str | None = None  # plan.json's `created`: a plan re-made since is another plan
    exit_code: int | None = None
    signal: str | None = None
    problem: str | None = None  # a stable code: out-of-memory, nan-loss, missing-module, no-data, ...
    diagnosis: str | None = None
    suggestion: str | None = None
    steps_done: int = 0
    total_steps: int | None = None  # what sd-scripts said it would run ("running training" block)
    planned_steps: int | None = None  # what the plan predicted
    epoch: int | None = None
    epochs: int | None = None
    last_loss: float | None = None
    min_loss: float | None = None
    peak_vram_gib: float | None = None
    seconds_per_step: float | None = None  # median over the steady state (the first step excluded)
    it_per_s: float | None = None
    outputs: list[OutputFile] = []
    pid: int | None = None
    started: str | None = None
    ended: str | None = None
    duration_s: float | None = None
    command: list[str] = []
    environment: dict[str, str] = {}  # the variables lorakit set or changed for the trainer
    sd_scripts: str | None = None
    sd_scripts_commit: str | None = None
    sd_scripts_version: str | None = None
    sd_scripts_checked_by: str | None = None  # whose parser and dataset code judged the plan before the start
    python: str | None = None
    gpu: str | None = None
    cpu: bool = False
    base_model: str | None = None
    models: LocalModels | None = None  # each model file's resolved path and SHA-256
    resumed_from: str | None = None
    warnings: list[str] = []
    log: str | None = None
    tensorboard: str | None = None
    lorakit_version: str | None = None
    # every start of the trainer in this run (lorakit.run.recover): state and steps_done above are the whole run's
    attempts: list[Attempt] = []

    @property
    def attempts_note(self) -> str:
        """` (2 attempts)` for a run an out-of-memory recovery restarted; empty for a run of one attempt."""
        return f" ({len(self.attempts)} attempts)" if len(self.attempts) > 1 else ""

    def attempt_lines(self) -> list[str]:
        """One line per attempt, for people (only when there were several)."""
        if len(self.attempts) < 2:
            return []
        return [f"attempt {a.number}: {a.changes_text()}{' [QUALITY LOWERED]' if a.quality else ''} — {a.state}"
                f"{' (' + a.problem + ')' if a.problem else ''}, {a.steps_done} steps"
                f"{f', peak {a.peak_vram_gib:.1f} GiB' if a.peak_vram_gib is not None else ''}"
                f"{'; ' + a.why if a.why else ''}" for a in self.attempts]


def shown_state(record: RunRecord) -> str:
    """The state for people: a record left at "running" by a lorakit that is gone says so."""
    if record.state == "running" and record.pid and not process_alive(record.pid):
        return "stale"
    return record.state


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def write_record(plan_dir: Path, record: RunRecord) -> None:
    """Replace run.json in one step, so a reader never sees half a file."""
    write_text_atomic(plan_dir / RUN_FILE, record.model_dump_json(indent=2) + "\n")


class RecordNotWritten(LorakitError):
    """run.json could not be written (the disk is full): says what became of the run, which file, and what to do."""

    def __init__(self, path: Path, exc: OSError, outcome: str):
        super().__init__(f"{outcome}, but its record {path} could not be written: {disk_full_text(exc, path)} "
                         f"[{exc.strerror}].",
                         fix=f"{DISK_FULL_FIX}; then launch the plan again (with --fresh once it has outputs)")


def read_record(path: Path) -> RunRecord:
    try:
        return RunRecord.model_validate(read_json(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {damage_text(exc)}") from None


def damage_text(exc: OSError | ValueError) -> str:
    """What is wrong with a run.json, for people: unreadable, not UTF-8, not JSON, or which fields are invalid."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(str(part) for part in error['loc']) or 'the file'} ({error['msg'].lower()})"
                    for error in exc.errors()]
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        return "invalid fields: " + ", ".join(problems[:3]) + more
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, json.JSONDecodeError):
        return f"unreadable JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    return str(exc).splitlines()[0]


ShownState = Literal["running", "succeeded", "failed", "interrupted", "stale"]


class ListedRun(RunRecord):
    """`lorakit runs --json`: a run record and the run.json it was read from.

    `state` is the state `lorakit runs` shows: "stale" where the record says "running" but the lorakit that
    wrote it is gone (the plan's next launch closes it as interrupted).
    """

    record: str
    state: ShownState  # type: ignore[assignment]

    @model_serializer(mode="wrap")
    def _record_first(self, handler):
        # the file first, then the record's own fields: the order `lorakit runs --json` has always had
        data = handler(self)
        return {"record": data.pop("record"), **data}

    @classmethod
    def of(cls, path: Path, record: RunRecord) -> ListedRun:
        return cls(record=str(path), **(dict(record) | {"state": shown_state(record)}))


class DamagedRun(BaseModel):
    """A run.json that `lorakit runs` cannot read: listed with what is wrong with it, never dropped."""

    model_config = ConfigDict(extra="forbid")

    record: str
    state: Literal["damaged"] = "damaged"
    damage: str  # unreadable, not UTF-8, not JSON, or the invalid fields
    fix: str = (f"launch the plan with --fresh (the damaged {RUN_FILE} moves to {PREVIOUS_DIR}/), "
                "or delete the file if it is not lorakit's")


FoundRun = ListedRun | DamagedRun


def find_runs(root: Path, max_depth: int = 4) -> list[FoundRun]:
    """Every run.json under `root` (a plan folder, a folder of plans, or a run.json), oldest first; a damaged
    one is a DamagedRun that says what is wrong with it."""
    if root.is_file():
        return [_found(root)]
    if not root.is_dir():
        raise UserError(f"'{root}' does not exist.", fix="give a plan folder or a folder that holds plan folders")
    found = []
    base = len(root.parts)
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).parts) - base
        dirs[:] = sorted(d for d in dirs if d not in _NOT_RUNS and not d.endswith("-state") and depth < max_depth)
        if RUN_FILE in files:
            found.append(_found(Path(folder) / RUN_FILE))
    return sorted(found, key=lambda run: (getattr(run, "started", None) or "", run.record))


def _found(path: Path) -> FoundRun:
    try:
        return ListedRun.of(path, RunRecord.model_validate(read_json(path)))
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        return DamagedRun(record=str(path), damage=damage_text(exc))
