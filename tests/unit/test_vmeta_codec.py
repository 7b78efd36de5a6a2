"""The version-metadata codec (seglake/format/vmeta.py): round trips,
canonical bytes, defaults, and hostile blobs refused with FormatError."""

from __future__ import annotations

import msgpack
import pytest

from seglake.format.errors import FormatError
from seglake.format.vmeta import DEFAULT, Lock, VersionMeta, decode_vmeta, encode_vmeta, from_body

GOOD = [
    VersionMeta(),
    VersionMeta(rev=5),
    VersionMeta(rev=1, tags=(("k", "v"), ("", "empty key is the parser's business"))),
    VersionMeta(rev=2, acl={"canned": "public-read"}),
    VersionMeta(rev=3, acl={"grants": [["CanonicalUser", "ab" * 32, "FULL_CONTROL"]]}),
    VersionMeta(rev=4, lock=Lock("COMPLIANCE", 1_900_000_000_000), legal_hold=True),
    VersionMeta(rev=6, tags=(("ü", "ç" * 256),), extra={"later": 1}),
]


@pytest.mark.parametrize("value", GOOD)
def test_round_trip(value: VersionMeta) -> None:
    blob = encode_vmeta(value)
    assert decode_vmeta(blob) == value
    assert encode_vmeta(decode_vmeta(blob)) == blob  # canonical


def test_null_is_defaults_and_defaults_are_left_out() -> None:
    assert decode_vmeta(None) == DEFAULT and DEFAULT.is_default
    assert msgpack.unpackb(encode_vmeta(VersionMeta(rev=9)), raw=False) == {"rev": 9}
    assert VersionMeta(rev=9).is_default
    assert not VersionMeta(legal_hold=True).is_default


def test_columns_mirror_the_value() -> None:
    assert DEFAULT.columns() == (None, None, None, 0)
    value = VersionMeta(tags=(("a", "b"), ("c", "d")), lock=Lock("GOVERNANCE", 7), legal_hold=True)
    assert value.columns() == (2, "GOVERNANCE", 7, 1)


def test_body_is_a_full_snapshot() -> None:
    assert DEFAULT.body() == {"rev": 0, "tags": [], "acl": None, "lock": None, "legal_hold": False}
    body = {"uid": "u", **GOOD[5].body()}
    assert from_body(body, path="r") == GOOD[5]


BAD = [
    ("not msgpack", b"\xc1"),
    ("not a map", msgpack.packb([1, 2])),
    ("rev text", msgpack.packb({"rev": "1"})),
    ("rev negative", msgpack.packb({"rev": -1})),
    ("rev bool", msgpack.packb({"rev": True})),
    ("tags map", msgpack.packb({"rev": 1, "tags": {"a": "b"}})),
    ("tag triple", msgpack.packb({"rev": 1, "tags": [["a", "b", "c"]]})),
    ("tag bytes", msgpack.packb({"rev": 1, "tags": [[b"a", "b"]]}, use_bin_type=True)),
    ("acl list", msgpack.packb({"rev": 1, "acl": []})),
    ("lock mode", msgpack.packb({"rev": 1, "lock": {"mode": "SOFT", "until_ms": 1}})),
    ("lock until", msgpack.packb({"rev": 1, "lock": {"mode": "GOVERNANCE", "until_ms": 1.5}})),
    ("lock list", msgpack.packb({"rev": 1, "lock": [1]})),
    ("hold int", msgpack.packb({"rev": 1, "legal_hold": 1})),
    ("int keys", msgpack.packb({1: 2})),
]


@pytest.mark.parametrize(("name", "blob"), BAD, ids=[b[0] for b in BAD])
def test_hostile_blobs_refused(name: str, blob: bytes) -> None:
    with pytest.raises(FormatError):
        decode_vmeta(blob, path="x")


def test_every_prefix_of_a_blob_is_refused_or_equal() -> None:
    blob = encode_vmeta(GOOD[5])
    for n in range(len(blob)):
        with pytest.raises(FormatError):
            decode_vmeta(blob[:n], path="x")
