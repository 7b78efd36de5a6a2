"""Applying oplog entries from other sites (``ReplApply``,
docs/design-replication.md §3 and §6): the last-writer-wins rule of
``seglake/protocol/lww.py`` against this store's rows, in the writer's batch.

Rules this file keeps:

- **All or nothing.** A batch comes from another machine: every entry is
  decoded and checked (``Entry`` shape, stamps, body, manifest) before
  anything is written, and any later refusal (a chunk not held, a bucket
  never seen) raises ``S3Error``, so the committer's savepoint rolls the
  whole batch back, cursor included. Nothing but ``S3Error`` leaves this
  module for bad input: any other exception would fail the other
  mutations of the batch too.
- **Exactly once.** Each entry is first inserted into ``oplog`` with its
  ORIGIN stamp, site and body (``ON CONFLICT DO NOTHING`` on
  ``oplog_identity``); an entry that was already there is skipped. The same
  row is what this site serves to others, so A→B→C relaying works.
- **The cursor moves with the data**: pull cursors (``repl_remotes``) and
  inbound push cursors (``repl_inbound``) are written in this same
  savepoint.
- **Local rows, remote history**: a version keeps the origin's uid,
  version id, stamps and prev; its manifest is rebuilt with THIS site's
  chunk locations (from the request's ``chunks`` or ``chunk_index``, by
  digest and length), written like a local version's (``ctx.manifests``).
- **Stamps of things that have no column**: a bucket's gone stamp is kept
  in ``bucket_stamps`` under the field ``GONE_FIELD`` (as the local journal
  keeps it; not a config field, so no bucket entry can name it); the stamp
  of a version's vmeta is the largest ``vmeta`` entry the oplog holds for
  that uid (local changes are journalled there too). Tags, ACL and legal
  hold come from the newest value, the retention is merged from all
  (``lww.merge_retention``).
- **Every site derives the same rows**: a key's states and current version
  come from ``writer/lww_rows.recompute_key``; a bucket's existence from
  its registers, versions and gone stamp (``lww.bucket_exists``).
- Conflicts counted: versions that became CONFLICT, a ``bucket_gone`` that
  could not remove its bucket (or aborted uploads open here), a bucket
  recreated after its gone stamp, a remote DELETED or bucket_gone an Object
  Lock here refused (the lock wins on this site; the entry is recorded).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Final

import apsw
import msgpack
import msgspec

from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.manifest import ChunkRef, Manifest, decode_manifest, encode_manifest
from seglake.format.vmeta import Lock, VersionMeta, decode_vmeta
from seglake.ipc.messages import ReplApplied, ReplApply, ReplChunk
from seglake.meta.schema import query
from seglake.protocol import hlc as hlc_rules
from seglake.protocol import lww
from seglake.protocol.repl_entries import (
    BUCKET_FIELDS,
    Body,
    BodyError,
    BucketBody,
    BucketGoneBody,
    KekBody,
    StateBody,
    VersionBody,
    VmetaBody,
    decode_body,
)
from seglake.protocol.repl_wire import MAX_PAGE_ENTRIES, OPS, Entry
from seglake.writer import lock_rules
from seglake.writer.lww_rows import recompute_key
from seglake.writer.oplog_journal import GONE_FIELD
from seglake.writer.ops import NULL_VERSION, BatchContext, Mutations, vmeta_columns

DIRECTIONS: Final = frozenset({"pull", "push", "bootstrap"})
# Version uids: the writer's 16 hex digits of inverted clock, then a random
# tail (8 hex since replication; none in stores from before it).
_UID: Final = re.compile(r"[0-9a-f]{16,40}")
_KEK_HEX: Final = re.compile(r"[0-9a-f]{16}")
_KEK_WRAPPED_BYTES: Final = 60
_MAX_BUCKET_BYTES: Final = 255
_MAX_KEY_BYTES: Final = 1024
# An epoch is 16 hex; a remote's name is what an operator configured.
_MAX_NAME: Final = 1024
# SQLite integers are signed 64-bit: a larger value would fail the batch
# with an exception that is no S3Error.
_I64: Final = (1 << 63) - 1
# Keys of a manifest's meta that the writer adds itself (writer/ops.py);
# the rest is what versions.meta holds.
_MANIFEST_OWN_KEYS: Final = frozenset(
    {"etag", "created_ns", "delete_marker", "s3_version_id", "hlc", "site", "prev"}
)
# What the buckets columns hold when a field's register is dropped.
_FIELD_DEFAULTS: Final[dict[str, str | int | None]] = {"versioning": "unversioned"}


def _bad(message: str) -> S3Error:
    return S3Error("ReplicationBadBatch", message=message)


@dataclass(frozen=True)
class _Item:
    entry: Entry
    body: Body
    manifest: Manifest | None

    @property
    def stamp(self) -> lww.Stamp:
        return (self.entry.hlc, self.entry.site)


# ---- decoding (hostile input) ------------------------------------------------


def _decode(a: ReplApply) -> list[_Item]:
    if a.direction not in DIRECTIONS:
        raise _bad(f"unknown direction {a.direction!r}")
    if not (0 <= a.from_seq <= a.to_seq <= hlc_rules.MAX_HLC):
        raise _bad(f"bad range ({a.from_seq}, {a.to_seq}]")
    if a.direction != "bootstrap" and a.entries and a.from_seq == a.to_seq:
        raise _bad("an empty range carries entries")
    if a.direction == "push" and not hlc_rules.valid_site(a.remote_site):
        raise _bad(f"bad sending site {a.remote_site!r}")
    # A bootstrap batch may carry no epoch: the snapshot names its cursor
    # only in its last item, and bootstrap moves no cursor.
    epoch_ok = bool(a.epoch) or a.direction == "bootstrap"
    if not (epoch_ok and len(a.epoch) <= _MAX_NAME and len(a.remote) <= _MAX_NAME):
        raise _bad("bad epoch or remote name")
    if len(a.entries) > MAX_PAGE_ENTRIES:
        raise _bad(f"{len(a.entries)} entries (at most {MAX_PAGE_ENTRIES})")
    for c in a.chunks:
        if len(c.digest) != 32 or not (
            0 <= c.segment_id <= _I64 and 0 <= c.offset <= _I64 and 0 < c.length <= _I64
        ):
            raise _bad("malformed chunk location")
    items: list[_Item] = []
    for i, raw in enumerate(a.entries):
        try:
            e = msgspec.convert(raw, Entry)
        except msgspec.ValidationError as exc:
            raise _bad(f"entry {i}: {exc}") from None
        try:
            items.append(_check_entry(e))
        except (BodyError, FormatError, ValueError) as exc:
            raise _bad(
                f"entry {i} ({e.op} {e.bucket!r:.80} {e.key!r:.80} {e.uid!r:.60}): {exc}"
            ) from None
    return items


def _check_entry(e: Entry) -> _Item:
    if e.op not in OPS:
        raise ValueError(f"unknown op {e.op!r}")
    if not (hlc_rules.valid(e.hlc) and e.hlc > 0) or not hlc_rules.valid_site(e.site):
        raise ValueError("bad stamp")
    # A KEK belongs to no bucket (its entry says "").
    if not (0 < len(e.bucket.encode()) <= _MAX_BUCKET_BYTES or (e.op == "kek" and not e.bucket)):
        raise ValueError("bad bucket name")
    if e.key is not None and not 0 < len(e.key.encode()) <= _MAX_KEY_BYTES:
        raise ValueError("bad key")
    per_version = e.op in ("version", "state", "vmeta")
    if per_version and (e.key is None or e.uid is None or _UID.fullmatch(e.uid) is None):
        raise ValueError("a version's entry names its key and uid")
    body = decode_body(e.op, e.body)
    manifest = None
    if isinstance(body, VersionBody):
        if e.manifest is None:
            raise ValueError("version entry without its manifest")
        manifest = decode_manifest(e.manifest, path=f"entry {e.uid}")
        if (manifest.bucket, manifest.key, manifest.version_id) != (e.bucket, e.key, e.uid):
            raise ValueError("manifest names another version")
        if manifest.size != body.size or not 0 <= body.size <= _I64:
            raise ValueError("manifest size differs from the entry's")
        if not 0 <= body.created_ns <= _I64:
            raise ValueError("bad created_ns")
        if body.version_id not in (NULL_VERSION, e.uid):
            raise ValueError(f"version id {body.version_id!r} is neither null nor the uid")
        if body.prev is not None and not (
            hlc_rules.valid(body.prev.hlc) and hlc_rules.valid_site(body.prev.site)
        ):
            raise ValueError("bad prev stamp")
        if body.vmeta is not None:
            decode_vmeta(body.vmeta, path=f"entry {e.uid} vmeta")
    elif isinstance(body, VmetaBody) and body.vmeta is not None:
        decode_vmeta(body.vmeta, path=f"entry {e.uid} vmeta")
    elif isinstance(body, BucketBody):
        # The field names the entry (oplog_identity): one stamp may change
        # several fields of a bucket (writer/oplog_journal.py).
        if e.uid != body.field:
            raise ValueError("a bucket entry's uid is its field")
        _check_field_value(body)
    elif isinstance(body, KekBody) and (
        e.uid != body.id
        or not 0 <= body.created_ns <= _I64
        or _KEK_HEX.fullmatch(body.id) is None
        or _KEK_HEX.fullmatch(body.master_id) is None
        or len(body.wrapped) != _KEK_WRAPPED_BYTES
    ):
        raise ValueError("malformed KEK")
    return _Item(e, body, manifest)


def _check_field_value(body: BucketBody) -> None:
    value = body.value
    if body.field == "created_ns":
        if not isinstance(value, int) or not 0 <= value <= _I64:
            raise ValueError("created_ns is a non-negative integer")
    elif body.field == "versioning":
        if value not in ("enabled", "suspended", "unversioned"):
            raise ValueError(f"versioning {value!r}")
    elif value is not None and not isinstance(value, str):
        raise ValueError(f"{body.field} holds text or nothing")


# ---- the writer's clock and the local journal -------------------------------


def _observe(ctx: BatchContext, stamp: int) -> None:
    """Every later local stamp must be above what this site applied (design §1)."""
    ctx.hlc.observe(stamp)


def _local_journal_suppressed(ctx: BatchContext) -> AbstractContextManager[None]:
    """The local oplog triggers must not journal what this module applies:
    the entry is journalled as the origin's (writer/oplog_journal.py)."""
    return nullcontext() if ctx.oplog is None else ctx.oplog.suppressed()


# ---- cursors -----------------------------------------------------------------


def _check_cursor(conn: apsw.Connection, a: ReplApply) -> bool:
    """Refuse a batch that does not continue the stored cursor; True for a
    push batch already applied (a replay: its entries are all skipped)."""
    if a.direction == "pull":
        rows = query(
            conn, "SELECT epoch, pull_cursor FROM repl_remotes WHERE remote = ?", (a.remote,)
        )
        if rows and rows[0][0] == a.epoch:
            if int(rows[0][1]) != a.from_seq:
                raise S3Error(
                    "ReplicationCursorMismatch",
                    message=f"stored cursor {a.epoch}:{rows[0][1]}, batch from {a.from_seq}",
                )
        elif a.from_seq != 0 and not (a.from_seq == a.to_seq and not a.entries):
            # A new epoch restarts at 0; the one exception is bootstrap's
            # "set cursor" (no entries) to the snapshot's position.
            raise S3Error(
                "ReplicationCursorMismatch",
                message=f"no cursor in epoch {a.epoch!r}: a batch must start at 0",
            )
        return False
    if a.direction == "push":
        cursor = _inbound_cursor(conn, a.remote_site, a.epoch)
        if a.from_seq > cursor:
            raise S3Error(
                "ReplicationGap", message=f"batch starts at {a.from_seq}, cursor is {cursor}"
            )
        return a.to_seq <= cursor
    return False


def _inbound_cursor(conn: apsw.Connection, site: str, epoch: str) -> int:
    rows = query(conn, "SELECT epoch, cursor FROM repl_inbound WHERE site = ?", (site,))
    return int(rows[0][1]) if rows and rows[0][0] == epoch else 0


def _move_cursor(conn: apsw.Connection, a: ReplApply, items: list[_Item], conflicts: int) -> int:
    if a.direction == "pull":
        top = max((it.entry.hlc for it in items), default=None)
        conn.execute(
            "INSERT INTO repl_remotes(remote, site, epoch, pull_cursor, last_pull_hlc, "
            "last_ok_ns, conflicts) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(remote) DO UPDATE "
            "SET site = coalesce(excluded.site, site), epoch = excluded.epoch, "
            "pull_cursor = excluded.pull_cursor,"
            " last_pull_hlc = coalesce(excluded.last_pull_hlc, last_pull_hlc),"
            " last_ok_ns = excluded.last_ok_ns, last_error = NULL,"
            " conflicts = conflicts + excluded.conflicts",
            (
                a.remote, a.remote_site or None, a.epoch, a.to_seq, top, time.time_ns(),
                conflicts,
            ),
        )  # fmt: skip
    elif a.direction == "push":
        conn.execute(
            "INSERT INTO repl_inbound(site, epoch, cursor) VALUES (?, ?, ?) "
            "ON CONFLICT(site) DO UPDATE SET epoch = excluded.epoch, cursor = excluded.cursor",
            (a.remote_site, a.epoch, a.to_seq),
        )
    return a.to_seq


# ---- the mutation --------------------------------------------------------------


def apply_repl(conn: apsw.Connection, ctx: BatchContext, a: ReplApply) -> ReplApplied:
    items = _decode(a)
    if _check_cursor(conn, a):
        return ReplApplied(applied=0, skipped=len(items), conflicts=0, cursor=a.to_seq)
    chunks = {c.digest: c for c in a.chunks}
    applied = skipped = conflicts = 0
    with _local_journal_suppressed(ctx):
        # A version deleted later in this same batch needs no data either
        # (a page or snapshot holding a put and its delete): its state is
        # made pending before the version is met.
        for it in items:
            if isinstance(it.body, StateBody):
                _pend(conn, it)
        for it in items:
            _observe(ctx, it.entry.hlc)
            if not _journal(conn, it.entry):
                skipped += 1
                continue
            conflicts += _APPLY[type(it.body)](conn, ctx, it, chunks)
            applied += 1
        cursor = _move_cursor(conn, a, items, conflicts)
    return ReplApplied(applied=applied, skipped=skipped, conflicts=conflicts, cursor=cursor)


def _journal(conn: apsw.Connection, e: Entry) -> bool:
    """Record the entry as the origin wrote it; False: it was here already."""
    conn.execute(
        "INSERT INTO oplog(hlc, site, op, bucket, key, uid, body) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (e.hlc, e.site, e.op, e.bucket, e.key, e.uid, e.body),
    )
    return bool(conn.changes())


@contextmanager
def _lock_may_refuse(conn: apsw.Connection, name: str) -> Iterator[list[bool]]:
    """Run a change an Object Lock trigger here may refuse; the yielded
    list gets True if it did (the change is then undone, nothing else)."""
    refused: list[bool] = []
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield refused
    except apsw.ConstraintError as exc:
        if lock_rules.as_s3_error(exc) is None:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise _bad(f"constraint: {exc}") from None
        conn.execute(f"ROLLBACK TO {name}")
        refused.append(True)
    conn.execute(f"RELEASE {name}")


# ---- versions ------------------------------------------------------------------


def _gone_stamp(conn: apsw.Connection, bucket: str) -> lww.Stamp | None:
    rows = query(
        conn,
        "SELECT hlc, site FROM bucket_stamps WHERE bucket = ? AND field = ?",
        (bucket, GONE_FIELD),
    )
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def _bucket_exists(conn: apsw.Connection, bucket: str) -> bool:
    return bool(query(conn, "SELECT 1 FROM buckets WHERE name = ?", (bucket,)))


def _local_chunks(
    conn: apsw.Connection, m: Manifest, chunks: dict[bytes, ReplChunk]
) -> list[ChunkRef]:
    """The manifest's chunks where THIS site holds them."""
    refs: list[ChunkRef] = []
    for c in m.chunks:
        got = chunks.get(c.digest)
        if got is not None:
            loc = (got.segment_id, got.offset, got.length)
        else:
            rows = query(
                conn,
                "SELECT segment, offset, length FROM chunk_index WHERE digest = ?",
                (c.digest,),
            )
            if not rows:
                raise S3Error(
                    "ReplicationMissingChunk",
                    message=f"chunk {c.digest.hex()} of {m.version_id} is not held here",
                )
            loc = (int(rows[0][0]), int(rows[0][1]), int(rows[0][2]))
        if loc[2] != c.length:
            raise S3Error(
                "ReplicationMissingChunk",
                message=f"chunk {c.digest.hex()} is held with another length",
            )
        refs.append(ChunkRef(loc[0], loc[1], loc[2], c.digest))
    return refs


def _vmeta_entries(conn: apsw.Connection, uid: str) -> list[tuple[lww.Stamp, bytes | None]]:
    """The vmeta entries the oplog holds for ``uid`` (stamp, blob), newest first."""
    out: list[tuple[lww.Stamp, bytes | None]] = []
    for hlc, site, raw in query(
        conn,
        "SELECT hlc, site, body FROM oplog WHERE op = 'vmeta' AND uid = ? "
        "ORDER BY hlc DESC, site DESC",
        (uid,),
    ):
        body = decode_body("vmeta", bytes(raw))
        assert isinstance(body, VmetaBody)
        out.append(((int(hlc), str(site)), body.vmeta))
    return out


def _lock_of(v: VersionMeta) -> lww.Retention | None:
    return None if v.lock is None else (v.lock.mode, v.lock.until_ms)


def _merged_vmeta(winner: VersionMeta, others: list[VersionMeta]) -> VersionMeta:
    """``winner`` (the newest value) with every value's retention merged in
    (``lww.merge_retention``)."""
    lock = _lock_of(winner)
    for o in others:
        lock = lww.merge_retention(lock, _lock_of(o))
    return replace(winner, lock=None if lock is None else Lock(lock[0], lock[1]))


def _vmeta_cols(
    blob_given: bool, value: VersionMeta
) -> tuple[bytes | None, int | None, str | None, int | None, int]:
    # A value that was never set stays NULL; one that was keeps its blob,
    # defaults or not (format/vmeta.py: a removal must win where it meets
    # an older value).
    return vmeta_columns(value if blob_given else None)


def _apply_version(
    conn: apsw.Connection, ctx: BatchContext, it: _Item, chunks: dict[bytes, ReplChunk]
) -> int:
    e, body, m = it.entry, it.body, it.manifest
    assert isinstance(body, VersionBody) and m is not None and e.key is not None
    assert e.uid is not None
    gone = _gone_stamp(conn, e.bucket)
    if lww.below_gone(it.stamp, gone):
        return 0  # written before a deletion of its bucket: gone with it
    conflicts = 0
    if not _bucket_exists(conn, e.bucket):
        if gone is None:
            # The origin's oplog has a bucket's entries before its versions.
            raise _bad(f"unknown bucket {e.bucket!r}")
        # Written after a delete of its bucket seen here (concurrently, on
        # another site): the bucket lives on, as it does where it was
        # written (lww.bucket_exists), with defaults for what was dropped.
        conflicts += _ensure_bucket(conn, e.bucket, gone)
    if query(conn, "SELECT 1 FROM versions WHERE uid = ?", (e.uid,)):
        return 0  # arrived by another route (a snapshot) under another entry
    waiting = query(conn, "SELECT hlc, site FROM repl_pending_state WHERE uid = ?", (e.uid,))
    pending = bool(waiting)
    state_stamp = (int(waiting[0][0]), str(waiting[0][1])) if waiting else (None, None)
    # A version deleted before it arrived needs no data: it is kept as a
    # DELETED row (a tombstone for the sibling rule), without a manifest.
    refs = [] if pending else _local_chunks(conn, m, chunks)
    # vmeta entries that came before their version (another route): the
    # newest wins, every retention counts.
    blobs = [blob for _, blob in _vmeta_entries(conn, e.uid)] + [body.vmeta]
    values = [decode_vmeta(b) for b in blobs]
    vmeta_given = any(b is not None for b in blobs)
    vmeta_value = _merged_vmeta(values[0], values[1:])
    meta = {k: v for k, v in m.meta.items() if k not in _MANIFEST_OWN_KEYS}
    if body.tombstone:
        meta["tombstone"] = True
    manifest: bytes | None = None
    if not pending:
        # The stamps (and the tombstone flag) a rebuild-index restores come
        # from this manifest record: the entry's, which is what the row
        # holds, never whatever the origin's meta says.
        own_meta = dict(m.meta)
        own_meta.update(
            hlc=e.hlc, site=e.site,
            prev=None if body.prev is None else [body.prev.hlc, body.prev.site],
        )  # fmt: skip
        if body.tombstone:
            own_meta["tombstone"] = True
        try:
            manifest = encode_manifest(
                Manifest(e.bucket, e.key, e.uid, m.size, tuple(refs), own_meta)
            )
        except ValueError as exc:
            raise _bad(f"manifest of {e.uid}: {exc}") from None
    prev = body.prev
    conn.execute(
        "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, state, "
        "delete_marker, hlc, site, prev_hlc, prev_site, state_hlc, state_site, meta, manifest, "
        "vmeta, tag_count, lock_mode, lock_until_ms, legal_hold, tombstone) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.uid, e.bucket, e.key, body.version_id, body.size, body.etag, body.created_ns,
            lww.DELETED if pending else lww.ACTIVE, int(body.delete_marker), e.hlc, e.site,
            None if prev is None else prev.hlc, None if prev is None else prev.site,
            *state_stamp, msgpack.packb(meta, use_bin_type=True), manifest,
            *_vmeta_cols(vmeta_given, vmeta_value), int(body.tombstone),
        ),
    )  # fmt: skip
    conn.execute("DELETE FROM repl_pending_state WHERE uid = ?", (e.uid,))
    if manifest is not None:
        ctx.manifests.append((e.uid, manifest))
        ctx.reference(refs)
        for r in refs:
            conn.execute(
                "INSERT OR IGNORE INTO chunk_index(digest, segment, offset, length) "
                "VALUES (?, ?, ?, ?)",
                (r.digest, r.segment_id, r.offset, r.length),
            )
    return conflicts + recompute_key(conn, e.bucket, e.key)


def _pend(conn: apsw.Connection, it: _Item) -> None:
    """Keep a DELETED state whose version is not here (yet). Of several
    states of one uid the smallest stamp is kept, on every site alike."""
    e = it.entry
    if query(conn, "SELECT 1 FROM versions WHERE uid = ?", (e.uid,)):
        return
    conn.execute(
        "INSERT INTO repl_pending_state(uid, bucket, key, hlc, site) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(uid) DO UPDATE SET hlc = excluded.hlc, site = excluded.site "
        "WHERE (excluded.hlc, excluded.site) < (hlc, site)",
        (e.uid, e.bucket, e.key, e.hlc, e.site),
    )


def _apply_state(
    conn: apsw.Connection, ctx: BatchContext, it: _Item, chunks: dict[bytes, ReplChunk]
) -> int:
    e = it.entry
    assert e.uid is not None and e.key is not None
    rows = query(
        conn,
        "SELECT bucket, key, state, state_hlc, state_site FROM versions WHERE uid = ?",
        (e.uid,),
    )
    if not rows:
        _pend(conn, it)
        return 0
    bucket, key, state = str(rows[0][0]), str(rows[0][1]), str(rows[0][2])
    if state == lww.DELETED:
        # Deleted on several sites: the smallest stamp, as _pend keeps.
        if rows[0][3] is None or it.stamp < (int(rows[0][3]), str(rows[0][4])):
            conn.execute(
                "UPDATE versions SET state_hlc = ?, state_site = ? WHERE uid = ?",
                (e.hlc, e.site, e.uid),
            )
        return 0
    with _lock_may_refuse(conn, "repl_state") as refused:
        conn.execute(
            "UPDATE versions SET state = 'DELETED', state_hlc = ?, state_site = ? WHERE uid = ?",
            (e.hlc, e.site, e.uid),
        )
    if refused:
        return 1
    return recompute_key(conn, bucket, key)


def _apply_vmeta(
    conn: apsw.Connection, ctx: BatchContext, it: _Item, chunks: dict[bytes, ReplChunk]
) -> int:
    e, body = it.entry, it.body
    assert isinstance(body, VmetaBody) and e.uid is not None
    rows = query(conn, "SELECT vmeta FROM versions WHERE uid = ?", (e.uid,))
    if not rows:
        return 0  # the version, when it comes, takes the entries from the oplog
    stored = None if rows[0][0] is None else bytes(rows[0][0])
    current = decode_vmeta(stored)
    incoming = decode_vmeta(body.vmeta)
    entries = _vmeta_entries(conn, e.uid)  # this entry is among them
    if entries and entries[0][0] > it.stamp:
        # A newer value was applied already: it stays, but this one's
        # retention still counts.
        value = _merged_vmeta(current, [incoming])
    else:
        value = _merged_vmeta(incoming, [current])
    given = stored is not None or body.vmeta is not None
    cols = _vmeta_cols(given, value)
    if cols[0] == stored:
        return 0
    with _lock_may_refuse(conn, "repl_vmeta") as refused:
        conn.execute(
            "UPDATE versions SET vmeta = ?, tag_count = ?, lock_mode = ?, lock_until_ms = ?, "
            "legal_hold = ? WHERE uid = ?",
            (*cols, e.uid),
        )
    return 1 if refused else 0


def _apply_kek(
    conn: apsw.Connection, ctx: BatchContext, it: _Item, chunks: dict[bytes, ReplChunk]
) -> int:
    body = it.body
    assert isinstance(body, KekBody)
    conn.execute(
        "INSERT OR IGNORE INTO sse_keks(id, wrapped, master_id, created_ns) VALUES (?, ?, ?, ?)",
        (body.id, body.wrapped, body.master_id, body.created_ns),
    )
    return 0


# ---- buckets -------------------------------------------------------------------


def _stamp_ns(stamp: lww.Stamp) -> int:
    return hlc_rules.physical_ms(stamp[0]) * 1_000_000


def _ensure_bucket(conn: apsw.Connection, bucket: str, stamp: lww.Stamp) -> bool:
    """Create the bucket row with defaults if absent; True if created.
    ``stamp``: the bucket's gone stamp if it has one (every site then
    derives the same creation time), else the creating entry's."""
    if _bucket_exists(conn, bucket):
        return False
    conn.execute(
        "INSERT INTO buckets(name, created_ns, versioning) VALUES (?, ?, 'unversioned')",
        (bucket, _stamp_ns(stamp)),
    )
    return True


def _set_column(conn: apsw.Connection, bucket: str, field: str, value: str | int | None) -> None:
    if field not in BUCKET_FIELDS:  # checked at decoding; the name goes into SQL
        raise _bad(f"unknown bucket field {field!r}")
    if field == "created_ns" and value is None:
        return  # NOT NULL: the row keeps the creation time it has
    try:
        conn.execute(f"UPDATE buckets SET {field} = ? WHERE name = ?", (value, bucket))
    except apsw.ConstraintError as exc:
        raise _bad(f"bucket {field}: {exc}") from None


def _apply_bucket(
    conn: apsw.Connection, ctx: BatchContext, it: _Item, chunks: dict[bytes, ReplChunk]
) -> int:
    e, body = it.entry, it.body
    assert isinstance(body, BucketBody)
    gone = _gone_stamp(conn, e.bucket)
    if lww.below_gone(it.stamp, gone):
        return 0
    rows = query(
        conn,
        "SELECT hlc, site FROM bucket_stamps WHERE bucket = ? AND field = ?",
        (e.bucket, body.field),
    )
    old = (int(rows[0][0]), str(rows[0][1])) if rows else None
    if not lww.newer(it.stamp, old):
        return 0
    conn.execute(
        "INSERT INTO bucket_stamps(bucket, field, hlc, site, value) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(bucket, field) DO UPDATE SET hlc = excluded.hlc, site = excluded.site, "
        "value = excluded.value",
        (e.bucket, body.field, e.hlc, e.site, body.value),
    )
    created = _ensure_bucket(conn, e.bucket, it.stamp if gone is None else gone)
    _set_column(conn, e.bucket, body.field, body.value)
    # A bucket that comes back after a delete seen here is worth a look.
    return 1 if created and gone is not None else 0


_BELOW: Final = "(hlc < ? OR (hlc = ? AND site < ?))"


def _apply_bucket_gone(
    conn: apsw.Connection, ctx: BatchContext, it: _Item, chunks: dict[bytes, ReplChunk]
) -> int:
    e = it.entry
    bucket = e.bucket
    gone = _gone_stamp(conn, bucket)
    if gone is None or it.stamp > gone:
        gone = it.stamp
        conn.execute(
            "INSERT INTO bucket_stamps(bucket, field, hlc, site, value) VALUES (?, ?, ?, ?, NULL) "
            "ON CONFLICT(bucket, field) DO UPDATE SET hlc = excluded.hlc, site = excluded.site",
            (bucket, GONE_FIELD, gone[0], gone[1]),
        )
    below = (gone[0], gone[0], gone[1])
    # Registers older than the delete go back to their defaults.
    for (field,) in query(
        conn,
        f"SELECT field FROM bucket_stamps WHERE bucket = ? AND field != ? AND {_BELOW}",
        (bucket, GONE_FIELD, *below),
    ):
        conn.execute("DELETE FROM bucket_stamps WHERE bucket = ? AND field = ?", (bucket, field))
        if _bucket_exists(conn, bucket):
            default = _stamp_ns(gone) if field == "created_ns" else _FIELD_DEFAULTS.get(str(field))
            _set_column(conn, bucket, str(field), default)
    # Versions written before the delete go with the bucket, as at the origin.
    conflicts = 0
    old = query(
        conn, f"SELECT uid, key FROM versions WHERE bucket = ? AND {_BELOW}", (bucket, *below)
    )
    with _lock_may_refuse(conn, "repl_gone") as refused:
        for uid, _key in old:
            conn.execute("DELETE FROM versions WHERE uid = ?", (uid,))
    if refused:
        conflicts += 1
    else:
        ctx.unlink_after_commit.extend(str(u) for u, _ in old)
        for key in sorted({str(k) for _, k in old}):
            recompute_key(conn, bucket, key)
    registers = query(
        conn, "SELECT 1 FROM bucket_stamps WHERE bucket = ? AND field != ?", (bucket, GONE_FIELD)
    )
    keep = registers or query(conn, "SELECT 1 FROM versions WHERE bucket = ? LIMIT 1", (bucket,))
    if keep:
        return conflicts + (1 if _bucket_exists(conn, bucket) else 0)
    # Uploads in progress here go with the bucket: they are this site's
    # alone, and keeping the bucket for them would leave the sites
    # disagreeing for good. Their parts' chunks become garbage for GC.
    if query(conn, "SELECT 1 FROM uploads WHERE bucket = ? LIMIT 1", (bucket,)):
        conflicts += 1
        conn.execute(
            "DELETE FROM parts WHERE upload_id IN (SELECT upload_id FROM uploads WHERE bucket = ?)",
            (bucket,),
        )
        conn.execute("DELETE FROM uploads WHERE bucket = ?", (bucket,))
    conn.execute("DELETE FROM current WHERE bucket = ?", (bucket,))
    conn.execute("DELETE FROM completed_uploads WHERE bucket = ?", (bucket,))
    conn.execute("DELETE FROM buckets WHERE name = ?", (bucket,))
    return conflicts


_Apply = Callable[[apsw.Connection, BatchContext, _Item, dict[bytes, ReplChunk]], int]
_APPLY: Final[dict[type[Any], _Apply]] = {
    VersionBody: _apply_version,
    StateBody: _apply_state,
    VmetaBody: _apply_vmeta,
    BucketBody: _apply_bucket,
    BucketGoneBody: _apply_bucket_gone,
    KekBody: _apply_kek,
}

APPLY: Final[Mutations] = {ReplApply: apply_repl}
