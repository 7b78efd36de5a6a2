"""When a replication task tries again, and when it stops for good
(docs/design-replication.md §6, "Retry").

Pure: the caller supplies the clock and the random draw, so every rule here
is tested without sleeping.

- A task that succeeded waits ``interval`` before its next step (watch
  mode); a step that found more to do runs again at once.
- A *retryable* failure (no connection, a timeout, a 5xx, a 409 gap or
  missing chunk that the next step's resync can repair) waits a random time
  in ``[0, min(backoff_max, base * 2**failures)]`` — "full jitter", so
  several sites retrying one server do not arrive in step — and resets to
  ``interval`` after the next success.
- A *permanent* failure stops the task: 401/403 (credentials or policy),
  410 OplogTruncated (the remote no longer has our cursor: bootstrap), 400
  ReplicationBadBatch/BadChunk from the remote (it refused what we sent, or
  sent us what we could not accept: sending the same again will not help).
  Retrying cannot fix these; the status shows the error until an operator
  acts.
- A one-shot run gives up after ``retry_timeout`` seconds of consecutive
  failures (0 = try once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Error codes that mean the same request will fail again however long we wait.
# TLSError has no HTTP status (the handshake failed: the remote's certificate
# is not trusted) but is no passing failure either: it needs --repl-ca-file or
# another certificate on the remote.
PERMANENT_CODES: Final = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "OplogTruncated",
    "ReplicationBadBatch", "ReplicationBadChunk", "InvalidArgument", "NotImplemented",
    "TLSError",
})  # fmt: skip
# 409s a fresh step repairs: it re-reads the cursor (ours or the remote's)
# and re-fetches what was missing.
RESYNC_CODES: Final = frozenset({
    "ReplicationGap", "ReplicationCursorMismatch", "ReplicationMissingChunk",
})  # fmt: skip
BASE_DELAY_S: Final = 0.5


def is_permanent(status: int, code: str) -> bool:
    """Whether a failure with this HTTP status / S3 error code stops the task.
    ``status`` 0 stands for "no HTTP answer" (connection refused, reset,
    timeout): always retryable."""
    if code in RESYNC_CODES:
        return False
    if code in PERMANENT_CODES:
        return True
    if status == 0 or status >= 500 or status in (408, 429):
        return False
    if status in (401, 403, 410):
        return True
    # Any other 4xx is a request we build wrongly or a remote that does not
    # speak this protocol: repeating it is pointless.
    return 400 <= status < 500


@dataclass
class Backoff:
    """The delay policy of one task. ``failures`` counts consecutive failed
    steps; ``failing_since`` is when the first of them happened."""

    interval: float
    backoff_max: float
    retry_timeout: float = 0.0
    failures: int = 0
    failing_since: float | None = None

    def __post_init__(self) -> None:
        if self.interval < 0 or self.backoff_max < 0 or self.retry_timeout < 0:
            raise ValueError("replication intervals must not be negative")

    def succeeded(self) -> float:
        """Record a good step; the wait before the next (watch mode)."""
        self.failures = 0
        self.failing_since = None
        return self.interval

    def failed(self, now: float, draw: float) -> float:
        """Record a retryable failure at ``now``; the wait before trying
        again. ``draw`` is a uniform random number in [0, 1)."""
        if not 0.0 <= draw < 1.0:
            raise ValueError("draw must be in [0, 1)")
        if self.failing_since is None:
            self.failing_since = now
        self.failures += 1
        # 2**failures overflows a float past ~1000 failures: cap the exponent.
        ceiling = min(self.backoff_max, BASE_DELAY_S * 2.0 ** min(self.failures, 60))
        return ceiling * draw

    def gave_up(self, now: float) -> bool:
        """Whether a one-shot run should stop retrying (after ``failed``)."""
        if self.failing_since is None:
            return False
        return now - self.failing_since >= self.retry_timeout
