"""SHA-256 of model files, remembered by (real path, size, mtime) so a 6.9 GB checkpoint is read once.

The memo lives in lorakit's cache folder (`sha256.json`); a changed file has another size or mtime
and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lorakit.models.links import lorakit_cache_dir
from lorakit.util.files import write_text_atomic
from lorakit.util.reading import read_json

CHUNK = 8 * 1024 * 1024


def _memo_path() -> Path:
    return lorakit_cache_dir() / "sha256.json"


def _read_memo() -> dict[str, dict]:
    try:
        data = read_json(_memo_path())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_memo(memo: dict[str, dict]) -> None:
    path = _memo_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(memo, indent=1))
    except OSError:
        pass  # the memo only saves time; a read-only cache folder means hashing again next time


def sha256_file(path: Path) -> str:
    real = os.path.realpath(path)
    stat = os.stat(real)
    memo = _read_memo()
    known = memo.get(real)
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return known["sha256"]
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    memo[real] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    _write_memo(memo)
    return digest.hexdigest()


def sha256_folder(root: Path, files: list[Path]) -> str:
    """One hash for a folder: the SHA-256 of its sorted `relative/path  sha256` lines (like sha256sum's output)."""
    lines = sorted(f"{p.relative_to(root).as_posix()}  {sha256_file(p)}\n" for p in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
