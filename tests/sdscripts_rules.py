"""How sd-scripts reads the files lorakit writes, restated from docs/sd-scripts.md (not from lorakit's code),
so rendered files can be checked against sd-scripts rather than against lorakit itself."""

from __future__ import annotations

import json
from pathlib import Path

import tomllib
from conftest import REPO, SHARED_DOCS

ARGS_FILE = SHARED_DOCS / "sd-scripts-args.json"
if not ARGS_FILE.is_file():  # a checkout without ../shared: the trimmed copy lorakit ships
    ARGS_FILE = REPO / "lorakit" / "data" / "sd-scripts-args" / "sdxl_train_network.json"
ARGUMENTS = {a["dest"]: a for a in json.loads(ARGS_FILE.read_text(encoding="utf-8"))["arguments"]}


def arguments_of(script: str) -> dict[str, dict]:
    """The parser of `script` (the shared facts cover sdxl_train_network.py; the other tables are lorakit's, derived
    from the real parsers by tools/derive_arguments.py and checked against them by the real-sd-scripts tests)."""
    if script == "sdxl_train_network.py":
        return ARGUMENTS
    table = REPO / "lorakit" / "data" / "sd-scripts-args" / f"{script.removesuffix('.py')}.json"
    return {a["dest"]: a for a in json.loads(table.read_text(encoding="utf-8"))["arguments"]}

# docs/sd-scripts.md §3: DreamBooth-style dataset config keys and their strict voluptuous types
SUBSET_KEYS = {
    "image_dir": str, "is_reg": bool, "alpha_mask": bool, "num_repeats": int, "class_tokens": str,
    "caption_extension": str, "cache_info": bool, "shuffle_caption": bool, "keep_tokens": int,
    "keep_tokens_separator": str, "secondary_separator": str, "caption_separator": str, "enable_wildcard": bool,
    "caption_prefix": str, "caption_suffix": str, "color_aug": bool, "flip_aug": bool, "random_crop": bool,
    "face_crop_aug_range": list, "token_warmup_min": int, "token_warmup_step": (int, float),
    "caption_dropout_rate": (int, float), "caption_tag_dropout_rate": (int, float),
    "caption_dropout_every_n_epochs": int, "custom_attributes": dict, "resize_interpolation": str,
}
DATASET_LEVEL_KEYS = {
    "resolution": (int, list), "batch_size": int, "enable_bucket": bool, "bucket_no_upscale": bool,
    "min_bucket_reso": int, "max_bucket_reso": int, "bucket_reso_steps": int, "network_multiplier": float,
    "validation_split": float, "validation_seed": int, "resize_interpolation": str,
}
GENERAL_KEYS = DATASET_LEVEL_KEYS | {k: t for k, t in SUBSET_KEYS.items() if k not in ("image_dir", "is_reg", "alpha_mask")}


def _type_ok(value, expected) -> bool:
    if expected is int or (isinstance(expected, tuple) and int in expected and not isinstance(value, float)):
        if isinstance(value, bool):
            return False
    return isinstance(value, expected)


def config_problems(text: str, script: str = "sdxl_train_network.py") -> list[str]:
    """Problems `script` would have with a --config_file: unknown keys, wrong TOML types, bad choices."""
    arguments = arguments_of(script)
    data = tomllib.loads(text)
    flat: dict = {}
    for key, value in data.items():  # sd-scripts flattens one level of tables
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    problems = []
    for key, value in flat.items():
        arg = arguments.get(key)
        if arg is None:
            problems.append(f"{key}: not an sd-scripts argument")
            continue
        if arg["action"] == "_StoreTrueAction":
            ok = isinstance(value, bool)
        elif arg["nargs"] == "*":
            ok = isinstance(value, list) or (key == "text_encoder_lr" and isinstance(value, (int, float)))
        elif arg["type"] == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif arg["type"] == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif arg["type"] == "int_or_float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            problems.append(f"{key}: {value!r} has the wrong TOML type for sd-scripts")
        elif arg["choices"] and value not in arg["choices"]:
            problems.append(f"{key}: {value!r} not in {arg['choices']}")
    if "resolution" in flat and (not isinstance(flat["resolution"], str) or flat["resolution"].count(",") != 1):
        problems.append("resolution must be the string 'W,H'")
    return problems


def dataset_problems(text: str) -> list[str]:
    """Problems sd-scripts' voluptuous schema would raise for a DreamBooth dataset config."""
    data = tomllib.loads(text)
    problems = [f"top level: extra key {k}" for k in data if k not in ("general", "datasets")]
    for key, value in data.get("general", {}).items():
        if key not in GENERAL_KEYS:
            problems.append(f"general: extra key {key}")
        elif not _type_ok(value, GENERAL_KEYS[key]):
            problems.append(f"general.{key}: wrong type {value!r}")
    for i, dataset in enumerate(data.get("datasets", [])):
        for key, value in dataset.items():
            if key == "subsets":
                continue
            if key not in GENERAL_KEYS:
                problems.append(f"datasets[{i}]: extra key {key}")
            elif not _type_ok(value, GENERAL_KEYS[key]):
                problems.append(f"datasets[{i}].{key}: wrong type {value!r}")
        for j, subset in enumerate(dataset.get("subsets", [])):
            if "image_dir" not in subset:
                problems.append(f"datasets[{i}].subsets[{j}]: image_dir is required")
            for key, value in subset.items():
                if key not in SUBSET_KEYS:
                    problems.append(f"datasets[{i}].subsets[{j}]: extra key {key}")
                elif not _type_ok(value, SUBSET_KEYS[key]):
                    problems.append(f"datasets[{i}].subsets[{j}].{key}: wrong type {value!r}")
    return problems


def read_plan_files(plan_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in plan_dir.iterdir() if p.is_file()}
