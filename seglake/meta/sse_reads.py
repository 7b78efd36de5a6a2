"""Reads of the SSE key-encryption keys (``sse_keks``, migration 9)."""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from seglake.meta.schema import query


@dataclass(frozen=True)
class StoredKek:
    id: str
    wrapped: bytes
    master_id: str
    created_ns: int


def _row(r: tuple[object, ...]) -> StoredKek:
    return StoredKek(str(r[0]), bytes(r[1]), str(r[2]), int(r[3]))  # type: ignore[arg-type, call-overload]


_COLS = "id, wrapped, master_id, created_ns"


def current_kek(conn: apsw.Connection) -> StoredKek | None:
    """The KEK new objects are encrypted under: the newest."""
    rows = query(conn, f"SELECT {_COLS} FROM sse_keks ORDER BY created_ns DESC, id LIMIT 1")
    return _row(rows[0]) if rows else None


def kek(conn: apsw.Connection, kek_id: str) -> StoredKek | None:
    rows = query(conn, f"SELECT {_COLS} FROM sse_keks WHERE id = ?", (kek_id,))
    return _row(rows[0]) if rows else None


def all_keks(conn: apsw.Connection) -> list[StoredKek]:
    return [_row(r) for r in query(conn, f"SELECT {_COLS} FROM sse_keks ORDER BY id")]
