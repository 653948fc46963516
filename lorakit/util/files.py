"""May lorakit write here? One rule for folders, one for files, and a write that never leaves half a file.

lorakit never writes over the user's files. A folder it fills (a plan, a batch, a prepared dataset)
must be new or empty, or already hold that same lorakit thing (known by its marker file) and the user
asked to replace it. A file it writes must not exist unless the user asked to replace it. Both refuse
with a UserError whose fix names the option to change. A write that fails on a full disk (or quota) is
told as such: which file, how much is free, and what to do.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

from lorakit.errors import UserError


def check_output_folder(folder: Path, *, replace: bool = False, option: str = "--out", marker: str | None = None,
                        kind: str | None = None, replace_note: str = "", force_option: str = "--force") -> None:
    """Refuse a `folder` that lorakit would clobber.

    A missing or empty folder is fine. One that holds a lorakit `kind` (its `marker` file is there) is
    fine only with `replace`; `replace_note` says what replacing does to the old files. Anything else
    (a file, a folder of other things) is refused. `option` is how the user named the folder.
    """
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} '{folder}' is a file, not a folder.", fix=f"give {option} a new or empty folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if marker is None or not (folder / marker).is_file():
        what = f", not a lorakit {kind}" if kind else ""
        raise UserError(f"{option} '{folder}' is a folder with other files in it{what}; lorakit never writes over your files.",
                        fix=f"give {option} a new or empty folder")
    if not replace:
        note = f" ({replace_note})" if replace_note else ""
        raise UserError(f"{option} '{folder}' already holds a {kind}.",
                        fix=f"pass {force_option} to replace it{note}, or choose another {option}")


def check_output_file(path: Path, *, replace: bool = False, option: str = "-o", why: str = "", example: str = "",
                      force_option: str | None = "--force") -> None:
    """Refuse to write `path` when it is a folder, or an existing file the user did not ask to replace.

    `why` says what an existing file may hold that matters (e.g. edits saved there by another tool);
    `force_option` is None where the command has no way to replace files.
    """
    if path.is_dir():
        such_as = f" such as {example}" if example else ""
        raise UserError(f"{option} '{path}' is a folder.", fix=f"give {option} a file name{such_as}")
    if path.exists() and not replace:
        because = f" ({why})" if why else ""
        fix = f"pass {force_option} to replace it, or choose another {option}" if force_option else f"choose another {option}"
        raise UserError(f"'{path}' already exists; lorakit does not overwrite it{because}.", fix=fix)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step, so a reader never sees half a file and a crash leaves the old one."""
    # pid and thread in the name: two writers of the same file (a batch runner and a launch) never share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno is None:
            raise
        # name the file the user knows, not the hidden temp file (OSError picks the subclass from errno)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# what to do about a full disk; each caller says what to run afterwards
DISK_FULL_FIX = ("free space on that disk (earlier runs in a plan's previous/ folder and checkpoints you no longer "
                 "need are the usual candidates), or use a folder on a disk with room")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def disk_full_text(exc: OSError, path: Path | str | None = None) -> str:
    """`the disk is full (… free there)`, or the quota's version, for an error of `is_disk_full`."""
    where = Path(path or exc.filename or ".")
    what = "your disk quota is used up" if exc.errno == errno.EDQUOT else "the disk is full"
    free = free_bytes(where)
    return what + (f" ({_size_text(free)} free there)" if free is not None else "")


def free_bytes(path: Path) -> int | None:
    """Free space on the disk that holds `path` (its nearest existing folder); None when it cannot be read."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _size_text(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n} bytes"
