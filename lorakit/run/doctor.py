"""Gate 4, the environment: can this machine run this plan? (`lorakit doctor`, and `launch` before starting)

It checks the sd-scripts checkout and its commit, the trainer's Python (torch, accelerate and what
the plan's optimizer, attention and network import, in a subprocess of that Python; the rest of
sd-scripts' requirements only warn: run/needs.py), the plan against the installed sd-scripts' own
parser and dataset code (run/verdict.py, run/judge.py), CUDA, the base model and free disk. Every
problem is a finding whose fix is a command.
No CUDA device is a loud warning, not an error: sd-scripts trains on the CPU too (slowly, bf16 or
fp32), and launch then passes accelerate's `--cpu`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit import SD_SCRIPTS_COMMIT
from lorakit.findings import Finding, finding, sort_findings
from lorakit.machine.probe import FAKE_ENV, free_disk_gib
from lorakit.machine.trainer import TRAIN_SCRIPT, SdScriptsCheckout, describe_sd_scripts, find_python
from lorakit.machine.trainer import sd_scripts_commit as sd_scripts_commit  # re-exported: tests and callers use it here
from lorakit.models.source import ModelSection
from lorakit.plan.build import Plan
from lorakit.run.judge import checked_by, verdict_findings
from lorakit.run.needs import Need, import_findings, plan_needs, requirement_findings
from lorakit.run.probecache import keep_answer, probe_key, read_answer
from lorakit.run.verdict import SdScriptsCounts, TrainerVerdict, ask_sd_scripts

PROBE_SCRIPT = Path(__file__).resolve().parent.parent / "machine" / "trainerprobe.py"
ALWAYS_IMPORTED = ("torch", "accelerate")
# sd-scripts needs these but does not list them in requirements.txt; checked when the file that imports them exists
UNLISTED = {"torchvision": "library/utils.py"}
# an SDXL LoRA in fp32 takes about 14.3 MB per unit of rank with both text encoders (the real CPU run:
# 114.4 MB at dim 16 saved in fp16), about 10.7 MB for the U-Net alone (docs/sd-scripts.md §8: 42.9 MB at dim 4)
MB_PER_RANK = 14.3
PROBE_TIMEOUT_S = 180
# The variables that decide what the trainer's Python imports (and sees of CUDA): the cache key of a probe.
PROBE_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")


class DoctorReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sd_scripts: str
    sd_scripts_found_by: str
    sd_scripts_commit: str
    sd_scripts_version: str | None = None
    sd_scripts_checked_by: str | None = None  # whose parser judged config.toml: sd-scripts' own, or lorakit's table
    sd_scripts_counts: SdScriptsCounts | None = None  # the plan's counts by sd-scripts' own dataset code
    sd_scripts_verdict_cached: bool = False
    python: str
    python_found_by: str
    python_version: str | None
    packages: dict[str, str | None]
    cuda_devices: int
    cpu: bool
    base_model: str | None
    free_disk_gib: float | None
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)


@dataclass
class DoctorOptions:
    sd_scripts: str | None = None
    python: str | None = None
    gpus: str | None = None
    cpu: bool = False  # force the CPU even when CUDA is there
    env: dict[str, str] | None = None  # the trainer's environment (CUDA_VISIBLE_DEVICES, PYTHONPATH, ...)


@dataclass
class TrainerProbe:
    ok: bool
    error: str | None = None
    python_version: str | None = None
    imports: dict[str, dict] = field(default_factory=dict)
    distributions: dict[str, str | None] = field(default_factory=dict)
    cuda_devices: int | None = None


@dataclass
class DoctorContext:
    """What Gate 4's rules look at: this machine as the trainer will meet it, and the plan (when there is one)."""

    plan: Plan | None
    options: DoctorOptions
    checkout: SdScriptsCheckout
    python: str
    python_found_by: str
    requirements: dict[str, str | None]  # sd-scripts' requirements.txt
    needs: list[Need]  # what the plan makes sd-scripts import beyond torch and accelerate
    probe: TrainerProbe
    verdict: TrainerVerdict | None  # the installed sd-scripts' own judgement (None: it could not be run)
    cuda: int  # CUDA devices the trainer sees
    cpu: bool  # training on the CPU (asked for, or no CUDA device)
    models_here: ModelSection | None  # the plan's models as this machine has them
    free_disk_gib: float | None  # at the plan's output folder
    disk_error: OSError | None  # why the free disk could not be read

    @property
    def sd_scripts(self) -> Path:
        return Path(self.checkout.path)

    @property
    def has_train_script(self) -> bool:
        return self.checkout.has_train_script


def run_doctor(plan: Plan | None, options: DoctorOptions | None = None, models_here: ModelSection | None = None,
               ) -> DoctorReport:
    """Gate 4. `models_here` is the plan's model section as this machine has it (`relocate`), when the caller
    has already looked; otherwise doctor looks itself."""
    ctx = doctor_context(plan, options or DoctorOptions(), models_here)
    findings: list[Finding] = []
    for rule in RULES:
        findings += rule(ctx)
    probe = ctx.probe
    packages: dict[str, str | None] = {}
    if probe.ok:
        packages = {name: info.get("version") if info["ok"] else None for name, info in probe.imports.items()}
        packages.update({name: version for name, version in probe.distributions.items() if name not in packages})
    base_model = None
    if ctx.models_here is not None:
        from lorakit.models.fetch import describe_base

        base_model = describe_base(ctx.models_here)
    free = ctx.free_disk_gib
    verdict = ctx.verdict
    return DoctorReport(
        sd_scripts=ctx.checkout.path, sd_scripts_found_by=ctx.checkout.found_by, sd_scripts_commit=ctx.checkout.commit,
        sd_scripts_version=ctx.checkout.version,
        sd_scripts_checked_by=checked_by(verdict, ctx.checkout) if verdict is not None else None,
        sd_scripts_counts=verdict.counts if verdict is not None else None,
        sd_scripts_verdict_cached=bool(verdict and verdict.cached),
        python=ctx.python, python_found_by=ctx.python_found_by, python_version=probe.python_version, packages=packages,
        cuda_devices=ctx.cuda, cpu=ctx.cpu, base_model=base_model,
        free_disk_gib=round(free, 1) if free is not None else None, findings=sort_findings(findings),
    )


def doctor_context(plan: Plan | None, options: DoctorOptions, models_here: ModelSection | None = None) -> DoctorContext:
    """Look at this machine once: sd-scripts, the trainer's Python (probed), CUDA, the models and the disk."""
    checkout = describe_sd_scripts(options.sd_scripts, plan.script if plan is not None else TRAIN_SCRIPT)
    sd_scripts = Path(checkout.path)
    python, python_found_by = find_python(options.python)
    requirements = read_requirements(sd_scripts / "requirements.txt")
    needs = plan_needs(plan.value_set) if plan is not None else []
    imports = list(ALWAYS_IMPORTED) + [m for m, f in UNLISTED.items() if (sd_scripts / f).is_file()]
    imports += [need.module for need in needs]
    probe = probe_trainer(python, tuple(imports), tuple(sorted(requirements)), _env_key(options.env))
    verdict = None
    if checkout.has_train_script and probe.ok:
        verdict = ask_sd_scripts(python, checkout, plan, _trainer_env(options.env))
    cuda = cuda_device_count(probe)
    free, disk_error = None, None
    if plan is not None:
        from lorakit.models.fetch import relocate

        models_here = models_here or relocate(plan.model)
        try:
            free = free_disk_gib(Path(plan.value_set["output_dir"] or plan.plan_dir))
        except OSError as exc:
            disk_error = exc
    return DoctorContext(
        plan=plan, options=options, checkout=checkout,
        python=python, python_found_by=python_found_by, requirements=requirements, needs=needs, probe=probe,
        verdict=verdict, cuda=cuda,
        cpu=options.cpu or cuda == 0 or (plan is not None and plan.target.device == "cpu"),
        models_here=models_here if plan is not None else None,
        free_disk_gib=free, disk_error=disk_error,
    )


# --- the rules, in the order their findings are listed ----------------------------------------------

def sd_scripts_checkout(ctx: DoctorContext) -> list[Finding]:
    if not ctx.has_train_script:
        return [_sd_scripts_missing(ctx.sd_scripts, ctx.checkout.found_by, ctx.checkout.script)]
    return [_commit_finding(ctx.sd_scripts, ctx.checkout.commit)]


def trainer_python(ctx: DoctorContext) -> list[Finding]:
    if not ctx.probe.ok:
        return [finding("env/python-broken", "error", 4,
                        f"the trainer's Python {ctx.python!r} ({ctx.python_found_by}) does not run: {ctx.probe.error}",
                        "pass --python PATH (or set LORAKIT_PYTHON) to the Python of a trainer environment; "
                        "vendor/README.md shows how to make one")]
    needed = {need.distribution for need in ctx.needs}
    return (import_findings(ctx.probe.imports, ctx.needs, ctx.python, ctx.requirements)
            + requirement_findings(ctx.probe.distributions, ctx.requirements, ctx.python, needed))


def installed_sd_scripts(ctx: DoctorContext) -> list[Finding]:
    """The plan held against the installed sd-scripts' own parser and dataset code (or lorakit's table)."""
    if ctx.verdict is None:
        return []
    missing = {name for name, info in ctx.probe.imports.items() if not info["ok"]}
    return verdict_findings(ctx.verdict, ctx.checkout, ctx.plan, ctx.python, ctx.requirements, missing)


def cuda_device(ctx: DoctorContext) -> list[Finding]:
    if ctx.cuda != 0:
        return []
    return [finding(
        "env/no-cuda", "warning", 4,
        "NO CUDA DEVICE: the trainer's torch sees no GPU, so sd-scripts will train on the CPU (lorakit passes "
        "accelerate's --cpu). That is very slow: minutes per step at 1024² even for a LoRA.",
        "train on a machine with an NVIDIA GPU and a CUDA build of torch (vendor/README.md); on the CPU use "
        "mixed_precision bf16 or no")]


def plan_on_this_machine(ctx: DoctorContext) -> list[Finding]:
    if ctx.plan is None:
        return []
    return _plan_findings(ctx.plan, cpu=ctx.cpu, cuda=ctx.cuda, gpus=ctx.options.gpus)


def models(ctx: DoctorContext) -> list[Finding]:
    if ctx.plan is None or ctx.models_here is None:
        return []
    from lorakit.models.fetch import gate_findings

    return gate_findings(ctx.models_here, Path(ctx.plan.plan_dir))


def free_disk(ctx: DoctorContext) -> list[Finding]:
    if ctx.plan is None:
        return []
    if ctx.disk_error is not None:
        return [_disk_unknown(ctx.plan, ctx.disk_error)]
    disk = _disk_finding(ctx.plan, ctx.free_disk_gib) if ctx.free_disk_gib is not None else None
    return [disk] if disk is not None else []


RULES: list[Callable[[DoctorContext], list[Finding]]] = [
    sd_scripts_checkout, trainer_python, installed_sd_scripts, cuda_device, plan_on_this_machine, models, free_disk,
]


# --- sd-scripts -----------------------------------------------------------------------------------

def _sd_scripts_missing(sd_scripts: Path, found_by: str, script: str) -> Finding:
    where = "is not a folder" if not sd_scripts.is_dir() else f"has no {script}"
    if found_by == "vendor/sd-scripts":
        fix = "git submodule update --init vendor/sd-scripts (see vendor/README.md), or pass --sd-scripts PATH"
    else:
        fix = f"point {found_by} at a kohya-ss/sd-scripts checkout (git clone https://github.com/kohya-ss/sd-scripts)"
    return finding("env/sd-scripts-missing", "error", 4, f"sd-scripts at {sd_scripts} ({found_by}) {where}.", fix)


def _commit_finding(sd_scripts: Path, commit: str) -> Finding:
    if commit == SD_SCRIPTS_COMMIT:
        return finding("env/sd-scripts-commit", "info", 4, f"sd-scripts at {sd_scripts}, commit {commit[:8]} (the pinned one).")
    if commit == "unknown":
        return finding("env/sd-scripts-commit", "info", 4,
                       f"sd-scripts at {sd_scripts}, commit unknown (not a git checkout); lorakit follows {SD_SCRIPTS_COMMIT[:8]}.")
    return finding("env/sd-scripts-other-commit", "warning", 4,
                   f"sd-scripts at {sd_scripts} is at commit {commit[:8]}, not {SD_SCRIPTS_COMMIT[:8]} that lorakit "
                   "follows: arguments and log formats may differ.",
                   f"git -C {shlex.quote(str(sd_scripts))} checkout {SD_SCRIPTS_COMMIT}")


# --- the trainer's Python -------------------------------------------------------------------------

_REQUIREMENT_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)\s*(?:\[[^\]]*\])?\s*(==\s*([^\s;#]+))?")


def read_requirements(path: Path) -> dict[str, str | None]:
    """requirements.txt as distribution name → pinned version (None when not pinned with ==)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    pins: dict[str, str | None] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue  # options, -r includes and the "-e ." of sd-scripts' own `library` package
        found = _REQUIREMENT_NAME.match(line)
        if found:
            pins[found.group(1)] = found.group(3)
    return pins


def _trainer_env(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ if env is None else env)


def _env_key(env: Mapping[str, str] | None) -> tuple[tuple[str, str | None], ...]:
    seen = os.environ if env is None else env
    return tuple((key, seen.get(key)) for key in PROBE_ENV)


@lru_cache(maxsize=16)
def probe_trainer(python: str, imports: tuple[str, ...], distributions: tuple[str, ...],
                  env: tuple[tuple[str, str | None], ...]) -> TrainerProbe:
    """Ask the trainer's Python what it can import (cached per process, and in lorakit's cache folder while the
    trainer's packages are unchanged: run/probecache.py; importing torch takes seconds)."""
    request = json.dumps({"imports": list(imports), "distributions": list(distributions)})
    environment = {k: v for k, v in os.environ.items() if k not in PROBE_ENV} | {k: v for k, v in env if v is not None}
    key = probe_key(python, request, {k: v for k, v in env if v is not None})
    data = read_answer(key)
    if data is None:
        data, error = _ask_probe(python, request, environment)
        if data is None:
            return TrainerProbe(False, error=error)
        keep_answer(key, data)
    return TrainerProbe(True, python_version=data["python"], imports=data["imports"],
                        distributions=data["distributions"], cuda_devices=data["cuda_devices"])


def _ask_probe(python: str, request: str, environment: dict[str, str]) -> tuple[dict | None, str | None]:
    try:
        done = subprocess.run([python, str(PROBE_SCRIPT), request], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, env=environment)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, str(exc)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None, (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    try:
        return json.loads(lines[-1]), None
    except ValueError:
        return None, f"unexpected output: {lines[-1][:200]}"


def cuda_device_count(probe: TrainerProbe) -> int:
    """CUDA devices the trainer will see: the fake probe (LORAKIT_FAKE_GPU), else the trainer's torch, else NVML."""
    if os.environ.get(FAKE_ENV) is not None:
        from lorakit.machine.probe import probe as host_probe

        return len(host_probe().gpus)
    if probe.cuda_devices is not None:
        return probe.cuda_devices
    from lorakit.machine.probe import probe as host_probe

    return len(host_probe().gpus)


# --- the plan on this machine ---------------------------------------------------------------------

def _plan_findings(plan: Plan, *, cpu: bool, cuda: int, gpus: str | None) -> list[Finding]:
    values = plan.value_set
    findings = []
    if cpu and values["mixed_precision"] == "fp16":
        findings.append(finding("env/cpu-fp16", "error", 4,
                                "the plan trains in fp16, which the CPU cannot do (sd-scripts stalls in latent caching).",
                                "re-plan with --set mixed_precision=bf16 (or no)", key="mixed_precision"))
    # num_processes counts every machine's processes; this machine runs its share
    processes = -(-values["num_processes"] // max(1, values["num_machines"]))
    ids = [i.strip() for i in (gpus or values["gpu_ids"] or "").split(",") if i.strip()]
    bad = [i for i in ids if not i.isdigit() or (not cpu and cuda and int(i) >= cuda)]
    if bad:
        findings.append(finding("env/bad-gpu-ids", "error", 4,
                                f"GPU id(s) {', '.join(bad)} do not name a CUDA device here (the trainer sees {cuda}: "
                                f"ids 0 to {max(cuda - 1, 0)}).",
                                "give --gpus as device numbers, e.g. --gpus 0 or --gpus 0,1"))
    if not cpu and ids and len(ids) < processes:
        findings.append(finding("env/gpus-too-few", "error", 4,
                                f"this machine runs {processes} of the plan's processes but only {len(ids)} GPU id(s) "
                                f"are given ({','.join(ids)}).",
                                f"give {processes} ids with --gpus, or re-plan with "
                                f"--set num_processes={len(ids) * max(1, values['num_machines'])}"))
    if not cpu and not ids and cuda < processes:
        findings.append(finding("env/gpus-too-few", "error", 4,
                                f"this machine runs {processes} of the plan's processes but the trainer sees {cuda} CUDA device(s).",
                                f"re-plan with --set num_processes={max(cuda, 1) * max(1, values['num_machines'])}"))
    return findings



def needed_disk_gib(plan: Plan) -> float:
    """LoRA files the run keeps, plus state folders (weights + AdamW's two moments), in GiB."""
    values = plan.value_set
    per_file = MB_PER_RANK * (values["network_dim"] or 4) / 1024
    if values["save_precision"] in ("fp16", "bf16"):
        per_file /= 2
    files = sum(1 for s in plan.saves if s.kept) or 1
    states = sum(1 for s in plan.saves if s.state_kept and s.state_dir)
    return files * per_file + states * 3 * per_file


def _disk_unknown(plan: Plan, error: OSError) -> Finding:
    where = plan.value_set["output_dir"] or plan.plan_dir
    return finding("env/disk-unknown", "warning", 4,
                   f"the free disk at {where} could not be read ({error.strerror or error}), so lorakit cannot tell "
                   f"whether the run's files (about {needed_disk_gib(plan):.1f} GiB) fit.",
                   f"check that the disk is mounted and readable (df -h {shlex.quote(str(where))}) before long runs")


def _disk_finding(plan: Plan, free: float) -> Finding | None:
    need = needed_disk_gib(plan)
    where = plan.value_set["output_dir"] or plan.plan_dir
    if free < need:
        return finding("env/disk-full", "error", 4,
                       f"{free:.1f} GiB free at {where}, the run's files need about {need:.1f} GiB.",
                       "free disk space, or re-plan with fewer saves (--set save_last_n_epochs=2) or --set output_dir=DIR on a larger disk")
    if free < max(2 * need, 2.0):
        return finding("env/disk-low", "warning", 4,
                       f"only {free:.1f} GiB free at {where}; the run's files need about {need:.1f} GiB.",
                       "free some disk space before long runs")
    return None
