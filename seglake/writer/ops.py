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
from dataclasses import dataclass, field
from typing import Any

import apsw
import msgpack

from seglake.config import CHUNK_SIZE
from seglake.errors import S3Error
from seglake.format.manifest import ChunkRef, Manifest, encode_manifest
from seglake.meta.schema import query

VERSIONING_STATES = ("enabled", "suspended", "unversioned")
NULL_VERSION = "null"


class VersionClock:
    """Monotonic nanosecond clock for version uids and HLC values.

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
    committed_ends: dict[int, int] = field(default_factory=dict)
    manifests: list[tuple[str, bytes]] = field(default_factory=list)  # (uid, bytes)
    unlink_after_commit: list[str] = field(default_factory=list)  # uids

    def reference(self, chunks: list[ChunkRef]) -> None:
        for c in chunks:
            end = c.offset + c.length
            if end > self.committed_ends.get(c.segment_id, 0):
                self.committed_ends[c.segment_id] = end


@dataclass(frozen=True)
class Current:
    row_id: int
    version_id: str
    etag: str
    delete_marker: bool


def bucket_versioning(conn: apsw.Connection, bucket: str) -> str:
    rows = query(conn, "SELECT versioning FROM buckets WHERE name = ?", (bucket,))
    if not rows:
        raise S3Error("NoSuchBucket", resource=bucket, fields={"BucketName": bucket})
    return str(rows[0][0])


def current_version(conn: apsw.Connection, bucket: str, key: str) -> Current | None:
    rows = query(
        conn,
        "SELECT v.id, v.version_id, v.etag, v.delete_marker FROM current c "
        "JOIN versions v ON v.id = c.version WHERE c.bucket = ? AND c.key = ?",
        (bucket, key),
    )
    if not rows:
        return None
    r = rows[0]
    return Current(int(r[0]), str(r[1]), str(r[2]), bool(r[3]))


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
) -> tuple[str, int]:
    ns = ctx.clock.tick()
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
    manifest_meta = dict(meta)
    manifest_meta.update(
        etag=etag, created_ns=ns, delete_marker=delete_marker, s3_version_id=version_id
    )
    manifest = encode_manifest(Manifest(bucket, key, uid, size, tuple(chunks), manifest_meta))
    conn.execute(
        "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, state, "
        "delete_marker, hlc, meta, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?)",
        (
            uid, bucket, key, version_id, size, etag, ns, int(delete_marker), ns,
            msgpack.packb(meta, use_bin_type=True), manifest,
        ),
    )  # fmt: skip
    row_id = conn.last_insert_rowid()
    conn.execute(
        "INSERT INTO current(bucket, key, version) VALUES (?, ?, ?) "
        "ON CONFLICT(bucket, key) DO UPDATE SET version = excluded.version",
        (bucket, key, row_id),
    )
    ctx.manifests.append((uid, manifest))
    ctx.reference(chunks)
    return version_id, ns


def _chunk_refs(raw: Any, size: int) -> list[ChunkRef]:
    if not isinstance(raw, list):
        raise S3Error("InternalError", message="malformed chunk list")
    refs = []
    total = 0
    for item in raw:
        seg, off, length, digest = item
        if not (isinstance(digest, bytes) and len(digest) == 32 and 0 < length <= CHUNK_SIZE):
            raise S3Error("InternalError", message="malformed chunk reference")
        refs.append(ChunkRef(int(seg), int(off), int(length), digest))
        total += length
    if total != size:
        raise S3Error("InternalError", message="chunk lengths do not add up to the object size")
    return refs


def apply_put(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, key = a["bucket"], a["key"]
    versioning = bucket_versioning(conn, bucket)
    cur = current_version(conn, bucket, key)
    live = cur is not None and not cur.delete_marker
    if a.get("if_none_match") and live:
        raise S3Error("PreconditionFailed", fields={"Condition": "If-None-Match"})
    if_match = a.get("if_match")
    if if_match is not None:
        if not live:
            raise S3Error("NoSuchKey", resource=key, fields={"Key": key})
        assert cur is not None
        if if_match != "*" and if_match.strip('"') != cur.etag:
            raise S3Error("PreconditionFailed", fields={"Condition": "If-Match"})
    chunks = _chunk_refs(a["chunks"], int(a["size"]))
    version_id, ns = _insert_version(
        conn, ctx, bucket=bucket, key=key, versioning=versioning, size=int(a["size"]),
        etag=str(a["etag"]), meta=dict(a.get("meta") or {}), chunks=chunks, delete_marker=False,
    )  # fmt: skip
    return {
        "version_id": version_id if versioning != "unversioned" else None,
        "created_ns": ns,
    }


def apply_delete_object(
    conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]
) -> dict[str, Any]:
    bucket, key = a["bucket"], a["key"]
    versioning = bucket_versioning(conn, bucket)
    if versioning == "unversioned":
        cur = current_version(conn, bucket, key)
        if cur is not None:
            conn.execute("UPDATE versions SET state = 'DELETED' WHERE id = ?", (cur.row_id,))
            conn.execute("DELETE FROM current WHERE bucket = ? AND key = ?", (bucket, key))
        return {"version_id": None, "delete_marker": False}
    version_id, _ = _insert_version(
        conn, ctx, bucket=bucket, key=key, versioning=versioning, size=0,
        etag="", meta={}, chunks=[], delete_marker=True,
    )  # fmt: skip
    return {"version_id": version_id, "delete_marker": True}


def apply_delete_version(
    conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]
) -> dict[str, Any]:
    """DELETE ?versionId=: remove exactly that version (or marker) for good.

    If it was current, the newest remaining version becomes current. The
    row stays as DELETED (its manifest and chunks are GC's to reclaim).
    Deleting a version that does not exist succeeds, as in S3.
    """
    bucket, key, version_id = a["bucket"], a["key"], a["version_id"]
    bucket_versioning(conn, bucket)
    rows = query(
        conn,
        "SELECT id, delete_marker FROM versions WHERE bucket = ? AND key = ? "
        "AND version_id = ? AND state != 'DELETED'",
        (bucket, key, version_id),
    )
    if not rows:
        return {"version_id": version_id, "delete_marker": False}
    row_id, marker = int(rows[0][0]), bool(rows[0][1])
    conn.execute("UPDATE versions SET state = 'DELETED' WHERE id = ?", (row_id,))
    cur = current_version(conn, bucket, key)
    if cur is not None and cur.row_id == row_id:
        newest = query(
            conn,
            "SELECT id FROM versions WHERE bucket = ? AND key = ? AND state != 'DELETED' "
            "ORDER BY created_ns DESC LIMIT 1",
            (bucket, key),
        )
        if newest:
            conn.execute(
                "UPDATE current SET version = ? WHERE bucket = ? AND key = ?",
                (int(newest[0][0]), bucket, key),
            )
        else:
            conn.execute("DELETE FROM current WHERE bucket = ? AND key = ?", (bucket, key))
    return {"version_id": version_id, "delete_marker": marker}


def apply_create_bucket(
    conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]
) -> dict[str, Any]:
    name, versioning = a["bucket"], a["versioning"]
    if versioning not in ("enabled", "unversioned"):
        raise S3Error("InvalidArgument", message="x-seglake-versioning must be enabled|unversioned")
    exists = query(conn, "SELECT 1 FROM buckets WHERE name = ?", (name,))
    if exists:
        # us-east-1 semantics: re-creating your own bucket succeeds.
        return {"created": False}
    conn.execute(
        "INSERT INTO buckets(name, created_ns, versioning) VALUES (?, ?, ?)",
        (name, ctx.clock.tick(), versioning),
    )
    return {"created": True}


def apply_delete_bucket(
    conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]
) -> dict[str, Any]:
    name = a["bucket"]
    bucket_versioning(conn, name)
    # Delete markers do not count (seed rule); any stored data does, current
    # or not, so deleting a bucket never destroys a version.
    data = conn.execute(
        "SELECT 1 FROM versions WHERE bucket = ? AND delete_marker = 0 AND state != 'DELETED' "
        "LIMIT 1",
        (name,),
    ).fetchall()
    if data:
        raise S3Error("BucketNotEmpty", resource=name, fields={"BucketName": name})
    markers = query(
        conn, "SELECT uid FROM versions WHERE bucket = ? AND delete_marker = 1", (name,)
    )
    ctx.unlink_after_commit.extend(str(r[0]) for r in markers)
    conn.execute("DELETE FROM current WHERE bucket = ?", (name,))
    conn.execute("DELETE FROM versions WHERE bucket = ? AND delete_marker = 1", (name,))
    conn.execute("DELETE FROM buckets WHERE name = ?", (name,))
    return {}


def apply_mark_damaged(
    conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]
) -> dict[str, Any]:
    """A reader found a chunk or manifest that fails its checksum."""
    conn.execute(
        "UPDATE versions SET state = 'DAMAGED' WHERE uid = ? AND state = 'ACTIVE'", (a["uid"],)
    )
    return {}


APPLY = {
    "mark_damaged": apply_mark_damaged,
    "put": apply_put,
    "delete_object": apply_delete_object,
    "delete_version": apply_delete_version,
    "create_bucket": apply_create_bucket,
    "delete_bucket": apply_delete_bucket,
}
