"""Bootstrap a new site from a remote's snapshot
(docs/design-replication.md §6, "Bootstrap").

The store must be empty (no bucket, no version) unless forced: a snapshot
applied over existing data still converges by LWW, but an operator who
points bootstrap at the wrong data dir should be stopped, not merged.

The snapshot (``GET /v1/replication/snapshot``, codec
``seglake/protocol/repl_snapshot.py``) is the remote's current state as
entries, read in one transaction, then ``SnapshotEnd``: the oplog cursor
that state corresponds to. Entries are applied as they stream in, in
bounded batches (``ReplApply`` direction "bootstrap": no cursor), chunks
fetched and stored before each batch like a pull. Then the pull cursor is
set to ``SnapshotEnd`` and pulling continues until the backlog is 0:
everything the remote took while the snapshot streamed arrives through
its oplog. A bootstrap cut short leaves a store that is no longer empty and
has no pull cursor: run it again with ``-repl-bootstrap-force`` (applying is
idempotent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import trio

from seglake.errors import S3Error
from seglake.meta.repl_remote_reads import store_is_empty
from seglake.meta.schema import open_read
from seglake.protocol.repl_snapshot import SnapshotDecoder, SnapshotEnd
from seglake.protocol.repl_wire import Entry
from seglake.repl import plan
from seglake.repl.port import Remote, WriterPort
from seglake.repl.pull import StepReport, apply_page, pull_step, set_pull_cursor

BATCH_ENTRIES: Final = 1000
# A bootstrap batch moves no cursor, and the snapshot names its epoch only
# at its end: its batches carry this placeholder (the writer needs one).
SNAPSHOT_EPOCH: Final = "snapshot"
BATCH_BYTES: Final = plan.MAX_GROUP_BYTES
MAX_CATCH_UP_STEPS: Final = 1_000_000


@dataclass
class BootstrapReport:
    snapshot: StepReport = field(default_factory=StepReport)
    catch_up: StepReport = field(default_factory=StepReport)
    cursor: str = ""
    pull_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        def one(r: StepReport) -> dict[str, Any]:
            return {
                "entries": r.entries, "applied": r.applied, "skipped": r.skipped,
                "conflicts": r.conflicts, "chunks": r.chunks, "bytes_in": r.bytes_in,
                "backlog": r.backlog,
            }  # fmt: skip

        return {
            "snapshot": one(self.snapshot), "catch_up": one(self.catch_up),
            "cursor": self.cursor, "pull_steps": self.pull_steps,
        }  # fmt: skip


def _empty(db_path: Path) -> bool:
    conn = open_read(str(db_path))
    try:
        return store_is_empty(conn)
    finally:
        conn.close()


async def check_empty(db_path: Path, *, force: bool) -> None:
    if force:
        return
    if not await trio.to_thread.run_sync(_empty, db_path):
        raise S3Error(
            "InvalidRequest",
            message="repl-bootstrap needs an empty store (no bucket, no version); "
            "pass -repl-bootstrap-force to apply the snapshot over this one",
        )


async def bootstrap(
    source: Remote,
    writer: WriterPort,
    db_path: Path,
    remote: str,
    items: AsyncIterator[Any],
    *,
    force: bool,
    limit: int,
) -> BootstrapReport:
    """Apply the snapshot ``items`` (``Entry``... then ``SnapshotEnd``), set
    the pull cursor there, pull until caught up."""
    await check_empty(db_path, force=force)
    report = BootstrapReport()
    batch: list[Entry] = []
    batch_bytes = 0
    numbered = 0
    end: SnapshotEnd | None = None

    async def flush() -> None:
        nonlocal batch, batch_bytes
        if batch:
            await apply_page(
                source, writer, db_path, remote=remote, direction="bootstrap", page_epoch=SNAPSHOT_EPOCH,
                page_site=batch[0].site, from_seq=0, to_seq=0, entries=batch,
                report=report.snapshot,
            )  # fmt: skip
        batch, batch_bytes = [], 0

    async for item in items:
        if end is not None:
            raise S3Error("ReplicationBadBatch", message="snapshot items after its end")
        if isinstance(item, SnapshotEnd):
            end = item
            continue
        # Snapshot entries have no seq of their own (0): number them so a
        # batch is in sequence order like any page.
        numbered += 1
        entry = msgspec.structs.replace(item, seq=numbered)
        nbytes = sum(n for _, n in plan.entry_chunks(entry, f"{remote} snapshot"))
        if batch and (len(batch) >= BATCH_ENTRIES or batch_bytes + nbytes > BATCH_BYTES):
            await flush()
        batch.append(entry)
        batch_bytes += nbytes
    if end is None:
        raise S3Error("ReplicationBadBatch", message="the snapshot ended without its cursor")
    await flush()
    await set_pull_cursor(writer, remote, epoch=end.epoch, seq=end.seq, remote_site=end.site)
    report.cursor = f"{end.epoch}:{end.seq}"
    for _ in range(MAX_CATCH_UP_STEPS):
        step = await pull_step(source, writer, db_path, remote, limit=limit)
        report.pull_steps += 1
        _merge(report.catch_up, step)
        if not step.more:
            break
    return report


def _merge(total: StepReport, step: StepReport) -> None:
    total.entries += step.entries
    total.applied += step.applied
    total.skipped += step.skipped
    total.conflicts += step.conflicts
    total.chunks += step.chunks
    total.bytes_in += step.bytes_in
    total.last_hlc = max(total.last_hlc, step.last_hlc)
    total.epoch, total.cursor, total.head = step.epoch, step.cursor, step.head
    total.head_hlc, total.more, total.remote_site = step.head_hlc, step.more, step.remote_site
    total.backlog_bytes = step.backlog_bytes


async def snapshot_items(body: AsyncIterator[bytes]) -> AsyncIterator[Entry | SnapshotEnd]:
    """The items of a snapshot body as it streams in (decoded by
    ``protocol/repl_snapshot.py``, which bounds each item and refuses a
    truncated stream)."""
    decoder = SnapshotDecoder()
    async for piece in body:
        for item in decoder.feed(piece):
            yield item
    decoder.close()


async def bootstrap_from(
    source: Remote,
    stream: Remote,
    writer: WriterPort,
    db_path: Path,
    remote: str,
    *,
    force: bool,
    limit: int,
) -> BootstrapReport:
    """``repl-bootstrap``: stream ``GET /v1/replication/snapshot`` of
    ``remote`` (through ``stream``) into this store, fetching chunks and
    pulling through ``source`` (a client holds one connection, busy with
    the snapshot while it streams), then pull until caught up."""
    await check_empty(db_path, force=force)
    async with stream.snapshot() as body:
        return await bootstrap(
            source, writer, db_path, remote, snapshot_items(body), force=True, limit=limit
        )
