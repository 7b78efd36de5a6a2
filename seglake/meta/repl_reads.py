"""Reads that replication serves from ``meta.db`` (migration 10,
docs/design-replication.md §2 and §5): the site's identity, pages of the
oplog, manifests by uid and chunks by digest.

Every function takes a connection the caller opened (read-only in the
frontends and tools, the writer's own in the writer) and only reads.
"""

from __future__ import annotations

from typing import Final, TypeVar

import apsw

from seglake.meta.schema import get_setting, query, scalar
from seglake.protocol.repl_wire import BACKLOG_SCAN_ROWS, Entry, OplogPage

# SQLite's default limit of bound parameters is 32,766; lists from a
# remote are capped far lower (repl_wire limits), this keeps any caller safe.
_IN_BATCH: Final = 500
T = TypeVar("T")


def site_id(conn: apsw.Connection) -> str:
    value = get_setting(conn, "site_id")
    if value is None:
        raise RuntimeError("meta.db has no settings['site_id'] (migration 10 sets it)")
    return value


def oplog_epoch(conn: apsw.Connection) -> str:
    value = get_setting(conn, "oplog_epoch")
    if value is None:
        # The writer creates it at start; a store never started since
        # migration 10 has no oplog to serve either.
        raise RuntimeError("meta.db has no settings['oplog_epoch'] (the writer creates it)")
    return value


def oplog_page(
    conn: apsw.Connection, since: int, limit: int, exclude_site: str | None = None
) -> OplogPage:
    """The oplog entries after seq ``since``, in seq order, at most
    ``limit`` rows scanned. ``exclude_site``: leave out entries whose origin
    is that site (a remote pulling does not need its own writes back);
    ``next`` still moves past them.

    A ``version`` entry carries the version row's manifest. If that row is
    gone (GC purged a DELETED version) the entry is left out like an
    excluded one: its ``state`` entry follows in the oplog, and the receiver
    keeps that as a pending DELETED state, which is the version's outcome.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    with conn:  # one read transaction: head, floor and rows agree
        epoch = oplog_epoch(conn)
        site = site_id(conn)
        floor = int(get_setting(conn, "oplog_floor") or 0)
        head, head_hlc = oplog_head(conn)
        rows = query(
            conn,
            "SELECT o.seq, o.hlc, o.site, o.op, o.bucket, o.key, o.uid, o.body, v.manifest, "
            "v.id IS NOT NULL FROM oplog o LEFT JOIN versions v "
            "ON o.op = 'version' AND v.uid = o.uid WHERE o.seq > ? ORDER BY o.seq LIMIT ?",
            (since, limit),
        )
        after = int(rows[-1][0]) if rows else since
        backlog_bytes = int(
            scalar(
                conn,
                "SELECT ifnull(sum(v.size), 0) FROM (SELECT op, uid, site FROM oplog "
                "WHERE seq > ? ORDER BY seq LIMIT ?) o JOIN versions v ON v.uid = o.uid "
                "WHERE o.op = 'version' AND o.site IS NOT ?",
                (after, BACKLOG_SCAN_ROWS, exclude_site),
            )
        )
    entries: list[Entry] = []
    for seq, hlc, origin, op, bucket, key, uid, body, manifest, has_row in rows:
        if exclude_site is not None and origin == exclude_site:
            continue
        if op == "version" and (not has_row or manifest is None):
            continue
        entries.append(
            Entry(
                seq=int(seq),
                hlc=int(hlc),
                site=str(origin),
                op=str(op),
                bucket=str(bucket),
                key=None if key is None else str(key),
                uid=None if uid is None else str(uid),
                body=bytes(body),
                manifest=bytes(manifest) if op == "version" else None,
            )
        )
    next_seq = int(rows[-1][0]) if rows else since
    return OplogPage(
        epoch=epoch,
        site=site,
        entries=entries,
        next=next_seq,
        more=next_seq < head,
        floor=floor,
        head=head,
        head_hlc=head_hlc,
        backlog_bytes=backlog_bytes,
    )


def _batches(items: list[T]) -> list[list[T]]:
    return [items[i : i + _IN_BATCH] for i in range(0, len(items), _IN_BATCH)]


def manifests(conn: apsw.Connection, uids: list[str]) -> dict[str, bytes]:
    """uid → manifest bytes of the versions that exist among ``uids`` (any
    state: a DELETED row's manifest still describes what was written)."""
    found: dict[str, bytes] = {}
    for part in _batches(sorted(set(uids))):
        marks = ",".join("?" * len(part))
        for uid, manifest in query(
            conn,
            f"SELECT uid, manifest FROM versions WHERE uid IN ({marks}) AND manifest IS NOT NULL",
            tuple(part),
        ):
            found[str(uid)] = bytes(manifest)
    return found


def chunk_locations(
    conn: apsw.Connection, digests: list[bytes]
) -> dict[bytes, tuple[int, int, int]]:
    """digest → (segment, offset, length) of the chunks ``chunk_index`` knows."""
    found: dict[bytes, tuple[int, int, int]] = {}
    for part in _batches(sorted(set(digests))):
        marks = ",".join("?" * len(part))
        for digest, segment, offset, length in query(
            conn,
            f"SELECT digest, segment, offset, length FROM chunk_index WHERE digest IN ({marks})",
            tuple(part),
        ):
            found[bytes(digest)] = (int(segment), int(offset), int(length))
    return found


def missing_digests(conn: apsw.Connection, digests: list[bytes]) -> list[bytes]:
    """The digests of ``digests`` this store holds no chunk for, in the
    order given (each once)."""
    held = chunk_locations(conn, digests)
    seen: set[bytes] = set()
    missing: list[bytes] = []
    for d in digests:
        if d not in held and d not in seen:
            seen.add(d)
            missing.append(d)
    return missing


def oplog_head(conn: apsw.Connection) -> tuple[int, int]:
    """(max seq, max hlc) of the oplog, 0 for an empty one."""
    row = query(conn, "SELECT ifnull(max(seq), 0), ifnull(max(hlc), 0) FROM oplog")
    return int(row[0][0]), int(row[0][1])
