"""Per-version metadata and bucket settings, applied inside the committer's
batch transaction (the contract of ``ops.py``: each ``apply_*`` runs under
its own SAVEPOINT, raising ``S3Error`` rolls back only that mutation,
nothing here touches files).

Rules this file keeps (docs/design-version-metadata.md §1):
- ``versions.vmeta`` holds a version's whole mutable metadata
  (``seglake/format/vmeta.py``) and the columns ``tag_count``,
  ``lock_mode``, ``lock_until_ms``, ``legal_hold`` mirror it; every write
  here sets all five together (``vmeta_columns``).
- No record is written here: the record journal's triggers see the changed
  columns and append a version-meta record (type 4) with the row's value
  before the batch's flush (``record_journal.py``), and a bucket record for
  a changed bucket row.
- Which version "latest" means is decided here, inside the transaction,
  and the reply names it. A delete marker has no metadata: addressed by
  version id it is 405 MethodNotAllowed, as the current version it is
  NoSuchKey (as GET answers).
- Object-lock checks go through ``lock_rules.check_lock_change`` (owned by
  the object-lock work) before anything is written.
- The frontend has checked syntax and limits (tag counts, lengths,
  duplicates) and authorisation; the writer decides what depends on stored
  state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import apsw
import msgspec

from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.vmeta import Lock, VersionMeta, decode_vmeta
from seglake.ipc.messages import (
    BUCKET_CONFIG_FIELDS,
    BucketConfigSet,
    SetBucketConfig,
    SetVersionMeta,
    VersionMetaInit,
    VersionMetaSet,
)
from seglake.meta.schema import query
from seglake.protocol.object_lock import MISSING_CONFIG_MSG
from seglake.writer import lock_rules
from seglake.writer.ops import BatchContext, Mutations, bucket_versioning, vmeta_columns


def encode_init(init: VersionMetaInit | None) -> bytes | None:
    """``uploads.vmeta``: the creation-time metadata of a multipart upload,
    given to the version CompleteUpload makes."""
    if init is None:
        return None
    return msgspec.msgpack.encode(init)


def decode_init(blob: bytes | None) -> VersionMetaInit | None:
    if blob is None:
        return None
    try:
        return msgspec.msgpack.decode(blob, type=VersionMetaInit)
    except msgspec.DecodeError:
        raise S3Error("InternalError", message="malformed upload metadata") from None


def stored_value(blob: bytes | None, where: str) -> VersionMeta:
    try:
        return decode_vmeta(blob, path=where)
    except FormatError:
        raise S3Error("InternalError", message=f"malformed version metadata ({where})") from None


@dataclass(frozen=True)
class _Target:
    row_id: int
    uid: str
    version_id: str
    vmeta: bytes | None


def _target(conn: apsw.Connection, bucket: str, key: str, version_id: str | None) -> _Target:
    """The version a metadata request addresses (see the rules at the top)."""
    bucket_versioning(conn, bucket)  # NoSuchBucket
    cols = "v.id, v.uid, v.version_id, v.delete_marker, v.vmeta, v.state"
    if version_id is None:
        rows = query(
            conn,
            f"SELECT {cols} FROM current c JOIN versions v ON v.id = c.version "
            "WHERE c.bucket = ? AND c.key = ?",
            (bucket, key),
        )
        if not rows or rows[0][5] == "DELETED" or rows[0][3]:
            raise S3Error("NoSuchKey", resource=key, fields={"Key": key})
    else:
        rows = query(
            conn,
            f"SELECT {cols} FROM versions v WHERE v.bucket = ? AND v.key = ? "
            "AND v.version_id = ? AND v.state != 'DELETED' AND v.tombstone = 0 "
            "ORDER BY v.id DESC LIMIT 1",
            (bucket, key, version_id),
        )
        if not rows:
            raise S3Error(
                "NoSuchVersion", resource=key, fields={"Key": key, "VersionId": version_id}
            )
        if rows[0][3]:
            raise S3Error(
                "MethodNotAllowed",
                resource=key,
                headers={
                    "x-amz-delete-marker": "true",
                    "x-amz-version-id": version_id,
                    "Allow": "DELETE",
                },
            )
    r = rows[0]
    return _Target(int(r[0]), str(r[1]), str(r[2]), r[4])


def apply_set_version_meta(
    conn: apsw.Connection, ctx: BatchContext, a: SetVersionMeta
) -> VersionMetaSet:
    target = _target(conn, a.bucket, a.key, a.version_id)
    old = stored_value(target.vmeta, f"meta.db:versions/{target.row_id}")
    new = old
    if not isinstance(a.tags, msgspec.UnsetType):
        new = replace(new, tags=tuple((str(k), str(v)) for k, v in a.tags))
    if not isinstance(a.acl, msgspec.UnsetType):
        new = replace(new, acl=a.acl)
    locking = not isinstance(a.retention, msgspec.UnsetType) or not isinstance(
        a.legal_hold, msgspec.UnsetType
    )
    if locking and lock_rules.bucket_lock_config(conn, a.bucket) is None:
        raise S3Error("InvalidRequest", message=MISSING_CONFIG_MSG)
    if not isinstance(a.retention, msgspec.UnsetType):
        retention = a.retention
        # The one place object-lock rules decide a retention change.
        lock_rules.check_lock_change(
            None if old.lock is None else old.lock.mode,
            None if old.lock is None else old.lock.until_ms,
            retention,
            bypass=a.bypass_governance,
            key=a.key,
        )
        new = replace(
            new, lock=None if retention is None else Lock(retention.mode, retention.until_ms)
        )
    if not isinstance(a.legal_hold, msgspec.UnsetType):
        new = replace(new, legal_hold=a.legal_hold)
    # Every change gets a new rev, even one back to defaults (a later value
    # must win over an earlier one wherever the two meet, §2).
    new = replace(new, rev=ctx.clock.tick())
    # The backstop triggers honour GOVERNANCE bypass only inside this block.
    with lock_rules.GUARD.bypassing(a.bypass_governance):
        conn.execute(
            "UPDATE versions SET vmeta = ?, tag_count = ?, lock_mode = ?, lock_until_ms = ?, "
            "legal_hold = ? WHERE id = ?",
            (*vmeta_columns(new), target.row_id),
        )
    return VersionMetaSet(version_id=target.version_id, uid=target.uid)


def apply_set_bucket_config(
    conn: apsw.Connection, ctx: BatchContext, a: SetBucketConfig
) -> BucketConfigSet:
    """Store one bucket setting as given (None deletes it); its bucket
    record follows through the journal's triggers."""
    if a.field not in BUCKET_CONFIG_FIELDS:
        raise S3Error("InternalError", message=f"unknown bucket setting {a.field!r}")
    bucket_versioning(conn, a.bucket)  # NoSuchBucket
    if a.field == "object_lock":
        # Never removed; only on a versioning-enabled bucket.
        lock_rules.check_bucket_lock_config(conn, a.bucket, a.value)
    # The column name comes from the fixed tuple above, never from the peer.
    column = BUCKET_CONFIG_FIELDS[BUCKET_CONFIG_FIELDS.index(a.field)]
    conn.execute(f"UPDATE buckets SET {column} = ? WHERE name = ?", (a.value, a.bucket))
    return BucketConfigSet(bucket=a.bucket, field=a.field)


APPLY: Final[Mutations] = {
    SetVersionMeta: apply_set_version_meta,
    SetBucketConfig: apply_set_bucket_config,
}
