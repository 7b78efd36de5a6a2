"""Checksums against botocore's own implementations, which are what clients send."""

from __future__ import annotations

import base64
import hashlib
import itertools
import zlib

import pytest
from awscrt import checksums as crt
from botocore import httpchecksum
from hypothesis import given
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.checksums import (
    ALGORITHMS,
    FULL_OBJECT_ALGORITHMS,
    Checksum,
    algorithm_from_header,
    check_checksum_type,
    combine_crc,
    composite_checksum,
    decode_value,
    default_checksum_type,
    digest_size,
    full_object_crc,
    header_name,
    new_checksum,
)

BOTOCORE_CLASSES = {
    "CRC32": httpchecksum.Crc32Checksum,
    "CRC32C": httpchecksum.CrtCrc32cChecksum,
    "CRC64NVME": httpchecksum.CrtCrc64NvmeChecksum,
    "SHA1": httpchecksum.Sha1Checksum,
    "SHA256": httpchecksum.Sha256Checksum,
}

# Published check values of each algorithm over b"123456789".
CHECK_VALUES = {
    "CRC32": "cbf43926",
    "CRC32C": "e3069283",
    "CRC64NVME": "ae8b14860a799888",
    "SHA1": "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
    "SHA256": "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
}

INPUTS = [b"", b"a", b"123456789", b"hello world\n" * 1000, bytes(range(256)) * 300]


def botocore_b64(alg: str, data: bytes) -> str:
    c = BOTOCORE_CLASSES[alg]()
    c.update(data)
    result: str = c.b64digest()
    return result


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_check_value(alg: str) -> None:
    c = new_checksum(alg)
    c.update(b"123456789")
    assert c.digest().hex() == CHECK_VALUES[alg]


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("data", INPUTS, ids=lambda d: f"len{len(d)}")
def test_matches_botocore(alg: str, data: bytes) -> None:
    c = new_checksum(alg)
    c.update(data)
    assert c.b64() == botocore_b64(alg, data)
    assert base64.b64decode(c.b64()) == c.digest()
    assert len(c.digest()) == c.digest_size


@pytest.mark.parametrize("alg", ALGORITHMS)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_incremental_equals_one_shot(alg: str, data: bytes, cuts: list[int]) -> None:
    one = new_checksum(alg)
    one.update(data)
    inc = new_checksum(alg)
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for lo, hi in itertools.pairwise(bounds):
        inc.update(memoryview(data)[lo:hi])
    assert inc.digest() == one.digest()


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_header_round_trip(alg: str) -> None:
    name = header_name(alg)
    assert name == "x-amz-checksum-" + alg.lower()
    assert algorithm_from_header(name) == alg
    assert algorithm_from_header(name.upper()) == alg
    assert header_name(alg.lower()) == name


@pytest.mark.parametrize(
    "name",
    [
        "x-amz-checksum-mode",
        "X-Amz-Checksum-Algorithm",
        "x-amz-checksum-type",
        "x-amz-sdk-checksum-algorithm",
        "content-md5",
        "x-amz-checksum",
    ],
)
def test_not_a_checksum_header(name: str) -> None:
    assert algorithm_from_header(name) is None


@pytest.mark.parametrize(
    "name", ["x-amz-checksum-md5", "x-amz-checksum-xxhash64", "x-amz-checksum-"]
)
def test_unknown_checksum_header_refused(name: str) -> None:
    with pytest.raises(S3Error) as exc:
        algorithm_from_header(name)
    assert exc.value.code == "InvalidRequest"


def test_unknown_algorithm_refused() -> None:
    for bad in ("MD5", "crc16", ""):
        with pytest.raises(S3Error) as exc:
            new_checksum(bad)
        assert exc.value.code == "InvalidRequest"
        with pytest.raises(S3Error):
            Checksum(bad)
        with pytest.raises(S3Error):
            header_name(bad)


def test_lowercase_algorithm_accepted() -> None:
    assert new_checksum("crc64nvme").algorithm == "CRC64NVME"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_decode_value(alg: str) -> None:
    c = new_checksum(alg)
    c.update(b"x")
    assert decode_value(alg, c.b64()) == c.digest()
    for bad in ("", "!!!!", base64.b64encode(c.digest() + b"\0").decode(), c.b64()[:-2]):
        with pytest.raises(S3Error) as exc:
            decode_value(alg, bad)
        assert exc.value.code == "InvalidRequest"


# ---- CRC combination (FULL_OBJECT multipart checksums) -----------------------------

# The whole-body CRC of each algorithm, computed independently (zlib, awscrt).
WHOLE = {
    "CRC32": lambda d: zlib.crc32(d),
    "CRC32C": lambda d: crt.crc32c(d),
    "CRC64NVME": lambda d: crt.crc64nvme(d),
}
CRT_COMBINE = {
    "CRC32": crt.combine_crc32,
    "CRC32C": crt.combine_crc32c,
    "CRC64NVME": crt.combine_crc64nvme,
}
SPLITS = [
    (b"", b""),
    (b"", b"123456789"),
    (b"123456789", b""),
    (b"1234", b"56789"),
    (b"a", b"b"),
    (bytes(range(256)) * 40, b"\xff" * 5000),
    (b"x" * 4_194_304, b"tail"),  # a 4 MiB chunk, then a short part
]


@pytest.mark.parametrize("alg", sorted(FULL_OBJECT_ALGORITHMS))
@pytest.mark.parametrize(("a", "b"), SPLITS, ids=lambda d: f"len{len(d)}")
def test_combine_equals_whole_body(alg: str, a: bytes, b: bytes) -> None:
    crc = WHOLE[alg]
    got = combine_crc(alg, crc(a), crc(b), len(b))
    assert got == crc(a + b)
    assert got == CRT_COMBINE[alg](crc(a), crc(b), len(b))


@pytest.mark.parametrize("alg", sorted(FULL_OBJECT_ALGORITHMS))
@given(parts=st.lists(st.binary(max_size=300), max_size=8))
def test_full_object_crc_of_parts(alg: str, parts: list[bytes]) -> None:
    crc, size = WHOLE[alg], digest_size(alg)
    raws = [(crc(p).to_bytes(size, "big"), len(p)) for p in parts]
    assert full_object_crc(alg, raws) == crc(b"".join(parts)).to_bytes(size, "big")


def test_combine_long_lengths_match_awscrt() -> None:
    """Lengths far beyond what a test can hash (parts of up to 5 GiB, objects of
    up to 50 TB): the x^(8n) mod P math against awscrt's own combine."""
    for alg, combine in CRT_COMBINE.items():
        for n in (5 * 2**30, 5 * 2**30 + 1, 50 * 10**12, 2**40 - 3):
            assert combine_crc(alg, 0x1234567, 0x89ABCDE, n) == combine(0x1234567, 0x89ABCDE, n)


def test_combine_refuses_hashes_and_bad_input() -> None:
    for alg in ("SHA1", "SHA256"):
        with pytest.raises(ValueError):
            combine_crc(alg, 1, 2, 3)
        with pytest.raises(ValueError):
            full_object_crc(alg, [])
    with pytest.raises(ValueError):
        combine_crc("CRC32", 1, 2, -1)
    with pytest.raises(ValueError):
        full_object_crc("CRC32", [(b"\0" * 8, 1)])  # a CRC64 value under CRC32


def test_composite_of_parts() -> None:
    parts = [b"one", b"two", b"three"]
    raws = [hashlib.sha256(p).digest() for p in parts]
    assert composite_checksum("SHA256", raws) == hashlib.sha256(b"".join(raws)).digest()


@pytest.mark.parametrize(
    ("alg", "default", "allowed"),
    [
        ("CRC32", "COMPOSITE", {"COMPOSITE", "FULL_OBJECT"}),
        ("CRC32C", "COMPOSITE", {"COMPOSITE", "FULL_OBJECT"}),
        ("CRC64NVME", "FULL_OBJECT", {"FULL_OBJECT"}),
        ("SHA1", "COMPOSITE", {"COMPOSITE"}),
        ("SHA256", "COMPOSITE", {"COMPOSITE"}),
    ],
)
def test_checksum_types(alg: str, default: str, allowed: set[str]) -> None:
    assert default_checksum_type(alg) == default
    for ctype in ("COMPOSITE", "FULL_OBJECT", "OTHER"):
        if ctype in allowed:
            check_checksum_type(alg, ctype)
        else:
            with pytest.raises(S3Error) as exc:
                check_checksum_type(alg, ctype)
            assert exc.value.code == "InvalidRequest"
