"""PutObject, GetObject, HeadObject, DeleteObject.

Writes: the body is ingested here (hashes, checks) and streamed to the writer
chunk by chunk; the reply is sent only after the writer's commit, i.e. after
the durability barrier. Reads: the current version comes from SQLite, the
bytes straight from segment files; every chunk is BLAKE3-verified before a
byte of it is sent, so damaged data ends the response instead of being served.

GET/HEAD evaluate the conditional headers (``seglake.protocol.conditions``)
after resolving the version and before any byte or Range check, and honour
the ``response-*`` query overrides of the headers they send.

User metadata values are stored as text: a raw UTF-8 header value or an RFC
2047 encoded-word is decoded on the way in, and a value that is not US-ASCII
goes out RFC 2047-encoded (``=?UTF-8?B?...?=``), as AWS documents; ASCII
values round-trip byte for byte.
"""

from __future__ import annotations

import base64
import bisect
import email.header
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import trio

from seglake.aio import s3_error_from_group
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.format.layout import segment_file_name
from seglake.format.manifest import ChunkRef, decode_manifest
from seglake.frontend import lock_fields
from seglake.frontend.access import with_acl
from seglake.frontend.body import declared_length, ingest
from seglake.frontend.bucket_lifecycle import expiration
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.sse import (
    SseKeyring,
    VersionCipher,
    bucket_default_sse,
    response_headers,
)
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.messages import (
    Chunk,
    DeleteCondition,
    DeleteObject,
    DeleteVersion,
    MarkDamaged,
    Put,
    VersionMetaInit,
)
from seglake.meta.conflict_reads import key_has_conflict
from seglake.meta.reads import MetaReader, VersionRow, version_tags
from seglake.protocol import checksums, conditions
from seglake.protocol.attributes import (
    MAX_PARTS,
    ObjectFacts,
    attributes_document,
    parse_attributes,
    parse_int_header,
)
from seglake.protocol.limits import MAX_PART_NUMBER
from seglake.protocol.ranges import ByteRange, multipart_parts, parse_range
from seglake.protocol.tagging import parse_tagging_header
from seglake.protocol.xml import http_date
from seglake.sse.chunks import TAG_BYTES

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
# ~120 bytes per small object's chunk list: 16k entries stay under a few MiB
# and cover the hot set of most read-heavy workloads.
MANIFEST_CACHE_ENTRIES = 16_384
# GET/HEAD query parameters that override a response header (signed requests
# only, as in S3), and the header each sets.
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}
# An override becomes a response header; 4 KiB is far above any real
# Content-Disposition and well under the header-section limits of clients.
MAX_OVERRIDE_BYTES = 4 * 1024
# Sent by GET/HEAD of a key that has versions in state CONFLICT.
CONFLICT_HEADER = b"x-seglake-conflict"
# RFC 7230 token: what an x-amz-meta- name may consist of.
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENCODED_WORDS_RE = re.compile(r"^\s*(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=\s*)+$")


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


def decode_meta_value(raw: str) -> str:
    """A user metadata header value (decoded as latin-1, i.e. the raw bytes)
    → the text it stands for: RFC 2047 encoded-words are decoded, raw UTF-8
    bytes read as UTF-8; other bytes are kept as they are (latin-1)."""
    if "=?" in raw and _ENCODED_WORDS_RE.match(raw):
        try:
            return str(email.header.make_header(email.header.decode_header(raw)))
        except (LookupError, ValueError, UnicodeError):
            return raw
    if raw.isascii():
        return raw
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def encode_meta_value(value: str) -> bytes:
    """The header bytes for a stored user metadata value (RFC 2047 if not ASCII)."""
    if value.isascii():
        return value.encode("ascii")
    return b"=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")) + b"?="


def require_content_md5(cfg: Config, req: Request) -> None:
    """``--require-content-md5``: requests that carry object data (PutObject,
    UploadPart) must send Content-MD5; checked before any body byte is read."""
    if cfg.require_content_md5 and "content-md5" not in req.headers:
        raise S3Error(
            "InvalidRequest", message="Missing required header for this request: Content-MD5"
        )


def require_if_match(cfg: Config, req: Request) -> None:
    """``--require-if-match-buckets``: writes that create a version in those
    buckets (PutObject, CopyObject, CompleteMultipartUpload) must say what
    they overwrite (``If-Match``) or that they create (``If-None-Match: *``).
    428 otherwise (RFC 6585: a precondition is required, as opposed to 412,
    one that failed)."""
    if (
        req.bucket in cfg.if_match_bucket_set
        and "if-match" not in req.headers
        and req.headers.get("if-none-match", "").strip() != "*"
    ):
        raise S3Error(
            "PreconditionRequired",
            message="This bucket requires If-Match (or If-None-Match: *) on writes",
        )


@dataclass(frozen=True)
class WriteConditionArgs:
    """A write's own conditions as its writer request carries them (``Put``,
    ``CopyObject``)."""

    if_none_match: bool
    if_match: str | None
    seen_uid: str | None  # the key's current version uid now ("" none), with a condition


def write_condition_args(reader: MetaReader, req: Request) -> WriteConditionArgs:
    """A write's own conditions for its writer request (PutObject, CopyObject;
    decided in the writer's transaction). With a condition, also
    ``seen_uid``: the key's current version now, before any body byte is
    read, so the writer can tell that the key changed during the upload (409
    ConditionalRequestConflict)."""
    c = conditions.write_conditions_from_headers(req.headers)  # 501 for If-None-Match: <etag>
    seen_uid: str | None = None
    if c.any:
        cur = reader.current(req.bucket, req.key)
        seen_uid = "" if cur is None else cur.uid
    return WriteConditionArgs(c.if_none_match, c.if_match, seen_uid)


def delete_condition(c: conditions.DeleteConditions) -> DeleteCondition | None:
    """A delete's conditions as its writer request carries them (None: none)."""
    if not c.any:
        return None
    return DeleteCondition(if_match=c.if_match, last_modified_s=c.last_modified_s, size=c.size)


def stored_meta(req: Request) -> dict[str, Any]:
    user: dict[str, str] = {}
    size = 0
    for name, raw in req.headers.items():
        if name.startswith("x-amz-meta-"):
            short = name[len("x-amz-meta-") :]
            if not _TOKEN_RE.match(short):
                raise S3Error("InvalidArgument", message=f"Invalid metadata name {name!r}")
            value = decode_meta_value(raw)
            user[short] = value
            # AWS counts the UTF-8 bytes of every name and value.
            size += len(short.encode("utf-8")) + len(value.encode("utf-8"))
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


def part_sizes(meta: dict[str, Any]) -> list[int] | None:
    """The part sizes of a version uploaded in parts (``meta["parts"]``), or
    None for one that was not."""
    stored = meta.get("parts")
    return [int(x) for x in stored] if isinstance(stored, list) and stored else None


def stored_checksum_type(meta: dict[str, Any]) -> str:
    """The type of a version's stored checksums. Versions written before the
    type was recorded: COMPOSITE if uploaded in parts, else FULL_OBJECT."""
    ctype = meta.get("checksum_type")
    if ctype in checksums.CHECKSUM_TYPES:
        return str(ctype)
    return checksums.COMPOSITE if part_sizes(meta) else checksums.FULL_OBJECT


def object_facts(v: VersionRow) -> ObjectFacts:
    """What GetObjectAttributes reports about ``v``, from its stored meta."""
    meta = v.meta
    sums = {str(k): str(val) for k, val in dict(meta.get("checksums") or {}).items()}
    sizes = part_sizes(meta)
    raw = meta.get("part_checksums")
    part_alg = next(iter(sums)) if sizes and len(sums) == 1 else None
    return ObjectFacts(
        etag=v.etag, size=v.size, checksums=sums,
        checksum_type=stored_checksum_type(meta) if sums else None,
        part_sizes=tuple(sizes) if sizes else None,
        part_checksums=raw if isinstance(raw, bytes) and part_alg else None,
        part_algorithm=part_alg,
        part_digest_size=checksums.digest_size(part_alg) if part_alg else 0,
    )  # fmt: skip


class SegmentFiles:
    """Read-only descriptors of segment files, kept open (LRU), with their
    path strings for error messages (built once, not per read)."""

    def __init__(self, cfg: Config) -> None:
        self.dir = cfg.segments_dir
        self._fds: OrderedDict[int, tuple[int, str]] = OrderedDict()

    def _open(self, segment_id: int) -> tuple[int, str]:
        entry = self._fds.get(segment_id)
        if entry is not None:
            self._fds.move_to_end(segment_id)
            return entry
        path = str(self.dir / segment_file_name(segment_id))
        entry = (os.open(path, os.O_RDONLY | os.O_CLOEXEC), path)
        self._fds[segment_id] = entry
        if len(self._fds) > MAX_OPEN_SEGMENTS:
            _, (old, _) = self._fds.popitem(last=False)
            os.close(old)
        return entry

    def fd(self, segment_id: int) -> int:
        return self._open(segment_id)[0]

    def read(self, ref: ChunkRef) -> bytes:
        fd, path = self._open(ref.segment_id)
        return segfmt.read_record(fd, ref.offset, ref.length, ref.digest, path=path)


async def mark_damaged(writer: WriterClient, v: VersionRow) -> None:
    """Ask the writer to mark ``v`` DAMAGED; a failure to do so is only logged."""
    try:
        await writer.call(MarkDamaged(uid=v.uid))
    except S3Error as exc:
        log.warning("could not mark %s damaged: %s", v.uid, exc)


class ChunksMoved(Exception):
    """gc-rewrite moved a version's chunks (and removed their old segment)
    after its row was read: the row, not the object, is stale."""


async def read_chunk_checked(
    segments: SegmentFiles,
    writer: WriterClient,
    reader: MetaReader,
    v: VersionRow,
    ref: ChunkRef,
) -> bytes:
    """One chunk of ``v``, BLAKE3-verified. A chunk that cannot be read or
    does not verify marks ``v`` DAMAGED and is ``ObjectDamaged``: its bytes
    are never used. A segment that is gone because GC moved the version's
    chunks meanwhile is ``ChunksMoved`` instead (read the row again)."""
    try:
        if ref.length >= THREAD_READ_MIN:
            return await trio.to_thread.run_sync(segments.read, ref)
        return segments.read(ref)
    except (FormatError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            fresh = reader.version(v.bucket, v.key, v.version_id)
            if fresh is not None and fresh.uid == v.uid and fresh.manifest != v.manifest:
                raise ChunksMoved(v.uid) from exc
        log.error("object %s/%s version %s is damaged: %s", v.bucket, v.key, v.uid, exc)
        await mark_damaged(writer, v)
        raise S3Error("ObjectDamaged") from None


class ManifestCache:
    """Decoded chunk lists by version uid, bounded (LRU). gc-rewrite may move
    a version's chunks (same uid, new manifest bytes), so a hit counts only
    while the row still carries the manifest bytes it was decoded from."""

    def __init__(self, size: int = MANIFEST_CACHE_ENTRIES) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[bytes, tuple[ChunkRef, ...]]] = OrderedDict()

    def chunks(self, v: VersionRow) -> tuple[ChunkRef, ...]:
        hit = self._entries.get(v.uid)
        if hit is not None and v.manifest is not None and hit[0] == v.manifest:
            self._entries.move_to_end(v.uid)
            return hit[1]
        if v.manifest is None:
            raise S3Error("InternalError", message="version has no manifest")
        chunks = decode_manifest(
            v.manifest, path=f"meta.db:versions/{v.uid}", with_meta=False
        ).chunks
        self._entries[v.uid] = (bytes(v.manifest), chunks)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return chunks


class ObjectHandlers(FamilyBase):
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        super().__init__(cfg, reader, writer)
        self.segments = SegmentFiles(cfg)
        self.manifests = ManifestCache()
        self.sse = SseKeyring(cfg, reader, writer)

    def _bucket_default_sse(self, req: Request) -> str | None:
        """The bucket's default encryption ("AES256"), or None."""
        return bucket_default_sse(self.reader, req.bucket)

    # ---- PUT -------------------------------------------------------------
    async def put_object(self, req: Request) -> None:
        validate_key(req.key)
        require_content_md5(self.cfg, req)
        require_if_match(self.cfg, req)
        length = declared_length(req, self.cfg)
        meta = stored_meta(req)
        raw_tags = req.headers.get("x-amz-tagging")
        vmeta = None if raw_tags is None else VersionMetaInit(tags=parse_tagging_header(raw_tags))
        bucket = self.reader.bucket(req.bucket)
        if bucket is None:
            raise S3Error("NoSuchBucket", resource=req.bucket, fields={"BucketName": req.bucket})
        # Object Lock: the version's lock, and the integrity header a lock
        # bucket requires, both decided before any body byte is read.
        lock, hold = lock_fields.lock_init(self.reader, req)
        lock_fields.require_integrity(self.reader, req)
        cond = write_condition_args(self.reader, req)
        # Checked before a byte of the body is read.
        acl, owner = self.access.new_object(req.headers, req.identity, req.bucket, self.cfg)
        sealing = await self.sse.sealing_for(req, bucket_default=self._bucket_default_sse(req))
        refs: dict[int, Chunk] = {}

        async def on_chunk(data: bytes, digest: bytes, index: int) -> None:
            refs[index] = await self.writer.append(data, digest)

        body = await ingest(
            req, self.cfg, length, on_chunk,
            sealer=None if sealing is None else sealing.cipher().seal,
        )  # fmt: skip
        if body.checksums:
            meta["checksums"] = body.checksums
        if sealing is not None:
            meta["sse"] = sealing.info.to_meta()
        put = Put(
            bucket=req.bucket, key=req.key, size=body.size, etag=body.etag, meta=meta,
            chunks=[refs[i] for i in range(len(refs))], tail_digest=body.tail_digest,
            if_none_match=cond.if_none_match, if_match=cond.if_match, seen_uid=cond.seen_uid,
            owner=owner, vmeta=lock_fields.with_lock(with_acl(vmeta, acl), lock, hold),
        )  # fmt: skip
        result = await self.writer.call(put, body.tail)
        headers = [(b"etag", f'"{body.etag}"'.encode())]
        if sealing is not None:
            headers += sealing.response_headers()
        if result.version_id:
            headers.append((b"x-amz-version-id", result.version_id.encode()))
        for alg, value in body.checksums.items():
            headers.append((checksums.header_name(alg).encode(), value.encode()))
        if body.checksums:
            headers.append((b"x-amz-checksum-type", checksums.FULL_OBJECT.encode()))
        headers += expiration(
            self.reader, req.bucket, req.key, body.size, result.created_ns,
            self.cfg.lifecycle_day_ns, dict(vmeta.tags) if vmeta is not None else None,
        )  # fmt: skip
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
                self.require_bucket(req.bucket)
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
                        **({"x-seglake-conflict": "true"} if version.state == "CONFLICT" else {}),
                    },
                )  # fmt: skip
            return version
        version = self.reader.current(req.bucket, req.key)
        if version is None or version.state == "DELETED":
            self.require_bucket(req.bucket)
            raise S3Error("NoSuchKey", resource=req.key, fields={"Key": req.key})
        if version.delete_marker:
            raise S3Error(
                "NoSuchKey", resource=req.key, fields={"Key": req.key},
                headers={"x-amz-delete-marker": "true", "x-amz-version-id": version.version_id},
            )  # fmt: skip
        return version

    def _reports_version(self, v: VersionRow) -> bool:
        """Whether responses name the version: always, except in a bucket that
        has never been versioned (its null versions stay unnamed, as on AWS)."""
        if v.version_id != "null":
            return True
        b = self.reader.bucket(v.bucket)
        return b is not None and b.versioning != "unversioned"

    def _check_conditions(self, req: Request, v: VersionRow) -> None:
        """412 / 304 for the If-* headers, evaluated against the resolved version."""
        verdict = conditions.evaluate(conditions.from_headers(req.headers), v.etag, v.created_ns)
        if verdict.outcome is conditions.Outcome.NOT_MODIFIED:
            headers = {"ETag": f'"{v.etag}"', "Last-Modified": http_date(v.created_ns)}
            if self._reports_version(v):
                headers["x-amz-version-id"] = v.version_id
            raise S3Error("NotModified", headers=headers)
        if verdict.outcome is conditions.Outcome.PRECONDITION_FAILED:
            raise S3Error(
                "PreconditionFailed", resource=req.key,
                fields={"Condition": verdict.condition or ""},
            )  # fmt: skip

    @staticmethod
    def _overrides(req: Request) -> list[tuple[bytes, bytes]]:
        """The ``response-*`` query overrides, validated (before any lookup)."""
        found = [(p, h) for p, h in RESPONSE_OVERRIDES.items() if p in req.query]
        if not found:
            return []
        if req.auth is None:
            raise S3Error(
                "InvalidRequest",
                message="Request specific response headers cannot be used for anonymous "
                "GET requests.",
            )
        out: list[tuple[bytes, bytes]] = []
        for param, header in found:
            value = req.q(param) or ""
            data = value.encode("utf-8")
            if len(data) > MAX_OVERRIDE_BYTES or any(
                (c < 0x20 and c != 0x09) or c == 0x7F for c in data
            ):
                raise S3Error(
                    "InvalidArgument", message=f"Invalid value for the {param} parameter",
                    fields={"ArgumentName": param, "ArgumentValue": value[:256]},
                )  # fmt: skip
            out.append((header.encode(), data))
        return out

    @staticmethod
    def _apply_overrides(
        headers: list[tuple[bytes, bytes]], overrides: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        if not overrides:
            return headers
        names = {n for n, _ in overrides}
        return [h for h in headers if h[0] not in names] + overrides

    def _object_headers(
        self, req: Request, v: VersionRow, *, whole: bool = True, part: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        """Headers describing the version. Stored checksums describe the whole
        object, so they are sent only when the whole object is (clients that
        ask with x-amz-checksum-mode verify them against the body); with
        ``?partNumber=`` (``part``) the checksum sent is that part's."""
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
        if self._reports_version(v):
            h.append((b"x-amz-version-id", v.version_id.encode()))
        if v.state == "CONFLICT" or key_has_conflict(self.reader.conn, v.bucket, v.key):
            # A concurrent write on another site lost to (or is) this one
            # (docs/design-replication.md §3); GET /v1/meta/conflicts lists it.
            h.append((CONFLICT_HEADER, b"true"))
        if v.tag_count > 0:  # AWS sends it only for an object with tags
            h.append((b"x-amz-tagging-count", str(v.tag_count).encode()))
        for name, value in (meta.get("headers") or {}).items():
            h.append((name.encode(), str(value).encode("latin-1", "replace")))
        for name, value in (meta.get("user") or {}).items():
            h.append((f"x-amz-meta-{name}".encode("latin-1", "replace"), encode_meta_value(value)))
        if req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            sums: dict[str, str] = {}
            if part is not None:
                sums = self._part_checksum(v, part)
            elif whole:
                sums = {str(k): str(val) for k, val in dict(meta.get("checksums") or {}).items()}
            for alg, value in sums.items():
                h.append((checksums.header_name(alg).encode(), value.encode()))
            if sums:
                h.append((b"x-amz-checksum-type", stored_checksum_type(meta).encode()))
        return h + self._expiration(req, v) + lock_fields.lock_headers(v.vmeta)

    def _expiration(self, req: Request, v: VersionRow) -> list[tuple[bytes, bytes]]:
        """``x-amz-expiration`` when the version is the current one and a
        lifecycle rule will expire it (a noncurrent version has none, as on AWS)."""
        if req.q("versionId") is not None:
            cur = self.reader.current(v.bucket, v.key)
            if cur is None or cur.uid != v.uid:
                return []
        return expiration(
            self.reader, v.bucket, v.key, v.size, v.created_ns, self.cfg.lifecycle_day_ns,
            version_tags(v.vmeta) if v.tag_count else None,
        )  # fmt: skip

    @staticmethod
    def _part_checksum(v: VersionRow, n: int) -> dict[str, str]:
        """The checksum of part ``n`` (what ``?partNumber=n`` sends): the part's
        own value for an object uploaded in parts (when recorded), the
        object's for part 1 of one that was not."""
        facts = object_facts(v)
        if facts.part_sizes is None:
            return facts.checksums if n == 1 else {}
        ds, raw = facts.part_digest_size, facts.part_checksums
        if facts.part_algorithm is None or raw is None or len(raw) < n * ds:
            return {}
        value = base64.b64encode(raw[(n - 1) * ds : n * ds]).decode("ascii")
        return {facts.part_algorithm: value}

    @staticmethod
    def _part_number(req: Request) -> int | None:
        raw = req.q("partNumber")
        return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else None

    @staticmethod
    def _part(req: Request, v: VersionRow) -> tuple[ByteRange | None, list[tuple[bytes, bytes]]]:
        """``?partNumber=N``: the byte range of part N of the version, and the
        headers that describe it. Objects not uploaded in parts are one part.

        As AWS: N outside 1..10000 (or not a number) is 400 InvalidArgument;
        with a Range header too, 400 InvalidRequest; N beyond the object's
        parts, 416 InvalidPartNumber. A part is answered 206 with its
        Content-Range; ``x-amz-mp-parts-count`` only for an object uploaded
        in parts."""
        raw = req.q("partNumber")
        if raw is None:
            return None, []
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PART_NUMBER:
            raise S3Error(
                "InvalidArgument",
                message="Part number must be an integer between 1 and 10000, inclusive",
            )
        if "range" in req.headers:
            raise S3Error(
                "InvalidRequest",
                message="Cannot specify both Range header and partNumber query parameter",
            )
        stored = v.meta.get("parts")
        sizes = [int(x) for x in stored] if isinstance(stored, list) and stored else [v.size]
        n = int(raw)
        if n > len(sizes):
            raise S3Error("InvalidPartNumber")
        headers = [(b"x-amz-mp-parts-count", str(len(sizes)).encode())] if stored else []
        start = sum(sizes[: n - 1])
        if sizes[n - 1] == 0:
            return None, headers
        return ByteRange(start, start + sizes[n - 1] - 1), headers

    async def get_object_attributes(self, req: Request) -> None:
        """GetObjectAttributes (``GET ?attributes``): HeadObject's and ListParts'
        facts in one XML body; resolution, delete markers and conditional
        headers exactly as GET."""
        wanted = parse_attributes(req.headers.get("x-amz-object-attributes"))
        max_parts = parse_int_header(
            req.headers.get("x-amz-max-parts"), "x-amz-max-parts", MAX_PARTS
        )
        marker = parse_int_header(
            req.headers.get("x-amz-part-number-marker"), "x-amz-part-number-marker", 0
        )
        v = self._resolve(req)
        self._check_conditions(req, v)
        self.sse.read_key(req, v.meta)  # an SSE-C object's attributes need its key, as on AWS
        body = attributes_document(object_facts(v), wanted, max_parts=max_parts, marker=marker)
        headers = [(b"last-modified", http_date(v.created_ns).encode())]
        if self._reports_version(v):
            headers.append((b"x-amz-version-id", v.version_id.encode()))
        await req.xml(200, body, headers)

    async def head_object(self, req: Request) -> None:
        overrides = self._overrides(req)
        v = self._resolve(req)
        self._check_conditions(req, v)
        info, ck = self.sse.read_key(req, v.meta)
        part, part_headers = self._part(req, v)
        headers = self._apply_overrides(
            self._object_headers(req, v, whole=part is None, part=self._part_number(req)),
            overrides,
        )
        headers += part_headers + response_headers(info, ck)
        if part is not None:
            headers.append((b"content-range", part.content_range(v.size).encode()))
            headers.append((b"content-length", str(part.length).encode()))
            await req.start(206, headers)
        else:
            headers.append((b"content-length", str(0 if part_headers else v.size).encode()))
            await req.start(200, headers)
        await req.body(b"")

    async def get_object(self, req: Request) -> None:
        overrides = self._overrides(req)
        v = self._resolve(req)
        self._check_conditions(req, v)
        info, ck = self.sse.read_key(req, v.meta)
        cipher = (
            None if info is None
            else self.sse.version_cipher(info, ck, v.size, part_sizes(v.meta))
        )  # fmt: skip
        try:
            chunk_list = self.manifests.chunks(v)
        except FormatError as exc:
            log.error("damaged manifest: %s", exc)
            await self._mark_damaged(v)
            raise S3Error("ObjectDamaged") from None
        part, part_headers = self._part(req, v)
        if part is not None:
            byte_ranges: list[ByteRange] | None = [part]
        elif req.q("partNumber") is not None:
            byte_ranges = None  # a part of zero bytes, or the only part of an empty object
        else:
            byte_ranges = parse_range(req.headers.get("range"), v.size)
        headers = self._apply_overrides(
            self._object_headers(
                req,
                v,
                whole=byte_ranges is None and not part_headers,
                part=self._part_number(req),
            ),
            overrides,
        )
        headers += part_headers + response_headers(info, ck)
        if req.q("partNumber") is not None and part is None and part_headers:
            headers.append((b"content-length", b"0"))
            await req.start(200, headers)
            await req.body(b"")
            return
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
            ctype = next(
                (val.decode("utf-8", "replace") for n, val in overrides if n == b"content-type"),
                str(v.meta.get("content_type") or "binary/octet-stream"),
            )
            heads, closing, length = multipart_parts(byte_ranges, v.size, ctype, boundary)
            headers = [h for h in headers if h[0] != b"content-type"]
            headers.append((b"content-type", f"multipart/byteranges; boundary={boundary}".encode()))
            for head, r in zip(heads, byte_ranges, strict=True):
                plan += [head, (r.start, r.end)]
            plan.append(closing)
        headers.append((b"content-length", str(length).encode()))
        await self._stream(req, v, chunk_list, status, headers, plan, cipher)

    async def _stream(
        self,
        req: Request,
        v: VersionRow,
        chunks: tuple[ChunkRef, ...],
        status: int,
        headers: list[tuple[bytes, bytes]],
        plan: list[bytes | tuple[int, int]],
        cipher: VersionCipher | None = None,
    ) -> None:
        """Send ``plan``; every chunk is verified before any of its bytes go
        out. An encrypted version (``cipher``): only the chunks the plan
        touches are read and opened, each whole (GCM authenticates whole
        chunks), and trimmed like plaintext ones."""
        overhead = 0 if cipher is None else TAG_BYTES
        starts: list[int] = []
        pos = 0
        for ref in chunks:
            starts.append(pos)
            pos += ref.length - overhead
        cached: tuple[int, bytes] | None = None

        def read_sync(ref: ChunkRef, i: int) -> bytes:
            data = self.segments.read(ref)
            return data if cipher is None else cipher.open(i, data)

        async def read(ref: ChunkRef, i: int) -> bytes:
            if ref.length >= THREAD_READ_MIN:
                return await trio.to_thread.run_sync(read_sync, ref, i)
            return read_sync(ref, i)

        # An encrypted version: the next chunk is read, verified and opened
        # in a thread while this one is sent, so decryption overlaps the
        # network instead of adding to it. A prefetch that fails is simply
        # dropped: the chunk is read again below, with the usual handling.
        prefetched: dict[int, tuple[trio.Event, list[bytes]]] = {}

        async def fetch(i: int, done: trio.Event, box: list[bytes]) -> None:
            try:
                box.append(await read(chunks[i], i))
            except (FormatError, OSError, S3Error):
                pass
            finally:
                done.set()

        def prefetch(nursery: trio.Nursery, i: int) -> None:
            if cipher is not None and i < len(chunks) and i not in prefetched:
                entry: tuple[trio.Event, list[bytes]] = (trio.Event(), [])
                prefetched[i] = entry
                nursery.start_soon(fetch, i, *entry)

        async def chunk(i: int) -> bytes:
            nonlocal cached, chunks
            if cached is not None and cached[0] == i:
                return cached[1]
            ahead = prefetched.pop(i, None)
            if ahead is not None:
                await ahead[0].wait()
                if ahead[1]:
                    cached = (i, ahead[1][0])
                    return ahead[1][0]
            try:
                try:
                    data = await read(chunks[i], i)
                except FileNotFoundError:
                    # gc-rewrite may have moved this version's chunks (same
                    # uid and digests, new places) and removed the old
                    # segment since the row was read: follow the row once.
                    moved = self._moved_chunks(v, chunks)
                    if moved is None:
                        raise
                    chunks = moved
                    data = await read(chunks[i], i)
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
                hi = min(last, starts[i] + chunks[i].length - overhead - 1) - starts[i] + 1
                pieces.append((i, lo, hi))
                i += 1
        if pieces and not isinstance(pieces[0], bytes):
            await chunk(pieces[0][0])  # a damaged first chunk still gets a 500
        await req.start(status, headers)
        if not pieces:
            await req.body(b"")
            return
        if cipher is None:
            for n, piece in enumerate(pieces):
                more = n < len(pieces) - 1
                if isinstance(piece, bytes):
                    await req.body(piece, more)
                else:
                    i, lo, hi = piece
                    data = await chunk(i)
                    await req.body(data if lo == 0 and hi == len(data) else data[lo:hi], more)
            return
        # The chunk each piece's successor needs (None: no further chunk).
        following: list[int | None] = [None] * len(pieces)
        upcoming: int | None = None
        for n in range(len(pieces) - 1, -1, -1):
            following[n] = upcoming
            p = pieces[n]
            if not isinstance(p, bytes):
                upcoming = p[0]
        with s3_error_from_group():
            async with trio.open_nursery() as nursery:
                for n, piece in enumerate(pieces):
                    more = n < len(pieces) - 1
                    if isinstance(piece, bytes):
                        await req.body(piece, more)
                        continue
                    i, lo, hi = piece
                    data = await chunk(i)
                    nxt = following[n]
                    if nxt is not None and nxt != i:
                        prefetch(nursery, nxt)
                    await req.body(data if lo == 0 and hi == len(data) else data[lo:hi], more)
                nursery.cancel_scope.cancel()  # a prefetch nobody needs any more

    def _moved_chunks(
        self, v: VersionRow, chunks: tuple[ChunkRef, ...]
    ) -> tuple[ChunkRef, ...] | None:
        """The version's chunk list as the database has it now, if GC moved
        the same chunks (same count, lengths and digests) elsewhere."""
        fresh = self.reader.version(v.bucket, v.key, v.version_id)
        if fresh is None or fresh.uid != v.uid or fresh.manifest == v.manifest:
            return None
        try:
            now = self.manifests.chunks(fresh)
        except FormatError:
            return None
        same = len(now) == len(chunks) and all(
            (a.length, a.digest) == (b.length, b.digest) for a, b in zip(now, chunks, strict=True)
        )
        return now if same and now != chunks else None

    async def _mark_damaged(self, v: VersionRow) -> None:
        await mark_damaged(self.writer, v)

    # ---- DELETE ----------------------------------------------------------
    async def delete_object(self, req: Request) -> None:
        validate_key(req.key)
        version_id = req.q("versionId")
        # If-Match, x-amz-if-match-last-modified-time, x-amz-if-match-size:
        # decided by the writer against the current version, in the delete's
        # own transaction (seglake.protocol.conditions, rule 8).
        cond = delete_condition(conditions.delete_conditions_from_headers(req.headers))
        if version_id is not None:
            validate_version_id(version_id)
            # Object Lock: GOVERNANCE yields only to the header plus the
            # s3:BypassGovernanceRetention permission; the writer decides.
            bypass = req.may_bypass_governance(req.key, version_id)
            result = await self.writer.call(
                DeleteVersion(
                    bucket=req.bucket, key=req.key, version_id=version_id, conditions=cond,
                    bypass_governance=bypass,
                )
            )  # fmt: skip
        else:
            result = await self.writer.call(
                DeleteObject(bucket=req.bucket, key=req.key, conditions=cond)
            )
        headers: list[tuple[bytes, bytes]] = []
        if result.delete_marker:
            headers.append((b"x-amz-delete-marker", b"true"))
        if result.version_id:
            headers.append((b"x-amz-version-id", result.version_id.encode()))
        await req.respond(204, headers)


class ResponseAborted(Exception):
    """The response was started and must be cut off (never completed)."""
