"""Scrub's structural pass: bit rot outside chunk data.

Quiesce protocol: read-only (segment files with plain reads, ``meta.db``
through a read-only connection); runs at any maintenance state.

Chunk data is verified by ``scrub.py`` against the manifests' BLAKE3. A
flipped bit can also land where no GET ever looks: a segment's header, a
sealed segment's footer (or the record headers it cross-checks), or a
manifest or metadata record in a segment (GETs use the database copy).
Those bytes matter for recovery, GC and ``rebuild-index``, so scrub reports
them too:
- every segment file's header decodes and names the segment the file is;
- every segment the database lists as SEALED with a footer digest ends in a
  footer that verifies and agrees with each record header it lists;
- every manifest and metadata record in the segments verifies against its
  digest (``replay.py`` reads them all), and every live version has a
  manifest record equal to the database copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from seglake.audit.fsck import segment_files_on_disk
from seglake.audit.replay import replay
from seglake.config import Config
from seglake.format.errors import FormatError
from seglake.format.segment import HEADER_SIZE, decode_header, read_footer
from seglake.meta.schema import open_read, query


@dataclass(frozen=True)
class FileDamage:
    kind: str  # segment-header | segment-footer | record | manifest-record
    path: str
    reason: str


def check_files(cfg: Config) -> list[FileDamage]:
    conn = open_read(str(cfg.db_path))
    try:
        conn.execute("BEGIN")
        try:
            sealed = {
                int(r[0])
                for r in query(
                    conn,
                    "SELECT id FROM segments WHERE state = 'SEALED' AND footer_digest IS NOT NULL "
                    "AND length(footer_digest) > 0",
                )
            }
            versions = query(
                conn,
                "SELECT uid, manifest FROM versions WHERE state != 'DELETED' AND manifest IS NOT NULL",
            )
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    damage: list[FileDamage] = []
    for entry, seg_id in segment_files_on_disk(cfg):
        if seg_id is not None:
            damage.extend(_check_segment(entry, seg_id, seg_id in sealed))
    if cfg.needs_upgrade() is None:
        log = replay(cfg.segments_dir)
        for path, problem in sorted(log.bad_files.items()):
            damage.append(FileDamage("record", path, problem))
        for uid, manifest in versions:
            copies = log.manifest_copies.get(str(uid), [])
            if not copies and log.bad_files:
                continue  # most likely in a damaged segment reported above
            if not any(c.data == bytes(manifest) for c in copies):
                where = f"meta.db:versions[{uid}]"
                reason = (
                    "no manifest record in the segments"
                    if not copies
                    else "no manifest record in the segments equals the database copy"
                )
                damage.append(FileDamage("manifest-record", where, reason))
    return damage


def _check_segment(path: os.PathLike[str], seg_id: int, sealed: bool) -> list[FileDamage]:
    out: list[FileDamage] = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return [FileDamage("segment-header", str(path), f"unreadable: {exc}")]
    try:
        size = os.fstat(fd).st_size
        try:
            header = decode_header(os.pread(fd, HEADER_SIZE, 0), path=str(path))
            if header.segment_id != seg_id:
                out.append(
                    FileDamage(
                        "segment-header", str(path), f"header names segment {header.segment_id}"
                    )
                )
        except FormatError as exc:
            out.append(FileDamage("segment-header", str(path), str(exc)))
        if sealed:
            try:
                if read_footer(fd, size, path=str(path)) is None:
                    out.append(FileDamage("segment-footer", str(path), "no footer at the end"))
            except FormatError as exc:
                out.append(FileDamage("segment-footer", str(path), str(exc)))
    finally:
        os.close(fd)
    return out
