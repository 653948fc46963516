"""The trainer: where sd-scripts and its Python are, and the exact command that starts it.

The command is always an argument list (never a shell string):
`<python> -m accelerate.commands.launch <accelerate flags> <sd-scripts>/sdxl_train_network.py --config_file <plan>/config.toml`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lorakit.config.values import Values
from lorakit.util.resources import repo_root

SD_SCRIPTS_ENV = "LORAKIT_SD_SCRIPTS"
PYTHON_ENV = "LORAKIT_PYTHON"
TRAIN_SCRIPT = "sdxl_train_network.py"


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
        str(sd_scripts / TRAIN_SCRIPT),
        "--config_file", str(config_path),
    ]
