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

    [values]
    network_dim = { value = 16, from = "docs/recommendations.md §4 Network rank" }   # or plainly: network_dim = 16
    seed = { unset = true, from = "why" }    # leave the key unset (sd-scripts' default), like --set seed=none
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lorakit.config.schema import RESERVED_KEYS, SECRET_KEYS, ValueProblem, coerce, secret_refusal, spec_for
from lorakit.errors import ConfigError, LorakitError, UserError
from lorakit.findings import Finding
from lorakit.util import tomlio
from lorakit.util.files import check_output_file
from lorakit.util.resources import presets_dir, user_config_dir

BASE_PRESET = "sdxl-base"
PresetKind = Literal["base", "flavour", "task", "optimizer", "hardware", "user"]


class PresetHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: PresetKind = "user"
    description: str = ""
    extends: list[str] = []
    requires: list[str] = []
    notes: list[str] = []


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

    @property
    def description(self) -> str:
        return self.header.description

    def summary(self) -> PresetSummary:
        return PresetSummary(name=self.name, kind=self.header.kind, extends=self.header.extends,
                             description=self.description, path=str(self.path), builtin=self.builtin)


class PresetSummary(BaseModel):
    """`lorakit presets --json`: one preset as the list shows it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: PresetKind
    extends: list[str]
    description: str
    path: str
    builtin: bool


@dataclass
class ImportedPreset:
    """A preset made in memory from another tool's config (a Kohya SS GUI file), with what reading it found.

    `preset` holds what the config leaves to its tool's defaults (the fit may change those, like any
    preset's); `owned` the values the config sets itself, which are the user's own, like --set.
    """

    preset: Preset
    findings: list[Finding] = field(default_factory=list)
    owned: dict[str, PresetEntry] = field(default_factory=dict)


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
        ordered: list[Preset] = [base]
        seen: set[str] = {base.name}

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
    unknown_tables = set(data) - {"preset", "values"}
    if unknown_tables:
        problems.append(f"unknown table(s) {sorted(unknown_tables)}: a preset has only [preset] and [values]")
    try:
        header = PresetHeader.model_validate(data.get("preset", {}))
    except ValidationError as exc:
        problems += [f"[preset] {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        header = PresetHeader()
    values: dict[str, PresetEntry] = {}
    for key, raw in data.get("values", {}).items():
        if key in SECRET_KEYS:
            problems.append(secret_refusal(key) + f" (remove {key} from the preset)")
            continue
        entry = PresetEntry(value=raw) if not isinstance(raw, dict) else None
        if entry is None:
            try:
                entry = PresetEntry.model_validate(raw)
            except ValidationError:
                problems.append(f"{key}: write `{key} = VALUE` or `{key} = {{ value = VALUE, from = \"why\" }}`")
                continue
        if entry.unset != (entry.value is None):
            problems.append(f"{key}: give either a value or `unset = true`")
            continue
        try:
            spec = spec_for(key)
            if key in RESERVED_KEYS:
                raise ValueProblem(f"{key} cannot be set in a preset: {RESERVED_KEYS[key]}")
            entry.value = coerce(spec, entry.value)
        except ValueProblem as exc:
            problems.append(str(exc))
            continue
        values[key] = entry
    for key in header.requires:
        try:
            spec_for(key)
        except ValueProblem as exc:
            problems.append(f"requires: {exc}")
    if problems:
        raise ConfigError(problems, context=f"preset file {path}")
    return Preset(name=path.stem, path=path, builtin=builtin, header=header, values=values)
