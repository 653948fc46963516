"""Paths sd-scripts can load, for models in huggingface_hub's cache.

sd-scripts reads a base checkpoint given as a symlink with one `os.readlink` and uses the result
relative to its working directory (`sdxl_train_util._load_target_model`); the Hub cache's snapshot
files are *relative* symlinks into `blobs/`, whose names have no `.safetensors` suffix either. So a
snapshot path given to sd-scripts as it is fails to load. lorakit gives sd-scripts its own link
instead, with an absolute target and the file's real name:

    <lorakit cache>/models/OWNER--NAME/<revision>/<filename or repo name>  ->  <hub cache>/.../snapshots/<commit>/...

The link's path depends only on the reference, so a plan can name it before the download happens;
`lorakit fetch-model` and launch point it at the snapshot they find or download.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import quote

CACHE_ENV = "LORAKIT_CACHE_DIR"


def lorakit_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.path.expanduser(os.environ[CACHE_ENV]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lorakit"


def hub_link(repo_id: str, revision: str, name: str) -> Path:
    """Where lorakit's link for a Hub file or folder lives (`name` may hold subfolders)."""
    return lorakit_cache_dir() / "models" / repo_id.replace("/", "--") / quote(revision, safe="") / name


def needs_local_link(path: Path) -> bool:
    """A user's own symlink with a relative target breaks sd-scripts' readlink the same way."""
    return path.is_symlink() and not os.path.isabs(os.readlink(path))


def local_link(path: Path) -> Path:
    digest = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return lorakit_cache_dir() / "links" / digest / path.name


def point(link: Path, target: Path) -> None:
    """Make `link` a symlink to the absolute `target`, replacing an older link (never a real file)."""
    target = Path(os.path.abspath(target))
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
    elif link.exists():
        raise FileExistsError(f"'{link}' is not a lorakit link; lorakit will not replace it")
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
