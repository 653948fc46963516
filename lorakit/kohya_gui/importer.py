"""`lorakit import kohya-gui` and `lorakit plan --from-kohya-gui`: a GUI config as a lorakit preset.

The config is read as the GUI loads it (`load`), its model checkboxes tell the family (SDXL, FLUX.1,
Chroma or SD 1.5, `families.gui_family`), it is turned into the sd-scripts arguments the GUI would train
with (`gui_toml.gui_run`), and those become lorakit values. The preset holds only what differs from the
family's base preset (`extends = ["flux1-dev"]` for a FLUX config), so the two together give sd-scripts
the same run as the GUI. Keys the GUI leaves unset but the base sets are written as `{ unset = true }`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from lorakit.config.family import DEFAULT_FAMILY, FAMILIES, family_named
from lorakit.config.presets import ImportedPreset, Preset, PresetEntry, PresetHeader, PresetRegistry
from lorakit.config.schema import RESERVED_KEYS, SECRET_KEYS, ValueProblem, registry
from lorakit.errors import UserError
from lorakit.findings import Finding, finding, sort_findings
from lorakit.kohya_gui.arguments import UNSET_SPELLINGS, command_line_values, differences, sd_scripts_keys, to_lorakit
from lorakit.kohya_gui.export import direct_keys
from lorakit.kohya_gui.families import FLUX_NETWORK_FIELDS, MODEL_FLAGS, allowed_lora_type, gui_family, gui_script, loaded_with_events
from lorakit.kohya_gui.gui_toml import BLOCK_ARGS, LORAPLUS_ARGS, gui_run
from lorakit.kohya_gui.keys import value_problems
from lorakit.kohya_gui.load import GuiConfig, load_gui_config, secret_findings
from lorakit.util.files import check_output_file

GATE = 2
# sd-scripts arguments in the GUI's TOML that a lorakit plan sets from its own folder and dataset.
PLAN_OWNED = frozenset({"output_dir", "output_name", "logging_dir", "sample_prompts", "dynamo_backend", *RESERVED_KEYS})
# Where an sd-scripts argument comes from in the GUI config, when it is not a field of the same name.
ORIGIN = {
    "network_module": "LoRA_type", "network_args": "LoRA_type and its network fields",
    "network_train_unet_only": "text_encoder_lr 0", "network_train_text_encoder_only": "unet_lr 0",
    "lr_warmup_steps": "lr_warmup / lr_warmup_steps", "max_train_steps": "max_train_steps / epoch",
    "max_train_epochs": "max_train_epochs / epoch", "sdpa": "xformers", "xformers": "xformers",
}
# Base models for which the GUI sets its model checkboxes when they are loaded (common_gui's model lists,
# docs/kohya-gui.md §8.3): SDXL ids tick sdxl, SD 2.x ids tick v2, SD 1.x ids untick everything (train_network.py).
KNOWN_MODELS = {
    **dict.fromkeys(("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"), "sdxl"),
    **dict.fromkeys(("stabilityai/stable-diffusion-2-1-base", "stabilityai/stable-diffusion-2-base",
                     "stabilityai/stable-diffusion-2-1", "stabilityai/stable-diffusion-2"), "v2"),
    **dict.fromkeys(("CompVis/stable-diffusion-v1-4", "runwayml/stable-diffusion-v1-5"), None),
}
# The model files a family's plan needs besides the base model; a GUI config that names none gets the base preset's.
MODEL_FILES = ("ae", "clip_l", "t5xxl")
# lorakit keys made from other GUI fields than the one of the same name (or the export's renames), for telling
# which values the config sets itself.
MADE_FROM: dict[str, tuple[str, ...]] = {
    "network_module": ("LoRA_type",),
    "network_args": ("LoRA_type", "conv_dim", "conv_alpha", "rank_dropout", "module_dropout", *BLOCK_ARGS,
                     *LORAPLUS_ARGS, *FLUX_NETWORK_FIELDS, "split_mode", "split_qkv", "train_t5xxl", "enable_all_linear"),
    "apply_t5_attn_mask": ("apply_t5_attn_mask", "model_type"), "guidance_scale": ("guidance_scale", "model_type"),
    "timestep_sampling": ("timestep_sampling", "model_type"),
    "network_train_unet_only": ("text_encoder_lr",), "network_train_text_encoder_only": ("unet_lr",),
    "lr_warmup_steps": ("lr_warmup", "lr_warmup_steps"),
    "max_train_steps": ("max_train_steps", "max_train_epochs", "epoch"),
    "max_train_epochs": ("max_train_steps", "max_train_epochs", "epoch"),
    "sdpa": ("xformers",), "xformers": ("xformers",),
    "machine_rank": ("extra_accelerate_launch_args",), "main_process_ip": ("extra_accelerate_launch_args",),
    "sample_prompt_lines": ("sample_prompts",),
}
# lorakit's learning-rate × steps check states a preset's intent; a GUI config states none.
NO_INTENT = ("lr_steps_min", "lr_steps_max")


@dataclass
class GuiImport:
    source: Path
    values: dict[str, Any]  # every lorakit key the GUI config decides (None: left unset)
    origins: dict[str, str]  # key → the GUI key(s) it came from
    entries: dict[str, Any]  # the part of `values` that differs from the family's base preset
    findings: list[Finding] = field(default_factory=list)
    owned: frozenset[str] = frozenset()  # keys of `values` the config sets itself (the rest are the GUI's defaults)
    output_name: str | None = None  # the LoRA's file name the config gives; a plan folder's name otherwise
    family: str = DEFAULT_FAMILY  # the model family the GUI trains with this config

    @property
    def base(self) -> str:
        return family_named(self.family).base_preset

    def preset(self, skip: frozenset[str] = frozenset()) -> Preset:
        """The config as an in-memory preset (less the keys in `skip`), applied right after the base like any other."""
        header = PresetHeader(kind="user", extends=[self.base],
                              description=f"Imported from the Kohya GUI config {self.source.name}")
        values = {k: self._entry(k, v) for k, v in self.entries.items() if k not in skip}
        return Preset(name=f"kohya-gui:{self.source.name}", path=self.source, builtin=False, header=header,
                      values=values)

    def origin(self, key: str) -> str:
        return f"Kohya GUI {self.source.name} · {self.origins.get(key, key)}"

    def _entry(self, key: str, value: Any) -> PresetEntry:
        return PresetEntry(value=value, from_=self.origin(key), unset=value is None)

    def imported(self) -> ImportedPreset:
        """What `lorakit plan --from-kohya-gui` hands the planner.

        The values the config sets itself are the user's: the plan trains them as the GUI would (the fit
        changes none of them, and Gate 3 says what to change when they do not fit). A value whose effect
        equals the base's keeps the base's spelling, so config.toml reads as a preset plan's would.
        """
        base = _base_values(self.family)
        owned = {k: self._entry(k, self.entries[k] if k in self.entries else base.get(k)) for k in sorted(self.owned)}
        if self.output_name:
            owned["output_name"] = self._entry("output_name", self.output_name)
        return ImportedPreset(self.preset(skip=self.owned), list(self.findings), owned, family=self.family)


def import_gui_config(path: Path) -> GuiImport:
    config = load_gui_config(path)
    findings = list(config.findings)
    family = _family(config, findings)
    config.values, changed = loaded_with_events(config.values)
    findings += _chroma_switch(changed)
    run = gui_run(config.values)
    findings += _refusals(run.refusals)
    extra, problems = command_line_values(run.extra_args, family)
    findings += secret_findings([key for key in SECRET_KEYS if extra.pop(key, None) is not None])
    if problems:
        findings.append(finding("gui/bad-additional-parameters", "warning", GATE,
                                "additional_parameters has arguments sd-scripts would reject: " + "; ".join(problems) + ".",
                                "fix or remove them in the GUI config"))
    origins = {arg: gui for gui, arg in direct_keys(family).items()} | ORIGIN | {k: "additional_parameters" for k in extra}
    arguments = {**run.toml, **extra}
    if arguments.get("wandb_run_name") == config.values["output_name"]:
        del arguments["wandb_run_name"]  # the GUI's stand-in for an empty field
    values = _sd_scripts_values(arguments, findings, family)
    _base_model(values, config, findings, family)
    _training_length(values, config, run.steps_from_folders, "max_train_steps" in extra or "max_train_epochs" in extra,
                     findings)
    values.update(_accelerate(config.values, findings))
    values.update(_samples(run.sample_prompts_text, values, findings))
    values.update(dict.fromkeys(NO_INTENT))
    findings += _rule_findings(config) + _missing_paths(config)
    name = config.values["output_name"].strip() if "output_name" in config.given else ""
    return GuiImport(source=path, values=values, origins=origins, entries=_delta(values, family),
                     findings=sort_findings(findings), owned=_owned(values, config.given, set(extra), family),
                     output_name=name or None, family=family)


def _owned(values: dict[str, Any], given: set[str], from_command_line: set[str], family: str) -> frozenset[str]:
    """The keys of `values` that fields the config sets decide (the rest come from a fresh GUI's defaults)."""
    fields_of: dict[str, list[str]] = {}
    for gui, arg in direct_keys(family).items():
        fields_of.setdefault(arg, []).append(gui)
    owned = set()
    for key in values:
        fields = MADE_FROM.get(key) or fields_of.get(key) or (key,)
        if any(f in given for f in fields) or key in from_command_line:
            owned.add(key)
    return frozenset(owned)


def _family(config: GuiConfig, findings: list[Finding]) -> str:
    """The family the GUI trains with this config (its model checkboxes), or a UserError for one lorakit does not plan."""
    c, given = config.values, config.given
    model = c["pretrained_model_name_or_path"] if "pretrained_model_name_or_path" in given else ""
    if model in KNOWN_MODELS:  # loading the model sets the checkboxes (docs/kohya-gui.md §8.3)
        c.update(dict.fromkeys(MODEL_FLAGS, False))
        flag = KNOWN_MODELS[model]
        if flag:
            c[flag] = True
    elif not given & set(MODEL_FLAGS) - {"v2", "v_parameterization"}:
        findings.append(finding("gui/family-assumed", "warning", GATE,
                                "the config does not say which model it trains (no sdxl or flux1_checkbox: a partial "
                                "preset); the GUI keeps its checkboxes as they are, and lorakit assumed a fresh GUI's, "
                                "none ticked: an SD 1.5 LoRA, trained by train_network.py.",
                                'add "sdxl": true or "flux1_checkbox": true to the file for an SDXL or FLUX.1 config, '
                                "and tick the same box in the GUI when you apply it there"))
    family = gui_family(c)
    if family is None:
        what = "SD 2.x (v2 ticked)" if gui_script(c) == "train_network.py" else gui_script(c)
        raise UserError(f"{config.path} is a LoRA config for {what}; lorakit plans "
                        f"{', '.join(f.title for f in FAMILIES.values())} LoRAs.",
                        fix="import a config with SDXL or FLUX.1 ticked (or none, for SD 1.5), or train this one in the GUI")
    if not allowed_lora_type(family, c["LoRA_type"]):
        raise UserError(f"{config.path} trains a {family_named(family).title} LoRA with LoRA_type {c['LoRA_type']!r}, "
                        "a network of another model family; the GUI would refuse to start it, or train a network "
                        "that does not fit the model.",
                        fix="pick the LoRA type that fits the ticked model in the GUI and save the config again")
    return family


def _chroma_switch(changed: list[str]) -> list[Finding]:
    if not changed:
        return []
    return [finding("gui/chroma-defaults", "warning", GATE,
                    f"loading this Chroma config into a GUI that shows Base Model Type 'flux' switches it to 'chroma', "
                    f"and that switch sets {', '.join(changed)} to Chroma's defaults (guidance 0, T5 attention mask, "
                    "sigmoid sampling) over the values in the file; lorakit plans what the GUI trains then.",
                    "to train the file's values, set them again in the GUI after loading, or --set them here")]


def _base_model(values: dict[str, Any], config: GuiConfig, findings: list[Finding], family: str) -> None:
    base = family_named(family).base_preset
    key = "pretrained_model_name_or_path"
    if key not in config.given:
        del values[key]  # a fresh GUI's SD 1.5 id is no model for an SDXL or FLUX run; the base preset names one
        findings.append(finding("gui/no-base-model", "info", GATE,
                                f"the GUI config names no base model (GUI presets leave it out); the plan uses {base}'s "
                                "model.", f"--set {key}=... for another {family_named(family).title} model", key=key))
    model = values.get(key) or ""
    if model.lower().endswith(".safetensors") and not Path(model).expanduser().is_file():
        box = "its model checkboxes" if family == "sd15" else f"{'SDXL' if family == 'sdxl' else 'FLUX.1'}"
        findings.append(finding("gui/model-file", "warning", GATE,
                                f"the base model {model} does not exist on this machine; the GUI unticks {box} when it "
                                "cannot open the file it was given.", f"--set {key}=PATH", key=key))
    names = [k for k in MODEL_FILES if k in values and not values[k] and k in family_named(family).model_keys]
    for name in names:
        del values[name]  # sd-scripts cannot train without the file; the base preset names the usual one
    if names:
        findings.append(finding("gui/no-model-files", "info", GATE,
                                f"the GUI config gives no {', '.join(names)} path; the plan uses {base}'s.",
                                f"--set {names[0]}=PATH for another file"))


def _missing_paths(config: GuiConfig) -> list[Finding]:
    # The GUI refuses to start when one of these files or folders is missing (docs/kohya-gui.md §5.5); so will sd-scripts.
    keys = ("network_weights", "vae", "resume", "log_tracker_config", *(MODEL_FILES if config.values["flux1_checkbox"] else ()))
    missing = [f"{key} {config.values[key]!r}" for key in keys
               if config.values[key] and not Path(config.values[key]).expanduser().exists()]
    if not missing:
        return []
    return [finding("gui/missing-path", "warning", GATE,
                    "the GUI config points at files or folders this machine does not have: " + "; ".join(missing) + ".",
                    "copy them here and --set the new paths, or --set KEY=none to train without them")]


def _refusals(refusals: dict[str, str]) -> list[Finding]:
    # The plan supplies the folders, and _require_sdxl has dealt with the model family.
    training = [why for key, why in refusals.items() if key not in ("output_dir", "train_data_dir", "sdxl")]
    if not training:
        return []
    return [finding("gui/refused-run", "warning", GATE,
                    "the GUI would refuse to start this run: " + "; ".join(training) + ".",
                    "fix these values; lorakit's own checks below say what sd-scripts makes of them")]


def _sd_scripts_values(arguments: dict[str, Any], findings: list[Finding], family: str) -> dict[str, Any]:
    specs = registry(family)
    values: dict[str, Any] = {}
    bad: list[str] = []
    for name in sd_scripts_keys(family):
        if name in PLAN_OWNED or name in SECRET_KEYS:  # secrets: emptied on load, see load.secret_findings
            continue
        value = arguments.get(name)
        if name in UNSET_SPELLINGS and value == UNSET_SPELLINGS[name]:
            value = None
        if value is None and specs[name].default is not None and specs[name].default in (0, False):
            value = specs[name].default  # the GUI drops zeros from its TOML: 0 here is sd-scripts' own default
        try:
            values[name] = to_lorakit(specs[name], value)
        except ValueProblem as exc:
            bad.append(str(exc))
            values[name] = None
    te = values.get("text_encoder_lr")
    if te and len(set(te)) == 1:
        values["text_encoder_lr"] = te[:1]  # the GUI writes [te, te]; networks.lora uses the first only
    if family_named(family).transformer and "clip_skip" in values:
        values["clip_skip"] = None  # the GUI passes its default 1 for FLUX too; flux_train_network.py never reads it
    if bad:
        findings.append(finding("gui/value-rejected", "error", GATE,
                                "sd-scripts would reject these values the GUI passes it: " + "; ".join(bad) + ".",
                                "change them in the GUI config, or override them with --set"))
    return values


def _training_length(values: dict[str, Any], config: GuiConfig, from_folders: bool, on_command_line: bool,
                     findings: list[Finding]) -> None:
    c = config.values
    if from_folders and values.get("max_train_epochs"):
        values["max_train_steps"] = None  # sd-scripts lets max_train_epochs override the GUI's count
        return
    if from_folders:
        # The GUI counts Σ repeats × images / batch × epoch itself; lorakit counts the same epochs exactly.
        values["max_train_steps"], values["max_train_epochs"] = None, int(c["epoch"])
        findings.append(finding("gui/steps-from-folders", "info", GATE,
                                f"the GUI computes max_train_steps from the image folders for {c['epoch']} epoch(s); "
                                f"lorakit trains {c['epoch']} epoch(s), which is the same up to the last partial batches.",
                                None, key="max_train_epochs"))
        return
    steps, epochs = values.get("max_train_steps"), values.get("max_train_epochs")
    if steps and not epochs and not on_command_line:
        default = "max_train_steps" not in config.given
        findings.append(finding(
            "gui/epoch-ignored", "warning", GATE,
            f"the GUI trains {steps} steps{' (its default, since the config does not set max_train_steps)' if default else ''} "
            f"and ignores epoch = {c['epoch']}: the epoch field only counts when max_train_steps is 0 "
            "(the GUI's 1600-step trap); lorakit plans the same run.",
            f"to train {c['epoch']} epoch(s) instead: --set max_train_epochs={c['epoch']}", key="max_train_steps"))


def _accelerate(c: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    extra = c["extra_accelerate_launch_args"].split()
    found: dict[str, Any] = {
        "num_processes": int(c["num_processes"]) or 1, "num_machines": int(c["num_machines"]) or 1,
        "gpu_ids": c["gpu_ids"] or None, "main_process_port": int(c["main_process_port"]) or None,
    }
    if "--main_process_ip" in extra[:-1]:
        found["main_process_ip"] = extra[extra.index("--main_process_ip") + 1]
    if "--machine_rank" in extra:
        given = extra[extra.index("--machine_rank") + 1] if "--machine_rank" in extra[:-1] else ""
        try:
            found["machine_rank"] = int(given)
        except ValueError:
            findings.append(finding(
                "gui/bad-machine-rank", "warning", GATE,
                f"the GUI's extra accelerate arguments give --machine_rank {repr(given) if given else 'with no value'}, "
                "which is not a machine's rank (a whole number); lorakit plans this machine as rank 0, the main one.",
                "write --machine_rank N in the GUI's extra accelerate arguments (0 on the main machine, 1, 2, ... on "
                "the others), or --set machine_rank=N", key="machine_rank"))
    return found


def _prompt_options(line: str) -> set[str]:
    """The option letters of one sd-scripts prompt line (` --w 1024 --d 1`: {"w", "d"}; docs/sd-scripts.md §7)."""
    return {part.partition(" ")[0].strip().lower() for part in line.split(" --")[1:]}


def _samples(text: str, values: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    sampling = values.get("sample_every_n_steps") or values.get("sample_every_n_epochs")
    if not lines:
        if sampling:
            findings.append(finding("gui/no-sample-prompts", "info", GATE,
                                    "the GUI config samples images but has no prompts (sd-scripts would make none); "
                                    "lorakit builds prompts from the dataset's class tokens.", None, key="sample_prompts"))
        return {}
    # The GUI writes its prompt text to a file as it is; so does the plan (sd-scripts' defaults for what a line
    # leaves out: 512×512, CFG 7.5, a random seed).
    unsized = sum(1 for line in lines if not {"w", "h"} <= _prompt_options(line))
    if sampling and unsized:
        findings.append(finding("gui/sample-size", "info", GATE,
                                f"{unsized} of the GUI config's {len(lines)} sample prompt(s) give no --w/--h, so sd-scripts "
                                "makes those samples 512×512 (its default, even for SDXL), as the GUI's run would.",
                                "add --w 1024 --h 1024 to those prompts for samples at SDXL's size", key="sample_prompts"))
    return {"sample_prompt_lines": lines}


def _rule_findings(config: GuiConfig) -> list[Finding]:
    given = {k: v for k, v in config.values.items() if k in config.given}
    problems = value_problems(given, "master")
    return [finding("gui/refused-value", "warning", GATE,
                    f"the current GUI refuses this value on Save, Train or Print: {p}.",
                    "change it in the GUI config; lorakit uses it as sd-scripts would") for p in problems]


@cache
def _base_values(family: str) -> dict[str, Any]:
    from lorakit.config.resolve import resolve

    resolution = resolve(PresetRegistry(include_user_dir=False), [family_named(family).base_preset], [])
    return {key: item.value for key, item in resolution.values.items()}


def _delta(values: dict[str, Any], family: str) -> dict[str, Any]:
    """The values that differ from the family's base in what sd-scripts (or lorakit's planning) does with them."""
    base = _base_values(family)
    arguments = set(sd_scripts_keys(family))
    planning = {k for k in values if k not in arguments}
    entries = {k: values[k] for k in differences(base, values, family=family) if k in values}
    specs = registry(family)
    entries |= {k: values[k] for k in planning if base.get(k, specs[k].default) != values[k]}
    # The GUI always writes unet_lr; one equal to learning_rate is what sd-scripts does without it.
    if "unet_lr" in entries and entries["unet_lr"] == values.get("learning_rate") and base.get("unet_lr") is None:
        del entries["unet_lr"]
    # Drop unsets whose effect the base already gives (e.g. text_encoder_lr when only the U-Net trains).
    for key in [k for k in entries if k in arguments and entries[k] is None]:
        trial = {**base, **{k: v for k, v in entries.items() if k != key}}
        if not differences(trial, values, [k for k in arguments if k in values], family):
            del entries[key]
    return dict(sorted(entries.items()))


def preset_name(path: Path) -> str:
    stem = re.sub(r"[^a-z0-9_]+", "-", path.stem.lower()).strip("-")
    return f"kohya-{stem or 'gui'}"


def render_preset(imported: GuiImport) -> str:
    from lorakit import __version__
    from lorakit.plan.render import render

    entries = [{"key": k, "value": v, "from": imported.origin(k)} for k, v in imported.entries.items()]
    notes = [f"{f.level}: {f.message}" for f in imported.findings if f.level != "info"]
    return render("preset.toml.j2", source=str(imported.source), version=__version__, base=imported.base,
                  description=f"Imported from the Kohya GUI config {imported.source.name}", notes=notes,
                  entries=entries, name=preset_name(imported.source))


def write_preset(imported: GuiImport, path: Path) -> Path:
    """Write the preset file; an existing file is never replaced."""
    if path.is_dir():
        path = path / f"{preset_name(imported.source)}.toml"
    check_output_file(path, option="-o", force_option=None)
    if path.suffix != ".toml":
        raise UserError(f"-o '{path}' must end in .toml (presets are TOML files).", fix=f"use -o {path.stem}.toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as f:
        f.write(render_preset(imported))
    return path


def default_preset_path(source: Path) -> Path:
    from lorakit.config.presets import user_presets_dir

    return user_presets_dir() / f"{preset_name(source)}.toml"

