"""Metadata mutations, applied inside the committer's batch transaction.

Each ``apply_*`` function runs inside its own SAVEPOINT of the batch
transaction: raising ``S3Error`` rolls back just that mutation. None of them
touches files; a mutation that creates a version returns its encoded
manifest, which the committer writes and fsyncs *before* COMMIT, so a
committed row always has a durable manifest file behind it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import apsw
import msgpack

from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.manifest import (
    SEAL_TAG_BYTES,
    ChunkRef,
    Manifest,
    decode_manifest,
    encode_manifest,
)
from seglake.format.segment import CHUNK_SIZE
from seglake.format.vmeta import Lock, VersionMeta, decode_vmeta, encode_vmeta
from seglake.ipc.messages import (
    BucketCreated,
    Chunk,
    Copied,
    CopyObject,
    CreateBucket,
    DeleteBucket,
    DeleteCondition,
    Deleted,
    DeletedMany,
    DeleteObject,
    DeleteObjects,
    DeleteResult,
    DeleteVersion,
    Done,
    MarkDamaged,
    Marked,
    Put,
    Request,
    VersionMetaInit,
    Written,
)
from seglake.meta.schema import get_setting, live_version, query
from seglake.protocol import conditions, object_lock
from seglake.protocol.hlc import Hlc
from seglake.protocol.limits import MAX_COPY_SOURCE_BYTES
from seglake.writer import lock_rules, lww_rows
from seglake.writer.oplog_journal import OplogJournal

NULL_VERSION = "null"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class VersionClock:
    """Monotonic nanosecond clock for version uids and creation times (the
    replication stamps come from the HLC, ``BatchContext.hlc``).

    Version uids are the bit-inverted clock in hex so that ascending string
    order is newest first, as S3 lists versions.
    """

    def __init__(self, last_ns: int = 0) -> None:
        self.last_ns = last_ns

    def tick(self) -> int:
        self.last_ns = max(time.time_ns(), self.last_ns + 1)
        return self.last_ns

    @staticmethod
    def uid_for(ns: int) -> str:
        # The random tail keeps uids unique across sites (replication).
        return f"{(1 << 64) - 1 - ns:016x}{os.urandom(4).hex()}"


@dataclass
class BatchContext:
    """What the mutations of one batch accumulate for the committer."""

    clock: VersionClock
    # The replication clock and this store's site id (docs/design-replication.md
    # §1): the committer passes its own; "" = read settings['site_id'].
    hlc: Hlc = field(default_factory=lambda: Hlc(wall_ms))
    site: str = ""
    # The oplog's triggers (None outside the committer, e.g. unit tests):
    # the replication apply runs under ``oplog.suppressed()``.
    oplog: OplogJournal | None = None
    committed_ends: dict[int, int] = field(default_factory=dict)
    manifests: list[tuple[str, bytes]] = field(default_factory=list)  # (uid, bytes)
    unlink_after_commit: list[str] = field(default_factory=list)  # uids
    # Chunks that committed references name, for chunk_index (written once
    # per batch by the committer: one statement for all of them). A chunk of
    # a mutation rolled back under its savepoint may stay listed: its bytes
    # are in the segment with that digest until GC drops the segment, which
    # drops its entries too.
    to_index: list[ChunkRef] = field(default_factory=list)

    def reference(self, chunks: list[ChunkRef]) -> None:
        for c in chunks:
            end = c.offset + c.length
            if end > self.committed_ends.get(c.segment_id, 0):
                self.committed_ends[c.segment_id] = end

    def site_id(self, conn: apsw.Connection) -> str:
        if not self.site:
            self.site = get_setting(conn, "site_id") or ""
            if not self.site:
                raise S3Error("InternalError", message="meta.db has no site id")
        return self.site


@dataclass(frozen=True)
class KeyStamp:
    """A new version's stamp, and ``prev``: the stamp of the key's current
    version it replaces (None: the key had none)."""

    hlc: int
    site: str
    prev: tuple[int, str] | None


def stamp_for_key(conn: apsw.Connection, ctx: BatchContext, bucket: str, key: str) -> KeyStamp:
    """The HLC stamp of a new local version of ``key``: above the stamp of
    the key's current version, which becomes its ``prev`` (the per-key
    rule of protocol/hlc.py: a version written here is current under LWW
    whatever the wall clock says). Every other row of the key is below
    the clock already: the clock observes each remote stamp it applies and
    restarts above every persisted one."""
    # The simplest statement on the hot path of every put: one primary-key
    # lookup each (a complex one costs more to prepare than to run).
    rows = query(
        conn,
        "SELECT v.hlc, v.site FROM current c JOIN versions v ON v.id = c.version "
        "WHERE c.bucket = ? AND c.key = ?",
        (bucket, key),
    )
    if not rows:
        # No current row: a hidden tombstone (an unversioned DELETE) may
        # still be the key's LWW winner, and a new version follows it.
        rows = query(
            conn,
            "SELECT hlc, site FROM versions WHERE bucket = ? AND key = ? "
            "AND version_id = 'null' AND tombstone = 1 AND state = 'ACTIVE'",
            (bucket, key),
        )
    prev = (int(rows[0][0]), str(rows[0][1])) if rows else None
    return KeyStamp(ctx.hlc.stamp_key(None if prev is None else prev[0]), ctx.site_id(conn), prev)


# A mutation: ``apply(conn, ctx, msg)``. Any: each takes its own request
# type, which a table of them all cannot say; the table's key is that type.
Apply = Callable[[apsw.Connection, BatchContext, Any], Any]
Mutations = Mapping[type[Request[Any]], Apply]


@dataclass(frozen=True)
class Current:
    row_id: int
    version_id: str
    etag: str
    delete_marker: bool
    uid: str = ""
    size: int = 0
    created_ns: int = 0

    def state(self) -> conditions.KeyState:
        """What the write/delete conditions are decided against."""
        return conditions.KeyState(
            self.uid, self.etag, self.size, self.created_ns, self.delete_marker
        )


def bucket_versioning(conn: apsw.Connection, bucket: str) -> str:
    rows = query(conn, "SELECT versioning FROM buckets WHERE name = ?", (bucket,))
    if not rows:
        raise S3Error("NoSuchBucket", resource=bucket, fields={"BucketName": bucket})
    return str(rows[0][0])


def current_version(conn: apsw.Connection, bucket: str, key: str) -> Current | None:
    rows = query(
        conn,
        "SELECT v.id, v.version_id, v.etag, v.delete_marker, v.uid, v.size, v.created_ns "
        "FROM current c JOIN versions v ON v.id = c.version WHERE c.bucket = ? AND c.key = ?",
        (bucket, key),
    )
    if not rows:
        return None
    r = rows[0]
    return Current(int(r[0]), str(r[1]), str(r[2]), bool(r[3]), str(r[4]), int(r[5]), int(r[6]))


def vmeta_columns(
    value: VersionMeta | None,
) -> tuple[bytes | None, int | None, str | None, int | None, int]:
    """The values of ``versions.vmeta``, ``tag_count``, ``lock_mode``,
    ``lock_until_ms``, ``legal_hold`` for ``value`` (None: all defaults)."""
    if value is None:
        return None, None, None, None, 0
    return (encode_vmeta(value), *value.columns())


def from_init(init: VersionMetaInit | None, rev: int) -> VersionMeta | None:
    """A new version's metadata from its write request; None when it is all
    defaults (such a version gets no blob and no version-meta record)."""
    if init is None:
        return None
    value = VersionMeta(
        rev=rev,
        tags=tuple((str(k), str(v)) for k, v in init.tags),
        acl=init.acl,
        lock=None if init.lock is None else Lock(init.lock.mode, init.lock.until_ms),
        legal_hold=init.legal_hold,
    )
    return None if value.is_default else value


def with_owner(meta: dict[str, Any], owner: str) -> dict[str, Any]:
    """``meta`` with the writer's canonical id as "owner" (immutable, so it
    lives in the manifest meta; none for a write without one)."""
    if owner:
        meta["owner"] = owner
    return meta


def _insert_version(
    conn: apsw.Connection,
    ctx: BatchContext,
    *,
    bucket: str,
    key: str,
    versioning: str,
    size: int,
    etag: str,
    meta: dict[str, Any],
    chunks: list[ChunkRef],
    delete_marker: bool,
    vmeta: VersionMetaInit | VersionMeta | None = None,
    tombstone: bool = False,
) -> tuple[str, int]:
    """Insert a new version (current for its key); ``vmeta``: its mutable
    metadata, stored in the same row, so the record journal's insert
    trigger writes its version-meta record in this batch. ``tombstone``:
    the hidden null delete marker of an unversioned DELETE, the key's LWW
    winner but never in ``current`` (S3 sees no version at all)."""
    ns = ctx.clock.tick()
    stamp = stamp_for_key(conn, ctx, bucket, key)
    value = vmeta if isinstance(vmeta, VersionMeta) or vmeta is None else from_init(vmeta, ns)
    if value is not None:
        value = (
            None
            if value.is_default
            else VersionMeta(ns, value.tags, value.acl, value.lock, value.legal_hold, value.extra)
        )
    if (
        value is not None
        and (value.lock is not None or value.legal_hold)
        and lock_rules.bucket_lock_config(conn, bucket) is None
    ):
        # The frontend refuses this first; a lock never lands outside a lock bucket.
        raise S3Error("InvalidRequest", message=object_lock.MISSING_CONFIG_MSG)
    uid = VersionClock.uid_for(ns)
    if versioning == "enabled":
        version_id = uid
    else:
        version_id = NULL_VERSION
        # The null version is replaced, not kept: its row stays as DELETED
        # (its chunks become garbage for GC), other versions are untouched.
        conn.execute(
            "UPDATE versions SET state = 'DELETED' WHERE bucket = ? AND key = ? "
            "AND version_id = 'null' AND state != 'DELETED'",
            (bucket, key),
        )
    if tombstone:
        meta = {**meta, "tombstone": True}  # rebuild-index restores the flag from it
    manifest_meta = dict(meta)
    manifest_meta.update(
        etag=etag, created_ns=ns, delete_marker=delete_marker, s3_version_id=version_id
    )
    # The replication stamps travel in the manifest record too, so
    # rebuild-index restores the LWW order (design §4).
    manifest_meta.update(
        hlc=stamp.hlc, site=stamp.site, prev=None if stamp.prev is None else list(stamp.prev)
    )
    manifest = encode_manifest(Manifest(bucket, key, uid, size, tuple(chunks), manifest_meta))
    prev_hlc, prev_site = stamp.prev if stamp.prev is not None else (None, None)
    conn.execute(
        "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, state, "
        "delete_marker, hlc, site, prev_hlc, prev_site, meta, manifest, vmeta, tag_count, "
        "lock_mode, lock_until_ms, legal_hold, tombstone) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            uid, bucket, key, version_id, size, etag, ns, int(delete_marker), stamp.hlc,
            stamp.site, prev_hlc, prev_site, msgpack.packb(meta, use_bin_type=True), manifest,
            *vmeta_columns(value), int(tombstone),
        ),
    )  # fmt: skip
    row_id = conn.last_insert_rowid()
    if tombstone:
        conn.execute("DELETE FROM current WHERE bucket = ? AND key = ?", (bucket, key))
    else:
        conn.execute(
            "INSERT INTO current(bucket, key, version) VALUES (?, ?, ?) "
            "ON CONFLICT(bucket, key) DO UPDATE SET version = excluded.version",
            (bucket, key, row_id),
        )
    ctx.manifests.append((uid, manifest))
    ctx.reference(chunks)
    ctx.to_index.extend(chunks)
    return version_id, ns


def check_write_conditions(
    conn: apsw.Connection,
    bucket: str,
    key: str,
    if_none_match: bool,
    if_match: str | None,
    seen_uid: str | None,
) -> None:
    """A write's own conditions, decided atomically with the write
    (``conditions.decide_write``): ``If-None-Match: *`` and ``If-Match``.
    ``seen_uid``: the key's current version uid when the request began, ""
    for none, None if unknown; a write that passes against a key changed
    since then is 409 ConditionalRequestConflict."""
    c = conditions.WriteConditions(if_match, if_none_match)
    if not c.any:
        return  # most writes are unconditional: skip the lookup
    cur = current_version(conn, bucket, key)
    verdict = conditions.decide_write(c, None if cur is None else cur.state(), seen_uid)
    verdict.raise_for(key)


def check_delete_conditions(
    conn: apsw.Connection, bucket: str, key: str, raw: DeleteCondition | None
) -> None:
    """A delete's conditions (``conditions.decide_delete``), against the
    key's current version, decided in the transaction that deletes."""
    if raw is None:
        return
    c = conditions.DeleteConditions(raw.if_match, raw.last_modified_s, raw.size)
    if not c.any:
        return
    cur = current_version(conn, bucket, key)
    conditions.decide_delete(c, None if cur is None else cur.state()).raise_for(key)


def _chunk_refs(chunks: list[Chunk], size: int, *, sealed: bool = False) -> list[ChunkRef]:
    """``sealed``: encrypted chunks, each 16 bytes (its tag) longer than the
    plaintext ``size`` counts (``seglake/format/manifest.py``, version 2)."""
    overhead = SEAL_TAG_BYTES if sealed else 0
    refs = []
    total = 0
    for c in chunks:
        if not (len(c.digest) == 32 and overhead < c.length <= CHUNK_SIZE):
            raise S3Error("InternalError", message="malformed chunk reference")
        refs.append(ChunkRef(c.segment_id, c.offset, c.length, c.digest))
        total += c.length - overhead
    if total != size:
        raise S3Error("InternalError", message="chunk lengths do not add up to the object size")
    return refs


def apply_put(conn: apsw.Connection, ctx: BatchContext, a: Put) -> Written:
    bucket, key = a.bucket, a.key
    versioning = bucket_versioning(conn, bucket)
    check_write_conditions(conn, bucket, key, a.if_none_match, a.if_match, a.seen_uid)
    chunks = _chunk_refs(a.chunks, a.size, sealed="sse" in a.meta)
    version_id, ns = _insert_version(
        conn, ctx, bucket=bucket, key=key, versioning=versioning, size=a.size,
        etag=a.etag, meta=with_owner(dict(a.meta), a.owner), chunks=chunks,
        delete_marker=False, vmeta=a.vmeta,
    )  # fmt: skip
    # Only an enabled bucket announces the new version's id: AWS answers a PUT
    # to a suspended bucket without x-amz-version-id (the write is the null
    # version, which GET/HEAD and ListObjectVersions do report as "null").
    return Written(version_id=version_id if versioning == "enabled" else None, created_ns=ns)


def apply_delete_object(conn: apsw.Connection, ctx: BatchContext, a: DeleteObject) -> Deleted:
    bucket, key = a.bucket, a.key
    versioning = bucket_versioning(conn, bucket)
    check_delete_conditions(conn, bucket, key, a.conditions)
    if versioning == "unversioned":
        cur = current_version(conn, bucket, key)
        if cur is not None:
            # The null version goes (DELETED, as a replaced one does) and a
            # hidden tombstone stamped above it becomes the key's LWW
            # winner, so a late older put from another site lands below
            # it instead of bringing the key back (design §2).
            _insert_version(
                conn, ctx, bucket=bucket, key=key, versioning=versioning, size=0,
                etag="", meta={}, chunks=[], delete_marker=True, tombstone=True,
            )  # fmt: skip
            conn.execute(
                "UPDATE versions SET state = 'DELETED' WHERE id = ? AND state != 'DELETED'",
                (cur.row_id,),
            )
            # Usually the key has no other live row; one that came from
            # another site does (protocol/lww.py decides, here as there).
            lww_rows.recompute_key(conn, bucket, key)
        return Deleted(version_id=None, delete_marker=False)
    version_id, _ = _insert_version(
        conn, ctx, bucket=bucket, key=key, versioning=versioning, size=0,
        etag="", meta={}, chunks=[], delete_marker=True,
    )  # fmt: skip
    return Deleted(version_id=version_id, delete_marker=True)


def apply_delete_version(conn: apsw.Connection, ctx: BatchContext, a: DeleteVersion) -> Deleted:
    """DELETE ?versionId=: remove exactly that version (or marker) for good.

    If it was current, the newest remaining version becomes current. The
    row stays as DELETED (its manifest and chunks are GC's to reclaim).
    Deleting a version that does not exist succeeds, as in S3.
    """
    bucket, key, version_id = a.bucket, a.key, a.version_id
    bucket_versioning(conn, bucket)
    # AWS: conditional delete evaluations apply to the current version only,
    # also when a version id is named.
    check_delete_conditions(conn, bucket, key, a.conditions)
    rows = query(
        conn,
        "SELECT id, delete_marker FROM versions WHERE bucket = ? AND key = ? "
        "AND version_id = ? AND state != 'DELETED' AND tombstone = 0",
        (bucket, key, version_id),
    )
    if not rows:
        return Deleted(version_id=version_id, delete_marker=False)
    row_id, marker = int(rows[0][0]), bool(rows[0][1])
    # Object Lock: AWS's answer first; the trigger refuses the UPDATE anyway.
    lock_rules.check_delete(conn, row_id, key, version_id, bypass=a.bypass_governance)
    with lock_rules.GUARD.bypassing(a.bypass_governance):
        conn.execute("UPDATE versions SET state = 'DELETED' WHERE id = ?", (row_id,))
    # The key's current version is the newest by (hlc, site) that is not
    # DELETED or CONFLICT: the rule every site applies (protocol/lww.py).
    lww_rows.recompute_key(conn, bucket, key)
    return Deleted(version_id=version_id, delete_marker=marker)


def apply_create_bucket(conn: apsw.Connection, ctx: BatchContext, a: CreateBucket) -> BucketCreated:
    name, versioning = a.bucket, a.versioning
    if versioning not in ("enabled", "unversioned"):
        raise S3Error("InvalidArgument", message="x-seglake-versioning must be enabled|unversioned")
    if a.object_lock is not None:
        # Object Lock needs versioning, for good (AWS turns it on with the lock).
        versioning = "enabled"
        object_lock.parse_lock_configuration(a.object_lock.encode())  # stored only if valid
    exists = query(conn, "SELECT 1 FROM buckets WHERE name = ?", (name,))
    if exists:
        # us-east-1 semantics: re-creating your own bucket succeeds.
        return BucketCreated(created=False)
    conn.execute(
        "INSERT INTO buckets(name, created_ns, versioning, acl, ownership, object_lock)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (name, ctx.clock.tick(), versioning, a.acl, a.ownership, a.object_lock),
    )
    return BucketCreated(created=True)


def apply_delete_bucket(conn: apsw.Connection, ctx: BatchContext, a: DeleteBucket) -> Done:
    """DeleteBucket as the seed defines it (SPEC §6).

    Refused only while a key's current version is an object (not a delete
    marker) or a multipart upload is open. Noncurrent versions and delete
    markers go with the bucket, in this one transaction: their rows are
    removed (the record journal writes a PURGED record for each, so
    ``rebuild-index`` leaves them out), their manifests are unlinked after
    COMMIT, and their chunks stop being live, so segment GC reclaims them.
    A bucket of the same name can be created again at once.
    """
    name = a.bucket
    bucket_versioning(conn, name)
    current_object = query(
        conn,
        "SELECT 1 FROM current c JOIN versions v ON v.id = c.version "
        "WHERE c.bucket = ? AND v.delete_marker = 0 AND v.state != 'DELETED' LIMIT 1",
        (name,),
    )
    open_upload = query(conn, "SELECT 1 FROM uploads WHERE bucket = ? LIMIT 1", (name,))
    if current_object or open_upload:
        raise S3Error("BucketNotEmpty", resource=name, fields={"BucketName": name})
    if lock_rules.bucket_has_locked_versions(conn, name):
        # Its noncurrent versions would go with it: not while one is locked.
        raise S3Error(
            "BucketNotEmpty", resource=name, fields={"BucketName": name},
            message="The bucket holds versions protected by Object Lock.",
        )  # fmt: skip
    # Every row goes, DELETED ones included: GC finds what to purge through
    # these rows, so their manifests are unlinked here rather than left to it.
    uids = query(conn, "SELECT uid FROM versions WHERE bucket = ?", (name,))
    ctx.unlink_after_commit.extend(str(r[0]) for r in uids)
    conn.execute("DELETE FROM current WHERE bucket = ?", (name,))
    conn.execute("DELETE FROM versions WHERE bucket = ?", (name,))
    conn.execute("DELETE FROM completed_uploads WHERE bucket = ?", (name,))
    conn.execute("DELETE FROM buckets WHERE name = ?", (name,))
    return Done()


def apply_mark_damaged(conn: apsw.Connection, ctx: BatchContext, a: MarkDamaged) -> Marked:
    """A reader found a chunk or manifest that fails its checksum."""
    conn.execute(
        "UPDATE versions SET state = 'DAMAGED' WHERE uid = ? AND state = 'ACTIVE'", (a.uid,)
    )
    return Marked()


# ---- CopyObject, DeleteObjects ----------------------------------------------

# The parts of a version's meta that describe the object to clients and that a
# REPLACE directive takes from the request; everything else (checksums, part
# layout, ...) describes the bytes and travels with them — except from a
# source uploaded in parts, whose copy is a single-part object.
REPLACEABLE_META = ("content_type", "headers", "user")


@dataclass(frozen=True)
class _Source:
    row_id: int
    uid: str
    version_id: str
    size: int
    etag: str
    created_ns: int
    state: str
    meta: dict[str, Any]
    manifest: bytes | None
    vmeta: bytes | None = None


def _copy_source(
    conn: apsw.Connection, bucket: str, key: str, version_id: str | None
) -> tuple[_Source, str]:
    """The version a copy reads, and its bucket's versioning state."""
    versioning = bucket_versioning(conn, bucket)
    cols = (
        "v.id, v.version_id, v.size, v.etag, v.created_ns, v.state, v.delete_marker, v.meta, "
        "v.manifest, v.uid, v.vmeta"
    )
    r = live_version(conn, cols, bucket, key, version_id)
    if r is None:
        if version_id is None:
            raise S3Error("NoSuchKey", resource=key, fields={"Key": key})
        raise S3Error("NoSuchVersion", resource=key, fields={"Key": key, "VersionId": version_id})
    if r[6]:
        if version_id is None:
            raise S3Error("NoSuchKey", resource=key, fields={"Key": key})
        raise S3Error(
            "InvalidRequest",
            message="The source of a copy request may not specifically refer to a delete "
            "marker by version id.",
        )
    meta = msgpack.unpackb(r[7], raw=False) if r[7] else {}
    src = _Source(
        int(r[0]), str(r[9]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), str(r[5]), meta, r[8],
        r[10],
    )  # fmt: skip
    return src, versioning


def apply_copy_object(conn: apsw.Connection, ctx: BatchContext, a: CopyObject) -> Copied:
    """CopyObject: a new version whose manifest lists the source's chunks.

    No byte is written: the source is resolved, its conditions checked and
    its chunk list taken inside this transaction, so a concurrent delete of
    the source either happens before (404) or after (the copy stands on its
    own references). The ETag and stored checksums are the source's, except
    for a source uploaded in parts: the copy is a single-part object, and as
    on AWS its ETag is the MD5 of its bytes and its checksums are whole-object
    ones. The frontend read those bytes and sends ``src_uid`` (the version it
    read), ``etag`` and ``checksums``; if the source is another version by now,
    nothing is written and ``source_changed`` tells it to re-read.
    """
    bucket, key = a.bucket, a.key
    src_bucket, src_key, src_vid = a.src_bucket, a.src_key, a.src_version_id
    versioning = bucket_versioning(conn, bucket)
    src, src_versioning = _copy_source(conn, src_bucket, src_key, src_vid)
    replace = a.directive == "REPLACE"
    # A re-sealed copy (``chunks``) changes the encryption: allowed onto itself.
    if src_bucket == bucket and src_key == key and not replace and a.chunks is None:
        cur = current_version(conn, bucket, key)
        if src_vid is None or (cur is not None and cur.row_id == src.row_id):
            raise S3Error(
                "InvalidRequest",
                message="This copy request is illegal because it is trying to copy an object "
                "to itself without changing the object's metadata, storage class, website "
                "redirect location or encryption attributes.",
            )
    cond = conditions.Conditions(*a.conditions)
    verdict = conditions.evaluate(cond, src.etag, src.created_ns, copy=True)
    if not verdict.ok:
        raise S3Error("PreconditionFailed", fields={"Condition": verdict.condition or ""})
    if src.state == "DAMAGED":
        raise S3Error("ObjectDamaged")
    if src.size > MAX_COPY_SOURCE_BYTES:
        raise S3Error(
            "InvalidRequest",
            message="The specified copy source is larger than the maximum allowable size for "
            f"a copy source: {MAX_COPY_SOURCE_BYTES}",
        )
    fresh = a.src_uid is not None
    if (a.src_uid != src.uid) if fresh else ("-" in src.etag and src.manifest is not None):
        # Not the version the frontend read, or it read one that was not in
        # parts: it reads the source again; nothing is written.
        return Copied(source_changed=True)
    if fresh:
        src_sums = dict(a.checksums)
        etag = a.etag or ""
        if len(etag) != 32 or not all(c in "0123456789abcdef" for c in etag):
            raise S3Error("InternalError", message="malformed copy ETag")
    else:
        src_sums = dict(src.meta.get("checksums") or {})
        etag = src.etag
    alg = a.checksum_algorithm
    if alg and alg.upper() not in src_sums:
        # A new checksum needs every byte read; never claim one we did not compute.
        raise S3Error(
            "NotImplemented",
            message=f"CopyObject cannot compute a {alg.upper()} checksum the source "
            "does not already have.",
        )
    check_write_conditions(conn, bucket, key, a.if_none_match, a.if_match, a.seen_uid)
    if src.manifest is None:
        raise S3Error("InternalError", message="copy source has no manifest")
    try:
        manifest = decode_manifest(
            src.manifest, path=f"meta.db:versions/{src.row_id}", with_meta=False
        )
    except FormatError:
        raise S3Error("ObjectDamaged") from None
    chunks = list(manifest.chunks)
    meta = dict(src.meta)
    if a.chunks is not None:
        # Re-sealed by the frontend (fresh, so it read exactly ``src``).
        if not fresh:
            raise S3Error("InternalError", message="copy chunks without the version read")
        meta.pop("sse", None)
        if a.sse is not None:
            meta["sse"] = a.sse
        chunks = _chunk_refs(a.chunks, src.size, sealed=a.sse is not None)
    if fresh:
        # A single-part object now: no part boundaries, whole-object checksums.
        for name in ("parts", "part_checksums", "checksum_type", "checksums"):
            meta.pop(name, None)
        if src_sums:
            meta["checksums"] = src_sums
    if replace:
        for name in REPLACEABLE_META:
            meta.pop(name, None)
        meta.update({k: v for k, v in a.meta.items() if k in REPLACEABLE_META})
    # The copy is the requester's object; its ACL, lock and hold come from
    # the request (never the source's), its tags per the tagging directive.
    meta.pop("owner", None)
    with_owner(meta, a.owner)
    value = _copy_vmeta(a, src)
    version_id, ns = _insert_version(
        conn, ctx, bucket=bucket, key=key, versioning=versioning, size=src.size,
        etag=etag, meta=meta, chunks=chunks, delete_marker=False, vmeta=value,
    )  # fmt: skip
    return Copied(
        version_id=version_id if versioning == "enabled" else None,
        created_ns=ns,
        etag=etag,
        source_version_id=src.version_id if src_versioning != "unversioned" else None,
        checksums=src_sums,
    )


def _copy_vmeta(a: CopyObject, src: _Source) -> VersionMeta | None:
    """A copy's metadata: the request's, with the source's tags when the
    tagging directive is COPY (AWS's default)."""
    if a.tagging_directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", message="Unknown tagging directive.")
    value = from_init(a.vmeta, 0) or VersionMeta()
    if a.tagging_directive == "COPY":
        try:
            tags = decode_vmeta(src.vmeta, path=f"meta.db:versions/{src.row_id}").tags
        except FormatError:
            raise S3Error("InternalError", message="malformed version metadata") from None
        value = VersionMeta(0, tags, value.acl, value.lock, value.legal_hold)
    return None if value.is_default else value


def apply_delete_objects(conn: apsw.Connection, ctx: BatchContext, a: DeleteObjects) -> DeletedMany:
    """DeleteObjects: each ``[key, version_id | None]`` deleted exactly as
    DeleteObject would, under its own savepoint; a key's ``S3Error`` becomes
    its error entry and leaves the others alone."""
    bucket = a.bucket
    bucket_versioning(conn, bucket)  # a missing bucket fails the whole request
    results: list[DeleteResult] = []
    # Empty, or aligned with ``objects``: each key's conditions, or None.
    conds = list(a.conditions) or [None] * len(a.objects)
    if len(conds) != len(a.objects):
        raise S3Error("InternalError", message="malformed DeleteObjects conditions")
    for (key, version_id), cond in zip(a.objects, conds, strict=True):
        mark = len(ctx.manifests)
        committed = dict(ctx.committed_ends)
        conn.execute("SAVEPOINT delete_objects_item")
        try:
            if version_id is None:
                r = apply_delete_object(
                    conn, ctx, DeleteObject(bucket=bucket, key=key, conditions=cond)
                )
            else:
                r = apply_delete_version(
                    conn, ctx,
                    DeleteVersion(
                        bucket=bucket, key=key, version_id=version_id, conditions=cond,
                        bypass_governance=a.bypass_governance,
                    ),
                )  # fmt: skip
            conn.execute("RELEASE delete_objects_item")
            results.append(DeleteResult(version_id=r.version_id, delete_marker=r.delete_marker))
        except (S3Error, apsw.ConstraintError) as caught:
            exc = caught if isinstance(caught, S3Error) else lock_rules.as_s3_error(caught)
            if exc is None:
                raise
            conn.execute("ROLLBACK TO delete_objects_item")
            conn.execute("RELEASE delete_objects_item")
            del ctx.manifests[mark:]
            ctx.committed_ends = committed
            results.append(DeleteResult(error=exc.code, message=exc.text))
    return DeletedMany(results=results)


APPLY: Mutations = {
    MarkDamaged: apply_mark_damaged,
    Put: apply_put,
    DeleteObject: apply_delete_object,
    DeleteVersion: apply_delete_version,
    CreateBucket: apply_create_bucket,
    DeleteBucket: apply_delete_bucket,
    CopyObject: apply_copy_object,
    DeleteObjects: apply_delete_objects,
}
