"""The snapshot stream of ``GET /v1/replication/snapshot``
(docs/design-replication.md §5, docs/replication.md "Adding a site").

A snapshot is the serving store's current state, read in one read
transaction, as a sequence of items. Each item on the wire is::

    length (u32 big-endian) | msgpack item (length bytes)

An item is either a ``repl_wire.Entry`` (an array of 8 or 9 elements, seq
0: snapshot entries are not oplog rows) or, last and exactly once, a
``SnapshotEnd`` (an array of 4): the oplog cursor ``epoch:seq`` and the
site/HLC the snapshot corresponds to. Bootstrap applies the entries, then
pulls from that cursor.

Everything here is pure and treats its input as hostile (it comes from
another machine): lengths are bounded before anything is buffered, every
entry is validated (known op, body of that op, a manifest on each
``version``), and a stream that stops before its ``SnapshotEnd`` is an
error, never a shorter snapshot: a truncated snapshot applied as if it were
whole would silently lose versions.
"""

from __future__ import annotations

import struct
from collections.abc import Generator, Iterable, Iterator
from typing import Final

import msgspec

from seglake.protocol import repl_entries
from seglake.protocol.repl_wire import OPS, Entry, WireError
from seglake.units import MiB

LENGTH: Final = struct.Struct(">I")
# The largest item is a ``version`` entry: its manifest holds 52 bytes per
# chunk plus up to 8 MiB of meta (seglake/format/manifest.py). 64 MiB leaves
# room for a 10,000-part upload of ~1 M chunks (4 TiB at full chunks) while
# bounding what a hostile length can make the decoder buffer.
MAX_ITEM_BYTES: Final = 64 * MiB


class SnapshotEnd(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The last item: the serving store's oplog ``epoch`` and head ``seq``
    (max oplog seq, 0 when empty), its ``site`` id and newest ``hlc``, all
    read in the snapshot's own transaction."""

    epoch: str
    seq: int
    site: str
    hlc: int


Item = Entry | SnapshotEnd

_encoder: Final = msgspec.msgpack.Encoder()
_entry_decoder: Final = msgspec.msgpack.Decoder(Entry)
_end_decoder: Final = msgspec.msgpack.Decoder(SnapshotEnd)
_ENTRY_FIELDS: Final = (8, 9)
_END_FIELDS: Final = 4


def encode_item(item: Item) -> bytes:
    """One framed item. Refuses what the decoder would refuse, so a bug on
    the serving side fails there rather than on every receiver."""
    if isinstance(item, Entry):
        check_entry(item)
    raw = _encoder.encode(item)
    if len(raw) > MAX_ITEM_BYTES:
        raise WireError(f"snapshot item of {len(raw)} bytes (at most {MAX_ITEM_BYTES})")
    return LENGTH.pack(len(raw)) + raw


def encode_stream(items: Iterable[Item]) -> Generator[bytes]:
    """The framed items of a whole snapshot; the last must be the only
    ``SnapshotEnd``."""
    ended = False
    for item in items:
        if ended:
            raise WireError("snapshot item after its end")
        ended = isinstance(item, SnapshotEnd)
        yield encode_item(item)
    if not ended:
        raise WireError("snapshot without its end")


def check_entry(entry: Entry) -> None:
    if entry.seq != 0:
        raise WireError(f"snapshot entry with seq {entry.seq} (snapshot entries carry 0)")
    if entry.op not in OPS:
        raise WireError(f"unknown op {entry.op!r}")
    if entry.op == "version" and entry.manifest is None:
        raise WireError(f"version entry {entry.uid!r} without its manifest")
    if entry.op != "version" and entry.manifest is not None:
        raise WireError(f"{entry.op} entry carries a manifest")
    try:
        repl_entries.decode_body(entry.op, entry.body)
    except repl_entries.BodyError as exc:
        raise WireError(str(exc)) from None


def decode_item(raw: bytes) -> Item:
    """One unframed item. Entries and the end are told apart by their
    array length (8/9 vs 4), so neither needs a tag on the wire."""
    if not raw:
        raise WireError("empty snapshot item")
    head = raw[0]
    # msgpack fixarray: 0x90 | n (n < 16): both item kinds are that short,
    # and our encoder always uses the shortest form, so a longer array
    # header is refused rather than interpreted.
    count = head - 0x90 if 0x90 <= head <= 0x9F else -1
    try:
        if count in _ENTRY_FIELDS:
            entry = _entry_decoder.decode(raw)
            check_entry(entry)
            return entry
        if count == _END_FIELDS:
            end = _end_decoder.decode(raw)
            if end.seq < 0 or end.hlc < 0:
                raise WireError("snapshot end with a negative seq or hlc")
            return end
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed snapshot item: {exc}") from None
    raise WireError("snapshot item is neither an entry nor the end")


class SnapshotDecoder:
    """Incremental: ``feed`` the body as it arrives and get each complete
    item back; ``close`` at end of body raises unless the ``SnapshotEnd``
    came and nothing followed it.

    At most one item (``max_item`` bytes) plus its header is buffered."""

    def __init__(self, *, max_item: int = MAX_ITEM_BYTES) -> None:
        self._buf = bytearray()
        self._max_item = max_item
        self._need: int | None = None  # length of the item being read
        self.end: SnapshotEnd | None = None
        self.items = 0

    def feed(self, data: bytes) -> list[Item]:
        if self.end is not None and data:
            raise WireError("data after the snapshot end")
        self._buf += data
        out: list[Item] = []
        pos = 0
        try:
            while True:
                if self._need is None:
                    if len(self._buf) - pos < LENGTH.size:
                        return out
                    (length,) = LENGTH.unpack_from(self._buf, pos)
                    if length == 0 or length > self._max_item:
                        raise WireError(
                            f"snapshot item of {length} bytes (1..{self._max_item} allowed)"
                        )
                    pos += LENGTH.size
                    self._need = length
                if len(self._buf) - pos < self._need:
                    return out
                raw = bytes(self._buf[pos : pos + self._need])
                pos += self._need
                self._need = None
                item = decode_item(raw)
                self.items += 1
                out.append(item)
                if isinstance(item, SnapshotEnd):
                    self.end = item
                    if len(self._buf) > pos:
                        raise WireError("data after the snapshot end")
                    return out
        finally:
            # Consumed bytes go once per feed, not once per item: many small
            # items in one network read stay linear.
            del self._buf[:pos]

    def close(self) -> SnapshotEnd:
        """The end item; raises if the stream was truncated."""
        if self.end is None:
            if self._need is not None or self._buf:
                raise WireError("snapshot truncated inside an item")
            raise WireError("snapshot truncated: it ended without its end item")
        return self.end


def decode_stream(chunks: Iterable[bytes], *, max_item: int = MAX_ITEM_BYTES) -> Iterator[Item]:
    """Every item of a whole stream given as byte chunks, ending with the
    ``SnapshotEnd``; raises ``WireError`` (after the good items) on anything
    else."""
    dec = SnapshotDecoder(max_item=max_item)
    for chunk in chunks:
        yield from dec.feed(chunk)
    dec.close()
