"""`lorakit batch status`: one row per run, sorted for comparison, the best run by final loss marked."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.batch.manifest import BatchManifest, load_batch
from lorakit.batch.run import read_progress
from lorakit.config.family import DEFAULT_FAMILY
from lorakit.run.record import RUN_FILE, RunRecord, read_record

# Finished runs first, then what is left to do; within a state the lowest final loss first.
STATE_ORDER = {"succeeded": 0, "running": 1, "interrupted": 2, "failed": 3, "not-started": 4, "planned": 5, "skipped": 6}
COLUMNS = ("best", "id", "family", "presets", "sweep", "state", "steps", "final_loss", "min_loss", "time", "it_per_s",
           "peak_vram_gib", "output", "why")


class BatchRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    plan_dir: str
    presets: list[str]
    family: str = DEFAULT_FAMILY
    sweep: dict[str, str]
    state: str
    steps_done: int = 0
    total_steps: int | None = None
    final_loss: float | None = None
    min_loss: float | None = None
    duration_s: float | None = None
    it_per_s: float | None = None
    peak_vram_gib: float | None = None
    output: str | None = None  # the final LoRA file
    why: str | None = None  # diagnosis of a failure, the reason a run did not start, or the gate errors
    best: bool = False  # the lowest final loss of its family (losses of different families do not compare)


@dataclass
class BatchStatus:
    rows: list[BatchRow]
    warnings: list[str] = field(default_factory=list)  # e.g. a damaged batch-run.json, to print beside the table


def batch_rows(batch_dir: Path, manifest: BatchManifest | None = None) -> list[BatchRow]:
    return batch_status(batch_dir, manifest).rows


def batch_status(batch_dir: Path, manifest: BatchManifest | None = None) -> BatchStatus:
    """The rows, sorted, and what the user should know about files that could not be read."""
    manifest = manifest or load_batch(batch_dir)
    data, problem = read_progress(batch_dir)
    progress = data["runs"]
    rows = []
    for run in manifest.runs:
        row = BatchRow(id=run.id, plan_dir=run.plan_dir, presets=run.presets, family=run.family, sweep=run.sweep,
                       state=run.status)
        if run.status == "skipped":
            row.why = "; ".join(f"{f.code}: {f.message}" for f in run.findings)
        else:
            record = _record(Path(run.plan_dir))
            attempt = progress.get(run.id, {})
            if record is not None:
                _fill(row, record)
            elif attempt.get("error"):
                row.state, row.why = "not-started", attempt["error"]
        rows.append(row)
    for family in {r.family for r in rows}:
        finished = [r for r in rows if r.family == family and r.state == "succeeded" and r.final_loss is not None]
        if finished:
            min(finished, key=lambda r: r.final_loss or 0.0).best = True
    rows.sort(key=lambda r: (STATE_ORDER.get(r.state, 9), r.final_loss if r.final_loss is not None else 1e9, r.id))
    return BatchStatus(rows, [problem] if problem else [])


def _record(plan_dir: Path) -> RunRecord | None:
    path = plan_dir / RUN_FILE
    return read_record(path) if path.is_file() else None


def _fill(row: BatchRow, record: RunRecord) -> None:
    row.state = record.state
    row.steps_done, row.total_steps = record.steps_done, record.total_steps or record.planned_steps
    row.final_loss, row.min_loss = record.last_loss, record.min_loss
    row.duration_s, row.it_per_s, row.peak_vram_gib = record.duration_s, record.it_per_s, record.peak_vram_gib
    finals = [o.path for o in record.outputs if Path(o.path).stem == record.plan]
    row.output = finals[-1] if finals else (record.outputs[-1].path if record.outputs else None)
    if record.state in ("failed", "interrupted"):
        row.why = " — ".join(filter(None, [record.diagnosis, record.suggestion]))


def cells(row: BatchRow) -> dict[str, str]:
    """The row as text, one entry per column (also what csv and markdown write)."""
    from lorakit.util.text import duration_text

    def number(value: float | None, digits: int = 4) -> str:
        return "" if value is None else f"{value:.{digits}g}"

    return {
        "best": "★" if row.best else "",
        "id": row.id,
        "family": row.family,
        "presets": "+".join(row.presets),
        "sweep": " ".join(f"{k}={v}" for k, v in row.sweep.items()),
        "state": row.state,
        "steps": f"{row.steps_done}/{row.total_steps}" if row.total_steps else (str(row.steps_done) if row.steps_done else ""),
        "final_loss": number(row.final_loss),
        "min_loss": number(row.min_loss),
        "time": duration_text(row.duration_s) if row.duration_s is not None else "",
        "it_per_s": number(row.it_per_s, 3),
        "peak_vram_gib": number(row.peak_vram_gib, 3),
        "output": Path(row.output).name if row.output else "",
        "why": row.why or "",
    }


def to_csv(rows: list[BatchRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(cells(row))
    return buffer.getvalue()


def to_markdown(rows: list[BatchRow]) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(escape(cells(row)[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"
