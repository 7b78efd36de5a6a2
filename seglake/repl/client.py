"""The replication HTTP client: one remote Seglake's ``/v1/replication/*``
endpoints over SigV4-signed HTTP/1.1 (trio + h11, no further dependency).

Rules this module keeps:

* One keep-alive connection per client, one request on it at a time (a
  lock); a connection is reused only after a response was read to its end,
  otherwise it is closed. A request that fails on a reused connection
  before any byte of its answer came is sent once more on a fresh one
  (the server may have closed an idle connection; every replication call
  is idempotent: pushed duplicates are skipped, reads are reads).
* Every wait is bounded: ``timeout`` applies to each step (connect, each
  piece sent, the answer's head, each piece of its body), so a big push or
  a long snapshot is not cut off by a total deadline while a stalled peer
  is. A step running out is ``ReplHTTPError(code="Timeout", retryable)``.
* Bodies that are read whole (a page, a manifest map) are bounded
  (``repl_wire.MAX_DOCUMENT_BYTES``); chunk frames are parsed as they
  arrive (``repl_wire.FrameReader``), so a 64 MiB answer is held once.
* Requests with a body are signed with the body's SHA-256, so a body
  changed or cut on the way fails authentication instead of being applied;
  bodiless requests sign ``UNSIGNED-PAYLOAD``. Each request carries a
  random signed nonce, so two identical requests within one second never
  share a signature (the server may refuse replayed signatures).
* Errors: the S3 error document of a non-2xx answer becomes
  ``ReplHTTPError(status, code, message, retryable)``; retryable are 5xx,
  429 and anything that went wrong below HTTP (connect, reset, timeout,
  a malformed answer).
"""

from __future__ import annotations

import hashlib
import math
import os
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, cast
from urllib.parse import quote, urlsplit

import blake3
import h11
import trio
from defusedxml import ElementTree

from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.protocol import repl_wire
from seglake.protocol.repl_wire import OplogPage, PushBatch, PushResult, WireError
from seglake.protocol.sigv4 import UNSIGNED_PAYLOAD, sign_request
from seglake.units import KiB, MiB

OPLOG_PATH: Final = "/v1/replication/oplog"
HAVE_PATH: Final = "/v1/replication/have"
MANIFEST_PATH: Final = "/v1/replication/manifest"
CHUNK_PATH: Final = "/v1/replication/chunk"
SNAPSHOT_PATH: Final = "/v1/replication/snapshot"
# The server's count of chunks it holds but left out of a /chunk answer
# because the answer reached its byte bound; ask again for those.
CHUNKS_LEFT_HEADER: Final = b"x-seglake-chunks-left"
NONCE_HEADER: Final = b"x-seglake-nonce"
USER_AGENT: Final = b"seglake-repl/1"
RECEIVE_BYTES: Final = 256 * KiB
# Error documents are small; more than this of one is not read.
MAX_ERROR_BODY: Final = 64 * KiB
# Hash bigger payloads in a thread (hashlib and blake3 release the GIL).
THREAD_HASH_MIN: Final = 1 * MiB
# How many times a /chunk request is repeated for chunks the server left
# out for size, each round bringing at least one: 64 digests at most.
MAX_CHUNK_ROUNDS: Final = repl_wire.MAX_CHUNK_DIGESTS


class ReplHTTPError(Exception):
    """A replication call failed: ``status`` 0 when no HTTP answer came
    (connection, timeout, malformed answer or chunk)."""

    def __init__(self, status: int, code: str, message: str, retryable: bool | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retryable = (
            (status == 0 or status >= 500 or status == 429) if retryable is None else retryable
        )


def parse_error(status: int, body: bytes) -> ReplHTTPError:
    """The error of a non-2xx answer from its S3 error document (or what
    can be said without one)."""
    code, message = f"HTTP{status}", ""
    try:
        root = ElementTree.fromstring(body[:MAX_ERROR_BODY]) if body else None
    except Exception:  # defusedxml raises ParseError and its own refusals
        root = None
    if root is not None and root.tag == "Error":
        code = (root.findtext("Code") or code).strip()
        message = (root.findtext("Message") or "").strip()
    elif body:
        message = body[:200].decode("utf-8", "replace").strip()
    return ReplHTTPError(status, code, message or f"HTTP status {status}")


@dataclass(frozen=True)
class Target:
    """Where a remote is: ``http(s)://host[:port][/prefix]``."""

    https: bool
    host: str
    port: int
    prefix: str  # path prefix without trailing slash ("" normally)

    @property
    def host_header(self) -> bytes:
        default = 443 if self.https else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return (name if self.port == default else f"{name}:{self.port}").encode("idna")


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"remote URL must be http:// or https://, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"remote URL names no host: {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"remote URL may not carry a query, fragment or credentials: {url!r}")
    https = parts.scheme == "https"
    try:
        port = parts.port or (443 if https else 80)
    except ValueError:
        raise ValueError(f"remote URL has a bad port: {url!r}") from None
    return Target(https, parts.hostname, port, parts.path.rstrip("/"))


def encode_query(pairs: Iterable[tuple[str, str]]) -> bytes:
    """A query string as SigV4 canonicalises it (RFC 3986 unreserved kept)."""
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs).encode()


def _sha256_hex(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _blake3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _broken(exc: BaseException) -> ReplHTTPError:
    if isinstance(exc, trio.TooSlowError):
        return ReplHTTPError(0, "Timeout", "the remote did not answer in time")
    return ReplHTTPError(0, "ConnectionError", f"{type(exc).__name__}: {exc}")


class _Connection:
    """One HTTP/1.1 connection: a trio stream and its h11 state."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.requests = 0

    async def send(self, event: h11.Event, step_s: float) -> None:
        pieces = self.h11.send_with_data_passthrough(event)
        if pieces is None:
            return
        for piece in pieces:
            with trio.fail_after(step_s):
                await self.stream.send_all(piece)

    async def next_event(self, step_s: float) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.PAUSED:
                # Only after a response to a pipelined request: we never pipeline.
                raise ReplHTTPError(0, "ConnectionError", "the remote answered out of turn")
            if event is not h11.NEED_DATA:
                return cast(h11.Event, event)
            with trio.fail_after(step_s):
                data = await self.stream.receive_some(RECEIVE_BYTES)
            self.h11.receive_data(bytes(data))

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def aclose(self) -> None:
        # Forcefully: no TLS close_notify exchange, and safe under cancellation.
        await trio.aclose_forcefully(self.stream)


class Response:
    """The head of an answer, and its body as it is read."""

    def __init__(self, conn: _Connection, status: int, headers: list[tuple[bytes, bytes]],
                 timeout: float) -> None:  # fmt: skip
        self._conn = conn
        self.status = status
        self.headers = headers
        self._timeout = timeout
        self.complete = False

    def header(self, name: bytes) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (each wait bounded)."""
        while not self.complete:
            try:
                event = await self._conn.next_event(self._timeout)
            except (h11.RemoteProtocolError, OSError, trio.BrokenResourceError,
                    trio.ClosedResourceError, trio.TooSlowError) as exc:  # fmt: skip
                raise _broken(exc) from exc
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
            elif isinstance(event, h11.ConnectionClosed):
                raise ReplHTTPError(0, "ConnectionError", "the remote closed mid-answer")

    async def read(self, limit: int) -> bytearray:
        """The whole body; more than ``limit`` bytes is an error."""
        out = bytearray()
        async for piece in self.pieces():
            out += piece
            if len(out) > limit:
                raise ReplHTTPError(0, "ResponseTooLarge", f"answer over {limit} bytes")
        return out


class ReplClient:
    def __init__(
        self,
        url: str,
        *,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        timeout: float = 60.0,
        ca_file: str | None = None,
    ) -> None:
        self.target = parse_url(url)
        self.url = url
        self._access_key = access_key
        self._secret = secret_key
        self._region = region
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if self.target.https:
            self._ssl = ssl.create_default_context(cafile=ca_file)
        self._conn: _Connection | None = None
        self._lock = trio.Lock()
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- connection and one exchange ----------------------------------
    async def _connect(self) -> _Connection:
        t = self.target
        tcp: trio.SocketStream | None = None
        connected = False
        try:
            with trio.fail_after(self.timeout):
                tcp = await trio.open_tcp_stream(t.host, t.port)
                if self._ssl is None:
                    connected = True
                    return _Connection(tcp)
                tls = trio.SSLStream(tcp, self._ssl, server_hostname=t.host,
                                     https_compatible=True)  # fmt: skip
                await tls.do_handshake()
                connected = True
                return _Connection(tls)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
            cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError):
                # The remote's certificate is not trusted: waiting will not
                # change that (--repl-ca-file, or the remote's certificate).
                raise ReplHTTPError(0, "TLSError", str(cause), retryable=False) from exc
            raise _broken(exc) from exc
        finally:
            if not connected and tcp is not None:
                await trio.aclose_forcefully(tcp)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    def _headers(
        self, method: str, path: bytes, query: bytes, body: list[bytes], payload: str
    ) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"host", self.target.host_header),
            (b"user-agent", USER_AGENT),
            (NONCE_HEADER, os.urandom(12).hex().encode()),
        ]
        if method != "GET":
            headers.append((b"content-length", str(sum(map(len, body))).encode()))
        headers += sign_request(
            method, path, query, headers, access_key=self._access_key, secret=self._secret,
            region=self._region, payload_hash=payload, now=datetime.now(UTC),
        )  # fmt: skip
        return headers

    async def _exchange(
        self, conn: _Connection, method: str, path: bytes, query: bytes,
        headers: list[tuple[bytes, bytes]], body: list[bytes],
    ) -> Response:  # fmt: skip
        """Send the request and read the head of its answer. The body is
        sent while the answer is awaited: a server that refuses a body
        part-way (a bad chunk in a push) answers and may close before
        reading the rest, and that answer, not the broken pipe, is what the
        caller must see. Until the body is sent the wait for the answer is
        bounded by the sending (each piece within ``timeout``); after it,
        by ``timeout``."""
        target = path + (b"?" + query if query else b"")
        await conn.send(h11.Request(method=method, target=target, headers=headers), self.timeout)
        head_wait = trio.CancelScope()
        send_error: BaseException | None = None

        async def send_body() -> None:
            nonlocal send_error
            try:
                for piece in body:
                    if piece:
                        await conn.send(h11.Data(data=piece), self.timeout)
                        self.bytes_out += len(piece)
                await conn.send(h11.EndOfMessage(), self.timeout)
            except (h11.LocalProtocolError, OSError, trio.BrokenResourceError,
                    trio.ClosedResourceError, trio.TooSlowError) as exc:  # fmt: skip
                # Perhaps the remote answered and closed: read what it said.
                send_error = exc
            head_wait.deadline = trio.current_time() + self.timeout

        async def read_head() -> Response | BaseException:
            """The answer's head, or why there is none (never raises, so
            nothing leaves the nursery below as an exception group)."""
            try:
                while True:
                    event = await conn.next_event(math.inf)
                    if isinstance(event, h11.InformationalResponse):
                        continue  # 100 Continue: we do not wait for it
                    if not isinstance(event, h11.Response):
                        return ReplHTTPError(0, "ConnectionError",
                                             "the remote closed before answering")  # fmt: skip
                    return Response(conn, event.status_code, list(event.headers), self.timeout)
            except (ReplHTTPError, h11.RemoteProtocolError, OSError, trio.BrokenResourceError,
                    trio.ClosedResourceError) as exc:  # fmt: skip
                return exc

        outcome: Response | BaseException = trio.TooSlowError()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_body)
            with head_wait:
                outcome = await read_head()
            if not isinstance(outcome, Response) or not 200 <= outcome.status < 300:
                # No answer, or an early refusal: the rest of the body is
                # not wanted (the connection is then not reused: h11 is
                # still mid-request).
                nursery.cancel_scope.cancel()
        if isinstance(outcome, Response):
            if 200 <= outcome.status < 300 and send_error is not None:
                raise send_error
            return outcome
        raise send_error or outcome

    @asynccontextmanager
    async def _request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: list[bytes] | None = None,
        *,
        payload_hash: str | None = None,
    ) -> AsyncIterator[Response]:
        """Send one request; the answer's head, its body left to read. A
        non-2xx answer raises ``ReplHTTPError`` here. The connection is kept
        for the next request only if the body was read to its end."""
        parts = body or []
        if payload_hash is None:
            if method == "GET":
                payload_hash = UNSIGNED_PAYLOAD
            elif sum(map(len, parts)) >= THREAD_HASH_MIN:
                payload_hash = await trio.to_thread.run_sync(_sha256_hex, parts)
            else:
                payload_hash = _sha256_hex(parts)
        raw_path = (self.target.prefix + path).encode()
        raw_query = encode_query(query or [])
        async with self._lock:
            for attempt in (0, 1):
                reused = self._conn is not None
                if self._conn is None:
                    self._conn = await self._connect()
                conn = self._conn
                headers = self._headers(method, raw_path, raw_query, parts, payload_hash)
                try:
                    response = await self._exchange(conn, method, raw_path, raw_query, headers,
                                                     parts)  # fmt: skip
                except (h11.LocalProtocolError, h11.RemoteProtocolError, OSError, ReplHTTPError,
                        trio.BrokenResourceError, trio.ClosedResourceError,
                        trio.TooSlowError) as exc:  # fmt: skip
                    await self._drop()
                    if reused and attempt == 0 and not isinstance(exc, trio.TooSlowError):
                        continue  # an idle connection the remote had closed
                    if isinstance(exc, ReplHTTPError):
                        raise
                    raise _broken(exc) from exc
                except BaseException:
                    await self._drop()  # cancelled mid-exchange: state unknown
                    raise
                break
            conn.requests += 1
            try:
                if not 200 <= response.status < 300:
                    raw = await response.read(MAX_ERROR_BODY)
                    raise parse_error(response.status, bytes(raw))
                yield response
            except BaseException:
                # Unread body or a broken exchange: the connection's state
                # is unknown, so it is not reused.
                if not response.complete:
                    await self._drop()
                raise
            finally:
                if self._conn is conn:
                    if response.complete and conn.reusable():
                        conn.h11.start_next_cycle()
                    else:
                        await self._drop()

    async def fetch(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        *,
        limit: int = repl_wire.MAX_DOCUMENT_BYTES,
    ) -> bytes:
        """One signed request to any path of the remote (``/v1/meta/stats``
        too); its whole body, at most ``limit`` bytes."""
        async with self._request(method, path, query, [body] if body else []) as response:
            raw = await response.read(limit)
        self.bytes_in += len(raw)
        return bytes(raw)

    # ---- the replication endpoints --------------------------------------
    async def oplog(self, since: str, limit: int, exclude_site: str | None = None) -> OplogPage:
        query = [("since", since), ("limit", str(limit))]
        if exclude_site is not None:
            query.append(("exclude_site", exclude_site))
        raw = await self.fetch("GET", OPLOG_PATH, query)
        try:
            return repl_wire.decode_page(raw)
        except WireError as exc:
            raise ReplHTTPError(0, "ReplicationBadBatch", str(exc), retryable=False) from None

    async def push(self, batch: PushBatch, frames: list[tuple[bytes, bytes]]) -> PushResult:
        parts = repl_wire.push_body_parts(batch, frames)
        if sum(map(len, parts)) > repl_wire.MAX_PUSH_BODY_BYTES:
            raise ValueError("push body over MAX_PUSH_BODY_BYTES: send smaller batches")
        async with self._request("POST", OPLOG_PATH, None, parts) as response:
            raw = await response.read(MAX_ERROR_BODY)
        try:
            return repl_wire.decode_result(raw)
        except WireError as exc:
            raise ReplHTTPError(0, "ReplicationBadBatch", str(exc), retryable=False) from None

    async def have(self, digests: list[bytes]) -> list[bytes]:
        """The digests of ``digests`` the remote does not hold."""
        missing: list[bytes] = []
        step = repl_wire.MAX_HAVE_DIGESTS
        for i in range(0, len(digests), step):
            body = repl_wire.encode_digests(digests[i : i + step])
            raw = await self.fetch("POST", HAVE_PATH, None, body,
                                   limit=repl_wire.MAX_HAVE_BODY_BYTES)  # fmt: skip
            try:
                missing += repl_wire.decode_digests(raw)
            except WireError as exc:
                raise ReplHTTPError(0, "InvalidResponse", str(exc), retryable=False) from None
        return missing

    async def manifests(self, uids: list[str]) -> dict[str, bytes]:
        """uid → manifest bytes of the versions the remote has (others
        absent), each checked against its own checksum."""
        found: dict[str, bytes] = {}
        wanted = list(dict.fromkeys(uids))
        step = repl_wire.MAX_MANIFEST_UIDS
        for i in range(0, len(wanted), step):
            group = wanted[i : i + step]
            raw = await self.fetch("GET", MANIFEST_PATH, [("uid", u) for u in group])
            try:
                got = repl_wire.decode_manifests(raw)
            except WireError as exc:
                raise ReplHTTPError(0, "InvalidResponse", str(exc), retryable=False) from None
            for uid, manifest in got.items():
                if uid not in group:
                    continue
                try:
                    # Its own checksum: damage on the way (or at the source)
                    # is caught here, not when the writer applies it.
                    decode_manifest(manifest, path=f"manifest {uid}", with_meta=False)
                except FormatError as exc:
                    raise ReplHTTPError(0, "InvalidResponse", str(exc)) from None
                found[uid] = manifest
        return found

    async def chunks(self, digests: list[bytes]) -> dict[bytes, bytes]:
        """digest → bytes of the chunks the remote holds, each BLAKE3-checked
        (a mismatch is ``ReplHTTPError`` code ``ReplicationBadChunk``);
        chunks the remote does not hold are absent."""
        got: dict[bytes, bytes] = {}
        wanted = list(dict.fromkeys(digests))
        step = repl_wire.MAX_CHUNK_DIGESTS
        for i in range(0, len(wanted), step):
            group = wanted[i : i + step]
            for _ in range(MAX_CHUNK_ROUNDS):
                ask = [d for d in group if d not in got]
                if not ask:
                    break
                left, new = await self._chunk_round(ask, got)
                if left == 0 or new == 0:
                    break
        return got

    async def _chunk_round(self, ask: list[bytes], got: dict[bytes, bytes]) -> tuple[int, int]:
        """One GET /chunk: frames into ``got``; (chunks left for another
        request, chunks received)."""
        asked = set(ask)
        reader = repl_wire.FrameReader(max_frames=len(ask))
        new = 0

        async def take(digest: bytes, data: bytes) -> None:
            nonlocal new
            if digest not in asked or digest in got:
                raise ReplHTTPError(0, "InvalidResponse", "a chunk frame nobody asked for",
                                    retryable=False)  # fmt: skip
            if len(data) >= THREAD_HASH_MIN:
                actual = await trio.to_thread.run_sync(_blake3, data)
            else:
                actual = _blake3(data)
            if actual != digest:
                raise ReplHTTPError(0, "ReplicationBadChunk",
                                    f"chunk {digest.hex()} does not match its digest")  # fmt: skip
            got[digest] = data
            new += 1

        query = [("digest", d.hex()) for d in ask]
        async with self._request("GET", CHUNK_PATH, query) as response:
            left_text = response.header(CHUNKS_LEFT_HEADER) or "0"
            try:
                async for piece in response.pieces():
                    self.bytes_in += len(piece)
                    for digest, data in reader.feed(piece):
                        await take(digest, data)
                reader.eof()
            except WireError as exc:
                raise ReplHTTPError(0, "InvalidResponse", str(exc)) from None
        left = int(left_text) if left_text.isdigit() else 0
        return left, new

    def snapshot(self) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The raw snapshot stream: ``async with client.snapshot() as body:
        async for piece in body: ...``; the connection is reused only if the
        body was read to its end."""
        return self._snapshot()

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._request("GET", SNAPSHOT_PATH) as response:
            yield self._counted(response)

    async def _counted(self, response: Response) -> AsyncIterator[bytes]:
        async for piece in response.pieces():
            self.bytes_in += len(piece)
            yield piece

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()
