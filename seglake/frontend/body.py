"""Incoming object bodies: decode, hash, chunk, verify — before any commit.

The frontend is where the bytes already are, so it computes everything the
writer needs (SPEC §4): MD5 for the ETag, BLAKE3 per 4 MiB chunk, the SHA-256
of the payload when the client signed it, and any ``x-amz-checksum-*`` the
client sent in a header or an aws-chunked trailer. Every check runs before
the writer is asked to commit, so a body that fails one is never visible.
Full chunks are handed to ``on_chunk`` as soon as they fill, so at most one
chunk per request is held in memory.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import blake3
import trio

from seglake.aio import s3_error_from_group
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.segment import CHUNK_SIZE
from seglake.frontend.http import Request
from seglake.protocol import checksums, chunked, upload_checks
from seglake.protocol.sigv4 import StreamingSigner
from seglake.sse.chunks import PLAIN_CHUNK

# Seals one plaintext chunk (its index in the object or part) for storage.
Sealer = Callable[[int, bytes], bytes]
# Bigger chunk-digest work goes to a thread so other requests keep moving.
THREAD_HASH_MIN = 1 << 20
# Appends of one request that may be in flight at once: 2 overlaps the
# writer's work on one chunk with the network read of the next, while a
# request still holds at most three chunks in memory.
APPENDS_IN_FLIGHT = 2


@dataclass
class Ingested:
    size: int
    etag: str
    tail: bytes
    tail_digest: bytes
    checksums: dict[str, str] = field(default_factory=dict)


def has_integrity_header(req: Request) -> bool:
    """Content-MD5 or an ``x-amz-checksum-*`` value (header, or announced as a
    trailer): what AWS requires on DeleteObjects and bucket configuration PUTs."""
    if "content-md5" in req.headers or "x-amz-trailer" in req.headers:
        return True
    return any(checksums.algorithm_from_header(name) for name in req.headers)


async def configuration_body(req: Request, cfg: Config, limit: int) -> bytes:
    """The body of a bucket-configuration PUT (lifecycle, CORS): AWS
    requires Content-MD5 or an ``x-amz-checksum-*`` on these; the body is
    read and verified like any upload (aws-chunked and trailers included),
    and more than ``limit`` bytes is refused without reading it."""
    if not has_integrity_header(req):
        raise S3Error(
            "InvalidRequest", message="Missing required header for this request: Content-Md5"
        )
    length = declared_length(req, cfg)
    if length > limit:
        raise S3Error("MaxMessageLengthExceeded")

    async def on_chunk(data: bytes, digest: bytes, index: int) -> None:
        raise S3Error("MaxMessageLengthExceeded")  # a full 4 MiB chunk: far too big

    body = await ingest(req, cfg, length, on_chunk)
    return bytes(body.tail)


def declared_length(req: Request, cfg: Config) -> int:
    """The payload length the client promises; checked against what arrives."""
    return upload_checks.declared_length(req.headers, cfg.max_object_size)


class _Payload:
    """The payload of a request body as it arrives, aws-chunked framing (and
    its signatures) removed; the trailers once they have come."""

    def __init__(self, req: Request, checks: upload_checks.BodyChecks) -> None:
        self._req = req
        self._decoder: chunked.AwsChunkedDecoder | None = None
        self._done = False
        self.trailers: dict[str, str] = {}
        mode = checks.streaming
        if mode is not None:
            auth = req.auth  # body_checks refused signed chunks without it
            signer = StreamingSigner(auth) if mode.signed and auth is not None else None
            self._decoder = chunked.AwsChunkedDecoder(signer=signer, trailer=mode.trailer)

    async def read(self) -> list[bytes] | None:
        """The payload pieces of the next body message; None after the last."""
        decoder = self._decoder
        if decoder is not None and decoder.complete and decoder.unused_data:
            raise S3Error("IncompleteBody", message="data after the final chunk")
        if self._done:
            return None
        message = await self._req.recv()
        if message["type"] == "http.disconnect":
            raise S3Error("IncompleteBody")
        self._done = not message.get("more_body", False)
        data = bytes(message.get("body", b""))
        if decoder is None or not data:
            return [data] if data else []
        pieces: list[bytes] = []
        for event in decoder.feed(data):
            if isinstance(event, chunked.Data):
                pieces.append(event.data)
            elif isinstance(event, chunked.Trailers):
                self.trailers = event.headers
        return pieces

    def close(self) -> None:
        """The body has ended: the framing must have ended with it."""
        if self._decoder is not None:
            self._decoder.eof()


class _Hashes:
    """Every digest of one payload: the MD5 (ETag), the payload SHA-256 when
    the client signed it, the ``x-amz-checksum-*`` to check, and BLAKE3 per
    chunk. One call per 4 MiB chunk, in a worker thread (hashlib, zlib,
    awscrt and blake3 all release the GIL on large buffers), not one per
    network read on the loop."""

    def __init__(self, checks: upload_checks.BodyChecks) -> None:
        self.md5 = hashlib.md5()
        self.sums = {alg: checksums.new_checksum(alg) for alg in checks.algorithms}
        # No aws-chunked framing then: the wire bytes are the payload.
        self.payload_sha = hashlib.sha256() if checks.payload_sha256 is not None else None
        self.plain_hook: Callable[[bytes], None] | None = None
        self._running: list[Any] = [self.md5, *self.sums.values()]
        if self.payload_sha is not None:
            self._running.append(self.payload_sha)

    def chunk(self, data: bytes) -> bytes:
        """Feed one chunk to the running hashes; its BLAKE3 digest."""
        for h in self._running:
            h.update(data)
        return _digest(data)

    def plain(self, data: bytes) -> None:
        """Feed one plaintext chunk to the running hashes only (ETag,
        checksums and the payload hash are of the plaintext), and to
        ``plain_hook``; chunks come here in object order."""
        for h in self._running:
            h.update(data)
        if self.plain_hook is not None:
            self.plain_hook(data)

    def store(self, data: bytes, index: int, sealer: Sealer | None) -> tuple[bytes, bytes]:
        """``plain``, then the bytes to store (sealed when ``sealer``) and
        their BLAKE3 digest."""
        if sealer is None and self.plain_hook is None:
            return data, self.chunk(data)
        self.plain(data)
        return seal_and_digest(sealer, index, data)

    def verify(self, checks: upload_checks.BodyChecks, trailers: dict[str, str]) -> dict[str, str]:
        return upload_checks.verify_body(
            checks,
            md5=self.md5.digest(),
            payload_sha256=None if self.payload_sha is None else self.payload_sha.hexdigest(),
            sums={alg: s.b64() for alg, s in self.sums.items()},
            trailers=trailers,
        )


class _Chunker:
    """Payload pieces in, full chunks out. Each chunk is copied exactly once:
    pieces are kept as views and joined when a chunk is full (or at the end,
    for the last one)."""

    def __init__(self, size: int = CHUNK_SIZE) -> None:
        self._views: list[memoryview] = []
        self._fill = 0
        self._size = size

    def add(self, data: bytes) -> Iterator[bytes]:
        """The chunks ``data`` completes, each as soon as it is full."""
        view = memoryview(data)
        while view:
            n = min(len(view), self._size - self._fill)
            self._views.append(view[:n])
            self._fill += n
            view = view[n:]
            if self._fill == self._size:
                chunk = b"".join(self._views)
                self._views, self._fill = [], 0
                yield chunk

    def rest(self) -> bytes:
        return b"".join(self._views)


async def ingest(
    req: Request,
    cfg: Config,
    length: int,
    on_chunk: Callable[[bytes, bytes, int], Awaitable[None]],
    *,
    at_most: bool = False,
    sealer: Sealer | None = None,
    plain_hook: Callable[[bytes], None] | None = None,
) -> Ingested:
    """Read the whole body; returns the final partial chunk undelivered.

    ``length`` is exact (``IncompleteBody`` otherwise) unless ``at_most``:
    then it is a cap (``EntityTooLarge`` the moment it is passed), for bodies
    whose size is not declared up front (the file of a POST form).

    ``on_chunk(data, digest, index)`` receives each full chunk; up to
    ``APPENDS_IN_FLIGHT`` run concurrently, so their completion order is not
    the object order: ``index`` is. What is checked, and in which order, is
    decided in ``seglake/protocol/upload_checks.py``.

    ``sealer(index, plaintext)`` (server-side encryption): chunks are cut at
    ``PLAIN_CHUNK`` bytes of plaintext and sealed before they are hashed
    with BLAKE3 and shipped; ``tail`` is then sealed too. ``size``, ETag
    and checksums stay those of the plaintext. ``plain_hook(plaintext)``
    sees every chunk's plaintext, tail included, in object order (a
    checksum the caller computes itself).
    """
    signed_payload = None if req.auth is None else req.auth.content_sha256
    checks = upload_checks.body_checks(
        req.headers, signed_payload, allow_unsigned=cfg.allow_unsigned_payload
    )
    payload = _Payload(req, checks)
    hashes = _Hashes(checks)
    hashes.plain_hook = plain_hook
    chunk_size = CHUNK_SIZE if sealer is None else PLAIN_CHUNK
    chunker = _Chunker(chunk_size)
    total = 0
    counter = itertools.count()
    # One append in flight while the next chunk is received and hashed.
    in_flight = trio.CapacityLimiter(APPENDS_IN_FLIGHT)

    async def ship(chunk: bytes, digest: bytes, index: int) -> None:
        try:
            await on_chunk(chunk, digest, index)
        finally:
            in_flight.release_on_behalf_of(index)

    async def seal_and_ship(plain: bytes, index: int) -> None:
        try:
            stored, digest = await trio.to_thread.run_sync(seal_and_digest, sealer, index, plain)
            await on_chunk(stored, digest, index)
        finally:
            in_flight.release_on_behalf_of(index)

    async def read_all(nursery: trio.Nursery | None) -> None:
        nonlocal total
        while (pieces := await payload.read()) is not None:
            for data in pieces:
                total += len(data)
                upload_checks.check_size(total, length, at_most=at_most, complete=False)
                for chunk in chunker.add(data):
                    index = next(counter)
                    assert nursery is not None, "a body shorter than a chunk fills none"
                    if sealer is None and plain_hook is None:
                        digest = await trio.to_thread.run_sync(hashes.chunk, chunk)
                        await in_flight.acquire_on_behalf_of(index)
                        nursery.start_soon(ship, chunk, digest, index)
                    else:
                        # The plaintext hashes run in order here; sealing and
                        # the BLAKE3 of the sealed chunk run in the shipping
                        # task, beside the next chunk's hashing.
                        await trio.to_thread.run_sync(hashes.plain, chunk)
                        await in_flight.acquire_on_behalf_of(index)
                        nursery.start_soon(seal_and_ship, chunk, index)

    if length < chunk_size:
        # check_size refuses more than ``length`` bytes, so no chunk fills
        # and nothing is shipped: no nursery (opening one is ~30% of a small
        # PUT's ingest).
        await read_all(None)
    else:
        with s3_error_from_group():
            async with trio.open_nursery() as nursery:
                await read_all(nursery)
    tail = chunker.rest()
    tail_digest = b""
    if tail:
        index = next(counter)
        if len(tail) >= THREAD_HASH_MIN:
            tail, tail_digest = await trio.to_thread.run_sync(hashes.store, tail, index, sealer)
        else:
            tail, tail_digest = hashes.store(tail, index, sealer)
    payload.close()
    upload_checks.check_size(total, length, at_most=at_most, complete=True)
    stored = hashes.verify(checks, payload.trailers)
    return Ingested(total, hashes.md5.hexdigest(), tail, tail_digest, stored)


def _digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def seal_and_digest(sealer: Sealer | None, index: int, plain: bytes) -> tuple[bytes, bytes]:
    """The bytes to store for one chunk (sealed when ``sealer``), and their BLAKE3."""
    stored = plain if sealer is None else sealer(index, plain)
    return stored, _digest(stored)
