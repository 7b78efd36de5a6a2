"""Segment codec: header, records, scan, footer, read_record.

Files are built in memory (memfd) so hypothesis can make hundreds of them
quickly; scans run with the default 8 MiB block and with tiny blocks that
split every record across reads, the file-level analogue of feeding a parser
one byte at a time.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seglake.format import segment as seg
from seglake.format.errors import FormatError
from seglake.format.segment import (
    CHUNK_SIZE,
    END_MAGIC,
    FOOTER_MAGIC,
    FOOTER_TAIL_SIZE,
    FORMAT_VERSION,
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    SEGMENT_MAGIC,
    Footer,
    RecordInfo,
    SegmentHeader,
    decode_header,
    digest,
    encode_footer,
    encode_header,
    encode_record_header,
    read_footer,
    read_record,
    scan_records,
)
from seglake.units import MiB

PATH = "seg-000001.seg"

# (block, slack) pairs for the scan window: the production default, then
# windows smaller than one record so every record straddles refills.
WINDOWS = [
    pytest.param(None, id="default"),
    pytest.param((1, 0), id="block1"),
    pytest.param((7, 0), id="block7"),
    pytest.param((RECORD_HEADER_SIZE, 0), id="block36"),
    pytest.param((64, 0), id="block64"),
    pytest.param((100, 50), id="block100+50"),
]


@contextlib.contextmanager
def memfile(data: bytes) -> Iterator[int]:
    fd = os.memfd_create("segment-test")
    try:
        os.write(fd, data)
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def scan_window(window: tuple[int, int] | None) -> Iterator[None]:
    if window is None:
        yield
        return
    saved = seg._SCAN_BLOCK, seg._SCAN_SLACK
    seg._SCAN_BLOCK, seg._SCAN_SLACK = window
    try:
        yield
    finally:
        seg._SCAN_BLOCK, seg._SCAN_SLACK = saved


def build(payloads: list[bytes], *, sealed: bool = False) -> tuple[bytes, list[RecordInfo]]:
    out = bytearray(encode_header(7, 1_700_000_000_000_000_000))
    records = []
    for p in payloads:
        d = digest(p)
        records.append(RecordInfo(len(out), len(p), d))
        out += encode_record_header(d, len(p))
        out += p
    if sealed:
        out += encode_footer(records, len(out))
    return bytes(out), records


SMALL = [b"a", b"hello world", bytes(range(256)), b"\x00" * 40, b"z" * 5]


# ---- header ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment_id", "created_ns"),
    [(0, 0), (1, 1_700_000_000_123_456_789), (2**64 - 1, 2**64 - 1), (12345, 0)],
)
def test_header_round_trip(segment_id: int, created_ns: int) -> None:
    raw = encode_header(segment_id, created_ns)
    assert len(raw) == HEADER_SIZE
    assert raw[:8] == SEGMENT_MAGIC
    assert decode_header(raw, path=PATH) == SegmentHeader(segment_id, created_ns, FORMAT_VERSION)
    # Bytes after the header (the records) are not the header's business.
    assert decode_header(raw + b"trailing", path=PATH).segment_id == segment_id


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_header_round_trip_hypothesis(segment_id: int, created_ns: int) -> None:
    got = decode_header(encode_header(segment_id, created_ns), path=PATH)
    assert (got.segment_id, got.created_ns) == (segment_id, created_ns)


def test_header_layout_is_byte_exact() -> None:
    raw = encode_header(0x0102030405060708, 0x1112131415161718)
    assert raw == (
        b"SGLKSEG1" + b"\x00\x03" + b"\x00\x00" + b"\x00" * 4
        + bytes.fromhex("0102030405060708") + bytes.fromhex("1112131415161718")
    )  # fmt: skip


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_encode_header_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError):
        encode_header(bad, 0)
    with pytest.raises(ValueError):
        encode_header(0, bad)


def test_header_every_truncation() -> None:
    raw = encode_header(9, 9)
    for cut in range(HEADER_SIZE):
        with pytest.raises(FormatError) as exc:
            decode_header(raw[:cut], path=PATH)
        assert exc.value.offset == cut, cut
        assert exc.value.path == PATH


@pytest.mark.parametrize(
    ("at", "value", "offset"),
    [
        (0, b"X", 0),  # magic
        (7, b"2", 0),  # magic
        (9, b"\x04", 8),  # version 4
        (8, b"\x01", 8),  # version 257
        (11, b"\x01", 10),  # flags
        (15, b"\x01", 12),  # reserved
    ],
)
def test_header_bad_fields(at: int, value: bytes, offset: int) -> None:
    raw = bytearray(encode_header(9, 9))
    raw[at : at + 1] = value
    with pytest.raises(FormatError) as exc:
        decode_header(bytes(raw), path=PATH)
    assert exc.value.offset == offset
    assert str(exc.value).startswith(f"{PATH} @ offset {offset}: ")


def test_header_garbage_file_is_not_a_segment() -> None:
    with pytest.raises(FormatError, match="not a segment") as exc:
        decode_header(b"PK\x03\x04", path=PATH)
    assert exc.value.offset == 0


# ---- digest and record header ----------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1024, 1 * MiB - 1, 1 * MiB, CHUNK_SIZE])
def test_digest_matches_blake3_both_paths(size: int) -> None:
    data = os.urandom(size)
    want = blake3.blake3(data).digest()
    assert digest(data) == want
    assert digest(bytearray(data)) == want
    assert digest(memoryview(data)) == want


def test_record_header_layout() -> None:
    d = digest(b"abc")
    assert encode_record_header(d, 3) == d + b"\x00\x00\x00\x03" + b"\x00"
    assert encode_record_header(d, 3, seg.TYPE_STATE) == d + b"\x00\x00\x00\x03" + b"\x03"
    assert encode_record_header(d, 3, version=1) == d + b"\x00\x00\x00\x03"
    with pytest.raises(ValueError):
        encode_record_header(d, 3, seg.TYPE_MANIFEST, version=1)
    assert encode_record_header(d, 3, seg.TYPE_VERSION_META) == d + b"\x00\x00\x00\x03\x04"
    assert encode_record_header(d, 3, seg.TYPE_KEY) == d + b"\x00\x00\x00\x03\x05"
    with pytest.raises(ValueError):
        encode_record_header(d, 3, 4, version=2)
    with pytest.raises(ValueError):
        encode_record_header(d, 3, 6)


def test_record_digest_covers_the_type() -> None:
    data = b"some record"
    assert seg.record_digest(seg.TYPE_CHUNK, data) == digest(data)
    seen = {seg.record_digest(t, data) for t in seg.RECORD_TYPES}
    assert len(seen) == len(seg.RECORD_TYPES)


@pytest.mark.parametrize(
    ("dig", "length"), [(b"x" * 31, 1), (b"x" * 32, 0), (b"x" * 32, CHUNK_SIZE + 1)]
)
def test_record_header_rejects_bad_arguments(dig: bytes, length: int) -> None:
    with pytest.raises(ValueError):
        encode_record_header(dig, length)


# ---- scan_records ------------------------------------------------------------


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize(
    "payloads",
    [
        pytest.param([], id="empty"),
        pytest.param([b"x"], id="one-byte"),
        pytest.param(SMALL, id="small"),
        pytest.param([os.urandom(3000) for _ in range(4)], id="3000s"),
    ],
)
def test_scan_round_trip(
    payloads: list[bytes], verify: bool, window: tuple[int, int] | None
) -> None:
    raw, records = build(payloads)
    with memfile(raw) as fd, scan_window(window):
        result = scan_records(fd, path=PATH, verify=verify)
    assert result.error is None
    assert result.records == records
    assert result.valid_end == len(raw)
    for rec, p in zip(result.records, payloads, strict=True):
        assert raw[rec.data_offset : rec.end] == p


def test_scan_full_size_chunks() -> None:
    payloads = [os.urandom(CHUNK_SIZE), os.urandom(CHUNK_SIZE), b"tail"]
    raw, records = build(payloads)
    for window in (None, (MiB, 0)):
        with memfile(raw) as fd, scan_window(window):
            result = scan_records(fd, path=PATH)
        assert result.error is None
        assert result.records == records


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("verify", [True, False])
def test_scan_every_truncation(verify: bool, window: tuple[int, int] | None) -> None:
    raw, records = build(SMALL)
    ends = {r.end for r in records} | {HEADER_SIZE}
    with scan_window(window):
        for cut in range(HEADER_SIZE, len(raw) + 1):
            with memfile(raw[:cut]) as fd:
                result = scan_records(fd, path=PATH, verify=verify)
            good = [r for r in records if r.end <= cut]
            assert result.records == good, cut
            assert result.valid_end == (good[-1].end if good else HEADER_SIZE)
            if cut in ends:
                assert result.error is None, cut
            else:
                assert result.error is not None, cut
                assert result.error.offset == result.valid_end
                assert result.error.path == PATH
                assert "torn" in result.error.reason


def test_scan_file_shorter_than_header() -> None:
    raw, _ = build(SMALL)
    for cut in range(HEADER_SIZE):
        with memfile(raw[:cut]) as fd:
            result = scan_records(fd, path=PATH)
        assert result.records == []
        assert result.valid_end == HEADER_SIZE
        assert result.error is not None and result.error.offset == HEADER_SIZE


def test_scan_every_bit_flip_in_records() -> None:
    payloads = [b"first", b"second record", b"3"]
    raw, records = build(payloads)
    with scan_window((16, 0)):
        for pos in range(HEADER_SIZE, len(raw)):
            owner = next(i for i, r in enumerate(records) if r.offset <= pos < r.end)
            for bit in range(8):
                bad = bytearray(raw)
                bad[pos] ^= 1 << bit
                with memfile(bytes(bad)) as fd:
                    result = scan_records(fd, path=PATH)
                assert result.error is not None, (pos, bit)
                assert result.error.offset == records[owner].offset, (pos, bit)
                assert result.records == records[:owner]


def test_scan_data_flip_reports_digest_mismatch() -> None:
    raw, records = build(SMALL)
    target = records[2]
    bad = bytearray(raw)
    bad[target.data_offset + 100] ^= 0x10
    with memfile(bytes(bad)) as fd:
        result = scan_records(fd, path=PATH)
        unverified = scan_records(fd, path=PATH, verify=False)
    assert result.error is not None
    assert result.error.offset == target.offset
    assert "digest" in result.error.reason
    assert result.records == records[:2]
    assert result.valid_end == target.offset
    # Without verification only the chain of lengths is checked.
    assert unverified.error is None and unverified.records == records


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x00" * 4096, id="zeros"),
        pytest.param(b"\x00", id="one-zero"),
        pytest.param(b"\xff" * 100, id="ff"),
        pytest.param(os.urandom(1000), id="random"),
        pytest.param(digest(b"x") + b"\x00\x00\x00\x01" + b"y", id="wrong-digest"),
        pytest.param(digest(b"abc") + b"\x00\x00\x00\x03" + b"ab", id="torn-data"),
        pytest.param(digest(b"abc")[:20], id="torn-header"),
    ],
)
def test_scan_stops_at_garbage_after_records(
    garbage: bytes, window: tuple[int, int] | None
) -> None:
    raw, records = build(SMALL)
    with memfile(raw + garbage) as fd, scan_window(window):
        result = scan_records(fd, path=PATH)
    assert result.records == records
    assert result.valid_end == len(raw)
    assert result.error is not None and result.error.offset == len(raw)


def test_scan_range_limits() -> None:
    raw, records = build(SMALL)
    with memfile(raw) as fd:
        # Resume from a known record boundary.
        tail = scan_records(fd, path=PATH, start=records[2].offset)
        assert tail.error is None and tail.records == records[2:]
        # An `end` on a boundary stops cleanly; inside a record it is torn.
        part = scan_records(fd, path=PATH, end=records[3].offset)
        assert part.error is None and part.records == records[:3]
        torn = scan_records(fd, path=PATH, end=records[3].offset + 10)
        assert torn.error is not None and torn.error.offset == records[3].offset
        # `end` beyond the file is clamped to the real size.
        assert scan_records(fd, path=PATH, end=len(raw) + 999).error is None
        past = scan_records(fd, path=PATH, start=len(raw) + 1)
        assert past.records == [] and past.error is not None
        with pytest.raises(ValueError):
            scan_records(fd, path=PATH, start=-1)


def test_scan_over_a_footer_says_so() -> None:
    raw, records = build(SMALL, sealed=True)
    with memfile(raw) as fd:
        result = scan_records(fd, path=PATH)
    assert result.records == records
    assert result.error is not None and result.error.offset == records[-1].end
    assert "footer" in result.error.reason


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=600), max_size=12),
    window=st.sampled_from([None, (1, 0), (13, 0), (64, 0), (512, 100)]),
    verify=st.booleans(),
)
def test_scan_round_trip_hypothesis(
    payloads: list[bytes], window: tuple[int, int] | None, verify: bool
) -> None:
    raw, records = build(payloads, sealed=True)
    with memfile(raw) as fd, scan_window(window):
        footer = read_footer(fd, len(raw), path=PATH)
        assert footer is not None
        result = scan_records(fd, path=PATH, end=footer.data_end, verify=verify)
    assert result.error is None
    assert result.records == records == list(footer.records)


@settings(max_examples=150, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=64), max_size=4),
    noise=st.binary(max_size=300),
    window=st.sampled_from([None, (1, 0), (40, 0)]),
)
def test_scan_hostile_bytes_never_raise(
    payloads: list[bytes], noise: bytes, window: tuple[int, int] | None
) -> None:
    raw, records = build(payloads)
    data = raw + noise
    with memfile(data) as fd, scan_window(window):
        result = scan_records(fd, path=PATH)
        with contextlib.suppress(FormatError):
            read_footer(fd, len(data), path=PATH)
    # Whatever the noise, the real records survive and whatever else was
    # accepted is a genuine record: right length chain, right digest.
    assert result.records[: len(records)] == records
    expected = HEADER_SIZE
    for rec in result.records:
        assert rec.offset == expected
        assert digest(data[rec.data_offset : rec.end]) == rec.digest
        expected = rec.end
    assert result.valid_end == expected <= len(data)
    assert (result.error is None) == (expected == len(data))


# ---- footer ----------------------------------------------------------------


@pytest.mark.parametrize("payloads", [[], [b"x"], SMALL], ids=["empty", "one", "small"])
def test_footer_round_trip(payloads: list[bytes]) -> None:
    raw, records = build(payloads, sealed=True)
    data_end = records[-1].end if records else HEADER_SIZE
    with memfile(raw) as fd:
        footer = read_footer(fd, len(raw), path=PATH)
    assert footer == Footer(data_end=data_end, records=tuple(records), footer_offset=data_end)
    assert raw.endswith(END_MAGIC)
    assert raw[data_end : data_end + 8] == FOOTER_MAGIC
    assert len(raw) == data_end + 24 + 45 * len(records) + FOOTER_TAIL_SIZE


def test_footer_absent_in_unsealed_segment() -> None:
    raw, _ = build(SMALL)
    with memfile(raw) as fd:
        assert read_footer(fd, len(raw), path=PATH) is None
    with memfile(b"") as fd:
        assert read_footer(fd, 0, path=PATH) is None


def test_footer_every_bit_flip() -> None:
    raw, records = build(SMALL[:3], sealed=True)
    footer_at = records[2].end
    for pos in range(footer_at, len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[pos] ^= 1 << bit
            with memfile(bytes(bad)) as fd:
                if pos >= len(raw) - len(END_MAGIC):
                    assert read_footer(fd, len(bad), path=PATH) is None
                    continue
                with pytest.raises(FormatError) as exc:
                    read_footer(fd, len(bad), path=PATH)
            assert exc.value.path == PATH
            assert footer_at <= exc.value.offset < len(raw), (pos, bit)


def test_footer_every_truncation_is_never_a_footer() -> None:
    raw, _ = build(SMALL[:3], sealed=True)
    for cut in range(len(raw)):
        with memfile(raw[:cut]) as fd:
            try:
                got = read_footer(fd, cut, path=PATH)
            except FormatError:
                continue
        assert got is None, cut


def test_footer_that_disagrees_with_record_headers() -> None:
    raw, records = build(SMALL, sealed=True)
    bad = bytearray(raw)
    bad[records[3].offset + 32 : records[3].offset + 36] = b"\x00\x00\x00\x01"
    with memfile(bytes(bad)) as fd, pytest.raises(FormatError) as exc:
        read_footer(fd, len(bad), path=PATH)
    assert exc.value.offset == records[3].offset


def test_forged_footer_inside_chunk_data_is_refused() -> None:
    """A client can upload bytes ending in a footer; it must not seal the segment."""
    raw, records = build(SMALL)
    victim_at = len(raw)
    filler = b"F" * 100
    # Claim the victim's record ends exactly where the forged footer starts.
    fake = RecordInfo(victim_at, len(filler), digest(filler))
    forged = encode_footer([*records, fake], fake.end)
    evil, evil_records = build([*SMALL, filler + forged])
    assert evil_records[-1].offset == victim_at
    with memfile(evil) as fd:
        with pytest.raises(FormatError) as exc:
            read_footer(fd, len(evil), path=PATH)
        assert exc.value.offset == victim_at
        # The scan, which is what recovery of an OPEN segment uses, is right.
        result = scan_records(fd, path=PATH)
    assert result.error is None and result.records == evil_records


def test_footer_with_lying_file_size() -> None:
    raw, _ = build(SMALL, sealed=True)
    with memfile(raw) as fd, pytest.raises(FormatError):
        read_footer(fd, len(raw) + 10, path=PATH)


def test_footer_checks_many_small_record_headers_in_windows() -> None:
    payloads = [bytes([i % 251]) * (1 + i % 7) for i in range(30_000)]
    raw, records = build(payloads, sealed=True)
    with memfile(raw) as fd:
        footer = read_footer(fd, len(raw), path=PATH)
    assert footer is not None and len(footer.records) == len(records)


@pytest.mark.parametrize(
    ("records", "data_end"),
    [
        ([RecordInfo(33, 1, b"d" * 32)], 71),  # does not start at 32
        ([RecordInfo(32, 1, b"d" * 32), RecordInfo(71, 1, b"d" * 32)], 109),  # gap
        ([RecordInfo(32, 1, b"d" * 32)], 71),  # data_end not the end
        ([RecordInfo(32, 1, b"d" * 32, 6)], 70),  # unknown type
        ([RecordInfo(32, 1, b"d" * 32, 0, 36)], 69),  # a version-1 record
        ([RecordInfo(32, 0, b"d" * 32)], 68),  # empty record
        ([RecordInfo(32, 1, b"d" * 31)], 69),  # short digest
        ([], 40),
    ],
)
def test_encode_footer_rejects_inconsistent(records: list[RecordInfo], data_end: int) -> None:
    with pytest.raises(ValueError):
        encode_footer(records, data_end)


# ---- read_record -------------------------------------------------------------


def test_read_record_round_trip_and_damage() -> None:
    raw, records = build(SMALL)
    rec = records[2]
    with memfile(raw) as fd:
        assert read_record(fd, rec.data_offset, rec.length, rec.digest, path=PATH) == SMALL[2]
        with pytest.raises(FormatError) as exc:
            read_record(fd, rec.data_offset, rec.length, records[1].digest, path=PATH)
        assert exc.value.offset == rec.data_offset
        assert (
            read_record(fd, rec.data_offset, rec.length, records[1].digest, path=PATH, verify=False)
            == SMALL[2]
        )
        last = records[-1]
        with pytest.raises(FormatError) as exc:
            read_record(fd, last.data_offset, last.length + 3, last.digest, path=PATH)
        assert exc.value.offset == len(raw)
        for length, dig, at in [
            (0, rec.digest, 68),
            (CHUNK_SIZE + 1, rec.digest, 68),
            (1, b"x", 68),
            (1, rec.digest, 67),
        ]:
            with pytest.raises(ValueError):
                read_record(fd, at, length, dig, path=PATH)


def test_format_error_pickles_and_formats() -> None:
    import pickle

    err = FormatError("a/b.seg", 77, "torn record")
    assert str(err) == "a/b.seg @ offset 77: torn record"
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.offset, back.reason) == ("a/b.seg", 77, "torn record")


# ---- speed sanity (printed with -s; never asserted) ---------------------------


def test_scan_throughput_report() -> None:
    # SEGLAKE_SCAN_BENCH_MIB=256 gives the figure quoted in reports; the
    # default keeps the unit suite fast.
    mib = int(os.environ.get("SEGLAKE_SCAN_BENCH_MIB", "16"))
    payload = os.urandom(CHUNK_SIZE)
    record = encode_record_header(digest(payload), len(payload)) + payload
    count = mib * MiB // CHUNK_SIZE
    with tempfile.TemporaryDirectory() as tmp:
        file_path = os.path.join(tmp, "bench.seg")
        with open(file_path, "wb") as f:
            f.write(encode_header(1, 1))
            for _ in range(count):
                f.write(record)
        fd = os.open(file_path, os.O_RDONLY)
        try:
            scan_records(fd, path=file_path)  # warm the page cache
            t0 = time.perf_counter()
            result = scan_records(fd, path=file_path)
            scan_s = time.perf_counter() - t0
        finally:
            os.close(fd)
    assert result.error is None and len(result.records) == count
    t0 = time.perf_counter()
    for _ in range(count):
        digest(payload)
    digest_s = time.perf_counter() - t0
    total = count * CHUNK_SIZE / MiB
    print(
        f"\nscan_records: {total / scan_s:.0f} MiB/s over {total:.0f} MiB (page cache); "
        f"digest: {total / digest_s:.0f} MiB/s on 4 MiB chunks"
    )


# ---- version 1 (stores before #17) stays readable ----------------------------


def build_v1(payloads: list[bytes], *, sealed: bool) -> tuple[bytes, list[RecordInfo]]:
    out = bytearray(encode_header(7, 1, version=1))
    records = []
    for p in payloads:
        d = digest(p)
        records.append(RecordInfo(len(out), len(p), d, seg.TYPE_CHUNK, seg.RECORD_HEADER_SIZE_V1))
        out += encode_record_header(d, len(p), version=1) + p
    if sealed:
        out += encode_footer(records, len(out), version=1)
    return bytes(out), records


@pytest.mark.parametrize("sealed", [True, False])
def test_version_1_segments_read_back(sealed: bool) -> None:
    raw, records = build_v1(SMALL, sealed=sealed)
    assert decode_header(raw, path=PATH).version == 1
    with memfile(raw) as fd:
        end = records[-1].end
        scan = scan_records(fd, path=PATH, end=end)
        assert scan.error is None and scan.records == records
        assert scan_records(fd, path=PATH, end=end, verify=False).records == records
        footer = read_footer(fd, len(raw), path=PATH)
        if sealed:
            assert footer is not None and list(footer.records) == records
        else:
            assert footer is None
        for rec, payload in zip(records, SMALL, strict=True):
            assert read_record(fd, rec.data_offset, rec.length, rec.digest, path=PATH) == payload


def test_typed_records_scan_and_footer() -> None:
    payloads = [(seg.TYPE_CHUNK, b"chunk"), (seg.TYPE_MANIFEST, b"man"), (seg.TYPE_STATE, b"st")]
    out = bytearray(encode_header(7, 1))
    records = []
    for t, p in payloads:
        d = seg.record_digest(t, p)
        records.append(RecordInfo(len(out), len(p), d, t))
        out += encode_record_header(d, len(p), t) + p
    end = len(out)
    out += encode_footer(records, end)
    with memfile(bytes(out)) as fd:
        assert scan_records(fd, path=PATH, end=end).records == records
        footer = read_footer(fd, len(out), path=PATH)
        assert footer is not None and list(footer.records) == records
        assert seg.read_record_data(fd, records[1], path=PATH) == b"man"
    # A changed type byte no longer matches the digest.
    bad = bytearray(out)
    bad[records[1].offset + 36] = seg.TYPE_BUCKET
    with memfile(bytes(bad[:end])) as fd:
        scan = scan_records(fd, path=PATH)
        assert scan.error is not None and scan.error.offset == records[1].offset


# ---- format 3: version-meta (4) and key (5) records ---------------------------


def build_typed(
    payloads: list[tuple[int, bytes]], *, version: int = FORMAT_VERSION
) -> tuple[bytes, list[RecordInfo], int]:
    """A segment of ``version`` holding ``payloads``; (sealed bytes, records,
    data_end). Types a version may not hold are framed by hand."""
    out = bytearray(encode_header(7, 1, version=version))
    records = []
    for t, p in payloads:
        d = seg.record_digest(t, p)
        records.append(RecordInfo(len(out), len(p), d, t))
        out += d + len(p).to_bytes(4, "big") + bytes((t,)) + p
    end = len(out)
    return bytes(out), records, end


def test_format_3_is_written_and_2_is_still_read() -> None:
    assert FORMAT_VERSION == 3 and seg.SUPPORTED_VERSIONS == (1, 2, 3)
    assert decode_header(encode_header(1, 2), path=PATH).version == 3
    assert decode_header(encode_header(1, 2, version=2), path=PATH).version == 2
    with pytest.raises(FormatError, match="unsupported segment format version 4"):
        decode_header(SEGMENT_MAGIC + b"\x00\x04" + bytes(22), path=PATH)
    assert seg.types_of(1) == (0,)
    assert seg.types_of(2) == (0, 1, 2, 3)
    assert seg.types_of(3) == (0, 1, 2, 3, 4, 5)
    assert (
        seg.TYPE_NAMES[seg.TYPE_VERSION_META] == "vmeta" and seg.TYPE_NAMES[seg.TYPE_KEY] == "key"
    )


@pytest.mark.parametrize("version", [1, 2, 3])
def test_version_of_reads_the_header(version: int) -> None:
    with memfile(encode_header(1, 2, version=version)) as fd:
        assert seg.version_of(fd) == version
    with memfile(b"garbage" * 10) as fd:
        assert seg.version_of(fd) == FORMAT_VERSION


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("verify", [True, False])
def test_version_meta_and_key_records_scan_and_footer(
    window: tuple[int, int] | None, verify: bool
) -> None:
    payloads = [
        (seg.TYPE_CHUNK, b"chunk"),
        (seg.TYPE_VERSION_META, b"vmeta record"),
        (seg.TYPE_MANIFEST, b"man"),
        (seg.TYPE_KEY, b"key record"),
        (seg.TYPE_STATE, b"st"),
    ]
    raw, records, end = build_typed(payloads)
    for rec, (t, _p) in zip(records, payloads, strict=True):
        assert raw[rec.offset : rec.offset + RECORD_HEADER_SIZE] == encode_record_header(
            rec.digest, rec.length, t
        )
    sealed = raw + encode_footer(records, end)
    with scan_window(window), memfile(sealed) as fd:
        scan = scan_records(fd, path=PATH, end=end, verify=verify)
        assert scan.error is None and scan.records == records
        footer = read_footer(fd, len(sealed), path=PATH)
        assert footer is not None and list(footer.records) == records
        for rec, (_t, p) in zip(records[1:], payloads[1:], strict=True):
            assert seg.read_record_data(fd, rec, path=PATH) == p
    # The type byte is covered by the digest for the new types too.
    bad = bytearray(raw)
    bad[records[1].offset + 36] = seg.TYPE_KEY
    with memfile(bytes(bad)) as fd:
        scan = scan_records(fd, path=PATH)
        assert scan.error is not None and scan.error.offset == records[1].offset
        assert [r.offset for r in scan.records] == [records[0].offset]


@pytest.mark.parametrize("rtype", [4, 5, 6, 255])
@pytest.mark.parametrize("verify", [True, False])
def test_version_2_segments_refuse_the_new_types(rtype: int, verify: bool) -> None:
    """A version-2 file never holds types 4/5: the bump is what keeps older
    binaries from misreading them, so such a record is damage there."""
    raw, records, end = build_typed([(0, b"c"), (rtype, b"new")], version=2)
    with memfile(raw) as fd:
        scan = scan_records(fd, path=PATH, verify=verify)
        assert scan.error is not None and scan.error.offset == records[1].offset
        assert "unknown record type" in scan.error.reason
        assert scan.valid_end == records[1].offset
    with pytest.raises(ValueError):
        encode_record_header(b"d" * 32, 3, rtype, version=2)
    with pytest.raises(ValueError):
        encode_footer(records, end, version=2)
    if rtype > 5:
        raw3, records3, _end3 = build_typed([(0, b"c"), (rtype, b"new")])
        with memfile(raw3) as fd:
            scan = scan_records(fd, path=PATH, verify=verify)
            assert scan.error is not None and scan.error.offset == records3[1].offset
        with pytest.raises(ValueError):
            encode_record_header(b"d" * 32, 3, rtype)


def test_footer_of_version_2_with_a_type_4_entry_is_refused() -> None:
    # Forge a v2 footer (encode_footer refuses it) listing a type-4 record.
    raw, records, end = build_typed([(0, b"c"), (4, b"new")], version=2)
    body = bytearray(seg._FOOTER_HEAD.pack(FOOTER_MAGIC, 2, 0, len(records), end))
    for rec in records:
        body += seg._FOOTER_ENTRY.pack(rec.offset, rec.length, rec.rtype, rec.digest)
    tail = seg._TAIL.pack(len(body), digest(bytes(body)), END_MAGIC)
    with (
        memfile(raw + bytes(body) + tail) as fd,
        pytest.raises(FormatError, match="type 4, unknown in a version 2 segment"),
    ):
        read_footer(fd, len(raw) + len(body) + len(tail), path=PATH)


def test_version_2_typed_segment_reads_back_unchanged() -> None:
    payloads = [(seg.TYPE_CHUNK, b"chunk"), (seg.TYPE_MANIFEST, b"m"), (seg.TYPE_BUCKET, b"b")]
    raw, records, end = build_typed(payloads, version=2)
    sealed = raw + encode_footer(records, end, version=2)
    with memfile(sealed) as fd:
        assert seg.version_of(fd) == 2
        assert scan_records(fd, path=PATH, end=end).records == records
        footer = read_footer(fd, len(sealed), path=PATH)
        assert footer is not None and list(footer.records) == records
