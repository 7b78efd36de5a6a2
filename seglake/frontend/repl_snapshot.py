"""``GET /v1/replication/snapshot`` (docs/design-replication.md §5): this
store's current state as one stream for a site that bootstraps from it.

Rules this module keeps:

* Who: SigV4 and ``ReplicationRead`` (the endpoint table); a key limited
  to some buckets may not read it (the snapshot spans every bucket).
* One read transaction for the whole answer (``meta/snapshot_reads.py``),
  on a connection of its own: the frontend's shared connection serves
  other requests meanwhile and must not see, nor hold, this transaction.
* Streamed, never buffered whole: rows are read and encoded in a worker
  thread a piece (~``PIECE_BYTES``) at a time while the response is being
  sent, so memory stays bounded however large the store; the transaction
  stays open until the last piece (or until the client goes away).
* Failing before the first byte is a normal error answer; failing after is
  a cut connection: the stream then lacks its end item and the receiver
  refuses it (``protocol/repl_snapshot.py``), never applies a partial one.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Final

import apsw
import trio

from seglake.errors import S3Error
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.meta.schema import open_read
from seglake.meta.snapshot_reads import snapshot_items
from seglake.protocol.repl_snapshot import SnapshotEnd, encode_stream
from seglake.protocol.repl_wire import Entry
from seglake.units import MiB

log = logging.getLogger("seglake.frontend.repl_snapshot")

CONTENT_TYPE: Final = b"application/x-seglake-snapshot"
# Bytes gathered per worker-thread round trip: large enough that thread
# hops cost little, small enough to bound memory per snapshot being served.
PIECE_BYTES: Final = 1 * MiB


def _next_piece(frames: Iterator[bytes]) -> bytes:
    """The next ~PIECE_BYTES of the stream; b"" once it is done."""
    parts: list[bytes] = []
    size = 0
    for frame in frames:
        parts.append(frame)
        size += len(frame)
        if size >= PIECE_BYTES:
            break
    return b"".join(parts)


class SnapshotHandlers(FamilyBase):
    async def get_snapshot(self, req: Request) -> None:
        if getattr(req.identity, "buckets", None):
            raise S3Error("AccessDenied", message="a key limited to some buckets may not replicate")
        try:
            conn = await trio.to_thread.run_sync(open_read, str(self.cfg.db_path))
        except (apsw.Error, RuntimeError) as exc:
            raise S3Error("ServiceUnavailable", message=f"meta.db: {exc}") from None
        items = snapshot_items(conn)
        frames = encode_stream(items)
        try:
            try:
                piece = await trio.to_thread.run_sync(_next_piece, frames)
            except RuntimeError as exc:  # no site id / epoch yet
                raise S3Error("ServiceUnavailable", message=str(exc)) from None
            await req.start(
                200,
                [(b"content-type", CONTENT_TYPE), (b"cache-control", b"no-store")],
            )
            while piece:
                await req.body(piece, more=True)
                try:
                    piece = await trio.to_thread.run_sync(_next_piece, frames)
                except Exception:
                    log.exception("snapshot stream failed; the connection is cut")
                    raise S3Error("InternalError") from None
            await req.body(b"")
        finally:
            # Ends the read transaction (the generators' finally) even when
            # the client went away mid-stream.
            await trio.to_thread.run_sync(_close, frames, items, conn)


def _close(
    frames: Generator[bytes], items: Generator[Entry | SnapshotEnd], conn: apsw.Connection
) -> None:
    # Outer first: closing it does not close the generator it iterates,
    # whose ``finally`` is what ends the read transaction.
    frames.close()
    items.close()
    conn.close()
