"""One push step (docs/design-replication.md §6, "Push").

From ``repl_remotes.push_cursor`` (a seq of our own oplog, in
``push_epoch``), read a page of our oplog leaving out entries whose origin
is the remote's site, ask the remote which of the chunks they name it
lacks (``POST /v1/replication/have``), and POST the entries with those
chunks' frames, in groups of bounded size. The push cursor moves only after
the remote answered 200 (``ReplSetPushCursor``): a crash in between sends
the batch again, and the remote skips what it already applied (its
``repl_inbound`` cursor).

Every range is sent, even one whose entries were all left out: the remote
accepts only a batch that starts at its cursor for us (``ReplicationGap``
otherwise). A remote that answers ``ReplicationGap`` lost our cursor (it was
restored or rebuilt): the push restarts from 0 of our epoch, and the remote
skips duplicates.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from seglake import failpoints
from seglake.errors import S3Error
from seglake.format import layout
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.ipc.messages import ReplSetPushCursor
from seglake.meta.repl_reads import chunk_locations, oplog_epoch, oplog_page, site_id
from seglake.meta.repl_remote_reads import RemoteRow, remote_row
from seglake.meta.schema import open_read
from seglake.protocol.repl_wire import OplogPage, PushBatch
from seglake.repl import plan
from seglake.repl.port import Remote, WriterPort
from seglake.repl.pull import StepReport

# ``POST /v1/replication/have`` takes at most this many digests.
MAX_HAVE_DIGESTS = 10_000


def _local_page(
    db_path: Path, remote: str, limit: int, remote_site: str | None
) -> tuple[RemoteRow | None, str, str, int, OplogPage]:
    conn = open_read(str(db_path))
    try:
        row = remote_row(conn, remote)
        own_site, own_epoch = site_id(conn), oplog_epoch(conn)
        cursor = row.push_cursor if row is not None and row.push_epoch == own_epoch else 0
        page = oplog_page(conn, cursor, limit, exclude_site=remote_site)
        return row, own_site, own_epoch, cursor, page
    finally:
        conn.close()


def read_chunks(root: Path, db_path: Path, digests: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(digest, bytes) of local chunks, BLAKE3-checked as they are read (a
    damaged chunk is never sent). A chunk that moved meanwhile (gc-rewrite)
    is looked up again once."""
    frames: list[tuple[bytes, bytes]] = []
    for attempt in range(2):
        conn = open_read(str(db_path))
        try:
            where = chunk_locations(conn, digests)
        finally:
            conn.close()
        frames = []
        try:
            for d in digests:
                if d not in where:
                    raise S3Error(
                        "ReplicationMissingChunk", message=f"local chunk {d.hex()} is not indexed"
                    )
                seg, offset, length = where[d]
                path = layout.segments_dir(root) / layout.segment_file_name(seg)
                fd = os.open(path, os.O_RDONLY)
                try:
                    frames.append((d, segfmt.read_record(fd, offset, length, d, path=str(path))))
                finally:
                    os.close(fd)
            return frames
        except FileNotFoundError:
            if attempt:
                raise
    return frames


async def push_step(
    dest: Remote,
    writer: WriterPort,
    root: Path,
    db_path: Path,
    remote: str,
    *,
    limit: int,
    remote_site: str,
) -> StepReport:
    """One page of our oplog pushed to ``remote`` (whose site id is
    ``remote_site``: its own writes are not sent back)."""
    _row, own_site, own_epoch, cursor, page = await trio.to_thread.run_sync(
        _local_page, db_path, remote, limit, remote_site or None
    )
    if remote_site == own_site:
        raise S3Error(
            "InvalidArgument", message=f"{remote} is this very site ({own_site}): not pushing"
        )
    report = StepReport(
        epoch=own_epoch, cursor=cursor, head=page.head, head_hlc=page.head_hlc, more=page.more,
        backlog_bytes=page.backlog_bytes, remote_site=remote_site,
    )  # fmt: skip
    if page.next <= cursor:
        return report
    where = f"local {own_epoch}"
    chunks_of = {e.seq: plan.entry_chunks(e, where) for e in page.entries}
    needs = plan.unique(n for e in page.entries for n in chunks_of[e.seq])
    lacking: set[bytes] = set()
    digests = [d for d, _ in needs]
    for i in range(0, len(digests), MAX_HAVE_DIGESTS):
        lacking.update(await dest.have(digests[i : i + MAX_HAVE_DIGESTS]))
    groups = plan.groups(page.entries, chunks_of, lacking, plan.MAX_GROUP_BYTES)
    sent: set[bytes] = set()
    pos = cursor
    for i, group in enumerate(groups or [[]]):
        last = i == max(0, len(groups) - 1)
        upto = page.next if last else group[-1].seq
        want = [
            d for d, _ in plan.unique(n for e in group for n in chunks_of[e.seq])
            if d in lacking and d not in sent
        ]  # fmt: skip
        try:
            frames = await trio.to_thread.run_sync(read_chunks, root, db_path, want)
        except (FormatError, OSError) as exc:
            raise S3Error("InternalError", message=f"reading local chunks to push: {exc}") from None
        batch = PushBatch(site=own_site, epoch=own_epoch, from_seq=pos, to_seq=upto, entries=group)
        result = await dest.push(batch, frames)
        failpoints.hit("repl.push_after_ack_before_cursor")
        nbytes = sum(len(b) for _, b in frames)
        hlc = max([0, *(e.hlc for e in group)])
        await writer.apply(
            ReplSetPushCursor(
                remote=remote, epoch=own_epoch, cursor=upto, last_push_hlc=hlc, bytes_out=nbytes,
                remote_site=remote_site,
            )
        )  # fmt: skip
        sent.update(want)
        report.applied += result.applied
        report.skipped += result.skipped
        report.conflicts += result.conflicts
        report.entries += len(group)
        report.chunks += len(frames)
        report.bytes_out += nbytes
        report.last_hlc = max(report.last_hlc, hlc)
        pos = upto
    report.cursor = pos
    return report


async def rewind_push(writer: WriterPort, remote: str, epoch: str) -> None:
    """Start pushing to ``remote`` from 0 of our epoch again (it lost our
    cursor); everything it already has is skipped there as duplicates."""
    await writer.apply(ReplSetPushCursor(remote=remote, epoch=epoch, cursor=0, rewind=True))
