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
MODEL_FLAGS = ("v2", "v_parameterization", "sdxl", "flux1_checkbox", "sd3_checkbox", "hunyuan_image_checkbox",
               "anima_checkbox", "lumina_checkbox")
# The checkbox that makes the GUI train each family (docs/kohya-gui.md §2.3, §9.1); SD 1.5 has none ticked.
FAMILY_FLAG = {"sdxl": "sdxl", "flux1": "flux1_checkbox", "chroma": "flux1_checkbox", "sd15": None}
# lora_gui.train_model: the first ticked checkbox picks the script, none ticked train_network.py.
SCRIPT_ORDER = (("sdxl", "sdxl_train_network.py"), ("flux1_checkbox", "flux_train_network.py"),
                ("sd3_checkbox", "sd3_train_network.py"), ("hunyuan_image_checkbox", "hunyuan_image_train_network.py"),
                ("anima_checkbox", "anima_train_network.py"), ("lumina_checkbox", "lumina_train_network.py"))
OTHER_FAMILY_TYPES = ("Flux1", "Flux1 OFT", "HunyuanImage-2.1", "Anima", "Lumina")


def launched_script(data: dict) -> str:
    """The script the GUI's Train button runs for a loaded config."""
    return next((script for flag, script in SCRIPT_ORDER if data.get(flag)), "train_network.py")


def family_keys(family: str) -> set[str]:
    """The fields a GUI needs to express the family: FLUX.1's checkbox (GUI v25 on), Chroma's model type (master)."""
    flag = FAMILY_FLAG[family]
    return ({flag} if flag else set()) | ({"model_type"} if family == "chroma" else set())
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


def export_problems(raw: bytes, version: str, family: str = "sdxl") -> list[str]:
    """Everything docs/kohya-gui.md §2 and §9 ask of an exported LoRA config of `family`, for GUI `version`."""
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
    problems += _family_problems(data, family)
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


def _family_problems(data: dict, family: str) -> list[str]:
    """The GUI loads the config as `family` and its Train button would start that family's script."""
    flag = FAMILY_FLAG[family]
    problems = [f"{name} is not {name == flag}".lower() for name in MODEL_FLAGS
                if name in data and data[name] is not (name == flag)]
    if flag and data.get(flag) is not True:
        problems.append(f"{flag} is missing")
    script = {"sdxl": "sdxl_train_network.py", "flux1": "flux_train_network.py", "chroma": "flux_train_network.py",
              "sd15": "train_network.py"}[family]
    if launched_script(data) != script:
        problems.append(f"the GUI would launch {launched_script(data)}, not {script}")
    kind = data.get("LoRA_type")
    if family in ("flux1", "chroma"):
        if kind not in ("Flux1", "Flux1 OFT") and "LyCORIS" not in str(kind):
            problems.append(f"LoRA_type {kind!r} is refused with FLUX.1 ticked")
        if "model_type" in data and data["model_type"] != ("chroma" if family == "chroma" else "flux"):
            problems.append(f"model_type {data['model_type']!r} is not {family}'s")
        for key in ("ae", "t5xxl", *(("clip_l",) if family == "flux1" else ())):
            if not data.get(key):
                problems.append(f"{key} is empty: flux_train_network.py needs the file")
        if family == "chroma" and (data.get("guidance_scale"), data.get("apply_t5_attn_mask"),
                                   data.get("timestep_sampling")) != (0, True, "sigmoid"):
            problems.append("a Chroma config loaded into a GUI showing 'flux' gets guidance 0, the T5 mask and "
                            "sigmoid sampling from the switch; the file must say the same")
    elif kind in OTHER_FAMILY_TYPES:
        problems.append(f"LoRA_type {kind!r} is a network of another model family")
    elif kind in ("Kohya LoHa", "Kohya LoKr") and family != "sdxl":
        problems.append(f"LoRA_type {kind!r} is refused without SDXL ticked")
    return problems
