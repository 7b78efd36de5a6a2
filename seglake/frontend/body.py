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

import base64
import binascii
import hashlib
import hmac
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import blake3
import trio

from seglake.aio import s3_error_from_group
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.segment import CHUNK_SIZE
from seglake.frontend.http import Request
from seglake.protocol import checksums, chunked
from seglake.protocol.sigv4 import StreamingSigner

STREAMING_MODES = {
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": (False, True),
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": (True, False),
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": (True, True),
}
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


def _b64_md5(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise S3Error("InvalidDigest") from None
    if len(raw) != 16:
        raise S3Error("InvalidDigest")
    return raw


def declared_length(req: Request, cfg: Config) -> int:
    """The payload length the client promises; checked against what arrives."""
    sha = req.headers.get("x-amz-content-sha256", "")
    raw = (
        req.headers.get("x-amz-decoded-content-length")
        if sha in STREAMING_MODES
        else req.headers.get("content-length")
    )
    if raw is None:
        raise S3Error("MissingContentLength")
    if not raw.isdigit() or len(raw) > 19:
        raise S3Error("InvalidArgument", message="invalid content length")
    length = int(raw)
    if cfg.max_object_size and length > cfg.max_object_size:
        raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(cfg.max_object_size)})
    return length


async def ingest(
    req: Request,
    cfg: Config,
    length: int,
    on_chunk: Callable[[bytes, bytes, int], Awaitable[None]],
    *,
    at_most: bool = False,
) -> Ingested:
    """Read the whole body; returns the final partial chunk undelivered.

    ``length`` is exact (``IncompleteBody`` otherwise) unless ``at_most``:
    then it is a cap (``EntityTooLarge`` the moment it is passed), for bodies
    whose size is not declared up front (the file of a POST form).

    ``on_chunk(data, digest, index)`` receives each full chunk; up to
    ``APPENDS_IN_FLIGHT`` run concurrently, so their completion order is not
    the object order: ``index`` is.
    """
    sha_mode = req.headers.get("x-amz-content-sha256", "")
    decoder: chunked.AwsChunkedDecoder | None = None
    if sha_mode in STREAMING_MODES:
        signed, trailer = STREAMING_MODES[sha_mode]
        if signed and req.auth is None:
            raise S3Error("AccessDenied")
        if not signed and not cfg.allow_unsigned_payload:
            # The trailer checksum guards against corruption, not tampering:
            # this body is as unsigned as UNSIGNED-PAYLOAD.
            raise S3Error("AccessDenied", message="UNSIGNED-PAYLOAD is disabled on this server")
        signer = StreamingSigner(req.auth) if signed and req.auth is not None else None
        decoder = chunked.AwsChunkedDecoder(signer=signer, trailer=trailer)
    elif not cfg.allow_unsigned_payload and (
        sha_mode == "UNSIGNED-PAYLOAD"
        # A presigned request need not send the header: its signature then
        # covers UNSIGNED-PAYLOAD all the same.
        or (req.auth is not None and req.auth.content_sha256 == "UNSIGNED-PAYLOAD")
    ):
        raise S3Error("AccessDenied", message="UNSIGNED-PAYLOAD is disabled on this server")

    # Checksums: one from a header, or one announced in x-amz-trailer.
    header_sums: dict[str, str] = {}
    for name, value in req.headers.items():
        alg = checksums.algorithm_from_header(name)
        if alg is not None:
            checksums.decode_value(alg, value)  # malformed → InvalidRequest, before any byte
            header_sums[alg] = value.strip()
    trailer_alg: str | None = None
    announced = req.headers.get("x-amz-trailer")
    if announced:
        if decoder is None:
            raise S3Error("InvalidRequest", message="x-amz-trailer requires an aws-chunked body")
        trailer_alg = checksums.algorithm_from_header(announced.strip().lower())
        if trailer_alg is None:
            raise S3Error("InvalidRequest", message=f"unsupported trailer {announced!r}")
    if len(header_sums) + (1 if trailer_alg else 0) > 1:
        raise S3Error("InvalidRequest", message="Expecting a single x-amz-checksum- header")
    sums = {
        alg: checksums.new_checksum(alg)
        for alg in [*header_sums, *([trailer_alg] if trailer_alg else [])]
    }

    # Hashes that must see every payload byte in order. They run once per
    # 4 MiB chunk in a worker thread (hashlib, zlib, awscrt and blake3 all
    # release the GIL on large buffers), not per network read on the loop.
    md5 = hashlib.md5()
    payload_sha = hashlib.sha256() if len(sha_mode) == 64 else None
    running: list[Any] = [md5, *sums.values()]
    if payload_sha is not None:
        running.append(payload_sha)  # no aws-chunked framing: wire bytes are the payload

    def hash_chunk(data: bytes) -> bytes:
        for h in running:
            h.update(data)
        return _digest(data)

    # Each chunk is copied exactly once: network reads are kept as views and
    # joined when 4 MiB have arrived (or at the end, for the last one).
    pieces: list[memoryview] = []
    fill = 0
    total = 0
    trailers: dict[str, str] = {}
    # One append in flight while the next chunk is received and hashed.
    in_flight = trio.CapacityLimiter(APPENDS_IN_FLIGHT)

    async def ship(chunk: bytes, digest: bytes, index: int) -> None:
        try:
            await on_chunk(chunk, digest, index)
        finally:
            in_flight.release_on_behalf_of(index)

    async def take(data: bytes, nursery: trio.Nursery | None) -> None:
        nonlocal total, pieces, fill
        total += len(data)
        if total > length:
            if at_most:
                raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(length)})
            raise S3Error("IncompleteBody", message="more data than the declared length")
        view = memoryview(data)
        while view:
            n = min(len(view), CHUNK_SIZE - fill)
            pieces.append(view[:n])
            fill += n
            view = view[n:]
            if fill == CHUNK_SIZE:
                chunk = b"".join(pieces)
                pieces, fill = [], 0
                digest = await trio.to_thread.run_sync(hash_chunk, chunk)
                assert nursery is not None, "a body shorter than a chunk fills none"
                index = next(counter)
                await in_flight.acquire_on_behalf_of(index)
                nursery.start_soon(ship, chunk, digest, index)

    async def read_all(nursery: trio.Nursery | None) -> None:
        nonlocal trailers
        while True:
            message = await req.recv()
            if message["type"] == "http.disconnect":
                raise S3Error("IncompleteBody")
            data = bytes(message.get("body", b""))
            if data:
                if decoder is None:
                    await take(data, nursery)
                else:
                    for event in decoder.feed(data):
                        if isinstance(event, chunked.Data):
                            await take(event.data, nursery)
                        elif isinstance(event, chunked.Trailers):
                            trailers = event.headers
                    if decoder.complete and decoder.unused_data:
                        raise S3Error("IncompleteBody", message="data after the final chunk")
            if not message.get("more_body", False):
                break

    counter = itertools.count()
    if length < CHUNK_SIZE:
        # take() refuses more than ``length`` bytes, so no chunk fills and
        # nothing is shipped: no nursery (opening one is ~30% of a small
        # PUT's ingest).
        await read_all(None)
    else:
        with s3_error_from_group():
            async with trio.open_nursery() as nursery:
                await read_all(nursery)
    tail = b"".join(pieces)
    tail_digest = b""
    if tail:
        if len(tail) >= THREAD_HASH_MIN:
            tail_digest = await trio.to_thread.run_sync(hash_chunk, tail)
        else:
            tail_digest = hash_chunk(tail)
    if decoder is not None:
        decoder.eof()
    if total != length and not at_most:
        raise S3Error("IncompleteBody")
    if payload_sha is not None and not hmac.compare_digest(
        payload_sha.hexdigest(), sha_mode.lower()
    ):
        raise S3Error("XAmzContentSHA256Mismatch")

    content_md5 = req.headers.get("content-md5")
    md5_raw = md5.digest()
    if content_md5 is not None and not hmac.compare_digest(_b64_md5(content_md5), md5_raw):
        raise S3Error("BadDigest")

    stored: dict[str, str] = {}
    for alg, value in header_sums.items():
        got = sums[alg].b64()
        if not hmac.compare_digest(got, value.strip()):
            raise S3Error(
                "BadDigest",
                message=f"The {alg} you specified did not match the calculated checksum.",
            )
        stored[alg] = got
    if trailer_alg is not None:
        name = checksums.header_name(trailer_alg)
        sent = trailers.get(name)
        if sent is None:
            raise S3Error("InvalidRequest", message=f"the announced trailer {name} was not sent")
        checksums.decode_value(trailer_alg, sent)
        got = sums[trailer_alg].b64()
        if not hmac.compare_digest(got, sent.strip()):
            raise S3Error(
                "BadDigest",
                message=f"The {trailer_alg} you specified did not match the calculated checksum.",
            )
        stored[trailer_alg] = got

    return Ingested(total, md5_raw.hex(), tail, tail_digest, stored)


def _digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()
