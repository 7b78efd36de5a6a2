"""Append-only segment files, owned by the writer alone.

Durability rules this module keeps (the committer relies on them):
1. A new segment file is created with its header, then the file and the
   segments directory are fsynced *before* any record is appended, so a
   committed chunk can never live in a file whose directory entry is lost.
2. Records are appended with positioned writes at ``end``; a failed or short
   write is cut back off (ftruncate) so the record stream stays contiguous.
   If even that fails the writer cannot know the file's state and stops.
3. Appends are not durable by themselves. The committer appends a batch's
   manifest and metadata records (``append_records``) after its chunks,
   then makes them durable with one fdatasync of the open segment (and
   seals rotated ones: footer + fsync) before it commits the transaction
   that references them.
5. Chunk appends (the event loop) and a batch's record appends (the
   committer's thread) take ``lock``: each record lands whole at ``end``.
4. Recovery validates every unsealed segment record by record and cuts a torn
   tail, but never below ``committed_end`` from the database: bytes a commit
   referenced are kept even if a record before them is damaged (scrub will
   report it). Valid manifest and metadata records past ``committed_end``
   were flushed by a batch that never committed (a crash between the
   segment flush and COMMIT): recovery appends after them the state the
   database kept (PURGED for a uid without a row, the row's state, the
   bucket as it is or gone), before the footer, so replaying the log
   (``rebuild-index``) gives what the database says.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import apsw

from seglake.config import Config
from seglake.errors import S3Error
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.format.layout import SEGMENT_SUFFIX, segment_file_name
from seglake.format.manifest import ChunkRef, decode_manifest
from seglake.format.records import (
    KIND_BUCKET,
    KIND_BUCKET_GONE,
    KIND_KEY,
    KIND_STATE,
    KIND_VERSION_META,
    decode_record,
)
from seglake.format.segment import CHUNK_SIZE
from seglake.writer import fileio
from seglake.writer.record_journal import bucket_record, kek_records, state_record, vmeta_record

log = logging.getLogger(__name__)

# Free-space checks call statvfs; doing it at most this often keeps it off
# the per-chunk path while still reacting within a fraction of a second.
FREE_SPACE_CHECK_INTERVAL_S = 0.25


class WriterFatal(Exception):
    """The writer's on-disk state is unknown; it must stop and recover."""


# The writer's exit status after a WriterFatal (EX_SOFTWARE): tells the
# supervisor this was not a clean stop.
EXIT_FATAL: Final = 70


def fsync_dir(path: Path, site: str = "dir.fsync") -> None:
    fileio.fsync_dir(path, site)


@dataclass
class OpenSegment:
    segment_id: int
    path: Path
    fd: int
    end: int
    created_ns: int
    records: list[segfmt.RecordInfo] = field(default_factory=list)
    synced_end: int = 0
    last_append: float = field(default_factory=time.monotonic)
    version: int = segfmt.FORMAT_VERSION

    @property
    def dirty(self) -> bool:
        return self.end > self.synced_end


@dataclass(frozen=True)
class SealResult:
    segment_id: int
    size: int
    footer_digest: bytes


class SegmentStore:
    """The open segment, rotation, and start-up recovery."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dir = cfg.segments_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.current: OpenSegment | None = None
        self.to_seal: list[OpenSegment] = []
        self.next_id = 1
        self._free_checked_at = 0.0
        self._free_ok = True
        self.lock = threading.Lock()

    # ---- recovery ------------------------------------------------------
    def recover(self, conn: apsw.Connection) -> list[SealResult]:
        """Validate and seal every unsealed segment; returns what was sealed.

        Runs before the writer accepts requests. The caller records the
        results in the database.
        """
        known: dict[int, tuple[str, int]] = {
            int(r[0]): (str(r[1]), int(r[2]))
            for r in conn.execute("SELECT id, state, committed_end FROM segments")
        }
        on_disk: dict[int, Path] = {}
        for entry in self.dir.iterdir():
            if entry.suffix == SEGMENT_SUFFIX:
                try:
                    on_disk[int(entry.stem, 16)] = entry
                except ValueError:
                    log.warning("ignoring unexpected file %s", entry)
        for seg_id, (_state, committed_end) in known.items():
            if seg_id not in on_disk and committed_end > 0:
                log.critical("segment %d is referenced by the database but missing", seg_id)
        sealed: list[SealResult] = []
        for seg_id in sorted(on_disk):
            state, committed_end = known.get(seg_id, ("OPEN", 0))
            if state == "SEALED":
                continue
            try:
                result = self._recover_one(seg_id, on_disk[seg_id], committed_end, conn)
            except OSError as exc:
                raise WriterFatal(f"recovery of segment {seg_id} failed: {exc}") from exc
            if result is not None:
                sealed.append(result)
        ids = set(on_disk) | set(known)
        self.next_id = max(ids) + 1 if ids else 1
        return sealed

    def _recover_one(
        self, seg_id: int, path: Path, committed_end: int, conn: apsw.Connection
    ) -> SealResult | None:
        fd = os.open(path, os.O_RDWR)
        fileio.track(fd, path)
        try:
            size = os.fstat(fd).st_size
            # Always rescan: a footer in a segment the database does not
            # list as SEALED proves nothing (object bytes could mimic one).
            # A footer the seal wrote before a crash is simply rewritten.
            if size < segfmt.HEADER_SIZE:
                if committed_end > 0:
                    raise WriterFatal(f"{path}: header lost but chunks were committed")
                log.warning("removing segment %s with a torn header (%d bytes)", path, size)
                fileio.unlink(path, "recovery.unlink_torn")
                fileio.fsync_dir(self.dir, "recovery.dir_fsync")
                return None
            try:
                header = segfmt.decode_header(os.pread(fd, segfmt.HEADER_SIZE, 0), path=str(path))
                version = header.version
            except FormatError as exc:
                # Never delete or rewrite a file we cannot understand; an
                # operator (fsck/scrub) decides. Appends go to a new segment.
                log.critical("leaving segment with a damaged header untouched: %s", exc)
                return None
            scan = segfmt.scan_records(fd, path=str(path), version=version)
            cut = max(scan.valid_end, committed_end)
            if scan.error is not None:
                log.warning("segment %s: %s; cutting at %d", path, scan.error, cut)
            if committed_end > size:
                log.critical(
                    "segment %s is shorter (%d) than its committed end (%d)",
                    path, size, committed_end,
                )  # fmt: skip
                cut = size
            if cut < size:
                fileio.ftruncate(fd, cut, "recovery.truncate")
            if scan.valid_end < cut:
                # A damaged record sits below committed data: keep the bytes,
                # leave the file without a footer, and let scrub report it.
                fileio.fsync(fd, "recovery.fsync_damaged")
                log.error("segment %s sealed without footer: damaged record below commit", path)
                return SealResult(seg_id, cut, b"")
            records = list(scan.records)
            if version >= 2:
                fixes = _corrections(conn, fd, str(path), records, committed_end)
                for rtype, data in fixes:
                    digest = segfmt.record_digest(rtype, data)
                    head = segfmt.encode_record_header(digest, len(data), rtype, version=version)
                    fileio.pwritev_all(fd, [head, data], cut, "recovery.append")
                    records.append(segfmt.RecordInfo(cut, len(data), digest, rtype))
                    cut = records[-1].end
                if fixes:
                    log.warning(
                        "segment %s: %d record(s) of an uncommitted batch; appended the "
                        "committed state after them",
                        path, len(fixes),
                    )  # fmt: skip
            footer_bytes = segfmt.encode_footer(records, cut, version=version)
            fileio.pwrite_all(fd, footer_bytes, cut, "recovery.footer_write")
            fileio.fsync(fd, "recovery.fsync")
            return SealResult(seg_id, cut + len(footer_bytes), footer_bytes[-40:-8])
        finally:
            fileio.close(fd)

    # ---- appends -------------------------------------------------------
    def _open_new(self) -> OpenSegment:
        seg_id = self.next_id
        self.next_id += 1
        path = self.dir / segment_file_name(seg_id)
        created_ns = time.time_ns()
        fd = fileio.open_file(
            path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, "segment.create"
        )
        try:
            fileio.pwrite_all(
                fd, segfmt.encode_header(seg_id, created_ns), 0, "segment.header_write"
            )
        except OSError:
            fileio.close(fd)
            fileio.unlink(path, "segment.create_cleanup")
            raise
        try:
            fileio.fsync(fd, "segment.header_fsync")
            fileio.fsync_dir(self.dir, "segments_dir.fsync")
        except OSError as exc:
            # A failed fsync leaves the file's and the directory's state
            # unknown: never carry on (or retry) as if it had worked.
            raise WriterFatal(f"fsync of new segment {path} failed: {exc}") from exc
        seg = OpenSegment(seg_id, path, fd, segfmt.HEADER_SIZE, created_ns)
        seg.synced_end = seg.end
        log.info("opened segment %s", path.name)
        return seg

    def check_free_space(self) -> None:
        # Only a healthy verdict is reused: while writes are being refused
        # every one re-checks, so they resume the moment space is freed.
        now = time.monotonic()
        if not self._free_ok or now - self._free_checked_at >= FREE_SPACE_CHECK_INTERVAL_S:
            st = os.statvfs(self.dir)
            self._free_ok = st.f_bavail * st.f_frsize >= self.cfg.min_free_bytes
            self._free_checked_at = now
        if not self._free_ok:
            raise S3Error("InsufficientStorage")

    def append(self, digest: bytes, data: bytes | memoryview) -> ChunkRef:
        if not 0 < len(data) <= CHUNK_SIZE:
            raise S3Error("InvalidRequest", message="chunk size out of range")
        self.check_free_space()
        with self.lock:
            if self.current is None:
                try:
                    self.current = self._open_new()
                except OSError as exc:
                    raise _refusal(exc) from exc
            seg = self.current
            try:
                record = self._write_record(seg, segfmt.TYPE_CHUNK, digest, data)
            except OSError as exc:
                raise _refusal(exc) from exc
            if seg.end >= self.cfg.segment_max_bytes:
                self._rotate()
        return ChunkRef(seg.segment_id, record.data_offset, len(data), digest)

    def append_records(self, items: list[tuple[int, bytes]]) -> tuple[OpenSegment, int]:
        """Append a batch's manifest and metadata records (type, data) to the
        open segment, opening one if there is none; returns the segment and
        its end after them. Runs in the committer's thread.

        The segment is not rotated in the middle of a batch (it may overshoot
        ``segment_max_bytes`` by one batch's records); it is rotated after.
        ``OSError`` means nothing of this call stays in the file (a failed
        write is cut back); a failed cut-back is ``WriterFatal``.
        """
        with self.lock:
            if self.current is None:
                self.current = self._open_new()
            seg = self.current
            for rtype, data in items:
                if not 0 < len(data) <= CHUNK_SIZE:
                    raise ValueError(
                        f"a {segfmt.TYPE_NAMES[rtype]} record of {len(data)} bytes does not fit "
                        f"in one segment record (1..{CHUNK_SIZE})"
                    )
                self._write_record(seg, rtype, segfmt.record_digest(rtype, data), data)
            end = seg.end
            if seg.end >= self.cfg.segment_max_bytes:
                self._rotate()
        return seg, end

    def _write_record(
        self, seg: OpenSegment, rtype: int, digest: bytes, data: bytes | memoryview
    ) -> segfmt.RecordInfo:
        start = seg.end
        try:
            fileio.pwritev_all(
                seg.fd,
                [segfmt.encode_record_header(digest, len(data), rtype), data],
                start,
                "segment.append",
            )
        except OSError:
            try:
                fileio.ftruncate(seg.fd, start, "segment.append_cutback")
            except OSError as exc2:
                raise WriterFatal(f"cannot cut back {seg.path} after failed write") from exc2
            raise
        record = segfmt.RecordInfo(start, len(data), digest, rtype)
        seg.records.append(record)
        seg.end = record.end
        seg.last_append = time.monotonic()
        return record

    def rotate(self) -> None:
        """Stop appending to the current segment; the committer seals it."""
        with self.lock:
            self._rotate()

    def _rotate(self) -> None:
        if self.current is not None and self.current.records:
            self.to_seal.append(self.current)
            self.current = None

    def idle_expired(self) -> bool:
        seg = self.current
        return (
            seg is not None
            and bool(seg.records)
            and time.monotonic() - seg.last_append >= self.cfg.segment_idle_seal
        )

    def close(self) -> None:
        for seg in [*self.to_seal, *([self.current] if self.current else [])]:
            fileio.close(seg.fd)
        self.to_seal.clear()
        self.current = None


def seal(seg: OpenSegment) -> SealResult:
    """Write the footer and fsync; runs in the committer's thread."""
    footer = segfmt.encode_footer(seg.records, seg.end, version=seg.version)
    fileio.pwrite_all(seg.fd, footer, seg.end, "seal.footer_write")
    fileio.fsync(seg.fd, "seal.fsync")
    fileio.close(seg.fd)
    return SealResult(seg.segment_id, seg.end + len(footer), footer[-40:-8])


def _corrections(
    conn: apsw.Connection,
    fd: int,
    path: str,
    records: list[segfmt.RecordInfo],
    committed_end: int,
) -> list[tuple[int, bytes]]:
    """The records that restate what the database kept for every manifest
    or metadata record past ``committed_end`` (see rule 4)."""
    uids: set[str] = set()
    vmeta_uids: set[str] = set()
    buckets: set[str] = set()
    keks: set[str] = set()
    for rec in records:
        if rec.offset < committed_end or rec.rtype == segfmt.TYPE_CHUNK:
            continue
        try:
            data = segfmt.read_record_data(fd, rec, path=path)
            if rec.rtype == segfmt.TYPE_MANIFEST:
                uids.add(decode_manifest(data, path=path, with_meta=False).version_id)
                continue
            kind, body = decode_record(data, path=f"{path}@{rec.offset}")
        except FormatError as exc:
            log.error("segment %s: unreadable uncommitted record: %s", path, exc)
            continue
        if kind == KIND_STATE:
            uids.add(str(body["uid"]))
        elif kind == KIND_VERSION_META:
            uids.add(str(body["uid"]))
            vmeta_uids.add(str(body["uid"]))
        elif kind in (KIND_BUCKET, KIND_BUCKET_GONE):
            buckets.add(str(body["name"]))
        elif kind == KIND_KEY:
            keks.add(str(body["id"]))
    # A key record restates the KEK as the database kept it (a rotation
    # that did not commit is undone this way), or says it is gone (an
    # EnsureKek that did not commit).
    # The other records are the same ones the batch's journal writes
    # (record_journal.py), so a restated bucket keeps every setting and a
    # version its whole metadata.
    out: list[tuple[int, bytes]] = kek_records(conn, sorted(keks))
    out += [bucket_record(conn, name) for name in sorted(buckets)]
    for uid in sorted(uids):
        out.append(state_record(conn, uid))
        if uid in vmeta_uids:
            vmeta = vmeta_record(conn, uid)
            if vmeta is not None:
                out.append(vmeta)
    return out


def _refusal(exc: OSError) -> S3Error:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return S3Error("InsufficientStorage")
    return S3Error("InternalError", message="storage write failed")
