"""Read-only metadata queries (frontends, tools). Never writes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apsw
import msgpack

from seglake.format.errors import FormatError
from seglake.format.vmeta import decode_vmeta
from seglake.meta.schema import keyset_scan, query


def version_tags(vmeta: bytes | None) -> dict[str, str]:
    """The tags in a ``versions.vmeta`` value, as a map (lifecycle filters,
    ``x-amz-expiration``); a damaged value has none rather than failing a
    read or a lifecycle pass."""
    try:
        return dict(decode_vmeta(vmeta).tags)
    except FormatError:
        return {}


@dataclass(frozen=True)
class BucketRow:
    name: str
    created_ns: int
    versioning: str


@dataclass(frozen=True)
class VersionRow:
    uid: str
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    created_ns: int
    state: str
    delete_marker: bool
    meta: dict[str, Any]
    manifest: bytes | None
    # Mutable metadata (migration 8): read it with format/vmeta.decode_vmeta.
    vmeta: bytes | None = None
    tag_count: int = 0


@dataclass(frozen=True)
class ListEntry:
    key: str
    size: int
    etag: str
    created_ns: int


_VERSION_COLS = (
    "v.uid, v.bucket, v.key, v.version_id, v.size, v.etag, v.created_ns, v.state, "
    "v.delete_marker, v.meta, v.manifest, v.vmeta, v.tag_count"
)


def _version(row: Any) -> VersionRow:
    return VersionRow(
        uid=row[0], bucket=row[1], key=row[2], version_id=row[3], size=row[4], etag=row[5],
        created_ns=row[6], state=row[7], delete_marker=bool(row[8]),
        meta=msgpack.unpackb(row[9], raw=False) if row[9] else {}, manifest=row[10],
        vmeta=row[11], tag_count=row[12] or 0,
    )  # fmt: skip


class MetaReader:
    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    def bucket(self, name: str) -> BucketRow | None:
        rows = query(
            self.conn, "SELECT name, created_ns, versioning FROM buckets WHERE name = ?", (name,)
        )
        return BucketRow(*rows[0]) if rows else None

    def buckets(self) -> list[BucketRow]:
        return [
            BucketRow(*r)
            for r in query(
                self.conn, "SELECT name, created_ns, versioning FROM buckets ORDER BY name"
            )
        ]

    def current(self, bucket: str, key: str) -> VersionRow | None:
        rows = self.conn.execute(
            f"SELECT {_VERSION_COLS} FROM current c JOIN versions v ON v.id = c.version "
            "WHERE c.bucket = ? AND c.key = ?",
            (bucket, key),
        ).fetchall()
        return _version(rows[0]) if rows else None

    def version(self, bucket: str, key: str, version_id: str) -> VersionRow | None:
        """A stored version (or delete marker) by its S3 version id."""
        rows = query(
            self.conn,
            f"SELECT {_VERSION_COLS} FROM versions v WHERE v.bucket = ? AND v.key = ? "
            "AND v.version_id = ? AND v.state != 'DELETED' AND v.tombstone = 0",
            (bucket, key, version_id),
        )
        return _version(rows[0]) if rows else None

    def live_keys(self, bucket: str, after: str, prefix: str, batch: int) -> Iterator[ListEntry]:
        """Current, non-deleted objects with ``key > after`` and the prefix, in
        UTF-8 byte order (SQLite's BINARY collation), fetched in batches."""
        cursor = max(after, prefix) if prefix else after
        inclusive = bool(prefix) and cursor == prefix and prefix > after

        def batch_after(position: tuple[str, bool]) -> list[Any]:
            key, at_or_after = position
            op = ">=" if at_or_after else ">"
            return query(
                self.conn,
                "SELECT c.key, v.size, v.etag, v.created_ns FROM current c "
                "JOIN versions v ON v.id = c.version "
                f"WHERE c.bucket = ? AND c.key {op} ? AND v.delete_marker = 0 "
                "ORDER BY c.key LIMIT ?",
                (bucket, key, batch),
            )

        rows = keyset_scan(
            batch_after, (cursor, inclusive), batch=batch,
            position_of=lambda r: (r[0], False), in_range=lambda r: r[0].startswith(prefix),
        )  # fmt: skip
        for r in rows:
            yield ListEntry(r[0], r[1], r[2], r[3])
