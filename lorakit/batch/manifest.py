"""Batches: one plan per combination of presets and sweeps, a manifest, and their comparison.

`DIR/batch.json` lists the runs in order; each run is a normal plan folder `DIR/<id>/` that
`lorakit launch` (and `lorakit batch run`) trains. A combination whose plan has gate errors is
recorded as skipped, with its findings, unless forced.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from lorakit import __version__
from lorakit.config.family import DEFAULT_FAMILY
from lorakit.config.keyvalue import SWEEP, split_key_value, typed_value
from lorakit.config.schema import ValueProblem
from lorakit.errors import ConfigError, UserError
from lorakit.findings import Finding, has_errors
from lorakit.plan.build import PlanRequest, make_plan, write_plan
from lorakit.util.files import check_output_file, check_output_folder, write_text_atomic
from lorakit.util.reading import read_json

MANIFEST = "batch.json"
_SLUG = re.compile(r"[^A-Za-z0-9._=+-]+")

# Every combination is a training of hours, and all plans are made in memory before the batch folder
# is written (a bad combination never leaves half a batch): more than this is refused unless asked for.
DEFAULT_MAX_RUNS = 200


class BatchRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    plan_dir: str  # where it was planned; load_batch sets where the batch folder is now
    presets: list[str]
    family: str = DEFAULT_FAMILY  # the model family its base preset picks (batches made before families: SDXL)
    sweep: dict[str, str]  # key -> the value as given on the command line
    status: Literal["planned", "skipped"]
    findings: list[Finding] = []


class BatchManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lorakit_version: str
    created: str
    name: str
    dataset: str
    reg: str | None
    token: str | None
    target_gpu: str | None
    preset_options: list[str]
    sweeps: dict[str, list[str]]
    overrides: list[str]
    runs: list[BatchRun]

    def planned(self) -> list[BatchRun]:
        return [run for run in self.runs if run.status == "planned"]


@dataclass
class BatchRequest:
    """What every run shares (`plan`: its presets and out are ignored), and what varies between runs."""

    plan: PlanRequest
    out: Path
    presets: list[str] = field(default_factory=list)  # alternatives; "pony+character" combines presets in one run
    sweeps: list[str] = field(default_factory=list)  # "KEY=V1,V2,..." ("|" separates values that contain commas)
    max_runs: int = DEFAULT_MAX_RUNS
    # called before each combination is planned: (1-based index, number of combinations, run id)
    on_progress: Callable[[int, int, str], None] | None = None


def parse_sweeps(items: list[str]) -> dict[str, list[str]]:
    """`KEY=V1,V2` → {KEY: [V1, V2]}, each value checked against the key's type; every problem at once."""
    sweeps: dict[str, list[str]] = {}
    problems: list[str] = []
    for item in items:
        try:
            key, text = split_key_value(item, SWEEP)
            if key in sweeps:
                raise ValueProblem(f"--sweep {key}: given twice; put all its values in one --sweep")
            values = [v.strip() for v in text.split("|" if "|" in text else ",")]
            for value in values:
                typed_value(key, value, SWEEP, None)  # any family's key: each run's plan types it again by its own
            if len(set(values)) != len(values):
                raise ValueProblem(f"--sweep {key}: a value is repeated; give each value once")
        except ValueProblem as exc:
            problems.append(str(exc))
            continue
        sweeps[key] = values
    if problems:
        raise ConfigError(problems, context="the --sweep options")
    return sweeps


def check_batch_size(alternatives: int, sweeps: dict[str, list[str]], max_runs: int) -> int:
    """The number of combinations, refused over `max_runs` before any plan is made."""
    count = alternatives
    for values in sweeps.values():
        count *= len(values)
    if count > max_runs:
        factors = " × ".join(str(n) for n in [alternatives, *(len(v) for v in sweeps.values())] if n > 1) or str(count)
        raise UserError(
            f"the batch has {count:,} combinations ({factors}); lorakit plans at most {max_runs:,} runs in one batch "
            "(each is a training of hours).",
            fix=f"give fewer --preset or --sweep values, or pass --max-runs {count} if you mean to plan them all",
        )
    return count


MAX_LABEL = 60  # run ids become folder and LoRA file names: keep them well inside 255 bytes


def run_id(index: int, presets: str, sweep: dict[str, str]) -> str:
    label = "-".join([presets, *(f"{k}={v}" for k, v in sweep.items())]) if presets else \
        "-".join(f"{k}={v}" for k, v in sweep.items())
    slug = _SLUG.sub("_", label).strip("_") or "run"
    if len(slug) > MAX_LABEL:  # a long swept value (a path): shortened, with a hash of the whole to stay unique
        slug = slug[:MAX_LABEL - 9].rstrip("_-") + "-" + hashlib.sha1(label.encode()).hexdigest()[:8]
    return f"{index:02d}-{slug}"


def plan_batch(request: BatchRequest) -> BatchManifest:
    shared = request.plan
    out = request.out.expanduser().resolve()
    check_output_folder(out, replace=shared.force, marker=MANIFEST, kind="batch",
                        replace_note="each plan's old files move to its .lorakit-history/; training outputs are never touched")
    sweeps = parse_sweeps(request.sweeps)
    alternatives = request.presets or [""]
    name = shared.name or shared.dataset.resolve().name
    total = check_batch_size(len(alternatives), sweeps, request.max_runs)
    runs: list[BatchRun] = []
    results = []
    for index, (presets, *chosen) in enumerate(itertools.product(alternatives, *sweeps.values()), start=1):
        sweep = dict(zip(sweeps, chosen, strict=True))
        rid = run_id(index, presets, sweep)
        if request.on_progress is not None:
            request.on_progress(index, total, rid)
        plan_request = replace(
            shared, presets=[p for p in presets.split("+") if p],
            overrides=[*shared.overrides, *(f"{k}={v}" for k, v in sweep.items())], out=out / rid, name=f"{name}-{rid}",
        )
        result = make_plan(plan_request)
        errors = has_errors(result.plan.findings)
        status = "skipped" if errors and not shared.force else "planned"
        shown = [f for f in result.plan.findings if f.level == "error"] if status == "skipped" else []
        runs.append(BatchRun(id=rid, plan_dir=str(out / rid), presets=plan_request.presets, family=result.plan.family,
                             sweep=sweep, status=status, findings=shown))
        results.append(result)
    manifest = BatchManifest(
        lorakit_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        name=name, dataset=str(shared.dataset.resolve()), reg=str(shared.reg.resolve()) if shared.reg else None,
        token=shared.token, target_gpu=shared.target_gpu, preset_options=list(alternatives) if request.presets else [],
        sweeps=sweeps, overrides=list(shared.overrides), runs=runs,
    )
    # Everything was planned in memory first: a bad combination cannot leave half a batch behind.
    out.mkdir(parents=True, exist_ok=True)
    for run, result in zip(runs, results, strict=True):
        if run.status == "planned":
            write_plan(result, force=True)
    write_text_atomic(out / MANIFEST, json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    return manifest


def load_batch(batch_dir: Path) -> BatchManifest:
    path = batch_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"'{batch_dir}' is not a lorakit batch (no {MANIFEST}).",
                        fix="make one with `lorakit batch plan DATASET --preset A --preset B --out DIR`")
    try:
        manifest = BatchManifest.model_validate(read_json(path))
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    for run in manifest.runs:  # each plan is the folder named after its id, wherever the batch is now
        run.plan_dir = str(batch_dir.resolve() / run.id)
    return manifest


_SLURM_TOKEN = re.compile(r"^[A-Za-z0-9._:-]+$")


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_task: int = 1
    time: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None


def export_slurm(batch_dir: Path, script: Path, options: SlurmOptions, *, python: str | None = None) -> int:
    """Write an sbatch array script (one task per planned run, each `lorakit launch --resume-if-possible PLAN`,
    so a requeued task continues from its newest state); returns the task count."""
    import sys

    from lorakit.plan.render import render

    manifest = load_batch(batch_dir)
    plans = [run.plan_dir for run in manifest.planned()]
    if not plans:
        raise UserError(f"batch '{batch_dir}' has no planned runs to export.", fix="re-plan it with valid combinations")
    for label, value in (("--partition", options.partition), ("--time", options.time), ("--mem", options.mem)):
        if value is not None and not _SLURM_TOKEN.match(value):
            raise UserError(f"{label} {value!r} cannot go into an #SBATCH line (letters, digits, . _ : - only).")
    if options.gpus_per_task < 1:
        raise UserError("--gpus-per-task must be at least 1.")
    check_output_file(script, option="-o", example="train.sbatch", force_option=None)
    text = render(
        "slurm.sbatch.j2", manifest=manifest, script=str(script), plans=plans,
        job_name=_SLUG.sub("_", f"lorakit-{manifest.name}").strip("_")[:64].replace("=", "_").replace("+", "_"),
        partition=options.partition, gpus_per_task=options.gpus_per_task, time=options.time,
        cpus_per_task=options.cpus_per_task, mem=options.mem,
        launcher=[python or sys.executable, "-m", "lorakit", "launch", "--resume-if-possible"],
    )
    write_text_atomic(script, text)
    script.chmod(0o755)
    return len(plans)
