"""The oplog journal (seglake/writer/oplog_journal.py) on a real meta.db file,
with the writer's own mutations run as the committer runs them: a batch
transaction, one savepoint per mutation, the journal flushed before COMMIT."""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from seglake.errors import S3Error
from seglake.meta.schema import open_write, query
from seglake.protocol import repl_entries
from seglake.protocol.hlc import Hlc
from seglake.writer import oplog_journal, ops, vmeta_ops
from seglake.writer.oplog_journal import OplogJournal
from seglake.writer.ops import BatchContext, VersionClock

SITE = "00000000000000aa"


class Store:
    def __init__(self, path: Path) -> None:
        self.conn = open_write(str(path))
        self.conn.execute("UPDATE settings SET value = ? WHERE name = 'site_id'", (SITE,))
        self.journal = OplogJournal()
        self.journal.install(self.conn)
        self.hlc = Hlc(lambda: 1_000, last=0)
        self.clock = VersionClock()

    def batch(self, *mutations: tuple[Any, dict[str, Any]]) -> list[Any]:
        """Each (apply function, request fields) in its own savepoint; the
        result or the S3Error of each."""
        ctx = BatchContext(self.clock, hlc=self.hlc, site=SITE, oplog=self.journal)
        out: list[Any] = []
        self.conn.execute("BEGIN IMMEDIATE")
        for i, (fn, args) in enumerate(mutations):
            msg = msgspec.convert(args, typing.get_type_hints(fn)["a"])
            self.conn.execute(f"SAVEPOINT m{i}")
            try:
                out.append(fn(self.conn, ctx, msg))
                self.conn.execute(f"RELEASE m{i}")
            except S3Error as exc:
                self.conn.execute(f"ROLLBACK TO m{i}")
                self.conn.execute(f"RELEASE m{i}")
                out.append(exc)
        self.journal.flush(self.conn, self.hlc, SITE)
        self.conn.execute("COMMIT")
        return out

    def oplog(self) -> list[tuple[Any, ...]]:
        rows = query(self.conn, "SELECT seq, hlc, site, op, bucket, key, uid, body FROM oplog")
        return [(*r[:7], repl_entries.decode_body(r[3], r[7])) for r in rows]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "meta.db")
    yield s
    s.conn.close()


def put(key: str, bucket: str = "b") -> tuple[Any, dict[str, Any]]:
    digest = os.urandom(32)
    return ops.apply_put, {
        "bucket": bucket, "key": key, "size": 5, "etag": "e",
        "chunks": [[1, 100, 5, digest]],
    }  # fmt: skip


def bucket(name: str = "b", versioning: str = "enabled") -> tuple[Any, dict[str, Any]]:
    return ops.apply_create_bucket, {"bucket": name, "versioning": versioning}


def test_versions_states_and_buckets(store: Store) -> None:
    store.batch(bucket(), put("k"), put("k"))
    rows = store.oplog()
    assert [(r[3], r[6] if r[3] == "bucket" else r[5]) for r in rows] == [
        ("bucket", "created_ns"), ("bucket", "versioning"), ("version", "k"), ("version", "k"),
    ]  # fmt: skip
    first, second = rows[2], rows[3]
    assert first[7].prev is None
    assert second[7].prev == repl_entries.Stamp(first[1], SITE)
    assert first[1] < second[1]
    # the stamps are the rows'
    assert query(store.conn, "SELECT hlc, site FROM versions ORDER BY id") == [
        (first[1], SITE), (second[1], SITE),
    ]  # fmt: skip
    registers = dict(
        (str(f), v) for f, v in query(store.conn, "SELECT field, value FROM bucket_stamps")
    )
    assert registers["versioning"] == "enabled" and "policy" not in registers


def test_a_rolled_back_mutation_leaves_no_entry(store: Store) -> None:
    store.batch(bucket())
    before = len(store.oplog())
    bad = put("k", bucket="nope")  # NoSuchBucket: rolled back under its savepoint
    out = store.batch(put("k"), bad, (ops.apply_create_bucket, {"bucket": "b", "versioning": "x"}))
    assert isinstance(out[1], S3Error) and isinstance(out[2], S3Error)
    assert [r[3] for r in store.oplog()[before:]] == ["version"]


def test_unversioned_overwrite_and_delete_emit_states(store: Store) -> None:
    store.batch(bucket(versioning="unversioned"), put("n"))
    store.batch(put("n"))
    store.batch((ops.apply_delete_object, {"bucket": "b", "key": "n"}))
    ops_ = [(r[3], r[5]) for r in store.oplog() if r[3] != "bucket"]
    # the delete: the null version's state and the hidden tombstone's version
    assert ops_ == [
        ("version", "n"), ("state", "n"), ("version", "n"), ("state", "n"), ("version", "n"),
    ]  # fmt: skip
    tomb = [r[7] for r in store.oplog() if r[3] == "version"]
    assert [t.tombstone for t in tomb] == [False, False, True]
    assert tomb[2].delete_marker and tomb[2].version_id == "null"
    states = [r for r in store.oplog() if r[3] == "state"]
    assert all(r[7] == repl_entries.StateBody("DELETED") for r in states)
    # the state stamp is kept on the row (the state record carries it)
    stamped = query(
        store.conn, "SELECT uid, state_hlc, state_site FROM versions WHERE state = 'DELETED'"
    )
    assert {(u, h, s) for u, h, s in stamped} == {(r[6], r[1], SITE) for r in states}


def test_bucket_fields_and_gone(store: Store) -> None:
    store.batch(bucket())
    n = len(store.oplog())
    set_tags = (vmeta_ops.apply_set_bucket_config, {"bucket": "b", "field": "tags", "value": "T"})
    store.batch(set_tags)
    store.batch(set_tags)  # the same value again: no change, no entry
    rows = store.oplog()[n:]
    assert [(r[3], r[6], r[7].value) for r in rows] == [("bucket", "tags", "T")]
    store.batch((ops.apply_delete_bucket, {"bucket": "b"}))
    last = store.oplog()[-1]
    assert last[3] == "bucket_gone" and last[4] == "b" and last[6] is None
    assert query(store.conn, "SELECT field FROM bucket_stamps WHERE bucket = 'b'") == [("_gone",)]
    # created and removed in one batch: nobody saw it
    n = len(store.oplog())
    store.batch(bucket("c"), (ops.apply_delete_bucket, {"bucket": "c"}))
    assert store.oplog()[n:] == []


def test_suppressed_changes_make_no_entries(store: Store) -> None:
    store.batch(bucket())
    n = len(store.oplog())
    with store.journal.suppressed():
        store.batch(put("k"))
    assert store.oplog()[n:] == []
    store.batch(put("j"))
    assert [r[5] for r in store.oplog()[n:]] == ["j"]


def test_regenerate_orders_by_stamp_and_start_sets_epoch(store: Store) -> None:
    store.batch(bucket(), put("k"), put("k"))
    before = [(r[1], r[3], r[6]) for r in store.oplog()]
    with store.conn:
        store.conn.execute("DELETE FROM oplog")
        store.conn.execute("DELETE FROM settings WHERE name = 'oplog_epoch'")
    oplog_journal.start(store.conn, store.hlc, SITE)
    after = [(r[1], r[3], r[6]) for r in store.oplog()]
    assert sorted(after) == sorted(before) and [a[0] for a in after] == sorted(a[0] for a in after)
    epoch = query(store.conn, "SELECT value FROM settings WHERE name = 'oplog_epoch'")[0][0]
    assert len(epoch) == 16
    oplog_journal.start(store.conn, store.hlc, SITE)  # once only
    assert len(store.oplog()) == len(after)


def test_site_id_choice(store: Store) -> None:
    assert oplog_journal.choose_site_id(store.conn, "") == SITE
    assert oplog_journal.choose_site_id(store.conn, "00000000000000bb") == "00000000000000bb"
    store.batch(bucket())
    with pytest.raises(oplog_journal.SiteIdRefused, match="only on an empty store"):
        oplog_journal.choose_site_id(store.conn, "00000000000000cc")
    assert oplog_journal.choose_site_id(store.conn, "00000000000000bb") == "00000000000000bb"


def test_kek_entry(store: Store) -> None:
    from seglake.writer import sse_ops

    kek = ["1" * 16, b"w" * 60, "2" * 16]
    store.batch((sse_ops.apply_ensure_kek, {"candidate": kek}))
    store.batch((sse_ops.apply_ensure_kek, {"candidate": ["3" * 16, b"x" * 60, "2" * 16]}))
    rows = store.oplog()
    assert [(r[3], r[4], r[5], r[6]) for r in rows] == [("kek", "", None, "1" * 16)]
    body = rows[0][7]
    assert isinstance(body, repl_entries.KekBody)
    assert (body.id, body.wrapped, body.master_id) == ("1" * 16, b"w" * 60, "2" * 16)
