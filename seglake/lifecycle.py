"""What every child process does to never outlive its supervisor."""

from __future__ import annotations

import os
import signal

import trio

from seglake.private_files import use_private_umask

# A child's exit code for "this configuration cannot start on this store"
# (e.g. --site-id on a store with data): restarting cannot help, so the
# supervisor stops with it instead of retrying.
EXIT_REFUSED = 2

PARENT_CHECK_INTERVAL_S = 0.5


async def exit_when_orphaned() -> None:
    """Send ourselves SIGTERM (graceful stop) once the supervisor is gone.

    A restarted supervisor takes the data-dir lock as soon as the old one
    dies; children of the old one must not keep serving or writing. (Linux's
    PDEATHSIG is tied to the forking *thread*, which trio recycles, so we
    poll the parent pid instead.)
    """
    expected = int(os.environ.get("SEGLAKE_PARENT_PID", "0") or 0)
    if not expected:
        return
    while True:
        if os.getppid() != expected:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        await trio.sleep(PARENT_CHECK_INTERVAL_S)


# ---- the supervisor's hand-off to a child ------------------------------------------
#
# A child's configuration holds the secret key, so it never travels on a
# command line (any local user reads /proc/<pid>/cmdline) or in the
# environment: the supervisor writes it into a pipe the child inherits, and
# the child reads it once and closes its end. A frontend gets a second pipe
# to say "accepting connections", so READY=1 means every frontend serves.

CONFIG_FD_FLAG = "--config-fd"
READY_FD_FLAG = "--ready-fd"
# The whole config is a few KiB; the pipe is written before the child runs,
# so it must fit in the kernel's pipe buffer (64 KiB on Linux).
MAX_CONFIG_BYTES = 60 * 1024


def read_child_args(args: list[str]) -> tuple[str, int | None, list[str]]:
    """``--config-fd N [--ready-fd M] REST...`` → (config JSON, ready fd, REST).

    Also sets umask 077: a child started by hand rather than by the
    supervisor must not create readable files either."""
    use_private_umask()
    if len(args) < 2 or args[0] != CONFIG_FD_FLAG:
        raise SystemExit(f"usage: {CONFIG_FD_FLAG} FD [{READY_FD_FLAG} FD] ...")
    fd = int(args[1])
    rest = args[2:]
    ready: int | None = None
    if len(rest) >= 2 and rest[0] == READY_FD_FLAG:
        ready = int(rest[1])
        rest = rest[2:]
    chunks: list[bytes] = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(), ready, rest


def signal_ready(fd: int | None) -> None:
    """Tell the supervisor this child is serving (one byte, then close)."""
    if fd is None:
        return
    try:
        os.write(fd, b"R")
    finally:
        os.close(fd)
