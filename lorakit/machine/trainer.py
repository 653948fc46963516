"""The trainer: where sd-scripts and its Python are, and the exact command that starts it.

The command is always an argument list (never a shell string):
`<python> -m accelerate.commands.launch <accelerate flags> <sd-scripts>/<script> --config_file <plan>/config.toml`,
where the script is the plan's family's (`sdxl_train_network.py`, `flux_train_network.py`, `train_network.py`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit import SD_SCRIPTS_COMMIT, SD_SCRIPTS_VERSION
from lorakit.config.family import DEFAULT_FAMILY, family_named
from lorakit.config.values import Values
from lorakit.util.resources import repo_root

SD_SCRIPTS_ENV = "LORAKIT_SD_SCRIPTS"
PYTHON_ENV = "LORAKIT_PYTHON"
TRAIN_SCRIPT = family_named(DEFAULT_FAMILY).script  # the script doctor looks for when it has no plan
# A copy of sd-scripts made without git (the CI's shared copy) names its commit in this file: "COMMIT DATE ...".
COMMIT_FILE = ".sd-scripts-commit"


class SdScriptsCheckout(BaseModel):
    """Which sd-scripts a command found: where, how, and its commit and version when they can be told."""

    model_config = ConfigDict(extra="forbid")

    path: str
    found_by: str
    commit: str  # "unknown" when neither git nor .sd-scripts-commit says
    version: str | None = None  # `git describe --tags`, or the pinned commit's known version
    has_train_script: bool = False
    script: str = TRAIN_SCRIPT  # the training script looked for


def find_sd_scripts(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The sd-scripts checkout and how it was found: --sd-scripts, then $LORAKIT_SD_SCRIPTS, then vendor/."""
    if explicit:
        return Path(explicit).expanduser().resolve(), "--sd-scripts"
    if os.environ.get(SD_SCRIPTS_ENV):
        return Path(os.environ[SD_SCRIPTS_ENV]).expanduser().resolve(), SD_SCRIPTS_ENV
    root = repo_root()
    vendor = (root / "vendor" / "sd-scripts") if root else Path("vendor") / "sd-scripts"
    return vendor.resolve(), "vendor/sd-scripts"


def find_python(explicit: str | os.PathLike | None = None) -> tuple[str, str]:
    """The trainer's Python and how it was found: --python, then $LORAKIT_PYTHON, then lorakit's own."""
    if explicit:
        return str(explicit), "--python"
    if os.environ.get(PYTHON_ENV):
        return os.environ[PYTHON_ENV], PYTHON_ENV
    return sys.executable, "lorakit's interpreter"


CPU_THREADS_FLAG = "--num_cpu_threads_per_process"


def accelerate_flags(values: Values, *, cpu: bool = False, gpu_ids: str | None = None) -> list[str]:
    """accelerate's flags from the plan; all four that silence its "values were not passed" warning are given."""
    processes = values["num_processes"]
    machines = values["num_machines"]
    flags: list[str] = []
    if cpu:
        flags.append("--cpu")
    elif processes > 1 or machines > 1:
        flags.append("--multi_gpu")
    flags += [
        "--num_processes", str(processes),
        "--num_machines", str(machines),
        "--mixed_precision", values["mixed_precision"] or "no",
        "--dynamo_backend", "no",
        # OMP threads per process: 1 beside a GPU (sd-scripts' docs), every core when the CPU does the training
        CPU_THREADS_FLAG, str((os.cpu_count() or 1) if cpu else 1),
    ]
    ids = gpu_ids or values["gpu_ids"]
    if ids and not cpu:
        flags += ["--gpu_ids", str(ids)]
    if machines > 1:
        flags += ["--machine_rank", str(values["machine_rank"])]
        if values["main_process_ip"]:
            flags += ["--main_process_ip", values["main_process_ip"]]
        if values["main_process_port"]:
            flags += ["--main_process_port", str(values["main_process_port"])]
    return flags


def trainer_command(
    python: str,
    sd_scripts: Path,
    config_path: Path,
    values: Values,
    *,
    cpu: bool = False,
    gpu_ids: str | None = None,
) -> list[str]:
    return [
        python, "-m", "accelerate.commands.launch",
        *accelerate_flags(values, cpu=cpu, gpu_ids=gpu_ids),
        str(sd_scripts / family_named(values.family).script),
        "--config_file", str(config_path),
    ]


def describe_sd_scripts(explicit: str | os.PathLike | None = None, script: str = TRAIN_SCRIPT) -> SdScriptsCheckout:
    """The sd-scripts checkout `launch` would use for `script`, identified (two quick git calls, no Python of sd-scripts)."""
    path, found_by = find_sd_scripts(explicit)
    commit = sd_scripts_commit(path) if path.is_dir() else "unknown"
    return SdScriptsCheckout(path=str(path), found_by=found_by, commit=commit, version=sd_scripts_version(path, commit),
                             has_train_script=(path / script).is_file(), script=script)


def sd_scripts_commit(sd_scripts: Path) -> str:
    """The checkout's commit: git's HEAD when it is the top of its own work tree, else its .sd-scripts-commit file."""
    found = _git(sd_scripts, "rev-parse", "--show-toplevel", "HEAD")
    if found is not None and len(found.split()) == 2 and Path(found.split()[0]).resolve() == sd_scripts.resolve():
        return found.split()[1]
    try:
        words = (sd_scripts / COMMIT_FILE).read_text(encoding="utf-8").split()
    except OSError:
        return "unknown"  # not a git checkout (or a folder inside another repository), and no commit file
    return words[0] if words and len(words[0]) == 40 else "unknown"


def sd_scripts_version(sd_scripts: Path, commit: str) -> str | None:
    """`git describe --tags` of a git checkout; for a copy without git, the version lorakit knows for its commit."""
    described = _git(sd_scripts, "describe", "--tags", "--always") if (sd_scripts / ".git").exists() else None
    if described:
        return described.strip()
    return SD_SCRIPTS_VERSION if commit == SD_SCRIPTS_COMMIT else None


def _git(folder: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None or not folder.is_dir():
        return None
    try:
        done = subprocess.run([git, "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None
