"""Object Lock reads for the frontends (read-only connection).

A bucket's configuration is ``buckets.object_lock`` (canonical XML; NULL:
Object Lock not enabled). A version's lock state is its three lock columns,
which mirror the ``lock``/``legal_hold`` fields of its vmeta blob
(``docs/design-version-metadata.md`` §1); they are read here by the
version's identity, one indexed lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from seglake.meta.schema import live_version, query


@dataclass(frozen=True)
class VersionLock:
    uid: str
    version_id: str
    delete_marker: bool
    mode: str | None
    until_ms: int | None
    legal_hold: bool


def bucket_object_lock(conn: apsw.Connection, bucket: str) -> tuple[bool, str | None]:
    """(bucket exists, its stored ObjectLockConfiguration XML or None)."""
    rows = query(conn, "SELECT object_lock FROM buckets WHERE name = ?", (bucket,))
    if not rows:
        return False, None
    return True, None if rows[0][0] is None else str(rows[0][0])


_COLS = "v.uid, v.version_id, v.delete_marker, v.lock_mode, v.lock_until_ms, v.legal_hold"


def _lock(row: tuple[object, ...]) -> VersionLock:
    uid, version_id, marker, mode, until, hold = row
    return VersionLock(
        str(uid),
        str(version_id),
        bool(marker),
        None if mode is None else str(mode),
        None if until is None else int(str(until)),
        bool(hold),
    )


def version_lock(
    conn: apsw.Connection, bucket: str, key: str, version_id: str | None
) -> VersionLock | None:
    """The lock state of ``version_id`` of ``key`` (None: the current
    version), or None when there is no such live version."""
    row = live_version(conn, _COLS, bucket, key, version_id)
    return _lock(tuple(row)) if row is not None else None
