"""`KEY=VALUE` options (`--set`, `--sweep`): one parser, and one message style that names the option.

Every problem is a ValueProblem whose message starts with the option and what was given, says what
is wrong and shows the form that works, so callers can collect several and report them together.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

from lorakit.config.family import DEFAULT_FAMILY
from lorakit.config.schema import RESERVED_KEYS, SECRET_KEYS, ValueProblem, parse_text, registry, secret_refusal, spec_for

_KEY_SHAPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class KeyValueOption:
    """How one option is written: its name, its form and an example that works."""

    name: str
    form: str
    example: str
    needs_value: bool = False  # an empty VALUE is a mistake (`--sweep KEY=`), not an empty text


SET = KeyValueOption("--set", "KEY=VALUE", "network_dim=32")
SWEEP = KeyValueOption("--sweep", "KEY=V1,V2,...", "network_dim=16,32", needs_value=True)


def split_key_value(item: str, option: KeyValueOption) -> tuple[str, str]:
    """`KEY=VALUE` → (KEY, VALUE) with KEY stripped; a missing `=`, a malformed key or a key lorakit sets raise."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if key in SECRET_KEYS:  # before any message that would quote the item, and so the value
        raise ValueProblem(f"{option.name} {key}: {secret_refusal(key)}")
    if not sep or not key or (option.needs_value and not text.strip()):
        raise ValueProblem(f"{option.name} {item!r}: write {option.form}, e.g. {option.name} {option.example}")
    if not _KEY_SHAPE.match(key):
        close = difflib.get_close_matches(key, list(registry()), n=3, cutoff=0.6)
        fix = f"did you mean {' or '.join(close)}?" if close else f"write {option.form}, e.g. {option.name} {option.example}"
        raise ValueProblem(f"{option.name} {item!r}: {key!r} is not a key name (letters, digits and _ only); {fix}")
    if key in RESERVED_KEYS:
        raise ValueProblem(f"{option.name} {key}: lorakit sets this itself ({RESERVED_KEYS[key]})")
    return key, text


def typed_value(key: str, text: str, option: KeyValueOption, family: str | None = DEFAULT_FAMILY) -> object:
    """`text` parsed with `key`'s type in `family` (None: any family's); an unknown key or a value that does
    not fit raises, naming the option."""
    try:
        return parse_text(spec_for(key, family), text)
    except ValueProblem as exc:
        raise ValueProblem(f"{option.name} {exc}") from None


def check_key_value_items(items: list[str], *, literal_values: bool) -> list[str]:
    """Problems in `key=value` lists as sd-scripts parses them (optimizer_args, network_args, ...).

    sd-scripts splits each item on '='; a second '=' breaks it, and for optimizer and scheduler
    arguments the value goes through ast.literal_eval, so a bare word fails.
    """
    problems = []
    for item in items:
        if item.count("=") != 1:
            problems.append(f"'{item}' must be exactly one key=value pair")
            continue
        key, value = item.split("=")
        if not key.strip():
            problems.append(f"'{item}' has no key before '='")
        elif literal_values:
            try:
                ast.literal_eval(value)
            except (ValueError, SyntaxError):
                problems.append(
                    f"'{item}': the value {value!r} is not a Python literal (numbers, True/False, tuples,"
                    f" or quoted strings such as {key}='{value}')"
                )
    return problems
