"""What a model value names: a local file, a local folder, or `REPO_ID[@REVISION][:FILENAME]` on the Hub.

A value that exists on this machine is local, even when it also reads as a Hub id (`models/sdxl`),
as in diffusers. Anything else that reads as a Hub reference is one; the rest is a local path that
is missing here (a plan may be made on another machine than the one that trains).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# huggingface_hub.utils.validate_repo_id, restricted to OWNER/NAME: word characters, dots and dashes.
_NAME = r"[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?"
REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$")
HUB_REF = re.compile(r"^(?P<repo>[^@:\s]+)(?:@(?P<revision>[^@:\s]+))?(?::(?P<filename>[^:]+))?$")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
DEFAULT_REVISION = "main"
SYNTAX = "a local file, a local diffusers folder, or REPO_ID[@REVISION][:FILENAME] on the Hugging Face Hub"

Kind = Literal["file", "folder", "hub", "missing"]


@dataclass(frozen=True)
class ModelRef:
    value: str  # as written
    kind: Kind
    path: Path | None = None  # absolute local path (file, folder, missing)
    repo_id: str | None = None
    revision: str | None = None  # as written; None means the default branch
    filename: str | None = None  # a single file in the repo; None: lorakit chooses (see modelsource)

    @property
    def hub_revision(self) -> str:
        return self.revision or DEFAULT_REVISION


def is_repo_id(text: str) -> bool:
    return bool(REPO_ID.match(text)) and "--" not in text and ".." not in text and not text.endswith(".git")


def _looks_like_path(value: str) -> bool:
    return (value.startswith(("/", "~", ".", "\\")) or "\\" in value
            or value.lower().endswith(WEIGHT_SUFFIXES) and ":" not in value)


def _safe_filename(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def parse_hub_ref(value: str) -> ModelRef | None:
    match = HUB_REF.match(value)
    if not match or not is_repo_id(match["repo"]):
        return None
    filename = match["filename"]
    if filename is not None and not _safe_filename(filename):
        return None
    return ModelRef(value, "hub", repo_id=match["repo"], revision=match["revision"], filename=filename)


def local_path(value: str, base: Path | None = None) -> Path:
    """Absolute, with `~` expanded, symlinks kept (sd-scripts reads the link itself)."""
    path = Path(os.path.expanduser(value))
    return Path(os.path.abspath(path if path.is_absolute() else (base or Path.cwd()) / path))


def parse_model_ref(value: str, base: Path | None = None) -> ModelRef:
    path = local_path(value, base)
    if path.is_file():
        return ModelRef(value, "file", path=path)
    if path.is_dir():
        return ModelRef(value, "folder", path=path)
    if not _looks_like_path(value):
        hub = parse_hub_ref(value)
        if hub is not None:
            return hub
    return ModelRef(value, "missing", path=path)
