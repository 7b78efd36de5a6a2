"""Read-only queries over open multipart uploads and their parts. Never writes.

Frontends use these for the early checks of UploadPart/UploadPartCopy (so a
body is not received for an upload that does not exist) and for ListParts
and ListMultipartUploads. The writer re-checks everything inside its
transaction: what is read here can be stale by the time a mutation commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apsw
import msgpack

from seglake.meta.schema import keyset_scan, query


@dataclass(frozen=True)
class UploadRow:
    upload_id: str
    bucket: str
    key: str
    created_ns: int
    meta: dict[str, Any]
    checksum_algorithm: str | None


@dataclass(frozen=True)
class PartRow:
    part_number: int
    size: int
    etag: str
    created_ns: int
    checksums: dict[str, str]


def _unpack_map(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    value = msgpack.unpackb(raw, raw=False)
    return value if isinstance(value, dict) else {}


def _upload(row: Any) -> UploadRow:
    return UploadRow(
        upload_id=row[0], bucket=row[1], key=row[2], created_ns=row[3],
        meta=_unpack_map(row[4]), checksum_algorithm=row[5],
    )  # fmt: skip


_UPLOAD_COLS = "upload_id, bucket, key, created_ns, meta, checksum_algorithm"


def upload(conn: apsw.Connection, upload_id: str) -> UploadRow | None:
    rows = query(conn, f"SELECT {_UPLOAD_COLS} FROM uploads WHERE upload_id = ?", (upload_id,))
    return _upload(rows[0]) if rows else None


def parts(conn: apsw.Connection, upload_id: str, after: int, limit: int) -> list[PartRow]:
    """Parts with ``part_number > after``, ascending, at most ``limit``."""
    rows = query(
        conn,
        "SELECT part_number, size, etag, created_ns, checksums FROM parts "
        "WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?",
        (upload_id, after, limit),
    )
    return [PartRow(r[0], r[1], r[2], r[3], _unpack_map(r[4])) for r in rows]


def uploads_after(
    conn: apsw.Connection, bucket: str, prefix: str, key: str, upload_id: str | None, batch: int
) -> Iterator[UploadRow]:
    """Uploads of ``bucket`` after the position (key, upload_id), in (key, upload id)
    order (UTF-8 byte order of keys, then creation order). ``upload_id`` None
    means "after every upload of ``key``"; with ``key`` below ``prefix`` the
    walk starts at the prefix."""
    if prefix and key < prefix:
        key, upload_id = prefix, ""
    elif upload_id is None:
        upload_id = "\U0010ffff"  # upload ids are hex: sorts after all of them

    def batch_after(position: tuple[str, str]) -> list[Any]:
        return query(
            conn,
            f"SELECT {_UPLOAD_COLS} FROM uploads WHERE bucket = ? "
            "AND (key, upload_id) > (?, ?) ORDER BY key, upload_id LIMIT ?",
            (bucket, *position, batch),
        )

    rows = keyset_scan(
        batch_after, (key, upload_id), batch=batch,
        position_of=lambda r: (r[2], r[0]), in_range=lambda r: r[2].startswith(prefix),
    )  # fmt: skip
    for r in rows:
        yield _upload(r)
