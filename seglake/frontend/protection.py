"""Abuse limits in front of authentication: failure rate limits and a replay cache.

Rules this module keeps:

* Failed signature checks are metered per client IP and per claimed access
  key with token buckets (``--auth-fail-burst`` failures at once, refilled
  at ``--auth-fail-rate`` per second). An IP whose bucket is empty gets 503
  ``SlowDown`` before any verification work is done. A key whose bucket is
  empty is still verified: its holder, who signs correctly, is never locked
  out by someone else's failures, while the failing requests get ``SlowDown``
  instead of a verdict, so guessing gets no feedback.
* 503 ``SlowDown`` (with ``Retry-After``) rather than 429: it is what S3
  itself answers when throttling, so every S3 client retries it with backoff
  (botocore lists ``SlowDown`` among its throttling codes and 503 among its
  transient statuses), while 429 is recognised only by newer SDK versions.
* The replay cache (``--replay-ttl`` > 0) remembers the signatures of
  requests that verified, for ``ttl`` seconds, at most
  ``--replay-cache-max`` of them (the one nearest expiry forgotten first when
  full). A second request
  with a remembered signature is logged, and refused when
  ``--replay-block`` is set. POST form signatures are not remembered: a
  signed upload form is meant to be used for many uploads. A presigned URL
  is remembered like any signature, so with ``--replay-block`` it works once
  per ttl (a video player's repeated range GETs on one URL would be refused).
* The replay cache is shared by all frontends (``replay_table``: one mapped
  file, locked per check), because a replay usually arrives on another
  connection and so, one time in N, on the same frontend only. The failure
  limits are per frontend process: a client spreading its connections over N
  frontends can fail up to N times the burst. They brake floods and
  guessing, which N times a small burst still does, and sharing them would
  put a lock or an IPC round trip on every failure.
* Everything is bounded: at most ``MAX_TRACKED`` buckets per kind (least
  recently used forgotten first) and ``--replay-cache-max`` signatures.
* Nothing secret is logged: replays are logged by request id and access key.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final
from urllib.parse import unquote

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend.authz import IpNetwork, client_address, parse_networks
from seglake.frontend.http import Message, Receive, Request, Scope
from seglake.frontend.replay_table import FILE_NAME as REPLAY_FILE
from seglake.frontend.replay_table import SharedReplayTable

log = logging.getLogger("seglake.frontend")

# The failures that count: a wrong signature (a guessed secret or a forged
# request) and an unknown access key (enumerating keys). Both cost a secret
# lookup, the first an HMAC. Malformed headers, clock skew, expired presigned
# URLs, SigV2 and policy denials are not guesses (a client with a wrong clock
# would otherwise see SlowDown instead of the error that tells it what to fix)
# and are not counted.
AUTH_FAILURE_CODES: Final = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId"})
# Tracked IPs (and keys) per frontend: ~150 bytes each, so a few MiB at most,
# and far more distinct clients than one node serves at once.
MAX_TRACKED: Final = 65_536
# Where a handler that authenticates by itself (POST forms) records the
# access key a failing request claimed.
CLAIMED_KEY_SCOPE: Final = "seglake.claimed_access_key"
# AWS access key ids are 16..128 characters.
MAX_KEY_NAME: Final = 128


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second (pure; time passed in)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens = max(0.0, self.tokens - 1.0)


class FailureLimiter:
    """Token buckets by name (an IP or an access key), bounded in number."""

    def __init__(self, burst: float, rate: float, max_tracked: int = MAX_TRACKED) -> None:
        self.burst = burst
        self.rate = rate
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.burst > 0

    def blocked(self, name: str, now: float) -> bool:
        """No failure left for ``name`` (does not consume)."""
        bucket = self._buckets.get(name)
        return bucket is not None and bucket.available(now) < 1.0

    def failed(self, name: str, now: float) -> None:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = TokenBucket(self.burst, self.rate, now)
            self._buckets[name] = bucket
            if len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
        bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


def client_ip(
    scope: Scope, forwarded_for: str | None = None, trusted: tuple[IpNetwork, ...] = ()
) -> str:
    """The client as a rate-limit name: the peer address, or behind a
    trusted proxy the client it forwarded for (``--trusted-proxies``; the
    same rule the policies' aws:SourceIp uses), so one proxy's clients are
    not all limited as one. IPv6 clients are named by their /64, since one
    host commonly owns a whole /64 and could rotate within it."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    addr = client_address(peer, forwarded_for, trusted)
    if addr is None:
        return peer or "-"
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def claimed_access_key(req: Request) -> str | None:
    """The access key a request says it is signed with, without verifying it."""
    key: object = req.scope.get(CLAIMED_KEY_SCOPE)
    if not isinstance(key, str):
        auth = req.headers.get("authorization", "")
        at = auth.find("Credential=")
        values = req.query.get("X-Amz-Credential", [])
        if at >= 0:
            key = auth[at + len("Credential=") :].split("/", 1)[0].strip()
        elif values:
            key = unquote(values[0]).split("/", 1)[0]
        else:
            return None
    # Attacker-chosen text: a bounded name keeps the tracking table bounded.
    return key[:MAX_KEY_NAME] or None


class Guard:
    """The per-frontend abuse limits the app consults around authentication."""

    def __init__(self, cfg: Config) -> None:
        self.ips = FailureLimiter(cfg.auth_fail_burst, cfg.auth_fail_rate)
        self.keys = FailureLimiter(cfg.auth_fail_burst, cfg.auth_fail_rate)
        self.replays = (
            SharedReplayTable(cfg.root / REPLAY_FILE, cfg.replay_ttl, cfg.replay_cache_max)
            if cfg.replay_ttl > 0
            else None
        )
        self.replay_block = cfg.replay_block
        self.trusted = parse_networks(cfg.trusted_proxies)
        self.replays_detected = 0

    def _client(self, req: Request) -> str:
        return client_ip(req.scope, req.headers.get("x-forwarded-for"), self.trusted)

    def admit(self, req: Request) -> None:
        """Before verifying: refuse a client IP that has used up its failures."""
        if self.ips.enabled and self.ips.blocked(self._client(req), time.monotonic()):
            raise slow_down("Too many failed authentication attempts from this address")

    def on_error(self, req: Request, exc: S3Error) -> S3Error:
        """Meter a failed signature check; the error to answer with."""
        if not self.ips.enabled or req.auth is not None or exc.code not in AUTH_FAILURE_CODES:
            return exc
        now = time.monotonic()
        self.ips.failed(self._client(req), now)
        key = claimed_access_key(req)
        if key is None:
            return exc
        limited = self.keys.blocked(key, now)
        self.keys.failed(key, now)
        if limited:
            return slow_down("Too many failed authentication attempts for this access key")
        return exc

    def check_replay(self, req: Request) -> None:
        """After verifying: has this exact signature been used within the ttl?"""
        if self.replays is None or req.auth is None:
            return
        if not self.replays.seen(req.auth.seed_signature, time.time()):
            return
        self.replays_detected += 1
        log.warning(
            "%s replayed request signature (access key %s, %s)",
            req.request_id,
            req.auth.access_key,
            "refused" if self.replay_block else "logged only",
        )
        if self.replay_block:
            raise S3Error(
                "AccessDenied",
                message="This request's signature has already been used; sign each request anew",
            )


def slow_down(message: str) -> S3Error:
    return S3Error("SlowDown", message=message)


def _queued(receive_nowait: Callable[[], Message]) -> Message | None:
    try:
        return receive_nowait()
    except trio.WouldBlock:
        return None


def timed_receive(
    receive: Receive,
    idle_seconds: float,
    min_rate: int,
    clock: Callable[[], float] = time.monotonic,
) -> Receive:
    """``receive`` with a slow-client guard for the request body.

    A wait longer than ``idle_seconds`` for the next piece, or a delivery
    rate below ``min_rate`` bytes/s once the request has spent more than
    ``idle_seconds`` waiting for its client, raises ``RequestTimeout``. Only
    time spent waiting in ``receive`` counts: a request held up by the
    writer (a commit, a full disk) is not the client's fault. Later calls
    report a disconnect at once, so the error answer does not wait on the
    same client again (and goes out with ``Connection: close``).
    ``idle_seconds`` <= 0 turns the guard off.
    """
    if idle_seconds <= 0:
        return receive
    waited = 0.0
    received = 0
    expired = False
    # Hypercorn's ``receive`` is a trio memory channel's: a message that is
    # already queued (a small body arrives with the request head) is taken
    # without a timer, whose cancel scope costs more than the rest of this.
    owner = getattr(receive, "__self__", None)
    receive_nowait: Callable[[], Message] | None = (
        getattr(owner, "receive_nowait", None)
        if isinstance(owner, trio.MemoryReceiveChannel)
        else None
    )

    async def guarded() -> Message:
        nonlocal waited, received, expired
        if expired:
            return {"type": "http.disconnect"}
        queued = _queued(receive_nowait) if receive_nowait is not None else None
        if queued is not None:
            message = queued
        else:
            before = clock()
            with trio.move_on_after(idle_seconds) as scope:
                message = await receive()
            if scope.cancelled_caught:
                expired = True
                raise S3Error("RequestTimeout")
            waited += clock() - before
        received += len(message.get("body", b""))
        if (
            min_rate > 0
            and message.get("more_body", False)
            and waited > idle_seconds
            and received < min_rate * waited
        ):
            expired = True
            raise S3Error(
                "RequestTimeout", message="The request body arrived too slowly; it was cut off."
            )
        return message

    return guarded
