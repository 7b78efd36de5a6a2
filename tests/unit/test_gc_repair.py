"""The writer's repair of manifest rewrites interrupted by a crash."""

from __future__ import annotations

from pathlib import Path

import msgpack

from seglake.config import Config
from seglake.format.manifest import ChunkRef, Manifest, encode_manifest, manifest_path
from seglake.meta.schema import open_write
from seglake.writer.gc_ops import PENDING_SUFFIX, SegmentGC, pending_dir
from seglake.writer.segments import SegmentStore

UID_DONE = "fffffff000000001aaaaaaaa"  # committed: the database has the pending bytes
UID_LOST = "fffffff000000002bbbbbbbb"  # rolled back: the database kept the old bytes
UID_GONE = "fffffff000000003cccccccc"  # no row any more


def _manifest(uid: str, segment: int) -> bytes:
    chunk = ChunkRef(segment, 68, 4, b"\x07" * 32)
    return encode_manifest(Manifest("b", "k", uid, 4, (chunk,), {}))


def test_repair_pending(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    conn = open_write(str(cfg.db_path))
    for uid, segment in ((UID_DONE, 9), (UID_LOST, 1)):
        conn.execute(
            "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, state, "
            "hlc, meta, manifest) VALUES (?, 'b', 'k', ?, 4, '', 1, 'ACTIVE', 1, ?, ?)",
            (uid, uid, msgpack.packb({}), _manifest(uid, segment)),
        )
    conn.close()
    for uid in (UID_DONE, UID_LOST):
        path = manifest_path(cfg.manifests_dir, uid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_manifest(uid, 1))  # the old file
    pdir = pending_dir(cfg)
    pdir.mkdir(parents=True)
    for uid in (UID_DONE, UID_LOST, UID_GONE):
        (pdir / f"{uid}{PENDING_SUFFIX}").write_bytes(_manifest(uid, 9))
    (pdir / "unrelated.txt").write_bytes(b"left alone")

    gc = SegmentGC(cfg, SegmentStore(cfg), committer=None, quiesce=None)
    try:
        assert gc.repair_pending() == 1
        assert gc.repair_pending() == 0  # idempotent
    finally:
        gc.close()
    assert manifest_path(cfg.manifests_dir, UID_DONE).read_bytes() == _manifest(UID_DONE, 9)
    assert manifest_path(cfg.manifests_dir, UID_LOST).read_bytes() == _manifest(UID_LOST, 1)
    assert sorted(p.name for p in pdir.iterdir()) == ["unrelated.txt"]
