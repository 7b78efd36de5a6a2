"""What every child process does to never outlive its supervisor."""

from __future__ import annotations

import os
import signal

import trio

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
