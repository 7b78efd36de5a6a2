"""Manifests: one small binary record per object version, enough to rebuild the index.

A manifest is stored as a type-1 record in the data segments (segment
format version 2, ``segment.py``) and, byte for byte, in
``versions.manifest`` in ``meta.db``. Stores of segment format version 1 kept
one file per manifest (``manifest_path``); only ``seglake upgrade`` reads
those now.

All integers are big-endian and unsigned. A manifest of total length T is::

    0    8  magic b"SGLKMAN1"
    8    2  format version (1)
    10   2  flags (0; no flags are defined)
    12   4  reserved (0)
    16   8  object size in bytes (= sum of the chunk lengths)
    24   4  chunk count C
    28   2  bucket length Lb        (1..255)
    30   4  key length Lk           (1..1024)
    34   2  version id length Lv    (1..128)
    36   4  meta length Lm          (1..8 MiB)
    40      bucket, Lb bytes of UTF-8
            key, Lk bytes of UTF-8
            version id, Lv bytes of printable ASCII without '/' or '\\'
            chunk table, C entries of 52 bytes, in object order:
              segment id u64 | data offset u64 | length u32 | BLAKE3 digest 32
              (data offset is where the chunk's data starts in the segment,
               i.e. record start + 37, or + 36 in a version 1 segment;
               1 <= length <= CHUNK_SIZE)
            meta, Lm bytes: one msgpack map with string keys
    T-32 32 BLAKE3 of bytes 0 .. T-32

so T = 40 + Lb + Lk + Lv + 52*C + Lm + 32 exactly.

Version 2 (an encrypted version, ``seglake/sse/chunks.py``) has the same
layout; its chunks are sealed: each stored chunk is its plaintext plus a
16-byte tag (17 <= length <= CHUNK_SIZE), the object size is the plaintext
size (= sum of (length - 16)), and ``meta`` carries ``sse``. A decoder that
knows only version 1 refuses it rather than serving ciphertext as data.
Unencrypted versions keep version 1.

Rules this file keeps:

- The codec is pure and knows nothing about what ``meta`` means: the writer
  decides (etag, content type, user metadata, checksums, ...); the codec only
  checks it is a msgpack map of plain values (nil, bool, int, float, str,
  bin, array, map; no extension types) and round-trips it. Arrays come back
  as lists.
- What the writer keeps in ``meta`` (the codec checks none of it; every key
  is optional, and a reader treats a missing one as stated): ``etag``,
  ``created_ns``, ``delete_marker``, ``s3_version_id``, ``content_type``,
  ``headers``, ``user``, ``checksums`` ({algorithm: base64 value}), and for
  an object uploaded in parts ``parts`` (each part's size, in order),
  ``part_checksums`` (each part's raw checksum under the upload's
  algorithm, concatenated; absent in manifests written before it was
  recorded: the part checksums are then unknown) and ``checksum_type``
  (``COMPOSITE`` or ``FULL_OBJECT``; absent: ``COMPOSITE`` if ``parts`` is
  there, else ``FULL_OBJECT``). New keys are added this way, never by
  changing the meaning of an old one, so older manifests stay readable.
- ``encode_manifest`` refuses (``ValueError``) anything ``decode_manifest``
  would reject, so a writer bug cannot produce an unreadable manifest.
- ``decode_manifest`` treats its input as hostile and raises only
  ``FormatError``. Its offset is the first missing byte for a truncated
  manifest, the first extra byte for trailing data, and otherwise the start
  of the field at fault (the checksum field when the checksum fails).
- Manifests live at ``<manifests>/<uid[0:4]>/<uid[4:7]>/<uid>.mf``: the uid
  begins with the writer's inverted clock, so versions written together
  share a directory (see ``SHARD_PREFIX_LEN``). The path depends on the uid
  alone: uids must be unique across the whole store.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import blake3
import msgpack

from seglake.format.errors import FormatError
from seglake.format.segment import CHUNK_SIZE, MIN_DATA_OFFSET
from seglake.units import MiB

MANIFEST_MAGIC: Final = b"SGLKMAN1"
MANIFEST_VERSION: Final = 1
# Encrypted versions (chunks are sealed, meta carries "sse").
SEALED_MANIFEST_VERSION: Final = 2
SEAL_TAG_BYTES: Final = 16
MANIFEST_SUFFIX: Final = ".mf"
FIXED_SIZE: Final = 40
CHUNK_ENTRY_SIZE: Final = 52
CHECKSUM_SIZE: Final = 32

# S3 caps bucket names at 63 bytes and keys at 1024 bytes; the bucket cap is
# looser so the codec never becomes the reason a legal name is refused.
MAX_BUCKET_BYTES: Final = 255
MAX_KEY_BYTES: Final = 1024
# Version ids become file names (plus ".mf"), which most filesystems cap at
# 255 bytes; 128 leaves room and is far above any id we generate.
MAX_VERSION_ID_BYTES: Final = 128
# User metadata is capped at 2 KiB by S3; the rest (checksums, part sizes of
# a 10,000-part upload) stays well under 1 MiB. 8 MiB bounds what a hostile
# manifest can make the decoder allocate.
MAX_META_BYTES: Final = 8 * MiB
# Nesting deeper than this in meta is certainly not something the writer made.
MAX_META_DEPTH: Final = 32

# Manifests are sharded by the time encoded at the front of a version uid
# (16 hex digits of the bit-inverted nanosecond clock, then random):
# <uid[0:4]>/<uid[4:7]>/<uid>.mf. One group commit's manifests share a leaf
# directory, so it costs one directory fsync and the file system merges their
# journal commits (hash-sharding them over 256 directories made a batch of 16
# about five times slower to make durable). A leaf spans 2^36 ns (~69 s), a
# top-level directory 2^48 ns (~3.3 days).
SHARD_PREFIX_LEN: Final = 7
_HEX: Final = frozenset("0123456789abcdef")

_FIXED: Final = struct.Struct(">8sHHIQIHIHI")
_CHUNK: Final = struct.Struct(">QQI32s")
_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1
_MIN_DATA_OFFSET: Final = MIN_DATA_OFFSET
# Bytes allowed in a version id: printable ASCII except the path separators,
# so the id can be a file name as is.
_VERSION_ID_BYTES: Final = bytes(b for b in range(0x21, 0x7F) if b not in b"/\\")


@dataclass(frozen=True)
class ChunkRef:
    """Where one chunk's data lives: ``offset`` is the data start (record + 37)."""

    segment_id: int
    offset: int
    length: int
    digest: bytes


@dataclass(frozen=True)
class Manifest:
    bucket: str
    key: str
    version_id: str
    size: int
    chunks: tuple[ChunkRef, ...]
    meta: dict[str, Any] = field(default_factory=dict)


# ---- encode ----------------------------------------------------------------


def encode_manifest(m: Manifest) -> bytes:
    bucket = _encode_name("bucket", m.bucket, MAX_BUCKET_BYTES)
    key = _encode_name("key", m.key, MAX_KEY_BYTES)
    version_id = _encode_version_id(m.version_id)
    if not 0 <= m.size <= _U64_MAX:
        raise ValueError(f"size {m.size} does not fit in an unsigned 64-bit field")
    if len(m.chunks) > _U32_MAX:
        raise ValueError(f"too many chunks: {len(m.chunks)}")
    sealed = isinstance(m.meta, dict) and "sse" in m.meta
    overhead = SEAL_TAG_BYTES if sealed else 0
    table = bytearray()
    total = 0
    for i, c in enumerate(m.chunks):
        if not 0 <= c.segment_id <= _U64_MAX:
            raise ValueError(f"chunk {i}: segment id {c.segment_id} out of range")
        if not _MIN_DATA_OFFSET <= c.offset <= _U64_MAX:
            raise ValueError(f"chunk {i}: data offset {c.offset} out of range")
        if not overhead < c.length <= CHUNK_SIZE:
            raise ValueError(f"chunk {i}: length {c.length} outside {overhead + 1}..{CHUNK_SIZE}")
        if len(c.digest) != CHECKSUM_SIZE:
            raise ValueError(f"chunk {i}: digest is {len(c.digest)} bytes, expected 32")
        table += _CHUNK.pack(c.segment_id, c.offset, c.length, c.digest)
        total += c.length - overhead
    if total != m.size:
        raise ValueError(f"chunks hold {total} bytes but size is {m.size}")
    if not isinstance(m.meta, dict):
        raise ValueError(f"meta must be a dict, got {type(m.meta).__name__}")
    try:
        meta = msgpack.packb(m.meta, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"meta cannot be encoded as msgpack: {exc}") from exc
    if len(meta) > MAX_META_BYTES:
        raise ValueError(f"meta is {len(meta)} bytes, more than {MAX_META_BYTES}")
    try:
        # The decoder's checks are the definition of valid meta; apply them
        # here rather than keeping a second, drifting copy.
        _decode_meta(meta, path="<encode>", offset=0)
    except FormatError as exc:
        raise ValueError(f"meta would not decode: {exc.reason}") from exc
    head = _FIXED.pack(
        MANIFEST_MAGIC,
        SEALED_MANIFEST_VERSION if sealed else MANIFEST_VERSION,
        0,
        0,
        m.size,
        len(m.chunks),
        len(bucket),
        len(key),
        len(version_id),
        len(meta),
    )
    body = b"".join((head, bucket, key, version_id, table, meta))
    return body + blake3.blake3(body).digest()


# ---- decode ----------------------------------------------------------------


def decode_manifest(
    buf: bytes | bytearray | memoryview, *, path: str, with_meta: bool = True
) -> Manifest:
    """Decode and verify a manifest.

    ``with_meta=False`` leaves ``meta`` empty without parsing it (the read
    path has the same values from the database); the checksum still covers
    it, so a damaged manifest is still refused.
    """
    data = bytes(buf)
    seen = data[: len(MANIFEST_MAGIC)]
    if seen != MANIFEST_MAGIC[: len(seen)]:
        raise FormatError(path, 0, f"not a manifest: magic {seen!r}, expected {MANIFEST_MAGIC!r}")
    if len(data) < FIXED_SIZE:
        raise FormatError(
            path, len(data), f"manifest truncated inside its {FIXED_SIZE}-byte header"
        )
    (
        _magic,
        version,
        flags,
        reserved,
        size,
        chunk_count,
        bucket_len,
        key_len,
        vid_len,
        meta_len,
    ) = _FIXED.unpack_from(data)
    if version not in (MANIFEST_VERSION, SEALED_MANIFEST_VERSION):
        raise FormatError(path, 8, f"unsupported manifest version {version}")
    overhead = SEAL_TAG_BYTES if version == SEALED_MANIFEST_VERSION else 0
    if flags != 0:
        raise FormatError(path, 10, f"unknown manifest flags {flags:#06x}")
    if reserved != 0:
        raise FormatError(path, 12, f"reserved field is {reserved:#x}, expected 0")
    for at, name, value, low, high in (
        (28, "bucket", bucket_len, 1, MAX_BUCKET_BYTES),
        (30, "key", key_len, 1, MAX_KEY_BYTES),
        (34, "version id", vid_len, 1, MAX_VERSION_ID_BYTES),
        (36, "meta", meta_len, 1, MAX_META_BYTES),
    ):
        if not low <= value <= high:
            raise FormatError(path, at, f"{name} length {value} outside {low}..{high}")

    bucket_at = FIXED_SIZE
    key_at = bucket_at + bucket_len
    vid_at = key_at + key_len
    table_at = vid_at + vid_len
    meta_at = table_at + chunk_count * CHUNK_ENTRY_SIZE
    sum_at = meta_at + meta_len
    total = sum_at + CHECKSUM_SIZE
    if len(data) < total:
        raise FormatError(
            path, len(data), f"manifest truncated: header announces {total} bytes, have {len(data)}"
        )
    if len(data) > total:
        raise FormatError(
            path, total, f"{len(data) - total} unexpected bytes after the manifest's checksum"
        )
    if blake3.blake3(memoryview(data)[:sum_at]).digest() != data[sum_at:]:
        raise FormatError(path, sum_at, f"manifest checksum does not match bytes 0..{sum_at}")

    bucket = _decode_utf8(data, bucket_at, key_at, "bucket", path)
    key = _decode_utf8(data, key_at, vid_at, "key", path)
    raw_vid = data[vid_at:table_at]
    if raw_vid.translate(None, _VERSION_ID_BYTES):
        raise FormatError(path, vid_at, f"version id {raw_vid!r} has forbidden bytes")
    version_id = raw_vid.decode("ascii")
    if version_id in (".", ".."):
        raise FormatError(path, vid_at, f"version id {version_id!r} is not a file name")

    chunks: list[ChunkRef] = []
    stored = 0
    entry_at = table_at
    for segment_id, offset, length, chunk_digest in _CHUNK.iter_unpack(
        memoryview(data)[table_at:meta_at]
    ):
        if offset < _MIN_DATA_OFFSET:
            raise FormatError(
                path, entry_at + 8, f"chunk {len(chunks)}: data offset {offset} is inside a header"
            )
        if not overhead < length <= CHUNK_SIZE:
            raise FormatError(
                path,
                entry_at + 16,
                f"chunk {len(chunks)}: length {length} outside {overhead + 1}..{CHUNK_SIZE}",
            )
        chunks.append(ChunkRef(segment_id, offset, length, chunk_digest))
        stored += length - overhead
        entry_at += CHUNK_ENTRY_SIZE
    if stored != size:
        raise FormatError(path, 16, f"size is {size} but the chunks hold {stored} bytes")

    meta = _decode_meta(data[meta_at:sum_at], path=path, offset=meta_at) if with_meta else {}
    if with_meta and overhead and "sse" not in meta:
        raise FormatError(path, meta_at, "a version 2 manifest without meta.sse")
    return Manifest(
        bucket=bucket,
        key=key,
        version_id=version_id,
        size=size,
        chunks=tuple(chunks),
        meta=meta,
    )


# ---- paths -----------------------------------------------------------------


def shard_of(version_id: str) -> str:
    """The ``top/leaf`` subdirectory a version's manifest lives in.

    Only uids that start with 7 lowercase hex digits (the writer's clock
    prefix) have a place; anything else is refused with ``ValueError``.
    """
    _encode_version_id(version_id)
    head = version_id[:SHARD_PREFIX_LEN]
    if len(head) < SHARD_PREFIX_LEN or not _HEX.issuperset(head):
        raise ValueError(f"version uid {version_id!r} does not start with 7 lowercase hex digits")
    return f"{head[:4]}/{head[4:]}"


def manifest_path(manifests_dir: Path, version_id: str) -> Path:
    return manifests_dir / shard_of(version_id) / f"{version_id}{MANIFEST_SUFFIX}"


# ---- internals -------------------------------------------------------------


def _encode_name(what: str, text: str, limit: int, encoding: str = "utf-8") -> bytes:
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} cannot be encoded as {encoding}: {exc}") from exc
    if not 1 <= len(raw) <= limit:
        raise ValueError(f"{what} is {len(raw)} bytes of {encoding}, must be 1..{limit}")
    return raw


def _encode_version_id(version_id: str) -> bytes:
    raw = _encode_name("version id", version_id, MAX_VERSION_ID_BYTES, "ascii")
    if raw.translate(None, _VERSION_ID_BYTES) or raw in (b".", b".."):
        raise ValueError(f"version id {version_id!r} cannot be a file name")
    return raw


def _decode_utf8(data: bytes, start: int, stop: int, what: str, path: str) -> str:
    try:
        return data[start:stop].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(path, start + exc.start, f"{what} is not valid UTF-8") from None


def _decode_meta(raw: bytes, *, path: str, offset: int) -> dict[str, Any]:
    limit = len(raw)
    try:
        meta = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,
        )
    # msgpack reports bad input through several exception types (its own,
    # ValueError, TypeError, UnicodeDecodeError, ...); all mean "bad bytes".
    except Exception as exc:
        raise FormatError(path, offset, f"meta is not valid msgpack: {exc}") from None
    if not isinstance(meta, dict):
        raise FormatError(path, offset, f"meta is a msgpack {type(meta).__name__}, not a map")
    if not all(isinstance(k, str) for k in meta):
        raise FormatError(path, offset, "meta has a non-string top-level key")
    problem = _plain_value_problem(meta, 0)
    if problem is not None:
        raise FormatError(path, offset, f"meta {problem}")
    return meta


def _plain_value_problem(value: object, depth: int) -> str | None:
    """Why ``value`` is not plain msgpack data, or None if it is."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return None
    if depth >= MAX_META_DEPTH:
        return f"nests deeper than {MAX_META_DEPTH} levels"
    if isinstance(value, list):
        for item in value:
            problem = _plain_value_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | bytes):
                return f"has a map key of type {type(k).__name__}"
            problem = _plain_value_problem(v, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"holds a {type(value).__name__}, which is not plain msgpack data"
