"""Resolve: lorakit's defaults, then the presets in order, then `--set` overrides, each value with its source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from lorakit.config.family import DEFAULT_FAMILY, family_named
from lorakit.config.keyvalue import SET, split_key_value, typed_value
from lorakit.config.presets import ImportedPreset, Preset, PresetEntry, PresetRegistry
from lorakit.config.schema import ValueProblem
from lorakit.config.schema import registry as keys_of
from lorakit.config.values import IMPORT_SOURCE, USER_SOURCE, Values
from lorakit.errors import ConfigError

# What every plan has even when no preset says so; presets and --set override these.
DEFAULTS: dict[str, tuple[object, str]] = {
    "caption_extension": (".txt", "sd-scripts' own default is .caption"),
    "max_train_epochs": (10, "epochs are always written: without them sd-scripts trains 1600 steps"),
    "save_model_as": ("safetensors", "keeps the ss_* metadata in the LoRA file"),
}


def family_defaults(family: str) -> dict[str, tuple[object, str]]:
    """The defaults that differ by family: its base model, its network module and its native size."""
    known = family_named(family)
    side = known.native_resolution
    module = "networks.lora_flux" if known.script == "flux_train_network.py" else "networks.lora"
    return {
        "pretrained_model_name_or_path": (known.default_model, known.model_source),
        "network_module": (module, "lorakit trains LoRA; sd-scripts has no default network module"),
        "resolution": (f"{side},{side}", f"{known.title}'s native size; sd-scripts needs a resolution"),
        **DEFAULTS,
    }


@dataclass
class Resolution:
    values: Values
    presets: list[Preset]
    notes: list[str]
    required: list[str]  # keys some preset requires the user to set

    def report(self, name: str, description: str) -> PresetReport:
        return PresetReport(name=name, chain=[p.name for p in self.presets], description=description,
                            requires=self.required, notes=self.notes, values=self.values.to_json())


class PresetReport(BaseModel):
    """`lorakit presets NAME --json`: the presets NAME applies, in order, and the values they resolve to."""

    model_config = ConfigDict(extra="forbid")

    name: str
    chain: list[str]
    description: str
    requires: list[str]
    notes: list[str]
    values: dict[str, dict[str, Any]]  # key -> its ResolvedValue, defaults left out


def based_on(presets: Sequence[Preset]) -> Preset:
    """The base preset a chain builds on: the last base in it (chroma after the flux1-dev it extends)."""
    return [p for p in presets if p.header.kind == "base"][-1]


def family_of(presets: Sequence[Preset]) -> str:
    return based_on(presets).family


def parse_overrides(items: Sequence[str], family: str = DEFAULT_FAMILY) -> tuple[dict[str, object], list[str]]:
    """`KEY=VALUE` strings typed by the family's schema; returns the values and every problem found."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for item in items:
        try:
            key, text = split_key_value(item, SET)
            values[key] = typed_value(key, text, SET, family)
        except ValueProblem as exc:
            problems.append(str(exc))
    return values, problems


def _chain_for_import(registry: PresetRegistry, names: list[str], imported: Sequence[ImportedPreset]) -> list[Preset]:
    """The presets with the imported configs right after the base lineage of their family (flux1-dev, chroma)."""
    base = family_named(imported[0].family).base_preset
    named = [n for n in names if registry.get(n).header.kind == "base"]
    presets = registry.chain(names if named else [base, *names])
    if based_on(presets).name != base:
        raise ConfigError([f"an imported config builds on {base}; it cannot be combined with the base "
                           f"preset {based_on(presets).name}"], context="the presets")
    bases = len(registry.lineage(based_on(presets)))
    return [*presets[:bases], *(i.preset for i in imported), *presets[bases:]]


def resolve(registry: PresetRegistry, preset_names: Sequence[str], overrides: Sequence[str],
            imported: Sequence[ImportedPreset] = ()) -> Resolution:
    """`imported` configs (e.g. a Kohya GUI file) come right after the base: first what they leave to their
    tool's defaults, as a preset, then the values they set themselves, as the user's (source `import:NAME`)."""
    owned: dict[str, dict[str, PresetEntry]] = {}
    if imported:
        presets = _chain_for_import(registry, list(preset_names), imported)
        owned = {i.preset.name: i.owned for i in imported}
    else:
        presets = registry.chain(list(preset_names))
    family = family_of(presets)
    parsed, problems = parse_overrides(overrides, family)
    if problems:
        raise ConfigError(problems, context="the --set options")
    foreign = [f"{preset.name} sets {key}, which {family_named(family).script} does not have; give the preset a "
               f"[family.{family}] table that unsets or replaces it" for preset in presets
               for key in preset.values_for(family) if key not in keys_of(family)]
    if foreign:
        raise ConfigError(foreign, context=f"the presets of this {family_named(family).title} plan")
    values = Values()
    values.set("family", family, f"preset:{based_on(presets).name}", f"{family_named(family).title}: "
               f"trained by sd-scripts' {family_named(family).script}")
    for key, (value, note) in family_defaults(family).items():
        values.set(key, value, "default", note)
    notes: list[str] = []
    required: list[str] = []
    for preset in presets:
        for key, entry in preset.values_for(family).items():
            values.set(key, entry.value, f"preset:{preset.name}", entry.from_)
        for key, entry in owned.get(preset.name, {}).items():
            values.set(key, entry.value, f"{IMPORT_SOURCE}{preset.name}", entry.from_)
        if preset.header.kind != "base" or preset is based_on(presets):  # a base extended by another keeps its notes
            notes += preset.header.notes
        required += [k for k in preset.header.requires if k not in required]
    for key, value in parsed.items():
        values.set(key, value, USER_SOURCE)
    return Resolution(values=values, presets=presets, notes=notes, required=required)
