"""Read-only queries that both the maintenance process (its schedules and
``status``) and the operator CLI (``seglake/ops/``) run on ``meta.db``.

Each opens its own read-only connection, so a caller in a worker thread or
a short-lived CLI needs nothing else; none of them writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from seglake.meta.schema import open_read, query

RECENT_RUNS: Final = 50
# mpu_gc_abort takes at most this many ids per call (the writer's admin_ops
# bound); the scheduled MPU-GC and ``seglake mpu-gc-run`` both batch by it.
ABORT_BATCH: Final = 500


def read_rows(
    db_path: Path, names: tuple[str, ...], sql: str, params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    """The rows of ``sql`` (read-only), each a dict of ``names``: one per column, in order."""
    conn = open_read(str(db_path))
    try:
        rows = query(conn, sql, params)
    finally:
        conn.close()
    return [dict(zip(names, r, strict=True)) for r in rows]


def recent_runs(db_path: Path, limit: int = RECENT_RUNS) -> list[dict[str, Any]]:
    """The last ``limit`` rows of ``ops_runs``, newest first."""
    return read_rows(
        db_path,
        ("id", "mode", "started_ns", "finished_ns", "status", "report"),
        "SELECT id, mode, started_ns, finished_ns, status, report FROM ops_runs "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    )


def expired_uploads(db_path: Path, cutoff_ns: int) -> list[dict[str, Any]]:
    """Uploads created before ``cutoff_ns`` with their part counts and bytes."""
    return read_rows(
        db_path,
        ("upload_id", "bucket", "key", "created_ns", "parts", "bytes"),
        "SELECT u.upload_id, u.bucket, u.key, u.created_ns, count(p.part_number), "
        "coalesce(sum(p.size), 0) FROM uploads u LEFT JOIN parts p "
        "ON p.upload_id = u.upload_id WHERE u.created_ns < ? "
        "GROUP BY u.upload_id ORDER BY u.created_ns",
        (cutoff_ns,),
    )
