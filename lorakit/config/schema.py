"""Every key a preset or `--set` may use: sd-scripts' own arguments plus a few lorakit keys.

Keys are sd-scripts argument names (`network_dim`, `train_batch_size`, ...), typed from the argument
table of the family's training script at the pinned commit (`sdxl_train_network.py` for SDXL,
`flux_train_network.py` for FLUX.1 and Chroma, `train_network.py` for SD 1.5), so each family has its
own keys. Each key also says where it is written:
`config` (config.toml, read through `--config_file`), `dataset` (dataset.toml, which beats the command
line in sd-scripts) or `lorakit` (used for planning, never given to sd-scripts).
"""

from __future__ import annotations

import difflib
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lorakit.config.family import DEFAULT_FAMILY, FAMILIES, family_named
from lorakit.config.limits import MAX_RESOLUTION, MAXIMUMS, MINIMUMS
from lorakit.util import tomlio
from lorakit.util.resources import sd_scripts_arguments

Kind = Literal[
    "bool", "int", "float", "str", "int_or_float", "str_list", "float_list", "resolution", "float_pair"
]
Target = Literal["config", "dataset", "lorakit"]

# Keys sd-scripts reads from dataset.toml ([general] of the dataset config, docs/sd-scripts.md §3). Written there
# because anything in the dataset config beats the command line and --config_file.
DATASET_KEYS = frozenset(
    {
        "resolution", "enable_bucket", "bucket_no_upscale", "min_bucket_reso", "max_bucket_reso",
        "bucket_reso_steps", "validation_split", "validation_seed", "resize_interpolation",
        "caption_extension", "cache_info", "shuffle_caption", "keep_tokens", "keep_tokens_separator",
        "secondary_separator", "caption_separator", "enable_wildcard", "caption_prefix", "caption_suffix",
        "color_aug", "flip_aug", "random_crop", "face_crop_aug_range", "token_warmup_min",
        "token_warmup_step", "caption_dropout_rate", "caption_tag_dropout_rate",
        "caption_dropout_every_n_epochs", "alpha_mask",
    }
)
# Dataset keys that sd-scripts accepts only per subset, never in [general].
SUBSET_ONLY_KEYS = frozenset({"alpha_mask"})

# Keys lorakit writes itself from the plan folder and the dataset; setting them would break the plan.
RESERVED_KEYS = {
    "config_file": "lorakit passes --config_file itself",
    "output_config": "it makes sd-scripts write a config and exit instead of training",
    "dataset_config": "lorakit writes dataset.toml from DATASET and --reg",
    "train_data_dir": "give the dataset folder as DATASET",
    "reg_data_dir": "give regularisation images with --reg DIR",
    "in_json": "lorakit plans DreamBooth-style (folder) datasets only",
    "dataset_class": "lorakit plans DreamBooth-style (folder) datasets only",
    "conditioning_data_dir": "ControlNet datasets are not planned by lorakit",
    "caption_extention": "misspelled legacy option; use caption_extension",
    "family": "the base preset picks the family (--preset flux1-dev, chroma or sd15; sdxl-base is the default)",
}

# Secrets sd-scripts accepts as arguments. lorakit never stores them (a plan folder, a preset and a GUI export
# are files people copy and share) and never prints them: the trainer inherits the environment, where
# huggingface_hub and wandb read these variables themselves (docs/sd-scripts.md §2).
SECRET_KEYS = {
    "huggingface_token": "HF_TOKEN",
    "wandb_api_key": "WANDB_API_KEY",
}


def secret_refusal(key: str) -> str:
    """Why a secret key is refused and where its value goes instead; never mentions the value."""
    return (f"{key} is a secret and lorakit never writes it into a plan, a preset or an export; "
            f"set {SECRET_KEYS[key]} in the environment of `lorakit launch` instead (the trainer inherits it)")

# sd-scripts arguments that name a local file or folder. sd-scripts opens each as given, so a relative one is
# relative to its working directory: the plan folder (lorakit starts the trainer there). lorakit makes the
# user's values absolute at plan time and writes the plan folder's own files relative to it (lorakit.plan.paths).
# The base model and the VAE are not here: lorakit.models resolves those (a value may be a Hub id).
PATH_KEYS = frozenset({
    "output_dir", "logging_dir", "sample_prompts", "network_weights", "base_weights", "resume",
    "tokenizer_cache_dir", "console_log_file", "log_tracker_config", "metadata_thumbnail",
    "offload_optimizer_nvme_path", "offload_param_nvme_path", "dataset_config",
})


SPECIAL_KINDS: dict[str, Kind] = {
    "resolution": "resolution",
    "face_crop_aug_range": "float_pair",
}


@dataclass(frozen=True)
class KeySpec:
    name: str
    kind: Kind
    target: Target
    default: Any = None
    choices: tuple | None = None
    help: str = ""

    @property
    def type_name(self) -> str:
        return {
            "bool": "true/false",
            "int": "an integer",
            "float": "a number",
            "str": "text",
            "int_or_float": "an integer (steps) or a fraction below 1 (ratio of total steps)",
            "str_list": "a list of text items (space separated, or a TOML array)",
            "float_list": "a list of numbers (space separated, or a TOML array)",
            "resolution": "a resolution like 1024 or 1024,1024",
            "float_pair": "two numbers like 0.3,0.7",
        }[self.kind]

    def info(self) -> KeyInfo:
        return KeyInfo(key=self.name, type=self.kind, written_to=self.target, default=self.default,
                       choices=None if self.choices is None else list(self.choices), help=self.help)


class KeyInfo(BaseModel):
    """`lorakit keys --json`: one key --set accepts, its type and where it is written."""

    model_config = ConfigDict(extra="forbid")

    key: str
    type: Kind
    written_to: Target
    default: Any
    choices: list[Any] | None
    help: str


# lorakit's own keys: planning inputs that sd-scripts never sees.
LORAKIT_KEYS: tuple[KeySpec, ...] = (
    KeySpec("family", "str", "lorakit", DEFAULT_FAMILY, tuple(FAMILIES),
            "the model family, which picks the training script; set by the base preset (--preset flux1-dev)"),
    KeySpec("task", "str", "lorakit", "general", ("general", "character", "style", "object"),
            "what the LoRA teaches; picks sample prompts and rank guidance"),
    KeySpec("intensity", "str", "lorakit", "standard", ("quick", "standard", "thorough"),
            "how long the preset trains (docs/recommendations.md §2)"),
    KeySpec("model_flavour", "str", "lorakit", "sdxl", ("sdxl", "pony"),
            "the family of the base checkpoint (Pony needs its own checkpoint and tags)"),
    KeySpec("generation_clip_skip", "int", "lorakit", None, None,
            "clip skip to use when generating with the LoRA; sd-scripts ignores clip skip for SDXL training"),
    KeySpec("num_processes", "int", "lorakit", 1, None,
            "training processes (GPUs) in all; passed to accelerate and used in the step math"),
    KeySpec("num_machines", "int", "lorakit", 1, None, "machines taking part (accelerate --num_machines)"),
    KeySpec("machine_rank", "int", "lorakit", 0, None, "this machine's rank in a multi-machine run"),
    KeySpec("main_process_ip", "str", "lorakit", None, None, "address of machine 0 in a multi-machine run"),
    KeySpec("main_process_port", "int", "lorakit", None, None, "port of machine 0 in a multi-machine run"),
    KeySpec("gpu_ids", "str", "lorakit", None, None, "GPUs accelerate may use, e.g. 0,1"),
    KeySpec("sample_prompt_templates", "str_list", "lorakit", None, None,
            "sample prompts; {tokens} is replaced by each subset's class tokens"),
    KeySpec("sample_prompt_lines", "str_list", "lorakit", None, None,
            "sample prompt lines written as they are, options included (sd-scripts' .txt format); "
            "replaces the templates and every sample_* option below"),
    KeySpec("sample_prompt_prefix", "str", "lorakit", "", None, "text put before every sample prompt"),
    KeySpec("sample_negative_prompt", "str", "lorakit", "", None, "negative prompt of every sample"),
    KeySpec("sample_steps", "int", "lorakit", 28, None, "denoising steps per sample image"),
    KeySpec("sample_cfg", "float", "lorakit", 7.0, None, "CFG scale of the sample images"),
    KeySpec("sample_seed", "int", "lorakit", 1, None, "seed of the first sample prompt; the next ones count up"),
    KeySpec("target_steps_min", "int", "lorakit", 1500, None, "fewest total steps the plan aims for"),
    KeySpec("target_steps_max", "int", "lorakit", 3000, None, "most total steps the plan aims for"),
    KeySpec("steps_per_image_min", "int", "lorakit", 100, None,
            "fewest times each training image should be seen (repeats x epochs)"),
    KeySpec("steps_per_image_max", "int", "lorakit", 400, None,
            "most times each training image should be seen (repeats x epochs)"),
    KeySpec("lr_steps_min", "float", "lorakit", None, None,
            "lowest learning rate x steps the preset intends; below a third of it the LoRA learns nothing"),
    KeySpec("lr_steps_max", "float", "lorakit", None, None,
            "highest learning rate x steps the preset intends; above three times it the LoRA fries"),
    KeySpec("images_min", "int", "lorakit", 50, None, "fewest training images the seeds advise"),
    KeySpec("images_max", "int", "lorakit", 100, None, "most training images the seeds advise"),
)


_ARGPARSE_TYPES: dict[str, Kind] = {"int": "int", "float": "float", "int_or_float": "int_or_float"}


def _kind_from_argument(arg: dict) -> Kind:
    name = arg["dest"]
    if name in SPECIAL_KINDS:
        return SPECIAL_KINDS[name]
    if arg["action"] == "_StoreTrueAction":
        return "bool"
    if arg["nargs"] == "*":
        return "float_list" if arg["type"] == "float" else "str_list"
    return _ARGPARSE_TYPES.get(arg["type"], "str")


@cache
def registry(family: str = DEFAULT_FAMILY) -> dict[str, KeySpec]:
    """The keys of one family: its script's arguments and lorakit's own."""
    keys: dict[str, KeySpec] = {}
    for arg in sd_scripts_arguments(family_named(family).script)["arguments"]:
        name = arg["dest"]
        keys[name] = KeySpec(
            name=name,
            kind=_kind_from_argument(arg),
            target="dataset" if name in DATASET_KEYS else "config",
            default=arg["default"],
            choices=tuple(arg["choices"]) if arg["choices"] else None,
            help=arg.get("help_en") or "",
        )
    for spec in LORAKIT_KEYS:
        keys[spec.name] = spec
    return keys


@cache
def any_family() -> dict[str, KeySpec]:
    """The keys of every family, for files that may hold values for several (a preset); the first family's spec wins."""
    keys: dict[str, KeySpec] = {}
    for family in reversed(FAMILIES):
        keys.update(registry(family))
    return keys


def settable_keys(pattern: str = "", family: str = DEFAULT_FAMILY) -> list[KeySpec]:
    """The keys `--set` accepts whose name contains `pattern` (the reserved ones are lorakit's own; secrets come from the environment)."""
    return [spec for spec in registry(family).values()
            if pattern in spec.name and spec.name not in RESERVED_KEYS and spec.name not in SECRET_KEYS]


class ValueProblem(ValueError):
    """A key or value that does not fit the schema; the message names the key and what it expects."""


def spec_for(key: str, family: str | None = DEFAULT_FAMILY) -> KeySpec:
    """The spec of `key` in `family` (None: in any family); unknown keys raise ValueProblem with a did-you-mean hint."""
    keys = any_family() if family is None else registry(family)
    if key in keys:
        return keys[key]
    raise ValueProblem(unknown_key_message(key, family))


def unknown_key_message(key: str, family: str | None = DEFAULT_FAMILY) -> str:
    if family is None:
        close = difflib.get_close_matches(key, list(any_family()), n=3, cutoff=0.6)
        where = "an sd-scripts argument of any training script lorakit plans"
    else:
        close = difflib.get_close_matches(key, list(registry(family)), n=3, cutoff=0.6)
        others = [name for name in FAMILIES if name != family and key in registry(name)]
        where = f"an sd-scripts argument of {family_named(family).script}"
        if others:
            return (f"'{key}' is not an argument of {family_named(family).script}, which trains "
                    f"{family_named(family).title}; only {', '.join(family_named(o).title for o in others)} "
                    f"plans have it (`lorakit keys --family {family}` lists this family's keys).")
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    listing = "lorakit keys" if family in (None, DEFAULT_FAMILY) else f"lorakit keys --family {family}"
    return f"unknown key '{key}': it is neither {where} nor a lorakit key.{hint} (`{listing}` lists them all.)"


def _problem(spec: KeySpec, raw: Any, why: str = "") -> ValueProblem:
    detail = f" ({why})" if why else ""
    return ValueProblem(f"{spec.name} = {raw!r} is not {spec.type_name}{detail}")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_text(spec: KeySpec, text: str) -> Any:
    """Parse a `--set KEY=VALUE` string with the key's type. `none` (or `null`) unsets a key."""
    if text.strip().lower() in ("none", "null"):
        return None
    return _TEXT_PARSERS.get(spec.kind, _other_text)(spec, text)


def _bool_text(spec: KeySpec, text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _problem(spec, text)


def _list_text(spec: KeySpec, text: str) -> list:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = tomlio.loads(f"v = {stripped}")["v"]
        except tomlio.TOMLDecodeError as exc:
            raise _problem(spec, text, f"not a TOML array: {exc}") from None
    else:
        try:
            items = shlex.split(stripped)
        except ValueError as exc:
            raise _problem(spec, text, str(exc)) from None
    return coerce(spec, items)


def _number_text(spec: KeySpec, text: str) -> int | float:
    stripped = text.strip()
    try:
        number = int(stripped) if spec.kind == "int" else float(stripped)
    except ValueError:
        raise _problem(spec, text) from None
    return coerce(spec, number)


def _int_or_float_text(spec: KeySpec, text: str) -> int | float:
    # Same rules as sd-scripts' own int_or_float: "10" steps, "0.1" ratio, "5%" ratio.
    text = text.strip()
    try:
        if text.endswith("%"):
            number: int | float = float(text[:-1]) / 100.0
        else:
            number = float(text)
            number = int(text) if number >= 1 else number
    except ValueError:
        raise _problem(spec, text) from None
    return coerce(spec, number)


def _str_text(spec: KeySpec, text: str) -> str:
    return coerce(spec, text)  # as written: spaces may matter in a caption or a prompt


def _other_text(spec: KeySpec, text: str) -> Any:
    return coerce(spec, text.strip())


_TEXT_PARSERS: dict[Kind, Callable[[KeySpec, str], Any]] = {
    "bool": _bool_text, "str_list": _list_text, "float_list": _list_text, "int": _number_text,
    "float": _number_text, "int_or_float": _int_or_float_text, "str": _str_text,
}


def coerce(spec: KeySpec, raw: Any) -> Any:
    """Check a value (from TOML or parsed text) against its key and return it in canonical form."""
    if raw is None:
        return None
    if spec.kind == "float_list" and _is_number(raw):
        raw = [raw]  # sd-scripts tolerates a scalar text_encoder_lr from TOML
    value = _COERCERS[spec.kind](spec, raw)
    _check_finite(spec, raw, value)
    _check_minimum(spec, raw, value)
    _check_maximum(spec, raw, value)
    _check_choice(spec, raw, value)
    return value


def _is_number(raw: Any) -> bool:
    return isinstance(raw, (int, float)) and not isinstance(raw, bool)


def _bool(spec: KeySpec, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise _problem(spec, raw)
    return raw


def _int(spec: KeySpec, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _problem(spec, raw)
    return raw


def _float(spec: KeySpec, raw: Any) -> float:
    if not _is_number(raw):
        raise _problem(spec, raw)
    return float(raw)


def _int_or_float(spec: KeySpec, raw: Any) -> int | float:
    if not _is_number(raw):
        raise _problem(spec, raw)
    if isinstance(raw, float) and raw > 1:
        raise _problem(spec, raw, "a fraction must be at most 1; write whole steps as an integer")
    return raw


def _str(spec: KeySpec, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _problem(spec, raw)
    return raw


def _str_list(spec: KeySpec, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise _problem(spec, raw, "write a TOML array of strings")
    return list(raw)


def _float_list(spec: KeySpec, raw: Any) -> list[float]:
    if not isinstance(raw, list) or not all(_is_number(x) or isinstance(x, str) for x in raw):
        raise _problem(spec, raw)
    try:
        return [float(x) for x in raw]
    except ValueError:
        raise _problem(spec, raw) from None


def _check_choice(spec: KeySpec, raw: Any, value: Any) -> None:
    if spec.choices and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices if c is not None)
        raise ValueProblem(f"{spec.name} = {raw!r} is not one of: {allowed}")


def _check_minimum(spec: KeySpec, raw: Any, value: Any) -> None:
    if spec.name not in MINIMUMS:
        return
    low, inclusive = MINIMUMS[spec.name]
    numbers = value if isinstance(value, list) else [value]
    if any(isinstance(n, (int, float)) and (n < low or (n == low and not inclusive)) for n in numbers):
        bound = f"at least {low:g}" if inclusive else f"above {low:g}"
        raise ValueProblem(f"{spec.name} = {raw!r} must be {bound}")


def _check_finite(spec: KeySpec, raw: Any, value: Any) -> None:
    """NaN and infinity pass every comparison sd-scripts makes and train nothing (a NaN learning rate gives NaN loss)."""
    numbers = value if isinstance(value, list) else [value]
    if any(isinstance(n, float) and not math.isfinite(n) for n in numbers):
        raise ValueProblem(f"{spec.name} = {raw!r} is not a finite number; write an ordinary number")


def _check_maximum(spec: KeySpec, raw: Any, value: Any) -> None:
    high = MAXIMUMS.get(spec.name)
    if high is None:
        return
    numbers = value if isinstance(value, list) else [value]
    if any(isinstance(n, (int, float)) and not isinstance(n, bool) and n > high for n in numbers):
        raise ValueProblem(f"{spec.name} = {raw!r} is above lorakit's limit of {high:,} (see README, Limits)")


def normalize_resolution(spec: KeySpec, raw: Any) -> str:
    """sd-scripts wants resolution as the string "W,H"; accept 1024, "1024", "1024x768", [1024, 768]."""
    if isinstance(raw, bool):
        raise _problem(spec, raw)
    if isinstance(raw, int):
        parts: list[Any] = [raw, raw]
    elif isinstance(raw, str):
        pieces = raw.replace("x", ",").replace("X", ",").split(",")
        parts = [p.strip() for p in pieces]
        if len(parts) == 1:
            parts = parts * 2
    elif isinstance(raw, list):
        parts = list(raw)
    else:
        raise _problem(spec, raw)
    try:
        width, height = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise _problem(spec, raw) from None
    if width <= 0 or height <= 0:
        raise _problem(spec, raw, "both sides must be positive")
    if max(width, height) > MAX_RESOLUTION:
        raise ValueProblem(f"{spec.name} = {raw!r} is above lorakit's limit of {MAX_RESOLUTION} px a side (SDXL trains at 1024)")
    return f"{width},{height}"


def _float_pair(spec: KeySpec, raw: Any) -> list[float]:
    items = raw.split(",") if isinstance(raw, str) else raw
    try:
        low, high = (float(x) for x in items)
    except (TypeError, ValueError):
        raise _problem(spec, raw) from None
    if low > high:
        raise _problem(spec, raw, "the first number must not exceed the second")
    return [low, high]


_COERCERS: dict[Kind, Callable[[KeySpec, Any], Any]] = {
    "bool": _bool, "int": _int, "float": _float, "int_or_float": _int_or_float, "str": _str, "str_list": _str_list,
    "float_list": _float_list, "resolution": normalize_resolution, "float_pair": _float_pair,
}


def resolution_tuple(value: str) -> tuple[int, int]:
    width, height = value.split(",")
    return int(width), int(height)
