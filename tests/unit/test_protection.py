"""The abuse-limit building blocks: token buckets, the failure limiter, the
replay cache, client naming and the slow-body guard (time passed in)."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest
import trio
import trio.testing

from seglake.errors import S3Error
from seglake.frontend.http import Message
from seglake.frontend.protection import (
    FailureLimiter,
    TokenBucket,
    client_ip,
    timed_receive,
)
from seglake.frontend.replay_table import SharedReplayTable


def test_token_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(burst=3, rate=0.5, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert bucket.available(0.0) == 0.0
    assert bucket.available(1.0) == pytest.approx(0.5)
    assert bucket.available(2.0) == pytest.approx(1.0)
    assert bucket.available(100.0) == 3.0  # never above the burst
    bucket.take(100.0)
    assert bucket.available(100.0) == 2.0


def test_limiter_blocks_after_burst_and_recovers() -> None:
    limiter = FailureLimiter(burst=5, rate=1.0)
    for _ in range(5):
        assert not limiter.blocked("1.2.3.4", 10.0)
        limiter.failed("1.2.3.4", 10.0)
    assert limiter.blocked("1.2.3.4", 10.0)
    assert not limiter.blocked("5.6.7.8", 10.0)  # per name
    assert limiter.blocked("1.2.3.4", 10.9)
    assert not limiter.blocked("1.2.3.4", 11.0)  # one token back after 1 s


def test_limiter_is_bounded() -> None:
    limiter = FailureLimiter(burst=1, rate=0.001, max_tracked=100)
    for i in range(1000):
        limiter.failed(f"ip{i}", 0.0)
    assert len(limiter) == 100
    assert limiter.blocked("ip999", 0.0)
    assert not limiter.blocked("ip0", 0.0)  # forgotten first


SIG_A = "a" * 64
SIG_B = "b" * 64


def test_replay_table_ttl(tmp_path: Path) -> None:
    table = SharedReplayTable(tmp_path / "replay", ttl=10.0, slots=64)
    try:
        assert not table.seen(SIG_A, 1000.0)
        assert table.seen(SIG_A, 1005.0)
        assert not table.seen(SIG_B, 1005.0)
        assert not table.seen(SIG_A, 1010.5)  # expired: recorded anew
        assert table.seen(SIG_A, 1011.0)
    finally:
        table.close()


def test_replay_table_is_shared_between_openers(tmp_path: Path) -> None:
    # Two opens of one file stand for two frontend processes (flock and
    # MAP_SHARED behave the same across descriptors as across processes).
    first = SharedReplayTable(tmp_path / "replay", ttl=60.0, slots=64)
    second = SharedReplayTable(tmp_path / "replay", ttl=60.0, slots=64)
    try:
        assert not first.seen(SIG_A, 100.0)
        assert second.seen(SIG_A, 101.0)
        assert not second.seen(SIG_B, 101.0)
        assert first.seen(SIG_B, 102.0)
    finally:
        first.close()
        second.close()


def test_replay_table_is_bounded_and_resized(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    table = SharedReplayTable(path, ttl=60.0, slots=16)
    try:
        sigs = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)]
        for sig in sigs:
            assert not table.seen(sig, 0.0)
        assert path.stat().st_size == 16 * 40
        assert table.evicted_live == 200 - 16
        # The newest survive; most of the early ones were forgotten.
        assert table.seen(sigs[-1], 1.0)
    finally:
        table.close()
    bigger = SharedReplayTable(path, ttl=60.0, slots=1000)
    try:
        assert path.stat().st_size == 1000 * 40
        assert not bigger.seen(sigs[-1], 1.0)  # a new layout starts empty
    finally:
        bigger.close()


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (("127.0.0.1", 5000), "127.0.0.1"),
        (("2001:db8:1:2:3:4:5:6", 1), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:ffff::9", 1), "2001:db8:1:2::/64"),
        (("::ffff:198.51.100.1", 1), "198.51.100.1"),
        (None, "-"),
        (("unix-socket", 0), "unix-socket"),
    ],
)
def test_client_ip(client: tuple[str, int] | None, expected: str) -> None:
    assert client_ip({"client": client}) == expected


def test_client_ip_behind_trusted_proxy() -> None:
    proxies = (ipaddress.ip_network("198.51.100.0/24"),)
    scope = {"client": ("198.51.100.23", 40000)}
    # Forwarded-for is believed only from a trusted proxy...
    assert client_ip(scope, "203.0.113.7", proxies) == "203.0.113.7"
    assert client_ip(scope, "198.51.100.1, 203.0.113.7, 198.51.100.9", proxies) == "203.0.113.7"
    # ...and ignored from anyone else.
    assert client_ip({"client": ("192.0.2.5", 1)}, "203.0.113.7", proxies) == "192.0.2.5"
    assert client_ip(scope, "203.0.113.7") == "198.51.100.23"


def test_timed_receive_idle_timeout_mock_clock() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    messages: list[Message] = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def main() -> None:
        guarded = timed_receive(receive, idle_seconds=5.0, min_rate=0, clock=trio.current_time)
        assert (await guarded())["body"] == b"x" * 10
        with pytest.raises(S3Error) as info:
            await guarded()
        assert info.value.code == "RequestTimeout"
        assert trio.current_time() == pytest.approx(5.0)
        assert (await guarded())["type"] == "http.disconnect"

    trio.run(main, clock=clock)


def test_timed_receive_min_rate() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def drip() -> Message:
        await trio.sleep(2.0)  # one byte every 2 s: never idle for 5 s
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def main() -> None:
        guarded = timed_receive(drip, idle_seconds=5.0, min_rate=100, clock=trio.current_time)
        with pytest.raises(S3Error) as info:
            for _ in range(10):
                await guarded()
        assert info.value.code == "RequestTimeout"
        assert trio.current_time() <= 8.0

    trio.run(main, clock=clock)


def test_timed_receive_fast_body_passes_and_zero_disables() -> None:
    async def fast() -> Message:
        return {"type": "http.request", "body": b"y" * 1000, "more_body": False}

    async def main() -> None:
        guarded = timed_receive(fast, idle_seconds=5.0, min_rate=100)
        assert (await guarded())["body"] == b"y" * 1000
        assert timed_receive(fast, idle_seconds=0, min_rate=100) is fast

    trio.run(main)


def test_time_not_spent_waiting_on_the_client_is_not_counted() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def fast() -> Message:
        return {"type": "http.request", "body": b"z" * 10, "more_body": True}

    async def main() -> None:
        guarded = timed_receive(fast, idle_seconds=5.0, min_rate=100, clock=trio.current_time)
        for _ in range(5):
            await guarded()
            await trio.sleep(60)  # the writer is slow, not the client
        assert trio.current_time() >= 300

    trio.run(main, clock=clock)
