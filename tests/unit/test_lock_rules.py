"""seglake/writer/lock_rules.py: the backstop triggers refuse what the handlers refuse.

The triggers are installed on a connection holding just the columns they
read (the writer's own connection has the full schema); every destructive
statement is tried against a version locked each way.
"""

from __future__ import annotations

from collections.abc import Iterator

import apsw
import pytest

from seglake.errors import S3Error
from seglake.protocol import object_lock as ol
from seglake.writer import lock_rules
from seglake.writer.lock_rules import GUARD

DAY = ol.DAY_MS


@pytest.fixture
def conn() -> Iterator[apsw.Connection]:
    c = apsw.Connection(":memory:")
    c.execute(
        "CREATE TABLE settings(name TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE buckets(name TEXT PRIMARY KEY, versioning TEXT, object_lock TEXT);"
        "CREATE TABLE versions(id INTEGER PRIMARY KEY, uid TEXT, bucket TEXT, key TEXT, "
        "state TEXT NOT NULL DEFAULT 'ACTIVE', lock_mode TEXT, lock_until_ms INTEGER, "
        "legal_hold INTEGER NOT NULL DEFAULT 0)"
    )
    GUARD.install(c)
    GUARD.tick()
    yield c
    c.close()


def _add(c: apsw.Connection, mode: str | None, until: int | None, hold: int = 0) -> int:
    c.execute(
        "INSERT INTO versions(uid, bucket, key, lock_mode, lock_until_ms, legal_hold) "
        "VALUES ('u', 'b', 'k', ?, ?, ?)",
        (mode, until, hold),
    )
    return c.last_insert_rowid()


def _refused(c: apsw.Connection, sql: str, row: int, *, bypass: bool = False) -> bool:
    try:
        with GUARD.bypassing(bypass):
            c.execute(sql, (row,))
    except apsw.ConstraintError as exc:
        assert lock_rules.as_s3_error(exc) is not None
        return True
    return False


DELETE_ROW = "DELETE FROM versions WHERE id = ?"
MARK_DELETED = "UPDATE versions SET state = 'DELETED' WHERE id = ?"
SHORTEN = "UPDATE versions SET lock_until_ms = lock_until_ms - 1000 WHERE id = ?"
REMOVE = "UPDATE versions SET lock_until_ms = NULL, lock_mode = NULL WHERE id = ?"
WEAKEN = "UPDATE versions SET lock_mode = 'GOVERNANCE' WHERE id = ?"
EXTEND = "UPDATE versions SET lock_until_ms = lock_until_ms + 1000 WHERE id = ?"


@pytest.mark.parametrize("sql", [DELETE_ROW, MARK_DELETED, SHORTEN, REMOVE, WEAKEN])
def test_compliance_refuses_everything_even_with_bypass(conn: apsw.Connection, sql: str) -> None:
    row = _add(conn, "COMPLIANCE", GUARD.now_ms + DAY)
    assert _refused(conn, sql, row)
    assert _refused(conn, sql, row, bypass=True)


@pytest.mark.parametrize("sql", [DELETE_ROW, MARK_DELETED, SHORTEN, REMOVE])
def test_governance_yields_only_to_bypass(conn: apsw.Connection, sql: str) -> None:
    row = _add(conn, "GOVERNANCE", GUARD.now_ms + DAY)
    assert _refused(conn, sql, row)
    assert not _refused(conn, sql, row, bypass=True)


@pytest.mark.parametrize("sql", [DELETE_ROW, MARK_DELETED])
def test_legal_hold_yields_to_nothing(conn: apsw.Connection, sql: str) -> None:
    row = _add(conn, None, None, hold=1)
    assert _refused(conn, sql, row, bypass=True)
    conn.execute("UPDATE versions SET legal_hold = 0 WHERE id = ?", (row,))
    assert not _refused(conn, sql, row)


def test_extending_and_expired_locks_are_free(conn: apsw.Connection) -> None:
    row = _add(conn, "COMPLIANCE", GUARD.now_ms + DAY)
    assert not _refused(conn, EXTEND, row)
    expired = _add(conn, "COMPLIANCE", GUARD.now_ms - 1)
    assert not _refused(conn, REMOVE, expired)
    assert not _refused(conn, MARK_DELETED, _add(conn, "COMPLIANCE", GUARD.now_ms - 1))
    assert not _refused(conn, DELETE_ROW, _add(conn, None, None))


def test_clock_high_water_mark_survives(conn: apsw.Connection) -> None:
    GUARD.persist(conn)
    stored = int(conn.execute("SELECT value FROM settings").fetchall()[0][0])
    assert stored == GUARD.now_ms
    # A writer restarting with its wall clock a year behind keeps the mark.
    conn.execute("UPDATE settings SET value = ?", (stored + 365 * DAY,))
    GUARD.install(conn)
    assert GUARD.now_ms == stored + 365 * DAY
    row = _add(conn, "COMPLIANCE", stored + DAY)  # in the future by the wall clock ...
    assert not _refused(conn, MARK_DELETED, row)  # ... but past by the lock clock


def test_handler_checks(conn: apsw.Connection) -> None:
    row = _add(conn, "GOVERNANCE", GUARD.now_ms + DAY)
    with pytest.raises(S3Error) as info:
        lock_rules.check_delete(conn, row, "k", "v1", bypass=False)
    assert (info.value.code, info.value.text) == ("AccessDenied", ol.LOCKED_MSG)
    lock_rules.check_delete(conn, row, "k", "v1", bypass=True)
    with pytest.raises(S3Error):
        lock_rules.check_lock_change("COMPLIANCE", GUARD.now_ms + DAY, None, bypass=True)
    lock_rules.check_lock_change(
        "GOVERNANCE", GUARD.now_ms + DAY, ol.Retention("COMPLIANCE", GUARD.now_ms + 2 * DAY),
        bypass=False,
    )  # fmt: skip
    conn.execute("INSERT INTO buckets VALUES ('b', 'enabled', NULL), ('s', 'suspended', NULL)")
    assert lock_rules.bucket_has_locked_versions(conn, "b")
    assert not lock_rules.bucket_has_locked_versions(conn, "other")
    lock_rules.check_bucket_lock_config(conn, "b", ol.LockConfiguration().to_xml().decode())
    for bucket, value in (("s", ol.LockConfiguration().to_xml().decode()), ("b", None)):
        with pytest.raises(S3Error) as info:
            lock_rules.check_bucket_lock_config(conn, bucket, value)
        assert info.value.code == "InvalidBucketState"
