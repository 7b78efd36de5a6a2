"""Multipart uploads: Create, UploadPart, UploadPartCopy, ListParts, Complete,
Abort, ListMultipartUploads.

Rules this module keeps:

- A part's body is ingested exactly like a PutObject body (``body.ingest``:
  MD5, BLAKE3 per chunk, checksums, signatures) and its chunks are appended
  to segments as they fill; the part exists only once the writer committed
  its row (durability barrier), and only then is the client answered.
- UploadPartCopy never sends data through the client: chunks of the source
  that lie wholly inside the range are referenced as they are; a chunk cut
  by the range is read (BLAKE3-verified) and the slice appended as a new
  chunk. Every byte of the range is read once, verified, to compute the
  part's MD5 (its ETag).
- CompleteMultipartUpload is validated entirely before anything is sent:
  the body here (size cap, XML, ascending part numbers), the rest in the
  writer's transaction (parts exist, ETags match, sizes). The object's
  manifest is the concatenation of the parts' chunk lists; no byte moves.
- Checksums: an upload named with ``x-amz-checksum-algorithm`` has a type,
  COMPOSITE or FULL_OBJECT (``x-amz-checksum-type``, else AWS's default for
  the algorithm), kept in its meta and reported by every response that
  carries a checksum. Every part gets the upload's checksum (computed here
  if the client sent none); Complete derives the object's from them.
- Upload ids are opaque to clients; one that does not exist, or names an
  upload of another bucket or key, is ``NoSuchUpload``. Complete of an
  upload completed a moment ago with the same part list (an SDK retrying
  after a lost response) answers 200 with the same result: the writer keeps
  a record of completed uploads for that (``writer/multipart_ops.py``).
- Request XML is untrusted: parsed with ``defusedxml`` (no DTDs, no entity
  expansion) from a body of bounded size (``seglake/protocol/xml_requests.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import blake3
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.manifest import ChunkRef, decode_manifest
from seglake.format.segment import CHUNK_SIZE
from seglake.frontend import lock_fields
from seglake.frontend.access import with_acl
from seglake.frontend.body import Sealer, declared_length, ingest
from seglake.frontend.copy import CopySource, parse_copy_source
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.objects import (
    ChunksMoved,
    SegmentFiles,
    mark_damaged,
    part_sizes,
    read_chunk_checked,
    require_content_md5,
    require_if_match,
    stored_meta,
    validate_key,
    validate_version_id,
)
from seglake.frontend.sse import SseKeyring, bucket_default_sse, response_headers, secure
from seglake.frontend.tagging import write_vmeta
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.messages import (
    AbortUpload,
    Chunk,
    CompleteUpload,
    CreateUpload,
    UploadPart,
)
from seglake.meta import multipart_reads
from seglake.meta.acl_reads import upload_owners
from seglake.meta.multipart_reads import UploadRow
from seglake.meta.reads import MetaReader, VersionRow
from seglake.protocol import checksums, conditions, listing
from seglake.protocol.limits import MAX_PART_NUMBER, MAX_PART_SIZE
from seglake.protocol.xml import document, el, iso8601
from seglake.protocol.xml_requests import MAX_COMPLETE_BODY_BYTES, parse_complete
from seglake.sse.chunks import PLAIN_CHUNK, TAG_BYTES, ChunkCipher, SseInfo, new_nonce_base
from seglake.sse.headers import MSG_NOT_APPLICABLE, CustomerKey, customer_key

log = logging.getLogger(__name__)

# Create/Abort carry no body; anything sent anyway is read and dropped up to this.
MAX_EMPTY_BODY_BYTES: Final = 64 * 1024
MAX_LISTED: Final = 1000  # max-parts and max-uploads cap, as in S3
LIST_BATCH: Final = 1000
_UPLOAD_ID_RE: Final = re.compile(r"^[0-9a-f]{48}$")
_PART_NUMBER_RE: Final = re.compile(r"^[0-9]{1,5}$")
_COPY_RANGE_RE: Final = re.compile(r"^bytes=([0-9]{1,19})-([0-9]{1,19})$")


# ---- pure request parsing -------------------------------------------------------


def parse_part_number(raw: str | None) -> int:
    if raw is None or not _PART_NUMBER_RE.match(raw) or not 1 <= int(raw) <= MAX_PART_NUMBER:
        raise S3Error(
            "InvalidArgument",
            message="Part number must be an integer between 1 and 10000, inclusive",
            fields={"ArgumentName": "partNumber", "ArgumentValue": str(raw)[:64]},
        )
    return int(raw)


def parse_int_param(raw: str | None, name: str, default: int) -> int:
    """A non-negative integer query parameter (max-parts, part-number-marker, ...)."""
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise S3Error(
            "InvalidArgument", message=f"Provided {name} is not an integer or within range",
            fields={"ArgumentName": name, "ArgumentValue": raw[:64]},
        )  # fmt: skip
    return int(raw)


def parse_copy_range(value: str | None, size: int) -> tuple[int, int]:
    """(first, last) byte of ``x-amz-copy-source-range: bytes=first-last`` (both
    required, inclusive), or the whole source; last < first means empty."""
    if value is None:
        return 0, size - 1
    m = _COPY_RANGE_RE.match(value.strip())
    if not m:
        raise S3Error(
            "InvalidArgument",
            message="The x-amz-copy-source-range value must be of the form bytes=first-last "
            "where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    first, last = int(m.group(1)), int(m.group(2))
    if first > last or last >= size:
        raise S3Error(
            "InvalidArgument",
            message=f"Range specified is not valid for source object of size: {size}",
        )
    return first, last


@dataclass
class UploadsPage:
    uploads: list[UploadRow] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key: str | None = None
    next_upload_id: str | None = None


def paginate_uploads(
    fetch: Callable[[str, str | None], Iterator[UploadRow]],
    *,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str | None,
    max_uploads: int,
) -> UploadsPage:
    """One ListMultipartUploads page. ``fetch(key, upload_id)`` yields uploads
    after that position in (key, upload id) order; ``upload_id`` None means
    after every upload of ``key``. Uploads and CommonPrefixes each count once
    toward ``max_uploads``; the page is truncated only if more would follow."""
    if upload_id_marker is None:
        key: str = listing.skip_cursor(key_marker, delimiter, prefix)
    else:
        key = key_marker
    rolled = listing.rolled_page(
        fetch, prefix=prefix, delimiter=delimiter, after_key=key, within=upload_id_marker,
        max_keys=max_uploads,
    )  # fmt: skip
    last = rolled.last_entry
    return UploadsPage(
        rolled.contents, rolled.common_prefixes, rolled.is_truncated, rolled.last,
        None if last is None else last.upload_id,
    )  # fmt: skip


def upload_checksum_type(upload: UploadRow) -> str:
    """The checksum type of an upload (kept in its meta; uploads created before
    it was recorded are COMPOSITE, the only type there was)."""
    ctype = upload.meta.get("checksum_type")
    return str(ctype) if ctype in checksums.CHECKSUM_TYPES else checksums.COMPOSITE


# ---- handlers --------------------------------------------------------------------


class _OrderedChecksum:
    """A checksum over chunks that arrive out of order (ingest overlaps appends)."""

    def __init__(self, alg: str) -> None:
        self.sum = checksums.new_checksum(alg)
        self._pending: dict[int, bytes] = {}
        self._next = 0
        self._lock = trio.Lock()

    async def feed(self, index: int, data: bytes) -> None:
        self._pending[index] = data
        async with self._lock:
            while self._next in self._pending:
                chunk = self._pending.pop(self._next)
                await trio.to_thread.run_sync(self.sum.update, chunk)
                self._next += 1


class MultipartHandlers(FamilyBase):
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        super().__init__(cfg, reader, writer)
        self.segments = SegmentFiles(cfg)
        self.sse = SseKeyring(cfg, reader, writer)

    # ---- helpers ---------------------------------------------------------
    def _upload_owner_xml(self, bucket: str, upload_id: str) -> list[str]:
        """ListParts' Initiator (the key that created the upload) and Owner
        (who will own the object: the bucket owner under BucketOwnerEnforced)."""
        recorded = upload_owners(self.reader.conn, [upload_id]).get(upload_id)
        initiator = recorded if recorded is not None else self.access.account_id
        owner = self.access.listed_owner(self.access.bucket(bucket), recorded)
        return [self.access.owner_xml(initiator, "Initiator"), self.access.owner_xml(owner)]

    def _upload(self, req: Request) -> UploadRow:
        """The open upload ``?uploadId=`` names, for this bucket and key."""
        upload_id = req.q("uploadId") or ""
        row = (
            multipart_reads.upload(self.reader.conn, upload_id)
            if _UPLOAD_ID_RE.match(upload_id)
            else None
        )
        if row is None or row.bucket != req.bucket:
            self.require_bucket(req.bucket)
        if row is None or row.bucket != req.bucket or row.key != req.key:
            raise S3Error("NoSuchUpload", resource=req.key, fields={"UploadId": upload_id[:128]})
        return row

    def _upload_id_to_complete(self, req: Request) -> tuple[str, UploadRow | None]:
        """The upload ``?uploadId=`` names for Complete: an open upload of this
        bucket and key (with its row), or one the writer may remember as
        completed (a retried Complete is answered from that record; no row);
        the writer decides which."""
        upload_id = req.q("uploadId") or ""
        row = (
            multipart_reads.upload(self.reader.conn, upload_id)
            if _UPLOAD_ID_RE.match(upload_id)
            else None
        )
        if row is not None and row.bucket == req.bucket and row.key == req.key:
            return row.upload_id, row
        self.require_bucket(req.bucket)
        if row is not None or not _UPLOAD_ID_RE.match(upload_id):
            raise S3Error("NoSuchUpload", resource=req.key, fields={"UploadId": upload_id[:128]})
        return upload_id, None

    def _upload_sse(self, upload: UploadRow) -> SseInfo | None:
        try:
            return SseInfo.from_meta(upload.meta)
        except ValueError:
            raise S3Error(
                "InternalError", message="the upload's encryption is unreadable"
            ) from None

    def _part_key(self, req: Request, upload: UploadRow) -> tuple[SseInfo, bytes] | None:
        """An encrypted upload's facts and DEK, checking the request's SSE-C key
        (required on every part of an SSE-C upload, and the same one)."""
        info = self._upload_sse(upload)
        ck = customer_key(req.headers, secure=secure(self.cfg, req))
        if info is None:
            if ck is not None:
                raise S3Error("InvalidRequest", message=MSG_NOT_APPLICABLE)
            return None
        return info, self.sse.dek_for(info, ck)

    def _part_sealing(self, req: Request, upload: UploadRow) -> tuple[ChunkCipher, bytes] | None:
        """The cipher (and its fresh nonce base) a part of ``upload`` is sealed with."""
        key = self._part_key(req, upload)
        if key is None:
            return None
        nonce = new_nonce_base()
        return ChunkCipher(key[1], nonce), nonce

    def _upload_sse_headers(self, req: Request, upload: UploadRow) -> list[tuple[bytes, bytes]]:
        info = self._upload_sse(upload)
        ck = customer_key(req.headers, secure=True) if info is not None and info.customer else None
        return response_headers(info, ck)

    # ---- Create ------------------------------------------------------------
    async def create_multipart_upload(self, req: Request) -> None:
        validate_key(req.key)
        meta = stored_meta(req)
        write_vmeta(req)  # a bad x-amz-tagging is refused before anything else
        alg: str | None = None
        raw_alg = req.headers.get("x-amz-checksum-algorithm")
        if raw_alg is not None:
            alg = raw_alg.strip().upper()
            checksums.header_name(alg)  # unknown algorithm → InvalidRequest
        raw_type = req.headers.get("x-amz-checksum-type")
        ctype: str | None = None
        if alg is None:
            if raw_type is not None:
                raise S3Error(
                    "InvalidRequest",
                    message="The x-amz-checksum-type header can only be used with the "
                    "x-amz-checksum-algorithm header.",
                )
        else:
            ctype = raw_type.strip().upper() if raw_type else checksums.default_checksum_type(alg)
            checksums.check_checksum_type(alg, ctype)
        self.require_bucket(req.bucket)
        # Stored with the upload, applied by CompleteMultipartUpload.
        acl, owner = self.access.new_object(req.headers, req.identity, req.bucket, self.cfg)
        lock, hold = lock_fields.lock_init(self.reader, req)
        await req.small_body(MAX_EMPTY_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload)
        # One DEK per upload; each part gets its own nonce base (UploadPart).
        sealing = await self.sse.sealing_for(
            req, bucket_default=bucket_default_sse(self.reader, req.bucket), parts=0
        )
        if sealing is not None:
            meta["sse"] = sealing.info.to_meta()
        result = await self.writer.call(
            CreateUpload(
                bucket=req.bucket, key=req.key, meta=meta, checksum_algorithm=alg,
                checksum_type=ctype, owner=owner,
                vmeta=lock_fields.with_lock(with_acl(write_vmeta(req), acl), lock, hold),
            )
        )  # fmt: skip
        headers: list[tuple[bytes, bytes]] = []
        if sealing is not None:
            headers += sealing.response_headers()
        if alg is not None and ctype is not None:
            headers += [
                (b"x-amz-checksum-algorithm", alg.encode()),
                (b"x-amz-checksum-type", ctype.encode()),
            ]
        body = document(
            "InitiateMultipartUploadResult",
            [el("Bucket", req.bucket), el("Key", req.key), el("UploadId", result.upload_id)],
        )
        await req.xml(200, body, headers)

    # ---- UploadPart ----------------------------------------------------------
    async def upload_part(self, req: Request) -> None:
        validate_key(req.key)
        number = parse_part_number(req.q("partNumber"))
        upload = self._upload(req)
        require_content_md5(self.cfg, req)
        lock_fields.require_integrity(self.reader, req)
        length = declared_length(req, self.cfg)
        if length > MAX_PART_SIZE:
            raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(MAX_PART_SIZE)})
        alg = upload.checksum_algorithm
        sent = self._sent_checksum_algorithm(req)
        if alg is not None and sent is not None and sent != alg:
            raise S3Error(
                "InvalidRequest",
                message=f"Checksum Type mismatch occurred, expected checksum Type: "
                f"{alg.lower()}, actual checksum Type: {sent.lower()}",
            )
        # The upload's algorithm is needed for every part (for the object's
        # composite checksum); if the client sent none, compute it here.
        own = _OrderedChecksum(alg) if alg is not None and sent is None else None
        part_sealing = self._part_sealing(req, upload)
        sealer: Sealer | None = None if part_sealing is None else part_sealing[0].seal
        # Stored chunks are sealed: the part's own checksum (of the
        # plaintext) is fed by ingest, in order, instead.
        plain_hook = None if own is None or sealer is None else own.sum.update
        refs: dict[int, Chunk] = {}

        async def on_chunk(data: bytes, digest: bytes, index: int) -> None:
            refs[index] = await self.writer.append(data, digest)
            if own is not None and sealer is None:
                await own.feed(index, data)

        body = await ingest(req, self.cfg, length, on_chunk, sealer=sealer, plain_hook=plain_hook)
        chunks = [refs[i] for i in range(len(refs))]
        sums = dict(body.checksums)
        if own is not None and alg is not None:
            if sealer is None:
                await own.feed(len(refs), body.tail)
            sums[alg] = own.sum.b64()
        part = UploadPart(
            bucket=req.bucket, key=req.key, upload_id=upload.upload_id, part_number=number,
            size=body.size, etag=body.etag, checksums=sums, chunks=chunks,
            tail_digest=body.tail_digest,
            sse_nonce=None if part_sealing is None else part_sealing[1],
        )  # fmt: skip
        await self.writer.call(part, body.tail)
        headers = [(b"etag", f'"{body.etag}"'.encode())]
        headers += self._upload_sse_headers(req, upload)
        for name, value in sums.items():
            headers.append((checksums.header_name(name).encode(), value.encode()))
        await req.respond(200, headers)

    @staticmethod
    def _sent_checksum_algorithm(req: Request) -> str | None:
        """The algorithm of the checksum the client sends with this body, if any."""
        for name in req.headers:
            alg = checksums.algorithm_from_header(name)
            if alg is not None:
                return alg
        trailer = req.headers.get("x-amz-trailer")
        if trailer:
            return checksums.algorithm_from_header(trailer.strip().lower())
        return None

    # ---- UploadPartCopy --------------------------------------------------------
    def _copy_source_version(self, src: CopySource) -> VersionRow:
        if src.version_id is not None:
            v = self.reader.version(src.bucket, src.key, src.version_id)
            if v is None:
                self.require_bucket(src.bucket)
                raise S3Error(
                    "NoSuchVersion", resource=src.key,
                    fields={"Key": src.key, "VersionId": src.version_id},
                )  # fmt: skip
            if v.delete_marker:
                raise S3Error(
                    "InvalidRequest",
                    message="The source of a copy request may not specifically refer to a "
                    "delete marker by version id.",
                )
            return v
        v = self.reader.current(src.bucket, src.key)
        if v is None or v.delete_marker or v.state == "DELETED":
            self.require_bucket(src.bucket)
            raise S3Error("NoSuchKey", resource=src.key, fields={"Key": src.key})
        return v

    async def upload_part_copy(self, req: Request) -> None:
        validate_key(req.key)
        number = parse_part_number(req.q("partNumber"))
        upload = self._upload(req)
        src = parse_copy_source(req.headers["x-amz-copy-source"])
        validate_key(src.key)
        if src.version_id is not None:
            validate_version_id(src.version_id)
        v = self._copy_source_version(src)
        verdict = conditions.evaluate(
            conditions.from_headers(req.headers, copy_source=True), v.etag, v.created_ns, copy=True
        )
        if not verdict.ok:
            raise S3Error(
                "PreconditionFailed", resource=req.key,
                fields={"Condition": verdict.condition or ""},
            )  # fmt: skip
        first, last = parse_copy_range(req.headers.get("x-amz-copy-source-range"), v.size)
        size = last - first + 1
        if size > MAX_PART_SIZE:
            raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(MAX_PART_SIZE)})
        await req.small_body(MAX_EMPTY_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload)
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

        md5 = hashlib.md5()
        own = (
            checksums.new_checksum(upload.checksum_algorithm) if upload.checksum_algorithm else None
        )
        src_info, src_ck = self.sse.read_key(req, v.meta, source=True)
        part_sealing = self._part_sealing(req, upload)
        if src_info is not None or part_sealing is not None:
            chunks, nonce = await self._resealed_part(
                v, manifest.chunks, first, last, src_info, src_ck, part_sealing, md5, own
            )
        else:
            chunks, nonce = await self._shared_part(v, manifest.chunks, first, last, md5, own), None
        etag = md5.hexdigest()
        sums = {own.algorithm: own.b64()} if own is not None else {}
        part = UploadPart(
            bucket=req.bucket, key=req.key, upload_id=upload.upload_id, part_number=number,
            size=size, etag=etag, checksums=sums, chunks=chunks, sse_nonce=nonce,
        )  # fmt: skip
        result = await self.writer.call(part)
        headers: list[tuple[bytes, bytes]] = self._upload_sse_headers(req, upload)
        if v.version_id != "null":
            headers.append((b"x-amz-copy-source-version-id", v.version_id.encode()))
        parts = [el("ETag", f'"{etag}"'), el("LastModified", iso8601(result.created_ns))]
        parts += [el(f"Checksum{alg}", value) for alg, value in sums.items()]
        await req.xml(200, document("CopyPartResult", parts), headers)

    async def _resealed_part(
        self,
        v: VersionRow,
        refs: tuple[ChunkRef, ...],
        first: int,
        last: int,
        src_info: SseInfo | None,
        src_ck: CustomerKey | None,
        part_sealing: tuple[ChunkCipher, bytes] | None,
        md5: Any,
        own: checksums.Checksum | None,
    ) -> tuple[list[Chunk], bytes | None]:
        """UploadPartCopy when the source or the upload is encrypted: the
        range's plaintext (opened chunk by chunk, only the chunks it touches)
        is cut into new chunks and sealed under the part's own nonce base."""
        opener = (
            None if src_info is None
            else self.sse.version_cipher(src_info, src_ck, v.size, part_sizes(v.meta))
        )  # fmt: skip
        overhead = 0 if src_info is None else TAG_BYTES
        cipher = None if part_sealing is None else part_sealing[0]
        limit = CHUNK_SIZE if cipher is None else PLAIN_CHUNK
        chunks: list[Chunk] = []
        pending = bytearray()

        async def ship(plain: bytes) -> None:
            stored = plain if cipher is None else cipher.seal(len(chunks), plain)
            chunks.append(await self.writer.append(stored, blake3.blake3(stored).digest()))

        pos = 0
        for i, ref in enumerate(refs):
            start, end = pos, pos + ref.length - overhead  # plaintext [start, end)
            pos = end
            if end <= first or start > last:
                continue
            data = await self._read_chunk(v, ref)
            if opener is not None:
                data = await trio.to_thread.run_sync(opener.open, i, data)
            lo, hi = max(first, start) - start, min(last + 1, end) - start
            piece = data[lo:hi]
            await trio.to_thread.run_sync(_update, md5, own, piece)
            pending += piece
            while len(pending) >= limit:
                await ship(bytes(pending[:limit]))
                del pending[:limit]
        if pending:
            await ship(bytes(pending))
        return chunks, None if part_sealing is None else part_sealing[1]

    async def _shared_part(
        self,
        v: VersionRow,
        refs: tuple[ChunkRef, ...],
        first: int,
        last: int,
        md5: Any,
        own: checksums.Checksum | None,
    ) -> list[Chunk]:
        """UploadPartCopy between plain objects: whole chunks are shared."""
        chunks: list[Chunk] = []
        pos = 0
        for ref in refs:
            start, end = pos, pos + ref.length  # this chunk holds [start, end)
            pos = end
            if end <= first or start > last:
                continue
            data = await self._read_chunk(v, ref)
            lo, hi = max(first, start) - start, min(last + 1, end) - start
            piece = data if lo == 0 and hi == ref.length else data[lo:hi]
            await trio.to_thread.run_sync(_update, md5, own, piece)
            if piece is data:
                chunks.append(Chunk(ref.segment_id, ref.offset, ref.length, ref.digest))
            else:
                chunks.append(await self.writer.append(piece, blake3.blake3(piece).digest()))
        return chunks

    async def _read_chunk(self, v: VersionRow, ref: ChunkRef) -> bytes:
        try:
            return await read_chunk_checked(self.segments, self.writer, self.reader, v, ref)
        except ChunksMoved:
            # Nothing is committed yet; the client's retry reads the new row.
            raise S3Error(
                "ServiceUnavailable",
                message="The copy source was moved by segment GC while it was read; retry.",
            ) from None

    async def _mark_damaged(self, v: VersionRow) -> None:
        await mark_damaged(self.writer, v)

    # ---- ListParts ---------------------------------------------------------------
    async def list_parts(self, req: Request) -> None:
        validate_key(req.key)
        upload = self._upload(req)
        max_parts = min(parse_int_param(req.q("max-parts"), "max-parts", MAX_LISTED), MAX_LISTED)
        marker = parse_int_param(req.q("part-number-marker"), "part-number-marker", 0)
        rows = multipart_reads.parts(self.reader.conn, upload.upload_id, marker, max_parts + 1)
        truncated = len(rows) > max_parts
        rows = rows[:max_parts]
        out = [
            el("Bucket", req.bucket), el("Key", req.key), el("UploadId", upload.upload_id),
            el("PartNumberMarker", marker),
        ]  # fmt: skip
        if rows:
            out.append(el("NextPartNumberMarker", rows[-1].part_number))
        out += [el("MaxParts", max_parts), el("IsTruncated", truncated)]
        for p in rows:
            item = (
                el("PartNumber", p.part_number) + el("LastModified", iso8601(p.created_ns))
                + el("ETag", f'"{p.etag}"') + el("Size", p.size)
            )  # fmt: skip
            item += "".join(el(f"Checksum{alg}", value) for alg, value in p.checksums.items())
            out.append(f"<Part>{item}</Part>")
        out += [
            *self._upload_owner_xml(req.bucket, upload.upload_id),
            el("StorageClass", "STANDARD"),
        ]
        if upload.checksum_algorithm:
            out += [
                el("ChecksumAlgorithm", upload.checksum_algorithm),
                el("ChecksumType", upload_checksum_type(upload)),
            ]
        await req.xml(200, document("ListPartsResult", out))

    # ---- Complete ----------------------------------------------------------------
    async def complete_multipart_upload(self, req: Request) -> None:
        validate_key(req.key)
        require_if_match(self.cfg, req)
        upload_id, upload = self._upload_id_to_complete(req)
        body = await req.small_body(
            MAX_COMPLETE_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
        )
        # Up to 10,000 parts: parsed off the event loop.
        listed = await trio.to_thread.run_sync(parse_complete, body)
        # Decided by the writer, against the key as it was when the upload
        # was created (it records that itself): no seen_uid from here.
        cond = conditions.write_conditions_from_headers(req.headers)
        ctype = req.headers.get("x-amz-checksum-type")
        # A retry of a completed upload (no row) is the writer's to answer.
        if ctype is not None and upload is not None:
            mode = upload_checksum_type(upload) if upload.checksum_algorithm else None
            if ctype.strip().upper() != mode:
                # A different mode, not a different value: AWS says
                # InvalidRequest here and keeps BadDigest for values.
                raise S3Error(
                    "InvalidRequest",
                    message=f"The upload was created using the {mode or 'no'} checksum mode. "
                    "The complete request must use the same checksum mode.",
                )
        complete = CompleteUpload(
            bucket=req.bucket, key=req.key, upload_id=upload_id,
            parts=[(p.number, p.etag, p.checksums) for p in listed],
            max_size=self.cfg.max_object_size,
            min_part_size=self.cfg.min_part_size,
            expect_checksums=self._object_checksum_headers(req),
            expect_size=parse_int_param(
                req.headers.get("x-amz-mp-object-size"), "x-amz-mp-object-size", -1
            ),
            if_none_match=cond.if_none_match, if_match=cond.if_match,
        )  # fmt: skip
        result = await self.writer.call(complete)
        headers: list[tuple[bytes, bytes]] = (
            [] if upload is None else self._upload_sse_headers(req, upload)
        )
        if result.version_id:
            headers.append((b"x-amz-version-id", result.version_id.encode()))
        host = req.headers.get("host", "localhost")
        scheme = str(req.scope.get("scheme") or "http")
        location = f"{scheme}://{host}/{quote(req.bucket)}/{quote(req.key, safe='/')}"
        out = [
            el("Location", location), el("Bucket", req.bucket), el("Key", req.key),
            el("ETag", f'"{result.etag}"'),
        ]  # fmt: skip
        for alg, value in result.checksums.items():
            out.append(el(f"Checksum{alg}", value))
        if result.checksums:
            out.append(el("ChecksumType", result.checksum_type or checksums.COMPOSITE))
        await req.xml(200, document("CompleteMultipartUploadResult", out), headers)

    @staticmethod
    def _object_checksum_headers(req: Request) -> dict[str, str]:
        """``x-amz-checksum-*`` values sent with Complete: claims about the whole
        object (its FULL_OBJECT value, or its COMPOSITE one with or without
        ``-N``), checked by the writer rather than ignored. A value that is
        not base64 of the algorithm's size is malformed (InvalidRequest)."""
        out: dict[str, str] = {}
        for name, value in req.headers.items():
            alg = checksums.algorithm_from_header(name)
            if alg is not None:
                checksums.decode_value(alg, value.strip().split("-")[0])
                out[alg] = value.strip()
        return out

    # ---- Abort -------------------------------------------------------------------
    async def abort_multipart_upload(self, req: Request) -> None:
        validate_key(req.key)
        upload = self._upload(req)
        await self.writer.call(
            AbortUpload(bucket=req.bucket, key=req.key, upload_id=upload.upload_id)
        )
        await req.respond(204)

    # ---- ListMultipartUploads ------------------------------------------------------
    async def list_multipart_uploads(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        lq = listing.ListQuery.parse(req.q)
        prefix, delimiter, enc = lq.prefix, lq.delimiter, lq.show
        max_uploads = min(
            parse_int_param(req.q("max-uploads"), "max-uploads", MAX_LISTED), MAX_LISTED
        )
        key_marker = req.q("key-marker") or ""
        # Without a key-marker, S3 ignores upload-id-marker.
        upload_id_marker = (req.q("upload-id-marker") or None) if key_marker else None

        def fetch(key: str, upload_id: str | None) -> Iterator[UploadRow]:
            return multipart_reads.uploads_after(
                self.reader.conn, req.bucket, prefix, key, upload_id, LIST_BATCH
            )

        page = paginate_uploads(
            fetch, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            upload_id_marker=upload_id_marker, max_uploads=max_uploads,
        )  # fmt: skip
        out = [
            el("Bucket", req.bucket), el("KeyMarker", enc(key_marker)),
            el("UploadIdMarker", upload_id_marker or ""),
        ]  # fmt: skip
        if page.is_truncated:
            out.append(el("NextKeyMarker", enc(page.next_key or "")))
            out.append(el("NextUploadIdMarker", page.next_upload_id or ""))
        if delimiter:
            out.append(el("Delimiter", enc(delimiter)))
        out += [el("Prefix", enc(prefix)), el("MaxUploads", max_uploads)]
        if lq.encoding:
            out.append(el("EncodingType", lq.encoding))
        out.append(el("IsTruncated", page.is_truncated))
        bucket_acl = self.access.bucket(req.bucket)
        owners = upload_owners(self.reader.conn, [u.upload_id for u in page.uploads])
        render = self.access.owner_renderer()
        for u in page.uploads:
            recorded = owners.get(u.upload_id)
            initiator = recorded if recorded is not None else self.access.account_id
            owner = self.access.listed_owner(bucket_acl, recorded)
            item = (
                el("Key", enc(u.key)) + el("UploadId", u.upload_id)
                + render(initiator, "Initiator") + render(owner)
                + el("StorageClass", "STANDARD")
                + el("Initiated", iso8601(u.created_ns))
            )  # fmt: skip
            if u.checksum_algorithm:
                item += el("ChecksumAlgorithm", u.checksum_algorithm)
                item += el("ChecksumType", upload_checksum_type(u))
            out.append(f"<Upload>{item}</Upload>")
        out += lq.common_prefixes_xml(page.common_prefixes)
        await req.xml(200, document("ListMultipartUploadsResult", out))


def _update(md5: Any, own: checksums.Checksum | None, data: bytes) -> None:
    md5.update(data)
    if own is not None:
        own.update(data)
