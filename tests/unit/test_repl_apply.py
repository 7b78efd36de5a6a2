"""The writer applying entries from other sites (seglake/writer/repl_ops.py),
against a real meta.db schema, run the way the committer runs a mutation:
inside the batch transaction under a savepoint that a refusal rolls back.

Batches are built by hand from the wire and entry codecs, as a remote would
send them; refused batches must leave every table exactly as it was."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import apsw
import msgspec
import pytest

from seglake.errors import S3Error
from seglake.format.manifest import ChunkRef, Manifest, decode_manifest, encode_manifest
from seglake.format.vmeta import VersionMeta, encode_vmeta
from seglake.ipc.messages import ReplApplied, ReplApply, ReplChunk
from seglake.meta.schema import migrate, query
from seglake.protocol import hlc as hlc_rules
from seglake.protocol import repl_entries as re_
from seglake.protocol.repl_wire import Entry
from seglake.writer import repl_ops
from seglake.writer.ops import BatchContext, VersionClock

A = "a" * 16
B = "b" * 16
C = "c" * 16
T0 = hlc_rules.pack(1_800_000_000_000, 0)
OFF = 4096  # an origin chunk's data offset (any legal one: the receiver ignores it)
TABLES = (
    "buckets", "versions", "current", "oplog", "chunk_index", "bucket_stamps",
    "repl_pending_state", "repl_remotes", "repl_inbound", "sse_keks",
)  # fmt: skip


@pytest.fixture
def conn() -> Iterator[apsw.Connection]:
    c = apsw.Connection(":memory:")
    migrate(c)
    yield c
    c.close()


def checksum(conn: apsw.Connection) -> str:
    h = hashlib.sha256()
    for t in TABLES:
        for row in query(conn, f"SELECT * FROM {t} ORDER BY 1, 2"):
            h.update(repr(row).encode())
    return h.hexdigest()


def run(conn: apsw.Connection, a: ReplApply, ctx: BatchContext | None = None) -> ReplApplied:
    """As the committer: BEGIN, SAVEPOINT, apply, ROLLBACK TO on refusal."""
    ctx = ctx or BatchContext(VersionClock())
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("SAVEPOINT m0")
    try:
        reply = repl_ops.apply_repl(conn, ctx, a)
    except S3Error:
        conn.execute("ROLLBACK TO m0")
        conn.execute("RELEASE m0")
        conn.execute("COMMIT")
        raise
    conn.execute("RELEASE m0")
    conn.execute("COMMIT")
    return reply


class Origin:
    """One remote site producing entries, as its oplog would hold them."""

    def __init__(self, site: str, start: int = T0) -> None:
        self.site = site
        self.clock = start
        self.seq = 0
        self.epoch = site[:4] + "e" * 12

    def _entry(
        self, op: str, bucket: str, key: str | None, uid: str | None, body: re_.Body,
        manifest: bytes | None = None, hlc: int | None = None,
    ) -> list[Any]:  # fmt: skip
        self.seq += 1
        self.clock += 1
        stamp = self.clock if hlc is None else hlc
        e = Entry(self.seq, stamp, self.site, op, bucket, key, uid, re_.encode_body(body), manifest)
        # As the IPC carries it: the Struct's array, bytes as bytes.
        return list(msgspec.structs.astuple(e))

    def bucket(self, bucket: str, versioning: str = "enabled") -> list[list[Any]]:
        return [
            self._entry("bucket", bucket, None, "created_ns", re_.BucketBody("created_ns", 5)),
            self._entry(
                "bucket", bucket, None, "versioning", re_.BucketBody("versioning", versioning)
            ),
        ]

    def field(self, bucket: str, field: str, value: Any, hlc: int | None = None) -> list[Any]:
        body = re_.BucketBody(field, value)
        return self._entry("bucket", bucket, None, field, body, hlc=hlc)

    def gone(self, bucket: str) -> list[Any]:
        return self._entry("bucket_gone", bucket, None, None, re_.BucketGoneBody())

    def version(
        self, bucket: str, key: str, data: list[bytes], *, prev: re_.Stamp | None = None,
        marker: bool = False, vmeta: bytes | None = None, hlc: int | None = None,
    ) -> tuple[list[Any], str, list[bytes]]:  # fmt: skip
        """(entry, uid, digests of its chunks)."""
        uid = VersionClock.uid_for(T0 + self.seq) if hlc is None else VersionClock.uid_for(hlc)
        digests = [hashlib.blake2b(d, digest_size=32).digest() for d in data]
        chunks = tuple(
            ChunkRef(7, OFF + i * 100_000, len(d), dg)
            for i, (d, dg) in enumerate(zip(data, digests, strict=True))
        )
        size = sum(len(d) for d in data)
        meta = {"etag": "e" * 32, "created_ns": 9, "delete_marker": marker, "s3_version_id": uid}
        meta["content_type"] = "text/x"
        manifest = encode_manifest(Manifest(bucket, key, uid, size, chunks, meta))
        body = re_.VersionBody(uid, size, "e" * 32, 9, marker, prev=prev, vmeta=vmeta)
        return self._entry("version", bucket, key, uid, body, manifest, hlc=hlc), uid, digests

    def state(self, bucket: str, key: str, uid: str) -> list[Any]:
        return self._entry("state", bucket, key, uid, re_.StateBody("DELETED"))

    def vmeta(self, bucket: str, key: str, uid: str, blob: bytes | None) -> list[Any]:
        return self._entry("vmeta", bucket, key, uid, re_.VmetaBody(blob))

    def pull(
        self, entries: list[list[Any]], chunks: list[ReplChunk] | None = None,
        from_seq: int = 0, to_seq: int | None = None, direction: str = "pull",
    ) -> ReplApply:  # fmt: skip
        return ReplApply(
            remote=f"site:{self.site}", direction=direction, epoch=self.epoch, from_seq=from_seq,
            to_seq=self.seq if to_seq is None else to_seq, entries=entries,
            chunks=chunks or [], remote_site=self.site,
        )  # fmt: skip


def located(digests: list[bytes], data: list[bytes], segment: int = 3) -> list[ReplChunk]:
    """Where the puller stored the chunks (through Append) on this site."""
    return [
        ReplChunk(dg, segment, 500 + i * 70_000, len(d))
        for i, (dg, d) in enumerate(zip(digests, data, strict=True))
    ]


def current_uid(conn: apsw.Connection, bucket: str, key: str) -> str | None:
    rows = query(
        conn,
        "SELECT v.uid FROM current c JOIN versions v ON v.id = c.version "
        "WHERE c.bucket = ? AND c.key = ?",
        (bucket, key),
    )
    return str(rows[0][0]) if rows else None


def states(conn: apsw.Connection) -> dict[str, str]:
    return {str(u): str(s) for u, s in query(conn, "SELECT uid, state FROM versions")}


# ---- versions and cursors ----------------------------------------------------


def test_pull_applies_a_version_with_local_chunk_locations(conn: apsw.Connection) -> None:
    o = Origin(A)
    data = [os.urandom(1000), os.urandom(10)]
    bucket = o.bucket("b")
    v, uid, digests = o.version("b", "k", data)
    ctx = BatchContext(VersionClock())
    reply = run(conn, o.pull([*bucket, v], located(digests, data)), ctx)
    assert reply == ReplApplied(applied=3, skipped=0, conflicts=0, cursor=3)
    row = query(
        conn,
        "SELECT version_id, size, state, hlc, site, prev_hlc, manifest FROM versions WHERE uid = ?",
        (uid,),
    )[0]
    assert row[:6] == (uid, 1010, "ACTIVE", T0 + 3, A, None)
    m = decode_manifest(row[6], path="x")
    assert [(c.segment_id, c.offset, c.length) for c in m.chunks] == [
        (3, 500, 1000),
        (3, 70_500, 10),
    ]
    assert m.meta["content_type"] == "text/x" and m.version_id == uid
    assert ctx.manifests == [(uid, row[6])] and ctx.committed_ends == {3: 70_510}
    assert current_uid(conn, "b", "k") == uid
    assert {bytes(d) for (d,) in query(conn, "SELECT digest FROM chunk_index")} == set(digests)
    # Entries are journalled with their origin stamps, for relaying.
    assert query(conn, "SELECT hlc, site, op FROM oplog ORDER BY seq") == [
        (T0 + 1, A, "bucket"), (T0 + 2, A, "bucket"), (T0 + 3, A, "version"),
    ]  # fmt: skip
    assert query(conn, "SELECT remote, site, epoch, pull_cursor, conflicts FROM repl_remotes") == [
        (f"site:{A}", A, o.epoch, 3, 0)
    ]
    # The writer's clock saw the remote stamp.
    assert ctx.hlc.last >= T0 + 3
    assert query(conn, "SELECT versioning FROM buckets WHERE name = 'b'") == [("enabled",)]


def test_chunks_already_held_are_found_by_digest(conn: apsw.Connection) -> None:
    o = Origin(A)
    data = [os.urandom(100)]
    v1, _, digests = o.version("b", "k1", data)
    run(conn, o.pull([*o.bucket("b"), v1], located(digests, data)))
    v2, uid2, _ = o.version("b", "k2", data)
    run(conn, o.pull([v2], from_seq=3))
    m = decode_manifest(
        query(conn, "SELECT manifest FROM versions WHERE uid = ?", (uid2,))[0][0], path="x"
    )
    assert [(c.segment_id, c.offset) for c in m.chunks] == [(3, 500)]


def test_missing_or_mismatched_chunk_refuses_the_whole_batch(conn: apsw.Connection) -> None:
    o = Origin(A)
    run(conn, o.pull(o.bucket("b")))
    before = checksum(conn)
    data = [os.urandom(100)]
    ok, _, d_ok = o.version("b", "ok", data)
    bad, _, _ = o.version("b", "bad", [os.urandom(50)])
    with pytest.raises(S3Error) as err:
        run(conn, o.pull([ok, bad], located(d_ok, data), from_seq=2))
    assert err.value.code == "ReplicationMissingChunk"
    assert checksum(conn) == before
    wrong = [ReplChunk(d_ok[0], 3, 500, 99)]
    with pytest.raises(S3Error) as err:
        run(conn, o.pull([ok], wrong, from_seq=2, to_seq=3))
    assert err.value.code == "ReplicationMissingChunk"
    assert checksum(conn) == before


def test_pull_cursor_rules(conn: apsw.Connection) -> None:
    o = Origin(A)
    run(conn, o.pull(o.bucket("b")))  # 0 → 2
    before = checksum(conn)
    for from_seq in (0, 1, 3):
        with pytest.raises(S3Error) as err:
            run(conn, o.pull([], from_seq=from_seq, to_seq=max(from_seq, 2)))
        assert err.value.code == "ReplicationCursorMismatch"
    assert checksum(conn) == before
    # Same batch twice: the cursor moved, so the second is refused.
    e = o.field("b", "policy", "{}")
    assert run(conn, o.pull([e], from_seq=2)).applied == 1
    with pytest.raises(S3Error) as err:
        run(conn, o.pull([e], from_seq=2))
    assert err.value.code == "ReplicationCursorMismatch"
    # Another epoch (the origin rebuilt its oplog) restarts at 0.
    o.epoch = "f" * 16
    with pytest.raises(S3Error):
        run(conn, o.pull([], from_seq=3, to_seq=4))
    replay = run(conn, o.pull([*o.bucket("b"), e], to_seq=7))
    assert replay.cursor == 7 and replay.skipped == 1 and replay.applied == 2
    assert query(conn, "SELECT epoch, pull_cursor FROM repl_remotes") == [("f" * 16, 7)]


def test_bootstrap_then_set_cursor(conn: apsw.Connection) -> None:
    o = Origin(A)
    entries = o.bucket("b")
    # A snapshot batch names no epoch (its cursor comes in its last item).
    first = msgspec.structs.replace(o.pull(entries, direction="bootstrap", to_seq=0), epoch="")
    assert run(conn, first).applied == 2
    assert query(conn, "SELECT count(*) FROM repl_remotes") == [(0,)]
    # The same snapshot batch again: every entry is a duplicate.
    again = run(conn, o.pull(entries, direction="bootstrap", to_seq=0))
    assert (again.applied, again.skipped) == (0, 2)
    # "Set cursor": no entries, from = to = the snapshot's seq.
    assert run(conn, o.pull([], from_seq=40, to_seq=40)).cursor == 40
    assert query(conn, "SELECT pull_cursor FROM repl_remotes") == [(40,)]
    # Once a cursor of that epoch exists, a set-cursor elsewhere is refused.
    with pytest.raises(S3Error) as err:
        run(conn, o.pull([], from_seq=50, to_seq=50))
    assert err.value.code == "ReplicationCursorMismatch"
    assert run(conn, o.pull([], from_seq=40, to_seq=45)).cursor == 45


def test_push_gap_and_replay(conn: apsw.Connection) -> None:
    o = Origin(A)
    first = o.bucket("b")
    with pytest.raises(S3Error) as err:
        run(conn, o.pull(first, from_seq=1, to_seq=2, direction="push"))
    assert err.value.code == "ReplicationGap"
    assert run(conn, o.pull(first, direction="push")).applied == 2
    before = checksum(conn)
    replay = run(conn, o.pull(first, direction="push"))
    assert replay == ReplApplied(applied=0, skipped=2, conflicts=0, cursor=2)
    assert checksum(conn) == before
    e = o.field("b", "cors", None)
    # Overlapping: the first two are skipped, the new one applied.
    overlap = run(conn, o.pull([*first, e], direction="push"))
    assert (overlap.applied, overlap.skipped, overlap.cursor) == (1, 2, 3)
    assert query(conn, "SELECT site, epoch, cursor FROM repl_inbound") == [(A, o.epoch, 3)]


# ---- LWW ------------------------------------------------------------------------


def test_late_older_put_lands_noncurrent(conn: apsw.Connection) -> None:
    a, b = Origin(A), Origin(B, start=T0 + 1000)
    run(conn, a.pull(a.bucket("b")))
    old, uid_old, _ = a.version("b", "k", [], hlc=T0 + 50)
    # B saw the old one before writing over it; it reaches here first.
    new, uid_new, _ = b.version("b", "k", [], prev=re_.Stamp(T0 + 50, A))
    run(conn, b.pull([new]))
    run(conn, a.pull([old], from_seq=2))
    assert current_uid(conn, "b", "k") == uid_new
    assert states(conn) == {uid_new: "ACTIVE", uid_old: "ACTIVE"}


def test_concurrent_siblings_conflict_in_either_order(conn: apsw.Connection) -> None:
    for order in ((0, 1), (1, 0)):
        c = apsw.Connection(":memory:")
        migrate(c)
        a, b = Origin(A), Origin(B)
        run(c, a.pull(a.bucket("b"), direction="bootstrap", to_seq=0))
        base, ubase, _ = a.version("b", "k", [])
        run(c, a.pull([base], direction="bootstrap", to_seq=0))
        prev = re_.Stamp(T0 + 3, A)
        va, ua, _ = a.version("b", "k", [], prev=prev, hlc=T0 + 10)
        vb, ub, _ = b.version("b", "k", [], prev=prev, hlc=T0 + 10)  # same hlc: site B wins
        got = [
            run(c, (a, b)[i].pull([(va, vb)[i]], direction="bootstrap", to_seq=0)) for i in order
        ]
        assert sum(r.conflicts for r in got) == 1
        assert current_uid(c, "b", "k") == ub
        assert states(c) == {ubase: "ACTIVE", ua: "CONFLICT", ub: "ACTIVE"}
        c.close()


def test_pull_counts_conflicts_on_the_remote(conn: apsw.Connection) -> None:
    a, b = Origin(A), Origin(B)
    run(conn, a.pull(a.bucket("b")))
    va, _, _ = a.version("b", "k", [], hlc=T0 + 20)
    vb, _, _ = b.version("b", "k", [], hlc=T0 + 10)
    run(conn, a.pull([va], from_seq=2))
    assert run(conn, b.pull([vb])).conflicts == 1
    assert query(conn, "SELECT conflicts FROM repl_remotes WHERE remote = ?", (f"site:{B}",)) == [
        (1,)
    ]


def test_state_before_version_is_pending_then_absorbing(conn: apsw.Connection) -> None:
    a = Origin(A)
    run(conn, a.pull(a.bucket("b")))
    v, uid, _ = a.version("b", "k", [os.urandom(10)])
    s = a.state("b", "k", uid)
    # The state arrives first (another route); the version then needs no chunk.
    run(conn, a.pull([s], direction="bootstrap", to_seq=0))
    assert query(conn, "SELECT uid FROM repl_pending_state") == [(uid,)]
    run(conn, a.pull([v], direction="bootstrap", to_seq=0))
    assert states(conn) == {uid: "DELETED"} and current_uid(conn, "b", "k") is None
    assert query(conn, "SELECT count(*) FROM repl_pending_state") == [(0,)]
    assert query(conn, "SELECT manifest, state_hlc, state_site FROM versions") == [
        (None, T0 + 4, A)
    ]


def test_delete_state_recomputes_current(conn: apsw.Connection) -> None:
    a = Origin(A)
    bucket = a.bucket("b")
    v1, u1, _ = a.version("b", "k", [])
    v2, u2, _ = a.version("b", "k", [], prev=None, marker=True)
    run(conn, a.pull([*bucket, v1, v2], to_seq=4))
    assert current_uid(conn, "b", "k") == u2
    run(conn, a.pull([a.state("b", "k", u2)], from_seq=4))
    assert current_uid(conn, "b", "k") == u1
    assert query(conn, "SELECT state_hlc, state_site FROM versions WHERE uid = ?", (u2,)) == [
        (T0 + 5, A)
    ]
    # A later put of the deleted uid cannot revive it (duplicate entry).
    run(conn, a.pull([v2], direction="bootstrap", to_seq=0))
    assert states(conn)[u2] == "DELETED"


def test_vmeta_newer_wins_older_ignored(conn: apsw.Connection) -> None:
    a = Origin(A)
    bucket = a.bucket("b")
    v, uid, _ = a.version("b", "k", [])
    run(conn, a.pull([*bucket, v]))
    blob1 = encode_vmeta(VersionMeta(rev=1, tags=(("x", "1"),)))
    blob2 = encode_vmeta(VersionMeta(rev=2, tags=(("x", "2"), ("y", "2"))))
    older = a.vmeta("b", "k", uid, blob1)
    newer = a.vmeta("b", "k", uid, blob2)
    run(conn, a.pull([newer, older], direction="bootstrap", to_seq=0))
    assert query(conn, "SELECT vmeta, tag_count FROM versions") == [(blob2, 2)]


def test_vmeta_before_its_version_is_taken_when_it_arrives(conn: apsw.Connection) -> None:
    a = Origin(A)
    run(conn, a.pull(a.bucket("b")))
    v, uid, _ = a.version("b", "k", [], vmeta=encode_vmeta(VersionMeta(rev=1, tags=(("a", "1"),))))
    later = encode_vmeta(VersionMeta(rev=2, tags=(("b", "2"),)))
    run(conn, a.pull([a.vmeta("b", "k", uid, later)], direction="bootstrap", to_seq=0))
    run(conn, a.pull([v], direction="bootstrap", to_seq=0))
    assert query(conn, "SELECT vmeta FROM versions") == [(later,)]


def test_kek_is_inserted_once(conn: apsw.Connection) -> None:
    a = Origin(A)
    body = re_.KekBody("1" * 16, b"w" * 60, "2" * 16, 7)
    e = a._entry("kek", "", None, "1" * 16, body)
    run(conn, a.pull([e]))
    assert query(conn, "SELECT id, master_id FROM sse_keks") == [("1" * 16, "2" * 16)]


# ---- buckets ----------------------------------------------------------------------


def test_bucket_fields_are_registers(conn: apsw.Connection) -> None:
    a, b = Origin(A), Origin(B)
    run(conn, a.pull(a.bucket("b")))
    run(conn, b.pull([b.field("b", "policy", "new", hlc=T0 + 100)]))
    run(conn, a.pull([a.field("b", "policy", "old", hlc=T0 + 50)], from_seq=2))
    run(conn, a.pull([a.field("b", "cors", "<CORS/>")], from_seq=3))
    assert query(conn, "SELECT policy, cors FROM buckets") == [("new", "<CORS/>")]


def test_bucket_gone_drops_older_and_refuses_late_arrivals(conn: apsw.Connection) -> None:
    a, b = Origin(A), Origin(B, start=T0 + 1000)
    bucket = a.bucket("b")
    v, _, _ = a.version("b", "k", [])
    run(conn, a.pull([*bucket, v]))
    run(conn, b.pull([b.gone("b")]))
    assert query(conn, "SELECT count(*) FROM buckets") == [(0,)]
    assert query(conn, "SELECT count(*) FROM versions") == [(0,)]
    assert query(conn, "SELECT count(*) FROM current") == [(0,)]
    # A put made before the delete, arriving late, is swallowed by it.
    late, _, _ = a.version("b", "k2", [], hlc=T0 + 500)
    assert run(conn, a.pull([late], from_seq=3)).applied == 1
    assert query(conn, "SELECT count(*) FROM versions") == [(0,)]
    # A register older than the delete does not bring the bucket back...
    run(conn, a.pull([a.field("b", "policy", "p", hlc=T0 + 600)], from_seq=4))
    assert query(conn, "SELECT count(*) FROM buckets") == [(0,)]
    # ... a newer one does, and it is reported.
    assert (
        run(
            conn, a.pull([a.field("b", "versioning", "enabled", hlc=T0 + 2000)], from_seq=5)
        ).conflicts
        == 1
    )
    assert query(conn, "SELECT versioning FROM buckets") == [("enabled",)]


def test_bucket_gone_keeps_a_bucket_written_after_it(conn: apsw.Connection) -> None:
    a, b = Origin(A, start=T0 + 5000), Origin(B)
    run(conn, a.pull(a.bucket("b")))
    reply = run(conn, b.pull([b.gone("b")]))
    assert reply.conflicts == 1
    assert query(conn, "SELECT count(*) FROM buckets") == [(1,)]


def test_version_for_unknown_bucket_is_a_bad_batch(conn: apsw.Connection) -> None:
    a = Origin(A)
    v, _, _ = a.version("nope", "k", [])
    before = checksum(conn)
    with pytest.raises(S3Error) as err:
        run(conn, a.pull([*a.bucket("b"), v]))
    assert err.value.code == "ReplicationBadBatch" and "unknown bucket" in err.value.message
    assert checksum(conn) == before


# ---- hostile batches ----------------------------------------------------------------


def _bad_variants(o: Origin) -> Iterator[tuple[str, list[Any]]]:
    v, _, _ = o.version("b", "k", [])
    yield "not an entry", ["x"]
    yield "entry too short", v[:5]
    yield "unknown op", [*v[:3], "drop", *v[4:]]
    yield "bad site", [v[0], v[1], "NOT-HEX", *v[3:]]
    yield "zero stamp", [v[0], 0, *v[2:]]
    yield "body of another op", [*v[:7], re_.encode_body(re_.StateBody("DELETED")), v[8]]
    yield "garbage body", [*v[:7], b"\xc1", v[8]]
    yield "no manifest", v[:8]
    tampered = bytearray(v[8])
    tampered[-40] ^= 1
    yield "tampered manifest", [*v[:8], bytes(tampered)]
    yield "manifest of another key", [*v[:5], "other", *v[6:]]
    yield "bad uid", [*v[:6], "../../etc", *v[7:]]
    st = o.state("b", "k", "0" * 24)
    yield "state ACTIVE", [*st[:7], re_.encode_body(re_.StateBody("ACTIVE"))]
    yield "bad versioning", o.field("b", "versioning", "maybe")
    big = re_.VersionBody("0" * 24, 0, "e", (1 << 64) - 1)
    yield "created_ns beyond 64 bits", [*v[:7], re_.encode_body(big), v[8]]
    yield (
        "huge key",
        [*o.state("b", "k", "0" * 24)[:5], "k" * 2000, *o.state("b", "k", "0" * 24)[6:]],
    )
    yield "created_ns register beyond 64 bits", o.field("b", "created_ns", 1 << 63)
    f = o.field("b", "policy", "p")
    yield "bucket entry named for another field", [*f[:6], "cors", *f[7:]]
    yield "unknown field", [*o.field("b", "x", 1)[:7], b"\x82\xa5field\xa1x\xa5value\x01"]
    yield (
        "kek too short",
        o._entry("kek", "", None, "1" * 16, re_.KekBody("1" * 16, b"w", "2" * 16, 1)),
    )
    yield "bad vmeta", o.vmeta("b", "k", "0" * 24, b"\x01")


def test_hostile_entries_refuse_the_whole_batch(conn: apsw.Connection) -> None:
    o = Origin(A)
    run(conn, o.pull(o.bucket("b")))
    before = checksum(conn)
    good = o.field("b", "policy", "fine")
    for what, bad in _bad_variants(o):
        with pytest.raises(S3Error) as err:
            run(conn, o.pull([good, bad], from_seq=2, to_seq=99))
        assert err.value.code == "ReplicationBadBatch", what
        assert checksum(conn) == before, what


def test_hostile_batch_fields(conn: apsw.Connection) -> None:
    o = Origin(A)
    before = checksum(conn)
    cases = [
        o.pull(o.bucket("b"), direction="sideways"),
        o.pull(o.bucket("b"), from_seq=5, to_seq=4),
        o.pull(o.bucket("b"), from_seq=0, to_seq=0),
        msgspec.structs.replace(o.pull(o.bucket("b"), direction="push"), remote_site="x"),
        o.pull([], chunks=[ReplChunk(b"short", 1, 1, 1)]),
        o.pull([], chunks=[ReplChunk(b"d" * 32, 1 << 63, 1, 1)]),
        msgspec.structs.replace(o.pull([]), epoch=""),
    ]
    for a in cases:
        with pytest.raises(S3Error) as err:
            run(conn, a)
        assert err.value.code == "ReplicationBadBatch", a
    assert checksum(conn) == before


def test_version_deleted_later_in_the_same_batch_needs_no_data(conn: apsw.Connection) -> None:
    a, b = Origin(A), Origin(B, start=T0 + 100)
    bucket = a.bucket("b")
    v, uid, _ = a.version("b", "k", [b"never fetched"])
    gone = a.state("b", "k", uid)
    reply = run(conn, a.pull([*bucket, v, gone]))  # no chunk locations given
    assert (reply.applied, reply.conflicts) == (4, 0)
    assert query(conn, "SELECT state, manifest, state_hlc FROM versions") == [
        ("DELETED", None, T0 + 4)
    ]
    assert query(conn, "SELECT count(*) FROM repl_pending_state") == [(0,)]
    # Deleted on another site too, later: the first (smallest) stamp stays.
    run(conn, b.pull([b.state("b", "k", uid)]))
    assert query(conn, "SELECT state_hlc, state_site FROM versions") == [(T0 + 4, A)]
    # ... and an earlier one replaces it, as on every other site.
    run(
        conn,
        b.pull(
            [b._entry("state", "b", "k", uid, re_.StateBody("DELETED"), hlc=T0 + 2)], from_seq=1
        ),
    )
    assert query(conn, "SELECT state_hlc, state_site FROM versions") == [(T0 + 2, B)]


def test_bucket_gone_aborts_uploads_open_here(conn: apsw.Connection) -> None:
    a, b = Origin(A), Origin(B, start=T0 + 1000)
    run(conn, a.pull(a.bucket("b")))
    with conn:
        conn.execute(
            "INSERT INTO uploads(upload_id, bucket, key, created_ns, meta) VALUES ('u1', 'b', 'k', 1, x'80')"
        )
        conn.execute(
            "INSERT INTO parts(upload_id, part_number, size, etag, created_ns, checksums, chunks) "
            "VALUES ('u1', 1, 1, 'e', 1, x'80', x'90')"
        )
    assert run(conn, b.pull([b.gone("b")])).conflicts == 1
    assert query(conn, "SELECT count(*) FROM buckets") == [(0,)]
    assert query(conn, "SELECT count(*) FROM uploads") == [(0,)]
    assert query(conn, "SELECT count(*) FROM parts") == [(0,)]
