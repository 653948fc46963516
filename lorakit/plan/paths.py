"""Paths in a plan: what makes a plan folder relocatable.

sd-scripts opens every path it is given as it is, so a relative one is relative to its working directory
(docs/sd-scripts.md §2). lorakit starts the trainer in the plan folder, and so:

* the plan folder's own files (dataset.toml, output/, tensorboard/, sample_prompts.txt) are written
  relative to it in config.toml and plan.json, so a copied or moved plan trains into its own folder;
* every path the user gives (`--set output_dir=out`, a preset's `network_weights`, ...) is made absolute
  against the directory `lorakit plan` ran in, so it means the same wherever lorakit runs later; one
  that points into the plan folder becomes relative to it, as the plan's own files are;
* `here(values, plan_dir)` gives the values with those relative paths made absolute against where
  the plan folder is now, for everything lorakit itself opens (outputs, --fresh, the GUI export).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lorakit.config.schema import PATH_KEYS
from lorakit.config.values import ResolvedValue, Values


def _is_path(key: str, value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    return not (key == "metadata_thumbnail" and value.startswith("data:"))  # a data URL, not a file


def _each(key: str, value: Any, change) -> Any:
    if isinstance(value, list):
        return [change(v) if _is_path(key, v) else v for v in value]
    return change(value) if _is_path(key, value) else value


def anchored(value: str, plan_dir: Path, cwd: Path) -> str:
    """`value` as a path that means the same from anywhere: relative to the plan folder when it is inside
    it, absolute otherwise (`~` expanded, a relative path taken from `cwd`, symlinks kept)."""
    path = Path(os.path.expanduser(value))
    absolute = Path(os.path.abspath(path if path.is_absolute() else cwd / path))
    try:
        return absolute.relative_to(plan_dir).as_posix()
    except ValueError:
        return str(absolute)


def anchor_paths(values: Values, plan_dir: Path, cwd: Path, *, skip_source: str) -> None:
    """Make every path value not written by lorakit itself (`skip_source`) mean the same from anywhere."""
    for key in sorted(PATH_KEYS):
        item = values.entry(key)
        if item is None or item.value is None or item.source == skip_source:
            continue
        value = _each(key, item.value, lambda v: anchored(v, plan_dir, cwd))
        if value != item.value:
            note = f"{item.note} · " if item.note else ""
            values.restate(key, value, f"{note}given as {item.value!r} in {cwd}")


def located(value: str, plan_dir: Path) -> str:
    """A path of the plan as it is now: a relative one is inside the plan folder."""
    path = Path(value)
    return value if path.is_absolute() else str(plan_dir / path)


def here(values: dict[str, ResolvedValue], plan_dir: Path) -> Values:
    """The values with the plan folder's relative paths made absolute against `plan_dir`, where the plan is now."""
    items = dict(values)
    for key in PATH_KEYS & items.keys():
        item = items[key]
        if item.value is not None:
            items[key] = item.model_copy(update={"value": _each(key, item.value, lambda v: located(v, plan_dir))})
    return Values(items)


def left_behind(values: dict[str, ResolvedValue], planned_in: Path, plan_dir: Path) -> list[str]:
    """The keys whose absolute path points into the folder the plan was made in, now that it is elsewhere:
    what plans of lorakit before relocatable plan folders wrote, and what would train into the old folder."""
    if planned_in == plan_dir:
        return []
    found = []
    for key in sorted(PATH_KEYS & values.keys()):
        value = values[key].value
        paths = value if isinstance(value, list) else [value]
        if any(_is_path(key, v) and Path(v).is_absolute() and Path(v).is_relative_to(planned_in) for v in paths):
            found.append(key)
    return found
