"""Retry policy of the replication tasks (seglake/repl/backoff.py)."""

from __future__ import annotations

import itertools

import pytest

from seglake.repl.backoff import BASE_DELAY_S, Backoff, is_permanent


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (0, "", False),  # connection refused / timeout
        (0, "TLSError", True),  # an untrusted certificate stays untrusted
        (500, "InternalError", False),
        (503, "ServiceUnavailable", False),
        (503, "SlowDown", False),
        (429, "", False),
        (409, "ReplicationGap", False),
        (409, "ReplicationCursorMismatch", False),
        (409, "ReplicationMissingChunk", False),
        (401, "", True),
        (403, "AccessDenied", True),
        (403, "SignatureDoesNotMatch", True),
        (410, "OplogTruncated", True),
        (400, "ReplicationBadBatch", True),
        (400, "ReplicationBadChunk", True),
        (404, "NoSuchKey", True),
    ],
)
def test_is_permanent(status: int, code: str, permanent: bool) -> None:
    assert is_permanent(status, code) is permanent


def test_success_waits_interval_and_resets() -> None:
    b = Backoff(interval=5.0, backoff_max=60.0)
    assert b.succeeded() == 5.0
    b.failed(100.0, 0.5)
    b.failed(101.0, 0.5)
    assert b.failures == 2
    assert b.succeeded() == 5.0
    assert b.failures == 0 and b.failing_since is None


def test_backoff_grows_exponentially_up_to_max() -> None:
    b = Backoff(interval=5.0, backoff_max=60.0)
    top = [b.failed(0.0, 0.999999) for _ in range(12)]
    assert top[0] == pytest.approx(BASE_DELAY_S * 2, rel=1e-5)
    assert top[1] == pytest.approx(BASE_DELAY_S * 4, rel=1e-5)
    assert all(a <= c for a, c in itertools.pairwise(top))
    assert max(top) <= 60.0
    assert top[-1] == pytest.approx(60.0, rel=1e-5)


def test_full_jitter_scales_the_draw() -> None:
    b = Backoff(interval=1.0, backoff_max=60.0)
    assert b.failed(0.0, 0.0) == 0.0
    b2 = Backoff(interval=1.0, backoff_max=60.0)
    assert b2.failed(0.0, 0.5) == pytest.approx(BASE_DELAY_S)


def test_many_failures_do_not_overflow() -> None:
    b = Backoff(interval=1.0, backoff_max=30.0)
    for _ in range(5000):
        delay = b.failed(0.0, 0.5)
    assert delay == pytest.approx(15.0)


def test_gave_up_after_retry_timeout() -> None:
    b = Backoff(interval=1.0, backoff_max=10.0, retry_timeout=30.0)
    assert not b.gave_up(0.0)
    b.failed(100.0, 0.1)
    assert not b.gave_up(110.0)
    b.failed(125.0, 0.1)
    assert b.gave_up(130.0)
    b.succeeded()
    assert not b.gave_up(1000.0)


def test_zero_retry_timeout_gives_up_on_first_failure() -> None:
    b = Backoff(interval=1.0, backoff_max=10.0, retry_timeout=0.0)
    b.failed(5.0, 0.3)
    assert b.gave_up(5.0)


def test_refuses_bad_values() -> None:
    with pytest.raises(ValueError):
        Backoff(interval=-1.0, backoff_max=1.0)
    with pytest.raises(ValueError):
        Backoff(interval=1.0, backoff_max=1.0).failed(0.0, 1.0)
