"""`lorakit batch report`: one self-contained HTML page to compare a batch (people judge LoRAs by looking).

The runs' table (as `batch status`), every run's loss curve on one chart (inline SVG, from each run's
train.log), and the sample images of all runs side by side per prompt and sampling step (embedded as
data URIs, so the page can be mailed or archived on its own).
"""

from __future__ import annotations

import base64
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.batch.manifest import load_batch
from lorakit.batch.status import COLUMNS, batch_rows, cells
from lorakit.plan.build import load_plan
from lorakit.publish.artifacts import sample_rounds
from lorakit.util.files import check_output_file, write_text_atomic
from lorakit.watch.events import Step
from lorakit.watch.logfile import read_events

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
NUMERIC = {"final_loss", "min_loss", "it_per_s", "peak_vram_gib", "steps"}
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 900, 360, 60, 20, 24, 30


@dataclass
class Tick:
    at: float
    label: str


def loss_curve(plan_dir: Path) -> list[tuple[int, float]]:
    """(step, avr_loss) of every finished step in the run's train.log; NaN steps are left out."""
    log = plan_dir / "logs" / "train.log"
    if not log.is_file():
        return []
    points: dict[int, float] = {}  # by step: a resumed run logs some steps again, the later value counts
    for event in read_events(log):
        if isinstance(event, Step) and event.loss is not None and event.loss == event.loss:
            points[event.step] = event.loss
    return sorted(points.items())


def loss_chart(curves: dict[str, list[tuple[int, float]]]) -> dict:
    """Coordinates for the template's SVG: one polyline per run, shared axes."""
    drawn = {run: points for run, points in curves.items() if points}
    chart: dict[str, Any] = {"width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "plot_width": WIDTH - LEFT - RIGHT,
             "plot_height": HEIGHT - TOP - BOTTOM, "lines": [], "x_ticks": [], "y_ticks": []}
    if not drawn:
        return chart
    max_step = max(step for points in drawn.values() for step, _ in points) or 1
    losses = [loss for points in drawn.values() for _, loss in points]
    low, high = min(losses), max(losses)
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05

    def x(step: float) -> float:
        return LEFT + chart["plot_width"] * step / max_step

    def y(loss: float) -> float:
        return TOP + chart["plot_height"] * (high - loss) / (high - low)

    for i, (run, points) in enumerate(drawn.items()):
        chart["lines"].append({"run": run, "colour": PALETTE[i % len(PALETTE)],
                               "points": " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)})
    chart["x_ticks"] = [Tick(x(max_step * f), f"{round(max_step * f)}") for f in (0, 0.25, 0.5, 0.75, 1)]
    chart["y_ticks"] = [Tick(y(low + (high - low) * f), f"{low + (high - low) * f:.3g}") for f in (0, 0.5, 1)]
    return chart


def sample_grid(runs: list[tuple[str, Path]]) -> dict:
    """Rows of (prompt, sampling step) with each run's image, in prompt order then time."""
    by_key: dict[tuple[int, str], dict] = {}
    order: list[tuple[int, str]] = []
    for run_id, plan_dir in runs:
        for sampled in sample_rounds(load_plan(plan_dir)):
            for sample in sampled.samples:
                key = (sample.index, sampled.label)
                if key not in by_key:
                    by_key[key] = {"prompt": sample.prompt, "when": sampled.label, "images": {}}
                    order.append(key)
                by_key[key]["images"][run_id] = {"run": run_id, "data_uri": _data_uri(sample.path)}
    ids = [run_id for run_id, _ in runs]
    steps = {label: i for i, label in enumerate(dict.fromkeys(label for _, label in order))}
    rows = [{"prompt": by_key[k]["prompt"], "when": by_key[k]["when"],
             "images": [by_key[k]["images"].get(run_id) for run_id in ids]}
            for k in sorted(order, key=lambda k: (k[0], steps[k[1]]))]
    return {"runs": ids, "rows": rows}


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_report(batch_dir: Path) -> str:
    from lorakit.plan.render import render

    manifest = load_batch(batch_dir)
    rows = batch_rows(batch_dir, manifest)
    planned = [(run.id, Path(run.plan_dir)) for run in manifest.planned() if (Path(run.plan_dir) / "plan.json").is_file()]
    curves = {run_id: loss_curve(plan_dir) for run_id, plan_dir in planned}
    sample_every = next((load_plan(d).value_set["sample_every_n_steps"] for _, d in planned), None)
    return render(
        "batch_report.html.j2", manifest=manifest, rows=rows, row_cells={r.id: cells(r) for r in rows},
        columns=COLUMNS, numeric=NUMERIC, chart=loss_chart(curves), samples=sample_grid(planned),
        sample_every=sample_every, written=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def write_report(batch_dir: Path, output: Path | None = None, *, force: bool = False) -> Path:
    """Write the page; the batch's own report.html is rewritten each time, any other file only with `force`."""
    target = output or batch_dir / "report.html"
    check_output_file(target, replace=force or output is None, option="-o", example="report.html")
    write_text_atomic(target, render_report(batch_dir))
    return target
