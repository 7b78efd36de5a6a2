"""The data dir's flocks: who may change its files.

Rules this file keeps:
- The supervisor holds ``.seglake.lock`` for as long as a server runs, with
  "pid time" inside (its heartbeat, refreshed while it runs).
- The writer holds ``.seglake-writer.lock``: one writer per data dir, even
  across a supervisor crash.
- An operator command that works on the files with no server holds both
  (``offline_lock``), taken without waiting, so no server or orphaned writer
  can start, or still be running, meanwhile. It writes its own "pid time"
  into ``.seglake.lock``, so a server that fails to start names it.
- Every lock is ``flock(2)`` on a file opened ``O_CLOEXEC``: it goes away
  when its fd is closed or its process dies, and no child inherits it.
  Two fds of one process conflict too, so a lock is taken once per holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from seglake.config import Config


class DataDirBusy(RuntimeError):
    """The data dir cannot be worked on now; the message says what to do."""


def try_lock(path: Path) -> int | None:
    """``path`` opened (created if missing) and flocked exclusively, no wait:
    its fd, which the caller closes to release the lock; None, with nothing
    left open, when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_held(path: Path) -> bool:
    """True when another process holds an flock on ``path`` (probe, no wait)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may just have taken
    return False


def write_holder(fd: int) -> None:
    """Record "pid time" in a held lock file: who holds it, and since when
    (the supervisor refreshes it as a heartbeat)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {int(time.time())}\n".encode(), 0)


@contextlib.contextmanager
def offline_lock(cfg: Config, mode: str) -> Iterator[int]:
    """Hold the data-dir and writer locks while ``mode`` works on the files;
    yields the writer lock's fd (the embedded writer keeps using it).

    Raises ``DataDirBusy`` if a server or writer holds either lock.
    """
    if not cfg.root.is_dir():
        raise DataDirBusy(f"{mode}: {cfg.root} is not a directory")
    fds: list[int] = []
    try:
        for path in (cfg.lock_path, cfg.writer_lock_path):
            fd = try_lock(path)
            if fd is None:
                raise DataDirBusy(
                    f"{mode}: {path.name} is held by another process (a server or writer is "
                    f"running on {cfg.root}); stop it, or enter maintenance mode and retry"
                )
            fds.append(fd)
        write_holder(fds[0])
        yield fds[1]
    finally:
        for fd in fds:
            os.close(fd)
