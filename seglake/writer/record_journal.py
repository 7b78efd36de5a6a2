"""Keeps the metadata records (``seglake/format/records.py``) in step with
``meta.db``, inside the writer's batch.

Ordering this file keeps (the writer's barrier, see ``commit.py``):
mutations applied → **records built** → appended to the open segment with
the batch's manifests → one segment flush → COMMIT → ack. Records are
therefore never behind a committed change.

How changes are found: TEMP triggers on the writer's own connection call
``seglake_record_touch(kind, name)`` whenever a bucket row or a version's
state changes (or a version row is removed), whichever mutation did it, so
mutations added later are covered without knowing about records. A touch
only remembers *what* changed; ``flush`` reads the final state of each
touched bucket/version inside the still-open transaction and returns
exactly that as records. A mutation rolled back under its savepoint leaves
a touch behind that simply repeats the unchanged state. Touches are
dropped only after COMMIT (``committed``): if the batch fails after its
records reached the segment, the next flush appends the state the database
kept, which replaces them on replay (records are read in log order).
Anything else may touch too (``touch``; gc copying records forward, a
failed batch's new uids).

Version meta (segment format 3): a version whose ``vmeta`` or lock columns
change, or that is inserted with any of them set, is touched as ``m``; its
flush writes a version-meta record (type 4) with the row's whole value, a
snapshot never a diff. A touched uid without a row writes nothing (its
state record says PURGED, and replay ignores version meta of unknown or
purged uids); a row whose ``vmeta`` is NULL writes the defaults, which
replaces whatever a failed batch may have left in the log.
"""

from __future__ import annotations

from typing import Any, Final

import apsw

from seglake.format.records import (
    KIND_BUCKET,
    KIND_BUCKET_GONE,
    KIND_KEY,
    KIND_STATE,
    KIND_VERSION_META,
    bucket_body,
    encode_record,
    key_body,
    key_gone_body,
)
from seglake.format.segment import TYPE_BUCKET, TYPE_KEY, TYPE_STATE, TYPE_VERSION_META
from seglake.format.vmeta import decode_vmeta

TOUCH_FN: Final = "seglake_record_touch"
# A removed version row is touched like a state change: flush finds no row
# and writes PURGED.
_BUCKET, _VERSION, _VMETA = "b", "v", "m"
# The bucket columns a bucket record carries (records.bucket_body), in order.
_BUCKET_COLUMNS: Final = (
    "created_ns, versioning, policy, lifecycle, cors, tags, acl, ownership, object_lock, encryption"
)
_BUCKET, _VERSION = "b", "v"
# An SSE key-encryption key (sse_keks): its key record (type 5). KEKs are
# never deleted; a touched id without a row is one whose insert did not
# commit, and gets a "gone" record.
_KEK: Final = "k"

_TRIGGERS: Final = f"""
CREATE TEMP TRIGGER IF NOT EXISTS rec_bucket_ins AFTER INSERT ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_bucket_upd AFTER UPDATE ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', OLD.name); SELECT {TOUCH_FN}('{_BUCKET}', NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_bucket_del AFTER DELETE ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', OLD.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_version_state AFTER UPDATE OF state ON main.versions
WHEN OLD.state IS NOT NEW.state
BEGIN SELECT {TOUCH_FN}('{_VERSION}', NEW.uid); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_version_del AFTER DELETE ON main.versions
BEGIN SELECT {TOUCH_FN}('{_VERSION}', OLD.uid); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_kek_ins AFTER INSERT ON main.sse_keks
BEGIN SELECT {TOUCH_FN}('{_KEK}', NEW.id); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_kek_upd AFTER UPDATE ON main.sse_keks
BEGIN SELECT {TOUCH_FN}('{_KEK}', NEW.id); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_vmeta_upd
AFTER UPDATE OF vmeta, lock_mode, lock_until_ms, legal_hold ON main.versions
WHEN OLD.vmeta IS NOT NEW.vmeta OR OLD.lock_mode IS NOT NEW.lock_mode
  OR OLD.lock_until_ms IS NOT NEW.lock_until_ms OR OLD.legal_hold IS NOT NEW.legal_hold
BEGIN SELECT {TOUCH_FN}('{_VMETA}', NEW.uid); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_vmeta_ins AFTER INSERT ON main.versions
WHEN NEW.vmeta IS NOT NULL OR NEW.lock_until_ms IS NOT NULL OR NEW.legal_hold != 0
BEGIN SELECT {TOUCH_FN}('{_VMETA}', NEW.uid); END;
"""


def bucket_record(conn: apsw.Connection, name: str) -> tuple[int, bytes]:
    """The bucket record of ``name`` as ``conn`` sees it (gone if no row)."""
    rows: list[Any] = conn.execute(
        f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE name = ?", (name,)
    ).fetchall()
    # The replication registers (bucket_stamps): {field: [hlc, site]}.
    found: list[Any] = conn.execute(
        "SELECT field, hlc, site FROM bucket_stamps WHERE bucket = ?", (name,)
    ).fetchall()
    stamps = {str(f): [int(h), str(s)] for f, h, s in found}
    if not rows:
        gone: dict[str, Any] = {"name": name}
        if "_gone" in stamps:
            gone.update(hlc=stamps["_gone"][0], site=stamps["_gone"][1])
        return TYPE_BUCKET, encode_record(KIND_BUCKET_GONE, gone)
    created, versioning, policy, lifecycle, cors, tags, acl, ownership, lock, enc = rows[0]
    body = bucket_body(
        name, int(created), str(versioning), policy, lifecycle, cors,
        tags=tags, acl=acl, ownership=ownership, object_lock=lock, encryption=enc,
    )  # fmt: skip
    stamps.pop("_gone", None)
    if stamps:
        body["stamps"] = stamps
    return TYPE_BUCKET, encode_record(KIND_BUCKET, body)


def state_record(conn: apsw.Connection, uid: str) -> tuple[int, bytes]:
    """The version-state record of ``uid`` (PURGED if no row); a DELETED
    state carries its replication stamp (``hlc``, ``site``) when it has one."""
    found: list[Any] = conn.execute(
        "SELECT state, state_hlc, state_site FROM versions WHERE uid = ?", (uid,)
    ).fetchall()
    state = str(found[0][0]) if found else "PURGED"
    body: dict[str, Any] = {"uid": uid, "state": state}
    if found and state == "DELETED" and found[0][1] is not None:
        body.update(hlc=int(found[0][1]), site=str(found[0][2]))
    return TYPE_STATE, encode_record(KIND_STATE, body)


def vmeta_record(conn: apsw.Connection, uid: str) -> tuple[int, bytes] | None:
    """The version-meta record of ``uid`` (None if no row: see the top)."""
    found: list[Any] = conn.execute("SELECT vmeta FROM versions WHERE uid = ?", (uid,)).fetchall()
    if not found:
        return None
    # The writer stores only blobs it encoded; a FormatError here is a bug
    # and fails the batch rather than repeating bad bytes into the log.
    value = decode_vmeta(found[0][0], path=f"meta.db:versions/{uid}")
    body = {"uid": uid, **value.body(), **value.extra}
    return TYPE_VERSION_META, encode_record(KIND_VERSION_META, body)


class RecordJournal:
    def __init__(self) -> None:
        self._touched: set[tuple[str, str]] = set()

    def install(self, conn: apsw.Connection) -> None:
        conn.create_scalar_function(TOUCH_FN, self._touch, 2, deterministic=False)
        conn.execute(_TRIGGERS)

    def _touch(self, *args: apsw.SQLiteValue) -> None:
        kind, name = args
        if isinstance(kind, str) and isinstance(name, str):
            self._touched.add((kind, name))

    def touch_bucket(self, name: str) -> None:
        self._touched.add((_BUCKET, name))

    def touch_version(self, uid: str) -> None:
        self._touched.add((_VERSION, uid))

    def touch_kek(self, kek_id: str) -> None:
        self._touched.add((_KEK, kek_id))

    def touch_vmeta(self, uid: str) -> None:
        self._touched.add((_VMETA, uid))

    def flush(self, conn: apsw.Connection) -> list[tuple[int, bytes]]:
        """The record (segment record type, data) of every touched
        bucket/version as ``conn`` sees it now, in a stable order."""
        out: list[tuple[int, bytes]] = []
        for kind, name in sorted(self._touched):
            if kind == _KEK:
                out.extend(kek_records(conn, [name]))
                continue
            if kind == _BUCKET:
                out.append(bucket_record(conn, name))
            elif kind == _VMETA:
                record = vmeta_record(conn, name)
                if record is not None:
                    out.append(record)
            else:
                # Read the state whatever the touch said: a removed row is
                # PURGED; ACTIVE is written too (it replaces a record a
                # failed batch left in the log).
                out.append(state_record(conn, name))
        return out

    def committed(self) -> None:
        self._touched.clear()


def kek_records(conn: apsw.Connection, ids: list[str]) -> list[tuple[int, bytes]]:
    """The key record (type 5) of each KEK in ``ids`` as ``conn`` has it; a
    "gone" record for one without a row (its batch never committed), so a
    replay ends with exactly the database's KEKs."""
    out: list[tuple[int, bytes]] = []
    for kek_id in ids:
        rows: list[Any] = conn.execute(
            "SELECT wrapped, master_id, created_ns FROM sse_keks WHERE id = ?", (kek_id,)
        ).fetchall()
        if rows:
            wrapped, master, created = rows[0]
            body = key_body(kek_id, bytes(wrapped), str(master), int(created))
        else:
            body = key_gone_body(kek_id)
        out.append((TYPE_KEY, encode_record(KIND_KEY, body)))
    return out
