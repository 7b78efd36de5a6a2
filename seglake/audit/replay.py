"""Replay the record log: what the segments alone say the store holds.

Quiesce protocol: read-only (segment files with plain reads); used by
``rebuild-index`` (server stopped), ``fsck`` and scrub's file pass (any
time: an open segment may grow while it is read, which only adds records).

Segments are read in id order and each one's records in offset order, so
"later" means (segment id, offset). A sealed segment's manifest and metadata
records are found from its footer's typed entries without reading its
chunks; a segment without a valid footer (the open one) is scanned and
walked header by header up to its last whole record, and each manifest or
metadata record is verified against its digest. For each uid the
last manifest record wins (gc-rewrite copies a re-pointed manifest
forward; duplicates with the same bytes change nothing) and, separately,
the last state record and the last version-meta record (format 3); for
each bucket name the last bucket or bucket-gone record. Key records (format
3, type 5) keep the last record per KEK id (``_key_record``). A metadata record under a segment type other than its
kind's (``SEGMENT_TYPE_OF_KIND``) is reported and skipped. Version-1
segments hold only chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglake.format import layout
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.format.records import (
    KIND_BUCKET,
    KIND_BUCKET_GONE,
    KIND_KEY,
    KIND_STATE,
    KIND_VERSION_META,
    SEGMENT_TYPE_OF_KIND,
    decode_record,
)


@dataclass(frozen=True)
class ManifestAt:
    segment_id: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class SegmentInfo:
    segment_id: int
    version: int
    size: int
    created_ns: int
    sealed: bool
    footer_digest: bytes | None
    mtime_ns: int
    data_end: int  # end of the last valid record


@dataclass
class LogState:
    manifests: dict[str, ManifestAt] = field(default_factory=dict)
    # Every manifest record seen, per uid (fsck compares each with meta.db).
    manifest_copies: dict[str, list[ManifestAt]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    # uid -> (hlc, site) of its last state record, when that record has them.
    state_stamps: dict[str, tuple[int, str]] = field(default_factory=dict)
    # uid -> the body of its last version-meta record (records.vmeta_body).
    vmeta: dict[str, dict[str, Any]] = field(default_factory=dict)
    # KEK id -> the body of its last key record (records.key_body).
    keks: dict[str, dict[str, Any]] = field(default_factory=dict)
    buckets: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: gone
    # name -> (hlc, site) of a bucket-gone record that carries its stamp.
    gone_stamps: dict[str, tuple[int, str]] = field(default_factory=dict)
    segments: list[SegmentInfo] = field(default_factory=list)
    records: int = 0
    problems: list[str] = field(default_factory=list)
    # Segment file -> the first problem found in it.
    bad_files: dict[str, str] = field(default_factory=dict)

    def problem(self, path: Path | str, text: str) -> None:
        self.problems.append(text)
        self.bad_files.setdefault(str(path), text)


def segment_files(segments_dir: Path) -> list[tuple[int, Path]]:
    if not segments_dir.is_dir():
        return []
    out = []
    for entry in segments_dir.iterdir():
        sid = layout.segment_id_of(entry.name)
        if sid is not None:
            out.append((sid, entry))
    return sorted(out)


def replay(segments_dir: Path) -> LogState:
    state = LogState()
    for _sid, path in segment_files(segments_dir):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            state.problem(path, f"segment skipped: {path}: {exc}")
            continue
        try:
            _replay_one(fd, path, state)
        except (OSError, FormatError) as exc:
            state.problem(path, f"segment skipped: {exc}")
        finally:
            os.close(fd)
    return state


def _replay_one(fd: int, path: Path, state: LogState) -> None:
    st = os.fstat(fd)
    header = segfmt.decode_header(os.pread(fd, segfmt.HEADER_SIZE, 0), path=str(path))
    footer: segfmt.Footer | None = None
    try:
        footer = segfmt.read_footer(fd, st.st_size, path=str(path))
    except FormatError as exc:
        state.problem(path, f"footer ignored, segment scanned instead: {exc}")
    if footer is not None:
        records = list(footer.records)
        data_end = footer.data_end
        digest: bytes | None = os.pread(fd, 32, st.st_size - 40)
    else:
        # Headers only: the chain of lengths is what places each record, and
        # a chunk whose data rotted (scrub's business) must not hide the
        # records after it. Each manifest/metadata record is verified below.
        scan = segfmt.scan_records(fd, path=str(path), version=header.version, verify=False)
        records = scan.records
        data_end = scan.valid_end
        digest = None
        if scan.error is not None and scan.valid_end < st.st_size:
            state.problem(path, f"segment read up to its last whole record: {scan.error}")
    state.segments.append(
        SegmentInfo(
            header.segment_id, header.version, st.st_size, header.created_ns,
            footer is not None, digest, st.st_mtime_ns, data_end,
        )
    )  # fmt: skip
    for rec in records:
        if rec.rtype == segfmt.TYPE_CHUNK:
            continue
        where = f"{path}@{rec.offset}"
        try:
            data = segfmt.read_record_data(fd, rec, path=str(path))
            state.records += 1
            if rec.rtype == segfmt.TYPE_MANIFEST:
                uid = decode_manifest(data, path=where, with_meta=False).version_id
                at = ManifestAt(header.segment_id, rec.offset, data)
                state.manifests[uid] = at
                state.manifest_copies.setdefault(uid, []).append(at)
                continue
            kind, body = decode_record(data, path=where)
            if SEGMENT_TYPE_OF_KIND[kind] != rec.rtype:
                raise FormatError(
                    where, 0, f"a kind {kind} record in a type {rec.rtype} segment record"
                )
        except FormatError as exc:
            state.problem(path, f"record skipped: {exc}")
            continue
        if kind == KIND_VERSION_META:
            state.vmeta[str(body["uid"])] = body
        elif kind == KIND_KEY:
            _key_record(state, body)
        elif kind == KIND_STATE:
            uid = str(body["uid"])
            state.states[uid] = str(body["state"])
            stamp = (body.get("hlc"), body.get("site"))
            if isinstance(stamp[0], int) and isinstance(stamp[1], str):
                state.state_stamps[uid] = (stamp[0], stamp[1])
            else:
                state.state_stamps.pop(uid, None)
        elif kind == KIND_BUCKET:
            state.buckets[str(body["name"])] = body
        elif kind == KIND_BUCKET_GONE:
            state.buckets[str(body["name"])] = None
            if isinstance(body.get("hlc"), int) and isinstance(body.get("site"), str):
                state.gone_stamps[str(body["name"])] = (int(body["hlc"]), str(body["site"]))


def _key_record(state: LogState, body: dict[str, Any]) -> None:
    """A verified key record (type 5): one SSE KEK, wrapped; the last record
    per id wins (a rotation re-wraps KEKs and writes them again), and a
    "gone" record removes it (its batch never committed)."""
    if body.get("gone") is True:
        state.keks.pop(str(body["id"]), None)
    else:
        state.keks[str(body["id"])] = body
