"""Sealed chunks: AES-256-GCM per chunk, and what a manifest says about them.

Rules this module keeps (``docs/design-version-metadata.md`` §4):

* An encrypted object is cut into chunks of ``PLAIN_CHUNK`` = 4 MiB − 16
  plaintext bytes, so each sealed chunk (ciphertext + 16-byte tag) still fits
  the segment's 4 MiB record limit and no record framing changes.
* Chunk ``i`` of a part (or of a single-part object) is sealed under the
  version's DEK with nonce ``nonce_base (8 B) | i (u32 BE)`` and AAD
  ``b"SGLKSSE1" | nonce``: a chunk moved within an object, or taken from
  another object, fails its tag.
* BLAKE3 in the manifest covers the sealed bytes, so scrub, fsck and GC need
  no key; ETag and checksums are computed on the plaintext by the caller.
* ``meta["sse"]`` (manifest version 2) is a msgpack map:
  ``alg`` "AES256"; ``kek`` a KEK id or "customer" (SSE-C); ``dek`` the
  wrapped DEK; ``chunk`` the plaintext chunk size; ``nonces`` one 8-byte
  nonce base per part (one for an object not uploaded in parts); for SSE-C
  also ``salt`` and ``check`` (``keys.key_check``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seglake.format.segment import CHUNK_SIZE

TAG_BYTES: Final = 16
PLAIN_CHUNK: Final = CHUNK_SIZE - TAG_BYTES
NONCE_BASE_BYTES: Final = 8
ALGORITHM: Final = "AES256"
CUSTOMER: Final = "customer"
_AAD_PREFIX: Final = b"SGLKSSE1"
_INDEX: Final = struct.Struct(">I")


class ChunkOpenError(Exception):
    """A sealed chunk failed its tag: wrong key, or bytes not of this object."""


def new_nonce_base() -> bytes:
    return os.urandom(NONCE_BASE_BYTES)


class ChunkCipher:
    """Seal and open the chunks of one part (or one single-part object)."""

    def __init__(self, dek: bytes, nonce_base: bytes) -> None:
        if len(nonce_base) != NONCE_BASE_BYTES:
            raise ValueError(f"nonce base is {len(nonce_base)} bytes, expected 8")
        self._aead = AESGCM(dek)
        self._base = nonce_base

    def _nonce(self, index: int) -> bytes:
        return self._base + _INDEX.pack(index)

    def seal(self, index: int, plain: bytes) -> bytes:
        if not 0 < len(plain) <= PLAIN_CHUNK:
            raise ValueError(f"plaintext chunk of {len(plain)} bytes outside 1..{PLAIN_CHUNK}")
        nonce = self._nonce(index)
        return self._aead.encrypt(nonce, plain, _AAD_PREFIX + nonce)

    def open(self, index: int, sealed: bytes) -> bytes:
        nonce = self._nonce(index)
        try:
            return self._aead.decrypt(nonce, sealed, _AAD_PREFIX + nonce)
        except InvalidTag:
            raise ChunkOpenError(f"chunk {index} does not open with this key") from None


@dataclass(frozen=True)
class SseInfo:
    """``meta["sse"]`` of an encrypted version (or upload), decoded."""

    kek: str
    wrapped_dek: bytes
    nonces: tuple[bytes, ...]
    plain_chunk: int = PLAIN_CHUNK
    salt: bytes | None = None
    check: bytes | None = None

    @property
    def customer(self) -> bool:
        return self.kek == CUSTOMER

    def to_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alg": ALGORITHM,
            "kek": self.kek,
            "dek": self.wrapped_dek,
            "chunk": self.plain_chunk,
            "nonces": list(self.nonces),
        }
        if self.salt is not None and self.check is not None:
            out["salt"] = self.salt
            out["check"] = self.check
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SseInfo | None:
        """The SSE facts of a version's meta; None if it is not encrypted.
        Anything malformed is ``ValueError`` (the caller treats it as damage)."""
        raw = meta.get("sse")
        if raw is None:
            return None
        if not isinstance(raw, dict) or raw.get("alg") != ALGORITHM:
            raise ValueError("meta.sse is not an AES256 description")
        kek, dek, chunk, nonces = (
            raw.get("kek"),
            raw.get("dek"),
            raw.get("chunk"),
            raw.get("nonces"),
        )
        if not isinstance(kek, str) or not isinstance(dek, bytes):
            raise ValueError("meta.sse lacks its key references")
        if not isinstance(chunk, int) or not 0 < chunk <= PLAIN_CHUNK:
            raise ValueError("meta.sse has a bad chunk size")
        if not isinstance(nonces, list) or not all(
            isinstance(n, bytes) and len(n) == NONCE_BASE_BYTES for n in nonces
        ):
            raise ValueError("meta.sse has bad nonces")
        salt, check = raw.get("salt"), raw.get("check")
        if kek == CUSTOMER and not (isinstance(salt, bytes) and isinstance(check, bytes)):
            raise ValueError("meta.sse of an SSE-C object lacks its key check")
        return cls(
            kek=kek,
            wrapped_dek=dek,
            nonces=tuple(nonces),
            plain_chunk=chunk,
            salt=salt if isinstance(salt, bytes) else None,
            check=check if isinstance(check, bytes) else None,
        )


def chunk_count(size: int, plain_chunk: int = PLAIN_CHUNK) -> int:
    return -(-size // plain_chunk)


def chunk_keys(info: SseInfo, size: int, part_sizes: Sequence[int] | None) -> list[tuple[int, int]]:
    """For each stored chunk of a version, in order: (part index, chunk index
    within the part), which pick its nonce. ``ValueError`` if the nonces do
    not match the parts."""
    sizes = list(part_sizes) if part_sizes else [size]
    if len(info.nonces) != len(sizes):
        raise ValueError(f"{len(info.nonces)} nonce bases for {len(sizes)} parts")
    out: list[tuple[int, int]] = []
    for p, s in enumerate(sizes):
        out.extend((p, i) for i in range(chunk_count(s, info.plain_chunk)))
    return out


def plain_length(stored_length: int) -> int:
    return stored_length - TAG_BYTES
