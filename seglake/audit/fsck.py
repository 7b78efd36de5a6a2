"""``seglake fsck``: a read-only consistency check of a data directory.

Quiesce protocol: fsck only reads (``meta.db`` through a read-only
connection, segment and manifest files with plain reads), so it runs at any
maintenance state, with or without a live server. It changes nothing; the
one record it leaves (an ``ops_runs`` row) is written by the writer, asked
through the admin socket, and only when a server is live.

What is checked, all inside one read snapshot of the database:
- every segment row has its file, at least ``committed_end`` bytes long; a
  sealed one ends in a valid footer;
- every segment file belongs to a row (a file without one is a warning: the
  open segment holds only uncommitted appends until its first commit);
- every live version's manifest (the database copy) decodes and verifies;
  each chunk lies inside an existing segment (for a sealed one, below the
  footer's ``data_end``), at or after the first record;
- the record log in the segments (``replay.py``) holds a manifest record
  for it with the same bytes, and its newest one is that copy (else
  ``rebuild-index`` would restore something else);
- every version's metadata (``versions.vmeta``: tags, ACL, lock) equals what
  its newest version-meta record says (all defaults when it has none), so
  ``rebuild-index`` would restore the same;
- with ``all_manifests``: every manifest record in the log belongs to a
  version row or is superseded by a PURGED state record (orphans are
  warnings: a batch that failed after its flush leaves one until the next
  batch restates it);
- a version-1 store's leftover ``objects/manifests`` (or ``records``,
  ``gc-pending``) is reported: it needs ``seglake upgrade``;
- nothing in the data dir is open to group or other users (each such path
  is a warning, ``exposed``: the store works, but other local users can read
  it; ``seglake doctor --fix-permissions`` repairs it).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seglake.audit.replay import LogState, replay
from seglake.config import Config
from seglake.format.errors import FormatError
from seglake.format.layout import SEGMENT_SUFFIX, segment_file_name, segment_id_of
from seglake.format.manifest import decode_manifest
from seglake.format.segment import MIN_DATA_OFFSET, TYPE_CHUNK, header_size, read_footer, version_of
from seglake.format.vmeta import DEFAULT as DEFAULT_VMETA
from seglake.format.vmeta import decode_vmeta, from_body
from seglake.meta.schema import open_read, query
from seglake.private_files import exposed


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    path: str = ""
    bucket: str = ""
    key: str = ""
    version_id: str = ""


@dataclass
class FsckReport:
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    segments: int = 0
    versions: int = 0
    chunks: int = 0
    manifest_records: int = 0

    @property
    def clean(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "segments": self.segments,
            "versions": self.versions,
            "chunks": self.chunks,
            "manifest_records": self.manifest_records,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
        }


@dataclass(frozen=True)
class _Segment:
    state: str
    size_on_disk: int | None  # None: the file is missing
    limit: int  # chunks must end at or below this offset


def segment_path(cfg: Config, segment_id: int) -> Path:
    return cfg.segments_dir / segment_file_name(segment_id)


def segment_files_on_disk(cfg: Config) -> list[tuple[Path, int | None]]:
    """Every ``*.seg`` file in the segments directory, sorted, with its id
    (None when the rest of the name is not one)."""
    if not cfg.segments_dir.is_dir():
        return []
    return [
        (entry, segment_id_of(entry.name))
        for entry in sorted(cfg.segments_dir.iterdir())
        if entry.suffix == SEGMENT_SUFFIX
    ]


def run_fsck(cfg: Config, *, all_manifests: bool = False) -> FsckReport:
    report = FsckReport()
    upgrade = cfg.needs_upgrade()
    if upgrade is not None:
        # A version-1 store is checked by this build only after `seglake
        # upgrade` (whose writer also migrates an older meta.db schema, which
        # a read-only connection here could not open).
        report.errors.append(Finding("store-version-1", upgrade, str(cfg.manifests_dir)))
        _check_exposed(cfg, report)
        return report
    conn = open_read(str(cfg.db_path))
    try:
        # One snapshot: rows committed while we run are not half-seen.
        conn.execute("BEGIN")
        try:
            segments = _check_segments(cfg, conn, report)
            known_uids, db_manifests = _check_versions(cfg, conn, report, segments)
            _check_chunk_index(cfg, conn, report, segments)
            db_vmeta = query(conn, "SELECT uid, bucket, key, version_id, vmeta FROM versions")
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    log = replay(cfg.segments_dir)
    for problem in log.problems:
        report.warnings.append(Finding("record-log", problem))
    _check_manifest_records(log, report, db_manifests)
    _check_vmeta_records(log, report, db_vmeta)
    if all_manifests:
        _check_orphan_manifests(log, report, known_uids)
    _check_exposed(cfg, report)
    return report


def _check_exposed(cfg: Config, report: FsckReport) -> None:
    for path, mode in exposed(cfg.root):
        report.warnings.append(
            Finding("exposed", f"mode {mode:04o}: group or other users can access it", str(path))
        )


def _check_segments(cfg: Config, conn: Any, report: FsckReport) -> dict[int, _Segment]:
    segments: dict[int, _Segment] = {}
    rows = query(conn, "SELECT id, state, size, committed_end FROM segments ORDER BY id")
    for seg_id, state, _size, committed_end in rows:
        report.segments += 1
        path = segment_path(cfg, int(seg_id))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            report.errors.append(
                Finding("segment-missing", f"segment {seg_id} has no file", str(path))
            )
            segments[int(seg_id)] = _Segment(str(state), None, 0)
            continue
        try:
            on_disk = os.fstat(fd).st_size
            limit = on_disk
            if on_disk < int(committed_end):
                report.errors.append(
                    Finding(
                        "segment-truncated",
                        f"segment {seg_id} is {on_disk} bytes, committed data reaches {committed_end}",
                        str(path),
                    )
                )
            if state == "SEALED":
                try:
                    footer = read_footer(fd, on_disk, path=str(path))
                except FormatError as exc:
                    report.errors.append(Finding("segment-footer", str(exc), str(path)))
                    footer = None
                else:
                    if footer is None:
                        report.errors.append(
                            Finding(
                                "segment-footer",
                                f"sealed segment {seg_id} does not end in a footer "
                                f"(truncated or overwritten; {on_disk} bytes)",
                                str(path),
                            )
                        )
                if footer is not None:
                    limit = footer.data_end
            segments[int(seg_id)] = _Segment(str(state), on_disk, limit)
        finally:
            os.close(fd)
    for entry, sid in segment_files_on_disk(cfg):
        if sid is None:
            report.warnings.append(Finding("segment-stray", "not a segment name", str(entry)))
        elif sid not in segments:
            report.warnings.append(
                Finding(
                    "segment-unrecorded",
                    f"segment {sid} has no database row (no committed data yet, or garbage)",
                    str(entry),
                )
            )
    return segments


def _check_versions(
    cfg: Config, conn: Any, report: FsckReport, segments: dict[int, _Segment]
) -> tuple[set[str], dict[str, tuple[bytes, dict[str, str]]]]:
    known: set[str] = set()
    live: dict[str, tuple[bytes, dict[str, str]]] = {}
    rows = query(
        conn,
        "SELECT uid, bucket, key, version_id, state, manifest FROM versions ORDER BY bucket, key",
    )
    for uid, bucket, key, version_id, state, manifest in rows:
        known.add(str(uid))
        if state == "DELETED":
            continue
        report.versions += 1
        where = {"bucket": str(bucket), "key": str(key), "version_id": str(version_id)}
        path = f"meta.db:versions[{uid}]"
        if state == "DAMAGED":
            report.warnings.append(
                Finding("version-damaged", "version is marked DAMAGED", str(path), **where)
            )
        if manifest is None:
            report.errors.append(
                Finding("manifest-db-missing", "no manifest in the database", str(path), **where)
            )
            continue
        db_bytes = bytes(manifest)
        try:
            m = decode_manifest(db_bytes, path=f"meta.db:versions[{uid}]", with_meta=False)
        except FormatError as exc:
            report.errors.append(Finding("manifest-db-corrupt", str(exc), str(path), **where))
            m = None
        if m is not None:
            for i, c in enumerate(m.chunks):
                report.chunks += 1
                problem = _chunk_problem(c.segment_id, c.offset, c.length, segments)
                if problem:
                    report.errors.append(
                        Finding("chunk-out-of-range", f"chunk {i}: {problem}", str(path), **where)
                    )
        live[str(uid)] = (db_bytes, where)
    return known, live


def _check_chunk_index(
    cfg: Config, conn: Any, report: FsckReport, segments: dict[int, _Segment]
) -> None:
    """Every ``chunk_index`` entry names a chunk record with that digest
    and length at that place (replication serves chunks from it): the
    record header before the data is read, not the data."""
    rows = query(conn, "SELECT digest, segment, offset, length FROM chunk_index ORDER BY segment")
    by_segment: dict[int, list[tuple[bytes, int, int]]] = {}
    for digest, seg_id, offset, length in rows:
        by_segment.setdefault(int(seg_id), []).append((bytes(digest), int(offset), int(length)))
    for seg_id, entries in by_segment.items():
        path = segment_path(cfg, seg_id)
        fd = -1
        if not _chunk_problem(seg_id, MIN_DATA_OFFSET, 1, segments):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1
        try:
            head = header_size(version_of(fd)) if fd >= 0 else 0
            for digest, offset, length in entries:
                problem = _chunk_problem(seg_id, offset, length, segments)
                if not problem and fd >= 0:
                    raw = os.pread(fd, head, offset - head)
                    # A version-1 header (36 bytes) has no type byte: always a chunk.
                    rtype = raw[36] if len(raw) > 36 else TYPE_CHUNK
                    if (
                        len(raw) != head
                        or raw[:32] != digest
                        or int.from_bytes(raw[32:36], "big") != length
                        or rtype != TYPE_CHUNK
                    ):
                        problem = f"no chunk {digest.hex()} of {length} bytes at {offset}"
                elif not problem:
                    problem = f"segment {seg_id} cannot be opened"
                if problem:
                    report.errors.append(
                        Finding(
                            "chunk-index-wrong", problem, f"meta.db:chunk_index[{digest.hex()}]"
                        )
                    )
        finally:
            if fd >= 0:
                os.close(fd)


def _chunk_problem(seg_id: int, offset: int, length: int, segments: dict[int, _Segment]) -> str:
    seg = segments.get(seg_id)
    if seg is None:
        return f"segment {seg_id} is not in the database"
    if seg.size_on_disk is None:
        return f"segment {seg_id} file is missing"
    if offset < MIN_DATA_OFFSET or length <= 0:
        return f"bad range {offset}+{length} in segment {seg_id}"
    end = offset + length
    if end > seg.size_on_disk:
        return f"ends at {end}, past the end of segment {seg_id} ({seg.size_on_disk} bytes)"
    if end > seg.limit:
        return f"ends at {end}, past the data end of sealed segment {seg_id} ({seg.limit})"
    return ""


def _check_manifest_records(
    log: LogState, report: FsckReport, live: dict[str, tuple[bytes, dict[str, str]]]
) -> None:
    for uid, (db_bytes, where) in live.items():
        copies = log.manifest_copies.get(uid, [])
        report.manifest_records += len(copies)
        if not copies:
            report.errors.append(
                Finding(
                    "manifest-record-missing",
                    f"no manifest record for uid {uid} in any segment "
                    "(rebuild-index would lose it)",
                    uid,
                    **where,
                )
            )
        elif not any(c.data == db_bytes for c in copies):
            report.errors.append(
                Finding(
                    "manifest-record-mismatch",
                    "no manifest record in the segments equals the database copy",
                    f"segment {copies[-1].segment_id} @{copies[-1].offset}",
                    **where,
                )
            )
        elif copies[-1].data != db_bytes:
            report.warnings.append(
                Finding(
                    "manifest-record-stale",
                    "the newest manifest record differs from the database copy (a gc-rewrite "
                    "committed while fsck ran, or rebuild-index would restore an older copy)",
                    f"segment {copies[-1].segment_id} @{copies[-1].offset}",
                    **where,
                )
            )


def _check_vmeta_records(log: LogState, report: FsckReport, rows: list[Any]) -> None:
    for uid, bucket, key, version_id, blob in rows:
        where = {"bucket": str(bucket), "key": str(key), "version_id": str(version_id)}
        try:
            db = decode_vmeta(blob, path=f"meta.db:versions/{uid}")
        except FormatError as exc:
            report.errors.append(Finding("vmeta-damaged", str(exc), str(uid), **where))
            continue
        body = log.vmeta.get(str(uid))
        try:
            logged = DEFAULT_VMETA if body is None else from_body(body, path=str(uid))
        except FormatError as exc:  # decode_record checked it; be safe anyway
            report.errors.append(Finding("vmeta-record-damaged", str(exc), str(uid), **where))
            continue
        # The rev of a record of defaults is not kept in a NULL column.
        if db == logged or (db.is_default and logged.is_default and blob is None):
            continue
        report.errors.append(
            Finding(
                "vmeta-record-mismatch",
                "the newest version-meta record differs from the database (rebuild-index "
                "would restore other tags, ACL or lock; or a change committed while fsck ran)",
                str(uid),
                **where,
            )
        )


def _check_orphan_manifests(log: LogState, report: FsckReport, known: set[str]) -> None:
    for uid, at in sorted(log.manifests.items()):
        if uid not in known and log.states.get(uid) != "PURGED":
            report.warnings.append(
                Finding(
                    "manifest-orphan",
                    "manifest record has no version row",
                    f"segment {at.segment_id} @{at.offset}",
                    version_id=uid,
                )
            )
