"""The Kohya SS GUI's LoRA-tab keys and the rules the GUI applies to their values (docs/kohya-gui.md §2, §3, §4).

The table (`lorakit/data/kohya-gui-lora-keys.json`, trimmed from the shared key table) gives each
key's type, fresh-GUI default, choices, bounds and format, and which keys each GUI release saves.
The GUI itself checks nothing on load; values are checked when the user presses Save, Train or Print:
dropdown choices from GUI v25 (gradio 5), Number bounds from v24, Slider bounds only at master.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from lorakit.util.resources import PACKAGE_DIR

# --gui-version NAME → the release whose key set it means (master is the newest).
VERSIONS = {"master": "master", "v26": "v26.0.0", "v25": "v25.2.2", "v24": "v24.1.7"}
NEWEST = "master"

LYCORIS_BIG_DIMS = frozenset({"LyCORIS/LoHa", "LyCORIS/LoKr", "LyCORIS/BOFT", "LyCORIS/Diag-OFT"})
ARGS_PATTERN = re.compile(r"^(\S+=\S+)( \S+=\S+)*$|^$")  # the GUI's validate_args_setting
FORMATS = {
    "max_resolution": (re.compile(r"^[1-9]\d*(,[1-9]\d*)?$"), "'W,H' or 'N' in pixels, e.g. '1024,1024'"),
    "optimizer_args": (ARGS_PATTERN, "'' or 'k=v k=v' with single spaces and no spaces inside a pair"),
    "lr_scheduler_args": (ARGS_PATTERN, "'' or 'k=v k=v' with single spaces and no spaces inside a pair"),
    "gpu_ids": (re.compile(r"^(\d+(,\d+)*)?$"), "'' or GPU indices such as '0,1'"),
}


@dataclass(frozen=True)
class GuiKey:
    name: str
    type: str  # bool, str, int or float
    default: Any
    component: str | None
    choices: tuple | None = None
    custom_allowed: bool = True
    min: float | None = None
    max: float | None = None
    format: str | None = None
    load_coerces: str | None = None
    since: str = ""
    sdxl_lora: bool = True  # false for keys only Flux, SD3, Hunyuan, Anima or Lumina runs read


@cache
def _table() -> dict:
    with open(PACKAGE_DIR / "data" / "kohya-gui-lora-keys.json", encoding="utf-8") as f:
        return json.load(f)


@cache
def gui_keys() -> dict[str, GuiKey]:
    """Every key the LoRA tab saves at master, in the table's order."""
    keys = {}
    for name, row in _table()["keys"].items():
        choices = row.get("choices")
        keys[name] = GuiKey(
            name=name, type=row["type"], default=row["default"], component=row["component"],
            choices=tuple(choices) if choices is not None else None,
            custom_allowed=row.get("custom_allowed", True), min=row.get("min"), max=row.get("max"),
            format=row.get("format"), load_coerces=row.get("load_coerces"), since=row["since"],
            sdxl_lora=row["sdxl_lora"],
        )
    return keys


def legacy_keys() -> dict[str, str]:
    """Keys of old GUI versions: what the GUI does with each on load."""
    return dict(_table()["legacy_keys"])


def foreign_tab_keys() -> dict[str, list[str]]:
    """Keys of the Dreambooth, Finetune and Textual Inversion tabs, which the LoRA tab ignores."""
    return dict(_table()["foreign_tab_keys"])


def source_commit() -> str:
    return _table()["_meta"]["commit"]


def version_keys(version: str) -> list[str]:
    """The keys the LoRA tab of `version` (a VERSIONS name) saves, sorted as the GUI writes them."""
    release = VERSIONS[version]
    names = list(gui_keys()) if release == "master" else _table()["keys_by_version"][release]
    return sorted(names)


def type_ok(key: GuiKey, value: Any) -> bool:
    if key.type == "bool":
        return isinstance(value, bool)
    if key.type == "str":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    # The GUI saves whole numbers as ints and tolerates 8.0 for an int (docs/kohya-gui.md §3.2).
    return key.type == "float" or float(value).is_integer()


def _enforces_choices(version: str) -> bool:
    return version != "v24"  # gradio 5+ (GUI v25 on) refuses values outside a dropdown's choices


def _bounds(key: GuiKey, config: dict, version: str) -> tuple[float | None, float | None]:
    if key.component == "Slider" and version != "master":
        return None, None  # only gradio 6 (master after v26.0.0) checks sliders
    high = key.max
    if key.name in ("network_dim", "conv_dim") and config.get("LoRA_type") in LYCORIS_BIG_DIMS:
        high = 100000
    return key.min, high


def value_problems(config: dict, version: str = NEWEST) -> list[str]:
    """What the GUI of `version` would refuse on Save, Train or Print, for the keys present in `config`.

    Unknown keys are not checked here (the GUI ignores them). Types are checked strictly: the
    legacy forms the GUI converts on load should be migrated first (`load.migrate`).
    """
    problems = []
    keys = gui_keys()
    for name, value in config.items():
        key = keys.get(name)
        if key is None or value is None:
            continue
        if not type_ok(key, value):
            problems.append(f"{name} = {value!r} is not {_type_words(key)}")
            continue
        if key.choices is not None and not key.custom_allowed and _enforces_choices(version) and value not in key.choices:
            problems.append(f"{name} = {value!r} is not one of the GUI's choices {list(key.choices)} "
                            f"(GUI {VERSIONS[version]} refuses it: 'Value: {value} is not in the list of choices')")
        low, high = _bounds(key, config, version)
        if key.type in ("int", "float"):
            if low is not None and value < low:
                problems.append(f"{name} = {value!r} is below the GUI's minimum {low}")
            if high is not None and value > high:
                problems.append(f"{name} = {value!r} is above the GUI's maximum {high}")
        if name in FORMATS and isinstance(value, str):
            pattern, words = FORMATS[name]
            if not pattern.match(value):
                problems.append(f"{name} = {value!r} is not in the GUI's format: {words}")
    return problems


def _type_words(key: GuiKey) -> str:
    return {"bool": "true or false", "str": "a string", "int": "a whole number", "float": "a number"}[key.type]
