"""The scheduled scrub's pacing (seglake/maintenance/scheduler.py)."""

from __future__ import annotations

import threading
import time

import pytest

from seglake.maintenance.scheduler import ScrubStopped, Throttle

MiB = 1024 * 1024


def test_throttle_paces_to_the_rate() -> None:
    throttle = Throttle(4 * MiB, threading.Event())
    t0 = time.monotonic()
    for _ in range(4):
        throttle(MiB // 2)  # 2 MiB at 4 MiB/s: about half a second
    elapsed = time.monotonic() - t0
    assert 0.45 <= elapsed < 5.0
    assert throttle.done == 2 * MiB


def test_unthrottled_never_sleeps() -> None:
    throttle = Throttle(0, threading.Event())
    t0 = time.monotonic()
    for _ in range(100):
        throttle(64 * MiB)
    assert time.monotonic() - t0 < 0.5


def test_stop_interrupts_the_pacing() -> None:
    stop = threading.Event()
    throttle = Throttle(1, stop)  # 1 byte/s: the next call would sleep for ages
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(ScrubStopped):
        throttle(1000)
    assert time.monotonic() - t0 < 5.0
    with pytest.raises(ScrubStopped):
        throttle(1)
