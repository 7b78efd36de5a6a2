"""SSE key-encryption keys, applied inside the committer's batch transaction
(the contract of ``ops.py``: each ``apply_*`` runs under its own SAVEPOINT,
raising ``S3Error`` rolls back only that mutation, nothing here touches
files).

Rules this file keeps:
- The writer never holds a key: it stores KEKs exactly as the frontend (or
  ``seglake sse rotate-master``) wrapped them, checking only their shape.
- There is one current KEK (the newest row); ``EnsureKek`` stores a
  candidate only while the table is empty, so frontends racing to create the
  first KEK all end up with the same one.
- ``RewrapKeks`` replaces every KEK's wrapping in one batch, or nothing: a
  rotation that missed a KEK (one created meanwhile) is refused, and the
  operator runs it again.
"""

from __future__ import annotations

import time
from typing import Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import EnsureKek, KekReply, KekRow, KeksRewrapped, RewrapKeks
from seglake.meta.schema import query
from seglake.writer.ops import BatchContext, Mutations

# Shapes (seglake/sse/keys.py): 16-hex ids, nonce 12 + key 32 + tag 16.
_ID_HEX: Final = 16
_WRAPPED_BYTES: Final = 60
_HEX: Final = frozenset("0123456789abcdef")


def _check(row: KekRow) -> None:
    for name, value in (("id", row.id), ("master id", row.master_id)):
        if len(value) != _ID_HEX or not _HEX.issuperset(value):
            raise S3Error("InternalError", message=f"malformed KEK {name}")
    if len(row.wrapped) != _WRAPPED_BYTES:
        raise S3Error("InternalError", message="malformed wrapped KEK")


def apply_ensure_kek(conn: apsw.Connection, ctx: BatchContext, a: EnsureKek) -> KekReply:
    rows = query(
        conn, "SELECT id, wrapped, master_id FROM sse_keks ORDER BY created_ns DESC, id LIMIT 1"
    )
    if rows:
        return KekReply(KekRow(str(rows[0][0]), bytes(rows[0][1]), str(rows[0][2])))
    c = a.candidate
    _check(c)
    conn.execute(
        "INSERT INTO sse_keks(id, wrapped, master_id, created_ns) VALUES (?, ?, ?, ?)",
        (c.id, c.wrapped, c.master_id, time.time_ns()),
    )
    return KekReply(c)


def apply_rewrap_keks(conn: apsw.Connection, ctx: BatchContext, a: RewrapKeks) -> KeksRewrapped:
    stored = {str(r[0]) for r in query(conn, "SELECT id FROM sse_keks")}
    given = {k.id for k in a.keks}
    if stored != given or len(given) != len(a.keks):
        raise S3Error(
            "InvalidRequest",
            message="the KEKs changed while the rotation was prepared; run it again",
        )
    for k in a.keks:
        _check(k)
        conn.execute(
            "UPDATE sse_keks SET wrapped = ?, master_id = ? WHERE id = ?",
            (k.wrapped, k.master_id, k.id),
        )
    return KeksRewrapped(count=len(a.keks))


APPLY: Final[Mutations] = {EnsureKek: apply_ensure_kek, RewrapKeks: apply_rewrap_keks}
