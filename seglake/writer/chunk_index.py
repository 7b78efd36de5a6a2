"""``chunk_index``: where a stored chunk is, by BLAKE3 digest
(docs/design-replication.md §5). Derived data: replication serves
``/chunk`` and answers ``/have`` from it, so a chunk already held is never
transferred again.

Rules kept:
- every chunk a committed version or an uploaded part references is indexed
  in the batch that commits the reference (``add``; the first location of a
  digest stays: any copy with the right digest serves);
- GC keeps it true: a moved chunk is re-pointed with its references
  (``repoint``), and when segments are dropped their rows go and each
  digest still live elsewhere is indexed at that place (``drop_segments``);
- a store from before the index is filled once at writer start
  (``backfill``, flag ``settings['chunk_index_ready']``); ``rebuild-index``
  fills it from the manifests it restores.
An entry may point at a chunk no version needs any more (until GC drops its
segment): the bytes are still there and still match their digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import apsw

from seglake.format.errors import FormatError
from seglake.format.manifest import ChunkRef, decode_manifest
from seglake.meta.live_chunks import ChunkKey, LiveChunks, decode_part_chunks
from seglake.meta.schema import get_setting, query, set_setting

READY_SETTING: Final = "chunk_index_ready"
_ADD: Final = (
    "INSERT OR IGNORE INTO chunk_index(digest, segment, offset, length) VALUES (?, ?, ?, ?)"
)


def add(conn: apsw.Connection, chunks: Iterable[ChunkRef]) -> None:
    conn.executemany(_ADD, ((c.digest, c.segment_id, c.offset, c.length) for c in chunks))


def add_keys(conn: apsw.Connection, keys: Iterable[ChunkKey]) -> None:
    conn.executemany(_ADD, ((digest, seg, off, length) for seg, off, length, digest in keys))


def repoint(conn: apsw.Connection, moves: dict[ChunkKey, ChunkRef]) -> None:
    """Entries that pointed at a moved chunk now point at its copy."""
    for (seg, off, _length, digest), to in moves.items():
        conn.execute(
            "UPDATE chunk_index SET segment = ?, offset = ?, length = ? "
            "WHERE digest = ? AND segment = ? AND offset = ?",
            (to.segment_id, to.offset, to.length, digest, seg, off),
        )


def drop_segments(conn: apsw.Connection, segments: list[int], live: LiveChunks) -> None:
    """``segments`` are gone: their entries go, and a digest of theirs that
    is still live in another segment is indexed there."""
    if not segments:
        return
    removed: set[bytes] = set()
    for sid in segments:
        removed.update(
            bytes(r[0])
            for r in query(
                conn, "DELETE FROM chunk_index WHERE segment = ? RETURNING digest", (sid,)
            )
        )
    if not removed:
        return
    dropped = set(segments)
    for sid, refs in live.by_segment.items():
        if sid in dropped:
            continue
        add_keys(conn, (k for k in refs if k[3] in removed))


def backfill(conn: apsw.Connection) -> int:
    """Index every chunk of the kept versions and open parts, once; the
    number of references seen (0 when the index was already complete)."""
    if get_setting(conn, READY_SETTING) == "1":
        return 0
    seen = 0
    with conn:
        for uid, manifest in query(
            conn,
            "SELECT uid, manifest FROM versions WHERE state != 'DELETED' AND delete_marker = 0 "
            "AND manifest IS NOT NULL",
        ):
            try:
                m = decode_manifest(
                    bytes(manifest), path=f"meta.db:versions[{uid}]", with_meta=False
                )
            except FormatError:
                continue  # fsck reports it; an unreadable manifest indexes nothing
            add(conn, m.chunks)
            seen += len(m.chunks)
        for (raw,) in query(conn, "SELECT chunks FROM parts"):
            refs = decode_part_chunks(raw)
            if refs is not None:
                add_keys(conn, refs)
                seen += len(refs)
        set_setting(conn, READY_SETTING, "1")
    return seen
