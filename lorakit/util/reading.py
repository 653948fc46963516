"""Reading files that lorakit did not necessarily write: bounded in size, and every way they can be
malformed turned into a ValueError that says what is wrong.

A user file can be anything: another encoding, a JSON array nested 100,000 deep (the json and
tomllib parsers recurse and raise RecursionError, which is no ValueError), or a file of gigabytes
named like a config. Callers already turn ValueError and OSError into their own clear UserError; these
helpers make sure nothing else escapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
# lorakit's own records (plan.json, run.json, batch.json) list every image and checkpoint of a run;
# 64 MiB is hundreds of times the largest seen, and still small enough to read at once.
MAX_RECORD_BYTES = 64 * MIB
# Files people write by hand or save from a GUI (presets, GUI configs, calibration): a few KiB each.
MAX_CONFIG_BYTES = 4 * MIB


class FileTooLarge(ValueError):
    """A file larger than lorakit reads for its kind (a ValueError, so callers report it like bad content)."""


def read_bytes_limited(path: Path, limit: int) -> bytes:
    """The file's bytes, refusing a file over `limit` without reading it into memory."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"the file is larger than {limit // MIB} MiB, far more than such a file ever holds")
    return data


def decode_utf8(data: bytes) -> str:
    """UTF-8 text, or a ValueError naming the first byte that is not (UnicodeDecodeError's own text is long)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def read_text_limited(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    return decode_utf8(read_bytes_limited(path, limit))


def parse_json(text: str, **kwargs: Any) -> Any:
    """json.loads, with nesting too deep for the parser reported as a ValueError."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply to read (thousands of levels; no config nests so deep)") from None


def read_json(path: Path, limit: int = MAX_RECORD_BYTES) -> Any:
    """A JSON file read as lorakit reads its records: bounded, UTF-8, any malformation a ValueError."""
    return parse_json(read_text_limited(path, limit))
