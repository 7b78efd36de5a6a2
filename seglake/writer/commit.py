"""Group commit: the durability barrier.

Ordering kept for every batch, and the reason a reply is safe to send:

1. fsync every segment that holds a chunk of the batch (the open one, and
   each rotated one, which is sealed: footer written, fsynced, closed);
2. BEGIN; apply each mutation under its own SAVEPOINT (one refused mutation
   does not fail the others);
3. write each new manifest file, fsync it, then fsync each manifest directory
   touched;
4. COMMIT (WAL, synchronous=FULL: returns after the WAL is on disk);
5. only now set the results that the IPC handlers send back.

Batching is leader/follower: the next batch starts as soon as the previous
one finished, and takes every mutation that queued up meanwhile (bounded by
``sync_bytes``). A lone request is committed at once; a busy server shares
one set of fsyncs among many requests.

A failed fsync is never retried or trusted (the kernel may have dropped the
dirty pages): ``WriterFatal`` is raised and the process exits, so the
supervisor restarts it into recovery.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import apsw
import trio

from seglake import failpoints
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.manifest import manifest_path
from seglake.ipc.messages import Request
from seglake.meta.schema import get_setting, set_setting
from seglake.metrics.histogram import COUNT, Histogram
from seglake.writer import barrier, fileio
from seglake.writer.mutations import APPLY
from seglake.writer.ops import BatchContext, VersionClock
from seglake.writer.record_journal import RecordJournal
from seglake.writer.segments import (
    OpenSegment,
    SealResult,
    SegmentStore,
    WriterFatal,
    fsync_dir,
    seal,
)

log = logging.getLogger(__name__)
R = TypeVar("R")

# Passive WAL checkpoints run between batches at most this often, so the WAL
# stays small without adding a checkpoint to any client's commit latency.
CHECKPOINT_INTERVAL_S = 2.0
MANIFEST_FSYNC_THREADS = 16
# From this many files on, fsyncs run in parallel (the file system merges
# their journal commits); below it the thread hand-offs cost more than they save.
PARALLEL_FSYNC_MIN = 4
# A batch this small, with nothing else queued, runs on the event loop's
# thread instead of a worker thread.
INLINE_BATCH_MAX = 1
# Manifest fsyncs of one batch run in at most this many threads at once.
FSYNC_LANES = 4
# Manifest files of one batch held open at once (created, then fsynced).
MANIFEST_FDS = 128


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
        self._queue: deque[Mutation] = deque()
        self._wake = trio.Event()
        self._pool = ThreadPoolExecutor(MANIFEST_FSYNC_THREADS, thread_name_prefix="mfsync")
        self._last_checkpoint = time.monotonic()
        self._known_dirs: set[Path] = set()
        self._closing = False
        self._drained = trio.Event()
        self.stats = BatchStats()
        self.in_flight = 0
        self.records = RecordJournal(cfg.manifests_dir.parent)
        self.records.install(conn)
        self.records.backfill(conn)
        self.sync = barrier.choose(
            cfg.sync_mode, cfg.root, [cfg.segments_dir, cfg.manifests_dir, cfg.db_path]
        )
        log.info("manifest barrier: %s", self.sync.reason)
        # syncfs reports writeback errors that happened since this descriptor
        # was opened: it lives as long as the committer.
        self._syncfs_fd = -1
        if self.sync.syncfs:
            self._syncfs_fd = os.open(cfg.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fileio.track(self._syncfs_fd, cfg.root)

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
        sync_target = (cur, cur.end) if cur is not None and cur.dirty else None
        started = time.monotonic()
        try:
            if len(batch) <= INLINE_BATCH_MAX and not to_seal and not self._queue:
                # A lone mutation on a quiet server: the hand-off to a worker
                # thread and back costs more CPU and latency than its fsyncs
                # keep the event loop waiting (nothing else is queued).
                self._run_batch(batch, to_seal, sync_target)
            else:
                await trio.to_thread.run_sync(self._run_batch, batch, to_seal, sync_target)
        except WriterFatal as exc:
            log.critical("writer cannot guarantee durability, stopping: %s", exc)
            for m in batch:
                m.error = S3Error("InternalError", message="storage failure; write not stored")
                m.done.set()
            raise
        if sync_target is not None:
            seg, end = sync_target
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
        self,
        batch: list[Mutation],
        to_seal: list[OpenSegment],
        sync_target: tuple[OpenSegment, int] | None,
    ) -> None:
        sealed: list[SealResult] = []
        fsync_started = time.monotonic()
        try:
            for seg in to_seal:
                sealed.append(seal(seg))
            if sync_target is not None:
                failpoints.hit("segment_fsync")
                fileio.fsync(sync_target[0].fd, "segment.fsync")
        except OSError as exc:
            raise WriterFatal(f"segment fsync/seal failed: {exc}") from exc
        fsync_s = time.monotonic() - fsync_started

        ctx = BatchContext(self.clock)
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            raise WriterFatal(f"cannot begin transaction: {exc}") from exc
        try:
            for i, m in enumerate(batch):
                sp = f"m{i}"
                conn.execute(f"SAVEPOINT {sp}")
                mark = len(ctx.manifests)
                committed = dict(ctx.committed_ends)
                try:
                    name = m.msg.name
                    failpoints.hit(f"apply.{name}")
                    m.result = APPLY[type(m.msg)](conn, ctx, m.msg)
                    failpoints.hit(f"applied.{name}")
                    conn.execute(f"RELEASE {sp}")
                except S3Error as exc:
                    conn.execute(f"ROLLBACK TO {sp}")
                    conn.execute(f"RELEASE {sp}")
                    del ctx.manifests[mark:]
                    ctx.committed_ends = committed
                    m.error = exc
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
            manifests_started = time.monotonic()
            written = self._write_manifests(ctx.manifests)
            fsync_s += time.monotonic() - manifests_started
            self.records.flush(conn)  # bucket/version-state records, before COMMIT
        except BaseException as exc:
            self._rollback()
            self._fail_all(batch, exc)
            if isinstance(exc, WriterFatal):
                raise
            return
        try:
            failpoints.hit("before_commit")
            conn.execute("COMMIT")
            failpoints.hit("after_commit")
        except apsw.FullError as exc:
            self._rollback()
            self._unlink(written)
            self._fail_all(batch, exc)
            return
        except (apsw.Error, OSError) as exc:
            raise WriterFatal(f"commit failed: {exc}") from exc
        self.records.committed()
        if sync_target is not None or sealed or written:
            self.stats.fsync_seconds.observe(fsync_s)
        if ctx.unlink_after_commit:
            self._unlink(
                [manifest_path(self.cfg.manifests_dir, uid) for uid in ctx.unlink_after_commit]
            )

    def _write_manifests(self, manifests: list[tuple[str, bytes]]) -> list[Path]:
        if not manifests:
            return []
        paths = [manifest_path(self.cfg.manifests_dir, uid) for uid, _ in manifests]
        bodies = [b for _, b in manifests]
        dirs = {p.parent for p in paths}
        try:
            for d in dirs - self._known_dirs:
                self._make_dir(d)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise WriterFatal(f"cannot create manifest directory: {exc}") from exc
        if self.sync.syncfs and len(paths) >= barrier.SYNCFS_MIN_MANIFESTS:
            self._write_manifests_syncfs(paths, bodies)
        else:
            self._write_manifests_fsync(paths, bodies)
        # Directory entries are durable only after the directory is fsynced;
        # a batch touches up to 256 shard directories, fsynced in parallel.
        try:
            failpoints.hit("manifest_dir_fsync")
            if len(dirs) < PARALLEL_FSYNC_MIN:
                for d in dirs:
                    fsync_dir(d, "manifest_dir.fsync")
            else:
                list(self._pool.map(fsync_dir, dirs, ["manifest_dir.fsync"] * len(dirs)))
        except OSError as exc:
            raise WriterFatal(f"manifest directory fsync failed: {exc}") from exc
        return paths

    def _write_manifests_syncfs(self, paths: list[Path], bodies: list[bytes]) -> None:
        """Create and write every manifest, then one syncfs makes all their
        data and inodes durable (barrier.py: where this is trusted)."""
        written = 0
        try:
            for path, body in zip(paths, bodies, strict=True):
                fd = _create_manifest(path, body)
                written += 1
                fileio.close(fd)
        except OSError:
            self._unlink(paths[: written + 1])
            raise
        try:
            failpoints.hit("manifest_fsync")
            fileio.syncfs(self._syncfs_fd, "manifest.syncfs")
        except OSError as exc:
            raise WriterFatal(f"syncfs of the manifests failed: {exc}") from exc

    def _write_manifests_fsync(self, paths: list[Path], bodies: list[bytes]) -> None:
        # Files are created and written one after another on this thread:
        # creates in one directory serialise on its lock in the kernel, and
        # threads racing for it spin (measured: ~5% of the writer's CPU).
        # Only the fsyncs, which wait on the disk, run in parallel.
        # At most MANIFEST_FDS files are open at once: a DeleteObjects of
        # 1,000 keys writes 1,000 delete markers in one batch, and a shell's
        # default limit of 1,024 descriptors must not fail it.
        for start in range(0, len(paths), MANIFEST_FDS):
            fds: list[int] = []
            try:
                for path, body in zip(
                    paths[start : start + MANIFEST_FDS],
                    bodies[start : start + MANIFEST_FDS],
                    strict=True,
                ):
                    fds.append(_create_manifest(path, body))
            except OSError:
                for fd in fds:
                    fileio.close(fd)
                self._unlink(paths[: start + len(fds) + 1])
                raise
            try:
                self._fsync_manifests(paths[start : start + len(fds)], fds)
            finally:
                for fd in fds:
                    fileio.close(fd)

    def _fsync_manifests(self, paths: list[Path], fds: list[int]) -> None:
        """fsync every manifest; any failure is fatal (never retried).

        Every lane is waited for before returning, failed or not: the caller
        closes the descriptors afterwards.
        """
        # The fsyncs run in a few lanes, each fsyncing its share one after
        # another; this thread is one of them. A hand-off per file cost more
        # CPU (GIL and futex traffic) than the fsyncs themselves.
        lanes = min(FSYNC_LANES, len(fds))
        if len(fds) < PARALLEL_FSYNC_MIN:
            lanes = 1  # a pool hand-off costs more than the fsync it overlaps
        pairs = list(zip(paths, fds, strict=True))
        futures = [self._pool.submit(_fsync_lane, pairs[i::lanes]) for i in range(1, lanes)]
        try:
            _fsync_lane(pairs[::lanes])
        finally:
            if futures:
                concurrent.futures.wait(futures)
        for f in futures:
            f.result()  # re-raises a lane's WriterFatal

    def _make_dir(self, d: Path) -> None:
        """Make a shard directory durably present before any manifest inside
        it counts as durable: each level below the manifests dir is created
        if missing, and its entry in its parent is fsynced.

        The parent is fsynced on this process's first use of a level even
        when the level already exists: an earlier writer may have created it
        and died on that very fsync, and a failed fsync is never trusted.
        """
        chain: list[Path] = []
        p = d
        while p not in (self.cfg.manifests_dir, p.parent) and p not in self._known_dirs:
            chain.append(p)
            p = p.parent
        for level in reversed(chain):
            fileio.mkdir(level, "manifest_dir.mkdir")
            fsync_dir(level.parent, "manifest_dir.parent_fsync")
            self._known_dirs.add(level)

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

    @staticmethod
    def _unlink(paths: list[Path]) -> None:
        """Remove manifests no row refers to (a refused batch's, a purged
        version's). A file left behind is an orphan, as a crash between a
        manifest's fsync and COMMIT leaves one, and fsck reports it as a
        warning; so an I/O error here is logged, never fatal: no
        acknowledged write depends on it, and the batch's outcome is
        already decided."""
        for p in paths:
            try:
                fileio.unlink(p, "manifest.unlink")
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("could not remove manifest %s (left as an orphan): %s", p, exc)

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


def _create_manifest(path: Path, data: bytes) -> int:
    """Create and write one manifest file (not yet durable); returns its fd.

    An ``OSError`` (ENOSPC, EIO, ...) refuses the batch; the caller removes
    what was created.
    """
    fd = fileio.open_file(
        path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600, "manifest.create"
    )
    try:
        fileio.pwrite_all(fd, data, 0, "manifest.write")
    except OSError:
        fileio.close(fd)
        raise
    return fd


def _fsync_lane(pairs: list[tuple[Path, int]]) -> None:
    for path, fd in pairs:
        try:
            failpoints.hit("manifest_fsync")
            fileio.fsync(fd, "manifest.fsync")
        except OSError as exc:
            raise WriterFatal(f"manifest fsync failed for {path}: {exc}") from exc
