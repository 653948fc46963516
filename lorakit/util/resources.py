"""Where lorakit's shipped files live, in a source checkout and in an installed wheel.

The repository keeps `templates/` and `presets/` at its top level; the wheel carries them inside
the package (`lorakit/templates`, `lorakit/presets`, see pyproject.toml), so both layouts are tried.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _shipped_dir(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"lorakit installation is incomplete: no '{name}' folder next to {PACKAGE_DIR}")


def templates_dir() -> Path:
    return _shipped_dir("templates")


def presets_dir() -> Path:
    return _shipped_dir("presets")


def user_config_dir() -> Path:
    """lorakit's per-user folder: `$XDG_CONFIG_HOME/lorakit`, else `~/.config/lorakit`."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "lorakit"


def repo_root() -> Path | None:
    """The source checkout lorakit runs from, if any (holds `vendor/`)."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "lorakit").is_dir() else None


def arguments_file(script: str) -> Path:
    return PACKAGE_DIR / "data" / "sd-scripts-args" / f"{script.removesuffix('.py')}.json"


@cache
def sd_scripts_arguments(script: str = "sdxl_train_network.py") -> dict:
    """The argument table of an sd-scripts training script at the pinned commit (tools/derive_arguments.py)."""
    with open(arguments_file(script), encoding="utf-8") as f:
        return json.load(f)
