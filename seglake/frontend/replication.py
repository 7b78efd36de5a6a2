"""Replication endpoints on the S3 port (docs/design-replication.md §5):
what another site pulls from this one and pushes into it.

Rules this module keeps:

* Who: every endpoint is SigV4-signed and authorised as ``ReplicationRead``
  (GETs) or ``ReplicationWrite`` (POSTs) before it runs; the ``rw``/``ro``
  key shorthands grant neither (``protocol/policy.py``), and a key limited
  to some buckets gets none of them (the oplog and chunks span every bucket).
* Reads (oplog pages, manifests, chunks) come from ``meta.db`` and segment
  files like any GET, so they keep working while the writer is quiesced;
  the POSTs are refused with ``MaintenanceMode`` then, before their body
  is read.
* Query arguments and bodies are hostile: every list is bounded by
  ``protocol/repl_wire.py`` (over a bound or malformed: 400
  ``InvalidArgument``), POST bodies must be signed with their SHA-256 and
  are bounded before they are read.
* A push applies all or nothing. Its batch comes first in the body and is
  validated before a chunk is stored; every chunk frame's BLAKE3 is checked
  as it arrives (a mismatch: 400 ``ReplicationBadChunk``), then stored
  through the writer exactly as an object's chunks are (``Append``); only
  when the whole body has come and matched its signed SHA-256 is the one
  ``ReplApply`` sent. A refused push may leave stored chunks no manifest
  names: garbage the next GC removes, never visible.
* A chunk is served only after its BLAKE3 was checked on read: a damaged
  or vanished chunk is left out of the answer (logged), never sent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Final

import blake3
import trio

from seglake.aio import s3_error_from_group
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.manifest import ChunkRef
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.objects import THREAD_READ_MIN, SegmentFiles
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.messages import ReplApply, ReplChunk
from seglake.meta import repl_reads
from seglake.meta.maintenance_state import OFF, read_state
from seglake.meta.reads import MetaReader
from seglake.protocol import repl_wire
from seglake.protocol.repl_wire import PushBatch, PushBodyReader, PushResult, WireError
from seglake.units import MiB

log = logging.getLogger("seglake.frontend.replication")

MSGPACK: Final = b"application/x-msgpack"
JSON: Final = b"application/json"
# The server's count of held chunks left out of a /chunk answer for its
# byte bound (the client asks again for them; seglake/repl/client.py).
CHUNKS_LEFT_HEADER: Final = b"x-seglake-chunks-left"
# Hash and verify bigger chunks in a thread (blake3 releases the GIL).
THREAD_HASH_MIN: Final = 1 * MiB
_HEX: Final = frozenset("0123456789abcdefABCDEF")
# Appends of one push in flight at once (as for an object body,
# frontend/body.py): the writer stores one chunk while the next arrives.
APPENDS_IN_FLIGHT: Final = 2


def _one(req: Request, name: str) -> str | None:
    values = req.query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise S3Error("InvalidArgument", message=f"{name} may be given once",
                      fields={"ArgumentName": name})  # fmt: skip
    return values[0]


def _bad(name: str, message: str) -> S3Error:
    return S3Error("InvalidArgument", message=message, fields={"ArgumentName": name})


def parse_limit(text: str | None) -> int:
    if text is None:
        return repl_wire.DEFAULT_PAGE_ENTRIES
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise _bad("limit", "limit must be a number")
    limit = int(text)
    if not 1 <= limit <= repl_wire.MAX_PAGE_ENTRIES:
        raise _bad("limit", f"limit must be 1 to {repl_wire.MAX_PAGE_ENTRIES}")
    return limit


def parse_digest(text: str) -> bytes:
    if len(text) != 2 * repl_wire.DIGEST_BYTES or not set(text) <= _HEX:
        raise _bad("digest", "a digest is 64 hex digits")
    return bytes.fromhex(text)


def _blake3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


class ReplicationHandlers(FamilyBase):
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        super().__init__(cfg, reader, writer)
        self.segments = SegmentFiles(cfg)

    # ---- shared checks ---------------------------------------------------
    def _whole_store_key(self, req: Request) -> None:
        """Replication spans every bucket: a key limited to some may not."""
        if getattr(req.identity, "buckets", None):
            raise S3Error("AccessDenied", message="a key limited to some buckets may not replicate")

    def _writable(self) -> None:
        state = read_state(self.reader.conn).get("state", OFF)
        if state != OFF:
            raise S3Error(
                "MaintenanceMode",
                message=f"the server is in maintenance mode ({state}); retry later",
            )

    def _signed_body(self, req: Request, limit: int) -> tuple[int, str]:
        """(length, SHA-256 hex) a POST body promises, before reading it:
        signed with its hash (not UNSIGNED-PAYLOAD, not aws-chunked), with
        a Content-Length within ``limit``."""
        signed = "" if req.auth is None else req.auth.content_sha256
        if len(signed) != 64:
            raise S3Error(
                "AccessDenied",
                message="replication bodies must be signed with their SHA-256 "
                "(x-amz-content-sha256)",
            )
        raw = req.headers.get("content-length")
        if raw is None:
            raise S3Error("MissingContentLength")
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
            raise S3Error("InvalidArgument", message="invalid content length")
        length = int(raw)
        if length > limit:
            raise S3Error("MaxMessageLengthExceeded",
                          message=f"this body may be at most {limit} bytes")  # fmt: skip
        return length, signed

    def _site_and_epoch(self) -> tuple[str, str]:
        try:
            conn = self.reader.conn
            return repl_reads.site_id(conn), repl_reads.oplog_epoch(conn)
        except RuntimeError as exc:
            raise S3Error("ServiceUnavailable", message=str(exc)) from None

    # ---- GET /v1/replication/oplog ---------------------------------------
    async def get_oplog(self, req: Request) -> None:
        self._whole_store_key(req)
        try:
            epoch, since = repl_wire.parse_cursor(_one(req, "since") or "0")
        except WireError:
            raise _bad("since", "since must be a cursor epoch:seq") from None
        limit = parse_limit(_one(req, "limit"))
        exclude = _one(req, "exclude_site")
        if exclude is not None and not repl_wire.is_site_id(exclude):
            raise _bad("exclude_site", "exclude_site must be a site id (16 hex digits)")
        fmt = _one(req, "format")
        if fmt not in (None, "json", "msgpack"):
            raise _bad("format", "format must be json or msgpack")
        _, ours = self._site_and_epoch()
        # A cursor of another epoch (the oplog was rebuilt since): from the
        # start of ours; a bare seq means ours.
        start = since if epoch in ("", ours) else 0
        page = repl_reads.oplog_page(self.reader.conn, start, limit, exclude)
        if page.epoch != ours and start != 0:
            # The epoch changed between the two reads: start over in it.
            start = 0
            page = repl_reads.oplog_page(self.reader.conn, 0, limit, exclude)
        if start < page.floor:
            raise S3Error(
                "OplogTruncated",
                message=f"the oplog of epoch {page.epoch} starts after seq {page.floor}; "
                f"cursor {start} must bootstrap",
            )
        if fmt == "json":
            body, ctype = repl_wire.page_json(page), JSON
        else:
            body, ctype = repl_wire.encode(page), MSGPACK
        await req.respond(200, [(b"cache-control", b"no-store")], body, ctype)

    # ---- GET /v1/replication/manifest ------------------------------------
    async def get_manifests(self, req: Request) -> None:
        self._whole_store_key(req)
        uids = req.query.get("uid", [])
        if not uids:
            raise _bad("uid", "name at least one uid")
        if len(uids) > repl_wire.MAX_MANIFEST_UIDS:
            raise _bad("uid", f"at most {repl_wire.MAX_MANIFEST_UIDS} uids")
        if not all(repl_wire.is_uid(u) for u in uids):
            raise _bad("uid", "malformed uid")
        found = repl_reads.manifests(self.reader.conn, uids)
        await req.respond(200, [(b"cache-control", b"no-store")],
                          repl_wire.encode_manifests(found), MSGPACK)  # fmt: skip

    # ---- GET /v1/replication/chunk ---------------------------------------
    async def get_chunks(self, req: Request) -> None:
        self._whole_store_key(req)
        texts = req.query.get("digest", [])
        if not texts:
            raise _bad("digest", "name at least one digest")
        if len(texts) > repl_wire.MAX_CHUNK_DIGESTS:
            raise _bad("digest", f"at most {repl_wire.MAX_CHUNK_DIGESTS} digests")
        digests = list(dict.fromkeys(parse_digest(t) for t in texts))
        where = repl_reads.chunk_locations(self.reader.conn, digests)
        held = [d for d in digests if d in where]
        serve: list[bytes] = []
        total = 0
        for d in held:
            length = where[d][2]
            if serve and total + length > repl_wire.MAX_CHUNK_RESPONSE_BYTES:
                break
            serve.append(d)
            total += length
        left = len(held) - len(serve)
        # No Content-Length: a chunk that fails its check on read is left
        # out, so the length is known only at the end.
        await req.start(200, [(b"content-type", b"application/octet-stream"),
                              (b"cache-control", b"no-store"),
                              (CHUNKS_LEFT_HEADER, str(left).encode())])  # fmt: skip
        for d in serve:
            data = await self._read_chunk(d, where[d])
            if data is not None:
                await req.body(repl_wire.FRAME_HEADER.pack(d, len(data)), more=True)
                await req.body(data, more=True)
        await req.body(b"")

    async def _read_chunk(self, digest: bytes, loc: tuple[int, int, int]) -> bytes | None:
        """The chunk's bytes, BLAKE3-checked; None (logged) when it cannot
        be read or does not verify. GC may have moved it since the lookup:
        a vanished segment is looked up once more."""
        for attempt in (0, 1):
            ref = ChunkRef(segment_id=loc[0], offset=loc[1], length=loc[2], digest=digest)
            try:
                if ref.length >= THREAD_READ_MIN:
                    return await trio.to_thread.run_sync(self.segments.read, ref)
                return self.segments.read(ref)
            except FileNotFoundError:
                fresh = repl_reads.chunk_locations(self.reader.conn, [digest]).get(digest)
                if attempt == 0 and fresh is not None and fresh != loc:
                    loc = fresh
                    continue
                log.error("chunk %s: segment %d is gone", digest.hex(), loc[0])
                return None
            except (FormatError, OSError) as exc:
                log.error("chunk %s is damaged, not served: %s", digest.hex(), exc)
                return None
        return None

    # ---- POST /v1/replication/have ---------------------------------------
    async def have(self, req: Request) -> None:
        self._whole_store_key(req)
        self._writable()
        self._signed_body(req, repl_wire.MAX_HAVE_BODY_BYTES)
        raw = await req.small_body(repl_wire.MAX_HAVE_BODY_BYTES, allow_unsigned=False)
        try:
            digests = repl_wire.decode_digests(raw)
        except WireError as exc:
            raise S3Error("InvalidArgument", message=str(exc)) from None
        missing = repl_reads.missing_digests(self.reader.conn, digests)
        await req.respond(200, [(b"cache-control", b"no-store")],
                          repl_wire.encode_digests(missing), MSGPACK)  # fmt: skip

    # ---- POST /v1/replication/oplog --------------------------------------
    async def push_oplog(self, req: Request) -> None:
        self._whole_store_key(req)
        self._writable()
        length, signed = self._signed_body(req, repl_wire.MAX_PUSH_BODY_BYTES)
        site, _ = self._site_and_epoch()
        batch, chunks = await self._receive_push(req, length, signed, site)
        applied = await self.writer.call(
            ReplApply(
                remote=f"site:{batch.site}", direction="push", epoch=batch.epoch,
                from_seq=batch.from_seq, to_seq=batch.to_seq, entries=list(batch.entries),
                chunks=chunks, remote_site=batch.site,
            )
        )  # fmt: skip
        result = PushResult(applied=applied.applied, skipped=applied.skipped,
                            conflicts=applied.conflicts, cursor=applied.cursor)  # fmt: skip
        await req.respond(200, [(b"cache-control", b"no-store")], repl_wire.encode(result),
                          MSGPACK)  # fmt: skip

    async def _receive_push(
        self, req: Request, length: int, signed: str, our_site: str
    ) -> tuple[PushBatch, list[ReplChunk]]:
        """Read, check and store a push body; its batch and the chunks stored."""
        reader = PushBodyReader(max_frames=repl_wire.MAX_PAGE_ENTRIES * 16)
        sha = hashlib.sha256()
        received = 0
        chunks: list[ReplChunk] = []
        stored: set[bytes] = set()
        # Appends overlap the receiving and checking of the next frames.
        in_flight = trio.Semaphore(APPENDS_IN_FLIGHT)

        async def store(digest: bytes, chunk: bytes) -> None:
            try:
                where = await self.writer.append(chunk, digest)
                chunks.append(ReplChunk(digest, where.segment_id, where.offset, where.length))
            finally:
                in_flight.release()

        try:
            with s3_error_from_group():
                async with trio.open_nursery() as nursery:
                    while True:
                        message = await req.recv()
                        if message["type"] == "http.disconnect":
                            raise S3Error("IncompleteBody")
                        data = bytes(message.get("body", b""))
                        received += len(data)
                        if received > length:
                            raise S3Error("IncompleteBody", message="more than Content-Length")
                        sha.update(data)
                        for item in reader.feed(data):
                            if isinstance(item, PushBatch):
                                self._check_batch(item, our_site)
                                continue
                            digest, chunk = item
                            await self._verify_chunk(digest, chunk)
                            if digest not in stored:
                                stored.add(digest)
                                await in_flight.acquire()
                                nursery.start_soon(store, digest, chunk)
                        if not message.get("more_body", False):
                            break
                    batch = reader.eof()
        except WireError as exc:
            raise S3Error("ReplicationBadBatch", message=str(exc)) from None
        if received != length:
            raise S3Error("IncompleteBody")
        if not hmac.compare_digest(sha.hexdigest(), signed.lower()):
            raise S3Error("XAmzContentSHA256Mismatch")
        return batch, chunks

    @staticmethod
    def _check_batch(batch: PushBatch, our_site: str) -> None:
        if not repl_wire.is_site_id(batch.site):
            raise S3Error("ReplicationBadBatch", message="the batch's site is not a site id")
        if batch.site == our_site:
            raise S3Error("ReplicationBadBatch", message="a batch from this very site")
        if not (batch.epoch and batch.epoch.isalnum() and len(batch.epoch) <= 64):
            raise S3Error("ReplicationBadBatch", message="the batch's epoch is malformed")
        if batch.from_seq < 0 or batch.to_seq < batch.from_seq:
            raise S3Error("ReplicationBadBatch", message="the batch's range is malformed")

    @staticmethod
    async def _verify_chunk(digest: bytes, data: bytes) -> None:
        if len(data) >= THREAD_HASH_MIN:
            actual = await trio.to_thread.run_sync(_blake3, data)
        else:
            actual = _blake3(data)
        if actual != digest:
            raise S3Error(
                "ReplicationBadChunk",
                message=f"chunk {digest.hex()} does not match its digest; nothing was applied",
            )
