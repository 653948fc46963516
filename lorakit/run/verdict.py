"""Ask the installed sd-scripts to judge a plan (Gate 4): its real parser, and its own dataset code's counts.

The trainer's Python runs machine/trainercheck.py, which imports the training script (not running it),
builds its argument parser, and loads each plan's dataset.toml through sd-scripts' sanitizer,
blueprint and dataset classes. lorakit then holds config.toml against that parser's actions
(config/argcheck.py) and compares sd-scripts' image and step counts with plan.json's. Importing
sd-scripts takes seconds, so a verdict is kept in lorakit's cache folder per (sd-scripts commit and
sources, trainer Python, config.toml, dataset.toml, the dataset folders' listing). Where sd-scripts
cannot be imported, config.toml is held against the table lorakit ships instead, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import tomllib
from pydantic import BaseModel, ConfigDict

from lorakit.config.argcheck import ArgSpec
from lorakit.machine.trainer import TRAIN_SCRIPT, SdScriptsCheckout
from lorakit.models.links import lorakit_cache_dir
from lorakit.plan.build import Plan
from lorakit.util.files import write_text_atomic
from lorakit.util.resources import sd_scripts_arguments

CHECK_SCRIPT = Path(__file__).resolve().parent.parent / "machine" / "trainercheck.py"
CHECK_TIMEOUT_S = 600
CACHE_FOLDER = "sd-scripts-verdicts"
VERDICT_FORMAT = 1  # part of the cache key: a lorakit that reads verdicts differently asks again
# sd-scripts' own sources whose change can change a verdict (stat only: cheap)
SOURCE_FOLDERS = (".", "library", "networks")
# what decides what the trainer's Python imports
ENV_KEYS = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


class SdScriptsCounts(BaseModel):
    """What sd-scripts' own code counts for a plan (train_network.py's arithmetic, docs/sd-scripts.md §5)."""

    model_config = ConfigDict(extra="forbid")

    num_train_images: int
    num_reg_images: int
    batches_per_epoch: int
    batches_per_process: int
    steps_per_epoch: int
    epochs: int
    total_steps: int


class TrainerVerdict(BaseModel):
    """The installed sd-scripts' answer for one plan (or for none: only whether it imports)."""

    model_config = ConfigDict(extra="forbid")

    asked: bool  # its own parser answered; False: lorakit's shipped table stands in
    error: str | None = None  # why it could not be asked
    missing_module: str | None = None  # what the training script could not import
    script_imports: bool = True  # False: the training script itself fails to import, so a launch would fail too
    arguments: list[ArgSpec]
    counts: SdScriptsCounts | None = None
    count_stage: str | None = None  # where sd-scripts' own code refused the plan: config, arguments, dataset, asserts
    count_error: str | None = None
    cached: bool = False
    seconds: float = 0.0

    @property
    def counts_unchecked(self) -> bool:
        return self.counts is None and self.count_stage in (None, "import")


@dataclass
class CheckTarget:
    """One plan for the trainer to judge: its config.toml and the processes it runs on."""

    config: Path
    num_processes: int = 1
    script: str = TRAIN_SCRIPT

    @classmethod
    def of(cls, plan: Plan) -> CheckTarget:
        return cls(Path(plan.plan_dir) / "config.toml", plan.value_set["num_processes"] or 1, plan.script)


def shipped_table(script: str = TRAIN_SCRIPT) -> list[ArgSpec]:
    return [ArgSpec.model_validate(a) for a in sd_scripts_arguments(script)["arguments"]]


def ask_sd_scripts(python: str, checkout: SdScriptsCheckout, plan: Plan | None,
                   env: Mapping[str, str] | None = None) -> TrainerVerdict:
    """The verdict for `plan` (or only the parser, without a plan), from the cache when nothing changed."""
    return ask_many(python, checkout, [CheckTarget.of(plan)] if plan is not None else [], env)[0]


def ask_many(python: str, checkout: SdScriptsCheckout, targets: list[CheckTarget],
             env: Mapping[str, str] | None = None) -> list[TrainerVerdict]:
    """Verdicts for many plans, one run of the trainer's Python per training script (one verdict, for the
    checkout's script, when `targets` is empty)."""
    scripts = list(dict.fromkeys(t.script for t in targets)) or [checkout.script]
    verdicts: dict[int, TrainerVerdict] = {}
    for script in scripts:
        indices = [i for i, t in enumerate(targets) if t.script == script]
        for i, verdict in zip(indices or [0], _ask_script(python, checkout, script, [targets[i] for i in indices], env),
                              strict=True):
            verdicts[i] = verdict
    return [verdicts[i] for i in sorted(verdicts)]


def _ask_script(python: str, checkout: SdScriptsCheckout, script: str, targets: list[CheckTarget],
                env: Mapping[str, str] | None) -> list[TrainerVerdict]:
    environment = dict(os.environ if env is None else env)
    keys = ([verdict_key(python, checkout, t, environment, script) for t in targets]
            or [verdict_key(python, checkout, None, environment, script)])
    found = [_read_cached(key) for key in keys]
    if all(v is not None for v in found):
        return [v.model_copy(update={"cached": True}) for v in found if v is not None]
    started = time.monotonic()
    answer = run_check(python, Path(checkout.path), targets, environment, script)
    seconds = round(time.monotonic() - started, 2)
    verdicts = _verdicts(answer, len(targets), seconds, script)
    for key, verdict in zip(keys, verdicts, strict=True):
        if verdict.asked:  # not when the script did not import: a missing package may be installed any time
            _write_cached(key, verdict)
    return verdicts


def run_check(python: str, sd_scripts: Path, targets: list[CheckTarget], env: dict[str, str],
              script: str = TRAIN_SCRIPT) -> dict:
    """Run machine/trainercheck.py in the trainer's Python; {"error": ...} when it gave no answer."""
    request = json.dumps({"sd_scripts": str(sd_scripts), "script": script,
                          "plans": [{"config": str(t.config), "num_processes": t.num_processes} for t in targets]})
    try:
        done = subprocess.run([python, str(CHECK_SCRIPT)], input=request, capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if done.returncode == 0 and lines else {"error": _last_line(done)}
    except ValueError:
        return {"error": f"unexpected output: {lines[-1][:200]}"}


def _last_line(done: subprocess.CompletedProcess) -> str:
    return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1][:300]


def _verdicts(answer: dict, count: int, seconds: float, script_name: str) -> list[TrainerVerdict]:
    script = answer.get("script") or {"ok": False, "error": answer.get("error", "no answer")}
    if not script.get("ok") or answer.get("arguments") is None:
        missing = script.get("missing_module")
        verdict = TrainerVerdict(asked=False, error=script.get("error"), missing_module=missing,
                                 script_imports=bool(script.get("imported")), arguments=shipped_table(script_name),
                                 seconds=seconds)
        return [verdict] * max(count, 1)
    arguments = [ArgSpec.model_validate(a) for a in answer["arguments"]]
    plans = answer.get("plans") or [{}] * max(count, 1)
    return [TrainerVerdict(asked=True, arguments=arguments, seconds=seconds, **_plan_part(p)) for p in plans]


def _plan_part(plan: dict) -> dict:
    if not plan:
        return {}
    if plan.get("ok"):
        return {"counts": SdScriptsCounts.model_validate(plan["counts"])}
    return {"count_stage": plan.get("stage"), "count_error": plan.get("error")}


# --- the cache ------------------------------------------------------------------------------------

def verdict_key(python: str, checkout: SdScriptsCheckout, target: CheckTarget | None, env: Mapping[str, str],
                script: str = TRAIN_SCRIPT) -> str:
    """What a verdict depends on, hashed: sd-scripts (commit and sources), the trainer's Python, the plan's files."""
    parts: dict = {
        "format": VERDICT_FORMAT, "commit": checkout.commit, "sd_scripts": checkout.path, "script": script,
        "sources": _sources_listing(Path(checkout.path)), "python": python, "python_real": os.path.realpath(python),
        "env": [env.get(k) for k in ENV_KEYS],
    }
    if target is not None:
        parts["config"] = _file_hash(target.config)
        parts["num_processes"] = target.num_processes
        dataset = _dataset_config(target.config)
        parts["dataset"] = _file_hash(dataset) if dataset else None
        parts["images"] = [_folder_listing(Path(d)) for d in _image_dirs(dataset)] if dataset else []
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _listing(folder: Path, suffix: str | None = None) -> list:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    rows = []
    for entry in entries:
        if suffix and not entry.name.endswith(suffix):
            continue
        try:
            stat = entry.stat()
        except OSError:
            continue
        rows.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return rows


def _sources_listing(sd_scripts: Path) -> list:
    return [(folder, _listing(sd_scripts / folder, ".py")) for folder in SOURCE_FOLDERS]


def _folder_listing(folder: Path) -> list:
    # every file counts: images (their sizes decide the buckets) and captions (an empty one fails sd-scripts)
    return [str(folder), _listing(folder)]


def _dataset_config(config: Path) -> Path | None:
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("dataset_config") or next(
        (t["dataset_config"] for t in data.values() if isinstance(t, dict) and "dataset_config" in t), None)
    # relative to the plan folder, where the trainer starts (config.toml sits in it)
    return config.parent / value if isinstance(value, str) else None


def _image_dirs(dataset: Path) -> list[str]:
    try:
        data = tomllib.loads(dataset.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(s.get("image_dir")) for d in data.get("datasets", []) if isinstance(d, dict)
            for s in d.get("subsets", []) if isinstance(s, dict)]


def _cache_path(key: str) -> Path:
    return lorakit_cache_dir() / CACHE_FOLDER / f"{key}.json"


def _read_cached(key: str) -> TrainerVerdict | None:
    try:
        return TrainerVerdict.model_validate_json(_cache_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_cached(key: str, verdict: TrainerVerdict) -> None:
    path = _cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, verdict.model_dump_json())
    except OSError:
        pass  # the cache only saves time; a read-only cache folder means asking again next time
