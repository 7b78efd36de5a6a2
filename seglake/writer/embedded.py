"""The writer embedded in an operator command, for when no server runs.

This is the writer's public API for ``seglake/ops/``; the CLI imports
nothing else from ``seglake/writer/``.

Rules this file keeps:
- An offline command changes the store only through here. ``run_embedded``
  takes the data-dir lock and the writer lock together, without waiting
  (``seglake/locks.py``: no server or orphaned writer can start, or still be
  running, meanwhile), starts the writer exactly as ``seglake serve`` would
  (migration and segment recovery included) and runs its committer. Every
  mutation is then applied by that committer, in a batch with the same
  barrier as a live PUT: manifest and metadata records appended to the
  open segment, one segment flush, then COMMIT.
- ``upgrade`` (``writer/upgrade.py``) converts a version-1 store, which
  every other entry point here refuses.
- The quiesce gate is not consulted: the caller holds both locks, so no
  client can be writing, and the operator asked for exactly this change.
- GC steps go through the writer's own GC code (``gc_step``), which
  re-checks liveness in its transaction; GC's internal mutations are never
  applied directly.
- Leaving drains every queued mutation before the writer closes; a
  durability failure stops the command with an error, and the next start
  (server or command) recovers, as after a crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import apsw
import msgspec
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.messages import (
    Append,
    Appended,
    GcDeleteSegments,
    GcDropSegments,
    GcRepoint,
    GcRewriteChunks,
    GcStep,
    Request,
)
from seglake.locks import offline_lock
from seglake.meta.schema import set_setting
from seglake.protocol.repl_entries import Stamp
from seglake.writer import chunk_index, fileio, oplog_journal
from seglake.writer.gc_ops import handle_request
from seglake.writer.main import StoreNeedsUpgrade, Writer
from seglake.writer.segments import WriterFatal
from seglake.writer.upgrade import UpgradeReport, upgrade_store

_T = TypeVar("_T")
R = TypeVar("R")


class EmbeddedWriter:
    """What an offline command may ask of the writer it runs."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def apply(self, msg: Request[R]) -> R:
        """Commit one mutation (``seglake/writer/mutations.py``)."""
        if isinstance(msg, GcDeleteSegments | GcRewriteChunks | GcDropSegments | GcRepoint):
            raise S3Error("AccessDenied", message=f"{msg.name} runs only through gc_step")
        result: R = await self._writer.committer.submit(msg)
        return result

    async def append(self, digest: bytes, data: bytes) -> Appended:
        """Store one chunk in the open segment, as a frontend's ``Append``
        does (replication pulls: the caller checked its BLAKE3). It becomes
        durable with the next committed batch, before whatever lists it."""
        return await self._writer._append(Append(digest=digest), memoryview(data))

    async def gc_step(self, msg: GcStep) -> Any:
        """One GC request (``GcDeleteSegments``, ``GcRewriteChunks``); the
        operator holds the data dir, which stands for ``--yes``."""
        return await handle_request(self._writer.gc, msgspec.structs.replace(msg, yes=True))


async def run_embedded(
    cfg: Config, mode: str, work: Callable[[EmbeddedWriter], Awaitable[_T]]
) -> _T:
    """Start the writer under ``offline_lock``, run ``work`` with it, stop it.

    Raises ``DataDirBusy`` (a server or writer holds the data dir),
    ``S3Error`` (the writer could not start or stopped on a durability
    failure, or a mutation was refused) or whatever ``work`` raises.
    """
    with offline_lock(cfg, mode) as writer_lock:
        try:
            writer = Writer(cfg, lock_fd=writer_lock)
        except StoreNeedsUpgrade as exc:
            raise S3Error("InvalidRequest", message=str(exc)) from None
        except (WriterFatal, OSError, apsw.Error) as exc:
            raise S3Error("InternalError", message=f"{cfg.db_path}: {exc}") from None
        try:
            return await _run(cfg, writer, work)
        finally:
            writer.close()


async def _run(cfg: Config, writer: Writer, work: Callable[[EmbeddedWriter], Awaitable[_T]]) -> _T:
    # The work's own error is carried out of the nursery by hand: raised
    # inside it, trio would wrap it in an ExceptionGroup and callers could no
    # longer catch a refusal (S3Error) as such.
    failure: Exception | None = None
    outcome: list[_T] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.committer.run)
            try:
                outcome.append(await work(EmbeddedWriter(writer)))
            except Exception as exc:
                failure = exc
            finally:
                with trio.CancelScope(shield=True):
                    await writer.committer.drain()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        fatal = group.subgroup(WriterFatal)
        if fatal is None:
            raise
        raise S3Error("InternalError", message=f"{cfg.root}: {fatal.exceptions[0]}") from None
    if failure is not None:
        raise failure
    return outcome[0]


def apply_offline(cfg: Config, mode: str, msg: Request[R]) -> R:
    """One mutation with no server running, from synchronous CLI code."""

    async def one(writer: EmbeddedWriter) -> R:
        return await writer.apply(msg)

    return trio.run(run_embedded, cfg, mode, one)


def upgrade(cfg: Config) -> UpgradeReport:
    """``seglake upgrade`` (see ``writer/upgrade.py``)."""
    return upgrade_store(cfg)


def sync_dir(path: Path) -> None:
    """Make a directory's entries durable, through the writer's file-operation
    registry (``fileio.py``), for offline tools that place files themselves
    (rebuild-index, snapshot)."""
    fileio.fsync_dir(path, "dir.fsync")


# For rebuild-index (seglake/ops/rebuild.py): the derived replication tables
# of a database it built, made by the writer's own code.
def backfill_chunk_index(conn: apsw.Connection) -> int:
    return chunk_index.backfill(conn)


def regenerate_oplog(
    conn: apsw.Connection, *, site: str, state_stamps: dict[str, tuple[int, str]]
) -> int:
    """A new oplog of every row (one entry each, HLC order) under a new
    epoch; settings['hlc'] raised to the largest stamp."""
    stamps = {uid: Stamp(h, s) for uid, (h, s) in state_stamps.items()}
    with conn:
        conn.execute("DELETE FROM oplog")
        n = oplog_journal.regenerate(conn, site=site, state_stamps=stamps)
        top: Any = conn.execute(
            "SELECT max(ifnull((SELECT max(hlc) FROM oplog), 0), "
            "ifnull((SELECT max(hlc) FROM bucket_stamps), 0))"
        ).fetchall()[0][0]
        set_setting(conn, oplog_journal.HLC_SETTING, int(top))
        set_setting(conn, oplog_journal.EPOCH_SETTING, oplog_journal.new_epoch())
    return n
