"""TOML in and out: tomllib to read, tomli-w to write (also for single values in templates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import tomli_w

from lorakit.util.reading import MAX_CONFIG_BYTES, read_text_limited

TOMLDecodeError = tomllib.TOMLDecodeError


def loads(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise TOMLDecodeError("values nested too deeply to read (thousands of levels)") from None


def load_file(path: Path, limit: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A TOML file; any content that is not TOML (too large, not UTF-8, nested too deep) is a TOMLDecodeError."""
    try:
        text = read_text_limited(path, limit)
    except ValueError as exc:
        raise TOMLDecodeError(str(exc)) from None
    return loads(text)


def dumps(data: dict[str, Any]) -> str:
    return tomli_w.dumps(data)


def value(obj: Any) -> str:
    """One TOML value as text, arrays kept on one line (what a `key = ...` line in a template needs)."""
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(value(item) for item in obj) + "]"
    if isinstance(obj, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in obj.items()) + " }"
    line = tomli_w.dumps({"v": obj})
    return line.split("=", 1)[1].strip()


def key(name: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise."""
    line = tomli_w.dumps({name: 0})
    return line.rsplit("=", 1)[0].strip()
