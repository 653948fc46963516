"""Lock files that keep a second lorakit off a plan or a batch while one is working on it.

The file is created exclusively and holds the holder's pid, host, start time and the lock's own path.
A lock is not held when its holder has died on this host, or when it was copied along with its folder
(`cp -r` of a plan that is training): both are taken over. A holder on another host cannot be checked,
so its lock is respected until someone deletes it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path

from lorakit.errors import Busy

PLAN_LOCK_FILE = "run.lock"  # one run per plan: held by the lorakit process that trains it


class PidLock:
    """`with PidLock(path, what="this plan", doing="training"):` refuses with `Busy` while another holds it."""

    def __init__(self, path: Path, *, what: str, doing: str, why: str = ""):
        self.path = path
        self.what, self.doing, self.why = what, doing, why
        self.taken_over: dict | None = None  # the holder of a stale lock this one replaced

    def __enter__(self) -> PidLock:
        where = str(self.path.resolve())
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
                           "path": where})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and held(holder, where):
                    raise self._refusal(holder) from None
                self.taken_over = holder
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(mine)
            return self
        raise Busy(f"could not take the lock {self.path}: another lorakit took it at the same moment.",
                   fix="see which with `cat` on that file, then run again")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)

    def refuse_if_held(self) -> None:
        """Raise `Busy` while another lorakit holds the lock, without taking it."""
        if not self.path.is_file():
            return
        holder = self._holder()
        if holder is not None and held(holder, str(self.path.resolve())):
            raise self._refusal(holder)

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
            return holder if isinstance(holder, dict) else None
        except (OSError, ValueError):
            return None  # unreadable (a holder that died while writing it): treated as stale

    def _refusal(self, holder: dict) -> Busy:
        pid, host, started = holder.get("pid"), holder.get("host"), holder.get("started")
        message = f"{self.what} is already {self.doing}: lorakit pid {pid} on {host} holds {self.path} (since {started})."
        if self.why:
            message += f" {self.why}"
        if host == socket.gethostname():
            fix = f"wait for it to finish, or stop it with: kill -INT {pid}"
        else:
            fix = (f"wait for it to finish on {host}; lorakit cannot see processes there, so if it is gone for good, "
                   f"delete {self.path}")
        return Busy(message, fix=fix)


def held(holder: dict, where: str) -> bool:
    """Whether a lock's holder still holds the lock file at `where` (its resolved path)."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's lorakit: it cannot be checked from here
    if holder.get("path", where) != where:
        return False  # copied along with its folder: it locks the original, not this copy
    try:
        pid = int(holder.get("pid", ""))
        if pid <= 0:
            return False  # not a process (kill(0) would ask about our own group)
        os.kill(pid, 0)
    except (ProcessLookupError, TypeError, ValueError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
