"""Bucket lifecycle mutations, applied inside the committer's batch
transaction (the contract of ``ops.py``: each ``apply_*`` runs under its own
SAVEPOINT, raising ``S3Error`` rolls back only that mutation, nothing here
touches files).

Rules this file keeps:
- A configuration is parsed again here before it is stored, whoever sent
  it (``seglake/protocol/lifecycle.py``), and stored as the canonical XML of
  what was parsed, so ``meta.db`` only holds configurations the planner can
  read. The bucket row change reaches the bucket record through the record
  journal's triggers, so ``rebuild-index`` restores it.
- ``lifecycle_expire`` applies a plan made outside the writer (the
  maintenance process, ``seglake lifecycle-run``) on a state that may have
  changed since. Each action is re-checked here, inside the transaction,
  against the rows as they are now and the bucket's configuration as it is
  now: the key's versions are planned again (``plan_key``) and the action is
  applied only if the fresh plan still holds it for the very same version
  (same uid). So a current-version expiry applies only if that version is
  still current, a noncurrent expiry only if the version still exists and is
  noncurrent, a delete-marker removal only if the marker is still current
  and alone, an abort only if the upload still exists and is still due.
  A client write racing a run therefore never has its new version expired,
  and a plan applied twice (a crash between commit and reply, a second run)
  changes nothing the second time.
- The plan's time is never later than the writer's clock: a plan cannot act
  ahead of time by sending a time in the future.
- A current-version expiry is exactly a DeleteObject (a delete marker in a
  versioned or suspended bucket, a real delete in an unversioned one); the
  other actions are exactly DeleteObject ?versionId / AbortMultipartUpload.
- Lifecycle work is a data mutation: the quiesce gate refuses it while
  maintenance mode is on, like any client write.
"""

from __future__ import annotations

import time
from typing import Any, Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import (
    BucketLifecycleSet,
    DeleteObject,
    LifecycleAction,
    LifecycleApplied,
    LifecycleExpire,
    SetBucketLifecycle,
)
from seglake.meta.reads import version_tags
from seglake.meta.schema import query
from seglake.protocol.lifecycle import (
    Configuration,
    Version,
    configuration_xml,
    parse_configuration,
    plan_key,
    plan_upload,
)
from seglake.protocol.object_lock import is_locked
from seglake.writer import lock_rules
from seglake.writer.ops import BatchContext, Mutations, apply_delete_object, bucket_versioning

# One call applies at most this many actions, so a large plan is applied in
# several short transactions instead of one that stalls client writes.
MAX_ACTIONS_PER_CALL: Final = 500
APPLIED: Final = "applied"
VERSION_ACTIONS: Final = ("expire-current", "delete-version", "remove-marker")
ABORT_UPLOAD: Final = "abort-upload"


def apply_set_bucket_lifecycle(
    conn: apsw.Connection, ctx: BatchContext, a: SetBucketLifecycle
) -> BucketLifecycleSet:
    """``configuration`` None deletes it."""
    bucket_versioning(conn, a.bucket)  # NoSuchBucket
    stored = None
    if a.configuration is not None:
        stored = configuration_xml(parse_configuration(a.configuration.encode())).decode()
    conn.execute("UPDATE buckets SET lifecycle = ? WHERE name = ?", (stored, a.bucket))
    return BucketLifecycleSet(bucket=a.bucket)


def stored_configuration(conn: apsw.Connection, bucket: str) -> Configuration | None:
    rows = query(conn, "SELECT lifecycle FROM buckets WHERE name = ?", (bucket,))
    if not rows or rows[0][0] is None:
        return None
    return parse_configuration(str(rows[0][0]).encode())


def _versions(conn: apsw.Connection, bucket: str, key: str) -> list[Any]:
    """The key's versions that still exist, newest first:
    (row id, uid, version id, created_ns, size, delete marker, vmeta)."""
    return query(
        conn,
        "SELECT id, uid, version_id, created_ns, size, delete_marker, vmeta FROM versions "
        "WHERE bucket = ? AND key = ? AND state != 'DELETED' AND tombstone = 0 "
        "ORDER BY created_ns DESC, id DESC",
        (bucket, key),
    )


def _current_row(conn: apsw.Connection, bucket: str, key: str) -> int | None:
    rows = query(conn, "SELECT version FROM current WHERE bucket = ? AND key = ?", (bucket, key))
    return int(rows[0][0]) if rows else None


def _version_action(
    conn: apsw.Connection, ctx: BatchContext, bucket: str, cfg: Configuration,
    act: LifecycleAction, now_ns: int, day_ns: int,
) -> str:  # fmt: skip
    rows = _versions(conn, bucket, act.key)
    if not rows:
        return "skipped: the key has no versions"
    target = next((r for r in rows if str(r[1]) == act.uid), None)
    if target is None or str(target[2]) != act.version_id:
        return "skipped: the planned version no longer exists"
    if _current_row(conn, bucket, act.key) != int(rows[0][0]):
        # Every mutation keeps current = the newest version not DELETED.
        return "skipped: the key's current pointer is not its newest version"
    is_current = str(rows[0][1]) == act.uid
    if act.action == "expire-current" and (not is_current or bool(target[5])):
        return "skipped: the version is no longer current"
    if act.action == "delete-version" and is_current:
        return "skipped: the version is current again"
    if act.action == "remove-marker" and not (is_current and bool(target[5]) and len(rows) == 1):
        return "skipped: the delete marker is no longer current and alone"
    versions = [
        Version(
            version_id=str(r[2]),
            created_ns=int(r[3]),
            size=int(r[4]),
            delete_marker=bool(r[5]),
            tags=version_tags(r[6]),  # tag filters are decided on the tags as they are now
        )
        for r in rows
    ]
    fresh = plan_key(cfg, act.key, versions, now_ns, day_ns)
    if not any(f.kind == act.action and f.version_id == act.version_id for f in fresh):
        return "skipped: no rule acts on it now"
    if act.action == "delete-version":
        lock = lock_rules.version_lock(conn, int(target[0]))
        if lock is not None and is_locked(*lock, lock_rules.GUARD.now_ms, bypass=False):
            # AWS: lifecycle never removes a version Object Lock protects.
            return "skipped: the version is protected by Object Lock"
    if act.action == "expire-current":
        apply_delete_object(conn, ctx, DeleteObject(bucket=bucket, key=act.key))
    elif act.action == "delete-version":
        conn.execute("UPDATE versions SET state = 'DELETED' WHERE id = ?", (int(target[0]),))
    else:  # remove-marker: the key had nothing else, so it has nothing now
        conn.execute("UPDATE versions SET state = 'DELETED' WHERE id = ?", (int(target[0]),))
        conn.execute("DELETE FROM current WHERE bucket = ? AND key = ?", (bucket, act.key))
    return APPLIED


def _abort_upload(
    conn: apsw.Connection, bucket: str, cfg: Configuration, act: LifecycleAction,
    now_ns: int, day_ns: int,
) -> str:  # fmt: skip
    rows = query(
        conn,
        "SELECT created_ns FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?",
        (act.upload_id, bucket, act.key),
    )
    if not rows:
        return "skipped: the upload no longer exists"
    if plan_upload(cfg, act.key, int(rows[0][0]), now_ns, day_ns) is None:
        return "skipped: no rule aborts it now"
    conn.execute("DELETE FROM parts WHERE upload_id = ?", (act.upload_id,))
    conn.execute("DELETE FROM uploads WHERE upload_id = ?", (act.upload_id,))
    return APPLIED


def apply_lifecycle_expire(
    conn: apsw.Connection, ctx: BatchContext, a: LifecycleExpire
) -> LifecycleApplied:
    if len(a.actions) > MAX_ACTIONS_PER_CALL:
        raise S3Error(
            "InvalidArgument",
            message=f"lifecycle_expire takes at most {MAX_ACTIONS_PER_CALL} actions",
        )
    if a.day_ns <= 0:
        raise S3Error("InvalidArgument", message="lifecycle_expire needs a positive day length")
    bucket_versioning(conn, a.bucket)  # NoSuchBucket
    cfg = stored_configuration(conn, a.bucket)
    if cfg is None:
        return LifecycleApplied(results=["skipped: no lifecycle configuration"] * len(a.actions))
    now_ns = min(a.now_ns, time.time_ns())
    results: list[str] = []
    for act in a.actions:
        mark = len(ctx.manifests)
        committed = dict(ctx.committed_ends)
        conn.execute("SAVEPOINT lifecycle_item")
        try:
            if act.action in VERSION_ACTIONS:
                outcome = _version_action(conn, ctx, a.bucket, cfg, act, now_ns, a.day_ns)
            elif act.action == ABORT_UPLOAD:
                outcome = _abort_upload(conn, a.bucket, cfg, act, now_ns, a.day_ns)
            else:
                outcome = f"skipped: unknown action {act.action!r}"
            conn.execute("RELEASE lifecycle_item")
        except (S3Error, apsw.ConstraintError) as caught:
            exc = caught if isinstance(caught, S3Error) else lock_rules.as_s3_error(caught)
            if exc is None:
                raise
            conn.execute("ROLLBACK TO lifecycle_item")
            conn.execute("RELEASE lifecycle_item")
            del ctx.manifests[mark:]
            ctx.committed_ends = committed
            outcome = f"skipped: {exc.code}: {exc.text}"
        results.append(outcome)
    return LifecycleApplied(results=results)


APPLY: Final[Mutations] = {
    SetBucketLifecycle: apply_set_bucket_lifecycle,
    LifecycleExpire: apply_lifecycle_expire,
}
