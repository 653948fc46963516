"""`lorakit setup`: the trainer environment `launch` needs, made (or checked) in one command.

Steps, in order: sd-scripts (the `vendor/sd-scripts` submodule, or `--sd-scripts PATH`), a virtual
environment, torch and torchvision of the build the driver needs, sd-scripts' requirements (without its
`-e .`, which would write into the checkout), xformers when asked for, then `doctor`. Each step first
checks whether it is already satisfied and then runs nothing, so a second `setup` changes nothing.
Only git, `python -m venv` and pip are run, always as argument lists, so the user's pip configuration
(indexes, constraints, certificates, cache) applies to every install.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lorakit.errors import SetupError, UserError
from lorakit.machine import torchbuild
from lorakit.machine.trainer import TRAIN_SCRIPT, find_sd_scripts
from lorakit.run.doctor import DoctorOptions, DoctorReport, run_doctor, sd_scripts_commit
from lorakit.util.resources import repo_root

USE_PIP_CONFIG = "pip"  # --torch-index pip: torch comes from the indexes pip is configured with
DEFAULT_VENV = Path(".trainer")
# What the torch step asks the venv's Python (json on stdout): its version, and torch, torchvision, xformers.
ENV_PROBE = """\
import importlib, json, sys
report = {"python": "%d.%d" % sys.version_info[:2]}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        continue
    report[name] = {"ok": True, "version": getattr(module, "__version__", None)}
    if name == "torch":
        report[name]["cuda"] = module.version.cuda
print(json.dumps(report))
"""
PIP_INDEX_KEYS = ("index-url", "extra-index-url", "find-links", "no-index")


class Runner(Protocol):
    """Runs one command (an argument list) and returns what it printed; a test passes a fake pip."""

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]: ...


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True)


class Progress(Protocol):
    def step(self, number: int, total: int, label: str) -> None: ...
    def note(self, text: str) -> None: ...
    def command(self, argv: Sequence[str]) -> None: ...
    def outcome(self, kind: str, why: str) -> None: ...


@dataclass
class SetupRequest:
    venv: Path = DEFAULT_VENV
    sd_scripts: str | None = None  # None: $LORAKIT_SD_SCRIPTS, then vendor/sd-scripts (checked out if empty)
    torch: str = "auto"  # auto | cpu | cuXXX
    torch_index: str | None = None  # None: PyTorch's index for the variant; "pip": pip's own indexes; else a URL
    xformers: bool = False
    base_python: str = sys.executable  # the interpreter the venv is made from
    dry_run: bool = False
    driver_cuda: str | None = None  # the driver's CUDA version for --torch auto (None: ask pynvml)


@dataclass
class Verdict:
    """A step's check: satisfied (why it is skipped), or not (what is missing, and the commands that fix it)."""

    satisfied: bool
    why: str
    commands: list[list[str]] = field(default_factory=list)
    fix: str | None = None  # what to do when the commands ran and the step is still not satisfied


@dataclass
class Step:
    label: str
    check: Callable[[], Verdict]


@dataclass
class SetupResult:
    venv_python: str
    sd_scripts: str
    changed: list[str]  # the steps that ran commands (or would, with --dry-run)
    doctor: DoctorReport | None  # None with --dry-run


@dataclass
class Environment:
    """What setup works on, resolved once from the request."""

    request: SetupRequest
    runner: Runner
    sd_scripts: Path
    sd_scripts_found_by: str
    venv: Path
    variant: str
    index: str | None  # the --index-url for torch, None for pip's own configuration

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def pip(self, *args: str) -> list[str]:
        return [self.python, "-m", "pip", *args]

    def probe(self, *modules: str) -> dict | None:
        """The venv's Python's answer to ENV_PROBE, or None when there is no working venv yet."""
        if not Path(self.python).is_file():
            return None
        done = self.runner([self.python, "-c", ENV_PROBE, *modules])
        if done.returncode != 0:
            return None
        try:
            return json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None


def setup(request: SetupRequest, progress: Progress, runner: Runner = run_command) -> SetupResult:
    """Make the trainer environment, or check that it is there (every step is skipped when it is)."""
    env = resolve(request, runner)
    steps = [
        Step(f"sd-scripts: {env.sd_scripts}", lambda: sd_scripts_step(env)),
        Step(f"virtual environment: {env.venv}", lambda: venv_step(env)),
        Step(torch_label(env), lambda: torch_step(env)),
        Step(f"sd-scripts' requirements ({env.sd_scripts / 'requirements.txt'}, without -e .)", lambda: requirements_step(env)),
        Step("xformers", lambda: xformers_step(env)),
    ]
    total = len(steps) + 1
    changed: list[str] = []
    for number, step in enumerate(steps, 1):
        progress.step(number, total, step.label)
        if number == 3:
            for note in pip_index_notes(env):
                progress.note(note)
        if run_step(step, env, progress):
            changed.append(step.label)
    progress.step(total, total, "doctor")
    if request.dry_run:
        progress.outcome("would run", f"lorakit doctor --sd-scripts {env.sd_scripts} --python {env.python}")
        return SetupResult(env.python, str(env.sd_scripts), changed, None)
    report = run_doctor(None, DoctorOptions(sd_scripts=str(env.sd_scripts), python=env.python))
    progress.outcome("done" if report.ok else "failed", "no errors" if report.ok else "see the report below")
    return SetupResult(env.python, str(env.sd_scripts), changed, report)


def resolve(request: SetupRequest, runner: Runner) -> Environment:
    sd_scripts, found_by = find_sd_scripts(request.sd_scripts)
    variant = torchbuild.choose_variant(request.torch, request.driver_cuda)
    if request.torch_index == USE_PIP_CONFIG:
        index = None
    else:
        index = request.torch_index or torchbuild.index_url(variant)
    if request.xformers and variant == "cpu" and index is not None:
        raise UserError("xformers needs a CUDA build of torch; this setup installs the CPU build",
                        fix="leave out --xformers (SDPA is the default attention), or name a CUDA build with --torch cuXXX")
    return Environment(request, runner, sd_scripts, found_by, request.venv.expanduser().absolute(), variant, index)


def run_step(step: Step, env: Environment, progress: Progress) -> bool:
    """Check the step, run its commands when it is not satisfied, and check again. True when it ran (or would)."""
    verdict = step.check()
    if verdict.satisfied:
        progress.outcome("skipped", verdict.why)
        return False
    for argv in verdict.commands:
        progress.command(argv)
    if env.request.dry_run:
        progress.outcome("would run", verdict.why)
        return True
    for argv in verdict.commands:
        done = env.runner(argv)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise SetupError(f"{step.label}: the command failed (exit code {done.returncode}):\n  {_quoted(argv)}\n{tail}",
                             fix="fix the cause shown above, then run lorakit setup again (it continues where it stopped)")
    after = step.check()
    if not after.satisfied:
        raise SetupError(f"{step.label}: still not right after installing: {after.why}", fix=after.fix)
    progress.outcome("done", after.why)
    return True


# --- the steps ---------------------------------------------------------------------------------------

def sd_scripts_step(env: Environment) -> Verdict:
    script = env.sd_scripts / TRAIN_SCRIPT
    if script.is_file():
        commit = sd_scripts_commit(env.sd_scripts)
        return Verdict(True, f"{TRAIN_SCRIPT} is there (commit {commit[:12]}, found by {env.sd_scripts_found_by})")
    if env.sd_scripts_found_by != "vendor/sd-scripts":
        raise UserError(f"sd-scripts at {env.sd_scripts} ({env.sd_scripts_found_by}) has no {TRAIN_SCRIPT}",
                        fix="point --sd-scripts at a kohya-ss/sd-scripts checkout (git clone https://github.com/kohya-ss/sd-scripts)")
    root = repo_root()
    if root is None or not (root / ".git").exists():
        raise UserError("lorakit is not running from its git checkout, so there is no vendor/sd-scripts submodule to fetch",
                        fix="git clone https://github.com/kohya-ss/sd-scripts, then lorakit setup --sd-scripts PATH")
    return Verdict(False, "the vendor/sd-scripts submodule is not checked out",
                   [["git", "-C", str(root), "submodule", "update", "--init", "vendor/sd-scripts"]])


def venv_step(env: Environment) -> Verdict:
    wanted = python_version(env.runner, env.request.base_python)
    create = [[env.request.base_python, "-m", "venv", str(env.venv)]]
    if not Path(env.python).is_file():
        if env.venv.exists() and any(env.venv.iterdir()):
            raise UserError(f"{env.venv} exists and is not a virtual environment; setup does not write into it",
                            fix="choose another folder with --venv")
        return Verdict(False, f"no virtual environment yet (Python {wanted})", create)
    have = python_version(env.runner, env.python)
    if have != wanted:
        raise UserError(f"the virtual environment {env.venv} has Python {have or '(broken)'}, not {wanted} "
                        f"of {env.request.base_python}", fix="remove it, or choose another folder with --venv")
    if env.runner(env.pip("--version")).returncode != 0:
        return Verdict(False, "the virtual environment has no pip", [[env.python, "-m", "ensurepip"]])
    return Verdict(True, f"exists with Python {have} and pip")


def torch_step(env: Environment) -> Verdict:
    found = env.probe("torch", "torchvision")
    install = env.pip("install", "torch", "torchvision", *_index_args(env))
    if found is None:
        return Verdict(False, "no virtual environment yet", [install])
    torch, vision = found["torch"], found["torchvision"]
    if not torch["ok"]:
        return Verdict(False, f"torch does not import ({torch['error']})", [install])
    have = torchbuild.build_variant(torch.get("cuda"))
    built = f"torch {torch['version']} ({have} build)"
    if env.index is not None and have != env.variant:
        return Verdict(False, f"{built} is not the {env.variant} build wanted",
                       [env.pip("uninstall", "--yes", "torch", "torchvision"), install],
                       fix=f"pip took torch from another index (your configuration's extra-index-url or find-links), or could "
                           f"not reach {env.index}: --torch-index pip accepts the build your indexes give, --torch-index URL "
                           "names a reachable mirror of that index")
    if not vision["ok"]:
        return Verdict(False, f"{built} is there but torchvision does not import ({vision['error']})",
                       [env.pip("install", "--force-reinstall", "--no-deps", "torchvision", *_index_args(env))])
    why = f"{built}, torchvision {vision['version']}"
    if env.index is None:
        why += " (from pip's own indexes; the variant is not checked)"
    return Verdict(True, why)


def requirements_step(env: Environment) -> Verdict:
    listed = env.sd_scripts / "requirements.txt"
    if env.request.dry_run and not listed.is_file():
        return Verdict(False, "sd-scripts is not checked out yet: its requirements are read once it is")
    requirements = sd_scripts_requirements(listed)
    install = env.pip("install", *requirements)
    if not Path(env.python).is_file():
        return Verdict(False, "no virtual environment yet", [install])
    done = env.runner(env.pip("install", "--dry-run", *requirements))
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        return Verdict(False, f"pip cannot resolve them yet:\n{tail}", [install])
    missing = [line.removeprefix("Would install ").strip() for line in done.stdout.splitlines() if line.startswith("Would install ")]
    if missing:
        return Verdict(False, f"to install: {' '.join(missing)}", [install])
    return Verdict(True, f"all {len(requirements)} satisfied (pip install --dry-run would install nothing)")


def xformers_step(env: Environment) -> Verdict:
    if not env.request.xformers:
        return Verdict(True, "not asked for (--xformers); SDPA needs nothing more")
    found = env.probe("torch", "xformers")
    if found is None or not found["torch"]["ok"]:
        return Verdict(False, "torch is not installed yet", [env.pip("install", "xformers", *_index_args(env))])
    if found["xformers"]["ok"]:
        return Verdict(True, f"xformers {found['xformers']['version']} imports")
    # xformers pins one torch release: holding torch at the installed version keeps pip from replacing it
    return Verdict(False, f"xformers does not import ({found['xformers']['error']})",
                   [env.pip("install", "xformers", f"torch=={found['torch']['version']}", *_index_args(env))])


# --- helpers -----------------------------------------------------------------------------------------

def torch_label(env: Environment) -> str:
    if env.index is None:
        return f"torch + torchvision: from pip's configured indexes (the {env.variant} build is not enforced)"
    return f"torch + torchvision: {env.variant} build from {env.index}"


def sd_scripts_requirements(path: Path) -> list[str]:
    """requirements.txt's requirement lines as pip arguments, without options and sd-scripts' own `-e .`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read sd-scripts' requirements: {exc}",
                        fix="point --sd-scripts at a complete kohya-ss/sd-scripts checkout") from exc
    requirements = []
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-", ".")):
            requirements.append(line)
    return requirements


def python_version(runner: Runner, python: str) -> str | None:
    done = runner([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    return done.stdout.strip() if done.returncode == 0 else None


def pip_index_notes(env: Environment) -> list[str]:
    """What pip's own configuration says about indexes, and what the torch step does with it."""
    python = env.python if Path(env.python).is_file() else env.request.base_python
    done = env.runner([python, "-m", "pip", "config", "list"])
    pinned = [line.strip() for line in done.stdout.splitlines()
              if done.returncode == 0 and line.split("=", 1)[0].rsplit(".", 1)[-1] in PIP_INDEX_KEYS]
    if not pinned:
        return []
    notes = [f"pip's configuration sets {', '.join(pinned)}"]
    if env.index is None:
        notes.append("torch and torchvision come from those indexes (--torch-index pip)")
    else:
        notes.append(f"the torch step passes --index-url {env.index}, which replaces a configured index-url for that "
                     "step only; extra-index-url and find-links still apply, and the build is checked after installing "
                     "(--torch-index pip keeps your indexes for torch too)")
    return notes


def _index_args(env: Environment) -> list[str]:
    return ["--index-url", env.index] if env.index is not None else []


def _quoted(argv: Sequence[str]) -> str:
    return shlex.join(argv)
