"""``seglake scrub``: re-read and BLAKE3-verify every chunk of every live version.

Quiesce protocol: scrub only reads, so it runs at any maintenance state and
alongside a live server. The one change it causes, marking a damaged version
``DAMAGED``, is a writer mutation (``mark_damaged``, never refused by the
quiesce gate) sent through the admin socket; without a server nothing is
marked and the report says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from seglake.audit.fsck import segment_path
from seglake.audit.scrub_files import FileDamage, check_files
from seglake.config import Config
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.format.segment import read_record
from seglake.meta.schema import open_read, query


@dataclass(frozen=True)
class Damage:
    uid: str
    bucket: str
    key: str
    version_id: str
    chunk: int
    reason: str


@dataclass
class ScrubReport:
    versions: int = 0
    chunks: int = 0
    bytes: int = 0
    damaged: list[Damage] = field(default_factory=list)
    # Bit rot outside chunk data (segment headers/footers, manifest files).
    files: list[FileDamage] = field(default_factory=list)

    @property
    def damaged_uids(self) -> list[str]:
        return sorted({d.uid for d in self.damaged})

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": not self.damaged and not self.files,
            "versions": self.versions,
            "chunks": self.chunks,
            "bytes": self.bytes,
            "damaged": [asdict(d) for d in self.damaged],
            "file_damage": [asdict(f) for f in self.files],
        }


Progress = Callable[[int], None]  # called with the bytes just verified


def plan_bytes(cfg: Config) -> int:
    """Total bytes a scrub will read (for a progress bar)."""
    conn = open_read(str(cfg.db_path))
    try:
        return int(
            query(
                conn,
                "SELECT coalesce(sum(size), 0) FROM versions "
                "WHERE state != 'DELETED' AND delete_marker = 0",
            )[0][0]
        )
    finally:
        conn.close()


def run_scrub(cfg: Config, progress: Progress | None = None) -> ScrubReport:
    report = ScrubReport()
    conn = open_read(str(cfg.db_path))
    try:
        conn.execute("BEGIN")
        try:
            rows = query(
                conn,
                "SELECT uid, bucket, key, version_id, manifest FROM versions "
                "WHERE state != 'DELETED' AND delete_marker = 0 ORDER BY bucket, key",
            )
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    fds: dict[int, int] = {}
    try:
        for uid, bucket, key, version_id, manifest in rows:
            report.versions += 1
            where = (str(uid), str(bucket), str(key), str(version_id))
            problem = _scrub_version(cfg, manifest, fds, report, progress)
            if problem is not None:
                report.damaged.append(Damage(*where, chunk=problem[0], reason=problem[1]))
    finally:
        for fd in fds.values():
            os.close(fd)
    report.files = check_files(cfg)
    return report


def _scrub_version(
    cfg: Config,
    manifest: Any,
    fds: dict[int, int],
    report: ScrubReport,
    progress: Progress | None,
) -> tuple[int, str] | None:
    """(chunk index, reason) of the first bad chunk, or None."""
    if manifest is None:
        return -1, "no manifest in the database"
    try:
        m = decode_manifest(bytes(manifest), path="meta.db", with_meta=False)
    except FormatError as exc:
        return -1, f"manifest: {exc}"
    for i, c in enumerate(m.chunks):
        path = segment_path(cfg, c.segment_id)
        try:
            fd = fds.get(c.segment_id)
            if fd is None:
                fd = fds[c.segment_id] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            read_record(fd, c.offset, c.length, c.digest, path=str(path))
        except (FormatError, OSError, ValueError) as exc:
            return i, str(exc)
        report.chunks += 1
        report.bytes += c.length
        if progress is not None:
            progress(c.length)
    return None
