"""sd-scripts arguments as sd-scripts acts on them, to tell whether two runs train the same thing.

The GUI and lorakit spell some arguments differently for the same effect: the GUI writes
`text_encoder_lr = [x, x]` where lorakit writes `[x]` (networks.lora uses only the first),
`max_token_length = 75` where lorakit writes nothing, `max_grad_norm = 1.0` where lorakit leaves
sd-scripts' default. `effective` maps an argument dict to one canonical form per behaviour.
"""

from __future__ import annotations

from typing import Any

from lorakit.config.family import DEFAULT_FAMILY, family_named
from lorakit.config.schema import KeySpec, ValueProblem, coerce, normalize_resolution, parse_text, registry

# Arguments that only matter together with another one: dropped when that one is off.
_ONLY_WITH = {
    "dynamo_backend": lambda a: a.get("torch_compile"),
    "wandb_run_name": lambda a: a.get("log_with") in ("wandb", "all"),
    "wandb_api_key": lambda a: a.get("log_with") in ("wandb", "all"),
    "huber_c": lambda a: a.get("loss_type") in ("huber", "smooth_l1"),
    "huber_scale": lambda a: a.get("loss_type") in ("huber", "smooth_l1"),
    "huber_schedule": lambda a: a.get("loss_type") in ("huber", "smooth_l1"),
    "train_data_dir": lambda a: not a.get("dataset_config"),
    "reg_data_dir": lambda a: not a.get("dataset_config"),
}
# sd-scripts treats these values exactly like the argument's absence (the GUI always writes them).
UNSET_SPELLINGS = {"max_token_length": 75, "max_timestep": 1000, "min_timestep": 0}
_SAME_AS_UNSET = {**UNSET_SPELLINGS, "save_precision": "float"}
_KV_LISTS = ("network_args", "optimizer_args", "lr_scheduler_args")


def sd_scripts_keys(family: str = DEFAULT_FAMILY) -> list[str]:
    """Every argument of the family's script lorakit knows (its own planning keys excluded)."""
    return [name for name, spec in registry(family).items() if spec.target != "lorakit"]


def _kv_item(item: str) -> str:
    key, sep, value = item.partition("=")
    if not sep:
        return item
    text = value.strip().strip("'\"")
    try:
        number = float(text)
        text = repr(int(number)) if number.is_integer() else repr(number)
    except ValueError:
        if text.lower() in ("true", "false"):
            text = text.lower()
    return f"{key.strip()}={text}"


def effective(args: dict[str, Any], family: str = DEFAULT_FAMILY) -> dict[str, Any]:
    """The value of every sd-scripts argument of the family's script as sd-scripts will act on it (defaults filled in)."""
    specs = registry(family)
    out: dict[str, Any] = {}
    for name in sd_scripts_keys(family):
        value = args.get(name)
        if value is None:
            value = specs[name].default
        out[name] = value
    for name, same in _SAME_AS_UNSET.items():
        if out[name] == same:
            out[name] = None
    for name in _KV_LISTS:
        out[name] = sorted(_kv_item(str(item)) for item in out[name] or [])
    out["resolution"] = normalize_resolution(specs["resolution"], out["resolution"]) if out["resolution"] else None
    out["persistent_data_loader_workers"] = bool(out["persistent_data_loader_workers"])
    lr = out["learning_rate"]
    te = [float(x) for x in (out["text_encoder_lr"] or [])] or [lr]
    out["text_encoder_lr"] = te[:1] if len(set(te)) == 1 else te
    out["unet_lr"] = out["unet_lr"] if out["unet_lr"] is not None else lr
    if out["network_train_unet_only"]:
        out["text_encoder_lr"] = None
    if out["network_train_text_encoder_only"]:
        out["unet_lr"] = None
    if out["max_train_epochs"]:
        out["max_train_steps"] = None  # sd-scripts recomputes the steps from the epochs
    if out["mem_eff_attn"] or out["xformers"]:
        out["sdpa"] = False  # mem_eff_attn > xformers > sdpa: the first one set wins
    if out["mem_eff_attn"]:
        out["xformers"] = False
    for name, needed in _ONLY_WITH.items():
        if name in out and not needed(out):
            out[name] = None
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[name] = float(value)  # 16 and 16.0 are the same network_alpha
    return out


def differences(a: dict[str, Any], b: dict[str, Any], keys: list[str] | None = None,
                family: str = DEFAULT_FAMILY) -> list[str]:
    """The sd-scripts arguments on which two runs of the family's script differ."""
    ea, eb = effective(a, family), effective(b, family)
    return [k for k in (keys or list(ea)) if ea.get(k) != eb.get(k)]


def to_lorakit(spec: KeySpec, value: Any) -> Any:
    """A value the GUI wrote to its TOML, in the type lorakit's schema keeps for that key."""
    if value is None:
        return None
    if spec.kind == "bool":
        value = bool(value)
    elif spec.kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    elif spec.kind == "int_or_float" and isinstance(value, float) and value.is_integer() and value >= 1:
        value = int(value)
    elif spec.kind == "str_list" and isinstance(value, list):
        value = [str(v) for v in value]
    return coerce(spec, value)


def command_line_values(tokens: list[str], family: str = DEFAULT_FAMILY) -> tuple[dict[str, Any], list[str]]:
    """sd-scripts arguments from command-line tokens (the GUI's additional_parameters), and the problems."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("--"):
            problems.append(f"{token!r} is not an option (options start with --)")
            continue
        name, sep, inline = token[2:].partition("=")
        items = [inline] if sep else []
        while not sep and index < len(tokens) and not tokens[index].startswith("--"):
            items.append(tokens[index])
            index += 1
        spec = registry(family).get(name)
        if spec is None or spec.target == "lorakit":
            problems.append(f"--{name} is not an argument of {family_named(family).script}")
            continue
        try:
            values[name] = _parse_items(spec, items)
        except ValueProblem as exc:
            problems.append(f"--{name}: {exc}")
    return values, problems


def _parse_items(spec: KeySpec, items: list[str]) -> Any:
    if spec.kind == "bool":
        if items:
            raise ValueProblem(f"{spec.name} is a flag and takes no value")
        return True
    if spec.kind in ("str_list", "float_list"):
        return coerce(spec, items)
    if len(items) != 1:
        raise ValueProblem(f"{spec.name} takes one value, got {len(items)}")
    return parse_text(spec, items[0])


def command_line_tokens(name: str, value: Any) -> list[str] | None:
    """`--name value` tokens that give sd-scripts this value, or None when the GUI cannot pass it.

    The GUI strips every double quote from additional_parameters and splits it on whitespace, so a
    value with a space or a quote cannot get through, and a flag cannot be switched off.
    """
    if isinstance(value, bool):
        return [f"--{name}"] if value else None
    items = value if isinstance(value, list) else [value]
    texts = [repr(x) if isinstance(x, float) else str(x) for x in items]
    if not texts or any(not t or any(ch.isspace() for ch in t) or '"' in t for t in texts):
        return None
    return [f"--{name}", *texts]
