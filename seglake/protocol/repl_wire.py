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
- A **push body** (``POST /v1/replication/oplog``) is ``length (u32
  big-endian) | msgpack PushBatch | chunk frames``: the batch first, so the
  receiver can refuse a malformed one before storing a single chunk, then
  the chunks its manifests name that the receiver said it lacked.

The readers (``FrameReader``, ``PushBodyReader``) are incremental, after
h11's: bytes in as they arrive, whole items out, every length checked
against its bound before a byte of what it announces is kept, so a hostile
body costs at most one bounded item of memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

import msgspec

from seglake.units import MiB

DIGEST_BYTES: Final = 32
FRAME_HEADER: Final = struct.Struct(">32sI")
MAX_PAGE_ENTRIES: Final = 10_000
DEFAULT_PAGE_ENTRIES: Final = 1_000
# How far past a page the server looks to count the backlog's bytes: a
# bounded scan, so a far-behind puller's polls stay cheap.
BACKLOG_SCAN_ROWS: Final = 100_000
MAX_MANIFEST_UIDS: Final = 100
MAX_CHUNK_DIGESTS: Final = 64
# The largest chunk a segment record holds (format/segment.py CHUNK_SIZE;
# tests/unit/test_repl_wire.py keeps the two equal: protocol may not import
# format). A frame announcing more is not a chunk of ours.
MAX_CHUNK_BYTES: Final = 4 * MiB
# One GET /chunk answer: 64 MiB is 16 full chunks, enough to keep a link
# busy while bounding what either side holds for one response.
MAX_CHUNK_RESPONSE_BYTES: Final = 64 * MiB
# A push body: a full page (10,000 entries) of small objects with their
# chunks fits; a sender with more splits it into several batches.
MAX_PUSH_BODY_BYTES: Final = 256 * MiB
# The msgpack batch inside a push body: 10,000 entries whose manifests list
# hundreds of chunks each stay far below this.
MAX_PUSH_BATCH_BYTES: Final = 64 * MiB
# POST /have: a msgpack list of at most 10,000 32-byte digests (~340 KiB).
MAX_HAVE_DIGESTS: Final = 10_000
MAX_HAVE_BODY_BYTES: Final = 1 * MiB
# A version uid as the writer makes them is ~30 characters; a remote's
# query naming longer ones is not asking about ours.
MAX_UID_CHARS: Final = 128
# Answers the client reads whole (a page, a manifest map): a page of 10,000
# entries each with a manifest of a multi-GiB object stays below this.
MAX_DOCUMENT_BYTES: Final = 512 * MiB
PUSH_PREFIX: Final = struct.Struct(">I")
SITE_HEX_CHARS: Final = 16
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
    ``site``: the serving store's site id; ``backlog_bytes``: the object
    bytes of the version entries after ``next`` (what a caught-up receiver
    still has to fetch; counted over at most ``BACKLOG_SCAN_ROWS`` entries,
    so a lower bound beyond that)."""

    epoch: str
    site: str
    entries: list[Entry]
    next: int
    more: bool
    floor: int
    head: int
    head_hlc: int = 0
    backlog_bytes: int = 0


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


Buffer = bytes | bytearray | memoryview


def decode_page(raw: Buffer) -> OplogPage:
    try:
        page = _page_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed oplog page: {exc}") from None
    _check_entries(page.entries)
    return page


def decode_batch(raw: Buffer) -> PushBatch:
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


def decode_result(raw: Buffer) -> PushResult:
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


def is_site_id(text: str) -> bool:
    """A site id: 16 lowercase hex digits (settings['site_id'])."""
    return len(text) == SITE_HEX_CHARS and all(c in "0123456789abcdef" for c in text)


def is_uid(text: str) -> bool:
    """Shape of a version uid as a query may name it (never looked up
    before passing this): printable ASCII without separators, bounded."""
    return (
        0 < len(text) <= MAX_UID_CHARS
        and text.isascii()
        and text.isprintable()
        and (" " not in text)
    )


# ---- POST /have and GET /manifest documents ---------------------------------

_digests_decoder: Final = msgspec.msgpack.Decoder(list[bytes])
_manifests_decoder: Final = msgspec.msgpack.Decoder(dict[str, bytes])


def encode_digests(digests: list[bytes]) -> bytes:
    return _encoder.encode(digests)


def decode_digests(raw: Buffer, *, limit: int = MAX_HAVE_DIGESTS) -> list[bytes]:
    """A msgpack list of 32-byte digests, at most ``limit`` of them."""
    try:
        digests = _digests_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed digest list: {exc}") from None
    if len(digests) > limit:
        raise WireError(f"{len(digests)} digests (at most {limit})")
    if any(len(d) != DIGEST_BYTES for d in digests):
        raise WireError("a chunk digest is 32 bytes")
    return digests


def encode_manifests(found: dict[str, bytes]) -> bytes:
    return _encoder.encode(found)


def decode_manifests(raw: Buffer) -> dict[str, bytes]:
    try:
        return _manifests_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed manifest map: {exc}") from None


# ---- incremental readers -----------------------------------------------------


class FrameReader:
    """Chunk frames from a byte stream fed piece by piece.

    ``feed`` returns the frames the new bytes complete, in order; ``eof``
    says the stream ended and raises ``WireError`` if it ended inside a
    frame. A header announcing an empty frame or more than ``max_length``
    bytes raises at once, and so does frame number ``max_frames + 1``; after
    an error the reader is spent. Only the current frame is buffered.
    """

    def __init__(self, *, max_length: int = MAX_CHUNK_BYTES, max_frames: int | None = None) -> None:
        self._buf = bytearray()
        self._want: tuple[bytes, int] | None = None  # header read, body awaited
        self._max_length = max_length
        self._max_frames = max_frames
        self._failed = False
        self.frames = 0

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished frame are held."""
        return bool(self._buf) or self._want is not None

    def _fail(self, message: str) -> WireError:
        self._failed = True
        self._buf.clear()
        return WireError(message)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes]]:
        if self._failed:
            raise WireError("the frame stream already failed")
        self._buf += data
        out: list[tuple[bytes, bytes]] = []
        while True:
            if self._want is None:
                if len(self._buf) < FRAME_HEADER.size:
                    return out
                digest, length = FRAME_HEADER.unpack_from(self._buf, 0)
                if not 0 < length <= self._max_length:
                    raise self._fail(
                        f"chunk frame of {length} bytes (1 to {self._max_length} allowed)"
                    )
                if self._max_frames is not None and self.frames >= self._max_frames:
                    raise self._fail(f"more than {self._max_frames} chunk frames")
                del self._buf[: FRAME_HEADER.size]
                self._want = (bytes(digest), length)
            digest, length = self._want
            if len(self._buf) < length:
                return out
            out.append((digest, bytes(self._buf[:length])))
            del self._buf[:length]
            self._want = None
            self.frames += 1

    def eof(self) -> None:
        if self._failed:
            raise WireError("the frame stream already failed")
        if self._want is not None:
            raise self._fail("truncated chunk frame")
        if self._buf:
            raise self._fail("truncated chunk frame header")


def push_body_parts(batch: PushBatch, frames: list[tuple[bytes, bytes]]) -> list[bytes]:
    """A push body as pieces to send one after the other (the chunks are
    not copied into one buffer): prefix, batch, then each frame's header
    and bytes."""
    raw = encode(batch)
    if len(raw) > MAX_PUSH_BATCH_BYTES:
        raise WireError(f"push batch of {len(raw)} bytes (at most {MAX_PUSH_BATCH_BYTES})")
    parts = [PUSH_PREFIX.pack(len(raw)), raw]
    for digest, data in frames:
        if len(digest) != DIGEST_BYTES:
            raise WireError("a chunk digest is 32 bytes")
        if not 0 < len(data) <= MAX_CHUNK_BYTES:
            raise WireError(f"chunk of {len(data)} bytes (1 to {MAX_CHUNK_BYTES} allowed)")
        parts.append(FRAME_HEADER.pack(digest, len(data)))
        parts.append(data)
    return parts


def encode_push_body(batch: PushBatch, frames: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(push_body_parts(batch, frames))


class PushBodyReader:
    """A push body fed piece by piece: ``feed`` returns first the decoded
    (validated) ``PushBatch``, then the ``(digest, bytes)`` frames, as the
    bytes complete them. ``eof`` raises ``WireError`` when the body ended
    before its batch was whole or inside a frame. The batch's announced
    length is checked against ``max_batch`` before it is buffered."""

    def __init__(
        self,
        *,
        max_batch: int = MAX_PUSH_BATCH_BYTES,
        max_length: int = MAX_CHUNK_BYTES,
        max_frames: int | None = None,
    ) -> None:
        self._head = bytearray()
        self._batch_len: int | None = None
        self._max_batch = max_batch
        self.batch: PushBatch | None = None
        self._frames = FrameReader(max_length=max_length, max_frames=max_frames)

    def feed(self, data: bytes | bytearray | memoryview) -> list[PushBatch | tuple[bytes, bytes]]:
        if self.batch is not None:
            return list(self._frames.feed(data))
        self._head += data
        if self._batch_len is None:
            if len(self._head) < PUSH_PREFIX.size:
                return []
            (n,) = PUSH_PREFIX.unpack_from(self._head, 0)
            if n > self._max_batch:
                raise WireError(f"push batch of {n} bytes (at most {self._max_batch})")
            del self._head[: PUSH_PREFIX.size]
            self._batch_len = n
        if len(self._head) < self._batch_len:
            return []
        batch = decode_batch(memoryview(self._head)[: self._batch_len])
        rest = bytes(self._head[self._batch_len :])
        self._head = bytearray()
        self.batch = batch
        out: list[PushBatch | tuple[bytes, bytes]] = [batch]
        out.extend(self._frames.feed(rest))
        return out

    @property
    def frames(self) -> int:
        return self._frames.frames

    def eof(self) -> PushBatch:
        """The body ended: its batch, or ``WireError`` if it was cut short."""
        if self.batch is None:
            raise WireError("push body ended before its batch")
        self._frames.eof()
        return self.batch


def page_json(page: OplogPage) -> bytes:
    """An oplog page for people (``?format=json``): bodies decoded from
    msgpack, digests and other binary values as hex, manifests as their
    size only (they are binary codec output, not for reading)."""

    def plain(value: object) -> object:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).hex()
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    entries = []
    for e in page.entries:
        try:
            body = plain(msgspec.msgpack.decode(e.body))
        except msgspec.DecodeError:
            body = e.body.hex()
        entries.append(
            {
                "seq": e.seq, "hlc": e.hlc, "site": e.site, "op": e.op, "bucket": e.bucket,
                "key": e.key, "uid": e.uid, "body": body,
                "manifest_bytes": None if e.manifest is None else len(e.manifest),
            }
        )  # fmt: skip
    doc = {
        "epoch": page.epoch, "site": page.site, "next": page.next, "more": page.more,
        "floor": page.floor, "head": page.head, "head_hlc": page.head_hlc,
        "backlog_bytes": page.backlog_bytes, "cursor": format_cursor(page.epoch, page.next), "entries": entries,
    }  # fmt: skip
    return msgspec.json.encode(doc)
