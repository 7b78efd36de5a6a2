"""CopyObject: PUT with ``x-amz-copy-source``.

Rules this module keeps:

* No byte is copied. The writer's ``copy_object`` mutation resolves the
  source, checks the ``x-amz-copy-source-if-*`` conditions and the
  self-copy rule, and commits a new version whose manifest lists the
  source's chunks — all in one transaction, so a concurrent delete of the
  source is either seen (404) or harmless (the copy holds its own
  references). The ETag and stored checksums are the source's.
* Except for a source uploaded in parts: the copy is a single-part object,
  and AWS gives it the MD5 of its bytes as ETag (not the ``<md5>-N`` of the
  source) and whole-object checksums. The frontend reads the source (each
  chunk verified, as for a GET), computes them, and tells the writer which
  version it read; should that no longer be the source when the writer
  commits, nothing is written and the copy is read again.
* Metadata directive COPY (default) keeps the source's Content-Type,
  standard headers and user metadata; REPLACE takes them from this request.
* The copy source is parsed strictly: ``bucket/key`` or ``/bucket/key``,
  percent-encoded UTF-8, optionally ``?versionId=``; an empty bucket or key
  or a NUL is ``InvalidArgument``. Keys are not paths: ``..`` in a key is
  just two characters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote_to_bytes

import blake3
import msgspec
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.format.segment import CHUNK_SIZE
from seglake.frontend import lock_fields
from seglake.frontend.access import with_acl
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.objects import (
    THREAD_READ_MIN,
    ChunksMoved,
    SegmentFiles,
    mark_damaged,
    part_sizes,
    read_chunk_checked,
    require_if_match,
    stored_meta,
    validate_key,
    validate_version_id,
    write_condition_args,
)
from seglake.frontend.sse import (
    Sealing,
    SseKeyring,
    bucket_default_sse,
    response_headers,
    secure,
)
from seglake.frontend.tagging import tagging_directive, write_vmeta
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.messages import Chunk, CopyObject
from seglake.meta.reads import MetaReader, VersionRow
from seglake.protocol import checksums, conditions
from seglake.protocol.limits import MAX_COPY_SOURCE_BYTES
from seglake.protocol.xml import document, el, iso8601
from seglake.sse.chunks import PLAIN_CHUNK, SseInfo
from seglake.sse.headers import CustomerKey, new_object_encryption

DIRECTIVES = ("COPY", "REPLACE")
# _copy_sealing's answer for "list the source's chunks as they are".
_SHARE: object = object()
# A multipart source re-read this many times (it kept being replaced, or
# moved by segment GC, while it was read) makes the copy fail with a
# retryable 503.
COPY_READ_ATTEMPTS = 3


@dataclass(frozen=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None


def _bad_source(message: str = "Invalid copy source object key") -> S3Error:
    return S3Error("InvalidArgument", message=message, fields={"ArgumentName": "x-amz-copy-source"})


def parse_copy_source(value: str) -> CopySource:
    """``x-amz-copy-source`` → bucket, key, version id (pure)."""
    raw, _, query = value.strip().partition("?")
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_source("The copy source is not valid UTF-8") from None
    path = path.removeprefix("/")
    bucket, sep, key = path.partition("/")
    if not sep or not bucket or not key:
        raise _bad_source(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
        )
    if "\x00" in bucket or "\x00" in key:
        raise _bad_source()
    version_id: str | None = None
    if query:
        try:
            params = parse_qs(query, keep_blank_values=True, strict_parsing=False)
        except ValueError:
            raise _bad_source() from None
        values = params.get("versionId")
        if values is not None:
            version_id = values[0]
            if not version_id:
                raise S3Error("InvalidArgument", message="Version id cannot be the empty string")
    return CopySource(bucket, key, version_id)


class CopyHandlers(FamilyBase):
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        super().__init__(cfg, reader, writer)
        self.segments = SegmentFiles(cfg)
        self.sse = SseKeyring(cfg, reader, writer)

    async def copy_object(self, req: Request) -> None:
        validate_key(req.key)
        require_if_match(self.cfg, req)
        source = parse_copy_source(req.headers.get("x-amz-copy-source", ""))
        validate_key(source.key)
        if source.version_id is not None:
            validate_version_id(source.version_id)
        directive = req.headers.get("x-amz-metadata-directive", "COPY").strip().upper()
        if directive not in DIRECTIVES:
            raise S3Error(
                "InvalidArgument", message="Unknown metadata directive.",
                fields={"ArgumentName": "x-amz-metadata-directive"},
            )  # fmt: skip
        if "x-amz-copy-source-range" in req.headers:
            raise S3Error(
                "InvalidArgument",
                message="Range specified is not valid for source object",
                fields={"ArgumentName": "x-amz-copy-source-range"},
            )
        alg = req.headers.get("x-amz-checksum-algorithm")
        if alg:
            alg = checksums.header_name(alg)[len(checksums.HEADER_PREFIX) :].upper()
        # Metadata is validated whatever the directive; with COPY it is unused.
        meta = stored_meta(req) if directive == "REPLACE" else {}
        # Tags likewise: x-amz-tagging counts only with the REPLACE tagging directive.
        tag_directive = tagging_directive(req)
        write_vmeta(req)
        guard = write_condition_args(self.reader, req)
        # A copy does not copy the source's ACL (AWS): the new object gets
        # what this request asks for, private by default.
        acl, owner = self.access.new_object(req.headers, req.identity, req.bucket, self.cfg)
        cond = conditions.from_headers(req.headers, copy_source=True)
        # Object Lock: the copy's own lock (never the source's, as AWS).
        lock, hold = lock_fields.lock_init(self.reader, req)
        copy = CopyObject(
            bucket=req.bucket, key=req.key, src_bucket=source.bucket, src_key=source.key,
            src_version_id=source.version_id, directive=directive, meta=meta,
            conditions=(
                cond.if_match, cond.if_none_match, cond.if_modified_since,
                cond.if_unmodified_since,
            ),
            checksum_algorithm=alg or None, if_none_match=guard.if_none_match,
            if_match=guard.if_match, seen_uid=guard.seen_uid, owner=owner,
            tagging_directive=tag_directive,
            vmeta=lock_fields.with_lock(
                with_acl(write_vmeta(req) if tag_directive == "REPLACE" else None, acl), lock, hold
            ),
        )  # fmt: skip
        dest_sse, dest_ck = new_object_encryption(req.headers, secure=secure(self.cfg, req))
        bucket_default = bucket_default_sse(self.reader, req.bucket)
        enc_headers: list[tuple[bytes, bytes]] = []
        for _attempt in range(COPY_READ_ATTEMPTS):
            v = self._source_version(source)
            src_info, src_ck = (
                (None, None) if v is None or v.delete_marker
                else self.sse.read_key(req, v.meta, source=True)
            )  # fmt: skip
            sealing = await self._copy_sealing(
                v, src_info, src_ck, dest_sse, dest_ck, bucket_default
            )
            try:
                if sealing is _SHARE:
                    request = await self._with_source_sums(req, source, copy)
                    enc_headers = response_headers(src_info, dest_ck or src_ck)
                else:
                    fresh_sealing = sealing if isinstance(sealing, Sealing) else None
                    request = await self._resealed(req, copy, v, src_info, src_ck, fresh_sealing)
                    enc_headers = [] if fresh_sealing is None else fresh_sealing.response_headers()
            except ChunksMoved:
                continue  # segment GC moved the source while it was read
            result = await self.writer.call(request)
            if not result.source_changed:
                break
        else:
            raise S3Error("ServiceUnavailable", message="The copy source kept changing; retry.")
        etag = f'"{result.etag}"'
        parts = [el("LastModified", iso8601(result.created_ns)), el("ETag", etag)]
        for name, value in sorted(result.checksums.items()):
            parts.append(el(f"Checksum{name.upper()}", value))
        if result.checksums:
            # A copy is a single-part object: its checksums are of the whole body.
            parts.append(el("ChecksumType", checksums.FULL_OBJECT))
        headers: list[tuple[bytes, bytes]] = list(enc_headers)
        if result.version_id:
            headers.append((b"x-amz-version-id", result.version_id.encode()))
        if result.source_version_id:
            headers.append((b"x-amz-copy-source-version-id", result.source_version_id.encode()))
        await req.xml(200, document("CopyObjectResult", parts), headers)

    def _source_version(self, source: CopySource) -> VersionRow | None:
        if source.version_id is not None:
            return self.reader.version(source.bucket, source.key, source.version_id)
        return self.reader.current(source.bucket, source.key)

    async def _copy_sealing(
        self,
        v: VersionRow | None,
        src_info: SseInfo | None,
        src_ck: CustomerKey | None,
        dest_sse: str | None,
        dest_ck: CustomerKey | None,
        bucket_default: str | None,
    ) -> Sealing | object | None:
        """How the copy is encrypted: ``_SHARE`` when it can list the source's
        chunks as they are (same encryption, same key); otherwise the new
        ``Sealing`` (None: plain) the source's bytes are re-sealed under.

        An SSE-S3 source stays SSE-S3 unless the request asks for SSE-C (a
        copy never silently drops encryption); an encrypted source uploaded
        in parts is always re-sealed, since its nonces are per part and the
        copy is a single-part object."""
        if v is None or v.delete_marker:
            return _SHARE  # the writer says what is wrong with the source
        in_parts = part_sizes(v.meta) is not None
        if src_info is None:
            if dest_ck is None and dest_sse is None and bucket_default is None:
                return _SHARE
        elif not src_info.customer:
            if dest_ck is None and not in_parts:
                return _SHARE
        elif (
            dest_ck is not None and src_ck is not None and dest_ck.key == src_ck.key
            and not in_parts
        ):  # fmt: skip
            return _SHARE
        if dest_ck is not None:
            return self.sse.seal_customer(dest_ck)
        if dest_sse is not None or bucket_default is not None:
            return await self.sse.seal_s3()
        if src_info is not None and not src_info.customer:
            return await self.sse.seal_s3()
        return None  # an SSE-C source copied without a key for the copy: plain

    async def _resealed(
        self,
        req: Request,
        copy: CopyObject,
        v: VersionRow | None,
        src_info: SseInfo | None,
        src_ck: CustomerKey | None,
        sealing: Sealing | None,
    ) -> CopyObject:
        """``copy`` with the source's bytes read (opened if encrypted) and
        sealed again under ``sealing`` (plain if None) into new chunks, with
        the MD5 and checksums of the plaintext and the version read."""
        if v is None or v.delete_marker or v.manifest is None:
            return msgspec.structs.replace(copy, src_uid="", chunks=[], sse=None)
        cond = conditions.from_headers(req.headers, copy_source=True)
        verdict = conditions.evaluate(cond, v.etag, v.created_ns, copy=True)
        if not verdict.ok:
            raise S3Error("PreconditionFailed", fields={"Condition": verdict.condition or ""})
        if v.state == "DAMAGED":
            raise S3Error("ObjectDamaged")
        if v.size > MAX_COPY_SOURCE_BYTES:
            return copy  # the writer refuses it (and writes nothing)
        try:
            manifest = decode_manifest(
                v.manifest, path=f"meta.db:versions/{v.uid}", with_meta=False
            )
        except FormatError:
            await mark_damaged(self.writer, v)
            raise S3Error("ObjectDamaged") from None
        opener = (
            None if src_info is None
            else self.sse.version_cipher(src_info, src_ck, v.size, part_sizes(v.meta))
        )  # fmt: skip
        algs = {str(a).upper() for a in dict(v.meta.get("checksums") or {})}
        if copy.checksum_algorithm:
            algs.add(copy.checksum_algorithm.upper())
        sums = [checksums.new_checksum(a) for a in sorted(algs)]
        md5 = hashlib.md5()
        cipher = None if sealing is None else sealing.cipher()
        refs: list[Chunk] = []
        pending = bytearray()
        limit = CHUNK_SIZE if sealing is None else PLAIN_CHUNK

        def take(data: bytes) -> None:
            md5.update(data)
            for s in sums:
                s.update(data)

        async def ship(plain: bytes) -> None:
            stored = plain if cipher is None else cipher.seal(len(refs), plain)
            digest = blake3.blake3(stored).digest()
            refs.append(await self.writer.append(stored, digest))

        for i, ref in enumerate(manifest.chunks):
            data = await read_chunk_checked(self.segments, self.writer, self.reader, v, ref)
            if opener is not None:
                data = await trio.to_thread.run_sync(opener.open, i, data)
            await trio.to_thread.run_sync(take, data)
            pending += data
            while len(pending) >= limit:
                await ship(bytes(pending[:limit]))
                del pending[:limit]
        if pending:
            await ship(bytes(pending))
        return msgspec.structs.replace(
            copy, src_uid=v.uid, etag=md5.hexdigest(),
            checksums={s.algorithm: s.b64() for s in sums}, chunks=refs,
            sse=None if sealing is None else sealing.info.to_meta(),
        )  # fmt: skip

    async def _with_source_sums(
        self, req: Request, source: CopySource, copy: CopyObject
    ) -> CopyObject:
        """For a source uploaded in parts: ``copy`` with the MD5 and
        whole-object checksums of its bytes, and the version they were read
        from; ``copy`` as it is otherwise, or whenever the writer will refuse
        the copy anyway (it says why). A source whose manifest or chunks fail
        their checks is ObjectDamaged."""
        requested = copy.checksum_algorithm
        if source.version_id is not None:
            v = self.reader.version(source.bucket, source.key, source.version_id)
        else:
            v = self.reader.current(source.bucket, source.key)
        if (
            v is None or v.delete_marker or v.state in ("DAMAGED", "DELETED")
            or "-" not in v.etag or v.manifest is None or v.size > MAX_COPY_SOURCE_BYTES
        ):  # fmt: skip
            return copy
        cond = conditions.from_headers(req.headers, copy_source=True)
        if not conditions.evaluate(cond, v.etag, v.created_ns, copy=True).ok:
            return copy
        try:
            manifest = decode_manifest(
                v.manifest, path=f"meta.db:versions/{v.uid}", with_meta=False
            )
        except FormatError:
            await mark_damaged(self.writer, v)
            raise S3Error("ObjectDamaged") from None
        algs = {str(a).upper() for a in dict(v.meta.get("checksums") or {})}
        if requested:
            algs.add(requested.upper())
        sums = [checksums.new_checksum(a) for a in sorted(algs)]
        md5 = hashlib.md5()

        def update(data: bytes) -> None:
            md5.update(data)
            for s in sums:
                s.update(data)

        for ref in manifest.chunks:
            data = await read_chunk_checked(self.segments, self.writer, self.reader, v, ref)
            if len(data) >= THREAD_READ_MIN:
                await trio.to_thread.run_sync(update, data)
            else:
                update(data)
        return msgspec.structs.replace(
            copy, src_uid=v.uid, etag=md5.hexdigest(),
            checksums={s.algorithm: s.b64() for s in sums},
        )  # fmt: skip
