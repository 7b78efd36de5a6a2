"""The oplog (docs/design-replication.md §2): one row per replicated local
mutation, written inside the writer's batch transaction.

How changes are found: as in ``record_journal.py``, TEMP triggers on the
writer's connection call ``seglake_oplog_touch(kind, name)`` whatever
mutation made the change (so mutations added later are covered), and
``flush`` — run in the batch transaction after every mutation and before
the records are built and COMMIT — reads the final state of each touched
thing and inserts its oplog rows. The rows therefore commit or vanish with
the batch; a mutation rolled back under its savepoint leaves a touch whose
flush finds nothing to say (no row, no change).

What each touch becomes (in the order things were first touched, so a
version's entry precedes its state entry and a bucket's precedes its
objects'):
- a version row inserted → ``version`` at the row's own stamp
  (``versions.hlc/site``, given by ``ops.stamp_for_key``), body
  ``VersionBody`` with ``prev`` and ``vmeta``; nothing if the row is gone;
- a version's state becoming DELETED → ``state`` at a new stamp;
- a version's vmeta/lock/legal hold changed → ``vmeta`` (whole value);
- a bucket inserted or changed → one ``bucket`` entry per config field
  whose value differs from ``bucket_stamps.value`` (the register's last
  value), and ``bucket_stamps`` updated; a bucket row removed while it has
  stamps → ``bucket_gone``, its field registers dropped and the gone stamp
  kept as ``bucket_stamps(bucket, '_gone')``;
- an SSE KEK inserted → ``kek``.
Never: multipart uploads and parts, API keys, MarkDamaged, maintenance
state, ``ops_runs`` (no trigger watches them; DAMAGED is not DELETED).

Identity columns: ``uid`` is the version's uid for version/state/vmeta,
the field name for ``bucket`` (one stamp may cover several fields of one
change) and the KEK id for ``kek``; ``bucket`` is "" for ``kek``.

Suppression: the replication apply (repl-apply) writes rows a remote
produced — the entries are inserted by it with their origin stamps — and
must not have the triggers add local entries for the same change. It runs
its mutation inside ``with ctx.oplog.suppressed():`` (``BatchContext.oplog``
is the committer's journal); touches made meanwhile are ignored. It also
calls ``ctx.hlc.observe(entry.hlc)`` for each applied entry, so later local
stamps are above it. A bucket field it applies must also update
``bucket_stamps`` (value included), or the next local touch of that bucket
would announce the remote's value as a local change.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Final

import apsw

from seglake.meta.schema import get_setting, query, set_setting
from seglake.protocol.hlc import Hlc, from_ns
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

TOUCH_FN: Final = "seglake_oplog_touch"
EPOCH_SETTING: Final = "oplog_epoch"
HLC_SETTING: Final = "hlc"
# The bucket_stamps row that keeps a deleted bucket's gone stamp.
GONE_FIELD: Final = "_gone"
_VERSION, _STATE, _VMETA, _BUCKET, _KEK = "v", "s", "m", "b", "k"

_TRIGGERS: Final = f"""
CREATE TEMP TRIGGER IF NOT EXISTS oplog_version_ins AFTER INSERT ON main.versions
BEGIN SELECT {TOUCH_FN}('{_VERSION}', NEW.uid); END;
CREATE TEMP TRIGGER IF NOT EXISTS oplog_version_state AFTER UPDATE OF state ON main.versions
WHEN NEW.state = 'DELETED' AND OLD.state != 'DELETED'
BEGIN SELECT {TOUCH_FN}('{_STATE}', NEW.uid); END;
CREATE TEMP TRIGGER IF NOT EXISTS oplog_vmeta_upd
AFTER UPDATE OF vmeta, lock_mode, lock_until_ms, legal_hold ON main.versions
WHEN OLD.vmeta IS NOT NEW.vmeta OR OLD.lock_mode IS NOT NEW.lock_mode
  OR OLD.lock_until_ms IS NOT NEW.lock_until_ms OR OLD.legal_hold IS NOT NEW.legal_hold
BEGIN SELECT {TOUCH_FN}('{_VMETA}', NEW.uid); END;
CREATE TEMP TRIGGER IF NOT EXISTS oplog_bucket_ins AFTER INSERT ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS oplog_bucket_upd AFTER UPDATE ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', OLD.name); SELECT {TOUCH_FN}('{_BUCKET}', NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS oplog_bucket_del AFTER DELETE ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', OLD.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS oplog_kek_ins AFTER INSERT ON main.sse_keks
BEGIN SELECT {TOUCH_FN}('{_KEK}', NEW.id); END;
"""

_INSERT: Final = (
    "INSERT INTO oplog(hlc, site, op, bucket, key, uid, body) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)


def new_epoch() -> str:
    return os.urandom(8).hex()


def bucket_values(conn: apsw.Connection, name: str) -> dict[str, Any] | None:
    """The bucket's config fields (``BUCKET_FIELDS``) as the row holds them."""
    rows = query(conn, f"SELECT {', '.join(BUCKET_FIELDS)} FROM buckets WHERE name = ?", (name,))
    return None if not rows else dict(zip(BUCKET_FIELDS, rows[0], strict=True))


def version_body(row: Any) -> VersionBody:
    """``row``: version_id, size, etag, created_ns, delete_marker, prev_hlc,
    prev_site, vmeta, tombstone (the columns ``_VERSION_COLS`` names)."""
    version_id, size, etag, created_ns, marker, prev_hlc, prev_site, vmeta, tomb = row
    prev = None if prev_hlc is None else Stamp(int(prev_hlc), str(prev_site))
    return VersionBody(
        version_id=str(version_id),
        size=int(size),
        etag=str(etag),
        created_ns=int(created_ns),
        delete_marker=bool(marker),
        tombstone=bool(tomb),
        prev=prev,
        vmeta=None if vmeta is None else bytes(vmeta),
    )


_VERSION_COLS: Final = (
    "version_id, size, etag, created_ns, delete_marker, prev_hlc, prev_site, vmeta, tombstone"
)


class OplogJournal:
    def __init__(self) -> None:
        self._touched: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._suppressed = 0

    def install(self, conn: apsw.Connection) -> None:
        conn.create_scalar_function(TOUCH_FN, self._touch, 2, deterministic=False)
        conn.execute(_TRIGGERS)

    def _touch(self, *args: apsw.SQLiteValue) -> None:
        if self._suppressed:
            return
        kind, name = args
        if isinstance(kind, str) and isinstance(name, str):
            self._touched.setdefault((kind, name), None)

    @contextlib.contextmanager
    def suppressed(self) -> Iterator[None]:
        """Changes made inside produce no oplog entries (the replication
        apply inserts the remote's own entries instead)."""
        self._suppressed += 1
        try:
            yield
        finally:
            self._suppressed -= 1

    def reset(self) -> None:
        """Forget the touches (the batch is over, committed or not)."""
        self._touched.clear()

    def flush(self, conn: apsw.Connection, hlc: Hlc, site: str) -> int:
        """Insert the oplog rows of everything touched; the number inserted."""
        touched = list(self._touched)
        self._touched.clear()
        # The new versions' rows in one query per 500 (a batch of small PUTs
        # is mostly these), inserted below in touch order.
        rows = _version_rows(conn, [name for kind, name in touched if kind == _VERSION])
        n = 0
        run: list[tuple[Any, ...]] = []  # consecutive version rows: one statement
        for kind, name in touched:
            if kind == _VERSION:
                row = rows.get(name)
                if row is not None:
                    run.append(row)
                    n += 1
                continue
            if run:
                conn.executemany(_INSERT, run)
                run = []
            if kind == _STATE:
                n += self._state(conn, name, hlc, site)
            elif kind == _VMETA:
                n += self._vmeta(conn, name, hlc, site)
            elif kind == _BUCKET:
                n += bucket_entries(conn, name, hlc, site)
            elif kind == _KEK:
                n += self._kek(conn, name, hlc, site)
        if run:
            conn.executemany(_INSERT, run)
        return n

    @staticmethod
    def _state(conn: apsw.Connection, uid: str, hlc: Hlc, site: str) -> int:
        rows = query(conn, "SELECT bucket, key, state FROM versions WHERE uid = ?", (uid,))
        if not rows or rows[0][2] != "DELETED":
            return 0
        body = encode_body(StateBody("DELETED"))
        stamp = hlc.tick()
        conn.execute(_INSERT, (stamp, site, "state", rows[0][0], rows[0][1], uid, body))
        # No trigger watches these columns; the state record reads them.
        conn.execute(
            "UPDATE versions SET state_hlc = ?, state_site = ? WHERE uid = ?", (stamp, site, uid)
        )
        return 1

    @staticmethod
    def _vmeta(conn: apsw.Connection, uid: str, hlc: Hlc, site: str) -> int:
        rows = query(conn, "SELECT bucket, key, vmeta FROM versions WHERE uid = ?", (uid,))
        if not rows:
            return 0
        bucket, key, vmeta = rows[0]
        body = encode_body(VmetaBody(None if vmeta is None else bytes(vmeta)))
        conn.execute(_INSERT, (hlc.tick(), site, "vmeta", bucket, key, uid, body))
        return 1

    @staticmethod
    def _kek(conn: apsw.Connection, kek_id: str, hlc: Hlc, site: str) -> int:
        rows = query(
            conn, "SELECT wrapped, master_id, created_ns FROM sse_keks WHERE id = ?", (kek_id,)
        )
        if not rows:
            return 0
        wrapped, master, created = rows[0]
        body = encode_body(KekBody(kek_id, bytes(wrapped), str(master), int(created)))
        conn.execute(_INSERT, (hlc.tick(), site, "kek", "", None, kek_id, body))
        return 1


def _version_rows(conn: apsw.Connection, uids: list[str]) -> dict[str, tuple[Any, ...]]:
    """uid → the ``version`` oplog row (``_INSERT``'s parameters) of each
    uid that still has its version row."""
    out: dict[str, tuple[Any, ...]] = {}
    for i in range(0, len(uids), 500):
        part = uids[i : i + 500]
        for uid, stamp, site, bucket, key, *cols in query(
            conn,
            f"SELECT uid, hlc, site, bucket, key, {_VERSION_COLS} FROM versions "
            f"WHERE uid IN ({','.join('?' * len(part))})",
            tuple(part),
        ):
            body = encode_body(version_body(cols))
            out[str(uid)] = (int(stamp), str(site), "version", bucket, key, str(uid), body)
    return out


def bucket_entries(conn: apsw.Connection, name: str, hlc: Hlc, site: str) -> int:
    """The ``bucket``/``bucket_gone`` entries of bucket ``name``: what
    differs between its row and its registers (``bucket_stamps``)."""
    values = bucket_values(conn, name)
    known = {
        str(r[0]): r[1]
        for r in query(conn, "SELECT field, value FROM bucket_stamps WHERE bucket = ?", (name,))
    }
    if values is None:
        if not any(f != GONE_FIELD for f in known):
            return 0  # created and removed in one batch: nobody saw it
        stamp = hlc.tick()
        conn.execute(_INSERT, (stamp, site, "bucket_gone", name, None, None, _GONE_BODY))
        conn.execute("DELETE FROM bucket_stamps WHERE bucket = ?", (name,))
        _set_stamp(conn, name, GONE_FIELD, stamp, site, None)
        return 1
    changed = [f for f in BUCKET_FIELDS if f not in known or known[f] != values[f]]
    # A field that was never set and still is not (NULL, no register) says nothing.
    changed = [f for f in changed if f in known or values[f] is not None]
    if not changed:
        return 0
    stamp = hlc.tick()
    for f in changed:
        body = encode_body(BucketBody(f, values[f]))
        conn.execute(_INSERT, (stamp, site, "bucket", name, None, f, body))
        _set_stamp(conn, name, f, stamp, site, values[f])
    return len(changed)


_GONE_BODY: Final = encode_body(BucketGoneBody())


def _set_stamp(
    conn: apsw.Connection, bucket: str, field: str, stamp: int, site: str, value: Any
) -> None:
    conn.execute(
        "INSERT INTO bucket_stamps(bucket, field, hlc, site, value) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(bucket, field) DO UPDATE SET hlc = excluded.hlc, site = excluded.site, "
        "value = excluded.value",
        (bucket, field, stamp, site, value),
    )


def regenerate(conn: apsw.Connection, *, site: str, state_stamps: dict[str, Stamp]) -> int:
    """Refill an empty oplog from the rows (a store that predates the oplog,
    or rebuild-index): one entry per row, in HLC order. Buckets without
    registers get them at their creation stamp; a DELETED version's
    ``state`` entry takes ``state_stamps[uid]`` (else the version's own
    stamp). Runs in the caller's transaction; the number of entries."""
    if query(conn, "SELECT 1 FROM oplog LIMIT 1"):
        raise RuntimeError("the oplog is not empty")
    entries: list[tuple[int, str, int, str, str, str | None, str | None, bytes]] = []
    op_order = {"bucket": 0, "kek": 1, "version": 2, "vmeta": 3, "state": 4}
    for name, created_ns in query(conn, "SELECT name, created_ns FROM buckets ORDER BY name"):
        values = bucket_values(conn, str(name))
        assert values is not None
        known = {
            str(r[0]): (int(r[1]), str(r[2]))
            for r in query(
                conn, "SELECT field, hlc, site FROM bucket_stamps WHERE bucket = ?", (name,)
            )
        }
        for f in BUCKET_FIELDS:
            if f not in known and values[f] is None:
                continue
            at, origin = known.get(f, (from_ns(int(created_ns)), site))
            if f not in known:
                _set_stamp(conn, str(name), f, at, origin, values[f])
            body = encode_body(BucketBody(f, values[f]))
            entries.append((at, origin, op_order["bucket"], "bucket", name, None, f, body))
    for kek_id, wrapped, master, created in query(
        conn, "SELECT id, wrapped, master_id, created_ns FROM sse_keks ORDER BY id"
    ):
        body = encode_body(KekBody(str(kek_id), bytes(wrapped), str(master), int(created)))
        entries.append((from_ns(int(created)), site, 1, "kek", "", None, str(kek_id), body))
    for row in query(
        conn,
        "SELECT uid, bucket, key, hlc, site, state, state_hlc, state_site, "
        f"{_VERSION_COLS} FROM versions",
    ):
        uid, bucket, key, at, origin, state, state_hlc, state_site, *cols = row
        entries.append(
            (int(at), str(origin), 2, "version", bucket, key, uid, encode_body(version_body(cols)))
        )
        if state == "DELETED":
            s = (
                Stamp(int(state_hlc), str(state_site))
                if state_hlc is not None
                else state_stamps.get(str(uid), Stamp(int(at), str(origin)))
            )
            body = encode_body(StateBody("DELETED"))
            entries.append((s.hlc, s.site, 4, "state", bucket, key, uid, body))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    for at, origin, _order, op, bucket, key, uid, body in entries:
        conn.execute(_INSERT, (at, origin, op, bucket, key, uid, body))
    return len(entries)


def start(conn: apsw.Connection, hlc: Hlc, site: str) -> None:
    """Writer start-up: a store without an oplog epoch (created before the
    oplog, or never started since) gets one, and its existing rows become
    its first oplog entries, so a remote pulling from 0 gets everything."""
    with conn:
        if get_setting(conn, EPOCH_SETTING) is not None:
            return
        if not query(conn, "SELECT 1 FROM oplog LIMIT 1"):
            regenerate(conn, site=site, state_stamps={})
        top = query(conn, "SELECT ifnull(max(hlc), 0) FROM oplog")
        hlc.observe(int(top[0][0]))
        set_setting(conn, HLC_SETTING, max(hlc.last, int(get_setting(conn, HLC_SETTING) or 0)))
        set_setting(conn, EPOCH_SETTING, new_epoch())


class SiteIdRefused(RuntimeError):
    """``--site-id`` names another site than the one this store's data
    was written as."""


def choose_site_id(conn: apsw.Connection, wanted: str) -> str:
    """This store's site id: ``wanted`` (``--site-id``) if given and the
    store holds no bucket and no version yet, else the one it has."""
    with conn:
        current = get_setting(conn, "site_id")
        if wanted and wanted != current:
            if query(conn, "SELECT 1 FROM buckets LIMIT 1") or query(
                conn, "SELECT 1 FROM versions LIMIT 1"
            ):
                raise SiteIdRefused(
                    f"site-id {wanted}: this store already holds buckets or objects written as "
                    f"site {current}; a site id can be set only on an empty store (drop the "
                    "flag, or use it on a new data dir)"
                )
            set_setting(conn, "site_id", wanted)
            if current is not None:
                # Only KEK entries can exist in an empty store; they are ours.
                conn.execute("UPDATE oplog SET site = ? WHERE site = ?", (wanted, current))
            current = wanted
    if current is None:
        raise SiteIdRefused("meta.db has no site id (migration 10 sets one)")
    return current
