"""Group commit: the durability barrier (segment format 2: two flushes).

Ordering kept for every batch, and the reason a reply is safe to send:

1. seal every rotated segment that holds a chunk of the batch (footer
   written, fsynced, closed);
2. BEGIN; apply each mutation under its own SAVEPOINT (one refused mutation
   does not fail the others);
3. append the batch's manifest records and metadata records (the state the
   transaction now holds for every touched bucket and version) to the open
   segment, after the chunks the frontends appended while bodies streamed;
4. ONE fdatasync of the open segment: the batch's chunks and records are
   durable together (a chunk still in a segment rotated meanwhile was
   covered by step 1);
5. COMMIT (WAL, synchronous=FULL: returns after the WAL is on disk), with
   ``segments.committed_end`` raised past the batch's records;
6. only now set the results that the IPC handlers send back.

No file is created per version and no directory is fsynced here (a new
segment's directory entry is made durable when the segment is created).
The database is the authority: a crash between 4 and 5 leaves durable
records without rows, for a request that was never answered; recovery
appends the state the database kept after them (``segments.py``), so a
``rebuild-index`` replays to the same store. The crash argument in full is
in ``docs/architecture.md``.

Batching is leader/follower: the next batch starts as soon as the previous
one finished, and takes every mutation that queued up meanwhile (bounded by
``sync_bytes``). A lone request is committed at once; a busy server shares
one flush and one WAL commit among many requests.

A failed fsync is never retried or trusted (the kernel may have dropped the
dirty pages): ``WriterFatal`` is raised and the process exits, so the
supervisor restarts it into recovery.
"""

from __future__ import annotations

import errno
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import apsw
import trio

from seglake import failpoints
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.segment import TYPE_MANIFEST
from seglake.ipc.messages import Request
from seglake.meta.schema import STORE_FORMAT_3, STORE_FORMAT_SETTING, get_setting, set_setting
from seglake.metrics.histogram import COUNT, Histogram
from seglake.protocol.hlc import Hlc
from seglake.writer import chunk_index, fileio, lock_rules, oplog_journal
from seglake.writer.mutations import APPLY
from seglake.writer.oplog_journal import HLC_SETTING, OplogJournal
from seglake.writer.ops import BatchContext, VersionClock
from seglake.writer.record_journal import RecordJournal
from seglake.writer.segments import (
    OpenSegment,
    SealResult,
    SegmentStore,
    WriterFatal,
    seal,
)

log = logging.getLogger(__name__)
R = TypeVar("R")


def hlc_wall(cfg: Config) -> Callable[[], int]:
    """The HLC's physical clock: wall milliseconds, shifted by
    ``--test-clock-offset-ms`` in test mode only."""
    offset = cfg.test_clock_offset_ms if failpoints.test_mode() else 0

    def now_ms() -> int:
        return time.time_ns() // 1_000_000 + offset

    return now_ms


# Passive WAL checkpoints run between batches at most this often, so the WAL
# stays small without adding a checkpoint to any client's commit latency.
CHECKPOINT_INTERVAL_S = 2.0
# A batch this small, with nothing else queued, runs on the event loop's
# thread instead of a worker thread.
INLINE_BATCH_MAX = 1
# What `seglake status` reports as the barrier.
BARRIER: Final = "segment fdatasync + WAL commit (segment format 2)"


@dataclass
class Mutation:
    msg: Request[Any]
    nbytes: int = 0
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    batches: int = 0
    mutations: int = 0
    last_batch_size: int = 0
    last_batch_seconds: float = 0.0
    batch_size: Histogram = field(default_factory=lambda: Histogram(COUNT))
    commit_seconds: Histogram = field(default_factory=Histogram)  # a whole batch
    # A batch's durability waits: the segment fsync (and seals), then the
    # manifests' fsyncs or syncfs and their directories' fsyncs.
    fsync_seconds: Histogram = field(default_factory=Histogram)

    def counters(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "mutations": self.mutations,
            "batch_size": self.batch_size.wire(),
            "commit_seconds": self.commit_seconds.wire(),
            "fsync_seconds": self.fsync_seconds.wire(),
        }


class Committer:
    def __init__(self, cfg: Config, conn: apsw.Connection, store: SegmentStore) -> None:
        self.cfg = cfg
        self.conn = conn
        self.store = store
        self.clock = VersionClock(int(get_setting(conn, "clock_ns") or 0))
        # Whether settings['store_format'] already says 3 (see _apply_batch).
        self._format3 = get_setting(conn, STORE_FORMAT_SETTING) == STORE_FORMAT_3
        self._queue: deque[Mutation] = deque()
        self._wake = trio.Event()
        self._last_checkpoint = time.monotonic()
        self._closing = False
        self._drained = trio.Event()
        self.stats = BatchStats()
        self._flush_s = 0.0  # the last batch's segment fdatasync time, for stats
        self.in_flight = 0
        self.records = RecordJournal()
        self.records.install(conn)
        # Replication (docs/design-replication.md): the site id, the HLC
        # (never below what was persisted), the oplog triggers, and the
        # one-time set-up of a store older than them.
        self.site = oplog_journal.choose_site_id(conn, cfg.site_id)
        self.hlc = Hlc(hlc_wall(cfg), int(get_setting(conn, HLC_SETTING) or 0))
        self.hlc.start()
        self.oplog = OplogJournal()
        self.oplog.install(conn)
        oplog_journal.start(conn, self.hlc, self.site)
        chunk_index.backfill(conn)
        # Object Lock's clock and backstop triggers (seglake/writer/lock_rules.py).
        lock_rules.GUARD.install(conn)
        self.barrier = BARRIER

    async def submit(self, msg: Request[R], nbytes: int = 0) -> R:
        if type(msg) not in APPLY:
            raise S3Error("InternalError", message=f"unknown mutation {msg.name}")
        if self._closing:
            raise S3Error("ServiceUnavailable", message="the writer is shutting down")
        m = Mutation(msg, nbytes)
        self._queue.append(m)
        self._wake.set()
        self.in_flight += 1
        try:
            # Not cancellable: once queued, the mutation will be committed or
            # refused, and its caller learns which.
            with trio.CancelScope(shield=True):
                await m.done.wait()
        finally:
            self.in_flight -= 1
            if self._closing and self.in_flight == 0:
                self._drained.set()
        if m.error is not None:
            raise m.error
        result: R = m.result
        return result

    def poke(self) -> None:
        """Wake the loop (e.g. a segment waits to be sealed)."""
        self._wake.set()

    async def drain(self) -> None:
        """Refuse new mutations and wait until every queued one is done."""
        self._closing = True
        self._wake.set()
        if self.in_flight:
            await self._drained.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self.cfg.sync_interval > 0 and self._queue:
                await trio.sleep(self.cfg.sync_interval)
            while self._queue or self.store.to_seal:
                await self._one_batch()
            if time.monotonic() - self._last_checkpoint >= CHECKPOINT_INTERVAL_S:
                await trio.to_thread.run_sync(self._checkpoint)

    async def _one_batch(self) -> None:
        batch: list[Mutation] = []
        nbytes = 0
        while self._queue and (not batch or nbytes + self._queue[0].nbytes <= self.cfg.sync_bytes):
            m = self._queue.popleft()
            batch.append(m)
            nbytes += m.nbytes
        to_seal = list(self.store.to_seal)
        self.store.to_seal.clear()
        cur = self.store.current
        dirty = cur if cur is not None and cur.dirty else None
        started = time.monotonic()
        try:
            if len(batch) <= INLINE_BATCH_MAX and not to_seal and not self._queue:
                # A lone mutation on a quiet server: the hand-off to a worker
                # thread and back costs more CPU and latency than its fsyncs
                # keep the event loop waiting (nothing else is queued).
                synced = self._run_batch(batch, to_seal, dirty)
            else:
                synced = await trio.to_thread.run_sync(self._run_batch, batch, to_seal, dirty)
        except WriterFatal as exc:
            log.critical("writer cannot guarantee durability, stopping: %s", exc)
            for m in batch:
                m.error = S3Error("InternalError", message="storage failure; write not stored")
                m.done.set()
            raise
        for seg, end in synced:
            seg.synced_end = max(seg.synced_end, end)
        for m in batch:
            m.done.set()
        self.stats.batches += 1
        self.stats.mutations += len(batch)
        self.stats.last_batch_size = len(batch)
        self.stats.last_batch_seconds = time.monotonic() - started
        self.stats.batch_size.observe(len(batch))
        self.stats.commit_seconds.observe(self.stats.last_batch_seconds)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    # ---- runs in a worker thread --------------------------------------
    def _run_batch(
        self, batch: list[Mutation], to_seal: list[OpenSegment], dirty: OpenSegment | None
    ) -> list[tuple[OpenSegment, int]]:
        """One batch through the barrier; returns the (segment, end) pairs it
        made durable."""
        sealed: list[SealResult] = []
        fsync_started = time.monotonic()
        try:
            for seg in to_seal:
                sealed.append(seal(seg))
        except OSError as exc:
            raise WriterFatal(f"segment seal failed: {exc}") from exc
        fsync_s = time.monotonic() - fsync_started

        ctx = BatchContext(self.clock, hlc=self.hlc, site=self.site, oplog=self.oplog)
        self.oplog.reset()
        conn = self.conn
        lock_rules.GUARD.tick()  # one lock-clock reading for the whole batch
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            raise WriterFatal(f"cannot begin transaction: {exc}") from exc
        synced: list[tuple[OpenSegment, int]] = []
        try:
            for i, m in enumerate(batch):
                sp = f"m{i}"
                conn.execute(f"SAVEPOINT {sp}")
                mark = len(ctx.manifests)
                committed = dict(ctx.committed_ends)
                try:
                    name = m.msg.name
                    failpoints.hit(f"apply.{name}")
                    try:
                        m.result = APPLY[type(m.msg)](conn, ctx, m.msg)
                    except apsw.ConstraintError as exc:
                        # An object-lock trigger refused what the mutation
                        # did: that mutation alone fails, as AccessDenied.
                        locked = lock_rules.as_s3_error(exc)
                        if locked is None:
                            raise
                        raise locked from None
                    failpoints.hit(f"applied.{name}")
                    conn.execute(f"RELEASE {sp}")
                except S3Error as exc:
                    conn.execute(f"ROLLBACK TO {sp}")
                    conn.execute(f"RELEASE {sp}")
                    del ctx.manifests[mark:]
                    ctx.committed_ends = committed
                    m.error = exc
            if ctx.to_index:
                chunk_index.add(conn, ctx.to_index)
            # Before the records: a state record carries its oplog stamp.
            self.oplog.flush(conn, self.hlc, self.site)
            synced = self._append_and_flush(ctx, dirty)
            now = time.time_ns()
            for s in sealed:
                conn.execute(
                    "INSERT INTO segments(id, state, size, committed_end, created_ns, sealed_ns, "
                    "footer_digest) VALUES (?, 'SEALED', ?, 0, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                    "SET state = 'SEALED', size = excluded.size, sealed_ns = excluded.sealed_ns, "
                    "footer_digest = excluded.footer_digest",
                    (s.segment_id, s.size, now, now, s.footer_digest),
                )
            for seg_id, end in ctx.committed_ends.items():
                conn.execute(
                    "INSERT INTO segments(id, state, size, committed_end, created_ns) "
                    "VALUES (?, 'OPEN', ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "committed_end = max(committed_end, excluded.committed_end), "
                    "size = max(size, excluded.size)",
                    (seg_id, end, end, now),
                )
            set_setting(conn, "clock_ns", self.clock.last_ns)
            set_setting(conn, HLC_SETTING, self.hlc.last)
            lock_rules.GUARD.persist(conn)
            if ctx.committed_ends and not self._format3:
                # The first commit into a segment this writer created (always
                # format 3: recovery sealed every older one) marks the store
                # as one older binaries cannot read (design doc §5).
                set_setting(conn, STORE_FORMAT_SETTING, STORE_FORMAT_3)
        except BaseException as exc:
            self._rollback()
            self._forget_new_versions(ctx)
            self._fail_all(batch, exc)
            if isinstance(exc, WriterFatal):
                raise
            return synced
        # Named apart from before_commit/after_commit: in a replicating store
        # chunk appends and status updates commit batches too, so a count of
        # plain commits cannot aim at the batch that applies remote entries.
        replicating = any(m.msg.name == "repl_apply" for m in batch)
        try:
            failpoints.hit("before_commit")
            if replicating:
                failpoints.hit("repl_apply.before_commit")
            conn.execute("COMMIT")
            failpoints.hit("after_commit")
            if replicating:
                failpoints.hit("repl_apply.after_commit")
        except apsw.FullError as exc:
            self._rollback()
            self._forget_new_versions(ctx)
            self._fail_all(batch, exc)
            return synced
        except (apsw.Error, OSError) as exc:
            raise WriterFatal(f"commit failed: {exc}") from exc
        self.records.committed()
        if ctx.committed_ends:
            self._format3 = True
        if synced or sealed:
            self.stats.fsync_seconds.observe(fsync_s + self._flush_s)
        return synced

    def _append_and_flush(
        self, ctx: BatchContext, dirty: OpenSegment | None
    ) -> list[tuple[OpenSegment, int]]:
        """Steps 3 and 4: append the batch's records, then one fdatasync per
        segment touched (normally one: the open segment holds the batch's
        chunks and now its records)."""
        items = [(TYPE_MANIFEST, data) for _uid, data in ctx.manifests]
        items += self.records.flush(self.conn)
        targets: dict[int, tuple[OpenSegment, int]] = {}
        if dirty is not None:
            targets[dirty.segment_id] = (dirty, dirty.end)
        if items:
            try:
                seg, end = self.store.append_records(items)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise WriterFatal(f"cannot append the batch's records: {exc}") from exc
            targets[seg.segment_id] = (seg, end)
            # Recovery never cuts below this: the records are committed data.
            ctx.committed_ends[seg.segment_id] = max(ctx.committed_ends.get(seg.segment_id, 0), end)
        flush_started = time.monotonic()
        try:
            for seg, _end in targets.values():
                failpoints.hit("segment_fsync")
                fileio.fdatasync(seg.fd, "segment.fsync")
        except OSError as exc:
            raise WriterFatal(f"segment flush failed: {exc}") from exc
        self._flush_s = time.monotonic() - flush_started
        return list(targets.values())

    def _forget_new_versions(self, ctx: BatchContext) -> None:
        """A batch that failed may have left its manifest records in the
        segment (flushed, never committed): touching their uids makes the
        next batch append PURGED for them, so a replay of the log never
        shows a version the database refused."""
        for uid, _data in ctx.manifests:
            self.records.touch_version(uid)

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except apsw.Error as exc:
            raise WriterFatal(f"rollback failed: {exc}") from exc

    @staticmethod
    def _fail_all(batch: list[Mutation], exc: BaseException) -> None:
        if (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or isinstance(
            exc, apsw.FullError
        ):
            err = S3Error("InsufficientStorage")
        else:
            log.error("batch failed: %r", exc)
            err = S3Error("InternalError", message="the write could not be stored")
        for m in batch:
            m.result = None
            m.error = err

    def _checkpoint(self) -> None:
        self._last_checkpoint = time.monotonic()
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except apsw.BusyError as exc:
            log.warning("WAL checkpoint skipped: %s", exc)
        except apsw.Error as exc:
            # A write or fsync of meta.db failed under the checkpoint: like any
            # failed fsync, nothing after it is trusted; stop, recover on restart.
            raise WriterFatal(f"WAL checkpoint failed: {exc}") from exc
