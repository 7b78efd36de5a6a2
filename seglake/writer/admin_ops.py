"""Mutations the operator's toolbox sends to the writer: MPU-GC and db-reindex.

Like every mutation they run inside the committer's batch transaction under
a savepoint (contract in ``ops.py``) and touch no file. They are maintenance
work, so the quiesce gate lets them through (``INTERNAL``): MPU-GC and
reindexing are exactly what an operator runs while the store is quiesced.

- ``mpu_gc_abort``: abort the uploads created before a cutoff. The cutoff is
  re-checked here, inside the transaction, so an upload the plan listed but
  that is younger than the cutoff (clock skew between plan and run) is never
  touched. Parts' chunks become dead data for the segment GC.
- ``db_reindex``: ``REINDEX`` + ``ANALYZE`` on the writer's own connection,
  so it needs no second writer and commits like any batch.
"""

from __future__ import annotations

from typing import Any, Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import DbReindex, MpuGcAbort, MpuGcAborted, Reindexed
from seglake.writer.ops import BatchContext, Mutations

# One mutation aborts at most this many uploads, so a huge backlog is
# aborted in several batches instead of one long transaction that would
# stall every client write behind it.
MAX_ABORTS_PER_CALL: Final = 500


def apply_mpu_gc_abort(conn: apsw.Connection, ctx: BatchContext, a: MpuGcAbort) -> MpuGcAborted:
    """Abort the listed uploads that are older than the cutoff."""
    ids, cutoff = a.upload_ids, a.cutoff_ns
    if len(ids) > MAX_ABORTS_PER_CALL:
        raise S3Error(
            "InvalidArgument",
            message=f"mpu_gc_abort takes at most {MAX_ABORTS_PER_CALL} upload ids",
        )
    aborted: list[str] = []
    parts = 0
    for upload_id in ids:
        rows: list[Any] = conn.execute(
            "SELECT created_ns FROM uploads WHERE upload_id = ?", (upload_id,)
        ).fetchall()
        if not rows or int(rows[0][0]) >= cutoff:
            continue
        counted: list[Any] = conn.execute(
            "SELECT count(*) FROM parts WHERE upload_id = ?", (upload_id,)
        ).fetchall()
        parts += int(counted[0][0])
        conn.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        aborted.append(upload_id)
    return MpuGcAborted(aborted=aborted, parts=parts)


def apply_db_reindex(conn: apsw.Connection, ctx: BatchContext, a: DbReindex) -> Reindexed:
    """Rebuild every index and refresh the planner's statistics."""
    conn.execute("REINDEX")
    conn.execute("ANALYZE")
    indexes: list[Any] = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
    ).fetchall()
    return Reindexed(indexes=int(indexes[0][0]))


APPLY: Final[Mutations] = {
    MpuGcAbort: apply_mpu_gc_abort,
    DbReindex: apply_db_reindex,
}

INTERNAL: Final = frozenset(t.name for t in APPLY)
