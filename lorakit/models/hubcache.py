"""huggingface_hub's download cache, read in pure Python: planning never imports huggingface_hub, so
it stays fast and cannot touch the network.

The layout is huggingface_hub's documented one (guides/manage-cache):

    <cache>/models--OWNER--NAME/refs/<branch or tag>      the commit that revision points at
    <cache>/models--OWNER--NAME/snapshots/<commit>/<file> a symlink into blobs/ (a real file without symlinks)
    <cache>/models--OWNER--NAME/blobs/<etag>              the contents

The cache folder and offline mode follow the same environment variables as huggingface_hub itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _expand(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


def hf_home() -> Path:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface")
    return _expand(os.environ.get("HF_HOME", default))


def hub_cache_dir() -> Path:
    """HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else HF_HOME/hub."""
    legacy = os.environ.get("HUGGINGFACE_HUB_CACHE", str(hf_home() / "hub"))
    return _expand(os.environ.get("HF_HUB_CACHE", legacy))


def hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in TRUE_VALUES


def token_found() -> bool:
    """Whether huggingface_hub would find a token: HF_TOKEN (or the legacy HUGGING_FACE_HUB_TOKEN), else the
    file `hf auth login` writes (HF_TOKEN_PATH, else HF_HOME/token). Only whether there is one: never read out."""
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    path = _expand(os.environ.get("HF_TOKEN_PATH", str(hf_home() / "token")))
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def repo_dir(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


@dataclass(frozen=True)
class Snapshot:
    commit: str
    path: Path

    def file(self, filename: str) -> Path | None:
        """The cached file, or None when absent (a dangling link counts as absent: its blob is gone)."""
        path = self.path / filename
        return path if path.is_file() else None


def snapshot(repo_id: str, revision: str, cache: Path | None = None) -> Snapshot | None:
    """The snapshot folder a revision (branch, tag or full commit hash) resolves to in the cache."""
    root = repo_dir(repo_id, cache)
    if COMMIT.match(revision):
        commit = revision
    else:
        ref = root / "refs" / revision
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
    path = root / "snapshots" / commit
    return Snapshot(commit, path) if commit and path.is_dir() else None


def size_of(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)
