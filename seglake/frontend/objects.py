"""PutObject, GetObject, HeadObject, DeleteObject.

Writes: the body is ingested here (hashes, checks) and streamed to the writer
chunk by chunk; the reply is sent only after the writer's commit, i.e. after
the durability barrier. Reads: the current version comes from SQLite, the
bytes straight from segment files; every chunk is BLAKE3-verified before a
byte of it is sent, so damaged data ends the response instead of being served.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections import OrderedDict
from typing import Any

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.format.manifest import ChunkRef, decode_manifest
from seglake.frontend.body import declared_length, ingest
from seglake.frontend.family import Handler
from seglake.frontend.http import Request
from seglake.frontend.writer_client import WriterClient
from seglake.meta.reads import MetaReader, VersionRow
from seglake.protocol import checksums
from seglake.protocol.ranges import multipart_parts, parse_range
from seglake.protocol.xml import http_date
from seglake.writer.segments import segment_file_name

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
# AWS's limit on user-defined metadata (names + values of x-amz-meta-*).
MAX_USER_META_BYTES = 2 * 1024
STORED_HEADERS = (
    "content-disposition", "content-encoding", "content-language", "cache-control", "expires",
)  # fmt: skip
# Reads of at least this many bytes run in a thread: pread and BLAKE3 drop
# the GIL, so big GETs use the second core and small ones skip the hop.
THREAD_READ_MIN = 256 * 1024
MAX_OPEN_SEGMENTS = 256


def validate_key(key: str) -> None:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError")
    for ch in key:
        o = ord(ch)
        if (o < 0x20 and ch not in "\t\n\r") or o in (0xFFFE, 0xFFFF) or 0xD800 <= o <= 0xDFFF:
            raise S3Error(
                "InvalidArgument",
                message="Object key contains a character that cannot be represented in XML",
            )


_VERSION_ID_LEN = 24  # 16 hex digits of inverted clock + 8 random


def validate_version_id(version_id: str) -> None:
    """Seglake version ids are 24 lowercase hex digits, or ``null``."""
    if version_id == "null":
        return
    if len(version_id) != _VERSION_ID_LEN or not all(c in "0123456789abcdef" for c in version_id):
        raise S3Error("InvalidArgument", message="Invalid version id specified")


def stored_meta(req: Request) -> dict[str, Any]:
    user: dict[str, str] = {}
    size = 0
    for name, value in req.headers.items():
        if name.startswith("x-amz-meta-"):
            short = name[len("x-amz-meta-") :]
            user[short] = value
            size += len(short) + len(value)
    if size > MAX_USER_META_BYTES:
        raise S3Error("MetadataTooLarge")
    headers = {h: req.headers[h] for h in STORED_HEADERS if h in req.headers}
    enc = headers.get("content-encoding")
    if enc is not None:
        # aws-chunked is transfer framing, not a property of the object.
        parts = [p.strip() for p in enc.split(",") if p.strip() and p.strip() != "aws-chunked"]
        if parts:
            headers["content-encoding"] = ",".join(parts)
        else:
            del headers["content-encoding"]
    meta: dict[str, Any] = {"headers": headers}
    if user:
        meta["user"] = user
    ctype = req.headers.get("content-type")
    if ctype:
        meta["content_type"] = ctype
    return meta


class SegmentFiles:
    """Read-only descriptors of segment files, kept open (LRU)."""

    def __init__(self, cfg: Config) -> None:
        self.dir = cfg.segments_dir
        self._fds: OrderedDict[int, int] = OrderedDict()

    def fd(self, segment_id: int) -> int:
        fd = self._fds.get(segment_id)
        if fd is not None:
            self._fds.move_to_end(segment_id)
            return fd
        fd = os.open(self.dir / segment_file_name(segment_id), os.O_RDONLY | os.O_CLOEXEC)
        self._fds[segment_id] = fd
        if len(self._fds) > MAX_OPEN_SEGMENTS:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def read(self, ref: ChunkRef) -> bytes:
        path = str(self.dir / segment_file_name(ref.segment_id))
        return segfmt.read_record(
            self.fd(ref.segment_id), ref.offset, ref.length, ref.digest, path=path
        )


class ObjectHandlers:
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        self.cfg = cfg
        self.reader = reader
        self.writer = writer
        self.segments = SegmentFiles(cfg)

    def handlers(self) -> dict[str, Handler]:
        return {
            "PutObject": self.put_object,
            "GetObject": self.get_object,
            "HeadObject": self.head_object,
            "DeleteObject": self.delete_object,
        }

    # ---- PUT -------------------------------------------------------------
    async def put_object(self, req: Request) -> None:
        validate_key(req.key)
        length = declared_length(req, self.cfg)
        meta = stored_meta(req)
        bucket = self.reader.bucket(req.bucket)
        if bucket is None:
            raise S3Error("NoSuchBucket", resource=req.bucket, fields={"BucketName": req.bucket})
        if_none_match = req.headers.get("if-none-match")
        if if_none_match is not None and if_none_match.strip() != "*":
            raise S3Error("NotImplemented", message="If-None-Match on PUT supports only '*'")
        refs: dict[int, list[Any]] = {}

        async def on_chunk(data: bytes, digest: bytes, index: int) -> None:
            ref = await self.writer.call("append", {"digest": digest}, data)
            refs[index] = [ref[0], ref[1], ref[2], digest]

        body = await ingest(req, self.cfg, length, on_chunk)
        chunks = [refs[i] for i in range(len(refs))]
        if body.checksums:
            meta["checksums"] = body.checksums
        args = {
            "bucket": req.bucket, "key": req.key, "size": body.size, "etag": body.etag,
            "meta": meta, "chunks": chunks, "tail_digest": body.tail_digest,
            "if_none_match": if_none_match is not None,
            "if_match": req.headers.get("if-match"),
        }  # fmt: skip
        result = await self.writer.call("put", args, body.tail)
        headers = [(b"etag", f'"{body.etag}"'.encode())]
        if result.get("version_id"):
            headers.append((b"x-amz-version-id", result["version_id"].encode()))
        for alg, value in body.checksums.items():
            headers.append((checksums.header_name(alg).encode(), value.encode()))
        await req.respond(200, headers)

    # ---- GET / HEAD ------------------------------------------------------
    def _resolve(self, req: Request) -> VersionRow:
        """The version a GET/HEAD addresses: ``?versionId=`` or the current one."""
        validate_key(req.key)
        version_id = req.q("versionId")
        if version_id is not None:
            validate_version_id(version_id)
            version = self.reader.version(req.bucket, req.key, version_id)
            if version is None:
                self._require_bucket(req)
                raise S3Error(
                    "NoSuchVersion", resource=req.key,
                    fields={"Key": req.key, "VersionId": version_id},
                )  # fmt: skip
            if version.delete_marker:
                # A delete marker has no body: S3 answers 405 and says what it is.
                raise S3Error(
                    "MethodNotAllowed", resource=req.key,
                    headers={
                        "x-amz-delete-marker": "true", "x-amz-version-id": version_id,
                        "Last-Modified": http_date(version.created_ns), "Allow": "DELETE",
                    },
                )  # fmt: skip
            return version
        version = self.reader.current(req.bucket, req.key)
        if version is None or version.state == "DELETED":
            self._require_bucket(req)
            raise S3Error("NoSuchKey", resource=req.key, fields={"Key": req.key})
        if version.delete_marker:
            raise S3Error(
                "NoSuchKey", resource=req.key, fields={"Key": req.key},
                headers={"x-amz-delete-marker": "true", "x-amz-version-id": version.version_id},
            )  # fmt: skip
        return version

    def _require_bucket(self, req: Request) -> None:
        if self.reader.bucket(req.bucket) is None:
            raise S3Error("NoSuchBucket", resource=req.bucket, fields={"BucketName": req.bucket})

    def _object_headers(
        self, req: Request, v: VersionRow, *, whole: bool = True
    ) -> list[tuple[bytes, bytes]]:
        """Headers describing the version. Stored checksums describe the whole
        object, so they are sent only when the whole object is (clients that
        ask with x-amz-checksum-mode verify them against the body)."""
        meta = v.meta
        h: list[tuple[bytes, bytes]] = [
            (b"etag", f'"{v.etag}"'.encode()),
            (b"last-modified", http_date(v.created_ns).encode()),
            (b"accept-ranges", b"bytes"),
            (
                b"content-type",
                str(meta.get("content_type") or "binary/octet-stream").encode("latin-1", "replace"),
            ),
        ]
        if v.version_id != "null":
            h.append((b"x-amz-version-id", v.version_id.encode()))
        for name, value in (meta.get("headers") or {}).items():
            h.append((name.encode(), str(value).encode("latin-1", "replace")))
        for name, value in (meta.get("user") or {}).items():
            h.append(
                (
                    f"x-amz-meta-{name}".encode("latin-1", "replace"),
                    str(value).encode("latin-1", "replace"),
                )
            )
        if whole and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            for alg, value in (meta.get("checksums") or {}).items():
                h.append((checksums.header_name(alg).encode(), str(value).encode()))
        return h

    async def head_object(self, req: Request) -> None:
        v = self._resolve(req)
        headers = self._object_headers(req, v)
        headers.append((b"content-length", str(v.size).encode()))
        await req.start(200, headers)
        await req.body(b"")

    async def get_object(self, req: Request) -> None:
        v = self._resolve(req)
        if v.manifest is None:
            raise S3Error("InternalError", message="version has no manifest")
        try:
            manifest = decode_manifest(
                v.manifest, path=f"meta.db:versions/{v.uid}", with_meta=False
            )
        except FormatError as exc:
            log.error("damaged manifest: %s", exc)
            await self._mark_damaged(v)
            raise S3Error("ObjectDamaged") from None
        byte_ranges = parse_range(req.headers.get("range"), v.size)
        headers = self._object_headers(req, v, whole=byte_ranges is None)
        plan: list[bytes | tuple[int, int]] = []  # literal bytes or [start, end] spans
        if byte_ranges is None:
            status = 200
            length = v.size
            plan.append((0, v.size - 1))
        elif len(byte_ranges) == 1:
            status = 206
            r = byte_ranges[0]
            length = r.length
            headers.append((b"content-range", r.content_range(v.size).encode()))
            plan.append((r.start, r.end))
        else:
            status = 206
            boundary = os.urandom(12).hex()
            ctype = str(v.meta.get("content_type") or "binary/octet-stream")
            heads, closing, length = multipart_parts(byte_ranges, v.size, ctype, boundary)
            headers = [h for h in headers if h[0] != b"content-type"]
            headers.append((b"content-type", f"multipart/byteranges; boundary={boundary}".encode()))
            for head, r in zip(heads, byte_ranges, strict=True):
                plan += [head, (r.start, r.end)]
            plan.append(closing)
        headers.append((b"content-length", str(length).encode()))
        await self._stream(req, v, manifest.chunks, status, headers, plan)

    async def _stream(
        self,
        req: Request,
        v: VersionRow,
        chunks: tuple[ChunkRef, ...],
        status: int,
        headers: list[tuple[bytes, bytes]],
        plan: list[bytes | tuple[int, int]],
    ) -> None:
        """Send ``plan``; every chunk is verified before any of its bytes go out."""
        starts: list[int] = []
        pos = 0
        for ref in chunks:
            starts.append(pos)
            pos += ref.length
        cached: tuple[int, bytes] | None = None

        async def chunk(i: int) -> bytes:
            nonlocal cached
            if cached is not None and cached[0] == i:
                return cached[1]
            ref = chunks[i]
            try:
                if ref.length >= THREAD_READ_MIN:
                    data = await trio.to_thread.run_sync(self.segments.read, ref)
                else:
                    data = self.segments.read(ref)
            except (FormatError, OSError) as exc:
                log.error("object %s/%s version %s is damaged: %s", v.bucket, v.key, v.uid, exc)
                await self._mark_damaged(v)
                if not req.started:
                    raise S3Error("ObjectDamaged") from None
                # Headers are out: cut the connection so the client sees a
                # short body instead of wrong bytes.
                raise ResponseAborted() from exc
            cached = (i, data)
            return data

        pieces: list[bytes | tuple[int, int, int]] = []  # bytes, or (chunk, lo, hi)
        for item in plan:
            if isinstance(item, bytes):
                pieces.append(item)
                continue
            first, last = item
            if last < first:
                continue  # empty object
            i = bisect.bisect_right(starts, first) - 1
            while i < len(chunks) and starts[i] <= last:
                lo = max(first, starts[i]) - starts[i]
                hi = min(last, starts[i] + chunks[i].length - 1) - starts[i] + 1
                pieces.append((i, lo, hi))
                i += 1
        if pieces and not isinstance(pieces[0], bytes):
            await chunk(pieces[0][0])  # a damaged first chunk still gets a 500
        await req.start(status, headers)
        if not pieces:
            await req.body(b"")
            return
        for n, piece in enumerate(pieces):
            more = n < len(pieces) - 1
            if isinstance(piece, bytes):
                await req.body(piece, more)
            else:
                i, lo, hi = piece
                data = await chunk(i)
                await req.body(data if lo == 0 and hi == len(data) else data[lo:hi], more)

    async def _mark_damaged(self, v: VersionRow) -> None:
        try:
            await self.writer.call("mark_damaged", {"uid": v.uid})
        except S3Error as exc:
            log.warning("could not mark %s damaged: %s", v.uid, exc)

    # ---- DELETE ----------------------------------------------------------
    async def delete_object(self, req: Request) -> None:
        validate_key(req.key)
        version_id = req.q("versionId")
        if version_id is not None:
            validate_version_id(version_id)
            result = await self.writer.call(
                "delete_version",
                {"bucket": req.bucket, "key": req.key, "version_id": version_id},
            )
        else:
            result = await self.writer.call("delete_object", {"bucket": req.bucket, "key": req.key})
        headers: list[tuple[bytes, bytes]] = []
        if result.get("delete_marker"):
            headers.append((b"x-amz-delete-marker", b"true"))
        if result.get("version_id"):
            headers.append((b"x-amz-version-id", result["version_id"].encode()))
        await req.respond(204, headers)


class ResponseAborted(Exception):
    """The response was started and must be cut off (never completed)."""
