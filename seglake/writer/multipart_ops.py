"""Multipart upload mutations, applied inside the committer's batch transaction.

Rules this file keeps (on top of the contract in ``ops.py``):

- A part's bytes are appended to segments before ``upload_part`` runs; its
  row lists those chunks and ``ctx.reference`` records them, so a committed
  part survives ``kill -9`` (recovery never cuts below ``committed_end``)
  and counts as live data until its upload is completed or aborted.
- Every check that depends on stored state (the upload exists and belongs
  to this bucket/key, parts exist with the listed ETags, part sizes) is made
  here, inside the transaction. The frontend's earlier checks only avoid
  receiving a body for nothing; they can be stale.
- Complete composes the object's manifest from the parts' chunk lists (no
  byte is copied), creates the version exactly as PUT does
  (``_insert_version``: manifest written and fsynced before COMMIT) and
  removes the upload and its part rows in the same transaction, so an
  upload is either still open or completed, never both.
- The object's checksum is derived from the parts' stored checksums only:
  COMPOSITE (the checksum of their raw values, ``-N``) or FULL_OBJECT (the
  whole body's CRC, combined from the parts' CRCs and sizes). Each part's
  raw value and the type are kept in the version's meta.
- The same transaction records the completed upload (id, bucket, key, a
  digest of the part list, the reply) for ``COMPLETED_RETENTION_NS``. A
  Complete of an upload that is no longer open but was completed with the
  same part list gets that reply again, before any condition is evaluated
  (it is the same request, retried after a lost response); any other part
  list is ``NoSuchUpload``, AWS's answer for a completed upload.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Final

import apsw
import msgpack
import msgspec

from seglake.errors import S3Error
from seglake.format.manifest import ChunkRef
from seglake.ipc.messages import (
    AbortUpload,
    Chunk,
    Completed,
    CompleteUpload,
    CreateUpload,
    Done,
    PartStored,
    UploadCreated,
    UploadPart,
)
from seglake.meta.schema import query
from seglake.protocol import checksums
from seglake.protocol.limits import MAX_PART_NUMBER, MAX_PART_SIZE, MIN_PART_SIZE
from seglake.writer.ops import (
    BatchContext,
    Mutations,
    _chunk_refs,
    _insert_version,
    bucket_versioning,
    check_write_conditions,
    current_version,
    with_owner,
)
from seglake.writer.vmeta_ops import decode_init, encode_init

# A lost Complete response is retried within seconds to minutes (SDK retry
# back-offs stay under a minute); a day also covers a client that reconnects
# much later and replays its request. A row is ~200 bytes: even 100,000
# Completes a day keep this table around 20 MB.
COMPLETED_RETENTION_NS = 24 * 3600 * 1_000_000_000


def new_upload_id(ns: int) -> str:
    """48 hex digits: the creation clock (so ids of one key sort in creation
    order, as S3 lists them) and 128 random bits (so ids cannot be guessed)."""
    return f"{ns:016x}{os.urandom(16).hex()}"


@dataclass(frozen=True)
class _Upload:
    meta: dict[str, Any]
    checksum_algorithm: str | None
    key_uid: str | None  # the key's current version at creation ('' none; None unknown)
    vmeta: bytes | None = None  # VersionMetaInit given at creation (vmeta_ops.encode_init)
    owner: str = ""


def _open_upload(conn: apsw.Connection, a: UploadPart | CompleteUpload | AbortUpload) -> _Upload:
    """The open upload ``a`` addresses, or NoSuchUpload."""
    rows = query(
        conn,
        "SELECT bucket, key, meta, checksum_algorithm, key_uid, vmeta, owner FROM uploads "
        "WHERE upload_id = ?",
        (a.upload_id,),
    )
    if not rows or rows[0][0] != a.bucket or rows[0][1] != a.key:
        raise S3Error("NoSuchUpload", resource=a.upload_id)
    meta = msgpack.unpackb(rows[0][2], raw=False) if rows[0][2] else {}
    key_uid = None if rows[0][4] is None else str(rows[0][4])
    return _Upload(
        meta if isinstance(meta, dict) else {}, rows[0][3], key_uid, rows[0][5], rows[0][6] or ""
    )


def apply_create_upload(conn: apsw.Connection, ctx: BatchContext, a: CreateUpload) -> UploadCreated:
    bucket, key = a.bucket, a.key
    bucket_versioning(conn, bucket)  # NoSuchBucket
    alg = a.checksum_algorithm
    if alg is not None and alg not in checksums.ALGORITHMS:
        raise S3Error("InvalidRequest", message=f"unsupported checksum algorithm {alg!r}")
    meta = dict(a.meta)
    meta.pop("checksum_type", None)
    if alg is not None:
        # Kept in the upload's meta (no schema change), which Complete copies
        # into the version's.
        ctype = a.checksum_type or checksums.default_checksum_type(alg)
        checksums.check_checksum_type(alg, ctype)
        meta["checksum_type"] = ctype
    ns = ctx.clock.tick()
    upload_id = new_upload_id(ns)
    cur = current_version(conn, bucket, key)
    conn.execute(
        "INSERT INTO uploads(upload_id, bucket, key, created_ns, meta, checksum_algorithm, "
        "key_uid, vmeta, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            upload_id, bucket, key, ns, msgpack.packb(meta), alg,
            "" if cur is None else cur.uid, encode_init(a.vmeta), a.owner or None,
        ),
    )  # fmt: skip
    return UploadCreated(upload_id=upload_id, created_ns=ns)


def apply_upload_part(conn: apsw.Connection, ctx: BatchContext, a: UploadPart) -> PartStored:
    """Store (or replace) one part; also used by UploadPartCopy."""
    upload = _open_upload(conn, a)
    sealed = "sse" in upload.meta
    if sealed != (a.sse_nonce is not None) or (sealed and len(a.sse_nonce or b"") != 8):
        raise S3Error("InternalError", message="part encryption does not match its upload")
    number = a.part_number
    if not 1 <= number <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", message="Part number must be an integer 1..10000")
    size = a.size
    if size > MAX_PART_SIZE:
        raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(MAX_PART_SIZE)})
    chunks = _chunk_refs(a.chunks, size, sealed=sealed)
    sums = a.checksums
    if not all(k in checksums.ALGORITHMS for k in sums):
        raise S3Error("InternalError", message="malformed part checksums")
    ns = ctx.clock.tick()
    packed_chunks = msgpack.packb(
        [[c.segment_id, c.offset, c.length, c.digest] for c in chunks], use_bin_type=True
    )
    conn.execute(
        "INSERT INTO parts(upload_id, part_number, size, etag, created_ns, checksums, chunks, "
        "sse_nonce) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(upload_id, part_number) DO "
        "UPDATE SET size = excluded.size, etag = excluded.etag, created_ns = excluded.created_ns, "
        "checksums = excluded.checksums, chunks = excluded.chunks, sse_nonce = excluded.sse_nonce",
        (a.upload_id, number, size, a.etag, ns, msgpack.packb(sums), packed_chunks, a.sse_nonce),
    )
    ctx.reference(chunks)
    ctx.to_index.extend(chunks)
    return PartStored(created_ns=ns)


def multipart_etag(part_md5s_hex: list[str]) -> str:
    """S3's ETag of a multipart object: md5 of the parts' binary md5s, ``-N``."""
    joined = b"".join(bytes.fromhex(e) for e in part_md5s_hex)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5s_hex)}"


def composite_checksum(alg: str, part_values_b64: list[str]) -> str:
    """AWS's COMPOSITE checksum: the checksum of the parts' raw checksums, ``-N``."""
    c = checksums.new_checksum(alg)
    for value in part_values_b64:
        c.update(base64.b64decode(value))
    return f"{c.b64()}-{len(part_values_b64)}"


def _normal_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


def parts_digest(listed: list[tuple[int, str, dict[str, str]]]) -> bytes:
    """SHA-256 of the part list a Complete names: [[number, etag], ...] with
    ETags normalised (quotes, case), checksums left out."""
    canonical = [[number, _normal_etag(etag)] for number, etag, _sums in listed]
    return hashlib.sha256(msgpack.packb(canonical)).digest()


_completed_decoder: Final = msgspec.msgpack.Decoder(Completed)


def _replay_completed(conn: apsw.Connection, a: CompleteUpload) -> Completed:
    """The reply of an earlier Complete of this upload with the same part
    list; NoSuchUpload if there was none (or it listed other parts)."""
    rows = query(
        conn,
        "SELECT bucket, key, parts_digest, result FROM completed_uploads WHERE upload_id = ?",
        (a.upload_id,),
    )
    if (
        not rows or rows[0][0] != a.bucket or rows[0][1] != a.key
        or bytes(rows[0][2]) != parts_digest(a.parts)
    ):  # fmt: skip
        raise S3Error("NoSuchUpload", resource=a.upload_id)
    try:
        result = _completed_decoder.decode(rows[0][3])
    except msgspec.DecodeError:
        raise S3Error("InternalError", message="malformed completed-upload record") from None
    return msgspec.structs.replace(result, replayed=True)


def apply_complete_upload(conn: apsw.Connection, ctx: BatchContext, a: CompleteUpload) -> Completed:
    """``a.parts`` as the client listed them (ascending, checked again here)."""
    bucket, key, upload_id = a.bucket, a.key, a.upload_id
    try:
        upload = _open_upload(conn, a)
    except S3Error as exc:
        if exc.code != "NoSuchUpload":
            raise
        return _replay_completed(conn, a)  # or NoSuchUpload after all
    meta, alg = upload.meta, upload.checksum_algorithm
    ctype = str(meta.get("checksum_type") or checksums.COMPOSITE)
    listed = a.parts
    if not listed:
        raise S3Error("MalformedXML", message="You must specify at least one part")
    if len(listed) > MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", message="A multipart upload has at most 10000 parts")
    last = 0
    for item in listed:
        if item[0] <= last:
            raise S3Error("InvalidPartOrder")
        last = item[0]

    stored = {
        int(r[0]): r
        for r in query(
            conn,
            "SELECT part_number, size, etag, checksums, chunks, sse_nonce FROM parts "
            "WHERE upload_id = ?",
            (upload_id,),
        )
    }
    # The frontend passes its configured minimum (``--min-part-size``, only
    # ever lowered for tests); never above AWS's.
    min_part = min(a.min_part_size or MIN_PART_SIZE, MIN_PART_SIZE)
    chunks: list[ChunkRef] = []
    sizes: list[int] = []
    etags: list[str] = []
    part_sums: list[dict[str, str]] = []
    sealed = "sse" in meta
    nonces: list[bytes] = []
    for i, (number, etag, sent_sums) in enumerate(listed):
        row = stored.get(number)
        if row is None or _normal_etag(etag) != row[2]:
            raise S3Error(
                "InvalidPart", message=f"Part {number} was not found or its ETag does not match"
            )
        size = int(row[1])
        if size < min_part and i < len(listed) - 1:
            raise S3Error(
                "EntityTooSmall",
                message=f"Part {number} is {size} bytes; every part but the last must be at "
                f"least {min_part} bytes",
            )
        sums = msgpack.unpackb(row[3], raw=False) if row[3] else {}
        for name, value in sent_sums.items():
            if sums.get(name) != value:
                raise S3Error(
                    "InvalidPart",
                    message=f"Part {number}: the {name} checksum does not match the stored part",
                )
        chunks += _chunk_refs(
            [Chunk(*c) for c in msgpack.unpackb(row[4], raw=False)], size, sealed=sealed
        )
        if sealed:
            if row[5] is None:
                raise S3Error("InternalError", message=f"part {number} of a sealed upload is plain")
            nonces.append(bytes(row[5]))
        sizes.append(size)
        etags.append(str(row[2]))
        part_sums.append(sums)
    total = sum(sizes)
    expect_size = a.expect_size
    if expect_size >= 0 and expect_size != total:
        raise S3Error(
            "InvalidRequest",
            message=f"x-amz-mp-object-size is {expect_size}, the parts add up to {total}",
        )
    max_size = a.max_size
    if max_size and total > max_size:
        raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(max_size)})

    object_sums: dict[str, str] = {}
    part_raws: list[bytes] = []
    if alg is not None:
        values = [s.get(alg) for s in part_sums]
        if any(v is None for v in values):
            raise S3Error(
                "InvalidRequest",
                message=f"a part has no {alg} checksum, which this upload requires",
            )
        try:
            part_raws = [checksums.decode_value(alg, str(v)) for v in values]
        except S3Error:
            raise S3Error("InternalError", message="a stored part checksum is malformed") from None
        if ctype == checksums.FULL_OBJECT:
            # The CRC of the whole body, from the parts' CRCs and sizes.
            whole = checksums.full_object_crc(alg, zip(part_raws, sizes, strict=True))
            object_sums[alg] = base64.b64encode(whole).decode("ascii")
        else:
            object_sums[alg] = composite_checksum(alg, [str(v) for v in values])

    for name, value in a.expect_checksums.items():
        have = object_sums.get(name)
        # A COMPOSITE value may be sent with or without its -N; a FULL_OBJECT
        # one has none.
        sent = value if ctype == checksums.FULL_OBJECT else value.split("-")[0]
        if have is None or sent != have.split("-")[0]:
            raise S3Error(
                "BadDigest",
                message=f"The {name} you specified did not match the calculated checksum.",
            )

    versioning = bucket_versioning(conn, bucket)
    # The upload ran from its creation: a key changed since then makes a
    # conditional Complete that would pass a 409 (conditions, rule 7).
    check_write_conditions(conn, bucket, key, a.if_none_match, a.if_match, upload.key_uid)

    etag = multipart_etag(etags)
    version_meta = dict(meta)
    version_meta["parts"] = sizes  # part boundaries, for GET/HEAD ?partNumber=
    if sealed and isinstance(meta["sse"], dict):
        # The upload's DEK, and each listed part's nonce base in part order.
        version_meta["sse"] = {**meta["sse"], "nonces": nonces}
    if object_sums:
        version_meta["checksums"] = object_sums
        version_meta["checksum_type"] = ctype
        # Each part's raw checksum, in part order (GetObjectAttributes lists them).
        version_meta["part_checksums"] = b"".join(part_raws)
    version_id, ns = _insert_version(
        conn, ctx, bucket=bucket, key=key, versioning=versioning, size=total, etag=etag,
        meta=with_owner(version_meta, upload.owner), chunks=chunks, delete_marker=False,
        vmeta=decode_init(upload.vmeta),
    )  # fmt: skip
    conn.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
    conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
    result = Completed(
        # As for PUT: only an enabled bucket announces the new version's id.
        version_id=version_id if versioning == "enabled" else None,
        created_ns=ns,
        etag=etag,
        size=total,
        checksums=object_sums,
        checksum_type=ctype if object_sums else None,
    )
    conn.execute(
        "DELETE FROM completed_uploads WHERE completed_ns < ?", (ns - COMPLETED_RETENTION_NS,)
    )
    conn.execute(
        "INSERT INTO completed_uploads(upload_id, bucket, key, parts_digest, result, "
        "completed_ns) VALUES (?, ?, ?, ?, ?, ?)",
        (upload_id, bucket, key, parts_digest(listed), msgspec.msgpack.encode(result), ns),
    )
    return result


def apply_abort_upload(conn: apsw.Connection, ctx: BatchContext, a: AbortUpload) -> Done:
    """Forget the upload; its parts' chunks become garbage for GC."""
    _open_upload(conn, a)
    conn.execute("DELETE FROM parts WHERE upload_id = ?", (a.upload_id,))
    conn.execute("DELETE FROM uploads WHERE upload_id = ?", (a.upload_id,))
    return Done()


APPLY: Mutations = {
    CreateUpload: apply_create_upload,
    UploadPart: apply_upload_part,
    CompleteUpload: apply_complete_upload,
    AbortUpload: apply_abort_upload,
}
