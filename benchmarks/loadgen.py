"""A lean S3 load generator: trio raw sockets, hand-written HTTP/1.1, cheap SigV4.

The generator shares the machine's cores with the server it measures, so every
per-request cost here is a cost taken from the server. The rules it keeps:

- One keep-alive connection per worker; one request in flight per connection
  (no pipelining). A response must carry ``Content-Length`` (or be bodiless);
  anything else is a protocol error, not something to guess around.
- The payload is never hashed: requests are signed with
  ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` over exactly
  ``host;x-amz-content-sha256;x-amz-date``, and the signing key is derived once
  per day.
- Request bodies go out as memoryviews of one payload generated per size (no
  copies for large bodies); response bodies land in one reusable buffer per
  connection.
- Every object's first ``TAG_BYTES`` are a digest of its path, so a GET that
  returns another object's bytes is caught too. A sampled GET whose bytes
  differ from what was PUT raises ``VerificationError``, which ends the run.
- Every phase is bounded in time (and optionally in operations) and wrapped in
  an overall deadline, so a stuck server fails the run instead of hanging it.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

KiB: Final = 1024
MiB: Final = 1024 * KiB

UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
SIGNED_HEADERS: Final = "host;x-amz-content-sha256;x-amz-date"

# A 1 MiB body plus its header section arrives whole in one buffer, so the
# 1 MiB scenarios need no streaming; larger bodies stream through it.
RECV_BUFFER_BYTES: Final = 1 * MiB + 64 * KiB
# Seglake accepts 32 KiB of request headers; its responses are far smaller.
MAX_HEAD_BYTES: Final = 64 * KiB
# Bodies up to this size are joined to the header bytes: one send() instead
# of two for a 4 KiB copy, which is cheaper than the extra system call.
INLINE_BODY_BYTES: Final = 64 * KiB
# Above this, sending and reading run concurrently: a server that answers
# early (e.g. 403) without reading a 64 MiB body must not deadlock us.
CONCURRENT_SEND_BYTES: Final = 256 * KiB
# Leading bytes of each object that identify it (BLAKE2b of its path).
TAG_BYTES: Final = 16
# A transfer that never has to wait (the kernel always has data or room)
# still yields this often, so other workers and the RSS sampler keep running.
YIELD_EVERY_BYTES: Final = 8 * MiB
# Error responses keep this much of their body for the report.
ERROR_BODY_BYTES: Final = 2 * KiB
# A phase gives up after this many failed requests: the server is broken and
# more attempts would only spin.
MAX_ERRORS_PER_PHASE: Final = 200
# Grace after a phase's duration for in-flight requests (a 64 MiB PUT on a
# slow disk) before the phase is failed as stuck.
PHASE_GRACE_S: Final = 120.0


class ProtocolError(Exception):
    """The server's bytes are not the HTTP/1.1 this client understands."""


class VerificationError(Exception):
    """A GET returned bytes other than those PUT under that key."""


# ---- SigV4 ---------------------------------------------------------------


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode(), "sha256")


class Signer:
    """SigV4 header signing for UNSIGNED-PAYLOAD requests without a query string.

    ``path`` must already be in canonical (URI-encoded) form; ``object_path``
    only builds paths from unreserved characters, for which the two coincide.
    """

    def __init__(self, access_key: str, secret_key: str, region: str, service: str = "s3"):
        self.access_key = access_key
        self._secret = secret_key
        self.region = region
        self.service = service
        self._keys: dict[str, bytes] = {}
        self._second = -1
        self._amz_date = ""

    def signing_key(self, date: str) -> bytes:
        key = self._keys.get(date)
        if key is None:
            key = _hmac(("AWS4" + self._secret).encode(), date)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._keys = {date: key}  # only the current day's key is kept
        return key

    def amz_date(self, now: float | None = None) -> str:
        """``YYYYMMDDTHHMMSSZ`` for ``now`` (formatted once per second)."""
        second = int(time.time() if now is None else now)
        if second != self._second:
            self._second = second
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        return self._amz_date

    def authorization(self, method: str, path: str, host: str, amz_date: str) -> str:
        date = amz_date[:8]
        canonical = (
            f"{method}\n{path}\n\n"
            f"host:{host}\nx-amz-content-sha256:{UNSIGNED_PAYLOAD}\nx-amz-date:{amz_date}\n\n"
            f"{SIGNED_HEADERS}\n{UNSIGNED_PAYLOAD}"
        )
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.digest(self.signing_key(date), string_to_sign.encode(), "sha256").hex()
        return (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
        )

    def request_head(
        self,
        method: str,
        path: str,
        host: str,
        content_length: int | None,
        now: float | None = None,
    ) -> bytes:
        """The request line and headers, ready to send."""
        amz_date = self.amz_date(now)
        length = "" if content_length is None else f"Content-Length: {content_length}\r\n"
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {self.authorization(method, path, host, amz_date)}\r\n"
            f"x-amz-content-sha256: {UNSIGNED_PAYLOAD}\r\nx-amz-date: {amz_date}\r\n"
            f"{length}\r\n"
        ).encode()


_UNRESERVED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/"
)


def object_path(bucket: str, key: str) -> str:
    path = f"/{bucket}/{key}"
    if not set(path) <= _UNRESERVED:
        raise ValueError(f"benchmark keys use unreserved characters only: {key!r}")
    return path


def object_tag(path: str) -> bytes:
    return hashlib.blake2b(path.encode(), digest_size=TAG_BYTES).digest()


# ---- HTTP/1.1 ------------------------------------------------------------

BodySink = Callable[[int, memoryview], None]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    length: int
    error_body: bytes = b""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection with a reusable receive buffer.

    The socket is a plain non-blocking one: ``send``/``recv_into`` are tried
    directly and trio is asked only to wait when the kernel says EAGAIN.
    trio's socket wrapper would add two scheduler checkpoints to every call,
    which at thousands of requests per second is CPU taken from the server.
    """

    def __init__(self, host: str, port: int, buffer_bytes: int = RECV_BUFFER_BYTES):
        self.host = host
        self.port = port
        self._buf = bytearray(buffer_bytes)
        self._view = memoryview(self._buf)
        self._sock: socket.socket | None = None
        self.connects = 0

    async def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                err = sock.connect_ex((self.host, self.port))
                if err == errno.EINPROGRESS:
                    await trio.lowlevel.wait_writable(sock)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"connect to {self.host}:{self.port}: {os.strerror(err)}")
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self.connects += 1
        return self._sock

    async def connect(self) -> None:
        await self._socket()

    def close(self) -> None:
        if self._sock is not None:
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
            self._sock = None

    async def request(
        self,
        message: Sequence[bytes | memoryview],
        *,
        sink: BodySink | None = None,
        head_request: bool = False,
    ) -> Response:
        """Send the request ``message`` (head and body, in parts); read the response.

        Body pieces of the response are passed to ``sink(offset, piece)`` in
        order; ``piece`` is only valid during the call.
        """
        sock = await self._socket()
        try:
            if sum(len(part) for part in message) <= CONCURRENT_SEND_BYTES:
                for part in message:
                    await _send_all(sock, part)
                response = await self._read_response(sock, sink, head_request)
            else:
                response = await self._request_concurrently(sock, message, sink, head_request)
        except BaseException:
            self.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    async def _request_concurrently(
        self,
        sock: socket.socket,
        message: Sequence[bytes | memoryview],
        sink: BodySink | None,
        head_request: bool,
    ) -> Response:
        sent = False

        async def send() -> None:
            nonlocal sent
            for part in message:
                await _send_all(sock, part)
            sent = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            response = await self._read_response(sock, sink, head_request)
            if not sent:
                # Answered before the body was consumed: the connection's
                # framing is lost, so stop sending and drop it.
                nursery.cancel_scope.cancel()
                response.headers["connection"] = "close"
        return response

    async def _read_response(
        self, sock: socket.socket, sink: BodySink | None, head_request: bool
    ) -> Response:
        buf, view = self._buf, self._view
        end = 0
        while True:
            if end >= MAX_HEAD_BYTES:
                raise ProtocolError("response header section too large")
            n = await _recv_into(sock, view[end:MAX_HEAD_BYTES])
            if n == 0:
                raise ProtocolError("connection closed before a response")
            # Search the new bytes and the 3 before them, where a terminator
            # split across two reads would start.
            idx = buf.find(b"\r\n\r\n", max(0, end - 3), end + n)
            end += n
            if idx >= 0:
                break
        lines = buf[:idx].decode("latin-1").split("\r\n")
        status_line = lines[0]
        if not status_line.startswith("HTTP/1.") or len(status_line) < 12:
            raise ProtocolError(f"bad status line {status_line!r}")
        status = int(status_line[9:12])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise ProtocolError(f"unsupported transfer-encoding {headers['transfer-encoding']!r}")
        raw_length = headers.get("content-length")
        if head_request or status in (204, 304) or 100 <= status < 200:
            length = 0
        elif raw_length is None:
            raise ProtocolError(f"status {status} response without Content-Length")
        else:
            length = int(raw_length)
        start = idx + 4
        have = end - start
        if have > length:
            raise ProtocolError("bytes after the response body (no pipelining was asked for)")
        error_body = b""
        if start + length <= len(buf):
            while have < length:
                n = await _recv_into(sock, view[start + have : start + length])
                if n == 0:
                    raise ProtocolError("connection closed inside a response body")
                have += n
            piece = view[start : start + length]
            if status >= 300:
                error_body = bytes(piece[:ERROR_BODY_BYTES])
            elif sink is not None:
                sink(0, piece)
        else:
            if have:
                piece = view[start:end]
                if status >= 300:
                    error_body = bytes(piece[:ERROR_BODY_BYTES])
                elif sink is not None:
                    sink(0, piece)
            offset = have
            size = len(buf)
            since_yield = 0
            while offset < length:
                n = await _recv_into(sock, view[: min(size, length - offset)])
                if n == 0:
                    raise ProtocolError("connection closed inside a response body")
                if sink is not None and status < 300:
                    sink(offset, view[:n])
                offset += n
                since_yield += n
                if since_yield >= YIELD_EVERY_BYTES:
                    since_yield = 0
                    await trio.lowlevel.checkpoint()
        return Response(status, headers, length, error_body)


async def _send_all(sock: socket.socket, data: bytes | memoryview) -> None:
    view: bytes | memoryview = data
    since_yield = 0
    while True:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        if sent == len(view):
            return
        if not isinstance(view, memoryview):
            view = memoryview(view)
        view = view[sent:]
        since_yield += sent
        if since_yield >= YIELD_EVERY_BYTES:
            since_yield = 0
            await trio.lowlevel.checkpoint()


async def _recv_into(sock: socket.socket, view: memoryview) -> int:
    while True:
        try:
            return sock.recv_into(view)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


# ---- workloads -----------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    signer: Signer

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def connections(self, n: int) -> list[HttpConnection]:
        return [HttpConnection(self.host, self.port) for _ in range(n)]


class Payload:
    """Random bytes of one size; object bodies are ``tag + bytes[TAG_BYTES:]``."""

    def __init__(self, size: int):
        if size < TAG_BYTES:
            raise ValueError(f"payload must be at least {TAG_BYTES} bytes")
        self.size = size
        self.data = os.urandom(size)
        self.view = memoryview(self.data)
        self.tail = self.view[TAG_BYTES:]
        # Small bodies are joined to the header bytes; keep their tail as bytes.
        self.tail_bytes = self.data[TAG_BYTES:] if size <= INLINE_BODY_BYTES else b""

    def message(self, head: bytes, tag: bytes) -> tuple[bytes | memoryview, ...]:
        """The whole PUT request: ``head``, then this object's body."""
        if self.size <= INLINE_BODY_BYTES:
            return (b"".join((head, tag, self.tail_bytes)),)
        return (head + tag, self.tail)


class _Verifier:
    """Compares a GET's body, piece by piece, with what was PUT under ``path``."""

    def __init__(self, path: str, payload: Payload):
        self.path = path
        self.tag = object_tag(path)
        self.payload = payload
        self.seen = 0

    def __call__(self, offset: int, piece: memoryview) -> None:
        end = offset + len(piece)
        if offset != self.seen or end > self.payload.size:
            raise VerificationError(f"{self.path}: body piece at {offset} out of order or too long")
        if offset < TAG_BYTES:
            n = min(TAG_BYTES, end) - offset
            if not hmac.compare_digest(piece[:n], self.tag[offset : offset + n]):
                raise VerificationError(
                    f"{self.path}: object tag differs (another object's bytes?)"
                )
            piece = piece[n:]
        # compare_digest runs at memcmp-like speed on buffers, unlike
        # memoryview ==, which unpacks item by item.
        if piece and not hmac.compare_digest(piece, self.payload.view[end - len(piece) : end]):
            raise VerificationError(f"{self.path}: bytes {offset}..{end} differ from what was PUT")
        self.seen = end


@dataclass
class PhaseResult:
    op: str
    size: int
    concurrency: int
    elapsed_s: float
    latencies_s: list[float]
    errors: int
    error_samples: list[str]
    verified: int
    loadgen_cpu_s: float
    paths: list[str] = field(default_factory=list)
    connects: int = 0

    @property
    def ops(self) -> int:
        return len(self.latencies_s)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Payload megabytes (10^6 bytes) per second."""
        return self.ops * self.size / self.elapsed_s / 1e6 if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] * 1000

    @property
    def loadgen_cpu_fraction(self) -> float:
        """Share of one core the generator used while running this phase."""
        return self.loadgen_cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def loadgen_cpu_us_per_op(self) -> float:
        ops = self.ops + self.errors
        return self.loadgen_cpu_s / ops * 1e6 if ops else 0.0


async def run_phase(
    target: Target,
    conns: Sequence[HttpConnection],
    op: str,
    payload: Payload,
    *,
    seconds: float,
    bucket: str = "bench",
    key_prefix: str = "obj",
    paths: Sequence[str] = (),
    max_ops: int | None = None,
    verify_every: int = 0,
    expect_payload: bool = True,
) -> PhaseResult:
    """Run ``op`` ("put" or "get") on every connection for ``seconds``.

    Operations started before the deadline run to completion and count; the
    elapsed time runs until the last of them finished. PUT keys are unique
    (``key_prefix`` + a sequence number); GET cycles through ``paths``.
    Every ``verify_every``-th GET (0 = none) is checked byte for byte.
    ``expect_payload=False`` (the ceiling app) skips the length check too.
    """
    if op not in ("put", "get"):
        raise ValueError(f"unknown op {op!r}")
    if op == "get" and not paths:
        raise ValueError("a GET phase needs paths written by a PUT phase")
    signer, hostport = target.signer, target.hostport
    latencies: list[float] = []
    written: list[str] = []
    error_samples: list[str] = []
    errors = 0
    verified = 0
    next_seq = 0
    limit = max_ops if max_ops is not None else 1 << 62
    connects_before = sum(c.connects for c in conns)

    def fail(message: str) -> None:
        nonlocal errors
        errors += 1
        if len(error_samples) < 5:
            error_samples.append(message)
        if errors >= MAX_ERRORS_PER_PHASE:
            raise RuntimeError(
                f"{op} {payload.size} B: {errors} failed requests, giving up; first: {error_samples}"
            )

    async def worker(conn: HttpConnection) -> None:
        nonlocal next_seq, verified
        perf = time.perf_counter
        while perf() < deadline and next_seq < limit:
            seq = next_seq
            next_seq += 1
            sink: _Verifier | None = None
            t0 = perf()
            try:
                if op == "put":
                    path = object_path(bucket, f"{key_prefix}-{seq}")
                    head = signer.request_head("PUT", path, hostport, payload.size, t0_wall + t0)
                    response = await conn.request(payload.message(head, object_tag(path)))
                else:
                    path = paths[seq % len(paths)]
                    if verify_every and seq % verify_every == 0:
                        sink = _Verifier(path, payload)
                    head = signer.request_head("GET", path, hostport, None, t0_wall + t0)
                    response = await conn.request((head,), sink=sink)
            except (OSError, ProtocolError, trio.BrokenResourceError) as exc:
                fail(f"{op} {path}: {type(exc).__name__}: {exc}")
                continue
            elapsed = perf() - t0
            if response.status >= 300:
                fail(f"{op} {path}: HTTP {response.status} {response.error_body[:300]!r}")
                continue
            if op == "get" and expect_payload and response.length != payload.size:
                raise VerificationError(
                    f"{path}: GET returned {response.length} bytes, PUT wrote {payload.size}"
                )
            if sink is not None:
                if sink.seen != payload.size:
                    raise VerificationError(f"{path}: verified {sink.seen} of {payload.size} bytes")
                verified += 1
            latencies.append(elapsed)
            if op == "put":
                written.append(path)

    # Wall-clock time for x-amz-date, from the cheap monotonic counter.
    t0_wall = time.time() - time.perf_counter()
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    with trio.fail_after(seconds + PHASE_GRACE_S):
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(worker, conn)
    elapsed = time.perf_counter() - start
    return PhaseResult(
        op=op,
        size=payload.size,
        concurrency=len(conns),
        elapsed_s=elapsed,
        latencies_s=latencies,
        errors=errors,
        error_samples=error_samples,
        verified=verified,
        loadgen_cpu_s=time.process_time() - cpu0,
        paths=written,
        connects=sum(c.connects for c in conns) - connects_before,
    )


async def create_bucket(target: Target, bucket: str) -> None:
    """Signed ``PUT /bucket``; an existing bucket we own is fine."""
    conn = HttpConnection(target.host, target.port, buffer_bytes=MAX_HEAD_BYTES + 64 * KiB)
    try:
        path = object_path(bucket, "")[:-1]
        head = target.signer.request_head("PUT", path, target.hostport, 0)
        response = await conn.request((head,))
    finally:
        conn.close()
    if response.status >= 300 and b"BucketAlreadyOwnedByYou" not in response.error_body:
        raise RuntimeError(
            f"create bucket {bucket}: HTTP {response.status} {response.error_body!r}"
        )
