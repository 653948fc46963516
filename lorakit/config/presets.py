"""Presets: TOML files of values, composable with `extends`.

Built-in presets ship in `presets/`; user presets come from the per-user folder
(`$LORAKIT_PRESETS_DIR`, else `$XDG_CONFIG_HOME/lorakit/presets`, else `~/.config/lorakit/presets`)
and from `--presets-dir`, later folders shadowing earlier ones. A preset file:

    [preset]
    kind = "task"                  # base, flavour, task, optimizer, hardware or user
    extends = ["sdxl-base"]
    description = "..."
    requires = []                  # keys the user must set (e.g. a local checkpoint)
    notes = []                     # shown in the plan
    family = "flux1"               # base presets only: the model family they train
    families = ["sdxl"]            # the families the preset is made for (default: all)

    [values]                       # for every family
    network_dim = { value = 16, from = "docs/recommendations.md §4 Network rank" }   # or plainly: network_dim = 16
    seed = { unset = true, from = "why" }    # leave the key unset (sd-scripts' default), like --set seed=none

    [family.flux1]                 # for one family only: replaces [values] there
    network_dim = 32

A plan of family F takes a preset's [values], then its [family.T] table for each T of F's recipes
(Chroma reads [family.flux1], then [family.chroma]). A value that F's script does not have is an error
that names the preset, so one family's recipe never leaks into another unnoticed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lorakit.config.family import DEFAULT_FAMILY, FAMILIES, family_named
from lorakit.config.schema import RESERVED_KEYS, SECRET_KEYS, ValueProblem, coerce, secret_refusal, spec_for
from lorakit.errors import ConfigError, LorakitError, UserError
from lorakit.findings import Finding
from lorakit.util import tomlio
from lorakit.util.files import check_output_file
from lorakit.util.resources import presets_dir, user_config_dir

BASE_PRESET = family_named(DEFAULT_FAMILY).base_preset
PresetKind = Literal["base", "flavour", "task", "optimizer", "hardware", "user"]


class PresetHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: PresetKind = "user"
    description: str = ""
    extends: list[str] = []
    requires: list[str] = []
    notes: list[str] = []
    family: str | None = None
    families: list[str] = []


class PresetEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    value: Any = None
    from_: str = Field("", alias="from")
    unset: bool = False


@dataclass
class Preset:
    name: str
    path: Path
    builtin: bool
    header: PresetHeader
    values: dict[str, PresetEntry] = field(default_factory=dict)
    by_family: dict[str, dict[str, PresetEntry]] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return self.header.description

    @property
    def family(self) -> str:
        """The family a base preset trains (the default family for presets that name none)."""
        return self.header.family or DEFAULT_FAMILY

    def made_for(self, family: str) -> bool:
        return not self.header.families or family in self.header.families

    def values_for(self, family: str) -> dict[str, PresetEntry]:
        """What this preset sets in a plan of `family`: [values], then the family's own tables."""
        merged = dict(self.values)
        for table in family_named(family).recipes:
            merged.update(self.by_family.get(table, {}))
        return merged

    def summary(self) -> PresetSummary:
        return PresetSummary(name=self.name, kind=self.header.kind, extends=self.header.extends,
                             description=self.description, path=str(self.path), builtin=self.builtin,
                             family=self.header.family, families=self.header.families)


class PresetSummary(BaseModel):
    """`lorakit presets --json`: one preset as the list shows it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: PresetKind
    extends: list[str]
    description: str
    path: str
    builtin: bool
    family: str | None = None  # base presets: the family they train
    families: list[str] = []  # the families the preset is made for (empty: all)


@dataclass
class ImportedPreset:
    """A preset made in memory from another tool's config (a Kohya SS GUI file), with what reading it found.

    `preset` holds what the config leaves to its tool's defaults (the fit may change those, like any
    preset's); `owned` the values the config sets itself, which are the user's own, like --set.
    """

    preset: Preset
    findings: list[Finding] = field(default_factory=list)
    owned: dict[str, PresetEntry] = field(default_factory=dict)
    family: str = DEFAULT_FAMILY  # the model family the config trains: the plan builds on that family's base preset


def user_presets_dir() -> Path:
    if os.environ.get("LORAKIT_PRESETS_DIR"):
        return Path(os.environ["LORAKIT_PRESETS_DIR"]).expanduser()
    return user_config_dir() / "presets"


class PresetRegistry:
    """All presets visible to this run: built-ins, then the user folder, then --presets-dir folders."""

    def __init__(self, extra_dirs: list[Path] | None = None, *, include_user_dir: bool = True):
        self.builtin_dir = presets_dir()
        self.dirs: list[Path] = [self.builtin_dir]
        if include_user_dir and user_presets_dir().is_dir():
            self.dirs.append(user_presets_dir())
        for directory in extra_dirs or []:
            if not directory.is_dir():
                raise UserError(
                    f"presets folder '{directory}' does not exist or is not a folder.",
                    fix="point --presets-dir at a folder of *.toml presets",
                )
            self.dirs.append(directory)
        self._paths: dict[str, Path] = {}
        for directory in self.dirs:
            for path in sorted(directory.glob("*.toml")):
                self._paths[path.stem] = path
        self._cache: dict[str, Preset] = {}

    def names(self) -> list[str]:
        return sorted(self._paths)

    def load_all(self) -> tuple[list[Preset], list[LorakitError]]:
        """Every preset that loads, and what is wrong with each one that does not: one broken user file
        must not hide the others from `lorakit presets`."""
        loaded: list[Preset] = []
        broken: list[LorakitError] = []
        for name in self.names():
            try:
                loaded.append(self.get(name))
            except LorakitError as exc:
                broken.append(exc)
        return loaded, broken

    def shadowed(self, name: str) -> bool:
        """A user preset that replaces a built-in one of the same name."""
        return name in self._paths and self._paths[name].parent != self.builtin_dir and (
            self.builtin_dir / f"{name}.toml"
        ).is_file()

    def get(self, name: str) -> Preset:
        if name in self._cache:
            return self._cache[name]
        path = self._paths.get(name)
        if path is None and name.endswith(".toml") and Path(name).is_file():
            path = Path(name)
        if path is None:
            import difflib

            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise UserError(
                f"unknown preset '{name}'.{hint}",
                fix="`lorakit presets` lists the presets; a path to a .toml file also works",
            )
        preset = load_preset(path, builtin=path.parent == self.builtin_dir)
        self._cache[name] = preset
        return preset

    def lineage(self, base: Preset, path: tuple[str, ...] = ()) -> list[Preset]:
        """A base preset after the base presets it extends (chroma builds on flux1-dev), each once."""
        if base.name in path:
            raise ConfigError([f"presets extend each other in a circle: {' -> '.join([*path, base.name])}"],
                              context="the presets")
        ordered: list[Preset] = []
        for parent in base.header.extends:
            for preset in self.lineage(self.get(parent), (*path, base.name)):
                if preset.header.kind == "base" and preset not in ordered:
                    ordered.append(preset)
        return [*ordered, base]

    def chain(self, names: list[str]) -> list[Preset]:
        """The presets to apply, in order: each one's `extends` first, every preset once.

        `--preset pony --preset character` gives sdxl-base, pony, character-standard, character: the
        shared base is applied once, at the start, so a later preset never undoes an earlier one's
        values by re-applying the base. The base is sdxl-base unless a base preset is named
        (`--preset kohya-example --preset character` builds the character preset on kohya-example).
        """
        bases = [name for name in dict.fromkeys(names) if self.get(name).header.kind == "base"]
        if len(bases) > 1:
            raise ConfigError(
                [f"{' and '.join(bases)} are both base presets; pick one (task, optimizer and hardware presets combine with either)"],
                context="the presets",
            )
        base = self.get(bases[0] if bases else BASE_PRESET)
        ordered = self.lineage(base)
        seen: set[str] = {p.name for p in ordered}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise ConfigError([f"presets extend each other in a circle: {' -> '.join([*path, name])}"],
                                  context="the presets")
            preset = self.get(name)
            if preset.name in seen or preset.header.kind == "base":
                return  # a base named in `extends` stands for the base chosen for this plan
            for parent in preset.header.extends:
                visit(parent, (*path, name))
            seen.add(preset.name)
            ordered.append(preset)

        for name in names:
            visit(name, ())
        family = family_named(base.family)
        misfits = [f"{p.name} is made for {', '.join(family_named(f).title for f in p.header.families)} and "
                   f"this plan trains {family.title} (its base preset is {base.name}); leave {p.name} out, or plan "
                   f"with the base preset of its family" for p in ordered if not p.made_for(family.name)]
        if misfits:
            raise ConfigError(misfits, context="the presets")
        return ordered


def copy_preset(preset: Preset, destination: Path) -> Path:
    """Copy `preset`'s file to `destination` (a file, or a folder to copy into), to edit as one's own; never overwrites."""
    import shutil

    target = destination / preset.path.name if destination.is_dir() else destination
    check_output_file(target, option="--copy-to", force_option=None)
    shutil.copyfile(preset.path, target)
    return target


def load_preset(path: Path, *, builtin: bool = False) -> Preset:
    """Read and check one preset file, reporting every problem in it at once."""
    try:
        data = tomlio.load_file(path)
    except tomlio.TOMLDecodeError as exc:
        raise UserError(f"preset file {path} cannot be read: {exc}.",
                        fix="save it as UTF-8 TOML (`lorakit presets NAME --copy-to FILE` starts a good one), "
                        "or move it out of the presets folder") from None
    except OSError as exc:
        raise UserError(f"cannot read preset file {path}: {exc.strerror}.") from None
    problems: list[str] = []
    unknown_tables = set(data) - {"preset", "values", "family"}
    if unknown_tables:
        problems.append(f"unknown table(s) {sorted(unknown_tables)}: a preset has only [preset], [values] "
                        "and [family.NAME] tables")
    try:
        header = PresetHeader.model_validate(data.get("preset", {}))
    except ValidationError as exc:
        problems += [f"[preset] {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        header = PresetHeader()
    problems += _header_problems(header)
    values = _read_values(data.get("values", {}), None, problems)
    by_family: dict[str, dict[str, PresetEntry]] = {}
    tables = data.get("family", {})
    if not isinstance(tables, dict):
        problems.append("family: write one table per family, [family.flux1], [family.sd15], ...")
        tables = {}
    for name, table in tables.items():
        if name not in FAMILIES or not isinstance(table, dict):
            problems.append(f"[family.{name}]: not a model family; lorakit plans {', '.join(FAMILIES)}")
            continue
        by_family[name] = _read_values(table, name, problems)
    for key in header.requires:
        try:
            spec_for(key, None)
        except ValueProblem as exc:
            problems.append(f"requires: {exc}")
    if problems:
        raise ConfigError(problems, context=f"preset file {path}")
    return Preset(name=path.stem, path=path, builtin=builtin, header=header, values=values, by_family=by_family)


def _header_problems(header: PresetHeader) -> list[str]:
    named = [header.family] if header.family else []
    unknown = [name for name in [*named, *header.families] if name not in FAMILIES]
    problems = [f"[preset] {name!r} is not a model family; lorakit plans {', '.join(FAMILIES)}" for name in unknown]
    if header.family and header.kind != "base":
        problems.append("[preset] family: only a base preset picks the family (others may say `families = [...]`)")
    return problems


def _read_values(table: dict, family: str | None, problems: list[str]) -> dict[str, PresetEntry]:
    """One table of values ([values] for every family, or [family.NAME]), typed by the keys it may hold."""
    where = "" if family is None else f"[family.{family}] "
    values: dict[str, PresetEntry] = {}
    for key, raw in table.items():
        if key in SECRET_KEYS:
            problems.append(where + secret_refusal(key) + f" (remove {key} from the preset)")
            continue
        entry = PresetEntry(value=raw) if not isinstance(raw, dict) else None
        if entry is None:
            try:
                entry = PresetEntry.model_validate(raw)
            except ValidationError:
                problems.append(f"{where}{key}: write `{key} = VALUE` or `{key} = {{ value = VALUE, from = \"why\" }}`")
                continue
        if entry.unset != (entry.value is None):
            problems.append(f"{where}{key}: give either a value or `unset = true`")
            continue
        try:
            spec = spec_for(key, family)
            if key in RESERVED_KEYS:
                raise ValueProblem(f"{key} cannot be set in a preset: {RESERVED_KEYS[key]}")
            entry.value = coerce(spec, entry.value)
        except ValueProblem as exc:
            problems.append(where + str(exc))
            continue
        values[key] = entry
    return values
