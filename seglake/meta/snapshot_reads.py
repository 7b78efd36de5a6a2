"""The snapshot a new site bootstraps from (``GET /v1/replication/snapshot``,
``seglake/protocol/repl_snapshot.py``): this store's current state as
replication entries, read in ONE read transaction, ending with the oplog
cursor that state corresponds to.

What is in it, in this order (a bucket's entries precede its versions, a
version's precede its state, as the applier needs):

1. per bucket gone stamp (``bucket_stamps`` rows that are no config field):
   a ``bucket_gone`` at that stamp, so a late entry of an older
   incarnation cannot bring back what was deleted;
2. per bucket, one ``bucket`` entry per config field: the row's value at
   the field's register stamp (``bucket_stamps``), or, for a field never
   stamped and not NULL, at the bucket's creation (as ``regenerate`` of the
   writer's oplog journal does);
3. ``kek`` per SSE key-encryption key (stamped at its creation);
4. per version row (ACTIVE, CONFLICT, DELETED; never DAMAGED: its data is
   not readable here) in uid order: a ``version`` entry with the row's
   stamp, prev, vmeta and manifest (a DELETED row without a manifest, one
   deleted before it arrived here, gets no ``version`` entry: its ``state``
   alone says what became of it); a ``vmeta`` entry at the newest vmeta
   stamp the oplog holds for it, so an older vmeta entry relayed later does
   not win over the current value; a ``state`` entry for a DELETED row, at
   its DELETED stamp (``versions.state_hlc/state_site``; for a row from
   before those columns, its ``state`` oplog entry's, else its own stamp);
5. ``SnapshotEnd``: settings ``oplog_epoch``, max(oplog.seq), ``site_id``,
   max(oplog.hlc) — read in the same transaction, so pulling from that
   cursor misses nothing and the snapshot holds everything before it.

Never in it: API keys, uploads and parts, ``ops_runs``, maintenance state,
cursors, other settings: none of them are replicated state.

Rows are read in keyset batches; the caller consumes the iterator while the
transaction stays open (a thread for a server: the connection must be its
own, not one shared with concurrent requests). Closing the iterator early
ends the transaction.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, Final

import apsw
import msgpack

from seglake.meta.schema import get_setting, query
from seglake.protocol.hlc import from_ns
from seglake.protocol.repl_entries import (
    BUCKET_FIELDS,
    BucketBody,
    BucketGoneBody,
    KekBody,
    Stamp,
    StateBody,
    VersionBody,
    VmetaBody,
    encode_body,
)
from seglake.protocol.repl_snapshot import SnapshotEnd
from seglake.protocol.repl_wire import Entry

BATCH: Final = 500
_GONE_BODY: Final = encode_body(BucketGoneBody())
_STATE_BODY: Final = encode_body(StateBody("DELETED"))
_VERSION_COLS: Final = (
    "uid, bucket, key, version_id, size, etag, created_ns, state, delete_marker, hlc, site, "
    "prev_hlc, prev_site, meta, manifest, vmeta, state_hlc, state_site"
)


def snapshot_items(conn: apsw.Connection, *, batch: int = BATCH) -> Generator[Entry | SnapshotEnd]:
    """Every item of the snapshot, the ``SnapshotEnd`` last; see the top."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    conn.execute("BEGIN")
    try:
        # The first read fixes the transaction's view (WAL): the cursor and
        # site come from the same state as every row after.
        site = _setting(conn, "site_id")
        epoch = _setting(conn, "oplog_epoch")
        head = "SELECT ifnull(max(seq), 0), ifnull(max(hlc), 0) FROM oplog"
        head_seq, head_hlc = query(conn, head)[0]
        yield from _bucket_entries(conn, site, batch)
        yield from _kek_entries(conn, site, batch)
        yield from _version_entries(conn, batch)
        yield SnapshotEnd(epoch=epoch, seq=int(head_seq), site=site, hlc=int(head_hlc))
    finally:
        conn.execute("ROLLBACK")


def _setting(conn: apsw.Connection, name: str) -> str:
    value = get_setting(conn, name)
    if value is None:
        raise RuntimeError(f"meta.db has no settings[{name!r}] (the writer creates it)")
    return value


def _entry(hlc: int, site: str, op: str, bucket: str, key: str | None, uid: str | None,
           body: bytes, manifest: bytes | None = None) -> Entry:  # fmt: skip
    return Entry(0, int(hlc), str(site), op, bucket, key, uid, body, manifest)


def _bucket_entries(conn: apsw.Connection, site: str, batch: int) -> Iterator[Entry]:
    cols = ", ".join(BUCKET_FIELDS)
    # Gone stamps first: a bucket deleted and created again has both, and
    # its fields are newer than its gone stamp.
    position = ("", "")
    while True:
        gone = query(
            conn,
            "SELECT bucket, field, hlc, site FROM bucket_stamps WHERE (bucket, field) > (?, ?) "
            f"AND field NOT IN ({', '.join('?' * len(BUCKET_FIELDS))}) "
            "ORDER BY bucket, field LIMIT ?",
            (*position, *BUCKET_FIELDS, batch),
        )
        for name, _field, at, origin in gone:
            yield _entry(at, origin, "bucket_gone", str(name), None, None, _GONE_BODY)
        if len(gone) < batch:
            break
        position = (str(gone[-1][0]), str(gone[-1][1]))
    after = ""
    after = ""
    while True:
        rows = query(
            conn,
            f"SELECT name, {cols} FROM buckets WHERE name > ? ORDER BY name LIMIT ?",
            (after, batch),
        )
        for name, *values in rows:
            bucket = str(name)
            stamps = {
                str(f): (int(h), str(s))
                for f, h, s in query(
                    conn, "SELECT field, hlc, site FROM bucket_stamps WHERE bucket = ?", (bucket,)
                )
            }
            created = dict(zip(BUCKET_FIELDS, values, strict=True))["created_ns"]
            for field, value in zip(BUCKET_FIELDS, values, strict=True):
                stamp = stamps.get(field)
                if stamp is None:
                    if value is None:
                        continue  # never set: nothing to say
                    stamp = (from_ns(int(created)), site)
                body = encode_body(BucketBody(field, value))
                yield _entry(stamp[0], stamp[1], "bucket", bucket, None, field, body)
        if len(rows) < batch:
            return
        after = str(rows[-1][0])


def _kek_entries(conn: apsw.Connection, site: str, batch: int) -> Iterator[Entry]:
    after = ""
    while True:
        rows = query(
            conn,
            "SELECT id, wrapped, master_id, created_ns FROM sse_keks WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (after, batch),
        )
        for kek_id, wrapped, master, created in rows:
            body = encode_body(KekBody(str(kek_id), bytes(wrapped), str(master), int(created)))
            # As the oplog journals a KEK: no bucket, the id as its uid.
            yield _entry(from_ns(int(created)), site, "kek", "", None, str(kek_id), body)
        if len(rows) < batch:
            return
        after = str(rows[-1][0])


def _oplog_stamps(conn: apsw.Connection) -> Generator[tuple[str, str, int, str], None, None]:
    """(uid, op, hlc, site) of the newest ``state``/``vmeta`` oplog entry of
    each uid, in uid order (one pass; merged with the versions below)."""
    cursor = conn.execute(
        "SELECT uid, op, max(hlc), site FROM oplog WHERE op IN ('state', 'vmeta') "
        "AND uid IS NOT NULL GROUP BY uid, op ORDER BY uid, op"
    )
    try:
        for uid, op, hlc, site in cursor:
            yield str(uid), str(op), int(hlc), str(site)
    finally:
        cursor.close()


def _version_entries(conn: apsw.Connection, batch: int) -> Iterator[Entry]:
    stamps = _oplog_stamps(conn)
    pending: tuple[str, str, int, str] | None = next(stamps, None)
    try:
        yield from _merged_versions(conn, batch, stamps, pending)
    finally:
        stamps.close()


def _merged_versions(
    conn: apsw.Connection,
    batch: int,
    stamps: Iterator[tuple[str, str, int, str]],
    pending: tuple[str, str, int, str] | None,
) -> Iterator[Entry]:
    after = ""
    while True:
        rows = query(
            conn,
            f"SELECT {_VERSION_COLS} FROM versions WHERE uid > ? "
            "AND state IN ('ACTIVE', 'CONFLICT', 'DELETED') ORDER BY uid LIMIT ?",
            (after, batch),
        )
        for row in rows:
            uid = str(row[0])
            found: dict[str, tuple[int, str]] = {}
            while pending is not None and pending[0] <= uid:
                if pending[0] == uid:
                    found[pending[1]] = (pending[2], pending[3])
                pending = next(stamps, None)
            yield from _one_version(row, found)
        if len(rows) < batch:
            return
        after = str(rows[-1][0])


def _one_version(row: Any, oplog: dict[str, tuple[int, str]]) -> Iterator[Entry]:
    (uid, bucket, key, version_id, size, etag, created_ns, state, marker, at, origin,
     prev_hlc, prev_site, meta, manifest, vmeta, state_hlc, state_site) = row  # fmt: skip
    uid, bucket, key = str(uid), str(bucket), str(key)
    if manifest is not None:
        body = VersionBody(
            version_id=str(version_id),
            size=int(size),
            etag=str(etag),
            created_ns=int(created_ns),
            delete_marker=bool(marker),
            tombstone=_tombstone(meta),
            prev=None if prev_hlc is None else Stamp(int(prev_hlc), str(prev_site)),
            vmeta=None if vmeta is None else bytes(vmeta),
        )
        yield _entry(at, origin, "version", bucket, key, uid, encode_body(body), bytes(manifest))
        if "vmeta" in oplog:
            h, s = oplog["vmeta"]
            value = encode_body(VmetaBody(None if vmeta is None else bytes(vmeta)))
            yield _entry(h, s, "vmeta", bucket, key, uid, value)
    if state == "DELETED":
        if state_hlc is not None:
            h, s = int(state_hlc), str(state_site)
        else:  # a row deleted before the stamp had a column
            h, s = oplog.get("state", (int(at), str(origin)))
        yield _entry(h, s, "state", bucket, key, uid, _STATE_BODY)


def _tombstone(meta: Any) -> bool:
    """The hidden null delete marker of an unversioned DELETE (applied
    from another site) says so in its row meta."""
    try:
        value = msgpack.unpackb(bytes(meta), raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return False
    return isinstance(value, dict) and value.get("tombstone") is True
