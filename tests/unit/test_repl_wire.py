"""The replication wire's incremental readers and documents (pure), fed
whole, one byte at a time and with hostile lengths, after h11's reader tests."""

from __future__ import annotations

import struct

import blake3
import pytest

from seglake.format.segment import CHUNK_SIZE
from seglake.protocol import repl_wire
from seglake.protocol.repl_wire import (
    Entry,
    FrameReader,
    OplogPage,
    PushBatch,
    PushBodyReader,
    WireError,
)

SITE = "0123456789abcdef"


def _digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _frames(*datas: bytes) -> list[tuple[bytes, bytes]]:
    return [(_digest(d), d) for d in datas]


def _batch(n: int = 2) -> PushBatch:
    entries = [
        Entry(seq=i, hlc=1000 + i, site=SITE, op="bucket", bucket="b", key=None, uid=None,
              body=b"\x80")
        for i in range(1, n + 1)
    ]  # fmt: skip
    return PushBatch(site=SITE, epoch="e" * 16, from_seq=0, to_seq=n, entries=entries)


def _feed_all(reader: FrameReader, raw: bytes, step: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for i in range(0, len(raw), step):
        out += reader.feed(raw[i : i + step])
    reader.eof()
    return out


def test_chunk_bound_matches_segment_records() -> None:
    assert repl_wire.MAX_CHUNK_BYTES == CHUNK_SIZE


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_frame_reader_whole_and_bytewise(step: int) -> None:
    frames = _frames(b"a", b"hello world", bytes(range(256)) * 3)
    raw = b"".join(repl_wire.encode_frame(d, data) for d, data in frames)
    assert _feed_all(FrameReader(), raw, step) == frames


@pytest.mark.parametrize("cut", [1, 31, 35, 36, 40])
def test_frame_reader_truncated(cut: int) -> None:
    raw = repl_wire.encode_frame(_digest(b"abcdefgh"), b"abcdefgh")
    reader = FrameReader()
    assert reader.feed(raw[:cut]) == []
    with pytest.raises(WireError, match="truncated"):
        reader.eof()


@pytest.mark.parametrize("length", [0, repl_wire.MAX_CHUNK_BYTES + 1, 0xFFFFFFFF])
def test_frame_reader_refuses_bad_length_before_buffering(length: int) -> None:
    reader = FrameReader()
    with pytest.raises(WireError, match="chunk frame of"):
        reader.feed(struct.pack(">32sI", b"\0" * 32, length))
    with pytest.raises(WireError):
        reader.feed(b"x")  # spent


def test_frame_reader_frame_count_bound() -> None:
    raw = b"".join(repl_wire.encode_frame(d, x) for d, x in _frames(b"1", b"2", b"3"))
    reader = FrameReader(max_frames=2)
    with pytest.raises(WireError, match="more than 2"):
        reader.feed(raw)


@pytest.mark.parametrize("step", [1, 5, 1 << 20])
def test_push_body_round_trip(step: int) -> None:
    batch = _batch()
    frames = _frames(b"x" * 100, b"y" * 5000)
    raw = repl_wire.encode_push_body(batch, frames)
    assert raw == b"".join(repl_wire.push_body_parts(batch, frames))
    reader = PushBodyReader()
    events: list[object] = []
    for i in range(0, len(raw), step):
        events += reader.feed(raw[i : i + step])
    assert reader.eof() == batch
    assert events == [batch, *frames]
    assert reader.frames == 2


def test_push_body_without_frames() -> None:
    reader = PushBodyReader()
    assert reader.feed(repl_wire.encode_push_body(_batch(0), [])) == [_batch(0)]
    assert reader.eof() == _batch(0)


@pytest.mark.parametrize("cut", [0, 2, 4, 10])
def test_push_body_cut_in_batch(cut: int) -> None:
    raw = repl_wire.encode_push_body(_batch(), [])
    reader = PushBodyReader()
    reader.feed(raw[:cut])
    with pytest.raises(WireError, match="before its batch"):
        reader.eof()


def test_push_body_cut_in_frame() -> None:
    raw = repl_wire.encode_push_body(_batch(), _frames(b"z" * 64))
    reader = PushBodyReader()
    reader.feed(raw[:-1])
    with pytest.raises(WireError, match="truncated"):
        reader.eof()


def test_push_body_batch_length_bound() -> None:
    reader = PushBodyReader(max_batch=1000)
    with pytest.raises(WireError, match="push batch of 1001"):
        reader.feed(struct.pack(">I", 1001))


def test_push_body_malformed_batch() -> None:
    junk = b"\xc1\xc1\xc1"
    with pytest.raises(WireError, match="malformed push batch"):
        PushBodyReader().feed(struct.pack(">I", len(junk)) + junk)


def test_push_body_parts_refuse_bad_frames() -> None:
    with pytest.raises(WireError):
        repl_wire.push_body_parts(_batch(), [(b"short", b"x")])
    with pytest.raises(WireError):
        repl_wire.push_body_parts(_batch(), [(b"\0" * 32, b"")])


def test_digests_documents() -> None:
    ds = [_digest(b"1"), _digest(b"2")]
    assert repl_wire.decode_digests(repl_wire.encode_digests(ds)) == ds
    with pytest.raises(WireError, match="32 bytes"):
        repl_wire.decode_digests(repl_wire.encode_digests([b"abc"]))
    with pytest.raises(WireError, match="at most 1"):
        repl_wire.decode_digests(repl_wire.encode_digests(ds), limit=1)
    with pytest.raises(WireError, match="malformed"):
        repl_wire.decode_digests(b"\x93\x01\x02")


def test_manifest_map_document() -> None:
    doc = {"u1": b"\x01\x02"}
    assert repl_wire.decode_manifests(repl_wire.encode_manifests(doc)) == doc
    with pytest.raises(WireError):
        repl_wire.decode_manifests(b"\x91\x01")


def test_shapes() -> None:
    assert repl_wire.is_site_id(SITE)
    assert not repl_wire.is_site_id(SITE.upper())
    assert not repl_wire.is_site_id(SITE + "0")
    assert repl_wire.is_uid("0001700000000000000-abcdef")
    assert not repl_wire.is_uid("")
    assert not repl_wire.is_uid("a b")
    assert not repl_wire.is_uid("é")
    assert not repl_wire.is_uid("x" * (repl_wire.MAX_UID_CHARS + 1))


def test_page_json_is_readable() -> None:
    import json

    page = OplogPage(epoch="e" * 16, site=SITE, entries=list(_batch().entries), next=2,
                     more=False, floor=0, head=2, head_hlc=1002)  # fmt: skip
    doc = json.loads(repl_wire.page_json(page))
    assert doc["cursor"] == "e" * 16 + ":2"
    assert [e["seq"] for e in doc["entries"]] == [1, 2]
    assert doc["entries"][0]["body"] == {}
