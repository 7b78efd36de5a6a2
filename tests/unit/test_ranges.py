"""Range header parsing: one table, then a property check against slicing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.ranges import MAX_RANGES, ByteRange, multipart_parts, parse_range

CASES = [
    # header, size, expected ranges (None = serve the whole object)
    (None, 10, None),
    ("bytes=0-0", 10, [(0, 0)]),
    ("bytes=0-9", 10, [(0, 9)]),
    ("bytes=2-100", 10, [(2, 9)]),
    ("bytes=5-", 10, [(5, 9)]),
    ("bytes=-3", 10, [(7, 9)]),
    ("bytes=-30", 10, [(0, 9)]),
    ("bytes=0-1,4-5", 10, [(0, 1), (4, 5)]),
    ("bytes=0-1, -2", 10, [(0, 1), (8, 9)]),
    ("bytes=50-60,1-2", 10, [(1, 2)]),  # unsatisfiable parts are dropped
    ("BYTES=1-2", 10, [(1, 2)]),
    # not parseable: ignored, the whole object is served
    ("items=0-1", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes=5-2", 10, None),
    ("bytes=1", 10, None),
    ("bytes=--1", 10, None),
    ("bytes=+1-2", 10, None),
    ("bytes=0x1-2", 10, None),
    ("bytes=١-٢", 10, None),  # non-ASCII digits
    ("bytes", 10, None),
]


@pytest.mark.parametrize("header,size,expected", CASES)
def test_table(header: str | None, size: int, expected: list[tuple[int, int]] | None) -> None:
    got = parse_range(header, size)
    assert (None if got is None else [(r.start, r.end) for r in got]) == expected


@pytest.mark.parametrize(
    "header,size",
    [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(S3Error) as e:
        parse_range(header, size)
    assert e.value.code == "InvalidRange" and e.value.status == 416
    assert e.value.headers["Content-Range"] == f"bytes */{size}"


def test_range_explosion_refused() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(MAX_RANGES + 1))
    with pytest.raises(S3Error) as e:
        parse_range(header, 1000)
    assert e.value.code == "InvalidRange"
    assert len(parse_range("bytes=" + ",".join(["0-0"] * MAX_RANGES), 10) or []) == MAX_RANGES


@given(st.integers(0, 200), st.integers(0, 250), st.integers(0, 250))
def test_matches_slicing(size: int, a: int, b: int) -> None:
    data = bytes(range(256))[:size] if size <= 256 else b""
    try:
        got = parse_range(f"bytes={a}-{b}", size)
    except S3Error:
        assert a >= size
        return
    if b < a:
        assert got is None
        return
    assert got is not None and len(got) == 1
    r = got[0]
    assert data[r.start : r.end + 1] == data[a : b + 1]


def test_multipart_lengths() -> None:
    ranges = [ByteRange(0, 1), ByteRange(5, 9)]
    heads, closing, total = multipart_parts(ranges, 10, "text/plain", "BOUND")
    assert total == sum(map(len, heads)) + 2 + 5 + len(closing)
    assert b"Content-Range: bytes 5-9/10" in heads[1] and closing == b"\r\n--BOUND--\r\n"
