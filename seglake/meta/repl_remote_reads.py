"""The replication cursors and counters kept per remote (``repl_remotes``,
docs/design-replication.md §6), read by the pull/push loops (where to
resume) and by ``seglake status`` / the stats."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import apsw

from seglake.meta.schema import query

_COLUMNS = (
    "remote, site, epoch, pull_cursor, push_epoch, push_cursor, last_pull_hlc, last_push_hlc, "
    "last_ok_ns, last_error, conflicts, bytes_in, bytes_out"
)


@dataclass(frozen=True)
class RemoteRow:
    remote: str
    site: str | None
    epoch: str | None  # the remote's oplog epoch our pull cursor belongs to
    pull_cursor: int
    push_epoch: str | None  # our oplog epoch the push cursor belongs to
    push_cursor: int
    last_pull_hlc: int | None
    last_push_hlc: int | None
    last_ok_ns: int | None
    last_error: str | None
    conflicts: int
    bytes_in: int
    bytes_out: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(r: Any) -> RemoteRow:
    return RemoteRow(
        remote=str(r[0]),
        site=None if r[1] is None else str(r[1]),
        epoch=None if r[2] is None else str(r[2]),
        pull_cursor=int(r[3]),
        push_epoch=None if r[4] is None else str(r[4]),
        push_cursor=int(r[5]),
        last_pull_hlc=None if r[6] is None else int(r[6]),
        last_push_hlc=None if r[7] is None else int(r[7]),
        last_ok_ns=None if r[8] is None else int(r[8]),
        last_error=None if r[9] is None else str(r[9]),
        conflicts=int(r[10]),
        bytes_in=int(r[11]),
        bytes_out=int(r[12]),
    )


def remote_row(conn: apsw.Connection, remote: str) -> RemoteRow | None:
    rows = query(conn, f"SELECT {_COLUMNS} FROM repl_remotes WHERE remote = ?", (remote,))
    return _row(rows[0]) if rows else None


def remote_rows(conn: apsw.Connection) -> list[RemoteRow]:
    return [_row(r) for r in query(conn, f"SELECT {_COLUMNS} FROM repl_remotes ORDER BY remote")]


def store_is_empty(conn: apsw.Connection) -> bool:
    """No bucket and no version row: what bootstrap needs unless forced."""
    rows = query(
        conn,
        "SELECT (SELECT count(*) FROM buckets) + (SELECT count(*) FROM (SELECT 1 FROM versions "
        "LIMIT 1))",
    )
    return int(rows[0][0]) == 0
