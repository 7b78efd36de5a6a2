"""What the bucket lifecycle rules would do now: read-only, from ``meta.db``.

Rules this file keeps:
- Planning only reads (its own read-only connection per step, never held
  across a wait), so it runs beside clients and the writer at any time.
- A plan is a function of the rows and the configurations at the moment it
  is made; nothing remembers an earlier plan. A run that died half-way is
  resumed by planning again: what was done is no longer planned (a version
  already expired is not current any more, a deleted one is gone), and the
  writer re-checks every action anyway (``writer/lifecycle_ops.py``).
- Keys are planned in bounded batches in key order (keyset, never OFFSET),
  so memory does not grow with the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import LifecycleAction
from seglake.meta.reads import version_tags
from seglake.meta.schema import open_read, query
from seglake.protocol.lifecycle import Configuration, Version, parse_configuration, plan_key
from seglake.protocol.lifecycle import plan_upload as plan_one_upload

# Keys read per planning step: enough to fill a writer batch or two.
KEYS_PER_STEP: Final = 500


@dataclass(frozen=True)
class BucketRules:
    bucket: str
    configuration: Configuration | None  # None: the stored XML does not parse
    error: str = ""


def lifecycle_buckets(db_path: Path, only: str | None = None) -> list[BucketRules]:
    """Every bucket with a lifecycle configuration (or just ``only``)."""
    conn = open_read(str(db_path))
    try:
        rows = query(
            conn, "SELECT name, lifecycle FROM buckets WHERE lifecycle IS NOT NULL ORDER BY name"
        )
    finally:
        conn.close()
    out = []
    for name, text in rows:
        if only is not None and name != only:
            continue
        try:
            out.append(BucketRules(str(name), parse_configuration(str(text).encode())))
        except S3Error as exc:  # the writer stores only what parses; report, never crash
            out.append(BucketRules(str(name), None, error=exc.text))
    return out


def _key_batch(conn: apsw.Connection, bucket: str, after: str | None) -> list[str]:
    if after is None:
        rows = query(
            conn,
            "SELECT DISTINCT key FROM versions WHERE bucket = ? ORDER BY key LIMIT ?",
            (bucket, KEYS_PER_STEP),
        )
    else:
        rows = query(
            conn,
            "SELECT DISTINCT key FROM versions WHERE bucket = ? AND key > ? ORDER BY key LIMIT ?",
            (bucket, after, KEYS_PER_STEP),
        )
    return [str(r[0]) for r in rows]


def plan_keys(
    db_path: Path, bucket: str, cfg: Configuration, now_ns: int, day_ns: int, after: str | None
) -> tuple[list[LifecycleAction], str | None]:
    """The actions for the next ``KEYS_PER_STEP`` keys after ``after``, and
    where the step after starts (None: the bucket is done)."""
    conn = open_read(str(db_path))
    try:
        conn.execute("BEGIN")  # one snapshot for the step
        try:
            keys = _key_batch(conn, bucket, after)
            if not keys:
                return [], None
            rows = query(
                conn,
                "SELECT key, uid, version_id, created_ns, size, delete_marker, vmeta FROM versions "
                "WHERE bucket = ? AND key >= ? AND key <= ? AND state != 'DELETED' AND tombstone = 0 "
                "ORDER BY key, created_ns DESC, id DESC",
                (bucket, keys[0], keys[-1]),
            )
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    actions: list[LifecycleAction] = []
    for key, versions in _by_key(rows):
        uids = {v.version_id: uid for v, uid in versions}
        for a in plan_key(cfg, key, [v for v, _ in versions], now_ns, day_ns):
            actions.append(
                LifecycleAction(
                    key=key, action=a.kind, rule_id=a.rule_id, version_id=a.version_id,
                    uid=uids[a.version_id],
                )
            )  # fmt: skip
    return actions, keys[-1] if len(keys) == KEYS_PER_STEP else None


def _by_key(rows: list[Any]) -> Iterator[tuple[str, list[tuple[Version, str]]]]:
    key: str | None = None
    group: list[tuple[Version, str]] = []
    for k, uid, version_id, created_ns, size, marker, vmeta in rows:
        if k != key:
            if key is not None:
                yield key, group
            key, group = str(k), []
        v = Version(
            version_id=str(version_id), created_ns=int(created_ns), size=int(size),
            delete_marker=bool(marker), tags=version_tags(vmeta),
        )  # fmt: skip
        group.append((v, str(uid)))
    if key is not None:
        yield key, group


def plan_uploads(
    db_path: Path, bucket: str, cfg: Configuration, now_ns: int, day_ns: int
) -> list[LifecycleAction]:
    """AbortIncompleteMultipartUpload: the bucket's uploads a rule aborts now."""
    if not any(r.abort_mpu_days is not None for r in cfg.rules):
        return []
    conn = open_read(str(db_path))
    try:
        rows = query(
            conn,
            "SELECT upload_id, key, created_ns FROM uploads WHERE bucket = ? ORDER BY upload_id",
            (bucket,),
        )
    finally:
        conn.close()
    out = []
    for upload_id, key, created_ns in rows:
        rule = plan_one_upload(cfg, str(key), int(created_ns), now_ns, day_ns)
        if rule is not None:
            out.append(
                LifecycleAction(
                    key=str(key), action="abort-upload", rule_id=rule, upload_id=str(upload_id)
                )
            )
    return out


def plan_bucket(
    db_path: Path, rules: BucketRules, now_ns: int, day_ns: int
) -> Iterator[list[LifecycleAction]]:
    """The bucket's whole plan, one planning step at a time (synchronous)."""
    if rules.configuration is None:
        return
    after: str | None = None
    while True:
        actions, after = plan_keys(
            db_path, rules.bucket, rules.configuration, now_ns, day_ns, after
        )
        if actions:
            yield actions
        if after is None:
            break
    uploads = plan_uploads(db_path, rules.bucket, rules.configuration, now_ns, day_ns)
    if uploads:
        yield uploads


def action_doc(bucket: str, a: LifecycleAction) -> dict[str, str]:
    """One action as ``seglake lifecycle-plan --json`` prints it."""
    doc = {"bucket": bucket, "key": a.key, "action": a.action, "rule_id": a.rule_id}
    if a.action == "abort-upload":
        doc["upload_id"] = a.upload_id
    else:
        doc["version_id"] = a.version_id
    return doc
