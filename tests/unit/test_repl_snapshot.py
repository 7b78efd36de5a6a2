"""The snapshot stream codec (seglake/protocol/repl_snapshot.py): round trip,
incremental decoding at every split, bounds, and refusal of truncation."""

from __future__ import annotations

import os
import struct

import msgspec
import pytest

from seglake.format.manifest import ChunkRef, Manifest, encode_manifest
from seglake.protocol import repl_entries as re_
from seglake.protocol import repl_snapshot as rs
from seglake.protocol.repl_wire import Entry, WireError

SITE = "0123456789abcdef"


def _version(uid: str, manifest: bytes = b"m") -> Entry:
    body = re_.encode_body(re_.VersionBody(version_id="v1", size=3, etag='"e"', created_ns=1))
    return Entry(0, 5 << 16, SITE, "version", "b", "k", uid, body, manifest)


def _bucket() -> Entry:
    body = re_.encode_body(re_.BucketBody(field="versioning", value="Enabled"))
    return Entry(0, 7 << 16, SITE, "bucket", "b", None, None, body)


def _state(uid: str) -> Entry:
    body = re_.encode_body(re_.StateBody(state="DELETED"))
    return Entry(0, 9 << 16, SITE, "state", "b", "k", uid, body)


END = rs.SnapshotEnd(epoch="e" * 16, seq=42, site=SITE, hlc=9 << 16)
ITEMS: list[rs.Item] = [_bucket(), _version("u1"), _state("u1"), END]


def _stream(items: list[rs.Item] = ITEMS) -> bytes:
    return b"".join(rs.encode_stream(items))


def test_round_trip() -> None:
    assert list(rs.decode_stream([_stream()])) == ITEMS


def test_every_split_point_decodes_the_same() -> None:
    raw = _stream()
    for cut in range(len(raw) + 1):
        dec = rs.SnapshotDecoder()
        got = dec.feed(raw[:cut]) + dec.feed(raw[cut:])
        assert got == ITEMS
        assert dec.close() == END


def test_byte_by_byte() -> None:
    raw = _stream()
    dec = rs.SnapshotDecoder()
    got: list[rs.Item] = []
    for i in range(len(raw)):
        got += dec.feed(raw[i : i + 1])
    assert got == ITEMS and dec.items == 4


def test_truncation_anywhere_is_refused() -> None:
    raw = _stream()
    for cut in range(len(raw)):
        dec = rs.SnapshotDecoder()
        dec.feed(raw[:cut])
        with pytest.raises(WireError, match="truncated"):
            dec.close()


def test_empty_body_is_refused() -> None:
    with pytest.raises(WireError, match="without its end item"):
        list(rs.decode_stream([b""]))


def test_data_after_end_is_refused() -> None:
    raw = _stream()
    with pytest.raises(WireError, match="after the snapshot end"):
        list(rs.decode_stream([raw + rs.encode_item(_bucket())]))
    dec = rs.SnapshotDecoder()
    dec.feed(raw)
    with pytest.raises(WireError, match="after the snapshot end"):
        dec.feed(b"\x00")


def test_encoder_refuses_bad_streams() -> None:
    with pytest.raises(WireError, match="without its end"):
        list(rs.encode_stream([_bucket()]))
    with pytest.raises(WireError, match="after its end"):
        list(rs.encode_stream([END, _bucket()]))
    with pytest.raises(WireError, match="without its manifest"):
        rs.encode_item(_version("u1", manifest=None))  # type: ignore[arg-type]


def test_length_bounds() -> None:
    with pytest.raises(WireError, match="snapshot item of 0 bytes"):
        rs.SnapshotDecoder().feed(struct.pack(">I", 0))
    # Refused from the header alone: nothing of the huge item is awaited.
    with pytest.raises(WireError, match=r"1\.\.1000 allowed"):
        rs.SnapshotDecoder(max_item=1000).feed(struct.pack(">I", 1001))
    with pytest.raises(WireError):
        rs.SnapshotDecoder().feed(struct.pack(">I", 0xFFFFFFFF))


def _framed(obj: object) -> bytes:
    raw = msgspec.msgpack.encode(obj)
    return struct.pack(">I", len(raw)) + raw


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([1, 2, 3], "neither an entry nor the end"),
        ({"epoch": "x"}, "neither"),
        (["e", "x", SITE, 1], "malformed"),
        ([0, 1, SITE, "nope", "b", None, None, b""], "unknown op"),
        ([3, 1, SITE, "bucket", "b", None, None, b""], "seq 3"),
        ([0, 1, SITE, "version", "b", "k", "u", b"\x80"], "without its manifest"),
        ([0, 1, SITE, "state", "b", "k", "u", b"\x80", b"m"], "carries a manifest"),
        ([0, 1, SITE, "state", "b", "k", "u", re_.encode_body(re_.StateBody("LIVE"))], "state"),
        ([0, 1, SITE, "bucket", "b", None, None, b"\xc1"], "malformed bucket body"),
        (["e", -1, SITE, 1], "negative"),
    ],
)
def test_hostile_items(obj: object, match: str) -> None:
    with pytest.raises(WireError, match=match):
        list(rs.decode_stream([_framed(obj) + rs.encode_item(END)]))


def test_garbage_does_not_escape_as_another_exception() -> None:
    for _ in range(300):
        blob = os.urandom(40)
        dec = rs.SnapshotDecoder()
        try:
            dec.feed(struct.pack(">I", len(blob)) + blob)
            dec.close()
        except WireError:
            pass


def test_a_10000_part_manifest_fits() -> None:
    # 10,000 parts of 8 MiB: two full chunks each, plus the part sizes and
    # part checksums a multipart upload keeps in meta.
    chunks = tuple(
        ChunkRef(segment_id=i // 500, offset=4096 + i, length=4 << 20, digest=os.urandom(32))
        for i in range(20_000)
    )
    meta = {
        "etag": '"x-10000"',
        "parts": [8 << 20] * 10_000,
        "part_checksums": os.urandom(32 * 10_000),
        "checksum_type": "COMPOSITE",
    }
    manifest = encode_manifest(
        Manifest("b", "k" * 1024, "v" * 128, sum(c.length for c in chunks), chunks, meta)
    )
    entry = _version("u-big", manifest)
    got = list(rs.decode_stream([rs.encode_item(entry), rs.encode_item(END)]))
    assert got == [entry, END]
    assert len(manifest) < rs.MAX_ITEM_BYTES
