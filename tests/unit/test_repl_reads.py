"""seglake/meta/repl_reads.py against a real meta.db file (schema.open_write
on a temp file, rows put in by SQL; read back through a read-only
connection as the frontends do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from seglake.meta import repl_reads
from seglake.meta.schema import open_read, open_write, set_setting
from seglake.protocol import repl_wire

SITE_A = "a" * 16
SITE_B = "b" * 16


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[apsw.Connection, apsw.Connection]]:
    path = str(tmp_path / "meta.db")
    w = open_write(path)
    with w:
        set_setting(w, "site_id", SITE_A)
        set_setting(w, "oplog_epoch", "e" * 16)
    r = open_read(path)
    yield w, r
    r.close()
    w.close()


def _version(w: apsw.Connection, uid: str, manifest: bytes | None) -> None:
    w.execute(
        "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, state, "
        "hlc, site, meta, manifest) VALUES (?, 'b', 'k', ?, 1, 'e', 1, 'ACTIVE', 1, ?, x'80', ?)",
        (uid, uid, SITE_A, manifest),
    )


def _oplog(w: apsw.Connection, hlc: int, site: str, op: str, uid: str | None) -> None:
    w.execute(
        "INSERT INTO oplog(hlc, site, op, bucket, key, uid, body) VALUES (?, ?, ?, 'b', ?, ?, ?)",
        (hlc, site, op, None if uid is None else "k", uid, b"\x80"),
    )


def test_identity(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    _, r = db
    assert repl_reads.site_id(r) == SITE_A
    assert repl_reads.oplog_epoch(r) == "e" * 16


def test_missing_epoch_is_an_error(tmp_path: Path) -> None:
    w = open_write(str(tmp_path / "m.db"))
    with pytest.raises(RuntimeError, match="oplog_epoch"):
        repl_reads.oplog_epoch(w)
    # migration 10 chose a site id
    assert len(repl_reads.site_id(w)) == 16


def test_empty_page(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    _, r = db
    page = repl_reads.oplog_page(r, 0, 10)
    assert page == repl_wire.OplogPage(
        epoch="e" * 16, site=SITE_A, entries=[], next=0, more=False, floor=0, head=0, head_hlc=0
    )


def test_pages_in_seq_order_with_manifests(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    w, r = db
    with w:
        _version(w, "u1", b"M1")
        _oplog(w, 100, SITE_A, "version", "u1")
        _oplog(w, 50, SITE_B, "bucket", None)  # relayed: lower hlc, later seq
        _oplog(w, 101, SITE_A, "state", "u1")
        set_setting(w, "oplog_floor", 1)
    page = repl_reads.oplog_page(r, 0, 2)
    assert [(e.seq, e.hlc, e.op) for e in page.entries] == [(1, 100, "version"), (2, 50, "bucket")]
    assert page.entries[0].manifest == b"M1" and page.entries[0].key == "k"
    assert page.entries[1].manifest is None and page.entries[1].key is None
    assert (page.next, page.more, page.floor, page.head, page.head_hlc) == (2, True, 1, 3, 101)
    rest = repl_reads.oplog_page(r, page.next, 2)
    assert [e.seq for e in rest.entries] == [3] and (rest.next, rest.more) == (3, False)
    # what it serves passes the wire's own checks
    assert repl_wire.decode_page(repl_wire.encode(page)) == page
    past = repl_reads.oplog_page(r, 3, 5)
    assert (past.entries, past.next, past.more) == ([], 3, False)


def test_backlog_bytes_count_the_versions_after_the_page(
    db: tuple[apsw.Connection, apsw.Connection],
) -> None:
    w, r = db
    with w:
        for i, (site, size) in enumerate(
            [(SITE_A, 10), (SITE_A, 300), (SITE_B, 5000), (SITE_A, 7)]
        ):
            _version(w, f"u{i}", b"M")
            w.execute("UPDATE versions SET size = ? WHERE uid = ?", (size, f"u{i}"))
            _oplog(w, 10 + i, site, "version", f"u{i}")
            _oplog(w, 20 + i, site, "state", f"u{i}")  # no bytes of its own
    # after the first page (seq 1, 2: u0 and its state): u1, u2, u3 remain
    assert repl_reads.oplog_page(r, 0, 2).backlog_bytes == 300 + 5000 + 7
    # a puller that is site B never gets B's own writes, so they are no backlog
    assert repl_reads.oplog_page(r, 0, 2, exclude_site=SITE_B).backlog_bytes == 307
    # caught up: nothing left
    last = repl_reads.oplog_page(r, 0, 100)
    assert (last.next, last.backlog_bytes) == (8, 0)
    # the JSON form people read says it too
    assert b'"backlog_bytes":5307' in repl_wire.page_json(repl_reads.oplog_page(r, 1, 1))


def test_exclude_site_still_advances(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    w, r = db
    with w:
        _oplog(w, 1, SITE_B, "bucket", None)
        _oplog(w, 2, SITE_B, "bucket_gone", None)
        _oplog(w, 3, SITE_A, "bucket", None)
    page = repl_reads.oplog_page(r, 0, 2, exclude_site=SITE_B)
    assert (page.entries, page.next, page.more) == ([], 2, True)
    page = repl_reads.oplog_page(r, 2, 2, exclude_site=SITE_B)
    assert [e.seq for e in page.entries] == [3] and (page.next, page.more) == (3, False)


def test_version_entry_without_its_row_is_left_out(
    db: tuple[apsw.Connection, apsw.Connection],
) -> None:
    w, r = db
    with w:
        _oplog(w, 1, SITE_A, "version", "gone")
        _oplog(w, 2, SITE_A, "state", "gone")
    page = repl_reads.oplog_page(r, 0, 10)
    assert [e.op for e in page.entries] == ["state"] and page.next == 2
    repl_wire.decode_page(repl_wire.encode(page))


def test_bad_limit(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    with pytest.raises(ValueError):
        repl_reads.oplog_page(db[1], 0, 0)


def test_manifests(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    w, r = db
    with w:
        _version(w, "u1", b"M1")
        _version(w, "u2", None)
        _version(w, "u3", b"M3")
    assert repl_reads.manifests(r, ["u3", "u1", "u2", "nope", "u1"]) == {"u1": b"M1", "u3": b"M3"}
    assert repl_reads.manifests(r, []) == {}
    many = [f"x{i}" for i in range(1200)] + ["u1"]
    assert repl_reads.manifests(r, many) == {"u1": b"M1"}


def test_chunk_locations_and_missing(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    w, r = db
    d1, d2, d3 = bytes(32), b"\x01" * 32, b"\x02" * 32
    with w:
        w.execute("INSERT INTO chunk_index VALUES (?, 3, 64, 100)", (d1,))
        w.execute("INSERT INTO chunk_index VALUES (?, 4, 0, 7)", (d2,))
    assert repl_reads.chunk_locations(r, [d1, d3, d2]) == {d1: (3, 64, 100), d2: (4, 0, 7)}
    assert repl_reads.missing_digests(r, [d3, d1, d3, b"\x09" * 32]) == [d3, b"\x09" * 32]
    assert repl_reads.missing_digests(r, []) == []
    many = [i.to_bytes(32, "big") for i in range(1, 1100)] + [d2]
    assert repl_reads.missing_digests(r, many) == many[:-1]
