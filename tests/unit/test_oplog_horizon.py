"""Oplog retention and the tombstone horizon (seglake/meta/oplog_horizon.py,
seglake/writer/oplog_prune.py): which floor a prune may reach, what one
writer call deletes, and when a DELETED row may go. The rows are real
meta.db rows; the prune runs through an embedded writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw

from seglake.config import Config
from seglake.ipc.messages import ReplPruned, ReplPruneOplog, ReplSetPushCursor
from seglake.meta import oplog_horizon as oh
from seglake.meta.schema import get_setting
from tests.unit._embedded import apply_all as _run

SITE = "a1" * 8
DAY_MS = 86_400_000
NOW_MS = 1_800_000_000_000
PUSH = "http://127.0.0.1:9"


def _store(tmp_path: Path) -> Config:
    cfg = Config(data_dir=str(tmp_path))
    _run(cfg, [])  # creates and migrates meta.db
    return cfg


def _add(cfg: Config, rows: list[tuple[int, int, str, str | None, int]]) -> None:
    """(seq, physical ms, op, uid, body bytes) rows of this site."""
    conn = apsw.Connection(str(cfg.db_path))
    try:
        with conn:
            for seq, ms, op, uid, size in rows:
                conn.execute(
                    "INSERT INTO oplog(seq, hlc, site, op, bucket, key, uid, body) "
                    "VALUES (?, ?, ?, ?, 'b', 'k', ?, ?)",
                    (seq, (ms << 16) | seq, SITE, op, uid, b"x" * size),
                )
    finally:
        conn.close()


def _read(cfg: Config, fn: Any) -> Any:
    conn = apsw.Connection(str(cfg.db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return fn(conn)
    finally:
        conn.close()


def _seqs(cfg: Config) -> list[int]:
    return _read(
        cfg, lambda c: [int(r[0]) for r in c.execute("SELECT seq FROM oplog ORDER BY seq")]
    )


def _target(cfg: Config, *, retention_days: float = 1, max_bytes: int = 1 << 30,
            push: tuple[str, ...] = ()) -> int:  # fmt: skip
    def fn(conn: apsw.Connection) -> int:
        epoch = get_setting(conn, "oplog_epoch") or ""
        return oh.prune_target(
            conn, now_ms=NOW_MS, retention_s=retention_days * 86400, max_bytes=max_bytes,
            push_remotes=push, epoch=epoch,
        )  # fmt: skip

    result: int = _read(cfg, fn)
    return result


def test_target_is_the_retention_the_push_cursors_and_the_byte_cap(tmp_path: Path) -> None:
    cfg = _store(tmp_path)
    # Seqs 1..6 two days old, 7..10 young; 100-byte bodies.
    _add(cfg, [(s, NOW_MS - 2 * DAY_MS, "state", f"u{s}", 100) for s in range(1, 7)]
         + [(s, NOW_MS - 1000, "state", f"u{s}", 100) for s in range(7, 11)])  # fmt: skip
    assert _target(cfg) == 7  # rows 1..6 are older than a day
    assert _target(cfg, retention_days=3) == 1  # nothing is old enough
    assert _target(cfg, retention_days=0) == 11  # everything
    # A push remote never acknowledged in this epoch holds the floor.
    assert _target(cfg, push=(PUSH,)) == 1
    epoch = _read(cfg, lambda c: get_setting(c, "oplog_epoch"))
    _run(cfg, [ReplSetPushCursor(remote=PUSH, epoch=epoch, cursor=3)])
    assert _target(cfg, push=(PUSH,)) == 4
    _run(cfg, [ReplSetPushCursor(remote=PUSH, epoch="other", cursor=9)])
    assert _target(cfg, push=(PUSH,)) == 1
    # The byte cap overrides the remote and the retention: 10 rows of
    # 100 + overhead; keeping at most 4 of them.
    cap = 4 * (100 + oh.ROW_OVERHEAD)
    assert _target(cfg, push=(PUSH,), retention_days=3, max_bytes=cap) == 7
    assert _target(cfg, max_bytes=cap + 1) == 7
    assert _target(cfg, max_bytes=cap - 1) == 8


def test_prune_moves_the_floor_in_batches_and_keeps_the_newest_vmeta(tmp_path: Path) -> None:
    cfg = _store(tmp_path)
    old = NOW_MS - 2 * DAY_MS
    _add(cfg, [(1, old, "vmeta", "v1", 10), (2, old, "state", "s2", 10),
               (3, old, "vmeta", "v1", 10), (4, old, "vmeta", "v2", 10),
               (5, old, "state", "s5", 10), (6, old, "state", "s6", 10),
               (7, NOW_MS, "vmeta", "v2", 10)])  # fmt: skip
    out = _run(cfg, [ReplPruneOplog(below=7, limit=4), ReplPruneOplog(below=7, limit=4)])
    # First call: seqs 1..4 scanned; 1 (v1, older), 2 and 4 (v2 has the newer
    # 7) go; 3, v1's newest, stays; the floor is the last seq scanned.
    assert out[0] == ReplPruned(pruned=3, floor=4, more=True)
    assert out[1] == ReplPruned(pruned=2, floor=6, more=False)
    assert _seqs(cfg) == [3, 7]
    assert _read(cfg, oh.oplog_floor) == 6
    stats = _read(cfg, oh.oplog_stats)
    assert (stats.rows, stats.bytes, stats.floor, stats.head) == (2, 2 * (10 + 64), 6, 7)
    # A newer value of v1 arrives and is pruned in turn: it is kept as v1's
    # newest and the one kept before it goes.
    _add(cfg, [(8, NOW_MS, "vmeta", "v1", 10), (9, NOW_MS, "state", "s9", 10)])
    out = _run(cfg, [ReplPruneOplog(below=10), ReplPruneOplog(below=3),
                     ReplPruneOplog(below=-1)])  # fmt: skip
    assert out[0] == ReplPruned(pruned=1, floor=8, more=False)
    assert out[1] == ReplPruned(pruned=0, floor=8, more=False)  # never moves back
    assert out[2] == "InvalidArgument"
    assert _seqs(cfg) == [7, 8, 9]  # 9, the newest row, is never pruned


def test_tombstone_horizon(tmp_path: Path) -> None:
    cfg = _store(tmp_path)
    _add(cfg, [(1, NOW_MS - 3 * DAY_MS, "state", "a", 1), (2, NOW_MS - 2 * DAY_MS, "state", "b", 1),
               (3, NOW_MS - 1000, "state", "c", 1)])  # fmt: skip

    def horizon(retention_ms: int) -> int:
        result: int = _read(
            cfg, lambda c: oh.tombstone_horizon(c, now_ms=NOW_MS, retention_ms=retention_ms)
        )
        return result

    assert horizon(0) == 0  # nothing pruned yet: the oplog may still owe it
    _run(cfg, [ReplPruneOplog(below=2)])
    # Below the oldest kept row (seq 2), and older than the retention.
    assert horizon(0) == ((NOW_MS - 2 * DAY_MS) << 16) | 2
    assert horizon(3 * DAY_MS) == (NOW_MS - 3 * DAY_MS) << 16
    # The newest row is never pruned: seqs must never be handed out again.
    assert _run(cfg, [ReplPruneOplog(below=4)]) == [ReplPruned(pruned=1, floor=2, more=False)]
    assert _seqs(cfg) == [3]
    assert horizon(0) == ((NOW_MS - 1000) << 16) | 3
    assert horizon(DAY_MS) == (NOW_MS - DAY_MS) << 16
