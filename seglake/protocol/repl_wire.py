"""What replicating sites send each other (docs/design-replication.md §5):
oplog entries and pages, pushed batches, cursors and chunk frames.

Everything here is pure and treats its input as hostile: a page or batch
comes from another machine, so decoding validates shape (msgspec) and the
frame reader bounds every length before it trusts it.

- An **entry** is one row of the origin's ``oplog`` table. ``body`` is the
  op's own msgpack map (seglake/protocol/repl_entries.py says what each op holds);
  ``manifest`` is, for a ``version`` entry, the origin's encoded manifest
  (seglake/format/manifest.py): the receiver takes its meta, size and the
  (length, digest) of each chunk, never its segment offsets.
- A **cursor** is ``epoch:seq``: ``seq`` orders one store's oplog; a new
  ``epoch`` (after rebuild-index regenerates the oplog) restarts at 0.
- A **chunk frame** is ``digest (32) | length (u32 big-endian) | bytes``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

import msgspec

DIGEST_BYTES: Final = 32
FRAME_HEADER: Final = struct.Struct(">32sI")
MAX_PAGE_ENTRIES: Final = 10_000
DEFAULT_PAGE_ENTRIES: Final = 1_000
MAX_MANIFEST_UIDS: Final = 100
MAX_CHUNK_DIGESTS: Final = 64
OPS: Final = frozenset({"version", "state", "bucket", "bucket_gone", "vmeta", "kek"})


class WireError(ValueError):
    """Bytes from a remote that are not what this protocol sends."""


class Entry(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """One oplog entry, as served by ``GET /v1/replication/oplog`` and
    pushed by ``POST``. ``seq`` is the sender's; the receiver gives it its own."""

    seq: int
    hlc: int
    site: str
    op: str
    bucket: str
    key: str | None
    uid: str | None
    body: bytes
    manifest: bytes | None = None


class OplogPage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A page of the oplog after ``since``. ``next``: the cursor to ask from
    next; ``more``: entries remain after it; ``floor``: the lowest seq still
    kept (a cursor below it must bootstrap); ``head``: the newest seq;
    ``site``: the serving store's site id."""

    epoch: str
    site: str
    entries: list[Entry]
    next: int
    more: bool
    floor: int
    head: int
    head_hlc: int = 0


class PushBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/replication/oplog``: the sender's entries (from_seq, to_seq]
    of its epoch. The receiver keeps a cursor per sending site
    (``repl_inbound``): a batch starting past it is a gap (409), one
    ending at or below it is a replay (its duplicates are skipped)."""

    site: str
    epoch: str
    from_seq: int
    to_seq: int
    entries: list[Entry]


class PushResult(msgspec.Struct, frozen=True):
    applied: int
    skipped: int
    conflicts: int
    cursor: int


_page_decoder: Final = msgspec.msgpack.Decoder(OplogPage)
_batch_decoder: Final = msgspec.msgpack.Decoder(PushBatch)
_result_decoder: Final = msgspec.msgpack.Decoder(PushResult)
_encoder: Final = msgspec.msgpack.Encoder()


def encode(value: OplogPage | PushBatch | PushResult) -> bytes:
    return _encoder.encode(value)


def _check_entries(entries: list[Entry]) -> None:
    if len(entries) > MAX_PAGE_ENTRIES:
        raise WireError(f"{len(entries)} entries (at most {MAX_PAGE_ENTRIES})")
    last = -1
    for e in entries:
        if e.op not in OPS:
            raise WireError(f"unknown op {e.op!r}")
        if e.seq <= last:
            raise WireError("entries out of sequence order")
        last = e.seq
        if e.op == "version" and e.manifest is None:
            raise WireError(f"version entry {e.uid!r} without its manifest")


def decode_page(raw: bytes) -> OplogPage:
    try:
        page = _page_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed oplog page: {exc}") from None
    _check_entries(page.entries)
    return page


def decode_batch(raw: bytes) -> PushBatch:
    try:
        batch = _batch_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed push batch: {exc}") from None
    _check_entries(batch.entries)
    if not batch.from_seq < batch.to_seq and batch.entries:
        raise WireError("push batch range is empty but carries entries")
    if batch.entries and not (
        batch.from_seq < batch.entries[0].seq and batch.entries[-1].seq <= batch.to_seq
    ):
        raise WireError("push batch entries lie outside its range")
    return batch


def decode_result(raw: bytes) -> PushResult:
    try:
        return _result_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed push result: {exc}") from None


def format_cursor(epoch: str, seq: int) -> str:
    return f"{epoch}:{seq}"


def parse_cursor(text: str) -> tuple[str, int]:
    """``epoch:seq`` (or a bare ``seq``, epoch "") → (epoch, seq)."""
    epoch, sep, seq = text.rpartition(":")
    if not seq.isdigit() or len(seq) > 19 or (sep and not epoch.isalnum()):
        raise WireError(f"malformed cursor {text!r}")
    return epoch, int(seq)


def encode_frame(digest: bytes, data: bytes) -> bytes:
    if len(digest) != DIGEST_BYTES:
        raise WireError("a chunk digest is 32 bytes")
    return FRAME_HEADER.pack(digest, len(data)) + data


def decode_frames(raw: bytes, *, max_length: int) -> Iterator[tuple[bytes, bytes]]:
    """(digest, bytes) of each frame in ``raw``; a truncated frame or one
    longer than ``max_length`` raises ``WireError`` (after the good ones)."""
    view = memoryview(raw)
    pos = 0
    while pos < len(view):
        if len(view) - pos < FRAME_HEADER.size:
            raise WireError("truncated chunk frame header")
        digest, length = FRAME_HEADER.unpack_from(view, pos)
        pos += FRAME_HEADER.size
        if length > max_length:
            raise WireError(f"chunk frame of {length} bytes (at most {max_length})")
        if len(view) - pos < length:
            raise WireError("truncated chunk frame")
        yield bytes(digest), bytes(view[pos : pos + length])
        pos += length
