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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from lorakit import __version__
from lorakit.config.schema import RESERVED_KEYS, ValueProblem, parse_text, spec_for
from lorakit.errors import ConfigError, UserError
from lorakit.findings import Finding, has_errors
from lorakit.plan.build import PlanRequest, make_plan, write_plan
from lorakit.util.files import check_output_file, check_output_folder, write_text_atomic

MANIFEST = "batch.json"
_SLUG = re.compile(r"[^A-Za-z0-9._=+-]+")


class BatchRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    plan_dir: str
    presets: list[str]
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
    dataset: Path
    out: Path
    presets: list[str] = field(default_factory=list)  # alternatives; "pony+character" combines presets in one run
    sweeps: list[str] = field(default_factory=list)  # "KEY=V1,V2,..." ("|" separates values that contain commas)
    overrides: list[str] = field(default_factory=list)
    reg: Path | None = None
    token: str | None = None
    target_gpu: str | None = None
    name: str | None = None
    force: bool = False
    presets_dirs: list[Path] = field(default_factory=list)
    sd_scripts: str | None = None
    python: str | None = None


def parse_sweeps(items: list[str]) -> dict[str, list[str]]:
    """`KEY=V1,V2` → {KEY: [V1, V2]}, each value checked against the key's type; every problem at once."""
    sweeps: dict[str, list[str]] = {}
    problems: list[str] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            problems.append(f"--sweep {item!r}: write KEY=V1,V2,... e.g. --sweep network_dim=16,32")
            continue
        if key in sweeps:
            problems.append(f"--sweep {key}: given twice; put all its values in one --sweep")
            continue
        if key in RESERVED_KEYS:
            problems.append(f"--sweep {key}: lorakit sets this itself ({RESERVED_KEYS[key]})")
            continue
        values = [v.strip() for v in text.split("|" if "|" in text else ",")]
        try:
            spec = spec_for(key)
            for value in values:
                parse_text(spec, value)
        except ValueProblem as exc:
            problems.append(f"--sweep {exc}")
            continue
        if len(set(values)) != len(values):
            problems.append(f"--sweep {key}: a value is repeated")
            continue
        sweeps[key] = values
    if problems:
        raise ConfigError(problems, context="the --sweep options")
    return sweeps


MAX_LABEL = 60  # run ids become folder and LoRA file names: keep them well inside 255 bytes


def run_id(index: int, presets: str, sweep: dict[str, str]) -> str:
    label = "-".join([presets, *(f"{k}={v}" for k, v in sweep.items())]) if presets else \
        "-".join(f"{k}={v}" for k, v in sweep.items())
    slug = _SLUG.sub("_", label).strip("_") or "run"
    if len(slug) > MAX_LABEL:  # a long swept value (a path): shortened, with a hash of the whole to stay unique
        slug = slug[:MAX_LABEL - 9].rstrip("_-") + "-" + hashlib.sha1(label.encode()).hexdigest()[:8]
    return f"{index:02d}-{slug}"


def plan_batch(request: BatchRequest) -> BatchManifest:
    out = request.out.expanduser().resolve()
    check_output_folder(out, replace=request.force, marker=MANIFEST, kind="batch",
                        replace_note="each plan's old files move to its .lorakit-history/; training outputs are never touched")
    sweeps = parse_sweeps(request.sweeps)
    alternatives = request.presets or [""]
    name = request.name or request.dataset.resolve().name
    combos = list(itertools.product(alternatives, *sweeps.values()))
    runs: list[BatchRun] = []
    results = []
    for index, (presets, *chosen) in enumerate(combos, start=1):
        sweep = dict(zip(sweeps, chosen, strict=True))
        rid = run_id(index, presets, sweep)
        plan_request = PlanRequest(
            dataset=request.dataset, presets=[p for p in presets.split("+") if p],
            overrides=[*request.overrides, *(f"{k}={v}" for k, v in sweep.items())],
            reg=request.reg, token=request.token, target_gpu=request.target_gpu, out=out / rid,
            name=f"{name}-{rid}", force=request.force, presets_dirs=request.presets_dirs,
            sd_scripts=request.sd_scripts, python=request.python,
        )
        result = make_plan(plan_request)
        errors = has_errors(result.plan.findings)
        status = "skipped" if errors and not request.force else "planned"
        shown = [f for f in result.plan.findings if f.level == "error"] if status == "skipped" else []
        runs.append(BatchRun(id=rid, plan_dir=str(out / rid), presets=plan_request.presets, sweep=sweep,
                             status=status, findings=shown))
        results.append(result)
    manifest = BatchManifest(
        lorakit_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        name=name, dataset=str(request.dataset.resolve()), reg=str(request.reg.resolve()) if request.reg else None,
        token=request.token, target_gpu=request.target_gpu, preset_options=list(alternatives) if request.presets else [],
        sweeps=sweeps, overrides=list(request.overrides), runs=runs,
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
        return BatchManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


_SLURM_TOKEN = re.compile(r"^[A-Za-z0-9._:-]+$")


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_task: int = 1
    time: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None


def export_slurm(batch_dir: Path, script: Path, options: SlurmOptions, *, python: str | None = None) -> int:
    """Write an sbatch array script (one task per planned run, each `lorakit launch PLAN`); returns the task count."""
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
        launcher=[python or sys.executable, "-m", "lorakit", "launch"],
    )
    write_text_atomic(script, text)
    script.chmod(0o755)
    return len(plans)
