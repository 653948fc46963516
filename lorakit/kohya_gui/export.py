"""`lorakit export kohya-gui`: a plan as a config the Kohya SS GUI opens and trains identically.

Every key the GUI's LoRA tab saves for the chosen version is written (a missing key would keep a stale
GUI value), in the GUI's own forms (docs/kohya-gui.md §2). The dataset goes in as the plan's `dataset.toml`
(`dataset_config`) with the Kohya folder in `train_data_dir`, and epochs as `max_train_epochs` with
`max_train_steps` 0. The base model and the VAE go in as the absolute paths config.toml gives sd-scripts
(lorakit's links for Hub files), except a plain Hub id that sd-scripts, started by the GUI, loads as the same
model itself (docs/kohya-gui.md §2.7, §5.5). The export then runs the GUI's launch rules (`launch.gui_run`) on its own result:
any sd-scripts argument the GUI fields cannot carry goes through `additional_parameters` (command-line
arguments after `--config_file` win over the TOML), and what cannot go there either is a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.config.family import DEFAULT_FAMILY
from lorakit.config.schema import SECRET_KEYS, registry
from lorakit.config.values import Values
from lorakit.errors import UserError
from lorakit.findings import Finding, finding, sort_findings
from lorakit.kohya_gui.arguments import command_line_tokens, command_line_values, differences, sd_scripts_keys
from lorakit.kohya_gui.families import (
    FLUX_NETWORK_FIELDS,
    GGPO_FIELDS,
    family_flags,
    gui_family,
    loaded_with_events,
    passed_fields,
    version_refusal,
    withheld_fields,
)
from lorakit.kohya_gui.gui_toml import BLOCK_ARGS, LORAPLUS_ARGS, LYCORIS_ALGOS, gui_run
from lorakit.kohya_gui.keys import NEWEST, VERSIONS, GuiKey, gui_keys, value_problems, version_keys
from lorakit.kohya_gui.load import migrate
from lorakit.kohya_gui.model_paths import gui_model, kept_hub_id, model_sources, trained_path
from lorakit.plan.build import Plan
from lorakit.util.files import check_output_file, write_text_atomic

GATE = 2
EXPORT_FILE = "kohya_gui.json"
# GUI key → the sd-scripts argument of the same meaning (same name unless listed here).
RENAMED = {"max_resolution": "resolution", "optimizer": "optimizer_type"}
# GUI keys with the same name as an sd-scripts argument that are written by a rule below, not copied.
BY_RULE = frozenset({
    "text_encoder_lr", "unet_lr", "lr_warmup_steps", "max_train_steps", "max_train_epochs", "sample_prompts",
    "optimizer_args", "lr_scheduler_args", "dataset_config", "train_data_dir", "reg_data_dir", "xformers",
    "pretrained_model_name_or_path", "caption_extension", "dynamo_backend", "v2", "v_parameterization", "vae",
    "model_type",
})
# What the GUI field must hold for "unset" when an off value (0, "", false) would not mean that.
UNSET = {"save_precision": "float", "max_token_length": 75, "max_timestep": 1000, "network_dim": 4,
         "discrete_flow_shift": 3, "guidance_scale": 3.5}  # the last two: sd-scripts' FLUX defaults
# The GUI drops these from its TOML when 0, so sd-scripts would use its own default (docs/kohya-gui.md §2.8).
ZERO_DROPPED = frozenset({"max_grad_norm", "prior_loss_weight", "huber_c", "huber_scale", "lr_scheduler_power"})
# Planning keys of lorakit that are carried by GUI fields (the accelerate launch section).
ACCELERATE_KEYS = ("num_processes", "num_machines", "gpu_ids", "main_process_port", "machine_rank", "main_process_ip")


@dataclass
class GuiExport:
    config: dict[str, Any]  # key → value, every key the version saves, sorted as the GUI writes them
    version: str
    findings: list[Finding] = field(default_factory=list)

    def text(self) -> str:
        # What the GUI's own SaveConfigFile writes: json.dump(indent=2) of the sorted keys, UTF-8, no BOM.
        return json.dumps(self.config, indent=2) + "\n"


def direct_keys(family: str = DEFAULT_FAMILY) -> dict[str, str]:
    """GUI key → sd-scripts argument for every field copied as it is (the mapping table's plain rows), for a family."""
    arguments = set(sd_scripts_keys(family))
    table = {**RENAMED, **passed_fields(family)}
    withheld = withheld_fields(family)
    for name, key in gui_keys().items():
        # secrets travel in neither direction; fields of other model families are not passed for this one
        if name in arguments and name not in BY_RULE | withheld and name not in SECRET_KEYS and key.sdxl_lora:
            table[name] = name
    return {gui: arg for gui, arg in table.items() if arg in arguments and gui not in BY_RULE}


def _off(key: GuiKey) -> Any:
    if key.name in UNSET:
        return UNSET[key.name]
    return {"bool": False, "str": "", "int": 0, "float": 0}[key.type]


def gui_value(key: GuiKey, value: Any) -> Any:
    """A value in the form the GUI saves for this key: whole floats as ints, numbers as numbers."""
    if value is None:
        return _off(key)
    if key.type == "bool":
        return bool(value)
    if key.type == "str" and isinstance(value, bool):
        return "True" if value else ""  # a GUI text field that sd-scripts reads as a flag
    if key.type == "str":
        return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    number = float(value)
    if key.type == "int" or number.is_integer():
        return int(number)
    return number


def fits_choices(key: GuiKey, value: Any) -> bool:
    return key.choices is None or key.custom_allowed or value in key.choices


def plan_arguments(plan: Plan) -> dict[str, Any]:
    """The sd-scripts arguments the plan gives sd-scripts: config.toml and dataset.toml's [general]."""
    specs = registry(plan.family)
    # value_set: the plan folder's paths made absolute from where the plan is now (the GUI runs elsewhere)
    args = {k: v.value for k, v in plan.value_set.items()
            if specs[k].target != "lorakit" and v.value is not None and k not in SECRET_KEYS}
    for source in model_sources(plan):
        if source.key is not None:
            args[source.key] = trained_path(source)
    return args


def export_plan(plan: Plan, version: str = NEWEST) -> GuiExport:
    if version not in VERSIONS:
        raise UserError(f"unknown GUI version {version!r}.", fix=f"use one of {', '.join(VERSIONS)}")
    refusal = version_refusal(plan.family, version)
    if refusal:
        raise UserError(f"cannot export this plan for --gui-version {version}: {refusal}.",
                        fix="export for a newer GUI: --gui-version master")
    # A plan made before secrets were refused may hold one: the export never carries it.
    values = Values({k: v for k, v in plan.value_set.items() if k not in SECRET_KEYS})
    keys = gui_keys()
    present = set(version_keys(version))
    findings: list[Finding] = []
    config = {name: key.default for name, key in keys.items()}
    table = direct_keys(plan.family)
    for gui, arg in table.items():
        config[gui] = gui_value(keys[gui], values[arg])
        if not fits_choices(keys[gui], config[gui]):
            config[gui] = keys[gui].default  # the GUI would refuse it; the value travels in additional_parameters
        if gui in ZERO_DROPPED and config[gui] == 0:
            config[gui] = gui_value(keys[gui], registry(plan.family)[arg].default)  # the GUI drops 0 (docs/kohya-gui.md §2.8): carried too
    _models(config, plan, findings)
    _network(config, values, plan.family)
    _learning_rates(config, values)
    _training_length(config, plan, values)
    _paths(config, plan)
    _samples(config, values, findings)
    _accelerate(config, values)
    config["caption_extension"] = _caption_extension(values["caption_extension"], findings)
    config["xformers"] = "xformers" if values["xformers"] else ("sdpa" if values["sdpa"] else "none")
    config["noise_offset_type"] = "Multires" if values["multires_noise_iterations"] else "Original"
    config["stop_text_encoder_training"] = 0
    config["t5xxl_lr"] = 0
    config["save_as_bool"] = False
    lacking = {arg: gui for gui, arg in table.items()
               if gui not in present and values.is_set(arg) and config[gui] != _off(keys[gui])}
    for name in set(keys) - present:  # an older GUI has no such field: it never reaches its TOML
        config[name] = _off(keys[name])
    # What a GUI showing "flux" sets when it loads a Chroma config; the plan's own values then travel below.
    config, _ = loaded_with_events(config)
    tokens = _carry_the_rest(config, plan, findings)
    config["additional_parameters"] = " ".join(tokens)
    findings += _missing_fields(lacking, {t[2:] for t in tokens if t.startswith("--")}, version)
    findings += _rule_findings({k: v for k, v in config.items() if k in present}, version)
    findings += _planning_only(plan)
    return GuiExport(config={k: config[k] for k in sorted(present)}, version=version, findings=sort_findings(findings))


def _models(config: dict, plan: Plan, findings: list[Finding]) -> None:
    """The family's model checkboxes, and each model file as a path (or a Hub id) the GUI can hand sd-scripts."""
    config.update(family_flags(plan.family))
    config["model_list"] = "custom"
    for source in model_sources(plan):
        if source.key in config:
            config[source.key] = gui_model(source, plan, findings)


def _kv(items: list[str] | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items or [] if "=" in item)


# network_args the GUI builds from a field of another name, or from fields of its own
NETWORK_FIELDS = (*BLOCK_ARGS, *LORAPLUS_ARGS, "rank_dropout", "module_dropout", "conv_dim", "conv_alpha", "unit",
                  "constrain", "LyCORIS_preset", "factor", "use_tucker", "use_scalar", "use_cp", "dora_wd", "bypass_mode",
                  "rank_dropout_scale", "rescaled", "train_norm", "decompose_both", "train_on_input")
FLUX_NETWORK_ARGS = (*FLUX_NETWORK_FIELDS, *GGPO_FIELDS, "split_qkv", "train_t5xxl", "enable_all_linear")


def _network(config: dict, values: Values, family: str) -> None:
    module, args = values["network_module"], _kv(values["network_args"])
    algo = args.get("algo", "").strip("'\"")
    kind = {"networks.lora": "Kohya LoCon" if "conv_dim" in args else "Standard", "networks.lora_fa": "LoRA-FA",
            "networks.dylora": "Kohya DyLoRA", "networks.loha": "Kohya LoHa", "networks.lokr": "Kohya LoKr",
            "networks.lora_flux": "Flux1", "networks.oft_flux": "Flux1 OFT"}.get(module)
    if module == "lycoris.kohya":
        kind = next((k for k, a in LYCORIS_ALGOS.items() if a == algo), "LyCORIS/LoCon")
    config["LoRA_type"] = kind or "Standard"
    keys = gui_keys()
    fields: tuple[str, ...] = NETWORK_FIELDS
    if kind == "Flux1":
        fields = (*NETWORK_FIELDS, *FLUX_NETWORK_ARGS)
        for name in FLUX_NETWORK_FIELDS:  # "all" (the GUI's default) is written into network_args; empty is not
            config[name] = ""
        config["train_lora_ggpo"] = any(name in args for name in GGPO_FIELDS)
    elif kind == "Flux1 OFT":
        fields = (*NETWORK_FIELDS, "enable_all_linear")
    renamed = {"block_size": "unit", "constraint": "constrain", "preset": "LyCORIS_preset"}
    for name, text in args.items():
        gui = renamed.get(name, name)
        key = keys.get(gui)
        if key is None or gui not in fields:
            continue  # anything else reaches sd-scripts through additional_parameters (_carry_the_rest)
        text = text.strip("'\"")
        try:
            config[gui] = (text.lower() == "true") if key.type == "bool" else gui_value(key, text if key.type == "str" else float(text))
        except ValueError:
            continue


def _learning_rates(config: dict, values: Values) -> None:
    lr = values["learning_rate"]
    te = values["text_encoder_lr"]
    config["learning_rate"] = gui_value(gui_keys()["learning_rate"], lr)
    # 0 in either field means "do not train that part" to the GUI (docs/kohya-gui.md §2.6), so unset is written as lr.
    unet = 0 if values["network_train_text_encoder_only"] else (values["unet_lr"] if values["unet_lr"] is not None else lr)
    text = 0 if values["network_train_unet_only"] else (te[0] if te else lr)
    config["unet_lr"] = gui_value(gui_keys()["unet_lr"], unet)
    config["text_encoder_lr"] = gui_value(gui_keys()["text_encoder_lr"], text)
    warmup = values["lr_warmup_steps"] or 0
    # With dataset_config and max_train_steps 0 the GUI zeroes the absolute field; only the percentage counts.
    percent = round(warmup * 100, 6) if isinstance(warmup, float) and warmup < 1 else 0
    exact = float(percent).is_integer() and values["lr_scheduler"] != "constant"
    config["lr_warmup"] = int(percent) if exact else 0
    config["lr_warmup_steps"] = 0
    config["optimizer_args"] = " ".join(values["optimizer_args"] or [])
    config["lr_scheduler_args"] = " ".join(values["lr_scheduler_args"] or [])


def _training_length(config: dict, plan: Plan, values: Values) -> None:
    epochs = values["max_train_epochs"]
    if epochs:
        config["max_train_epochs"] = config["epoch"] = int(epochs)
        config["max_train_steps"] = 0
        return
    # The plan counts steps: the GUI passes max_train_steps on and its `epoch` field is only shown.
    config["max_train_epochs"] = 0
    config["max_train_steps"] = int(values["max_train_steps"] or 1600)
    config["epoch"] = plan.epochs


def _paths(config: dict, plan: Plan) -> None:
    config["dataset_config"] = str(Path(plan.plan_dir) / "dataset.toml")
    config["train_data_dir"] = plan.dataset.root
    config["reg_data_dir"] = plan.dataset.reg_root or ""


def _samples(config: dict, values: Values, findings: list[Finding]) -> None:
    path = values["sample_prompts"]
    if not path:
        config["sample_prompts"] = ""
        return
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        config["sample_prompts"] = ""
        findings.append(finding("gui/sample-prompts-unreadable", "warning", GATE,
                                f"the sample prompt file {path} cannot be read ({exc.strerror}); the GUI takes prompt "
                                "text, so the export has no sample prompts.",
                                "make the file readable and export again", key="sample_prompts"))
        return
    config["sample_prompts"] = prompt_text(text)


def prompt_text(text: str) -> str:
    """The prompt lines of a sd-scripts prompt file (comments and blank lines dropped), one per line."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _accelerate(config: dict, values: Values) -> None:
    keys = gui_keys()
    processes, machines = values["num_processes"], values["num_machines"]
    config["num_processes"] = int(processes)
    config["num_machines"] = int(machines)
    config["multi_gpu"] = processes > 1 or machines > 1
    config["gpu_ids"] = gui_value(keys["gpu_ids"], values["gpu_ids"])
    config["main_process_port"] = int(values["main_process_port"] or 0)
    config["num_cpu_threads_per_process"] = 1  # what lorakit's own launch passes
    extra = []
    if machines > 1:
        extra += ["--machine_rank", str(values["machine_rank"])]
        if values["main_process_ip"]:
            extra += ["--main_process_ip", str(values["main_process_ip"])]
    config["extra_accelerate_launch_args"] = " ".join(extra)


def _caption_extension(extension: str | None, findings: list[Finding]) -> str:
    choices = gui_keys()["caption_extension"].choices or ()
    if extension is not None and extension in choices:
        return extension
    findings.append(finding(
        "gui/caption-extension", "info", GATE,
        f"caption_extension {extension!r} is not one of the GUI's choices {list(choices)}; the GUI field shows '.txt', "
        f"and training still reads {extension!r} from the plan's dataset.toml (which wins over the GUI's TOML).",
        None, key="caption_extension"))
    return ".txt"


def gui_arguments(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The sd-scripts arguments a GUI config ends up giving (TOML, then additional_parameters) and its prompt text."""
    loaded, _, _ = migrate(config)  # the GUI loads the file first, then its change events run
    loaded, _ = loaded_with_events(loaded)
    run = gui_run(loaded)
    extra, _ = command_line_values(run.extra_args, gui_family(loaded) or DEFAULT_FAMILY)
    return {**run.toml, **extra}, run.sample_prompts_text


def _compared(plan: Plan, gui_args: dict[str, Any]) -> dict[str, Any]:
    # dataset.toml's [general] beats the GUI's TOML for the dataset keys the plan sets.
    specs = registry(plan.family)
    dataset = {k: v for k, v in plan_arguments(plan).items() if specs[k].target == "dataset"}
    return {**gui_args, **dataset, **_models_as_trained(plan, gui_args)}


def _models_as_trained(plan: Plan, gui_args: dict[str, Any]) -> dict[str, str]:
    """The GUI's kept Hub ids as the paths they stand for: sd-scripts loads the same model from either."""
    return {s.key: trained_path(s) for s in model_sources(plan)
            if s.key is not None and kept_hub_id(s) and gui_args.get(s.key) == kept_hub_id(s)}


def _carry_the_rest(config: dict, plan: Plan, findings: list[Finding]) -> list[str]:
    """additional_parameters for every argument on which the GUI's run would differ from the plan's."""
    wanted = plan_arguments(plan)
    keys = [k for k in sd_scripts_keys(plan.family) if k != "sample_prompts"]
    gui_args, _ = gui_arguments({**config, "additional_parameters": ""})
    tokens: list[str] = []
    carried, lost = [], []
    for name in differences(_compared(plan, gui_args), wanted, keys, plan.family):
        value = wanted.get(name)
        extra = command_line_tokens(name, value) if value is not None else None
        if extra is None:
            lost.append(f"{name} (plan: {value!r}, GUI: {gui_args.get(name)!r})")
        else:
            tokens += extra
            carried.append(name)
    if carried:
        findings.append(finding(
            "gui/additional-parameters", "info", GATE,
            f"no GUI field gives sd-scripts {', '.join(carried)} as the plan does; the export passes "
            "them in additional_parameters, which sd-scripts reads after the GUI's TOML.",
            "leave additional_parameters as it is when you edit the config in the GUI"))
    if lost:
        findings.append(finding(
            "gui/not-expressible", "warning", GATE,
            "the GUI cannot give sd-scripts these values of the plan, so a GUI run differs from `lorakit launch`: "
            + "; ".join(lost) + ".",
            "set them in the GUI by hand if it allows, or launch the plan with lorakit"))
    return tokens


def _missing_fields(lacking: dict[str, str], carried: set[str], version: str) -> list[Finding]:
    """A warning for plan values whose GUI field the chosen version does not have (argument → GUI field)."""
    if not lacking:
        return []
    names = ", ".join(lacking[arg] for arg in sorted(lacking))
    passed = sorted(arg for arg in lacking if arg in carried)
    how = (f"the export passes {', '.join(passed)} in additional_parameters instead, where that GUI shows no field "
           "for them" if passed else "")
    lost = sorted(arg for arg in lacking if arg not in carried)
    if lost:
        how += ("; " if how else "") + f"{', '.join(lost)} cannot reach sd-scripts through that GUI (see gui/not-expressible)"
    return [finding("gui/field-not-in-version", "warning", GATE,
                    f"the GUI {VERSIONS[version]} has no field for {names}, which the plan sets: {how}.",
                    "leave additional_parameters as it is, or export for a newer GUI (--gui-version master)")]


def _rule_findings(config: dict, version: str) -> list[Finding]:
    problems = value_problems(config, version)
    return [finding("gui/refused-value", "warning", GATE,
                    f"the GUI {VERSIONS[version]} refuses this value on Save, Train or Print: {p}.",
                    "change the value in the plan, or use another --gui-version") for p in problems]


def _planning_only(plan: Plan) -> list[Finding]:
    specs = registry(plan.family)
    planning = sorted(k for k, v in plan.values.items()
                      if specs[k].target == "lorakit" and v.value is not None and k not in ACCELERATE_KEYS)
    if not planning:
        return []
    return [finding("gui/planning-keys", "info", GATE,
                    f"lorakit's planning keys {', '.join(planning)} have no GUI field; they shaped the plan (repeats, "
                    "sample prompts, checks) and do not change what sd-scripts trains.", None)]


def default_output(plan: Plan) -> Path:
    return Path(plan.plan_dir) / EXPORT_FILE


def write_export(export: GuiExport, path: Path, *, force: bool = False) -> Path:
    """Write the config; an existing file (perhaps saved back by the GUI) is only replaced with force."""
    check_output_file(path, replace=force, option="-o", example="my-config.json",
                      why="the GUI may have saved your edits there")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, export.text())
    return path
