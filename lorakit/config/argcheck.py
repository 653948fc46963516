"""Hold a config.toml against an sd-scripts argument table, the way sd-scripts reads the file (docs/sd-scripts.md §2).

sd-scripts flattens the TOML one level and hands the values to argparse as defaults, so they skip
argparse's type conversion and choices, and an unknown key is silently kept as an unused attribute.
lorakit therefore checks each key and value itself, against the table of the installed sd-scripts'
real parser (machine/trainercheck.py reads it) or, failing that, the table lorakit ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

FLAG_ACTIONS = ("_StoreTrueAction", "_StoreFalseAction", "BooleanOptionalAction")
NUMBER_TYPES = ("float", "int_or_float")
# sd-scripts reads this nargs="*" option as a list or a single number (docs/sd-scripts.md §2)
SCALAR_OR_LIST = ("text_encoder_lr",)


class ArgSpec(BaseModel):
    """One action of sd-scripts' parser: the shape of lorakit/data/sd-scripts-args.json's entries."""

    model_config = ConfigDict(extra="ignore")

    dest: str
    type: str | None = None
    action: str = "_StoreAction"
    choices: list[Any] | None = None
    nargs: int | str | None = None


@dataclass(frozen=True)
class ArgProblem:
    key: str
    kind: str  # "unknown" | "type" | "choice"
    detail: str


def flatten_config(data: dict[str, Any]) -> dict[str, Any]:
    """sd-scripts' view of a --config_file: the keys of every top-level table in one namespace, the later wins."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def argument_problems(flat: dict[str, Any], arguments: list[ArgSpec]) -> list[ArgProblem]:
    """Every key that is no argument of the parser, and every value its type, nargs or choices refuse."""
    by_dest = {a.dest: a for a in arguments}
    problems = []
    for key, value in flat.items():
        spec = by_dest.get(key)
        if spec is None:
            problems.append(ArgProblem(key, "unknown", "not an argument of this sd-scripts"))
            continue
        problem = value_problem(spec, value)
        if problem is not None:
            problems.append(problem)
    return problems


def value_problem(spec: ArgSpec, value: Any) -> ArgProblem | None:
    if spec.action in FLAG_ACTIONS:
        return None if isinstance(value, bool) else _wrong(spec, value, "a TOML boolean (true or false)")
    if _takes_list(spec):
        if not isinstance(value, list):
            if spec.dest in SCALAR_OR_LIST and _fits(spec.type, value):
                return None
            return _wrong(spec, value, f"an array (nargs={spec.nargs!r}; a string would be read letter by letter)")
        if isinstance(spec.nargs, int) and len(value) != spec.nargs:
            return _wrong(spec, value, f"an array of {spec.nargs} values")
        items = value
    else:
        items = [value]
    for item in items:
        if not _fits(spec.type, item):
            return _wrong(spec, value, _type_words(spec.type))
        if spec.choices and item not in spec.choices:
            return ArgProblem(spec.dest, "choice", f"{item!r} is not one of {', '.join(map(str, spec.choices))}")
    return None


def _takes_list(spec: ArgSpec) -> bool:
    return spec.nargs in ("*", "+") or (isinstance(spec.nargs, int) and spec.nargs > 1)


def _fits(type_name: str | None, value: Any) -> bool:
    if isinstance(value, bool):
        return type_name == "bool"
    if type_name == "int":
        return isinstance(value, int)
    if type_name in NUMBER_TYPES:
        return isinstance(value, (int, float))
    if type_name in (None, "str", "Path", "PosixPath"):
        return isinstance(value, str)
    return isinstance(value, (str, int, float))  # a converter lorakit does not know: any TOML scalar


def _type_words(type_name: str | None) -> str:
    return {"int": "a TOML integer", "float": "a TOML number", "int_or_float": "a TOML number"}.get(
        type_name or "str", "a TOML string" if type_name in (None, "str", "Path", "PosixPath") else "a TOML value")


def _wrong(spec: ArgSpec, value: Any, wanted: str) -> ArgProblem:
    return ArgProblem(spec.dest, "type", f"{value!r} ({type(value).__name__}) must be {wanted}")
