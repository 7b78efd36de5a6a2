"""Segment files: the append-only byte stores that hold every chunk of data.

All integers are big-endian and unsigned. Offsets are from the start of the
file, so ``xxd -s OFFSET -l LEN segment`` shows any field named here.

Three format versions exist. Version 2 gives every record a type byte, so
manifests and metadata records live in the segments next to the chunks;
version 3 (written today) has the same framing and adds record types 4
(version meta) and 5 (key record); version 1 (stores written before #17) has
chunk records only. Every reader here reads all three; only the writer's
``seglake upgrade`` still meets version 1 files. Types 4 and 5 are valid
only in a version 3 file: the version bump is what makes an older binary
refuse such a segment ("unsupported segment format version 3") instead of
taking a valid record for a torn tail (see docs/design-version-metadata.md
§5).

Header, 32 bytes, written once when the segment is created::

    0    8  magic b"SGLKSEG1"
    8    2  format version (3; 2 or 1 in older stores)
    10   2  flags (0; no flags are defined)
    12   4  reserved (0)
    16   8  segment id
    24   8  created, nanoseconds since the Unix epoch

Records, back to back from offset 32; a version 2 or 3 record starting at R is::

    R      32  digest: BLAKE3 of the data for a chunk (type 0), so it is the
               chunk's content hash that manifests list and GETs verify;
               BLAKE3 of (type byte | data) for every other type. Either
               way a changed type byte no longer matches the digest.
    R+32    4  data length L, 1 <= L <= CHUNK_SIZE (4 MiB)
    R+36    1  record type: 0 chunk, 1 manifest (format/manifest.py),
               2 bucket record, 3 version-state record, and in version 3
               only 4 version-meta record, 5 key record (format/records.py)
    R+37    L  data
               (the next record starts at R + 37 + L)

A version 1 record has no type byte (36-byte header, always a chunk).

Footer, appended once when the segment is sealed, starting at F (= data_end,
the end of the last record)::

    F       8  magic b"SGLKFTR1"
    F+8     2  footer version (= the segment's format version)
    F+10    2  reserved (0)
    F+12    4  record count N
    F+16    8  data_end (= F)
    F+24   E*N entries: record start u64 | data length u32 | type u8 | digest 32
               (E = 45 in versions 2 and 3; version 1: E = 44, no type)
    T       8  body length B = 24 + E*N, where T = file size - 48 and F = T - B
    T+8    32  BLAKE3 of the body (bytes F .. T)
    T+40    8  magic b"SGLKEND1" (the last 8 bytes of a sealed segment)

Rules this file keeps:

- Everything here is pure: bytes in, values out, no locks, no fsync. The
  writer decides when to write, fsync and rename; these functions only say
  what the bytes must be.
- Decoders treat files as hostile. Bad bytes give ``FormatError`` (or a
  ``ScanResult`` carrying one); only the operating system's ``OSError`` and
  ``ValueError`` for impossible *arguments* can escape.
- ``FormatError.offset`` is the byte to look at: for a bad record, the record
  start (so ``ScanResult.valid_end`` and ``ScanResult.error.offset`` agree);
  for a truncated header or a short read, the first missing byte; otherwise
  the start of the bad field.
- The trailing END magic alone proves nothing: chunk data is user-controlled
  and may end with those 8 bytes. ``read_footer`` therefore checks the body
  checksum *and* that every entry agrees with the record header found at its
  offset, which data inside a record cannot fake (the chain of real record
  headers from offset 32 never lands inside a record's data).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import blake3

from seglake.format.errors import FormatError
from seglake.units import MiB

SEGMENT_MAGIC: Final = b"SGLKSEG1"
FOOTER_MAGIC: Final = b"SGLKFTR1"
END_MAGIC: Final = b"SGLKEND1"
FORMAT_VERSION: Final = 3
SUPPORTED_VERSIONS: Final = (1, 2, 3)
HEADER_SIZE: Final = 32
# Fixed by the on-disk format (SPEC §5): every chunk record holds at most this
# many bytes. 4 MiB keeps per-chunk hashing/IO overhead under 0.1% while a
# range read never has to verify more than 4 MiB to serve one byte.
CHUNK_SIZE: Final = 4 * MiB
RECORD_HEADER_SIZE: Final = 37  # versions 2 and 3
RECORD_HEADER_SIZE_V1: Final = 36
# The lowest offset any chunk's data can start at, in either version.
MIN_DATA_OFFSET: Final = HEADER_SIZE + RECORD_HEADER_SIZE_V1
FOOTER_HEAD_SIZE: Final = 24
FOOTER_ENTRY_SIZE: Final = 45  # versions 2 and 3
FOOTER_ENTRY_SIZE_V1: Final = 44
FOOTER_TAIL_SIZE: Final = 48
DIGEST_SIZE: Final = 32

_HEADER: Final = struct.Struct(">8sHHIQQ")
# Record types (versions 2 and 3). Only chunks are referenced by manifests;
# the others are what rebuild-index replays.
TYPE_CHUNK: Final = 0
TYPE_MANIFEST: Final = 1
TYPE_BUCKET: Final = 2
TYPE_STATE: Final = 3
TYPE_VERSION_META: Final = 4  # version 3 only
TYPE_KEY: Final = 5  # version 3 only
RECORD_TYPES: Final = (
    TYPE_CHUNK, TYPE_MANIFEST, TYPE_BUCKET, TYPE_STATE, TYPE_VERSION_META, TYPE_KEY,
)  # fmt: skip
TYPE_NAMES: Final = {0: "chunk", 1: "manifest", 2: "bucket", 3: "state", 4: "vmeta", 5: "key"}
# The highest record type each format version may hold.
_MAX_TYPE: Final = {1: TYPE_CHUNK, 2: TYPE_STATE, 3: TYPE_KEY}

_RECORD_HEADER_V1: Final = struct.Struct(">32sI")
_RECORD_HEADER: Final = struct.Struct(">32sIB")
_FOOTER_HEAD: Final = struct.Struct(">8sHHIQ")
_FOOTER_ENTRY_V1: Final = struct.Struct(">QI32s")
_FOOTER_ENTRY: Final = struct.Struct(">QIB32s")
_TAIL: Final = struct.Struct(">Q32s8s")
_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1

_MAX_RECORD: Final = RECORD_HEADER_SIZE + CHUNK_SIZE

# Scan read size. 8 MiB amortises the syscall and the carry-over of a record
# split across two reads (at most one 4 MiB record per refill) to a few
# percent, while two buffers stay far below the writer's memory budget.
# Not Final: tests shrink it to push records across block boundaries.
_SCAN_BLOCK = 8 * MiB
# Extra room so a record split at the end of one read still leaves a full
# block for the next. Not Final either: tests set 0 to force buffer growth.
_SCAN_SLACK = _MAX_RECORD

# Below ~1 MiB blake3's thread pool costs more than it saves (measured on a
# 2-CPU host: 64 KiB inputs hash 4x slower threaded; 1-4 MiB ones 1.5-1.8x
# faster), and most records are full 4 MiB chunks anyway.
_THREADED_DIGEST_MIN: Final = 1 * MiB

# read_footer checks record headers in preads of at most this many bytes, so
# a segment of tiny records costs a few large reads rather than one per record.
_HEADER_CHECK_WINDOW: Final = 1 * MiB


@dataclass(frozen=True)
class SegmentHeader:
    segment_id: int
    created_ns: int
    version: int


@dataclass(frozen=True)
class RecordInfo:
    """One record; ``offset`` is where its header starts (37 bytes in
    versions 2 and 3, ``head`` = 36 for a version 1 record)."""

    offset: int
    length: int
    digest: bytes
    rtype: int = TYPE_CHUNK
    head: int = RECORD_HEADER_SIZE

    @property
    def data_offset(self) -> int:
        return self.offset + self.head

    @property
    def end(self) -> int:
        return self.offset + self.head + self.length


@dataclass(frozen=True)
class Footer:
    data_end: int
    records: tuple[RecordInfo, ...]
    footer_offset: int


@dataclass(frozen=True)
class ScanResult:
    """Records that verified, where they end, and why the scan stopped early.

    ``error`` is None when the scan reached the end cleanly; otherwise it
    names the first bad record and ``valid_end == error.offset``.
    """

    records: list[RecordInfo]
    valid_end: int
    error: FormatError | None


def digest(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3-256 of ``data``, threaded for large inputs."""
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    threads = blake3.blake3.AUTO if size >= _THREADED_DIGEST_MIN else 1
    result: bytes = blake3.blake3(data, max_threads=threads).digest()
    return result


def record_digest(rtype: int, data: bytes | bytearray | memoryview) -> bytes:
    """The digest a version 2 or 3 record of ``rtype`` carries (see the top)."""
    if rtype == TYPE_CHUNK:
        return digest(data)
    h = blake3.blake3(bytes((rtype,)))
    h.update(data)
    result: bytes = h.digest()
    return result


def version_of(fd: int) -> int:
    """The format version in a segment file's header when it is one we know,
    else the current version (a damaged header is the header decoder's to
    report)."""
    raw = os.pread(fd, 2, 8)
    version = int.from_bytes(raw, "big") if len(raw) == 2 else FORMAT_VERSION
    return version if version in SUPPORTED_VERSIONS else FORMAT_VERSION


def header_size(version: int) -> int:
    return RECORD_HEADER_SIZE_V1 if version == 1 else RECORD_HEADER_SIZE


def types_of(version: int) -> tuple[int, ...]:
    """The record types a segment of format ``version`` may hold."""
    return RECORD_TYPES[: _MAX_TYPE.get(version, TYPE_CHUNK) + 1]


# ---- header ----------------------------------------------------------------


def encode_header(segment_id: int, created_ns: int, *, version: int = FORMAT_VERSION) -> bytes:
    _check_u64("segment_id", segment_id)
    _check_u64("created_ns", created_ns)
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unknown segment format version {version}")
    return _HEADER.pack(SEGMENT_MAGIC, version, 0, 0, segment_id, created_ns)


def decode_header(buf: bytes | bytearray | memoryview, *, path: str) -> SegmentHeader:
    """Decode the first 32 bytes of ``buf``; any bytes after them are ignored."""
    head = bytes(buf[:HEADER_SIZE])
    seen = head[: len(SEGMENT_MAGIC)]
    if seen != SEGMENT_MAGIC[: len(seen)]:
        raise FormatError(
            path, 0, f"not a segment file: magic {seen!r}, expected {SEGMENT_MAGIC!r}"
        )
    if len(head) < HEADER_SIZE:
        raise FormatError(
            path, len(head), f"segment header truncated: {len(head)} of {HEADER_SIZE} bytes"
        )
    _magic, version, flags, reserved, segment_id, created_ns = _HEADER.unpack(head)
    if version not in SUPPORTED_VERSIONS:
        raise FormatError(path, 8, f"unsupported segment format version {version}")
    if flags != 0:
        raise FormatError(path, 10, f"unknown segment flags {flags:#06x}")
    if reserved != 0:
        raise FormatError(path, 12, f"reserved header field is {reserved:#x}, expected 0")
    return SegmentHeader(segment_id=segment_id, created_ns=created_ns, version=version)


# ---- records ---------------------------------------------------------------


def encode_record_header(
    digest: bytes, length: int, rtype: int = TYPE_CHUNK, *, version: int = FORMAT_VERSION
) -> bytes:
    """The 37 bytes (36 in version 1) that precede a record's data; the
    caller writes the data. ``digest`` must be ``record_digest(rtype, data)``;
    ``rtype`` must be one ``version`` holds (types 4 and 5 need version 3)."""
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"digest must be {DIGEST_SIZE} bytes, got {len(digest)}")
    if not 0 < length <= CHUNK_SIZE:
        raise ValueError(f"record length {length} outside 1..{CHUNK_SIZE}")
    if version == 1:
        if rtype != TYPE_CHUNK:
            raise ValueError("version 1 segments hold chunk records only")
        return _RECORD_HEADER_V1.pack(digest, length)
    if rtype not in types_of(version):
        raise ValueError(f"record type {rtype} is not valid in a version {version} segment")
    return _RECORD_HEADER.pack(digest, length, rtype)


def scan_records(
    fd: int,
    *,
    path: str,
    start: int = HEADER_SIZE,
    end: int | None = None,
    verify: bool = True,
    version: int | None = None,
) -> ScanResult:
    """Walk records from ``start`` until ``end`` (default: the file size).

    ``version`` is the segment's format version (default: read from the
    file's header).

    Stops at the first record that is torn (header or data cut short by
    ``end`` or by the file's real end), has a length outside 1..CHUNK_SIZE,
    or (when ``verify``) whose data does not match its digest, and reports it
    in ``.error``. Bad data never raises; only ``OSError`` from the reads and
    ``ValueError`` for a negative ``start`` do.

    For a sealed segment pass ``end=footer.data_end``: the footer is not a
    record and would be reported as a bad one. With ``verify=False`` only the
    record headers are read (one small pread per record), which proves the
    chain of lengths but not the data.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    size = os.fstat(fd).st_size
    stop = size if end is None else min(end, size)
    records: list[RecordInfo] = []
    if start > stop:
        error = FormatError(path, start, f"scan starts at {start} but the data ends at {stop}")
        return ScanResult(records, start, error)
    _advise_sequential(fd, start, stop - start)
    v = version_of(fd) if version is None else version
    if verify:
        error_or_none = _scan_verified(fd, path, start, stop, records, v)
    else:
        error_or_none = _scan_headers(fd, path, start, stop, records, v)
    valid_end = records[-1].end if records else start
    if error_or_none is not None and os.pread(fd, len(FOOTER_MAGIC), valid_end) == FOOTER_MAGIC:
        # The usual way to get here: scanning a sealed segment to its end.
        error_or_none = FormatError(
            path,
            valid_end,
            f"{error_or_none.reason} (a segment footer starts here: "
            f"scan sealed segments only up to footer.data_end)",
        )
    return ScanResult(records, valid_end, error_or_none)


def read_record(
    fd: int,
    data_offset: int,
    length: int,
    expected_digest: bytes,
    *,
    path: str,
    verify: bool = True,
) -> bytes:
    """Read one chunk's data (``length`` bytes at ``data_offset``) and check it."""
    if not 0 < length <= CHUNK_SIZE:
        raise ValueError(f"chunk length {length} outside 1..{CHUNK_SIZE}")
    if data_offset < MIN_DATA_OFFSET:
        raise ValueError(f"chunk data cannot start at {data_offset}")
    if len(expected_digest) != DIGEST_SIZE:
        raise ValueError(f"digest must be {DIGEST_SIZE} bytes, got {len(expected_digest)}")
    data = _pread_exact(fd, length, data_offset, path=path, what="chunk data")
    if verify and digest(data) != expected_digest:
        raise FormatError(
            path,
            data_offset,
            f"chunk data ({length} bytes) does not match its BLAKE3 digest {expected_digest.hex()}",
        )
    return data


def read_record_data(fd: int, rec: RecordInfo, *, path: str, verify: bool = True) -> bytes:
    """The data of any record (typically a non-chunk one a scan or a footer
    listed), checked against its typed digest."""
    data = _pread_exact(fd, rec.length, rec.data_offset, path=path, what="record data")
    want = digest(data) if rec.head == RECORD_HEADER_SIZE_V1 else record_digest(rec.rtype, data)
    if verify and want != rec.digest:
        raise FormatError(
            path,
            rec.offset,
            f"{TYPE_NAMES.get(rec.rtype, '?')} record ({rec.length} bytes) does not match its digest",
        )
    return data


# ---- footer ----------------------------------------------------------------


def encode_footer(
    records: Sequence[RecordInfo], data_end: int, *, version: int = FORMAT_VERSION
) -> bytes:
    """Footer body + 48-byte tail for a segment whose records end at data_end.

    Refuses (``ValueError``) anything ``read_footer`` would reject, so a bug
    in the caller cannot seal a segment into an unreadable state.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unknown segment format version {version}")
    if len(records) > _U32_MAX:
        raise ValueError(f"too many records for one footer: {len(records)}")
    head = header_size(version)
    expected = HEADER_SIZE
    for i, rec in enumerate(records):
        if rec.offset != expected:
            raise ValueError(f"record {i} starts at {rec.offset}, expected {expected}")
        if not 0 < rec.length <= CHUNK_SIZE:
            raise ValueError(f"record {i} has length {rec.length}, outside 1..{CHUNK_SIZE}")
        if len(rec.digest) != DIGEST_SIZE:
            raise ValueError(f"record {i} digest is {len(rec.digest)} bytes")
        if rec.head != head:
            raise ValueError(f"record {i} has a {rec.head}-byte header in a version {version} file")
        if rec.rtype not in types_of(version):
            raise ValueError(f"record {i} has type {rec.rtype}, not valid in version {version}")
        expected = rec.end
    if data_end != expected:
        raise ValueError(f"records end at {expected}, but data_end is {data_end}")
    _check_u64("data_end", data_end)
    body = bytearray(_FOOTER_HEAD.pack(FOOTER_MAGIC, version, 0, len(records), data_end))
    if version == 1:
        for rec in records:
            body += _FOOTER_ENTRY_V1.pack(rec.offset, rec.length, rec.digest)
    else:
        for rec in records:
            body += _FOOTER_ENTRY.pack(rec.offset, rec.length, rec.rtype, rec.digest)
    tail = _TAIL.pack(len(body), digest(body), END_MAGIC)
    return bytes(body) + tail


def read_footer(fd: int, file_size: int, *, path: str) -> Footer | None:
    """The footer of a sealed segment, or None if the file does not end in one.

    None only means "no END magic in the last 8 bytes". If the magic is there
    but anything else is wrong (checksum, counts, record chain, or an entry
    that disagrees with the record header at its offset) this raises
    ``FormatError``. A segment the database knows as OPEN should be recovered
    with ``scan_records`` instead: its last chunk could end in the magic.
    """
    if file_size < FOOTER_TAIL_SIZE:
        return None
    tail_at = file_size - FOOTER_TAIL_SIZE
    tail = _pread_exact(fd, FOOTER_TAIL_SIZE, tail_at, path=path, what="footer tail")
    body_len, body_digest, end_magic = _TAIL.unpack(tail)
    if end_magic != END_MAGIC:
        return None
    max_body = tail_at - HEADER_SIZE
    # The loosest bound of either version (44-byte entries, 37-byte records)
    # is checked before reading: a forged length cannot make us read most
    # of the file. The exact entry size is checked once the version is known.
    entries = (body_len - FOOTER_HEAD_SIZE) // FOOTER_ENTRY_SIZE_V1
    if (
        body_len < FOOTER_HEAD_SIZE
        or body_len > max_body
        or ((body_len - FOOTER_HEAD_SIZE) % FOOTER_ENTRY_SIZE_V1
            and (body_len - FOOTER_HEAD_SIZE) % FOOTER_ENTRY_SIZE)
        or entries * (RECORD_HEADER_SIZE_V1 + 1) > max_body - body_len
    ):  # fmt: skip
        raise FormatError(
            path,
            tail_at,
            f"footer body length {body_len} is impossible for a {file_size}-byte file "
            f"(must be 24 + 45*N with room for N records before it)",
        )
    footer_offset = tail_at - body_len
    body = _pread_exact(fd, body_len, footer_offset, path=path, what="footer body")
    if digest(body) != body_digest:
        raise FormatError(
            path,
            footer_offset,
            f"footer body ({body_len} bytes) does not match the BLAKE3 stored at {tail_at + 8}",
        )
    magic, version, reserved, count, data_end = _FOOTER_HEAD.unpack_from(body)
    if magic != FOOTER_MAGIC:
        raise FormatError(path, footer_offset, f"footer magic {magic!r}, expected {FOOTER_MAGIC!r}")
    if version not in SUPPORTED_VERSIONS:
        raise FormatError(path, footer_offset + 8, f"unsupported footer version {version}")
    if reserved != 0:
        raise FormatError(path, footer_offset + 10, f"reserved footer field is {reserved:#x}")
    entry_size = FOOTER_ENTRY_SIZE_V1 if version == 1 else FOOTER_ENTRY_SIZE
    if FOOTER_HEAD_SIZE + count * entry_size != body_len:
        raise FormatError(
            path,
            footer_offset + 12,
            f"footer lists {count} records but its body holds "
            f"{(body_len - FOOTER_HEAD_SIZE) / entry_size:g}",
        )
    if data_end != footer_offset:
        raise FormatError(
            path,
            footer_offset + 16,
            f"footer says data ends at {data_end}, it starts at {footer_offset}",
        )
    records: list[RecordInfo] = []
    expected = HEADER_SIZE
    entry_at = footer_offset + FOOTER_HEAD_SIZE
    head = header_size(version)
    allowed = types_of(version)
    view = memoryview(body)[FOOTER_HEAD_SIZE:]
    entry_iter = (
        ((o, n, TYPE_CHUNK, d) for o, n, d in _FOOTER_ENTRY_V1.iter_unpack(view))
        if version == 1
        else _FOOTER_ENTRY.iter_unpack(view)
    )
    for rec_offset, length, rtype, rec_digest in entry_iter:
        if rec_offset != expected:
            raise FormatError(
                path,
                entry_at,
                f"footer entry {len(records)} puts a record at {rec_offset}, "
                f"but the previous one ends at {expected}",
            )
        if not 0 < length <= CHUNK_SIZE:
            raise FormatError(
                path,
                entry_at + 8,
                f"footer entry {len(records)} has length {length}, outside 1..{CHUNK_SIZE}",
            )
        if rtype not in allowed:
            raise FormatError(
                path,
                entry_at + 12,
                f"footer entry {len(records)} has type {rtype}, unknown in a version "
                f"{version} segment",
            )
        rec = RecordInfo(rec_offset, length, rec_digest, rtype, head)
        records.append(rec)
        expected = rec.end
        entry_at += entry_size
    if expected != data_end:
        raise FormatError(
            path,
            footer_offset + 16,
            f"footer records end at {expected}, not at data_end {data_end}",
        )
    _check_record_headers(fd, records, path, version)
    return Footer(data_end=data_end, records=tuple(records), footer_offset=footer_offset)


# ---- internals -------------------------------------------------------------


def _check_u64(name: str, value: int) -> None:
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} {value} does not fit in an unsigned 64-bit field")


def _pread_exact(fd: int, n: int, offset: int, *, path: str, what: str) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, offset + got)
        if not more:
            raise FormatError(
                path, offset + got, f"{what}: file ends after {got} of {n} bytes from {offset}"
            )
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _advise_sequential(fd: int, offset: int, length: int) -> None:
    # Only a hint for cold files (doubles kernel readahead); harmless to lack.
    advise = getattr(os, "posix_fadvise", None)
    if advise is None or length <= 0:
        return
    with contextlib.suppress(OSError):
        advise(fd, offset, length, os.POSIX_FADV_SEQUENTIAL)


def _bad_record_header(
    path: str,
    pos: int,
    length: int,
    stop: int,
    head: int = RECORD_HEADER_SIZE,
    rtype: int = 0,
    version: int = FORMAT_VERSION,
) -> FormatError | None:
    if length == 0 or length > CHUNK_SIZE:
        return FormatError(path, pos, f"record length {length} is outside 1..{CHUNK_SIZE}")
    if rtype not in types_of(version):
        return FormatError(path, pos, f"unknown record type {rtype} in a version {version} segment")
    if pos + head + length > stop:
        have = stop - pos - head
        return FormatError(
            path,
            pos,
            f"torn record: header announces {length} data bytes, only {have} before {stop}",
        )
    return None


def _torn_header(path: str, pos: int, have: int, head: int = RECORD_HEADER_SIZE) -> FormatError:
    return FormatError(path, pos, f"torn record header: only {have} of {head} bytes present")


def _unpack_header(version: int, buf: bytes | memoryview, at: int = 0) -> tuple[bytes, int, int]:
    if version == 1:
        stored, length = _RECORD_HEADER_V1.unpack_from(buf, at)
        return stored, length, TYPE_CHUNK
    stored, length, rtype = _RECORD_HEADER.unpack_from(buf, at)
    return stored, length, rtype


def _scan_headers(
    fd: int, path: str, start: int, stop: int, records: list[RecordInfo], version: int
) -> FormatError | None:
    head = header_size(version)
    pos = start
    while pos < stop:
        want = min(head, stop - pos)
        raw = os.pread(fd, want, pos)
        if len(raw) < head:
            return _torn_header(path, pos, len(raw), head)
        stored, length, rtype = _unpack_header(version, raw)
        error = _bad_record_header(path, pos, length, stop, head, rtype, version)
        if error is not None:
            return error
        records.append(RecordInfo(pos, length, stored, rtype, head))
        pos += head + length
    return None


class _Window:
    """A view of file bytes [base, base + filled), refilled in large preads.

    Two buffers alternate so the unread tail of one block is copied into the
    other before the next read, never onto itself (bytearray slice assignment
    uses memcpy, which is undefined for overlapping ranges).
    """

    __slots__ = ("base", "cap", "fd", "filled", "spare", "stop", "view")

    def __init__(self, fd: int, start: int, stop: int) -> None:
        self.fd = fd
        self.stop = stop
        # Never allocate more than the range holds: small segments and tests
        # should not pay for two 12 MiB buffers.
        self.cap = max(1, min(_SCAN_BLOCK + _SCAN_SLACK, stop - start))
        self.view = memoryview(bytearray(self.cap))
        self.spare: memoryview | None = None
        self.base = start
        self.filled = 0

    def ensure(self, pos: int, n: int) -> int:
        """Make [pos, pos + n) resident if the file has it; return pos's index.

        Afterwards ``self.filled - index`` is how many bytes from pos are
        resident, which is less than n only where the file or range ends.
        ``pos`` must lie within the current window or at its end.
        """
        rel = pos - self.base
        if self.filled - rel >= n:
            return rel
        tail = self.filled - rel
        if n > self.cap:
            # Only reachable when tests shrink the block below one record.
            self.cap = n
            target = memoryview(bytearray(n))
        elif tail == 0:
            target = self.view
        else:
            if self.spare is None:
                self.spare = memoryview(bytearray(self.cap))
            target = self.spare
        if target is not self.view:
            target[:tail] = self.view[rel : self.filled]
            self.spare = self.view if len(self.view) == self.cap else None
        want = min(self.cap, self.stop - pos)
        got = tail
        while got < want:
            count = os.preadv(self.fd, [target[got:want]], pos + got)
            if count == 0:
                break
            got += count
        self.view = target
        self.base = pos
        self.filled = got
        return 0


def _scan_verified(
    fd: int, path: str, start: int, stop: int, records: list[RecordInfo], version: int
) -> FormatError | None:
    if stop <= start:
        return None
    window = _Window(fd, start, stop)
    # Window state lives in locals between refills: with small records this
    # loop runs ~250,000 times per GiB, so per-record lookups add up.
    view, base, filled = window.view, window.base, window.filled
    v1 = version == 1
    unpack_header = (_RECORD_HEADER_V1 if v1 else _RECORD_HEADER).unpack_from
    hasher = blake3.blake3
    threaded = blake3.blake3.AUTO
    threaded_min = _THREADED_DIGEST_MIN
    append = records.append
    head_size = header_size(version)
    max_type = _MAX_TYPE.get(version, TYPE_CHUNK)
    pos = start
    while pos < stop:
        rel = pos - base
        if filled - rel < head_size:
            rel = window.ensure(pos, head_size)
            view, base, filled = window.view, window.base, window.filled
            if filled - rel < head_size:
                return _torn_header(path, pos, filled - rel, head_size)
        if v1:
            stored, length = unpack_header(view, rel)
            rtype = TYPE_CHUNK
        else:
            stored, length, rtype = unpack_header(view, rel)
        if (
            length == 0
            or length > CHUNK_SIZE
            or rtype > max_type
            or pos + head_size + length > stop
        ):
            return _bad_record_header(path, pos, length, stop, head_size, rtype, version)
        size = head_size + length
        if filled - rel < size:
            rel = window.ensure(pos, size)
            view, base, filled = window.view, window.base, window.filled
            if filled - rel < size:
                # fstat promised these bytes but the file shrank under us:
                # torn all the same.
                have = filled - rel - head_size
                return FormatError(
                    path,
                    pos,
                    f"torn record: header announces {length} data bytes, only {have} present",
                )
        data = view[rel + head_size : rel + size]
        if rtype == TYPE_CHUNK:
            threads = threaded if length >= threaded_min else 1
            seen = hasher(data, max_threads=threads).digest()
        else:
            seen = record_digest(rtype, data)
        if seen != stored:
            return FormatError(
                path,
                pos,
                f"record data ({length} bytes at {pos + head_size}) does not match its BLAKE3 digest",
            )
        append(RecordInfo(pos, length, stored, rtype, head_size))
        pos += size
    return None


def _check_record_headers(fd: int, records: list[RecordInfo], path: str, version: int) -> None:
    head = header_size(version)
    count = len(records)
    i = 0
    while i < count:
        first = records[i].offset
        j = i + 1
        while j < count and records[j].offset + head - first <= _HEADER_CHECK_WINDOW:
            j += 1
        span = records[j - 1].offset + head - first
        block = _pread_exact(fd, span, first, path=path, what="record headers")
        for rec in records[i:j]:
            stored, length, rtype = _unpack_header(version, block, rec.offset - first)
            if stored != rec.digest or length != rec.length or rtype != rec.rtype:
                raise FormatError(
                    path,
                    rec.offset,
                    f"record header (length {length}, type {rtype}, digest "
                    f"{stored.hex()[:16]}...) disagrees with the footer (length {rec.length}, "
                    f"type {rec.rtype}, digest {rec.digest.hex()[:16]}...)",
                )
        i = j
