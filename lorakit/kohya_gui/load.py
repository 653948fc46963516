"""Read a Kohya SS GUI LoRA config the way the GUI's "Load" does (docs/kohya-gui.md §4.1, §4.2).

The GUI reads the JSON in UTF-8 (a byte-order mark makes it fail), applies its load-time migrations
(`update_my_data`: numbers stored as strings, `xformers` as a bool, renamed keys), then takes every
non-null value it knows and silently ignores the rest. A key that is missing keeps what the GUI shows;
lorakit assumes a fresh GUI, i.e. the key table's defaults, and says so in a finding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.config.schema import SECRET_KEYS
from lorakit.errors import ConfigError, UserError
from lorakit.findings import Finding, finding
from lorakit.kohya_gui.keys import foreign_tab_keys, gui_keys, legacy_keys, type_ok
from lorakit.util.reading import MAX_CONFIG_BYTES, FileTooLarge, parse_json, read_bytes_limited

GATE = 2
BOM = b"\xef\xbb\xbf"

# update_my_data's conversions: keys → (converter, value when the text does not parse)
_INT_ZERO = ("clip_skip", "epoch", "gradient_accumulation_steps", "keep_tokens", "lr_warmup",
             "max_data_loader_n_workers", "max_train_epochs", "save_every_n_epochs", "seed", "max_train_steps",
             "caption_dropout_every_n_epochs")
CONVERSIONS: dict[str, tuple[type, Any]] = {
    **{key: (int, 0) for key in _INT_ZERO},
    "lr_scheduler_num_cycles": (int, 1),
    "max_token_length": (int, 75),
    **{key: (float, 0.0) for key in ("adaptive_noise_scale", "noise_offset", "learning_rate", "text_encoder_lr", "unet_lr")},
    "lr_scheduler_power": (float, 1.0),
}


@dataclass
class GuiConfig:
    """A GUI config as the GUI would hold it after loading: every LoRA-tab key with a value."""

    path: Path
    values: dict[str, Any]
    given: set[str]  # keys the file itself sets (after migrations)
    findings: list[Finding] = field(default_factory=list)


def read_gui_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or a UserError saying exactly why the GUI could not load it either."""
    try:
        raw = read_bytes_limited(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise UserError(f"cannot read the Kohya GUI config {path}: {exc.strerror}.",
                        fix="give the path of a JSON file saved by the GUI's LoRA tab") from None
    except FileTooLarge as exc:
        raise UserError(f"{path} is not a Kohya GUI config: {exc} (a GUI config is a few KiB).",
                        fix="give the path of a JSON file saved by the GUI's LoRA tab") from None
    if raw.startswith(BOM):
        raise UserError(
            f"{path} starts with a UTF-8 byte-order mark (BOM); the Kohya GUI cannot load such a file either "
            "(its json.load fails on it).",
            fix="save the file as UTF-8 without BOM (in Notepad: 'UTF-8', not 'UTF-8 with BOM')")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); the GUI reads configs as UTF-8.",
                        fix="save the file as UTF-8") from None
    try:
        data = parse_json(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                        fix="fix the JSON there, or save the config again from the GUI") from None
    except ValueError as exc:
        fix = "write a number instead" if "JSON allows" in str(exc) else "give the path of a JSON file saved by the GUI's LoRA tab"
        raise UserError(f"{path} is not valid JSON: {exc}.", fix=fix) from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not an object; a GUI config is one flat "
                        "object of key: value pairs.", fix="give a config saved by the GUI's LoRA tab")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (the GUI's own save never writes it)")


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """update_my_data: returns the migrated config, the conversions made, and the values that did not parse."""
    data = dict(data)
    converted: list[str] = []
    unparsed: list[str] = []
    if "optimizer" not in data:
        data["optimizer"] = "AdamW8bit" if data.get("use_8bit_adam", False) else "AdamW"
        if "use_8bit_adam" in data:
            converted.append(f"use_8bit_adam {data['use_8bit_adam']!r} → optimizer {data['optimizer']!r}")
    for key, (kind, fallback) in CONVERSIONS.items():
        value = data.get(key)
        if value is None or isinstance(value, (list, dict)):
            continue  # nulls and containers are reported as errors afterwards
        try:
            new = kind(value)
        except ValueError:
            new = fallback
            (converted if value == "" else unparsed).append(f"{key} {value!r} → {fallback!r}")
        else:
            if isinstance(value, str):
                converted.append(f"{key} {value!r} → {new!r}")
        data[key] = new
    if data.get("LoRA_type") == "LoCon":
        data["LoRA_type"] = "LyCORIS/LoCon"
        converted.append("LoRA_type 'LoCon' → 'LyCORIS/LoCon'")
    if "save_model_as" in data and data.get("LoRA_type") and data["save_model_as"] not in ("safetensors", "ckpt"):
        converted.append(f"save_model_as {data['save_model_as']!r} → 'safetensors'")
        data["save_model_as"] = "safetensors"
    if isinstance(data.get("xformers"), bool):
        data["xformers"] = "xformers" if data["xformers"] else "none"
        converted.append(f"xformers {data['xformers'] == 'xformers'} → {data['xformers']!r}")
    if "use_wandb" in data:
        if data["use_wandb"] == "True":
            data["log_with"] = "wandb"
        data.pop("use_wandb")
    if data.get("lora_network_weights") is not None:
        data["network_weights"] = data.pop("lora_network_weights")
    return data, converted, unparsed


def load_gui_config(path: Path) -> GuiConfig:
    """Read, migrate and check a GUI config; missing keys take a fresh GUI's defaults."""
    raw = read_gui_json(path)
    secrets = _drop_secrets(raw)
    data, converted, unparsed = migrate(raw)
    keys = gui_keys()
    problems = [f"{k} is null: the GUI would keep whatever it shows for it" for k, v in data.items()
                if v is None and k in keys]
    problems += [f"{k} = {json.dumps(v)} is not {_type_words(keys[k].type)}" for k, v in data.items()
                 if k in keys and v is not None and not type_ok(keys[k], v)]
    if problems:
        error = ConfigError(problems, context=f"the Kohya GUI config {path}")
        error.fix = "give each key a value of its type (or remove it), e.g. save the config again from the GUI"
        raise error
    given = {k for k in data if k in keys}
    values = {name: (_as_type(key.type, data[name]) if name in given else key.default) for name, key in keys.items()}
    return GuiConfig(path=path, values=values, given=given,
                     findings=_load_findings(raw, data, given, converted, unparsed) + secret_findings(secrets))


def _drop_secrets(raw: dict[str, Any]) -> list[str]:
    """Empty the secret fields in place, as the GUI shows them when not filled in; returns the ones that held something."""
    found = [key for key in SECRET_KEYS if raw.get(key) not in (None, "")]
    for key in found:
        raw[key] = ""
    return found


def secret_findings(keys: list[str]) -> list[Finding]:
    """The warning for secrets lorakit left out of an import; it names the keys, never their values."""
    if not keys:
        return []
    names = " and ".join(keys)
    variables = " and ".join(SECRET_KEYS[k] for k in keys)
    return [finding("gui/secret-dropped", "warning", GATE,
                    f"the GUI config holds {names}; lorakit never writes secrets into a plan or a preset, so they "
                    "were left out (their values are not shown here either).",
                    f"set {variables} in the environment of `lorakit launch`: the trainer inherits it")]


def _as_type(kind: str, value: Any) -> Any:
    if kind == "int":
        return int(value)
    return value


def _type_words(kind: str) -> str:
    return {"bool": "true or false", "str": "a string", "int": "a whole number", "float": "a number"}[kind]


def _examples(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _load_findings(raw: dict, data: dict, given: set[str], converted: list[str], unparsed: list[str]) -> list[Finding]:
    keys, legacy, foreign = gui_keys(), legacy_keys(), foreign_tab_keys()
    found: list[Finding] = []
    missing = sorted(set(keys) - given - {"save_as_bool"})
    if missing:
        sdxl = [k for k in missing if keys[k].sdxl_lora]
        found.append(finding(
            "gui/missing-keys", "warning", GATE,
            f"the GUI config leaves out {len(missing)} of the GUI's {len(keys)} LoRA keys, {len(sdxl)} of them read by "
            f"SDXL runs ({_examples(sdxl)}); the GUI keeps whatever it shows for those, and lorakit assumed a fresh "
            "GUI's defaults.",
            "check those values in the plan; save the config again from a current GUI to get every key"))
    unknown = sorted(k for k in raw if k not in keys and k not in legacy and k not in foreign)
    if unknown:
        found.append(finding("gui/unknown-keys", "warning", GATE,
                             f"the GUI ignores these keys without a word: {_examples(unknown)}.",
                             "remove them, or check for a misspelt key name"))
    old = sorted(k for k in raw if k in legacy)
    if old:
        found.append(finding("gui/legacy-keys", "info", GATE,
                             "keys of older GUI versions: " + "; ".join(f"{k}: {legacy[k]}" for k in old) + ".",
                             "nothing to do; a current GUI leaves them out when it saves"))
    other = sorted(k for k in raw if k in foreign)
    if other:
        found.append(finding("gui/other-tab-keys", "info", GATE,
                             "keys of other GUI tabs, which the LoRA tab ignores: "
                             + ", ".join(f"{k} ({'/'.join(foreign[k])})" for k in other) + ".",
                             "nothing to do, unless this config was meant for another tab"))
    if converted:
        found.append(finding("gui/legacy-values", "info", GATE,
                             "the GUI converts these old value forms on load, and so did lorakit: "
                             + _examples(converted, 12) + ".", None))
    if unparsed:
        found.append(finding("gui/unparsable-values", "warning", GATE,
                             "these values do not parse as numbers; the GUI silently replaces them: "
                             + "; ".join(unparsed) + ".", "write the numbers you mean"))
    return found
