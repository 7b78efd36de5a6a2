"""``seglake upgrade``: convert a version-1 store into typed segment records
(segment format 2 and later; this build writes format 3).

A version-1 store keeps one file per manifest (``objects/manifests/``), one
per metadata record (``objects/records/``) and gc-rewrite's staged
manifests (``objects/gc-pending/``). Format 2 keeps all of that as typed
records in the segments (``seglake/format/segment.py``).

Ordering this file keeps (each step restartable after a crash anywhere):

1. take the data-dir and writer locks without waiting (``offline_lock``):
   refused while a server, a writer or another command holds the dir;
2. start the writer's recovery as ``seglake serve`` would (schema
   migration; every unsealed version-1 segment validated and sealed with a
   version-1 footer, so no new record ever lands in a version-1 file);
3. unless ``settings['store_format']`` already says 2 or 3: append, to a
   fresh segment (format 3 today; format 2 when older code ran it), a
   bucket record for every bucket, a manifest record for every version row,
   and a state record for every version that is not ACTIVE; fdatasync it; then one transaction records the segment's
   ``committed_end`` and sets ``settings['store_format'] = 3``. The bytes
   are the database's copies, which every committed manifest file and
   record equals (a manifest file is written before its COMMIT; a
   gc-pending file is the database copy by construction); files whose bytes
   differ, or that have no row (a crash between their fsync and COMMIT),
   are counted in the report and not carried over;
4. remove the three directories (files first, then the directories, then
   one fsync of ``objects/``).

A crash before 3's COMMIT leaves a version-1 store and records nobody
refers to (replaced on the next run by identical ones); after it, the next
run skips to 4. Version-1 segments stay as they are: every reader reads
both versions.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from seglake.config import Config
from seglake.format import layout
from seglake.format.manifest import MANIFEST_SUFFIX
from seglake.format.records import (
    KIND_BUCKET,
    KIND_STATE,
    bucket_body,
    encode_record,
)
from seglake.format.segment import TYPE_BUCKET, TYPE_MANIFEST, TYPE_STATE
from seglake.locks import offline_lock
from seglake.meta.schema import STORE_FORMAT_3, STORE_FORMAT_SETTING, get_setting, set_setting
from seglake.writer import fileio
from seglake.writer.main import Writer
from seglake.writer.segments import WriterFatal

log = logging.getLogger("seglake.writer.upgrade")

# "2" once the records are converted; "3" when the converted records went
# into a format-3 segment (what this build writes). Either means "done".
STORE_FORMAT = STORE_FORMAT_3
CONVERTED: Final = ("2", STORE_FORMAT_3)


@dataclass
class UpgradeReport:
    already: bool = False
    buckets: int = 0
    manifests: int = 0
    states: int = 0
    segment: int | None = None
    record_bytes: int = 0
    files_removed: int = 0
    manifest_files: int = 0
    manifest_files_differing: int = 0
    manifest_files_without_row: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def upgrade_store(cfg: Config) -> UpgradeReport:
    """Convert ``cfg``'s data dir (see the top); raises ``DataDirBusy`` when a
    server holds it, ``WriterFatal``/``OSError`` on an I/O failure (run it
    again: every step is restartable)."""
    report = UpgradeReport()
    with offline_lock(cfg, "upgrade") as writer_lock:
        if cfg.needs_upgrade() is None:
            report.already = True
            return report
        writer = Writer(cfg, lock_fd=writer_lock, upgrading=True)
        try:
            if get_setting(writer.conn, STORE_FORMAT_SETTING) not in CONVERTED:
                _convert(cfg, writer, report)
            else:
                report.notes.append("records were already converted; removing the old files")
        finally:
            writer.close()
        report.files_removed = _remove_v1_dirs(cfg)
    return report


def _convert(cfg: Config, writer: Writer, report: UpgradeReport) -> None:
    conn = writer.conn
    items: list[tuple[int, bytes]] = []
    rows: list[Any] = conn.execute(
        "SELECT name, created_ns, versioning, policy FROM buckets ORDER BY name"
    ).fetchall()
    for name, created, versioning, policy in rows:
        body = bucket_body(str(name), int(created), str(versioning), policy)
        items.append((TYPE_BUCKET, encode_record(KIND_BUCKET, body)))
        report.buckets += 1
    db: dict[str, bytes] = {}
    rows = list(conn.execute("SELECT uid, manifest, state FROM versions ORDER BY id"))
    for uid, manifest, state in rows:
        if manifest is None:
            report.notes.append(f"version {uid} has no manifest in meta.db: not carried over")
            continue
        db[str(uid)] = bytes(manifest)
        items.append((TYPE_MANIFEST, bytes(manifest)))
        report.manifests += 1
        if state != "ACTIVE":
            body = {"uid": str(uid), "state": str(state)}
            items.append((TYPE_STATE, encode_record(KIND_STATE, body)))
            report.states += 1
    _compare_manifest_files(cfg, db, report)
    store = writer.store
    end = 0
    if items:
        store.rotate()
        seg, end = store.append_records(items)
        try:
            fileio.fdatasync(seg.fd, "segment.fsync")
        except OSError as exc:
            raise WriterFatal(f"upgrade: flush of {seg.path} failed: {exc}") from exc
        report.segment = seg.segment_id
        report.record_bytes = end
    with conn:
        if report.segment is not None:
            conn.execute(
                "INSERT INTO segments(id, state, size, committed_end, created_ns) "
                "VALUES (?, 'OPEN', ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "committed_end = max(committed_end, excluded.committed_end)",
                (report.segment, end, end, store.current.created_ns if store.current else 0),
            )
        set_setting(conn, STORE_FORMAT_SETTING, STORE_FORMAT)
    log.info(
        "upgrade: %d bucket, %d manifest and %d state record(s) in segment %s",
        report.buckets, report.manifests, report.states, report.segment,
    )  # fmt: skip


def _compare_manifest_files(cfg: Config, db: dict[str, bytes], report: UpgradeReport) -> None:
    root = cfg.manifests_dir
    if not root.is_dir():
        return
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if not name.endswith(MANIFEST_SUFFIX):
                continue
            report.manifest_files += 1
            uid = name[: -len(MANIFEST_SUFFIX)]
            want = db.get(uid)
            if want is None:
                report.manifest_files_without_row += 1
            elif (Path(dirpath) / name).read_bytes() != want:
                report.manifest_files_differing += 1
    if report.manifest_files_differing:
        report.notes.append(
            f"{report.manifest_files_differing} manifest file(s) differ from meta.db: the "
            "database copies (what GETs served) were carried over"
        )


def _remove_v1_dirs(cfg: Config) -> int:
    removed = 0
    for top in layout.v1_dirs(cfg.root):
        if not top.exists():
            continue
        for dirpath, dirs, names in os.walk(top, topdown=False):
            for name in names:
                fileio.unlink(Path(dirpath) / name, "upgrade.unlink")
                removed += 1
            for d in dirs:
                fileio.rmdir(Path(dirpath) / d, "upgrade.rmdir")
        fileio.rmdir(top, "upgrade.rmdir")
    fileio.fsync_dir(layout.objects_dir(cfg.root), "upgrade.dir_fsync")
    return removed
