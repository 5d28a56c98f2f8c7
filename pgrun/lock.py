"""One writer per run folder: an exclusive ``flock`` on ``RUN_DIR/.pgrun.lock``.

The kernel drops the lock when its holder exits, however it dies (``kill -9`` included),
so a stale lock never blocks the next run; on NFS, Linux emulates ``flock`` with ``fcntl``
byte-range locks, which the server's lock manager shares between hosts and releases when
the holder's host stops renewing its lease. The file holds who took the lock (host, pid,
start time, command) so that a second writer's error can name it; the holder deletes it
when done (a file left by a killed holder is reused: its lock is free).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from pgrun.runfolder import RunFolderError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no flock; pgrun then takes no lock)
    fcntl = None

LOCK = ".pgrun.lock"


class RunLockedError(RunFolderError):
    """Another process is writing the run folder."""


class RunLock:
    """``with RunLock(run_dir):`` holds the folder's lock, or raises RunLockedError."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if fcntl is None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _describe(os.read(fd, 4096))
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent} is being written by another pgrun process ({holder}); "
                    "two writers would mix their runs. Wait for it to finish (or stop it), or "
                    "use another folder (hydra.run.dir / hydra.sweep.dir).") from None
            try:  # the holder we waited on may have deleted the file: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding it (see acquire)
        os.close(self._fd)
        self._fd = None


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        command = " ".join(info.get("command") or [])
        return (f"pid {info['pid']} on host {info['host']}, since {info['started']}"
                + (f": {command}" if command else ""))
    except (ValueError, KeyError, TypeError):
        return "it is starting up"
