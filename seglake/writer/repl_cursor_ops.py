"""Replication bookkeeping that is not applying entries
(docs/design-replication.md §6, "Where cursors live"): the push cursor per
remote and the last error / byte counters the status shows.

The pull cursor is not here: it moves in the same transaction as the
entries it covers (``repl_ops.py``). The push cursor moves only after the
remote answered 200 for our entries up to it, so a crash between the two
re-sends a batch the remote then skips as a replay.
"""

from __future__ import annotations

import time
from typing import Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import Done, ReplNoteRemote, ReplSetPushCursor
from seglake.meta.schema import query
from seglake.writer.ops import BatchContext, Mutations

# A last_error is a status line, not a log: bounded.
MAX_ERROR_CHARS: Final = 1000


def _ensure_remote(conn: apsw.Connection, remote: str) -> None:
    if not remote or len(remote) > 2048:
        raise S3Error("InvalidArgument", message="a replication remote needs a name")
    conn.execute("INSERT INTO repl_remotes(remote) VALUES (?) ON CONFLICT DO NOTHING", (remote,))


def apply_set_push_cursor(conn: apsw.Connection, ctx: BatchContext, a: ReplSetPushCursor) -> Done:
    if a.cursor < 0 or a.bytes_out < 0 or not a.epoch:
        raise S3Error("InvalidArgument", message="push cursor needs an epoch and seq >= 0")
    _ensure_remote(conn, a.remote)
    ((epoch, cursor),) = query(
        conn, "SELECT push_epoch, push_cursor FROM repl_remotes WHERE remote = ?", (a.remote,)
    )
    if epoch == a.epoch and a.cursor < int(cursor) and not a.rewind:
        # Two pushers for one remote, or a stale step: never move back, or
        # acknowledged entries would be sent again forever.
        raise S3Error(
            "ReplicationCursorMismatch",
            message=f"push cursor of {a.remote} is at {epoch}:{cursor}, not moving back to "
            f"{a.cursor}",
        )
    conn.execute(
        "UPDATE repl_remotes SET push_epoch = ?, push_cursor = ?, "
        "last_push_hlc = max(ifnull(last_push_hlc, 0), ?), bytes_out = bytes_out + ?, "
        "site = CASE WHEN ? != '' THEN ? ELSE site END, last_ok_ns = ? WHERE remote = ?",
        (a.epoch, a.cursor, a.last_push_hlc, a.bytes_out, a.remote_site, a.remote_site,
         time.time_ns(), a.remote),
    )  # fmt: skip
    return Done()


def apply_note_remote(conn: apsw.Connection, ctx: BatchContext, a: ReplNoteRemote) -> Done:
    if a.bytes_in < 0:
        raise S3Error("InvalidArgument", message="bytes_in must not be negative")
    _ensure_remote(conn, a.remote)
    if a.error is not None:
        conn.execute(
            "UPDATE repl_remotes SET last_error = ? WHERE remote = ?",
            (a.error[:MAX_ERROR_CHARS] or None, a.remote),
        )
    if a.bytes_in:
        conn.execute(
            "UPDATE repl_remotes SET bytes_in = bytes_in + ? WHERE remote = ?",
            (a.bytes_in, a.remote),
        )
    return Done()


APPLY: Final[Mutations] = {
    ReplSetPushCursor: apply_set_push_cursor,
    ReplNoteRemote: apply_note_remote,
}
