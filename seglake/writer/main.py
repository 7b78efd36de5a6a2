"""The writer process: sole owner of segments, manifests and the SQLite
write connection.

Start-up order: open and migrate ``meta.db`` → recover every unsealed segment
(validate, cut a torn tail, seal) and record the result → listen on the
writer socket → report ready (the supervisor waits for a ``ping`` answer).

Requests arrive over the IPC channel from frontends and the maintenance
process, each decoded and validated as its declared type
(``seglake/ipc/messages.py``) and dispatched by the type → handler table
built in ``Writer.__init__``. Appends happen here on the event loop; everything that must be
durable goes through the ``Committer`` (see ``commit.py`` for the barrier).
Every data request passes the quiesce gate first (``quiesce.py``: refused
with ``MaintenanceMode`` while maintenance mode is not ``off``).
On SIGTERM the writer stops listening, lets every queued mutation commit,
and exits 0. On a durability failure (``WriterFatal``) it exits non-zero so
that the supervisor restarts it into recovery.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import apsw
import msgspec
import trio

from seglake import failpoints
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.manifest import ChunkRef
from seglake.format.segment import CHUNK_SIZE
from seglake.ipc.channel import listen_unix, serve_channel
from seglake.ipc.messages import (
    Append,
    Appended,
    Chunk,
    CopyObject,
    Doc,
    MaintenanceSet,
    MaintenanceStatus,
    MarkDamaged,
    Marked,
    Ping,
    Pong,
    Put,
    Request,
    SetMaintenance,
    Status,
    UploadPart,
    decode_request,
)
from seglake.ipc.report import report_forever
from seglake.lifecycle import EXIT_REFUSED, exit_when_orphaned, read_child_args
from seglake.locks import try_lock
from seglake.logs import setup_logging
from seglake.meta.schema import open_read, open_write
from seglake.writer import fileio
from seglake.writer.commit import Committer
from seglake.writer.gc_ops import SegmentGC, gc_handlers
from seglake.writer.mutations import APPLY
from seglake.writer.oplog_journal import SiteIdRefused
from seglake.writer.quiesce import Quiesce
from seglake.writer.segments import EXIT_FATAL, SegmentStore, WriterFatal, fsync_dir

log = logging.getLogger("seglake.writer")

IDLE_CHECK_INTERVAL_S = 1.0
WRITER_LOCK_WAIT_S = 30.0

# A request handler: the decoded request and the frame body (bulk data).
Handler = Callable[[Any, memoryview], Awaitable[Any]]


class StoreNeedsUpgrade(RuntimeError):
    """The data dir holds a version-1 store; ``seglake upgrade`` converts it."""


class Writer:
    def __init__(self, cfg: Config, lock_fd: int | None = None, *, upgrading: bool = False) -> None:
        """``lock_fd``: the writer lock, when the caller already holds it
        (the embedded writer, under ``offline_lock``); else taken here.
        A version-1 store is refused (``StoreNeedsUpgrade``) unless
        ``upgrading`` (``seglake upgrade``, writer/upgrade.py)."""
        self.cfg = cfg
        self.started = time.time()
        self.lock_fd = lock_fd if lock_fd is not None else _take_writer_lock(cfg)
        problem = cfg.needs_upgrade()
        if problem is not None and not upgrading:
            raise StoreNeedsUpgrade(problem)
        self._prepare_dirs()
        fileio.install_sqlite_recorder()  # test mode only: journal / failpoints
        self.conn = open_write(str(cfg.db_path))
        self.store = SegmentStore(cfg)
        self._recover()
        self.quiesce = Quiesce.load(self.conn)
        self._nursery: trio.Nursery | None = None
        self.committer = Committer(cfg, self.conn, self.store)
        self.gc = SegmentGC(cfg, self.store, self.committer, self.quiesce)
        self.reader = open_read(str(cfg.db_path))
        self.appended_bytes = 0
        self._handlers = self._handler_table()

    def _handler_table(self) -> dict[type[Request[Any]], Handler]:
        """Request type → handler. Every mutation is committed as it is,
        except where a later entry takes over its type (data check, GC)."""
        table: dict[type[Request[Any]], Handler] = {kind: self._mutate for kind in APPLY}
        for kind, fn in gc_handlers(self.gc).items():
            table[kind] = _without_body(fn)
        table.update({
            Append: self._append,
            MarkDamaged: self._mark_damaged,
            Ping: self._ping,
            Status: self._status,
            MaintenanceStatus: self._maintenance_status,
            MaintenanceSet: self._maintenance_set,
        })  # fmt: skip
        return table

    def _prepare_dirs(self) -> None:
        # The parents are fsynced on every start, not only when created: a
        # writer that died on a failed directory fsync must not trust it now.
        for d in (self.cfg.segments_dir,):
            if not d.is_dir():
                d.mkdir(parents=True, exist_ok=True)
            fsync_dir(d.parent)
            fsync_dir(d.parent.parent)

    def _recover(self) -> None:
        failpoints.hit("recovery.start")
        sealed = self.store.recover(self.conn)
        failpoints.hit("recovery.sealed")
        now = time.time_ns()
        with self.conn:
            for s in sealed:
                self.conn.execute(
                    "INSERT INTO segments(id, state, size, committed_end, created_ns, sealed_ns, "
                    "footer_digest) VALUES (?, 'SEALED', ?, 0, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                    "SET state = 'SEALED', size = excluded.size, sealed_ns = excluded.sealed_ns, "
                    "footer_digest = excluded.footer_digest",
                    (s.segment_id, s.size, now, now, s.footer_digest or None),
                )
        if sealed:
            log.info("recovery sealed %d segment(s)", len(sealed))

    # ---- IPC -----------------------------------------------------------
    async def handle(self, name: str, msg: Request[Any], body: memoryview) -> tuple[Any, bytes]:
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise S3Error("NotImplemented", message=f"writer operation {name!r}")
        with self.quiesce.admit(name):
            return await handler(msg, body), b""

    async def _mutate(self, msg: Request[Any], body: memoryview) -> Any:
        if isinstance(msg, CopyObject) and msg.chunks is not None:
            self.gc.check_chunks(msg.chunks)  # re-sealed copy: chunks appended earlier
        if not isinstance(msg, Put | UploadPart):
            return await self.committer.submit(msg)
        # A mutation that stores data may carry its last, partial chunk
        # inline to save a round trip.
        self.gc.check_chunks(msg.chunks)
        whole = msg
        if body:
            ref = self._store(msg.tail_digest, body)
            tail = Chunk(ref.segment_id, ref.offset, ref.length, ref.digest)
            whole = msgspec.structs.replace(msg, chunks=[*msg.chunks, tail])
        return await self.committer.submit(whole, msg.size)

    async def _append(self, msg: Append, body: memoryview) -> Appended:
        ref = self._store(msg.digest, body)
        return Appended(ref.segment_id, ref.offset, ref.length)

    async def _mark_damaged(self, msg: MarkDamaged, body: memoryview) -> Marked:
        if not await self.gc.confirm_damage(msg):
            return Marked(marked=False)
        return await self.committer.submit(msg)

    async def _ping(self, msg: Ping, body: memoryview) -> Pong:
        return Pong(pid=os.getpid(), uptime=time.time() - self.started)

    async def _status(self, msg: Status, body: memoryview) -> Doc:
        return await trio.to_thread.run_sync(self._store_status)

    async def _maintenance_status(self, msg: MaintenanceStatus, body: memoryview) -> Doc:
        return self.quiesce.status()

    async def _maintenance_set(self, msg: MaintenanceSet, body: memoryview) -> Doc:
        if self._nursery is None:
            raise S3Error("ServiceUnavailable", message="the writer is starting")
        return await self.quiesce.set_target(msg.target, self._persist, self._nursery)

    def _store(self, digest: bytes | None, body: memoryview) -> ChunkRef:
        if digest is None or len(digest) != 32 or not 0 < len(body) <= CHUNK_SIZE:
            raise S3Error("InternalError", message="malformed append")
        try:
            ref = self.store.append(digest, body)
        except WriterFatal as exc:
            # The segment's state is unknown (a failed fsync or cut-back):
            # stop here, before anything else is acknowledged; the
            # supervisor restarts the writer into recovery.
            log.critical("writer stopped: %s", exc)
            os._exit(EXIT_FATAL)
        self.appended_bytes += len(body)
        if self.store.to_seal:
            self.committer.poke()
        return ref

    async def _persist(self, doc: str) -> None:
        await self.committer.submit(SetMaintenance(doc=doc))

    def _store_status(self) -> dict[str, Any]:
        r = self.reader

        def one(sql: str) -> int:
            return int(r.execute(sql).fetchall()[0][0] or 0)

        return {
            "pid": os.getpid(),
            "uptime": time.time() - self.started,
            "buckets": one("SELECT count(*) FROM buckets"),
            "objects": one(
                "SELECT count(*) FROM current c JOIN versions v ON v.id = c.version "
                "WHERE v.delete_marker = 0"
            ),
            "versions": one(
                "SELECT count(*) FROM versions WHERE state != 'DELETED' AND tombstone = 0"
            ),
            "bytes_live": one(
                "SELECT sum(size) FROM versions WHERE state != 'DELETED' AND delete_marker = 0"
            ),
            "segments": one("SELECT count(*) FROM segments"),
            "segments_sealed": one("SELECT count(*) FROM segments WHERE state = 'SEALED'"),
            "segment_bytes": one("SELECT sum(size) FROM segments"),
            "commit_batches": self.committer.stats.batches,
            "commit_mutations": self.committer.stats.mutations,
            "last_batch_size": self.committer.stats.last_batch_size,
            "last_batch_ms": round(self.committer.stats.last_batch_seconds * 1000, 2),
            "write_in_flight": self.committer.in_flight,
            "barrier": self.committer.barrier,
            "appended_bytes": self.appended_bytes,
            "maintenance": self.quiesce.status(),
        }

    def _report(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Counters and gauges for the supervisor (``ipc/report.py``)."""
        counters = {**self.committer.stats.counters(), "appended_bytes": self.appended_bytes}
        gauges = {
            "queue_depth": self.committer.queue_depth,
            "write_inflight": self.committer.in_flight,
        }
        return counters, gauges

    # ---- lifecycle -----------------------------------------------------
    async def _idle_sealer(self) -> None:
        while True:
            await trio.sleep(IDLE_CHECK_INTERVAL_S)
            if self.store.idle_expired():
                self.store.rotate()
                self.committer.poke()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        path = str(self.cfg.writer_socket)
        sock = await listen_unix(path, backlog=128)
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.committer.run)
            self._nursery = nursery
            nursery.start_soon(self._idle_sealer)
            nursery.start_soon(exit_when_orphaned)
            if self.cfg.metrics:
                nursery.start_soon(
                    report_forever, str(self.cfg.supervisor_socket), "writer", "writer",
                    self._report, self.cfg.stats_interval,
                )  # fmt: skip
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                conn_nursery_cm = trio.open_nursery()
                async with conn_nursery_cm as conns:
                    conns.start_soon(trio.serve_listeners, self._serve_conn, [listener])
                    task_status.started()
                    log.info("writer ready on %s (pid %d)", path, os.getpid())
                    async for _ in signals:
                        log.info("writer stopping: draining queued commits")
                        await self.committer.drain()
                        conns.cancel_scope.cancel()
                        break
            nursery.cancel_scope.cancel()

    async def _serve_conn(self, stream: trio.SocketStream) -> None:
        await serve_channel(stream, self.handle, max_in_flight=256, decode=decode_request)

    def close(self) -> None:
        self.gc.close()
        self.store.close()
        self.reader.close()
        self.conn.close()


def _without_body(fn: Callable[[Any], Awaitable[Any]]) -> Handler:
    async def handler(msg: Any, body: memoryview) -> Any:
        return await fn(msg)

    return handler


def _take_writer_lock(cfg: Config) -> int:
    """Exactly one writer per data dir, even if a supervisor died and a new
    one started before the old writer noticed: wait for it to let go."""
    deadline = time.monotonic() + WRITER_LOCK_WAIT_S
    while (fd := try_lock(cfg.writer_lock_path)) is None:
        if time.monotonic() > deadline:
            raise WriterFatal("another writer still holds the data dir")
        time.sleep(0.05)
    return fd


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cfg_json, _ready, _rest = read_child_args(args)
    cfg = Config.from_json(cfg_json)
    setup_logging(cfg.log_level, "writer", cfg.log_format)
    try:
        writer = Writer(cfg)
    except (StoreNeedsUpgrade, SiteIdRefused) as exc:
        log.critical("refusing to start: %s", exc)
        return EXIT_REFUSED
    except (WriterFatal, OSError, apsw.Error) as exc:
        # A start-up I/O error (a failed directory fsync, SQLite unable to
        # replay its WAL) is a durability failure like any other.
        log.critical("recovery failed: %r", exc)
        return EXIT_FATAL
    try:
        trio.run(writer.serve)
    except WriterFatal as exc:
        log.critical("writer stopped: %s", exc)
        os._exit(EXIT_FATAL)  # do not run anything that could touch the files
    except BaseExceptionGroup as group:
        fatal = group.subgroup(WriterFatal)
        if fatal is not None:
            log.critical("writer stopped: %s", fatal.exceptions[0])
            os._exit(EXIT_FATAL)
        raise
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
