"""Manifest codec: round trips, exact layout, and hostile input of every kind."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import blake3
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglake.format.errors import FormatError
from seglake.format.manifest import (
    CHUNK_ENTRY_SIZE,
    FIXED_SIZE,
    MANIFEST_MAGIC,
    MAX_KEY_BYTES,
    ChunkRef,
    Manifest,
    decode_manifest,
    encode_manifest,
    manifest_path,
    shard_of,
)
from seglake.format.segment import CHUNK_SIZE

PATH = "manifests/a7/v1.mf"


def chunk(i: int, length: int = CHUNK_SIZE) -> ChunkRef:
    return ChunkRef(
        segment_id=i // 3, offset=68 + i * 1000, length=length, digest=bytes([i % 256]) * 32
    )


def manifest(
    chunks: tuple[ChunkRef, ...] = (),
    *,
    key: str = "photos/2024/cat.jpg",
    meta: dict[str, Any] | None = None,
    bucket: str = "my-bucket",
    version_id: str = "0192f0c4e6a97c3b8d2f4e1a5b6c7d8e",
) -> Manifest:
    return Manifest(
        bucket=bucket,
        key=key,
        version_id=version_id,
        size=sum(c.length for c in chunks),
        chunks=chunks,
        meta={} if meta is None else meta,
    )


def reseal(body: bytes) -> bytes:
    """Recompute the trailing checksum so a deliberately bad field gets past it."""
    return body[:-32] + blake3.blake3(body[:-32]).digest()


def small() -> bytes:
    return encode_manifest(
        manifest((chunk(0, 10), chunk(1, 3)), key="k/ü", meta={"etag": "abc", "n": 1})
    )


CASES = [
    pytest.param(manifest(), id="empty-object"),
    pytest.param(manifest((chunk(0),)), id="one-full-chunk"),
    pytest.param(manifest((chunk(0, 1),)), id="one-byte"),
    pytest.param(
        manifest((chunk(0), chunk(1, 5 * 1024 * 1024 - CHUNK_SIZE), chunk(2), chunk(3, 17))),
        id="multipart-short-chunk-in-middle",
    ),
    pytest.param(manifest(tuple(chunk(i) for i in range(1280))), id="5GiB"),
    pytest.param(manifest(key="日本語/🙂/\u202etxt.exe"), id="unicode-key"),
    pytest.param(manifest(key="a\x00b\nc\r\td"), id="control-chars"),
    pytest.param(manifest(key="k" * MAX_KEY_BYTES), id="1024-byte-key"),
    pytest.param(manifest(key="é" * (MAX_KEY_BYTES // 2)), id="1024-byte-utf8-key"),
    pytest.param(manifest(bucket="a" * 63), id="long-bucket"),
    pytest.param(manifest(version_id="null"), id="null-version"),
    pytest.param(
        manifest(
            meta={
                "etag": '"9b2cf535f27731c974343645a3985328-3"',
                "content_type": "image/jpeg",
                "user": {"x-amz-meta-owner": "ünïcode", "empty": ""},
                "checksums": {"crc32c": b"\x01\x02\x03\x04", "sha256": None},
                "created_ns": 1_700_000_000_000_000_000,
                "delete_marker": False,
                "parts": [[1, 5242880], [2, 17]],
                "ratio": 0.25,
                "neg": -(2**63),
                "big": 2**64 - 1,
                # bytes keys are fine below the top level
                "nested": {"a": {"b": {"c": [1, [2, [3]]], b"raw": b"\xff"}}},
            }
        ),
        id="rich-meta",
    ),
]


@pytest.mark.parametrize("m", CASES)
def test_round_trip(m: Manifest) -> None:
    raw = encode_manifest(m)
    assert decode_manifest(raw, path=PATH) == m
    assert decode_manifest(bytearray(raw), path=PATH) == m
    assert decode_manifest(memoryview(raw), path=PATH) == m
    assert encode_manifest(decode_manifest(raw, path=PATH)) == raw


def test_layout_is_byte_exact() -> None:
    c = ChunkRef(segment_id=5, offset=68, length=3, digest=b"\xaa" * 32)
    m = Manifest(bucket="b", key="k", version_id="v", size=3, chunks=(c,), meta={})
    raw = encode_manifest(m)
    body = (
        b"SGLKMAN1" + b"\x00\x01" + b"\x00\x00" + b"\x00" * 4
        + (3).to_bytes(8, "big") + (1).to_bytes(4, "big")
        + (1).to_bytes(2, "big") + (1).to_bytes(4, "big") + (1).to_bytes(2, "big")
        + (1).to_bytes(4, "big")
        + b"b" + b"k" + b"v"
        + (5).to_bytes(8, "big") + (68).to_bytes(8, "big") + (3).to_bytes(4, "big") + b"\xaa" * 32
        + b"\x80"
    )  # fmt: skip
    assert raw == body + blake3.blake3(body).digest()
    assert len(raw) == FIXED_SIZE + 3 + CHUNK_ENTRY_SIZE + 1 + 32


names = st.text(min_size=1, max_size=40).filter(lambda s: 0 < len(s.encode()) <= 255)
keys = st.text(min_size=1, max_size=300).filter(lambda s: len(s.encode()) <= MAX_KEY_BYTES)
version_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/\\"),
    min_size=1,
    max_size=128,
).filter(lambda s: s not in (".", ".."))
plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)  # fmt: skip
chunk_refs = st.builds(
    ChunkRef,
    segment_id=st.integers(0, 2**64 - 1),
    offset=st.integers(68, 2**64 - 1),
    length=st.integers(1, CHUNK_SIZE),
    digest=st.binary(min_size=32, max_size=32),
)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    chunks = tuple(draw(st.lists(chunk_refs, max_size=6)))
    return Manifest(
        bucket=draw(names),
        key=draw(keys),
        version_id=draw(version_ids),
        size=sum(c.length for c in chunks),
        chunks=chunks,
        meta=draw(st.dictionaries(st.text(max_size=10), plain, max_size=4)),
    )


@settings(max_examples=50, deadline=None)
@given(manifests())
def test_round_trip_hypothesis(m: Manifest) -> None:
    assert decode_manifest(encode_manifest(m), path=PATH) == m


def test_every_truncation() -> None:
    raw = small()
    for cut in range(len(raw)):
        with pytest.raises(FormatError) as exc:
            decode_manifest(raw[:cut], path=PATH)
        assert exc.value.offset == cut, cut
        assert exc.value.path == PATH


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", small()])
def test_trailing_bytes(extra: bytes) -> None:
    raw = small()
    with pytest.raises(FormatError) as exc:
        decode_manifest(raw + extra, path=PATH)
    assert exc.value.offset == len(raw)


def test_every_bit_flip() -> None:
    raw = small()
    for pos in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[pos] ^= 1 << bit
            with pytest.raises(FormatError):
                decode_manifest(bytes(bad), path=PATH)


def test_checksum_mismatch_names_the_checksum() -> None:
    raw = bytearray(small())
    raw[45] ^= 1
    with pytest.raises(FormatError, match="checksum") as exc:
        decode_manifest(bytes(raw), path=PATH)
    assert exc.value.offset == len(raw) - 32


def _fields(raw: bytes) -> dict[str, int]:
    """Offsets of the variable parts of an encoded manifest."""
    (_, _, _, _, _, count, lb, lk, lv, _) = struct.unpack_from(">8sHHIQIHIHI", raw)
    key_at = FIXED_SIZE + lb
    table_at = key_at + lk + lv
    return {
        "bucket": FIXED_SIZE,
        "key": key_at,
        "vid": key_at + lk,
        "table": table_at,
        "meta": table_at + count * CHUNK_ENTRY_SIZE,
    }


def _patch(raw: bytes, at: int, value: bytes) -> bytes:
    return reseal(raw[:at] + value + raw[at + len(value) :])


def _with_meta(meta_bytes: bytes) -> bytes:
    """small() with its meta replaced by arbitrary bytes, lengths and checksum fixed up."""
    raw = small()
    f = _fields(raw)
    body = raw[: f["meta"]] + meta_bytes
    body = body[:36] + struct.pack(">I", len(meta_bytes)) + body[40:]
    return body + blake3.blake3(body).digest()


def hostile_cases() -> list[Any]:
    raw = small()
    f = _fields(raw)
    t = f["table"]
    return [
        pytest.param(_patch(raw, 0, b"XGLK"), 0, "magic", id="magic"),
        pytest.param(_patch(raw, 8, b"\x00\x03"), 8, "version", id="version"),
        pytest.param(_patch(raw, 10, b"\x00\x01"), 10, "flags", id="flags"),
        pytest.param(_patch(raw, 12, b"\x00\x00\x00\x01"), 12, "reserved", id="reserved"),
        pytest.param(_patch(raw, 16, (14).to_bytes(8, "big")), 16, "size", id="size-mismatch"),
        pytest.param(_patch(raw, 28, b"\x00\x00"), 28, "bucket length", id="empty-bucket"),
        pytest.param(_patch(raw, 30, (1025).to_bytes(4, "big")), 30, "key length", id="key-1025"),
        pytest.param(_patch(raw, 34, b"\x00\x00"), 34, "version id length", id="empty-vid"),
        pytest.param(_patch(raw, 36, b"\xff\xff\xff\xff"), 36, "meta length", id="meta-4g"),
        pytest.param(_patch(raw, f["key"] + 2, b"\xc3\x28"), f["key"] + 2, "UTF-8", id="key-utf8"),
        pytest.param(_patch(raw, f["key"] + 2, b"\xed\xa0"), f["key"] + 2, "UTF-8", id="surrogate"),
        pytest.param(_patch(raw, f["bucket"], b"\xff"), f["bucket"], "UTF-8", id="bucket-utf8"),
        pytest.param(_patch(raw, f["vid"], b"/"), f["vid"], "version id", id="vid-slash"),
        pytest.param(_patch(raw, f["vid"], b"\x80"), f["vid"], "version id", id="vid-non-ascii"),
        pytest.param(_patch(raw, f["vid"], b" "), f["vid"], "version id", id="vid-space"),
        pytest.param(_patch(raw, t + 8, (67).to_bytes(8, "big")), t + 8, "offset", id="offset-67"),
        pytest.param(_patch(raw, t + 16, b"\x00" * 4), t + 16, "length 0", id="chunk-len-0"),
        pytest.param(
            _patch(raw, t + 16, (CHUNK_SIZE + 1).to_bytes(4, "big")),
            t + 16,
            "length",
            id="chunk-big",
        ),
        pytest.param(_with_meta(msgpack.packb([1, 2])), f["meta"], "not a map", id="meta-list"),
        pytest.param(_with_meta(b"\xc1"), f["meta"], "msgpack", id="meta-never-used-byte"),
        pytest.param(_with_meta(b"\x81\xa1a"), f["meta"], "msgpack", id="meta-truncated"),
        pytest.param(_with_meta(b"\x80\x80"), f["meta"], "msgpack", id="meta-extra-data"),
        pytest.param(_with_meta(b"\x81\x01\x02"), f["meta"], "msgpack", id="meta-int-key"),
        pytest.param(_with_meta(b"\x81\xc4\x01k\x01"), f["meta"], "key", id="meta-bytes-top-key"),
        pytest.param(
            _with_meta(b"\x81\xa1a\xa2\xff\xfe"), f["meta"], "msgpack", id="meta-bad-utf8"
        ),
        pytest.param(
            _with_meta(msgpack.packb({"t": msgpack.Timestamp(1, 0)})), f["meta"], "", id="meta-ts"
        ),
        pytest.param(
            _with_meta(msgpack.packb({"e": msgpack.ExtType(3, b"x")})), f["meta"], "", id="meta-ext"
        ),
        pytest.param(
            _with_meta(b"\x81\xa1a" + b"\x91" * 40 + b"\xc0"), f["meta"], "deeper", id="meta-deep"
        ),
        pytest.param(
            _with_meta(b"\x81\xa1a" + b"\x91" * 100_000 + b"\xc0"),
            f["meta"],
            "",
            id="meta-very-deep",
        ),
        pytest.param(
            _with_meta(b"\x81\xa1a\xdb\xff\xff\xff\xff"), f["meta"], "msgpack", id="meta-str-4g"
        ),
        pytest.param(
            _with_meta(b"\x81\xa1a\xdd\xff\xff\xff\xff"), f["meta"], "msgpack", id="meta-array-4g"
        ),
    ]


@pytest.mark.parametrize(("raw", "offset", "words"), hostile_cases())
def test_hostile_fields(raw: bytes, offset: int, words: str) -> None:
    with pytest.raises(FormatError) as exc:
        decode_manifest(raw, path=PATH)
    assert exc.value.offset == offset, exc.value
    assert words in exc.value.reason


def test_chunk_count_larger_than_data() -> None:
    raw = _patch(small(), 24, b"\xff\xff\xff\xff")
    with pytest.raises(FormatError, match="truncated") as exc:
        decode_manifest(raw, path=PATH)
    assert exc.value.offset == len(raw)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_manifest(data, path=PATH)
    with pytest.raises(FormatError):
        decode_manifest(MANIFEST_MAGIC + data, path=PATH)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_resealed_mutations_decode_consistently(data: st.DataObject) -> None:
    """Corruption that keeps a valid checksum (a buggy or hostile writer).

    Either it is refused with FormatError, or what decodes is itself a valid
    manifest that the encoder accepts: the two sides agree on validity.
    """
    raw = bytearray(small())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 33))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        m = decode_manifest(reseal(bytes(raw)), path=PATH)
    except FormatError:
        return
    encode_manifest(m)


@pytest.mark.parametrize(
    "m",
    [
        pytest.param(manifest(key=""), id="empty-key"),
        pytest.param(manifest(key="k" * (MAX_KEY_BYTES + 1)), id="key-1025"),
        pytest.param(manifest(key="é" * 513), id="key-1026-utf8"),
        pytest.param(manifest(key="bad\udc80"), id="lone-surrogate"),
        pytest.param(manifest(bucket=""), id="empty-bucket"),
        pytest.param(manifest(version_id=""), id="empty-vid"),
        pytest.param(manifest(version_id="../etc"), id="vid-slash"),
        pytest.param(manifest(version_id=".."), id="vid-dotdot"),
        pytest.param(manifest(version_id="é"), id="vid-non-ascii"),
        pytest.param(manifest(version_id="v" * 129), id="vid-long"),
        pytest.param(manifest(meta={"x": object()}), id="meta-object"),
        pytest.param(manifest(meta={"x": {1: 2}}), id="meta-int-key"),
        pytest.param(manifest(meta={"t": msgpack.Timestamp(1, 0)}), id="meta-timestamp"),
        pytest.param(manifest(meta={"x": 2**64}), id="meta-huge-int"),
        pytest.param(Manifest("b", "k", "v", 5, (chunk(0, 3),), {}), id="size-mismatch"),
        pytest.param(Manifest("b", "k", "v", 0, (chunk(0, 0),), {}), id="chunk-0"),
        pytest.param(
            Manifest("b", "k", "v", CHUNK_SIZE + 1, (chunk(0, CHUNK_SIZE + 1),), {}),
            id="chunk-too-big",
        ),
        pytest.param(
            Manifest("b", "k", "v", 1, (ChunkRef(0, 68, 1, b"short"),), {}), id="short-digest"
        ),
        pytest.param(Manifest("b", "k", "v", 1, (ChunkRef(0, 40, 1, b"d" * 32),), {}), id="offset"),
        pytest.param(
            Manifest("b", "k", "v", 1, (ChunkRef(-1, 68, 1, b"d" * 32),), {}), id="seg-id"
        ),
        pytest.param(Manifest("b", "k", "v", 0, (), []), id="meta-not-dict"),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_what_decode_would(m: Manifest) -> None:
    with pytest.raises(ValueError):
        encode_manifest(m)


# ---- paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    "vid,shard",
    [
        ("e715fe72d41349bf7df95ca4", "e715/fe7"),
        ("0000000000000000ffffffff", "0000/000"),
        ("abcdef0", "abcd/ef0"),
    ],
)
def test_manifest_path(vid: str, shard: str) -> None:
    root = Path("/data/objects/manifests")
    assert shard_of(vid) == shard
    assert manifest_path(root, vid) == root / shard / f"{vid}.mf"


def test_versions_written_together_share_a_directory() -> None:
    from seglake.writer.ops import VersionClock

    clock = VersionClock()
    uids = [VersionClock.uid_for(clock.tick()) for _ in range(1000)]
    assert len({shard_of(u) for u in uids}) <= 2  # unless a 69 s boundary falls inside


@pytest.mark.parametrize(
    "vid",
    [
        "",
        "../x",
        "a/b",
        "a\\b",
        ".",
        "..",
        "é",
        "a b",
        "x" * 129,
        "null",
        "v1",
        "ABCDEF01",
        "abcdef",
    ],
)
def test_manifest_path_refuses_unsafe_ids(vid: str) -> None:
    with pytest.raises(ValueError):
        manifest_path(Path("/m"), vid)
