"""What a run leaves in its output folder: LoRA files with their `ss_*` metadata, and state folders.

The metadata is read from the safetensors header itself (lorakit.util.safetensors_file), so no torch or
safetensors package is needed.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.util.reading import read_json
from lorakit.util.safetensors_file import read_header

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt")


class OutputFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    bytes: int
    metadata: dict[str, str]


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a .safetensors file; {} for other files or a damaged one."""
    if path.suffix != ".safetensors":
        return {}
    try:
        return read_header(path).metadata
    except (OSError, ValueError):
        return {}


def _ours(name: str | None, stem: str, *, state: bool = False) -> bool:
    """Whether a file or folder is one sd-scripts writes for `output_name` (final, epoch or step save)."""
    if name is None:
        return True
    return re.fullmatch(re.escape(name) + r"(-\d{6}|-step\d{8})?" + ("-state" if state else ""), stem) is not None


def model_files(output_dir: Path, name: str | None = None) -> list[Path]:
    """The LoRA files in `output_dir`; with `name`, only the ones a run with that output_name writes (the folder
    may be shared with other plans)."""
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if p.is_file() and p.suffix in MODEL_EXTENSIONS and _ours(name, p.stem))


def list_outputs(output_dir: Path, *, since: float | None = None, name: str | None = None) -> list[OutputFile]:
    """The model files in `output_dir` (written at or after `since`, a time.time() value), oldest first."""
    files = []
    for path in model_files(output_dir, name):
        stat = path.stat()
        if since is not None and stat.st_mtime < since - 1:  # mtime granularity
            continue
        files.append((stat.st_mtime, OutputFile(path=str(path), bytes=stat.st_size, metadata=safetensors_metadata(path))))
    return [f for _, f in sorted(files, key=lambda item: (item[0], item[1].path))]


def state_folders(output_dir: Path, name: str | None = None) -> list[Path]:
    """sd-scripts' `*-state` folders (accelerate state + train_state.json), oldest first."""
    if not output_dir.is_dir():
        return []
    folders = [p for p in output_dir.iterdir() if p.is_dir() and p.name.endswith("-state") and _ours(name, p.name, state=True)]
    # newest by the time its train_state.json was written: a resumed run counts its steps from 0 again
    return sorted(folders, key=lambda p: (_written(p), p.name))


def latest_state(output_dir: Path, name: str | None = None) -> Path | None:
    folders = state_folders(output_dir, name)
    return folders[-1] if folders else None


def saved_step(state: Path) -> int | None:
    """The step a state folder was saved at (its train_state.json), None when it does not say."""
    try:
        step = read_json(state / "train_state.json").get("current_step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def sample_files(output_dir: Path, name: str) -> list[Path]:
    """The sample images sd-scripts made for `name` (`output_dir/sample/{name}_*.png`)."""
    folder = output_dir / "sample"
    return sorted(folder.glob(glob.escape(name) + "_*.png")) if folder.is_dir() else []


def _written(folder: Path) -> float:
    marker = folder / "train_state.json"
    return (marker if marker.exists() else folder).stat().st_mtime
