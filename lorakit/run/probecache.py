"""The trainer probe's answer, kept in lorakit's cache folder while the trainer's Python is unchanged.

Importing torch in the trainer's Python takes seconds, so a second `doctor` reuses the last answer
when the same Python, asked the same, in the same environment, still has the same import folders:
installing or removing a package changes its site-packages folder's mtime, and so the key. Only
answers where every module imported are kept: while something is missing, each doctor asks again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from lorakit.models.links import lorakit_cache_dir
from lorakit.util.files import write_text_atomic

CACHE_FOLDER = "trainer-probes"
PATH_TIMEOUT_S = 30


def probe_key(python: str, request: str, env: dict[str, str]) -> str | None:
    """The key of an answer, or None when the trainer's import folders cannot be read (then nothing is cached)."""
    try:
        done = subprocess.run([python, "-c", "import json, sys; print(json.dumps(sys.path))"], capture_output=True,
                              text=True, timeout=PATH_TIMEOUT_S, env=env)
        folders = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    if not isinstance(folders, list):
        return None
    # "" is `-c`'s working folder, which the probe (run as a script) does not import from
    stamps = [(folder, _mtime(folder)) for folder in folders if isinstance(folder, str) and folder]
    parts = [python, os.path.realpath(python), request, sorted(env.items()), stamps]
    return hashlib.sha256(json.dumps(parts, default=str).encode("utf-8")).hexdigest()


def _mtime(folder: str) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def _path(key: str) -> Path:
    return lorakit_cache_dir() / CACHE_FOLDER / f"{key}.json"


def read_answer(key: str | None) -> dict | None:
    if key is None:
        return None
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def keep_answer(key: str | None, data: dict) -> None:
    if key is None or not all(info.get("ok") for info in data.get("imports", {}).values()):
        return
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(data))
    except OSError:
        pass  # the cache only saves time
