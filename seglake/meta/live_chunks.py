"""Which chunks are live: the one liveness rule garbage collection obeys.

A chunk is identified by ``(segment, offset, length, blake3)`` and is live
while anything that may still be read or completed references it:

- the manifest of every version that is not ``DELETED`` (current or not,
  ``ACTIVE``, ``DAMAGED`` and ``CONFLICT`` alike; delete markers list none);
- every part of every open multipart upload (``parts.chunks``).

Chunks are shared (CopyObject lists its source's chunks, Complete lists the
parts' chunks), so liveness is always computed from *all* references, never
from the version being deleted. A reference that cannot be decoded is not
"nothing": it could point anywhere, so it is reported as a problem and every
caller must refuse to delete while problems exist.

Pure reads over a connection; the writer calls it inside its transaction
(the authoritative re-check), the CLI's planner on a read-only snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import apsw
import msgpack

from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.meta.schema import query

ChunkKey = tuple[int, int, int, bytes]  # (segment id, data offset, length, blake3)


@dataclass
class LiveChunks:
    """Live chunks grouped by segment, with how many references each has."""

    by_segment: dict[int, dict[ChunkKey, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    versions: int = 0
    parts: int = 0

    def add(self, key: ChunkKey) -> None:
        refs = self.by_segment.setdefault(key[0], {})
        refs[key] = refs.get(key, 0) + 1

    def live_bytes(self, segment_id: int) -> int:
        """Bytes of distinct live chunks in a segment (shared chunks count once)."""
        return sum(k[2] for k in self.by_segment.get(segment_id, {}))


def collect_live_chunks(conn: apsw.Connection, segments: Iterable[int] | None = None) -> LiveChunks:
    """Every live chunk reference; restricted to ``segments`` when given.

    Call it inside one read transaction (or the writer's write transaction)
    so versions and parts are seen at the same instant.
    """
    wanted = None if segments is None else set(segments)
    live = LiveChunks()
    rows = query(
        conn,
        "SELECT uid, manifest FROM versions WHERE state != 'DELETED' AND delete_marker = 0",
    )
    for uid, manifest in rows:
        live.versions += 1
        if manifest is None:
            live.problems.append(f"version {uid} has no manifest in the database")
            continue
        try:
            m = decode_manifest(bytes(manifest), path=f"meta.db:versions[{uid}]", with_meta=False)
        except FormatError as exc:
            live.problems.append(str(exc))
            continue
        for c in m.chunks:
            if wanted is None or c.segment_id in wanted:
                live.add((c.segment_id, c.offset, c.length, c.digest))
    for upload_id, number, raw in query(conn, "SELECT upload_id, part_number, chunks FROM parts"):
        live.parts += 1
        refs = decode_part_chunks(raw)
        if refs is None:
            live.problems.append(
                f"part {number} of upload {upload_id} has an unreadable chunk list"
            )
            continue
        for key in refs:
            if wanted is None or key[0] in wanted:
                live.add(key)
    return live


def decode_part_chunks(raw: Any) -> list[ChunkKey] | None:
    """A part row's msgpack ``[[segment, offset, length, digest], ...]``, or
    None if it is not exactly that shape."""
    try:
        items = msgpack.unpackb(bytes(raw), raw=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None
    if not isinstance(items, list):
        return None
    out: list[ChunkKey] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 4):
            return None
        seg, off, length, digest = item
        if not (
            isinstance(seg, int)
            and isinstance(off, int)
            and isinstance(length, int)
            and isinstance(digest, bytes)
            and len(digest) == 32
        ):
            return None
        out.append((seg, off, length, digest))
    return out


def encode_part_chunks(refs: Iterable[ChunkKey]) -> bytes:
    packed: bytes = msgpack.packb([list(r) for r in refs], use_bin_type=True)
    return packed
