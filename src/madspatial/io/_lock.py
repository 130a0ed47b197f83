"""A lock file beside a view store being written, and warnings that point at the user's call.

``views.zarr.lock`` names the pid and host of the writer. On POSIX the writer
also holds an exclusive ``flock`` on it, which the kernel drops when the
process dies (even by ``kill -9``): a lock file whose ``flock`` can be taken
belongs to a dead writer and is taken over with a warning; one whose ``flock``
is held raises :class:`StoreLockedError` naming the writer and the path. A lock
written from another host is never taken over (``flock`` may not reach across
a network file system): the error says to delete it once that writer is gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .._warnings import user_stacklevel, warn_user

__all__ = ["StoreLock", "StoreLockedError", "user_stacklevel", "warn_user"]


class StoreLockedError(RuntimeError):
    """Another process is writing this view store."""


def lock_path(store: str | Path) -> Path:
    p = Path(store)
    return p.with_name(p.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


class StoreLock:
    """Exclusive right to write the view store at ``store`` (a context manager).

    Parameters
    ----------
    store
        The store's path; the lock file is ``<store>.lock`` beside it.
    """

    def __init__(self, store: str | Path):
        self.store = Path(store)
        self.path = lock_path(self.store)
        self._fd: int | None = None

    def _busy(self, info: dict[str, Any], why: str) -> StoreLockedError:
        since = info.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
        return StoreLockedError(
            f"view store {self.store} is being written by pid {info.get('pid', '?')} on host "
            f"{info.get('host', '?')!r} (since {when}; lock file {self.path}){why}. Wait for "
            "that run to finish, or stop it, or pass another store= path."
        )

    def acquire(self) -> StoreLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(20):
            if fcntl is None:  # pragma: no cover
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    old = read_lock(self.path)
                    if old.get("host") == me["host"] and not _pid_alive(int(old.get("pid", -1))):
                        self.path.unlink(missing_ok=True)
                        continue
                    raise self._busy(old, "") from None
            else:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    old = read_lock(self.path)
                    os.close(fd)
                    raise self._busy(old, "") from None
                try:  # the file we locked must still be the one at the path
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            old = read_lock(self.path)
            if old.get("pid") is not None:
                if old.get("host") != me["host"]:
                    os.close(fd)
                    raise self._busy(
                        old,
                        "; it was written on another host, so whether that run is alive cannot "
                        f"be checked from here: if it is not, delete {self.path}",
                    )
                alive = _pid_alive(int(old["pid"]))
                warn_user(
                    f"taking over the stale lock of view store {self.store}: pid {old['pid']} on "
                    f"this host {'no longer holds it' if alive else 'is not running'} (it was "
                    "interrupted); what it wrote is kept and resumed."
                )
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
            self._fd = fd
            return self
        raise StoreLockedError(f"could not take the lock {self.path}; retry.")  # pragma: no cover

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: nobody sees it free
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
