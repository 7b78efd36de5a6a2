"""Oplog retention and the tombstone horizon (docs/design-replication.md §2,
"Retention" and "Tombstone horizon"). Reads only: the writer prunes
(``seglake/writer/oplog_prune.py``) and purges (``gc_ops.py``) with them.

``settings['oplog_floor']`` is the highest seq pruning may have removed: a
cursor at the floor still continues (it needs the entries after it), one
below it gets ``410 OplogTruncated``. The newest row is never pruned (seq
is SQLite's rowid: an empty table would number from 1 again), so the floor
stays below the head.

The floor a prune may move to (``prune_target``) is the least of
- every configured push remote's acknowledged cursor (a remote we have not
  pushed to in this epoch holds it at the current floor);
- the first row younger than the retention (by HLC physical time; a
  relayed entry keeps its origin's stamp, so this is not monotone in seq
  and is searched, not bisected);
raised, whatever the remotes say, until the rows kept fit in the byte cap.
Pull-only peers leave no trace here: for them the retention is the only
promise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import apsw

from seglake.meta.schema import get_setting, open_read, query

# What a row costs besides its body: seq, stamps, op, bucket, key, uid and
# the index entries, roughly; the cap is an operator's budget, not a promise
# to the byte.
ROW_OVERHEAD: Final = 64
FLOOR_SETTING: Final = "oplog_floor"


def oplog_floor(conn: apsw.Connection) -> int:
    return int(get_setting(conn, FLOOR_SETTING) or 0)


@dataclass(frozen=True)
class OplogStats:
    rows: int
    bytes: int
    floor: int
    head: int

    def as_dict(self) -> dict[str, int]:
        return {"rows": self.rows, "bytes": self.bytes, "floor": self.floor, "head": self.head}


def oplog_stats(conn: apsw.Connection) -> OplogStats:
    """Rows and bytes (body + ``ROW_OVERHEAD`` each) the oplog holds now."""
    with conn:
        ((rows, nbytes, head),) = query(
            conn,
            "SELECT count(*), ifnull(sum(length(body)), 0) + count(*) * ?, ifnull(max(seq), 0) "
            "FROM oplog",
            (ROW_OVERHEAD,),
        )
        floor = oplog_floor(conn)
    return OplogStats(int(rows), int(nbytes), floor, int(head))


def hlc_of_ms(ms: int) -> int:
    """The smallest HLC value of wall-clock millisecond ``ms``."""
    return max(0, ms) << 16


def prune_target(
    conn: apsw.Connection,
    *,
    now_ms: int,
    retention_s: float,
    max_bytes: int,
    push_remotes: Iterable[str],
    epoch: str,
) -> int:
    """The seq to prune below (rows with seq < it go): never lower than
    the current floor + 1 (nothing to do then)."""
    with conn:
        floor = oplog_floor(conn)
        ((head,),) = query(conn, "SELECT ifnull(max(seq), 0) FROM oplog")
        head = int(head)
        target = head + 1
        for remote in push_remotes:
            rows = query(
                conn, "SELECT push_epoch, push_cursor FROM repl_remotes WHERE remote = ?", (remote,)
            )
            acked = int(rows[0][1]) if rows and rows[0][0] == epoch else floor
            target = min(target, acked + 1)
        cutoff = hlc_of_ms(now_ms - int(retention_s * 1000))
        ((young,),) = query(conn, "SELECT min(seq) FROM oplog WHERE seq > ? AND hlc >= ?",
                            (floor, cutoff))  # fmt: skip
        if young is not None:
            target = min(target, int(young))
        target = max(target, _bytes_bound(conn, floor, max_bytes))
    return int(max(min(target, head + 1), floor + 1))


def _bytes_bound(conn: apsw.Connection, floor: int, max_bytes: int) -> int:
    """The lowest seq from which the rows above the floor fit in ``max_bytes``."""
    ((total,),) = query(
        conn, "SELECT ifnull(sum(length(body)), 0) + count(*) * ? FROM oplog WHERE seq > ?",
        (ROW_OVERHEAD, floor),
    )  # fmt: skip
    excess = int(total) - max_bytes
    if excess <= 0:
        return 0
    # From the oldest row up until the excess is dropped: a scan of the rows
    # to prune, not of the whole oplog.
    dropped = 0
    for seq, size in conn.execute(
        "SELECT seq, length(body) + ? FROM oplog WHERE seq > ? ORDER BY seq", (ROW_OVERHEAD, floor)
    ):
        dropped += int(size)
        if dropped >= excess:
            return int(seq) + 1
    return 0  # unreachable: the rows summed to more than the excess


def tombstone_horizon(conn: apsw.Connection, *, now_ms: int, retention_ms: int) -> int:
    """The stamp below which a DELETED row may be purged: its deletion is
    older than the retention and no kept oplog row is as old (every
    remote that the floor waits for has it). 0 while nothing was pruned:
    the oplog may still owe someone the deletion."""
    floor = oplog_floor(conn)
    if floor <= 0:
        return 0
    ((kept,),) = query(conn, "SELECT min(hlc) FROM oplog WHERE seq > ?", (floor,))
    bound = hlc_of_ms(now_ms - retention_ms)
    return bound if kept is None else min(bound, int(kept))


def plan_prune(
    db_path: str,
    *,
    now_ms: int,
    retention_s: float,
    max_bytes: int,
    push_remotes: Iterable[str],
) -> tuple[int, OplogStats]:
    """``prune_target`` on a connection of its own (for the maintenance
    schedule), with the oplog's figures before the prune."""
    conn = open_read(db_path)
    try:
        epoch = get_setting(conn, "oplog_epoch") or ""
        target = prune_target(
            conn, now_ms=now_ms, retention_s=retention_s, max_bytes=max_bytes,
            push_remotes=push_remotes, epoch=epoch,
        )  # fmt: skip
        return target, oplog_stats(conn)
    finally:
        conn.close()


def oplog_stats_at(db_path: str) -> OplogStats:
    """``oplog_stats`` on a connection of its own (status, stats)."""
    conn = open_read(db_path)
    try:
        return oplog_stats(conn)
    finally:
        conn.close()


# The versions rows gc-run may purge, given the horizon twice (SQL
# parameters): DELETED rows whose deletion is below it, and hidden
# tombstones (unversioned DELETE) stamped below it. Above the horizon a
# remote may still send an older put of the key, which the row must beat.
PURGEABLE: Final = (
    "((state = 'DELETED' AND ifnull(state_hlc, hlc) < ?) "
    "OR (tombstone = 1 AND state != 'DELETED' AND hlc < ?))"
)
