"""The Kohya SS GUI's rules for a LoRA config, restated from docs/kohya-gui.md §2, §3, §4 and the key table
(not from lorakit's code), so exports are checked against the GUI rather than against lorakit itself."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from conftest import REPO, SHARED_DOCS

KEYS_FILE = SHARED_DOCS / "kohya-gui-lora-keys.json"
if not KEYS_FILE.is_file():  # a checkout without ../shared: the trimmed copy lorakit ships
    KEYS_FILE = REPO / "lorakit" / "data" / "kohya-gui-lora-keys.json"
TABLE = json.loads(KEYS_FILE.read_text(encoding="utf-8"))
KEYS = TABLE["keys"]
RELEASES = {"master": None, "v26": "v26.0.0", "v25": "v25.2.2", "v24": "v24.1.7"}
MODEL_FLAGS_OFF = ("v2", "v_parameterization", "flux1_checkbox", "sd3_checkbox", "hunyuan_image_checkbox",
                   "anima_checkbox", "lumina_checkbox")
KV_STRING = re.compile(r"^(\S+=\S+)( \S+=\S+)*$|^$")
ZERO_DROPPED_DEFAULTS = ("max_grad_norm", "prior_loss_weight", "huber_c", "huber_scale", "lr_scheduler_power")
PATH_KEYS = ("pretrained_model_name_or_path", "dataset_config", "train_data_dir", "output_dir", "logging_dir")


def version_keys(version: str) -> set[str]:
    release = RELEASES[version]
    return set(KEYS) if release is None else set(TABLE["keys_by_version"][release])


def _type_ok(kind: str, value) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return kind == "float" or isinstance(value, int)


def export_problems(raw: bytes, version: str) -> list[str]:
    """Everything docs/kohya-gui.md §2 asks of an exported SDXL LoRA config, for GUI `version`."""
    problems = []
    if raw.startswith(b"\xef\xbb\xbf"):
        problems.append("starts with a BOM")
    data = json.loads(raw.decode("utf-8"), parse_constant=lambda c: problems.append(f"{c} in JSON"))
    if list(data) != sorted(data):
        problems.append("keys are not sorted as the GUI saves them")
    missing = version_keys(version) - set(data)
    extra = set(data) - version_keys(version)
    problems += [f"missing key {k}" for k in sorted(missing)] + [f"key {k} is not saved by GUI {version}" for k in sorted(extra)]
    for key, value in data.items():
        spec = KEYS.get(key)
        if spec is None:
            continue
        if value is None:
            problems.append(f"{key} is null")
            continue
        if not _type_ok(spec["type"], value):
            problems.append(f"{key} = {value!r} is not {spec['type']}")
            continue
        if isinstance(value, float) and value.is_integer():
            problems.append(f"{key} = {value!r}: the GUI saves whole numbers as ints")
        if spec.get("choices") is not None and not spec.get("custom_allowed", True) and value not in spec["choices"]:
            problems.append(f"{key} = {value!r} not in {spec['choices']}")
        if spec["type"] in ("int", "float"):
            high = spec.get("max")
            if key in ("network_dim", "conv_dim") and data.get("LoRA_type") in (
                    "LyCORIS/LoHa", "LyCORIS/LoKr", "LyCORIS/BOFT", "LyCORIS/Diag-OFT"):
                high = 100000
            if spec.get("min") is not None and value < spec["min"]:
                problems.append(f"{key} = {value} below {spec['min']}")
            if high is not None and value > high:
                problems.append(f"{key} = {value} above {high}")
    if data.get("sdxl") is not True:
        problems.append("sdxl is not true")
    problems += [f"{flag} is not false" for flag in MODEL_FLAGS_OFF if flag in data and data[flag] is not False]
    if not re.fullmatch(r"[1-9]\d*,[1-9]\d*", str(data.get("max_resolution"))):
        problems.append(f"max_resolution {data.get('max_resolution')!r} is not 'W,H'")
    for key in ("optimizer_args", "lr_scheduler_args"):
        if not KV_STRING.match(str(data.get(key))):
            problems.append(f"{key} {data.get(key)!r} is not 'k=v k=v'")
    if data.get("max_train_steps") != 0 or data.get("max_train_epochs", 0) < 1 or data.get("epoch") != data.get("max_train_epochs"):
        problems.append("epochs are not written as max_train_epochs = epoch = N with max_train_steps 0")
    for key in ZERO_DROPPED_DEFAULTS:
        if key in data and data[key] == 0:
            problems.append(f"{key} is 0, which the GUI drops from its TOML")
    for key in PATH_KEYS:
        value = data.get(key, "")
        if key != "pretrained_model_name_or_path" and not Path(value).is_absolute():
            problems.append(f"{key} {value!r} is not an absolute path")
    for key in ("text_encoder_lr", "unet_lr", "learning_rate"):
        if key not in data:
            problems.append(f"{key} is not written")
    if "t5xxl_lr" in version_keys(version) and data.get("t5xxl_lr") != 0:
        problems.append("t5xxl_lr is not 0")
    return problems
