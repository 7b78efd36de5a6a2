"""IPC framing: whole, byte-at-a-time, split at random, hostile prefixes."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.ipc.framing import (
    MAX_FRAME,
    REPLY_ERROR,
    REPLY_OK,
    REQUEST,
    Frame,
    FrameDecoder,
    FramingError,
    encode_frame,
)

FRAMES = [
    Frame(REQUEST, 1, "ping", None),
    Frame(REQUEST, 2, "append", {"digest": b"\x00" * 32}, b"x" * 100_000),
    Frame(REPLY_OK, 3, "put", {"version_id": "abc", "n": [1, 2, 3]}),
    Frame(REPLY_ERROR, 4, "put", ["NoSuchBucket", "gone"]),
    Frame(REQUEST, 5, "unicode-ключ", {"key": "a/ü/ 💡"}, b""),
]


def wire(frames: list[Frame]) -> bytes:
    return b"".join(b"".join(encode_frame(f)) for f in frames)


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: f.name)
def test_whole_and_bytewise(frame: Frame) -> None:
    data = wire([frame])
    assert FrameDecoder().feed(data) == [frame]
    dec = FrameDecoder()
    out: list[Frame] = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == [frame]
    assert dec.pending_bytes == 0


def test_back_to_back_with_partial_tail() -> None:
    data = wire(FRAMES)
    dec = FrameDecoder()
    assert dec.feed(data + data[:5]) == FRAMES
    assert dec.pending_bytes == 5


@given(st.lists(st.integers(min_value=1, max_value=len(wire(FRAMES)) - 1), max_size=20))
def test_random_splits(cuts: list[int]) -> None:
    data = wire(FRAMES)
    points = [0, *sorted(set(cuts)), len(data)]
    dec = FrameDecoder()
    out: list[Frame] = []
    for a, b in itertools.pairwise(points):
        out += dec.feed(data[a:b])
    assert out == FRAMES


@pytest.mark.parametrize(
    "prefix",
    [
        struct.pack(">II", MAX_FRAME + 1, 10),  # too large: refused before buffering
        struct.pack(">II", 2, 0),  # shorter than its own header length field
        struct.pack(">II", 20, 30),  # header longer than the frame
    ],
)
def test_hostile_prefix(prefix: bytes) -> None:
    with pytest.raises(FramingError):
        FrameDecoder().feed(prefix)


@pytest.mark.parametrize(
    "header",
    [b"\xc1", b"\x93\x00\x01\xa1x", b"\x94\x09\x01\xa1x\xc0", b"\x94\x00\xa1x\xa1x\xc0"],
)
def test_bad_headers(header: bytes) -> None:
    data = struct.pack(">II", 4 + len(header), len(header)) + header
    with pytest.raises(FramingError):
        FrameDecoder().feed(data)


def test_oversized_frame_not_encodable() -> None:
    with pytest.raises(FramingError):
        encode_frame(Frame(REQUEST, 1, "append", None, b"x" * MAX_FRAME))
