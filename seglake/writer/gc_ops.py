"""Segment garbage collection inside the writer: deleting dead segments and
moving live chunks out of mostly-dead ones (SPEC §5, §8).

The writer owns segments and the ``segments`` table, so every destructive
step happens here, serialised by one lock, and re-checks liveness inside
its own transaction instead of trusting the caller's (possibly stale) plan.

Ordering kept for deleting segments (``delete_segments``):
1. mark the candidates "deleting": from now on a data mutation that names a
   chunk in one of them is refused before it is queued (``check_chunks``),
   and every mutation queued earlier is applied before ours;
2. one transaction (``gc_drop_segments``): liveness recomputed from every
   kept version and open part; only SEALED, dead, old-enough segments that
   are not the newest id are deleted from ``segments``; DELETED version rows
   are purged (their PURGED state records go into the batch). A dropped
   segment also holds manifest and metadata records (segment format 2):
   each is copied forward as the database has it now (a kept version's
   manifest bytes; the current or PURGED state of a uid; a kept version's
   current metadata (format 3: its version-meta record, nothing for a uid
   without a row); the current or gone state of a bucket), appended to the open segment by the committer
   and flushed before COMMIT like any batch's records, so what
   ``rebuild-index`` replays never depends on a deleted file;
3. after COMMIT, unlink each file and fsync the segments directory. A crash
   before the unlink leaves a file without a row: recovery seals it as an
   empty-of-references segment and the next run deletes it again.

Ordering kept for moving chunks (``rewrite_chunks``):
1. read each live chunk of the old segment and verify its BLAKE3 (a bad
   chunk is never copied; its segment stays);
2. append the copies to the open segment like any write;
3. one batch (``gc_repoint``): every kept manifest and part that references
   a moved chunk is re-pointed in the database, and each re-pointed
   manifest (same uid, new bytes) is a manifest record of the batch:
   appended after the copies, flushed with them, then COMMIT;
4. once no live chunk is left, the segment is deleted as above.
Replay keeps the newest record per uid, so the copy wins over the old one;
a duplicate left by a crash (same uid, same bytes) changes nothing.

Segment ids are never reused: recovery numbers new segments after the
highest id it can still see, so the newest segment is never deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar

import apsw
import trio

from seglake import failpoints
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.format.layout import segment_file_name
from seglake.format.manifest import ChunkRef, decode_manifest, encode_manifest
from seglake.format.records import KIND_KEY, KIND_STATE, KIND_VERSION_META, decode_record
from seglake.format.segment import (
    CHUNK_SIZE,
    TYPE_BUCKET,
    TYPE_CHUNK,
    TYPE_KEY,
    TYPE_MANIFEST,
    TYPE_STATE,
    TYPE_VERSION_META,
)
from seglake.ipc.messages import (
    Chunk,
    GcDeleted,
    GcDeleteSegments,
    GcDropped,
    GcDropSegments,
    GcRepoint,
    GcRepointed,
    GcRewriteChunks,
    GcRewritten,
    MarkDamaged,
    Request,
)
from seglake.meta.live_chunks import (
    ChunkKey,
    LiveChunks,
    collect_live_chunks,
    decode_part_chunks,
    encode_part_chunks,
)
from seglake.meta.oplog_horizon import PURGEABLE, tombstone_horizon
from seglake.meta.schema import open_read, query
from seglake.writer import chunk_index, fileio
from seglake.writer.ops import BatchContext, Mutations
from seglake.writer.record_journal import TOUCH_FN
from seglake.writer.segments import EXIT_FATAL, SegmentStore, WriterFatal

log = logging.getLogger("seglake.writer.gc")

# One request's bounds: each GC step must finish well inside the admin
# relay's 10 s call timeout even on a slow disk.
MAX_SEGMENTS_PER_CALL: Final = 256
MAX_REWRITE_BYTES_PER_CALL: Final = 64 * 1024 * 1024
MAX_PURGE_PER_CALL: Final = 200
QUIESCED: Final = "quiesced"
_T = TypeVar("_T")


# ---- mutations (run in the committer's transaction) -------------------------


def apply_gc_drop_segments(
    conn: apsw.Connection, ctx: BatchContext, a: GcDropSegments
) -> GcDropped:
    """Delete the rows of the listed segments that are dead *now*."""
    ids = _int_list(a.segments)
    below = a.below
    sealed_before = a.sealed_before_ns
    # A purge-only call deletes no segment: skip the full reference scan.
    live = collect_live_chunks(conn) if ids else LiveChunks()
    if live.problems:
        raise S3Error(
            "InternalError",
            message=f"gc refused: liveness is unknown ({len(live.problems)} unreadable "
            f"reference(s), first: {live.problems[0]})",
        )
    # DELETED rows are kept only until GC (see ops.py). Bounded per call:
    # each purge also appends a metadata record. Purged before the segments
    # are dropped, so their manifests are not copied forward for nothing.
    # Only below the tombstone horizon (meta/oplog_horizon.py): the row and
    # its stamps are what keeps a late, older put of the version from
    # coming back; its chunks are reclaimed above either way. The hidden
    # tombstone of an unversioned DELETE (never current, no data) goes by
    # the same rule, or every key ever deleted would keep a row for good.
    limit = max(0, min(a.purge_limit, MAX_PURGE_PER_CALL))
    horizon = tombstone_horizon(conn, now_ms=time.time_ns() // 1_000_000,
                                retention_ms=a.retention_ms)  # fmt: skip
    uids = [
        str(r[0])
        for r in query(
            conn,
            f"SELECT uid FROM versions WHERE {PURGEABLE} LIMIT ?",
            (horizon, horizon, limit),
        )
    ]
    for uid in uids:
        conn.execute("DELETE FROM versions WHERE uid = ? AND (state = 'DELETED' OR tombstone = 1)",
                     (uid,))  # fmt: skip
    deleted: list[int] = []
    skipped: dict[str, str] = {}
    for sid in ids:
        rows = query(conn, "SELECT state, sealed_ns, size FROM segments WHERE id = ?", (sid,))
        reason = ""
        if not rows:
            reason = "no such segment"
        elif rows[0][0] != "SEALED":
            reason = "not sealed"
        elif sid >= below:
            reason = "newest segment (kept so its id is never reused)"
        elif sealed_before and int(rows[0][1] or 0) > sealed_before:
            reason = "younger than the minimum age"
        elif sid in live.by_segment:
            reason = f"{len(live.by_segment[sid])} live chunk(s)"
        if reason:
            skipped[str(sid)] = reason
            continue
        try:
            _copy_records_forward(conn, ctx, a.segments_dir, sid)
        except (OSError, FormatError) as exc:
            skipped[str(sid)] = f"its records cannot be read: {exc}"
            continue
        conn.execute("DELETE FROM segments WHERE id = ?", (sid,))
        deleted.append(sid)
    chunk_index.drop_segments(conn, deleted, live)
    remaining = int(
        query(
            conn,
            f"SELECT count(*) FROM versions WHERE {PURGEABLE}",
            (horizon, horizon),
        )[0][0]
    )
    return GcDropped(
        deleted=deleted, skipped=skipped, purged_versions=len(uids), purge_remaining=remaining
    )


def apply_gc_repoint(conn: apsw.Connection, ctx: BatchContext, a: GcRepoint) -> GcRepointed:
    """Re-point every kept manifest and part from moved chunks to their copies."""
    moves: dict[ChunkKey, ChunkRef] = {}
    for seg, off, length, digest, new_seg, new_off in a.moves:
        moves[(seg, off, length, digest)] = ChunkRef(new_seg, new_off, length, digest)
    old_segments = {k[0] for k in moves}
    chunk_index.repoint(conn, moves)
    pending: list[str] = []
    versions = 0
    rows = query(
        conn,
        "SELECT id, uid, manifest FROM versions WHERE state != 'DELETED' AND delete_marker = 0 "
        "AND manifest IS NOT NULL",
    )
    for row_id, uid, raw in rows:
        where = f"meta.db:versions[{uid}]"
        try:
            quick = decode_manifest(bytes(raw), path=where, with_meta=False)
        except FormatError as exc:
            raise S3Error("InternalError", message=f"gc-rewrite refused: {exc}") from None
        if not any(c.segment_id in old_segments for c in quick.chunks):
            continue
        m = decode_manifest(bytes(raw), path=where)
        chunks = tuple(moves.get((c.segment_id, c.offset, c.length, c.digest), c) for c in m.chunks)
        if chunks == m.chunks:
            continue
        data = encode_manifest(replace(m, chunks=chunks))
        conn.execute("UPDATE versions SET manifest = ? WHERE id = ?", (data, int(row_id)))
        ctx.manifests.append((str(uid), data))
        pending.append(str(uid))
        ctx.reference([c for c in chunks if c.segment_id not in old_segments])
        versions += 1
    parts = 0
    for upload_id, number, raw in query(conn, "SELECT upload_id, part_number, chunks FROM parts"):
        refs = decode_part_chunks(raw)
        if refs is None:
            raise S3Error(
                "InternalError",
                message=f"gc-rewrite refused: part {number} of {upload_id} is unreadable",
            )
        if not any(r[0] in old_segments for r in refs):
            continue
        new_refs: list[ChunkKey] = []
        for r in refs:
            to = moves.get(r)
            new_refs.append(r if to is None else (to.segment_id, to.offset, to.length, to.digest))
        if new_refs == refs:
            continue
        conn.execute(
            "UPDATE parts SET chunks = ? WHERE upload_id = ? AND part_number = ?",
            (encode_part_chunks(new_refs), upload_id, number),
        )
        ctx.reference([ChunkRef(*r) for r in new_refs if r[0] not in old_segments])
        parts += 1
    return GcRepointed(versions=versions, parts=parts, pending=pending)


def _copy_records_forward(conn: apsw.Connection, ctx: BatchContext, segdir: str, sid: int) -> None:
    """Re-append, as the database has it now, every manifest and metadata
    record segment ``sid`` holds (see the top). Read from the footer's
    typed entries: a sealed segment's metadata without reading its chunks."""
    path = Path(segdir) / segment_file_name(sid)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # deleted earlier, row left by a crash: nothing to copy
    try:
        footer = segfmt.read_footer(fd, os.fstat(fd).st_size, path=str(path))
        if footer is None:
            raise FormatError(str(path), 0, "sealed segment without a footer")
        for rec in footer.records:
            if rec.rtype == TYPE_CHUNK:
                continue
            data = segfmt.read_record_data(fd, rec, path=str(path))
            if rec.rtype == TYPE_MANIFEST:
                uid = decode_manifest(data, path=str(path), with_meta=False).version_id
                rows = query(conn, "SELECT manifest FROM versions WHERE uid = ?", (uid,))
                if rows and rows[0][0] is not None:
                    ctx.manifests.append((uid, bytes(rows[0][0])))
                # No row: a purged version (its PURGED record is copied with
                # its state records) or a batch that never committed.
            elif rec.rtype in (TYPE_BUCKET, TYPE_STATE, TYPE_VERSION_META, TYPE_KEY):
                kind, body = decode_record(data, path=f"{path}@{rec.offset}")
                if kind == KIND_KEY:
                    # The KEK as sse_keks has it now (a rotation may have
                    # re-wrapped it since this record was written).
                    conn.execute(f"SELECT {TOUCH_FN}('k', ?)", (str(body["id"]),))
                elif kind == KIND_STATE:
                    conn.execute(f"SELECT {TOUCH_FN}('v', ?)", (str(body["uid"]),))
                elif kind == KIND_VERSION_META:
                    # As the row has it now; a uid without a row gets nothing
                    # (its PURGED state record is carried with the states).
                    conn.execute(f"SELECT {TOUCH_FN}('m', ?)", (str(body["uid"]),))
                else:
                    conn.execute(f"SELECT {TOUCH_FN}('b', ?)", (str(body["name"]),))
            # Key records (type 5) are the SSE work's to carry forward.
    finally:
        os.close(fd)


def _int_list(ids: list[int]) -> list[int]:
    if len(ids) > MAX_SEGMENTS_PER_CALL:
        raise S3Error(
            "InvalidArgument", message=f"at most {MAX_SEGMENTS_PER_CALL} segment ids per call"
        )
    for item in ids:
        if item <= 0:
            raise S3Error("InvalidArgument", message=f"bad segment id {item!r}")
    return ids


APPLY: Final[Mutations] = {
    GcDropSegments: apply_gc_drop_segments,
    GcRepoint: apply_gc_repoint,
}


# ---- the writer-side driver ------------------------------------------------------


class SegmentGC:
    """GC requests the writer serves (relayed from the CLI by maintenance)."""

    def __init__(self, cfg: Config, store: SegmentStore, committer: Any, quiesce: Any) -> None:
        self.cfg = cfg
        self.store = store
        self.committer = committer
        self.quiesce = quiesce
        self._lock = trio.Lock()
        self._reader: apsw.Connection | None = None
        # Segments a GC transaction may delete right now, and ones deleted
        # whose files may still exist: no new reference to them is accepted.
        self.deleting: set[int] = set()
        self.gone: set[int] = set()

    # ---- guards ----------------------------------------------------------
    def check_chunks(self, chunks: list[Chunk]) -> None:
        """Refuse a data mutation whose chunks live in a collected segment.

        A frontend may send chunk references it took earlier (appends of a
        slow upload, UploadPartCopy's source); if GC removed that segment
        meanwhile, committing them would create a version without data.
        """
        segs = {c.segment_id for c in chunks}
        if not segs:
            return
        open_ids = {s.segment_id for s in self.store.to_seal}
        if self.store.current is not None:
            open_ids.add(self.store.current.segment_id)
        for sid in segs - open_ids:
            if (
                sid in self.deleting
                or sid in self.gone
                or not (self.store.dir / segment_file_name(sid)).exists()
            ):
                raise S3Error(
                    "ServiceUnavailable",
                    message="data this request referenced was garbage-collected; retry the request",
                )

    def _require_allowed(self, yes: bool) -> None:
        if self.quiesce.state != QUIESCED and not yes:
            raise S3Error(
                "InvalidRequest",
                message="segment GC runs only in maintenance mode (quiesced) or with --yes",
            )

    def _read_conn(self) -> apsw.Connection:
        if self._reader is None:
            self._reader = open_read(str(self.cfg.db_path))
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ---- delete ----------------------------------------------------------
    async def delete_segments(self, msg: GcDeleteSegments) -> GcDeleted:
        self._require_allowed(msg.yes)
        ids = _int_list(msg.segments)
        async with self._lock:
            # Shielded: once started, a step runs to its end even if the
            # caller goes away, so no half-finished state outlives it.
            with trio.CancelScope(shield=True):
                result = await self._delete(
                    ids, msg.sealed_before_ns, msg.purge_limit, msg.retention_ms
                )
        return result

    async def _delete(
        self, ids: list[int], sealed_before_ns: int, purge_limit: int, retention_ms: int
    ) -> GcDeleted:
        open_ids = {s.segment_id for s in self.store.to_seal}
        if self.store.current is not None:
            open_ids.add(self.store.current.segment_id)
        ids = [i for i in ids if i not in open_ids]
        self.deleting.update(ids)
        try:
            result: GcDropped = await self.committer.submit(
                GcDropSegments(
                    segments=ids,
                    # The last id handed out stays, so recovery never reuses it.
                    below=self.store.next_id - 1,
                    sealed_before_ns=sealed_before_ns,
                    purge_limit=purge_limit,
                    retention_ms=retention_ms,
                    segments_dir=str(self.store.dir),
                )
            )
        finally:
            self.deleting.difference_update(ids)
        self.gone.update(result.deleted)
        failpoints.hit("gc_drop_committed")
        freed = await _fatal(self._unlink_segments, result.deleted)
        return GcDeleted(
            deleted=result.deleted, skipped=result.skipped, purged_versions=result.purged_versions,
            purge_remaining=result.purge_remaining, freed_bytes=freed,
        )  # fmt: skip

    def _unlink_segments(self, ids: list[int]) -> int:
        freed = 0
        for sid in ids:
            path = self.store.dir / segment_file_name(sid)
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                fileio.unlink(path, "gc_segment.unlink")
                failpoints.hit("gc_segment_unlinked")
        if ids:
            fileio.fsync_dir(self.store.dir, "gc_segments_dir.fsync")
        log.info("gc: deleted %d segment(s), %d bytes", len(ids), freed)
        return freed

    # ---- damage reports --------------------------------------------------
    async def confirm_damage(self, msg: MarkDamaged) -> bool:
        """Should a ``mark_damaged`` report be applied?

        A reader (a GET, scrub) that took a version's chunk list before
        gc-rewrite moved it finds the old segment gone and reports damage
        that is not there. Once this writer has deleted segments, a report is
        applied only if the version's current chunks really fail to read.
        """
        uid = msg.uid
        if not (self.gone or self.deleting):
            return True
        async with self._lock:
            ok = await trio.to_thread.run_sync(self._version_reads_back, uid)
        if ok:
            log.warning("gc: not marking %s DAMAGED: its data reads back (moved by GC)", uid)
        return not ok

    def _version_reads_back(self, uid: str) -> bool:
        rows = query(self._read_conn(), "SELECT manifest FROM versions WHERE uid = ?", (uid,))
        if not rows or rows[0][0] is None:
            return False
        try:
            m = decode_manifest(bytes(rows[0][0]), path=f"meta.db:versions[{uid}]", with_meta=False)
            fds: dict[int, int] = {}
            try:
                for c in m.chunks:
                    fd = fds.get(c.segment_id)
                    if fd is None:
                        path = self.store.dir / segment_file_name(c.segment_id)
                        fd = fds[c.segment_id] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    segfmt.read_record(fd, c.offset, c.length, c.digest, path=str(c.segment_id))
            finally:
                for fd in fds.values():
                    os.close(fd)
        except (FormatError, OSError, ValueError):
            return False
        return True

    # ---- rewrite ---------------------------------------------------------
    async def rewrite_chunks(self, msg: GcRewriteChunks) -> GcRewritten:
        """Move up to ``max_bytes`` of one segment's live chunks; then, once
        none is left, delete the segment."""
        self._require_allowed(msg.yes)
        sid = msg.segment
        if sid <= 0:
            raise S3Error("InvalidArgument", message="segment must be a segment id")
        max_bytes = msg.max_bytes
        if max_bytes <= 0:
            max_bytes = MAX_REWRITE_BYTES_PER_CALL
        max_bytes = min(max_bytes, MAX_REWRITE_BYTES_PER_CALL)
        async with self._lock:
            with trio.CancelScope(shield=True):
                result = await self._rewrite(sid, max_bytes)
        return result

    async def _rewrite(self, sid: int, max_bytes: int) -> GcRewritten:
        state, live = await trio.to_thread.run_sync(self._live_in, sid)
        if state != "SEALED":
            raise S3Error("InvalidArgument", message=f"segment {sid} is not a sealed segment")
        keys = sorted(live, key=lambda k: k[1])
        batch: list[ChunkKey] = []
        size = 0
        for k in keys:
            if batch and size + k[2] > max_bytes:
                break
            batch.append(k)
            size += k[2]
        datas, damaged = await trio.to_thread.run_sync(self._read_chunks, sid, batch)
        moves: list[tuple[int, int, int, bytes, int, int]] = []
        moved_bytes = 0
        for k, data in zip(batch, datas, strict=True):
            if data is None:
                continue
            ref = self.store.append(k[3], data)
            moves.append((k[0], k[1], k[2], k[3], ref.segment_id, ref.offset))
            moved_bytes += k[2]
        if self.store.to_seal:
            self.committer.poke()
        failpoints.hit("gc_rewrite_appended")
        repointed = GcRepointed()
        if moves:
            repointed = await self.committer.submit(GcRepoint(moves=moves), moved_bytes)
            failpoints.hit("gc_repoint_committed")
        remaining = len(keys) - len(moves)
        dropped = GcDeleted()
        if remaining == 0:
            dropped = await self._delete([sid], 0, 0, 0)
        return GcRewritten(
            segment=sid, moved_chunks=len(moves), moved_bytes=moved_bytes,
            remaining_chunks=remaining, damaged=damaged,
            versions_repointed=repointed.versions, parts_repointed=repointed.parts,
            deleted=dropped.deleted, freed_bytes=dropped.freed_bytes, skipped=dropped.skipped,
        )  # fmt: skip

    def _live_in(self, sid: int) -> tuple[str | None, set[ChunkKey]]:
        conn = self._read_conn()
        conn.execute("BEGIN")
        try:
            rows = query(conn, "SELECT state FROM segments WHERE id = ?", (sid,))
            live = collect_live_chunks(conn, [sid])
        finally:
            conn.execute("COMMIT")
        if live.problems:
            raise S3Error(
                "InternalError",
                message=f"gc-rewrite refused: liveness is unknown ({live.problems[0]})",
            )
        return (str(rows[0][0]) if rows else None), set(live.by_segment.get(sid, {}))

    def _read_chunks(
        self, sid: int, keys: list[ChunkKey]
    ) -> tuple[list[bytes | None], list[dict[str, Any]]]:
        path = self.store.dir / segment_file_name(sid)
        out: list[bytes | None] = []
        damaged: list[dict[str, Any]] = []
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for _seg, off, length, digest in keys:
                try:
                    if not 0 < length <= CHUNK_SIZE:
                        raise ValueError(f"chunk length {length} out of range")
                    out.append(segfmt.read_record(fd, off, length, digest, path=str(path)))
                except (FormatError, ValueError, OSError) as exc:
                    # Never copy bytes that fail their checksum: the chunk
                    # stays where it is (so does its segment) for scrub.
                    log.error("gc-rewrite: not moving a bad chunk: %s", exc)
                    damaged.append({"segment": sid, "offset": off, "reason": str(exc)})
                    out.append(None)
        finally:
            os.close(fd)
        return out, damaged


async def _fatal(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a GC file step after COMMIT (or before any); an I/O error there
    leaves directory state unknown, so like a failed segment fsync it stops
    the writer here, before anything else is acknowledged, and the
    supervisor restarts it into recovery."""
    try:
        return await trio.to_thread.run_sync(fn, *args)
    except (OSError, WriterFatal) as exc:
        log.critical("writer stopped: gc file step failed: %r", exc)
        os._exit(EXIT_FATAL)


async def _refuse(msg: Request[Any]) -> Any:
    raise S3Error("AccessDenied", message=f"{msg.name} is applied only by the writer's own GC")


def gc_handlers(gc: SegmentGC) -> dict[type[Request[Any]], Callable[[Any], Awaitable[Any]]]:
    """The GC requests a peer may send, by type. The two mutations are listed
    to be refused: no IPC client may apply them without the checks above."""
    return {
        GcDeleteSegments: gc.delete_segments,
        GcRewriteChunks: gc.rewrite_chunks,
        GcDropSegments: _refuse,
        GcRepoint: _refuse,
    }


async def handle_request(gc: SegmentGC, msg: Request[Any]) -> Any:
    """Serve one GC request (the embedded writer of ``seglake gc-*``)."""
    handler: Callable[[Any], Awaitable[Any]] = gc_handlers(gc).get(type(msg), _refuse)
    return await handler(msg)
