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
  parts' checksums, ``-N``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable
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
