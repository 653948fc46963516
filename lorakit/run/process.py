"""The trainer as a process group: started in its own session, signalled and ended as a whole, its
pipes drained; and the `Stopper` that asks running launches to stop, from another thread or a signal
handler. Nothing here knows about plans or records (lorakit.run.launch does).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lorakit.errors import ExitCode, LorakitError

if TYPE_CHECKING:
    import subprocess

READ_SIZE = 65536


class Interrupted(LorakitError):
    """Stopped on request before a trainer started (no run record is written)."""

    exit_code = ExitCode.INTERRUPTED


class Stopper:
    """Asks running launches to stop; each further request escalates at once (SIGINT → SIGTERM → SIGKILL).

    Thread-safe and signal-safe, so one Stopper can serve several launches running in threads.
    """

    def __init__(self) -> None:
        self._requests = 0
        self._lock = threading.Lock()
        self.stopped = threading.Event()
        self.trainers = 0  # launches between starting their trainer and closing its record

    @contextmanager
    def training(self) -> Iterator[None]:
        with self._lock:
            self.trainers += 1
        try:
            yield
        finally:
            with self._lock:
                self.trainers -= 1

    def stop(self) -> None:
        with self._lock:
            self._requests += 1
        self.stopped.set()

    @property
    def requests(self) -> int:
        return self._requests


@contextmanager
def stop_on_signals(stopper: Stopper, *, interrupt_when_idle: bool = True) -> Iterator[Stopper]:
    """Route Ctrl-C, SIGTERM and SIGHUP to `stopper` while the block runs (main thread only), then restore.

    A SIGHUP this process inherited as ignored (`nohup`) stays ignored, so the run outlives the terminal.

    With no trainer running (Gate 4, a model download), `interrupt_when_idle` makes the signal raise
    KeyboardInterrupt at once, so nothing starts; the batch runner, whose main thread only waits for its
    workers, passes False and its workers check the stopper before each launch.
    """
    def handler(signum, frame):
        stopper.stop()
        if interrupt_when_idle and stopper.trainers == 0:
            raise KeyboardInterrupt

    signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    signals = [sig for sig in signals if not (sig.name == "SIGHUP" and signal.getsignal(sig) == signal.SIG_IGN)]
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield stopper
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def process_alive(pid: int, *, group: bool = False) -> bool:
    """Whether the process (or any living process of the group) still exists."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not group or _group_has_a_living_member(pid)


def _group_has_a_living_member(pgid: int) -> bool:
    """killpg also finds zombies, and where PID 1 does not reap orphans (many containers) they stay for
    good; they hold no memory or pipes, so a group of zombies has ended. Without /proc, assume it lives."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            return True
    return False


def start_group(command: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """Start `command` (in `cwd`) as the leader of a new process group, its stdout and stderr piped to us.

    Its own session keeps the terminal's Ctrl-C away from it: lorakit decides what the trainer gets.
    """
    import subprocess

    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=cwd, start_new_session=True)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to the group; a group that is already gone (or no longer ours) needs nothing."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(process: subprocess.Popen, grace_s: float) -> None:
    """Nothing of the trainer may outlive it: what remains of its process group is terminated, then killed,
    each given `grace_s` to go."""
    pgid = process.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        process.poll()  # reap the leader, or its zombie keeps the group alive
        if not process_alive(pgid, group=True):
            return
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (process.poll() is None or process_alive(pgid, group=True)):
            time.sleep(0.05)


def drain(stream, name: str, chunks: queue.Queue) -> None:
    """Drain one pipe as fast as the trainer writes it; the parsing happens elsewhere. Puts (name, bytes)
    for each read and (name, None) when the pipe closes."""
    fd = stream.fileno()
    try:
        while True:
            data = os.read(fd, READ_SIZE)
            if not data:
                break
            chunks.put((name, data))
    except OSError:
        pass
    finally:
        chunks.put((name, None))
