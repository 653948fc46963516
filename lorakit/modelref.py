"""Where the base model comes from: one function that `doctor` and `launch` both ask.

A local file or Diffusers folder is checked here. A value shaped like a Hugging Face Hub id
(`owner/name`) is reported as such and left for sd-scripts (or lorakit's Hub support) to fetch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass
class BaseModelRef:
    value: str | None
    kind: Literal["file", "folder", "hub", "missing", "unset"]
    path: str | None = None

    @property
    def usable(self) -> bool:
        return self.kind in ("file", "folder", "hub")

    def describe(self) -> str:
        return {
            "file": f"base model file {self.path}",
            "folder": f"base model folder (Diffusers layout) {self.path}",
            "hub": f"{self.value}: Hub id, resolved at launch",
            "missing": f"base model {self.value!r} does not exist",
            "unset": "no base model (pretrained_model_name_or_path is not set)",
        }[self.kind]


def looks_like_hub_id(value: str) -> bool:
    return bool(_HUB_ID.match(value)) and not value.lower().endswith(_MODEL_SUFFIXES)


def resolve_base_model(value: str | None) -> BaseModelRef:
    if not value:
        return BaseModelRef(value, "unset")
    path = Path(value).expanduser()
    if path.is_file():
        return BaseModelRef(value, "file", str(path.resolve()))
    if path.is_dir():
        return BaseModelRef(value, "folder", str(path.resolve()))
    if looks_like_hub_id(value):
        return BaseModelRef(value, "hub")
    return BaseModelRef(value, "missing", str(path))
