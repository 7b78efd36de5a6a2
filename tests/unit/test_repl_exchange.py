"""Three stores exchanging their oplogs in-process (design §9 step 3): each
writes locally through its embedded writer, pages of one store's oplog
(``meta/repl_reads.oplog_page``) are applied to another with ``ReplApply``,
and after the exchange every store holds the same rows, states and current
versions. Store C pulls only from B, so A's writes reach it relayed.

Objects are empty (no chunks): moving chunk bytes is the pull loop's part
(seglake/repl/), not the apply's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import msgspec
import trio

from seglake.config import Config
from seglake.ipc.messages import (
    CreateBucket,
    DeleteObject,
    DeleteVersion,
    Put,
    ReplApplied,
    ReplApply,
    Request,
    SetBucketConfig,
)
from seglake.meta import repl_reads
from seglake.meta.schema import query
from seglake.writer.embedded import EmbeddedWriter, run_embedded

PAGE = 3  # small pages, so a pull takes several batches


class Store:
    def __init__(self, root: Path, name: str) -> None:
        (root / name).mkdir()
        self.cfg = Config(data_dir=str(root / name))
        self.cursors: dict[str, tuple[str, int]] = {}
        self.do([])  # start once: migration, site id, oplog epoch
        self.site = self.read(repl_reads.site_id)

    def do(self, msgs: list[Request[Any]]) -> list[Any]:
        async def work(w: EmbeddedWriter) -> list[Any]:
            return [await w.apply(m) for m in msgs]

        out: list[Any] = trio.run(run_embedded, self.cfg, "test", work)
        return out

    def read(self, fn: Any, *args: Any) -> Any:
        conn = apsw.Connection(str(self.cfg.db_path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return fn(conn, *args)
        finally:
            conn.close()

    def pull_from(self, other: Store) -> int:
        """Pull everything ``other`` has past this store's cursor; the number
        of entries applied."""
        applied = 0
        for _ in range(200):
            epoch, since = self.cursors.get(other.site, ("", 0))
            page = other.read(repl_reads.oplog_page, since, PAGE, self.site)
            if page.epoch != epoch:
                since = 0
                page = other.read(repl_reads.oplog_page, 0, PAGE, self.site)
            batch = ReplApply(
                remote=f"site:{other.site}", direction="pull", epoch=page.epoch,
                from_seq=since, to_seq=page.next,
                entries=[list(msgspec.structs.astuple(e)) for e in page.entries],
                remote_site=other.site,
            )  # fmt: skip
            (reply,) = self.do([batch])
            assert isinstance(reply, ReplApplied) and reply.cursor == page.next
            applied += reply.applied
            self.cursors[other.site] = (page.epoch, page.next)
            if not page.more:
                return applied
        raise AssertionError("pull did not finish")

    def state(self) -> Any:
        def rows(conn: apsw.Connection) -> Any:
            return (
                query(
                    conn,
                    "SELECT uid, bucket, key, version_id, state, hlc, site, prev_hlc, prev_site, "
                    "delete_marker, size, etag, state_hlc, state_site FROM versions ORDER BY uid",
                ),
                query(
                    conn,
                    "SELECT c.bucket, c.key, v.uid FROM current c JOIN versions v "
                    "ON v.id = c.version ORDER BY 1, 2",
                ),
                query(conn, "SELECT name, versioning, tags, ownership FROM buckets ORDER BY name"),
            )

        return self.read(rows)


def put(bucket: str, key: str) -> Put:
    return Put(bucket=bucket, key=key, size=0, etag="d41d8cd98f00b204e9800998ecf8427e")


def test_three_stores_converge(tmp_path: Path) -> None:
    a, b, c = Store(tmp_path, "a"), Store(tmp_path, "b"), Store(tmp_path, "c")
    assert len({a.site, b.site, c.site}) == 3
    a.do([CreateBucket(bucket="shared", versioning="enabled"), put("shared", "k1"),
          put("shared", "k2"), put("shared", "k1")])  # fmt: skip
    b.do([CreateBucket(bucket="bonly", versioning="unversioned"), put("bonly", "x"),
          put("bonly", "x")])  # fmt: skip
    b.pull_from(a)
    a.pull_from(b)
    # Concurrent writes on both sides of the same keys and bucket.
    a.do([put("shared", "both"), DeleteObject(bucket="shared", key="k2"),
          SetBucketConfig(bucket="shared", field="tags", value="<Tagging/>")])  # fmt: skip
    b.do([put("shared", "both"), put("shared", "k2"), DeleteObject(bucket="bonly", key="x"),
          SetBucketConfig(bucket="shared", field="ownership", value="BucketOwnerEnforced")])  # fmt: skip
    k1_versions = [
        r[3] for r in a.state()[0] if r[1] == "shared" and r[2] == "k1" and r[4] == "ACTIVE"
    ]
    a.do([DeleteVersion(bucket="shared", key="k1", version_id=k1_versions[0])])
    b.pull_from(a)
    a.pull_from(b)
    c.pull_from(b)  # A's writes reach C through B
    assert a.pull_from(b) == 0 and b.pull_from(a) == 0  # nothing left, nothing echoed
    assert a.state() == b.state() == c.state()

    versions, current, buckets = a.state()
    both = [r for r in versions if r[2] == "both"]
    assert sorted(r[4] for r in both) == ["ACTIVE", "CONFLICT"]  # siblings: one lost
    winner = max(both, key=lambda r: (r[5], r[6]))
    assert ("shared", "both", winner[0]) in current
    # Two fields changed on two sites: both registers survive.
    assert ("shared", "enabled", "<Tagging/>", "BucketOwnerEnforced") in buckets
    # The deleted version stays deleted everywhere; the null version of x
    # was deleted on B, so x has no current version anywhere.
    assert all(r[4] == "DELETED" for r in versions if r[3] == k1_versions[0])
    assert not [k for bkt, k, _ in current if bkt == "bonly"]
