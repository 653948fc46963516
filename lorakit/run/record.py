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
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_serializer

from lorakit.errors import UserError
from lorakit.models.fetch import LocalModels
from lorakit.run.outputs import OutputFile
from lorakit.run.process import process_alive
from lorakit.util.files import write_text_atomic

RUN_FILE = "run.json"
PREVIOUS_DIR = "previous"
RunState = Literal["running", "succeeded", "failed", "interrupted"]
FINAL_STATES = ("succeeded", "failed", "interrupted")
# folders of a plan that never hold run records, skipped when looking for runs
_NOT_RUNS = {"output", "tensorboard", "logs", ".lorakit-history", "sample"}


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


def read_record(path: Path) -> RunRecord:
    try:
        return RunRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


class ListedRun(RunRecord):
    """`lorakit runs --json`: a run record and the run.json it was read from."""

    record: str

    @model_serializer(mode="wrap")
    def _record_first(self, handler):
        # the file first, then the record's own fields: the order `lorakit runs --json` has always had
        data = handler(self)
        return {"record": data.pop("record"), **data}

    @classmethod
    def of(cls, path: Path, record: RunRecord) -> ListedRun:
        return cls(record=str(path), **dict(record))


def find_runs(root: Path, max_depth: int = 4) -> list[tuple[Path, RunRecord]]:
    """Every run.json under `root` (a plan folder, a folder of plans, or a run.json), oldest first."""
    if root.is_file():
        return [(root, read_record(root))]
    if not root.is_dir():
        raise UserError(f"'{root}' does not exist.", fix="give a plan folder or a folder that holds plan folders")
    found = []
    base = len(root.parts)
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).parts) - base
        dirs[:] = sorted(d for d in dirs if d not in _NOT_RUNS and not d.endswith("-state") and depth < max_depth)
        if RUN_FILE in files:
            path = Path(folder) / RUN_FILE
            try:
                found.append((path, read_record(path)))
            except UserError:
                continue  # a damaged or foreign run.json is not a run
    return sorted(found, key=lambda item: (item[1].started or "", str(item[0])))
