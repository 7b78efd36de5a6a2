"""Versions in state CONFLICT (docs/design-replication.md §3): the losers
of concurrent writes on several sites, kept with their data until an
operator deletes or re-puts them. ``GET /v1/meta/conflicts`` pages them.

Paging is by key, never OFFSET: a page is the rows after
(``after_bucket``, ``after_key``, ``after_version``) in that order, so a
page costs the same wherever it starts and rows changing between pages
are neither repeated nor skipped. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import apsw

from seglake.meta.schema import query

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 1000


@dataclass(frozen=True)
class ConflictRow:
    bucket: str
    key: str
    version_id: str
    uid: str
    hlc: int
    site: str
    size: int
    etag: str
    delete_marker: bool
    created_ns: int


@dataclass(frozen=True)
class ConflictPage:
    rows: list[ConflictRow]
    # Where the next page starts (the last row's position), None at the end.
    next: tuple[str, str, str] | None


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix``
    (None: there is none), so a prefix is a range the index can seek."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


def conflict_page(
    conn: apsw.Connection,
    *,
    bucket: str | None = None,
    prefix: str = "",
    limit: int = DEFAULT_PAGE,
    after: tuple[str, str, str] | None = None,
) -> ConflictPage:
    """Up to ``limit`` CONFLICT versions in (bucket, key, version id) order,
    after ``after``; ``bucket`` and ``prefix`` filter (a prefix without a
    bucket applies to the keys of every bucket)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1..{MAX_PAGE}")
    # A tombstone that lost to a concurrent put is nothing to resolve: it is
    # invisible to S3, and the put it lost to stands.
    where = ["state = 'CONFLICT'", "tombstone = 0"]
    params: list[str | int] = []
    if bucket is not None:
        where.append("bucket = ?")
        params.append(bucket)
    if prefix:
        where.append("key >= ?")
        params.append(prefix)
        end = _prefix_end(prefix)
        if end is not None:
            where.append("key < ?")
            params.append(end)
    if after is not None:
        where.append("(bucket, key, version_id) > (?, ?, ?)")
        params.extend(after)
    rows = query(
        conn,
        "SELECT bucket, key, version_id, uid, hlc, site, size, etag, delete_marker, created_ns "
        f"FROM versions WHERE {' AND '.join(where)} ORDER BY bucket, key, version_id LIMIT ?",
        (*params, limit + 1),
    )
    out = [
        ConflictRow(
            str(b), str(k), str(v), str(u), int(h), str(s), int(size), str(e), bool(dm), int(c)
        )
        for b, k, v, u, h, s, size, e, dm, c in rows[:limit]
    ]
    more = len(rows) > limit
    last = out[-1] if out else None
    return ConflictPage(out, (last.bucket, last.key, last.version_id) if more and last else None)


def key_has_conflict(conn: apsw.Connection, bucket: str, key: str) -> bool:
    """Does any version of the key stand in CONFLICT? (GET/HEAD flag it.)"""
    return bool(
        query(
            conn,
            "SELECT 1 FROM versions WHERE bucket = ? AND key = ? AND state = 'CONFLICT' "
            "AND tombstone = 0 LIMIT 1",
            (bucket, key),
        )
    )
