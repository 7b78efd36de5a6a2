"""How a page of oplog entries is cut into applies and chunk fetches
(pure: seglake/repl/pull.py, push.py and bootstrap.py do the I/O).

- A remote page may name gigabytes of chunks (a few 5 GiB objects). The
  chunks of one ``ReplApply`` are appended before it commits, so that is
  what a crash can leave as garbage and what one step holds up: a page is
  cut into *groups* of consecutive entries whose not-yet-held chunks add
  up to at most ``max_bytes`` (an entry bigger than that alone is one
  group). Each group is one apply, its cursor the seq of its last entry.
- Chunk requests carry at most ``MAX_CHUNK_DIGESTS`` digests and
  ``max_bytes`` bytes each (the endpoint's limits).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.protocol.repl_wire import MAX_CHUNK_DIGESTS, Entry
from seglake.units import MiB

MAX_GROUP_BYTES: Final = 64 * MiB
MAX_FETCH_BYTES: Final = 64 * MiB

Need = tuple[bytes, int]  # (digest, length)


def entry_chunks(entry: Entry, where: str) -> list[Need]:
    """(digest, length) of each chunk a ``version`` entry's manifest names.
    A manifest that does not decode is the remote's error: the batch is
    refused (``ReplicationBadBatch``), never half applied."""
    if entry.op != "version":
        return []
    if entry.manifest is None:
        raise S3Error(
            "ReplicationBadBatch", message=f"{where}: version {entry.uid} has no manifest"
        )
    try:
        m = decode_manifest(entry.manifest, path=f"{where} {entry.uid}", with_meta=False)
    except (FormatError, ValueError) as exc:
        raise S3Error(
            "ReplicationBadBatch", message=f"{where}: manifest of {entry.uid}: {exc}"
        ) from None
    return [(c.digest, c.length) for c in m.chunks]


def unique(needs: Iterable[Need]) -> list[Need]:
    seen: set[bytes] = set()
    out: list[Need] = []
    for d, n in needs:
        if d not in seen:
            seen.add(d)
            out.append((d, n))
    return out


def groups(
    entries: list[Entry],
    chunks_of: dict[int, list[Need]],
    missing: set[bytes],
    max_bytes: int = MAX_GROUP_BYTES,
) -> list[list[Entry]]:
    """Consecutive runs of ``entries`` whose chunks still to fetch (those in
    ``missing``, each counted once in the page) stay within ``max_bytes``."""
    out: list[list[Entry]] = []
    current: list[Entry] = []
    size = 0
    counted: set[bytes] = set()
    for e in entries:
        new = [
            (d, n) for d, n in unique(chunks_of.get(e.seq, [])) if d in missing and d not in counted
        ]
        nbytes = sum(n for _, n in new)
        if current and size + nbytes > max_bytes:
            out.append(current)
            current, size = [], 0
        current.append(e)
        size += nbytes
        counted.update(d for d, _ in new)
    if current:
        out.append(current)
    return out


def fetch_batches(
    needs: list[Need], max_digests: int = MAX_CHUNK_DIGESTS, max_bytes: int = MAX_FETCH_BYTES
) -> list[list[bytes]]:
    """``needs`` (already unique) cut into requests of at most
    ``max_digests`` digests and ``max_bytes`` bytes (one chunk above
    ``max_bytes`` goes alone)."""
    out: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for d, n in needs:
        if current and (len(current) >= max_digests or size + n > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(d)
        size += n
    if current:
        out.append(current)
    return out
