"""The additional checksums S3 clients attach to uploads (``x-amz-checksum-*``).

Rules this module keeps:

* Five algorithms, spelled as AWS spells them in ``x-amz-checksum-algorithm``:
  CRC32, CRC32C, CRC64NVME, SHA1, SHA256. A client naming any other one is
  refused with ``InvalidRequest``; silently ignoring it would store an object
  whose integrity claim we never checked.
* Digests are the big-endian bytes of the value and travel base64-encoded,
  which is what every SDK sends and expects back.
* Pure code: no I/O, no shared state; one ``Checksum`` per body.
* Stored checksums have a type (``CHECKSUM_TYPES``): FULL_OBJECT (of the
  whole body; every single-part object) or COMPOSITE (the checksum of the
  parts' checksums, ``-N``). An upload in parts may have either: COMPOSITE
  for any algorithm but CRC64NVME, FULL_OBJECT for the three CRCs, whose
  value is computed from the parts' CRCs and sizes alone (``combine_crc``),
  never by reading the bytes again.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import zlib
from collections.abc import Callable, Iterable
from typing import Final

from seglake.errors import S3Error

ALGORITHMS: tuple[str, ...] = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")

HEADER_PREFIX: Final = "x-amz-checksum-"

# Headers that share the prefix but describe the checksum rather than carry one.
_NOT_VALUE_HEADERS: Final = frozenset({"mode", "algorithm", "type"})

_DIGEST_SIZE: Final[dict[str, int]] = {
    "CRC32": 4,
    "CRC32C": 4,
    "CRC64NVME": 8,
    "SHA1": 20,
    "SHA256": 32,
}


COMPOSITE: Final = "COMPOSITE"
FULL_OBJECT: Final = "FULL_OBJECT"
CHECKSUM_TYPES: Final = (COMPOSITE, FULL_OBJECT)
# The algorithms a FULL_OBJECT multipart checksum can be computed for: CRCs
# combine from the parts' values; hashes cannot.
FULL_OBJECT_ALGORITHMS: Final = frozenset({"CRC32", "CRC32C", "CRC64NVME"})

# The reflected (LSB-first) generator polynomials of the three CRCs. All
# three start from all ones and end with an xor of all ones, which is what
# makes ``combine_crc`` below exact.
_CRC_POLY: Final[dict[str, int]] = {
    "CRC32": 0xEDB88320,
    "CRC32C": 0x82F63B78,
    "CRC64NVME": 0x9A6C9329AC4BC9B5,
}


def _unsupported(what: str) -> S3Error:
    return S3Error("InvalidRequest", message=f"{what}; use one of {', '.join(ALGORITHMS)}.")


def _canonical_algorithm(alg: str) -> str:
    name = alg.upper()
    if name not in _DIGEST_SIZE:
        raise _unsupported(f"Checksum algorithm {alg!r} is not supported")
    return name


def header_name(alg: str) -> str:
    """The header carrying a value of ``alg``, e.g. ``x-amz-checksum-crc32``."""
    return HEADER_PREFIX + _canonical_algorithm(alg).lower()


def digest_size(alg: str) -> int:
    """Bytes in a raw value of ``alg`` (4 for the CRC32s, 8, 20, 32)."""
    return _DIGEST_SIZE[_canonical_algorithm(alg)]


def algorithm_from_header(name: str) -> str | None:
    """The algorithm whose value header is ``name``, or None for any other header."""
    lname = name.lower()
    if not lname.startswith(HEADER_PREFIX):
        return None
    suffix = lname[len(HEADER_PREFIX) :]
    if suffix in _NOT_VALUE_HEADERS:
        return None
    alg = suffix.upper()
    if alg not in _DIGEST_SIZE:
        raise _unsupported(f"The checksum header {name!r} names an unsupported algorithm")
    return alg


def decode_value(alg: str, value: str) -> bytes:
    """Decode a base64 checksum value sent by a client, checking its length.

    A value of the wrong size can never match, so it is a malformed request
    rather than a mismatch (AWS answers the same way).
    """
    alg = _canonical_algorithm(alg)
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _DIGEST_SIZE[alg]:
        raise S3Error(
            "InvalidRequest",
            message=f"Value for {header_name(alg)} header is invalid.",
        )
    return raw


class Checksum:
    """Incremental checksum of one body under one algorithm."""

    __slots__ = ("_alg", "_crc", "_crc_fn", "_hash")

    def __init__(self, alg: str) -> None:
        self._alg = _canonical_algorithm(alg)
        self._crc = 0
        self._hash = hashlib.new(self._alg.lower()) if self._alg in ("SHA1", "SHA256") else None
        self._crc_fn: Callable[[bytes | memoryview, int], int] | None = None
        if self._alg in ("CRC32C", "CRC64NVME"):
            # Loaded on first use: awscrt's native module takes ~60 ms to
            # import, paid by every process start, and few requests need it.
            from awscrt import checksums as crt

            self._crc_fn = crt.crc32c if self._alg == "CRC32C" else crt.crc64nvme

    @property
    def algorithm(self) -> str:
        return self._alg

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZE[self._alg]

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        elif self._crc_fn is not None:
            self._crc = self._crc_fn(data, self._crc)
        else:
            self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        return self._crc.to_bytes(_DIGEST_SIZE[self._alg], "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def new_checksum(alg: str) -> Checksum:
    """A fresh checksum for ``alg`` (case-insensitive); unknown names are refused."""
    return Checksum(alg)


# ---- CRC combination -----------------------------------------------------------
#
# After zlib's crc32_combine (``crc32.c``): for a CRC whose register starts
# and ends xored with all ones, CRC(A || B) = CRC(A) * x^(8·len(B)) mod P
# xor CRC(B), where the product is taken in GF(2)[x] modulo the generator P
# in the reflected representation (bit ``width - 1`` is x^0). x^(8n) mod P
# is built by squaring; it is cached per length, since all parts of an
# upload but the last usually have the same size.


def _mul_mod(a: int, b: int, poly: int, width: int) -> int:
    """a · b mod P, both reflected ``width``-bit polynomials."""
    if a == 0 or b == 0:
        return 0
    m = 1 << (width - 1)
    p = 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1


@functools.lru_cache(maxsize=64)
def _x_pow_8n(alg: str, n: int) -> int:
    """x^(8n) mod P for ``alg``, reflected."""
    poly, width = _CRC_POLY[alg], _DIGEST_SIZE[alg] * 8
    result = 1 << (width - 1)  # x^0
    square = 1 << (width - 2)  # x^1, then x^2, x^4, ... by squaring
    bits = 8 * n
    while bits:
        if bits & 1:
            result = _mul_mod(square, result, poly, width)
        bits >>= 1
        if bits:
            square = _mul_mod(square, square, poly, width)
    return result


def combine_crc(alg: str, crc1: int, crc2: int, len2: int) -> int:
    """The CRC of A || B from crc1 = CRC(A), crc2 = CRC(B) and len2 = len(B)
    bytes, for CRC32, CRC32C or CRC64NVME (as unsigned integers)."""
    alg = _canonical_algorithm(alg)
    if alg not in FULL_OBJECT_ALGORITHMS:
        raise ValueError(f"{alg} values cannot be combined")
    if len2 < 0:
        raise ValueError("a length cannot be negative")
    if len2 == 0:
        return crc1
    return _mul_mod(_x_pow_8n(alg, len2), crc1, _CRC_POLY[alg], _DIGEST_SIZE[alg] * 8) ^ crc2


def full_object_crc(alg: str, parts: Iterable[tuple[bytes, int]]) -> bytes:
    """The FULL_OBJECT checksum (raw big-endian bytes) of a body made of
    parts given as (raw CRC of the part, its size in bytes), in order."""
    alg = _canonical_algorithm(alg)
    if alg not in FULL_OBJECT_ALGORITHMS:
        raise ValueError(f"{alg} has no FULL_OBJECT multipart checksum")
    size = _DIGEST_SIZE[alg]
    crc = 0  # the CRC of no bytes, for all three
    for raw, length in parts:
        if len(raw) != size:
            raise ValueError(f"a {alg} value is {size} bytes, not {len(raw)}")
        crc = combine_crc(alg, crc, int.from_bytes(raw, "big"), length)
    return crc.to_bytes(size, "big")


def composite_checksum(alg: str, parts: Iterable[bytes]) -> bytes:
    """The COMPOSITE checksum (raw bytes, without the ``-N`` suffix): the
    checksum of the parts' raw checksums, concatenated in order."""
    c = Checksum(alg)
    for raw in parts:
        c.update(raw)
    return c.digest()


def default_checksum_type(alg: str) -> str:
    """The multipart checksum type AWS uses when a client names an algorithm
    but no type: FULL_OBJECT for CRC64NVME (which has no COMPOSITE form),
    COMPOSITE for the others."""
    return FULL_OBJECT if _canonical_algorithm(alg) == "CRC64NVME" else COMPOSITE


def check_checksum_type(alg: str, ctype: str) -> None:
    """Refuse (``InvalidRequest``, as AWS) a multipart type the algorithm
    cannot have: FULL_OBJECT needs a CRC, COMPOSITE is not offered for
    CRC64NVME."""
    alg = _canonical_algorithm(alg)
    if ctype not in CHECKSUM_TYPES:
        raise S3Error("InvalidRequest", message=f"Unknown x-amz-checksum-type {ctype!r}")
    if (ctype == FULL_OBJECT and alg not in FULL_OBJECT_ALGORITHMS) or (
        ctype == COMPOSITE and alg == "CRC64NVME"
    ):
        raise S3Error(
            "InvalidRequest",
            message=f"The {ctype} checksum type cannot be used with the {alg.lower()} "
            "checksum algorithm.",
        )
