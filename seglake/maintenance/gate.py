"""The gate in front of every destructive CLI mode (gc-run, gc-rewrite,
rebuild-index, mpu-gc-run, db-reindex, buckets delete, ...).

Rules this file keeps (SPEC §7, the quiesce protocol of
``seglake/maintenance/main.py``):
- A live server is one whose admin socket answers. While one runs, a
  destructive mode proceeds only if the writer reports the maintenance state
  ``quiesced`` or the operator confirmed with ``--yes`` (``-yes``).
- A server that holds the data-dir lock but does not answer (starting,
  stopping, hung) is never bypassed, not even with ``--yes``: nobody could
  say what it is doing to the files.
- With no server, a command that works on the files itself does so under
  ``offline_lock``: the supervisor's data-dir lock and the writer's lock,
  both taken without waiting, so no server or orphaned writer can start (or
  still be running) while it changes the files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import trio

from seglake.config import Config
from seglake.maintenance.admin_client import AdminRefused, AdminUnavailable, admin_call

QUIESCED = "quiesced"
WRITER_LOCK_NAME = ".seglake-writer.lock"


class GateRefused(RuntimeError):
    """The destructive mode must not run now; the message says what to do."""


def live_state(cfg: Config) -> str | None:
    """The live server's maintenance state, or None when no server answers.

    Raises ``GateRefused`` when a server answers but refuses us (bad token).
    """
    try:
        doc = trio.run(admin_call, cfg, "maintenance", {"action": "status"})
    except AdminRefused as exc:
        raise GateRefused(f"the server on {cfg.root} refused the state query: {exc}") from None
    except AdminUnavailable:
        return None
    state = doc.get("state") if isinstance(doc, dict) else None
    return str(state) if state is not None else "unknown"


def try_lock(path: Path) -> int | None:
    """``path`` opened (created if missing) and flocked exclusively, no wait:
    its fd, which the caller closes to release the lock; None, with nothing
    left open, when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_held(path: Path) -> bool:
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


def require_quiesced_or_yes(cfg: Config, yes: bool, mode: str) -> None:
    """Refuse ``mode`` on a live server that is not quiesced, unless ``yes``.

    Returns normally when the mode may run: either a live server is quiesced
    (or the operator passed ``--yes``), or no server runs at all (then the
    caller works offline under ``offline_lock``).
    """
    state = live_state(cfg)
    if state is None:
        if _lock_held(cfg.lock_path):
            raise GateRefused(
                f"{mode}: a Seglake server holds the lock on {cfg.root} but its admin socket "
                "does not answer (starting, stopping or hung); wait for it or stop it first"
            )
        return
    if state == QUIESCED or yes:
        return
    raise GateRefused(
        f"{mode} is destructive and the server on {cfg.root} is live with maintenance state "
        f"{state!r}; run `seglake maintenance enable` (seed: `-mode maintenance "
        "-maintenance-action enable`) and wait for 'quiesced', or pass --yes (-yes) to "
        "run it anyway"
    )


@contextlib.contextmanager
def offline_lock(cfg: Config, mode: str) -> Iterator[None]:
    """Hold the data-dir and writer locks while ``mode`` works on the files.

    Raises ``GateRefused`` if a server or writer holds either lock.
    """
    if not cfg.root.is_dir():
        raise GateRefused(f"{mode}: {cfg.root} is not a directory")
    fds: list[int] = []
    try:
        for path in (cfg.lock_path, cfg.root / WRITER_LOCK_NAME):
            fd = try_lock(path)
            if fd is None:
                raise GateRefused(
                    f"{mode}: {path.name} is held by another process (a server or writer is "
                    f"running on {cfg.root}); stop it, or enter maintenance mode and retry"
                )
            fds.append(fd)
        # Same "pid time" content as the supervisor's heartbeat, so a server
        # that fails to start names us as the holder.
        os.ftruncate(fds[0], 0)
        os.pwrite(fds[0], f"{os.getpid()} {int(time.time())}\n".encode(), 0)
        yield
    finally:
        for fd in fds:
            os.close(fd)
