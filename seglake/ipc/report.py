"""A process's periodic report of its counters to the supervisor.

Frontends and the writer each run ``report_forever``: every ``interval``
seconds one ``Report`` (``messages.py``) on the supervisor's control socket
carries the process's name, role, pid, start time, counters and gauges
(``seglake/metrics/merge.py`` says how the supervisor merges them). A
supervisor that does not answer costs a skipped report, never the process:
the next report carries the same monotonic counters.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import trio

from seglake.errors import S3Error
from seglake.ipc.call import call_typed
from seglake.ipc.channel import ChannelBroken, ChannelClosed
from seglake.ipc.messages import MessageError, Report

log = logging.getLogger(__name__)

Collect = Callable[[], tuple[dict[str, Any], dict[str, Any]]]  # (counters, gauges)


async def report_forever(
    path: str, name: str, role: str, collect: Collect, interval: float
) -> None:
    started = time.time()
    pid = os.getpid()
    failed = False
    while True:
        await trio.sleep(interval)
        counters, gauges = collect()
        msg = Report(
            process=name, role=role, pid=pid, started=started, at=time.time(),
            counters=counters, gauges=gauges,
        )  # fmt: skip
        try:
            await call_typed(path, msg)
            failed = False
        except (
            OSError, S3Error, MessageError, ChannelBroken, ChannelClosed, trio.TooSlowError,
        ) as exc:  # fmt: skip
            if not failed:
                log.warning("stats report to the supervisor failed: %r", exc)
            failed = True
