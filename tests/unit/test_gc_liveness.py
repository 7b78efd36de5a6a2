"""The liveness rule and the GC planner, on a real (temporary) meta.db."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import apsw
import msgpack
import pytest

from seglake.config import Config
from seglake.format.manifest import ChunkRef, Manifest, encode_manifest
from seglake.meta.live_chunks import collect_live_chunks, decode_part_chunks, encode_part_chunks
from seglake.meta.schema import open_write
from seglake.ops.gc import Limits, make_plan

D1, D2, D3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
FIRST = 68  # data offset of the first record (32-byte header + 36-byte record header)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (msgpack.packb([[1, FIRST, 10, D1]]), [(1, FIRST, 10, D1)]),
        (msgpack.packb([]), []),
        (msgpack.packb([[1, FIRST, 10]]), None),  # too short
        (msgpack.packb([[1, FIRST, 10, b"short"]]), None),  # digest not 32 bytes
        (msgpack.packb([["1", FIRST, 10, D1]]), None),  # segment not an int
        (msgpack.packb({"a": 1}), None),  # not a list
        (b"\xc1", None),  # never-used msgpack byte
        (b"", None),
    ],
)
def test_decode_part_chunks(raw: bytes, expected: list[Any] | None) -> None:
    assert decode_part_chunks(raw) == expected


def test_part_chunks_round_trip() -> None:
    refs = [(3, FIRST, 5, D1), (4, 200, 7, D2)]
    assert decode_part_chunks(encode_part_chunks(refs)) == refs


def _version(
    conn: apsw.Connection,
    uid: str,
    chunks: list[ChunkRef],
    *,
    state: str = "ACTIVE",
    marker: bool = False,
    manifest: bytes | None = None,
) -> None:
    size = sum(c.length for c in chunks)
    body = manifest or encode_manifest(Manifest("b", uid, uid, size, tuple(chunks), {}))
    conn.execute(
        "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, state, "
        "delete_marker, hlc, meta, manifest) VALUES (?, 'b', ?, ?, ?, '', 1, ?, ?, 1, ?, ?)",
        (uid, uid, uid, size, state, int(marker), msgpack.packb({}), body),
    )


def _db(tmp: Path) -> apsw.Connection:
    return open_write(str(tmp / "meta.db"))


def test_liveness_counts_every_kept_reference(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    shared = ChunkRef(1, FIRST, 100, D1)
    _version(conn, "a0000000", [shared])  # ACTIVE
    _version(conn, "a0000001", [shared, ChunkRef(2, FIRST, 50, D2)], state="DAMAGED")
    _version(conn, "a0000002", [ChunkRef(3, FIRST, 70, D3)], state="DELETED")  # dead
    _version(conn, "a0000003", [], marker=True)
    conn.execute(
        "INSERT INTO uploads(upload_id, bucket, key, created_ns, meta) VALUES ('u', 'b', 'k', 1, ?)",
        (msgpack.packb({}),),
    )
    conn.execute(
        "INSERT INTO parts(upload_id, part_number, size, etag, created_ns, checksums, chunks) "
        "VALUES ('u', 1, 30, 'e', 1, ?, ?)",
        (msgpack.packb({}), encode_part_chunks([(4, FIRST, 30, D3)])),
    )
    live = collect_live_chunks(conn)
    assert live.problems == []
    assert set(live.by_segment) == {1, 2, 4}
    assert live.by_segment[1] == {(1, FIRST, 100, D1): 2}  # shared: two references
    assert live.live_bytes(1) == 100  # counted once
    assert live.live_bytes(3) == 0
    only = collect_live_chunks(conn, [2])
    assert set(only.by_segment) == {2}


def test_undecodable_reference_is_a_problem(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    _version(conn, "b0000000", [ChunkRef(1, FIRST, 10, D1)])
    _version(conn, "b0000001", [], manifest=b"SGLKMAN1 but then garbage")
    live = collect_live_chunks(conn)
    assert len(live.problems) == 1 and "b0000001" in live.problems[0]


def _segment(cfg: Config, conn: apsw.Connection, sid: int, size: int, sealed_ns: int) -> None:
    cfg.segments_dir.mkdir(parents=True, exist_ok=True)
    (cfg.segments_dir / f"{sid:016x}.seg").write_bytes(b"\0" * size)
    conn.execute(
        "INSERT INTO segments(id, state, size, committed_end, created_ns, sealed_ns) "
        "VALUES (?, 'SEALED', ?, ?, 1, ?)",
        (sid, size, size, sealed_ns),
    )


def test_plan_picks_dead_and_mostly_dead_segments(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    conn = _db(tmp_path)
    now = time.time_ns()
    for sid in (1, 2, 3, 4, 5):
        _segment(cfg, conn, sid, 1000, now - 10**9 * sid)
    _version(conn, "c0000000", [ChunkRef(2, FIRST, 100, D1)])  # segment 2: 10% live
    _version(conn, "c0000001", [ChunkRef(3, FIRST, 900, D2)])  # segment 3: 90% live
    _version(conn, "c0000002", [ChunkRef(5, FIRST, 10, D3)], state="DELETED")
    conn.close()

    gc = make_plan(cfg, Limits(), rewrite=False, now_ns=now)
    # 1 and 4 are dead; 5 is dead too but the newest id is always kept.
    assert [c.segment_id for c in gc.candidates] == [1, 4]
    assert gc.reclaim_bytes == 2000 and gc.warnings == []
    # The DELETED row is held by the tombstone horizon: no oplog prune yet.
    assert gc.deleted_versions == 0 and gc.deleted_versions_held == 1
    assert any("newest" in n for n in gc.notes)

    rw = make_plan(cfg, Limits(max_live=0.5), rewrite=True, now_ns=now)
    assert [c.segment_id for c in rw.candidates] == [1, 4, 2]  # emptiest first
    assert rw.copy_bytes == 100 and rw.reclaim_bytes == 2900

    young = make_plan(cfg, Limits(min_age_s=2.5), rewrite=False, now_ns=now)
    assert [c.segment_id for c in young.candidates] == [4]
    assert young.skipped_young == 1 and young.warnings  # segment 1 is too young

    limited = make_plan(cfg, Limits(max_segments=1), rewrite=False, now_ns=now)
    assert [c.segment_id for c in limited.candidates] == [1] and limited.skipped_limit == 1
    by_bytes = make_plan(cfg, Limits(max_bytes=1500), rewrite=False, now_ns=now)
    assert [c.segment_id for c in by_bytes.candidates] == [1]


def test_plan_warns_about_inconsistency(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    conn = _db(tmp_path)
    now = time.time_ns()
    for sid in (1, 2, 3):
        _segment(cfg, conn, sid, 1000, now)
    _version(conn, "d0000000", [ChunkRef(9, FIRST, 10, D1)])  # segment 9 has no row
    _version(conn, "d0000001", [], manifest=b"garbage")
    conn.close()
    plan = make_plan(cfg, Limits(), rewrite=False, now_ns=now)
    assert plan.blocked
    assert any("segment 9" in w for w in plan.warnings)
    assert any("liveness unknown" in w for w in plan.warnings)
