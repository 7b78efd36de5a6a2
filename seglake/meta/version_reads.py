"""Read-only queries behind ListObjectVersions. Never writes.

Rules this file keeps:
- Versions are listed by key in UTF-8 byte order (the BINARY collation of
  ``versions.key``), then newest first within a key: ``created_ns`` DESC.
  ``version_id`` cannot order them: every null version is called ``null``.
- Rows in state DELETED (removed by version id, replaced null versions,
  unversioned deletes) are gone for S3 and never listed. DAMAGED and
  CONFLICT rows still exist and are listed.
- ``is_latest`` is true exactly for the row the ``current`` table points at.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from seglake.meta.reads import MetaReader
from seglake.meta.schema import keyset_scan, query


@dataclass(frozen=True)
class VersionEntry:
    key: str
    version_id: str
    uid: str
    size: int
    etag: str
    created_ns: int
    state: str
    delete_marker: bool
    is_latest: bool


def _entry(row: Any) -> VersionEntry:
    return VersionEntry(
        key=row[0], version_id=row[1], uid=row[2], size=row[3], etag=row[4],
        created_ns=row[5], state=row[6], delete_marker=bool(row[7]), is_latest=bool(row[8]),
    )  # fmt: skip


# Larger than any creation clock (and still an SQLite integer): "before every
# version of the key" as a position.
_BEFORE_ALL_NS = (1 << 63) - 1

_COLS = (
    "v.key, v.version_id, v.uid, v.size, v.etag, v.created_ns, v.state, v.delete_marker, "
    "coalesce(c.version = v.id, 0)"
)


def list_versions(
    reader: MetaReader,
    bucket: str,
    *,
    prefix: str,
    after_key: str,
    below_ns: int | None,
    batch: int,
) -> Iterator[VersionEntry]:
    """Versions in listing order from a position, with the prefix, in batches.

    ``below_ns is None``: keys > ``after_key``; otherwise the versions of
    ``after_key`` created before ``below_ns``, then keys > ``after_key``.
    """
    key, below = after_key, below_ns
    if prefix and prefix > key:
        # Nothing at or before the marker has the prefix: start at the prefix.
        key, below = prefix, _BEFORE_ALL_NS

    def batch_after(position: tuple[str, int | None]) -> list[Any]:
        at_key, at_ns = position
        params: tuple[Any, ...]
        if at_ns is None:
            where, params = "v.key > ?", (at_key,)
        else:
            where = "v.key >= ? AND NOT (v.key = ? AND v.created_ns >= ?)"
            params = (at_key, at_key, at_ns)
        return query(
            reader.conn,
            f"SELECT {_COLS} FROM versions v "
            "LEFT JOIN current c ON c.bucket = v.bucket AND c.key = v.key "
            f"WHERE v.bucket = ? AND {where} AND v.state != 'DELETED' AND v.tombstone = 0 "
            "ORDER BY v.key, v.created_ns DESC LIMIT ?",
            (bucket, *params, batch),
        )

    rows = keyset_scan(
        batch_after, (key, below), batch=batch,
        position_of=lambda r: (r[0], int(r[5])), in_range=lambda r: r[0].startswith(prefix),
    )  # fmt: skip
    for r in rows:
        yield _entry(r)


def null_version_created_ns(reader: MetaReader, bucket: str, key: str) -> int | None:
    """When the live null version of a key was written (a version-id-marker of
    ``null`` names a position by it); None if there is none."""
    rows = query(
        reader.conn,
        "SELECT created_ns FROM versions WHERE bucket = ? AND key = ? "
        "AND version_id = 'null' AND state != 'DELETED' AND tombstone = 0 "
        "ORDER BY created_ns DESC LIMIT 1",
        (bucket, key),
    )
    return int(rows[0][0]) if rows else None
