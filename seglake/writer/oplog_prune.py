"""Oplog pruning in the writer (docs/design-replication.md §2, "Retention";
the floor is chosen by ``seglake/meta/oplog_horizon.py``).

One call deletes a bounded run of rows from the floor up, in one
transaction with the floor it moves, so a reader never sees rows gone
without the floor saying so. The newest ``vmeta`` row of each uid is kept
(below the floor, where no page serves it): ``repl_ops`` merges a later
entry against the version's metadata stamps it reads from there, and
without it an older value arriving late would win. A kept row is never
scanned again: each call starts above the floor. The newest row is never
pruned (see below).
"""

from __future__ import annotations

from typing import Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import ReplPruned, ReplPruneOplog
from seglake.meta.oplog_horizon import FLOOR_SETTING, oplog_floor
from seglake.meta.schema import query, set_setting
from seglake.writer.ops import BatchContext, Mutations

MAX_PRUNE_PER_CALL: Final = 10_000


def apply_prune_oplog(conn: apsw.Connection, ctx: BatchContext, a: ReplPruneOplog) -> ReplPruned:
    if a.below < 0 or a.limit < 1:
        raise S3Error("InvalidArgument", message="prune needs below >= 0 and limit >= 1")
    floor = oplog_floor(conn)
    limit = min(a.limit, MAX_PRUNE_PER_CALL)
    # The newest row always stays: seq is SQLite's rowid (max + 1), so an
    # emptied oplog would hand out seqs again that remotes already hold.
    ((head,),) = query(conn, "SELECT ifnull(max(seq), 0) FROM oplog")
    below = min(a.below, int(head))
    rows = query(
        conn,
        "SELECT o.seq, o.uid, o.op = 'vmeta' AND NOT EXISTS (SELECT 1 FROM oplog n WHERE n.op = 'vmeta' "
        "AND n.uid = o.uid AND (n.hlc, n.site) > (o.hlc, o.site)) "
        "FROM oplog o WHERE o.seq > ? AND o.seq < ? ORDER BY o.seq LIMIT ?",
        (floor, below, limit),
    )
    doomed = [(int(seq),) for seq, _, newest_vmeta in rows if not newest_vmeta]
    conn.executemany("DELETE FROM oplog WHERE seq = ?", doomed)
    # A uid's newer value now kept replaces the one an earlier call kept.
    kept = [(str(uid), int(seq)) for seq, uid, newest_vmeta in rows if newest_vmeta]
    for uid, seq in kept:
        gone = query(conn, "SELECT seq FROM oplog WHERE op = 'vmeta' AND uid = ? AND seq < ?",
                     (uid, seq))  # fmt: skip
        conn.executemany("DELETE FROM oplog WHERE seq = ?", gone)
        doomed.extend(gone)
    more = len(rows) == limit
    new_floor = int(rows[-1][0]) if more else max(floor, below - 1)
    if new_floor != floor:
        set_setting(conn, FLOOR_SETTING, str(new_floor))
    return ReplPruned(pruned=len(doomed), floor=new_floor, more=more)


APPLY: Final[Mutations] = {ReplPruneOplog: apply_prune_oplog}
