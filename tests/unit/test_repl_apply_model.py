"""The writer's own code under the model of test_lww_model.py: 2–3 stores,
each a real meta.db (in memory) whose local mutations run through the
writer's mutations and oplog journal exactly as the committer runs them,
exchange single entries in random order (duplicates included; an entry
whose bucket has not arrived yet is refused and comes again later), then
pull each other's whole oplog. Every store must end with the same rows,
states, stamps, current versions and bucket registers, and a DELETED row
must never come back."""

from __future__ import annotations

import itertools
from typing import Any

import apsw
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.ipc.messages import (
    CreateBucket,
    DeleteBucket,
    DeleteObject,
    DeleteVersion,
    Put,
    ReplApply,
    Request,
    SetBucketConfig,
    SetVersionMeta,
)
from seglake.meta import repl_reads
from seglake.meta.schema import migrate, query, set_setting
from seglake.protocol.hlc import Hlc
from seglake.writer import mutations, repl_ops
from seglake.writer.oplog_journal import OplogJournal
from seglake.writer.ops import BatchContext, VersionClock

KEYS = ("k0", "k1")
ETAG = "d41d8cd98f00b204e9800998ecf8427e"


class Store:
    def __init__(self, n: int, skew_ms: int, now: list[int]) -> None:
        self.site = f"{n + 1:x}" * 16
        self.conn = apsw.Connection(":memory:")
        migrate(self.conn)
        with self.conn:
            set_setting(self.conn, "site_id", self.site)
            set_setting(self.conn, "oplog_epoch", f"{n + 10:x}" * 8)
        self.hlc = Hlc(lambda: now[0] + skew_ms)
        self.journal = OplogJournal()
        self.journal.install(self.conn)
        self.clock = VersionClock()
        self.deleted: set[str] = set()

    def _ctx(self) -> BatchContext:
        return BatchContext(self.clock, hlc=self.hlc, site=self.site, oplog=self.journal)

    def local(self, msg: Request[Any]) -> None:
        """One mutation as the committer runs it: savepoint, flush, commit."""
        ctx = self._ctx()
        self.journal.reset()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("SAVEPOINT m0")
        try:
            mutations.APPLY[type(msg)](self.conn, ctx, msg)
            self.conn.execute("RELEASE m0")
        except S3Error:
            self.conn.execute("ROLLBACK TO m0")
            self.conn.execute("RELEASE m0")
        self.journal.flush(self.conn, self.hlc, self.site)
        self.conn.execute("COMMIT")
        self.check_absorbing()

    def apply(self, entries: list[list[Any]]) -> bool:
        """Apply remote entries in one batch; False if it was refused."""
        a = ReplApply(
            remote="model", direction="bootstrap", epoch="e" * 16, from_seq=0, to_seq=0,
            entries=entries,
        )  # fmt: skip
        self.journal.reset()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("SAVEPOINT m0")
        try:
            repl_ops.apply_repl(self.conn, self._ctx(), a)
            self.conn.execute("RELEASE m0")
            ok = True
        except S3Error as exc:
            assert exc.code == "ReplicationBadBatch" and "unknown bucket" in exc.message, exc
            self.conn.execute("ROLLBACK TO m0")
            self.conn.execute("RELEASE m0")
            ok = False
        self.journal.flush(self.conn, self.hlc, self.site)
        self.conn.execute("COMMIT")
        self.check_absorbing()
        return ok

    def oplog(self) -> list[list[Any]]:
        page = repl_reads.oplog_page(self.conn, 0, 10_000)
        return [list(msgspec.structs.astuple(e)) for e in page.entries]

    def check_absorbing(self) -> None:
        rows = dict(query(self.conn, "SELECT uid, state FROM versions"))
        for uid in self.deleted:
            # A DELETED row stays DELETED (or goes with its bucket).
            assert rows.get(uid, "DELETED") == "DELETED", uid
        self.deleted |= {u for u, s in rows.items() if s == "DELETED"}

    def snapshot(self) -> Any:
        return (
            query(
                self.conn,
                "SELECT uid, bucket, key, version_id, state, hlc, site, prev_hlc, prev_site, "
                "delete_marker, vmeta FROM versions ORDER BY uid",
            ),
            query(
                self.conn,
                "SELECT c.bucket, c.key, v.uid FROM current c JOIN versions v "
                "ON v.id = c.version ORDER BY 1, 2",
            ),
            query(self.conn, "SELECT name, versioning, tags FROM buckets ORDER BY name"),
            query(
                self.conn,
                "SELECT bucket, field, hlc, site, value FROM bucket_stamps ORDER BY 1, 2",
            ),
        )


WHAT = (
    "put", "put", "put", "marker", "delete", "delete", "tags", "vtags", "create", "drop",
    "deliver", "deliver", "deliver", "tick",
)  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=2, max_value=3), st.data())
def test_stores_converge_through_the_writer(n: int, data: st.DataObject) -> None:
    now = [1_800_000_000_000]
    skews = data.draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n), label="skews")
    stores = [Store(i, skews[i], now) for i in range(n)]
    counter = itertools.count()
    # One store starts with the bucket; the others learn of it or make their own.
    stores[0].local(CreateBucket(bucket="b", versioning="enabled"))
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        s = stores[data.draw(st.integers(0, n - 1), label="store")]
        what = data.draw(st.sampled_from(WHAT), label="what")
        key = data.draw(st.sampled_from(KEYS), label="key")
        if what == "put":
            s.local(Put(bucket="b", key=key, size=0, etag=ETAG))
        elif what == "marker":
            s.local(DeleteObject(bucket="b", key=key))
        elif what == "delete":
            live = [
                str(r[0])
                for r in query(
                    s.conn,
                    "SELECT version_id FROM versions WHERE bucket = 'b' AND key = ? "
                    "AND state != 'DELETED' ORDER BY hlc, site",
                    (key,),
                )
            ]
            if live:
                vid = data.draw(st.sampled_from(live), label="version")
                s.local(DeleteVersion(bucket="b", key=key, version_id=vid))
        elif what == "tags":
            s.local(SetBucketConfig(bucket="b", field="tags", value=f"<T{next(counter)}/>"))
        elif what == "vtags":
            tag = ("t", str(next(counter)))
            s.local(SetVersionMeta(bucket="b", key=key, tags=[tag]))
        elif what == "create":
            versioning = data.draw(st.sampled_from(["enabled", "unversioned"]), label="kind")
            s.local(CreateBucket(bucket="b", versioning=versioning))
        elif what == "drop":
            s.local(DeleteBucket(bucket="b"))
        elif what == "tick":
            now[0] += data.draw(st.integers(1, 100))
        else:
            src = stores[data.draw(st.integers(0, n - 1), label="from")]
            log = src.oplog()
            if log and src is not s:
                picks = data.draw(st.lists(st.sampled_from(log), max_size=4), label="entries")
                s.apply(picks)
    # Heal: every store pulls everything every other store holds, in order.
    for _ in range(2):
        for dst in stores:
            for src in stores:
                if src is not dst:
                    assert dst.apply(src.oplog())
    first = stores[0].snapshot()
    for s in stores[1:]:
        other = s.snapshot()
        for part, mine, theirs in zip(
            ("versions", "current", "buckets", "registers"), first, other, strict=True
        ):
            assert mine == theirs, (part, set(mine) ^ set(theirs))
