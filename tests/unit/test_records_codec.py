"""The metadata-record codec (seglake/format/records.py): round trips, and
hostile input refused with FormatError naming the offset, never a crash."""

from __future__ import annotations

from pathlib import Path

import blake3
import msgpack
import pytest

from seglake.format.errors import FormatError
from seglake.format.records import (
    KIND_BUCKET,
    KIND_KEY,
    KIND_STATE,
    KIND_VERSION_META,
    SEGMENT_TYPE_OF_KIND,
    bucket_body,
    bucket_record_path,
    decode_record,
    encode_record,
    key_body,
    key_gone_body,
    state_record_path,
    vmeta_body,
)
from seglake.format.segment import TYPE_KEY, TYPE_VERSION_META

GOOD = [
    (KIND_BUCKET, bucket_body("photos", 1_700_000_000_000_000_000, "enabled", None)),
    (KIND_BUCKET, bucket_body("logs.2024", 1, "unversioned", '{"Version":"2012-10-17"}')),
    (KIND_BUCKET, bucket_body("susp", 5, "suspended", None)),
    (KIND_BUCKET, bucket_body("aged", 6, "enabled", None, "<LifecycleConfiguration/>")),
    (KIND_STATE, {"uid": "fffe0123456789ab01020304", "state": "DELETED"}),
    (KIND_STATE, {"uid": "fffe0123456789ab01020304", "state": "DAMAGED"}),
    (KIND_STATE, {"uid": "fffe0123456789ab01020304", "state": "PURGED"}),
    (KIND_VERSION_META, vmeta_body("fffe01", 0, {})),
    (
        KIND_VERSION_META,
        vmeta_body(
            "fffe01",
            1_800_000_000_000_000_000,
            {
                "tags": [["k", "v"], ["empty", ""], ["ünï", "çödé"]],
                "acl": {"grants": [["CanonicalUser", "ab" * 32, "READ"]]},
                "lock": {"mode": "COMPLIANCE", "until_ms": 1_900_000_000_000},
                "legal_hold": True,
            },
        ),
    ),
    (KIND_VERSION_META, vmeta_body("u", 5, {"acl": {"canned": "public-read"}})),
    (KIND_KEY, key_body("0123456789abcdef", b"\x00" * 60, "fedcba9876543210", 1)),
    (KIND_KEY, key_gone_body("0123456789abcdef")),
    (
        KIND_BUCKET,
        bucket_body("tagged", 1, "enabled", None, tags="<Tagging/>", object_lock="<x/>"),
    ),
]


@pytest.mark.parametrize(("kind", "body"), GOOD)
def test_round_trip(kind: int, body: dict[str, object]) -> None:
    data = encode_record(kind, body)
    assert decode_record(data, path="r") == (kind, body)


def _sealed(head_and_body: bytes) -> bytes:
    return head_and_body + blake3.blake3(head_and_body).digest()


def _raw(kind: int, body: object, magic: bytes = b"SGLKREC1", version: int = 1) -> bytes:
    packed = msgpack.packb(body)
    return _sealed(
        magic + version.to_bytes(2, "big") + kind.to_bytes(2, "big") + len(packed).to_bytes(4, "big")
        + packed
    )  # fmt: skip


GOOD_BYTES = encode_record(*GOOD[0])


def test_bucket_without_lifecycle_is_written_as_before() -> None:
    """Older writers made bucket bodies of exactly four keys; a bucket with
    no lifecycle configuration still gets that body."""
    assert set(bucket_body("b1", 1, "enabled", None)) == {
        "name",
        "created_ns",
        "versioning",
        "policy",
    }
    assert bucket_body("b1", 1, "enabled", None, "x")["lifecycle"] == "x"


def test_bucket_without_cors_is_written_as_before() -> None:
    """A bucket without a CORS configuration gets no ``cors`` key, so its
    record is byte for byte what the writer made before CORS existed."""
    plain = bucket_body("b1", 1, "enabled", "{}", "lc")
    assert "cors" not in plain
    assert encode_record(KIND_BUCKET, bucket_body("b1", 1, "enabled", "{}", "lc", None)) == (
        encode_record(KIND_BUCKET, plain)
    )
    with_cors = bucket_body("b1", 1, "enabled", None, None, "<CORSConfiguration/>")
    assert with_cors["cors"] == "<CORSConfiguration/>" and "lifecycle" not in with_cors
    assert decode_record(encode_record(KIND_BUCKET, with_cors), path="r")[1] == with_cors


def test_cors_that_is_not_text_is_refused() -> None:
    body = {**bucket_body("b1", 1, "enabled", None), "cors": 7}
    with pytest.raises(FormatError, match="cors is not text"):
        decode_record(_raw(KIND_BUCKET, body), path="r")


def test_lifecycle_that_is_not_text_is_refused() -> None:
    body = {**bucket_body("b1", 1, "enabled", None), "lifecycle": 7}
    with pytest.raises(FormatError, match="lifecycle is not text"):
        decode_record(_raw(KIND_BUCKET, body), path="r")


BAD = [
    ("empty", b"", 0),
    ("truncated header", GOOD_BYTES[:10], 10),
    ("truncated body", GOOD_BYTES[:-1], None),
    ("trailing garbage", GOOD_BYTES + b"x", None),
    ("flipped byte", GOOD_BYTES[:20] + bytes([GOOD_BYTES[20] ^ 1]) + GOOD_BYTES[21:], None),
    ("bad magic", _raw(KIND_BUCKET, GOOD[0][1], magic=b"SGLKMAN1"), 0),
    ("bad version", _raw(KIND_BUCKET, GOOD[0][1], version=9), 8),
    ("bad kind", _raw(7, GOOD[0][1]), 10),
    ("not a map", _raw(KIND_STATE, [1, 2]), 16),
    ("unknown state", _raw(KIND_STATE, {"uid": "a", "state": "ALIVE"}), 16),
    ("no uid", _raw(KIND_STATE, {"state": "DELETED"}), 16),
    ("bad versioning", _raw(KIND_BUCKET, {"name": "b", "created_ns": 1, "versioning": "x"}), 16),
    ("no created", _raw(KIND_BUCKET, {"name": "b", "versioning": "enabled"}), 16),
    ("policy not text", _raw(KIND_BUCKET, {**GOOD[0][1], "policy": 5}), 16),
    ("tags not text", _raw(KIND_BUCKET, {**GOOD[0][1], "tags": 5}), 16),
    ("encryption not text", _raw(KIND_BUCKET, {**GOOD[0][1], "encryption": [1]}), 16),
    ("vmeta no uid", _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "uid": ""}), 16),
    ("vmeta no rev", _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "rev": "1"}), 16),
    ("vmeta rev < 0", _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "rev": -1}), 16),
    ("vmeta tags map", _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "tags": {}}), 16),
    (
        "vmeta tag triple",
        _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "tags": [["a", "b", "c"]]}),
        16,
    ),
    ("vmeta tag int", _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "tags": [["a", 1]]}), 16),
    ("vmeta acl list", _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "acl": []}), 16),
    (
        "vmeta lock mode",
        _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "lock": {"mode": "x", "until_ms": 1}}),
        16,
    ),
    (
        "vmeta lock until",
        _raw(
            KIND_VERSION_META,
            {**vmeta_body("u", 1, {}), "lock": {"mode": "GOVERNANCE", "until_ms": "1"}},
        ),
        16,
    ),
    ("vmeta hold int", _raw(KIND_VERSION_META, {**vmeta_body("u", 1, {}), "legal_hold": 1}), 16),
    ("vmeta no hold", _raw(KIND_VERSION_META, {"uid": "u", "rev": 1, "tags": []}), 16),
    ("key not a map", _raw(KIND_KEY, [1]), 16),
    ("key bad id", _raw(KIND_KEY, {**key_body("a" * 16, bytes(60), "b" * 16, 1), "id": "k"}), 16),
    ("key gone false", _raw(KIND_KEY, {"id": "a" * 16, "gone": False}), 16),
    ("key gone extra", _raw(KIND_KEY, {**key_gone_body("a" * 16), "wrapped": bytes(60)}), 16),
    ("key short", _raw(KIND_KEY, key_body("a" * 16, bytes(59), "b" * 16, 1)), 16),
    ("key no master", _raw(KIND_KEY, {"id": "a" * 16, "wrapped": bytes(60), "created_ns": 1}), 16),
    (
        "key no time",
        _raw(KIND_KEY, {"id": "a" * 16, "wrapped": bytes(60), "master_id": "b" * 16}),
        16,
    ),
    ("not msgpack", _sealed(b"SGLKREC1\x00\x01\x00\x02\x00\x00\x00\x01\xc1"), 16),
    (
        "huge length",
        _sealed(b"SGLKREC1\x00\x01\x00\x02\xff\xff\xff\xff"),
        12,
    ),
]


@pytest.mark.parametrize(("name", "data", "offset"), BAD, ids=[b[0] for b in BAD])
def test_hostile_input_refused(name: str, data: bytes, offset: int | None) -> None:
    with pytest.raises(FormatError) as err:
        decode_record(data, path="/x/rec")
    assert err.value.path == "/x/rec"
    if offset is not None:
        assert err.value.offset == offset


def test_every_prefix_is_refused() -> None:
    for n in range(len(GOOD_BYTES)):
        with pytest.raises(FormatError):
            decode_record(GOOD_BYTES[:n], path="p")


def test_encode_refuses_unknown_kind() -> None:
    with pytest.raises(ValueError):
        encode_record(6, {"a": 1})
    with pytest.raises(ValueError):
        bucket_body("b", 1, "enabled", None, colour="red")


def test_new_kinds_travel_in_the_new_segment_types() -> None:
    assert SEGMENT_TYPE_OF_KIND[KIND_VERSION_META] == TYPE_VERSION_META == 4
    assert SEGMENT_TYPE_OF_KIND[KIND_KEY] == TYPE_KEY == 5


def test_vmeta_body_is_a_full_snapshot() -> None:
    """Defaults are spelled out, so a record after a removal says so."""
    assert vmeta_body("u", 3, {}) == {
        "uid": "u", "rev": 3, "tags": [], "acl": None, "lock": None, "legal_hold": False,
    }  # fmt: skip
    body = vmeta_body("u", 3, {"tags": [("a", "b")], "legal_hold": True})
    assert body["tags"] == [["a", "b"]] and body["legal_hold"] is True


def test_paths() -> None:
    root = Path("/d/objects")
    assert bucket_record_path(root, "photos") == root / "records/buckets/photos.bucket"
    # Names that are not plain S3 names never become odd file names.
    odd = bucket_record_path(root, "../etc")
    assert odd.parent == root / "records/buckets" and odd.name == "x-2e2e2f657463.bucket"
    uid = "fffe0123456789ab01020304"
    assert state_record_path(root, uid) == root / f"records/versions/fffe/012/{uid}.state"
    with pytest.raises(ValueError):
        state_record_path(root, "../../x")
