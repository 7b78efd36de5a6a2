"""One pull step (docs/design-replication.md §6, "Pull loop").

From the stored cursor of ``remote`` (``repl_remotes``: the remote's
``epoch`` and ``pull_cursor``), fetch one oplog page (leaving out entries
whose origin is this site), then for each group of entries
(``plan.groups``): fetch the chunks their manifests name that this store
does not hold, BLAKE3-checked by the client, append them through the
writer, and apply the group with one ``ReplApply`` that also moves the
cursor. Data is therefore durable before any version naming it is
visible, and the cursor moves in the same transaction as the entries: a
crash before the apply leaves only unreferenced chunks (GC's), one after
it re-reads a page whose entries are now duplicates (skipped).

The writer checks the cursor (``ReplicationCursorMismatch`` if two pullers
raced), so a step is always computed from the cursor in ``meta.db``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio

from seglake import failpoints
from seglake.errors import S3Error
from seglake.ipc.messages import ReplApplied, ReplApply, ReplChunk
from seglake.meta.repl_reads import missing_digests, site_id
from seglake.meta.repl_remote_reads import RemoteRow, remote_row
from seglake.meta.schema import open_read
from seglake.protocol.repl_wire import Entry, OplogPage, format_cursor
from seglake.repl import plan
from seglake.repl.port import Remote, WriterPort


@dataclass
class StepReport:
    """What one step did, and where the remote stands after it."""

    entries: int = 0
    applied: int = 0
    skipped: int = 0
    conflicts: int = 0
    chunks: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_hlc: int = 0  # the largest stamp applied (or sent) in this step
    epoch: str = ""
    cursor: int = 0
    head: int = 0
    head_hlc: int = 0
    backlog_bytes: int = 0  # object bytes still to come after this step (OplogPage)
    more: bool = False
    remote_site: str = ""

    @property
    def backlog(self) -> int:
        return max(0, self.head - self.cursor)

    def add(self, r: ReplApplied) -> None:
        self.applied += r.applied
        self.skipped += r.skipped
        self.conflicts += r.conflicts


def entry_values(entries: list[Entry]) -> list[Any]:
    """Entries as the msgpack arrays ``ReplApply`` carries (bytes kept as
    bytes, not base64)."""
    return [msgspec.to_builtins(e, builtin_types=(bytes,)) for e in entries]


def _local_state(db_path: Path, remote: str) -> tuple[RemoteRow | None, str]:
    conn = open_read(str(db_path))
    try:
        return remote_row(conn, remote), site_id(conn)
    finally:
        conn.close()


def _missing(db_path: Path, digests: list[bytes]) -> list[bytes]:
    conn = open_read(str(db_path))
    try:
        return missing_digests(conn, digests)
    finally:
        conn.close()


async def fetch_and_append(
    source: Remote, writer: WriterPort, needs: list[plan.Need], report: StepReport
) -> dict[bytes, ReplChunk]:
    """Fetch ``needs`` from ``source`` and store each through ``writer``;
    where each now is. A chunk the remote does not return is
    ``ReplicationMissingChunk`` (retryable: it may have been moved by the
    remote's GC between its page and our request)."""
    stored: dict[bytes, ReplChunk] = {}
    for batch in plan.fetch_batches(needs, max_bytes=plan.MAX_FETCH_BYTES):
        got = await source.chunks(batch)
        for d in batch:
            data = got.get(d)
            if data is None:
                raise S3Error(
                    "ReplicationMissingChunk", message=f"the remote did not send chunk {d.hex()}"
                )
            where = await writer.append(d, data)
            stored[d] = ReplChunk(d, where.segment_id, where.offset, where.length)
            report.chunks += 1
            report.bytes_in += len(data)
    return stored


async def apply_page(
    source: Remote,
    writer: WriterPort,
    db_path: Path,
    *,
    remote: str,
    direction: str,
    page_epoch: str,
    page_site: str,
    from_seq: int,
    to_seq: int,
    entries: list[Entry],
    report: StepReport,
) -> int:
    """Apply ``entries`` (from_seq, to_seq] in bounded groups, fetching the
    chunks each group needs first; the cursor reached. ``direction`` "pull"
    moves the pull cursor; "bootstrap" applies without one."""
    where = f"{remote} {page_epoch}"
    chunks_of = {e.seq: plan.entry_chunks(e, where) for e in entries}
    all_needs = plan.unique(n for e in entries for n in chunks_of[e.seq])
    missing = set(await trio.to_thread.run_sync(_missing, db_path, [d for d, _ in all_needs]))
    held: dict[bytes, ReplChunk] = {}
    groups = plan.groups(entries, chunks_of, missing, plan.MAX_GROUP_BYTES)
    pos = from_seq
    for i, group in enumerate(groups or [[]]):
        last = i == max(0, len(groups) - 1)
        upto = to_seq if last else group[-1].seq
        needs = plan.unique(n for e in group for n in chunks_of[e.seq])
        fetch = [(d, n) for d, n in needs if d in missing and d not in held]
        held.update(await fetch_and_append(source, writer, fetch, report))
        refs = [held[d] for d, _ in needs if d in held]
        failpoints.hit("repl.after_chunks_before_apply")
        result = await writer.apply(
            ReplApply(
                remote=remote, direction=direction, epoch=page_epoch, from_seq=pos, to_seq=upto,
                entries=entry_values(group), chunks=refs, remote_site=page_site,
            )
        )  # fmt: skip
        failpoints.hit("repl.after_commit_before_reply")
        report.add(result)
        report.entries += len(group)
        report.last_hlc = max([report.last_hlc, *(e.hlc for e in group)])
        pos = upto
    return pos


async def pull_step(
    source: Remote, writer: WriterPort, db_path: Path, remote: str, *, limit: int
) -> StepReport:
    """One page from ``remote``'s stored cursor, applied."""
    row, own_site = await trio.to_thread.run_sync(_local_state, db_path, remote)
    epoch = row.epoch if row is not None and row.epoch else ""
    cursor = row.pull_cursor if row is not None and epoch else 0
    since = format_cursor(epoch, cursor) if epoch else "0"
    page: OplogPage = await source.oplog(since, limit, exclude_site=own_site)
    if page.site == own_site:
        raise S3Error(
            "InvalidArgument", message=f"{remote} is this very site ({own_site}): not pulling"
        )
    # Another epoch (the remote rebuilt its oplog, or our first pull): the
    # remote served its page from seq 0, and the writer accepts only 0 as
    # the start in an epoch it has no cursor for.
    from_seq = cursor if page.epoch == epoch else 0
    report = StepReport(
        epoch=page.epoch, cursor=from_seq, head=page.head, head_hlc=page.head_hlc,
        backlog_bytes=page.backlog_bytes, more=page.more, remote_site=page.site,
    )  # fmt: skip
    if not page.entries and page.next <= from_seq:
        return report
    report.cursor = await apply_page(
        source, writer, db_path, remote=remote, direction="pull", page_epoch=page.epoch,
        page_site=page.site, from_seq=from_seq, to_seq=page.next, entries=page.entries,
        report=report,
    )  # fmt: skip
    return report


async def set_pull_cursor(
    writer: WriterPort, remote: str, *, epoch: str, seq: int, remote_site: str
) -> ReplApplied:
    """Place the pull cursor of ``remote`` at ``epoch:seq`` without entries
    (after a bootstrap, or ``-repl-since``): the writer accepts this only
    when it holds no cursor for that remote in that epoch."""
    return await writer.apply(
        ReplApply(
            remote=remote, direction="pull", epoch=epoch, from_seq=seq, to_seq=seq, entries=[],
            remote_site=remote_site,
        )
    )  # fmt: skip
