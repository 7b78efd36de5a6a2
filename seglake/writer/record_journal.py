"""Keeps the metadata records (``seglake/format/records.py``) in step with
``meta.db``, inside the writer's batch.

Ordering this file keeps (the writer's barrier, see ``commit.py``):
mutations applied → manifests written → **records written and fsynced** →
COMMIT → ack. Records are therefore never behind a committed change.

How changes are found: TEMP triggers on the writer's own connection call
``seglake_record_touch(kind, name)`` whenever a bucket row or a version's
state changes (or a version row is removed), whichever mutation did it, so
mutations added later are covered without knowing about records. A touch
only remembers *what* changed; ``flush`` reads the final state of each
touched bucket/version inside the still-open transaction and writes exactly
that. A mutation rolled back under its savepoint leaves a touch behind that
simply rewrites the unchanged state. Touches are dropped only after COMMIT
(``committed``): if the batch rolls back, the next flush corrects any record
written for it.

At start-up ``backfill`` writes the records a store written before this
format (or restored from a snapshot) lacks.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import apsw

from seglake.format.records import (
    KIND_BUCKET,
    KIND_STATE,
    bucket_body,
    bucket_record_path,
    encode_record,
    records_dir,
    state_record_path,
)
from seglake.writer import fileio
from seglake.writer.segments import WriterFatal

log = logging.getLogger("seglake.writer")

TOUCH_FN: Final = "seglake_record_touch"
_BUCKET, _VERSION, _PURGED = "b", "v", "p"
# A DeleteObjects of 1000 keys in an unversioned bucket changes 1000 states
# in one batch: from this many records on, they are written and fsynced in
# parallel so the batch costs about one fsync round, not one per key.
PARALLEL_MIN: Final = 4
PARALLEL_THREADS: Final = 16

_TRIGGERS: Final = f"""
CREATE TEMP TRIGGER IF NOT EXISTS rec_bucket_ins AFTER INSERT ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_bucket_upd AFTER UPDATE ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', OLD.name); SELECT {TOUCH_FN}('{_BUCKET}', NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_bucket_del AFTER DELETE ON main.buckets
BEGIN SELECT {TOUCH_FN}('{_BUCKET}', OLD.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_version_state AFTER UPDATE OF state ON main.versions
WHEN OLD.state IS NOT NEW.state
BEGIN SELECT {TOUCH_FN}('{_VERSION}', NEW.uid); END;
CREATE TEMP TRIGGER IF NOT EXISTS rec_version_del AFTER DELETE ON main.versions
BEGIN SELECT {TOUCH_FN}('{_PURGED}', OLD.uid); END;
"""


class RecordJournal:
    def __init__(self, objects_root: Path) -> None:
        self.objects_root = objects_root
        self._touched: set[tuple[str, str]] = set()
        # Directory levels whose entry this process has made durable.
        self._synced_dirs: set[Path] = set()
        self._claimed: set[Path] = set()
        self._pool: ThreadPoolExecutor | None = None

    def install(self, conn: apsw.Connection) -> None:
        conn.create_scalar_function(TOUCH_FN, self._touch, 2, deterministic=False)
        conn.execute(_TRIGGERS)

    def _touch(self, *args: apsw.SQLiteValue) -> None:
        kind, name = args
        if isinstance(kind, str) and isinstance(name, str):
            self._touched.add((kind, name))

    def flush(self, conn: apsw.Connection) -> None:
        """Write the record of every touched bucket/version as ``conn`` sees it now.

        A full disk fails the batch (the client gets 507); any other I/O
        error is fatal, as for segments and manifests: a failed fsync is
        never retried and trusted.
        """
        if not self._touched:
            return
        ok = False
        try:
            self._flush(conn)
            ok = True
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise WriterFatal(f"metadata record write failed: {exc}") from exc
        finally:
            self._dirs_synced(ok)

    def _flush(self, conn: apsw.Connection) -> None:
        dirty_dirs: set[Path] = set()
        writes: list[tuple[Path, bytes]] = []
        for kind, name in sorted(self._touched):
            if kind == _BUCKET:
                path = bucket_record_path(self.objects_root, name)
                rows: list[Any] = conn.execute(
                    "SELECT created_ns, versioning, policy, lifecycle, cors FROM buckets "
                    "WHERE name = ?",
                    (name,),
                ).fetchall()
                data = None
                if rows:
                    created, versioning, policy, lifecycle, cors = rows[0]
                    body = bucket_body(name, int(created), str(versioning), policy, lifecycle, cors)
                    data = encode_record(KIND_BUCKET, body)
            else:
                path = state_record_path(self.objects_root, name)
                # Read the state whatever the touch said: a removed row is
                # PURGED, a row rolled back to ACTIVE needs no record.
                found: list[Any] = conn.execute(
                    "SELECT state FROM versions WHERE uid = ?", (name,)
                ).fetchall()
                state = str(found[0][0]) if found else "PURGED"
                data = (
                    None
                    if state == "ACTIVE"
                    else encode_record(KIND_STATE, {"uid": name, "state": state})
                )
            if data is None:
                if _remove(path):
                    dirty_dirs.add(path.parent)
                continue
            self._ensure_dir(path.parent, dirty_dirs)
            writes.append((path, data))
            dirty_dirs.add(path.parent)
        self._run(_write, writes)
        self._run(_fsync_dir, sorted(dirty_dirs))

    def _run(self, fn: Callable[[Any], None], items: list[Any]) -> None:
        """``fn`` over ``items``; in parallel for many (the file system merges
        concurrent fsyncs into fewer journal commits, as for manifests)."""
        if len(items) < PARALLEL_MIN:
            for item in items:
                fn(item)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARALLEL_THREADS, thread_name_prefix="recsync")
        list(self._pool.map(fn, items))  # re-raises the first error

    def committed(self) -> None:
        self._touched.clear()

    def _ensure_dir(self, d: Path, dirty: set[Path]) -> None:
        """Create ``d`` and its missing parents; a new entry makes its parent
        dirty, and so does this process's first use of an existing level (an
        earlier writer may have died on the fsync that made it durable).

        Existence is checked every time: one stat per record is cheap, and a
        directory removed behind our back (an operator tidying up) must not
        fail the writer.
        """
        missing: list[Path] = []
        p = d
        while not p.exists():
            missing.append(p)
            p = p.parent
        for m in reversed(missing):
            fileio.mkdir(m, "record_dir.mkdir")
        p = d
        while p != self.objects_root and p != p.parent:
            if p in missing or p not in self._synced_dirs:
                dirty.add(p.parent)
                self._claimed.add(p)  # synced once the caller fsynced ``dirty``
            p = p.parent

    def _dirs_synced(self, ok: bool) -> None:
        """After the directory fsyncs of a flush: on success the claimed
        levels count as durable; after a failure (a full disk fails the
        batch without stopping the writer) they are fsynced again next time."""
        if ok:
            self._synced_dirs |= self._claimed
        self._claimed.clear()

    def backfill(self, conn: apsw.Connection) -> int:
        """Touch every bucket and non-ACTIVE version whose record is missing,
        then write them in one transaction-free pass. Returns how many."""
        missing = 0
        for (name,) in conn.execute("SELECT name FROM buckets").fetchall():
            if not bucket_record_path(self.objects_root, str(name)).exists():
                self._touched.add((_BUCKET, str(name)))
                missing += 1
        for (uid,) in conn.execute("SELECT uid FROM versions WHERE state != 'ACTIVE'").fetchall():
            if not state_record_path(self.objects_root, str(uid)).exists():
                self._touched.add((_VERSION, str(uid)))
                missing += 1
        # The directory's existence tells rebuild-index this store keeps records.
        dirty: set[Path] = set()
        try:
            self._ensure_dir(records_dir(self.objects_root), dirty)
            for d in sorted(dirty):
                _fsync_dir(d)
        except OSError as exc:
            raise WriterFatal(f"cannot create the records directory: {exc}") from exc
        self._dirs_synced(True)
        if missing:
            self.flush(conn)
            self.committed()
            log.info("wrote %d missing metadata record(s)", missing)
        return missing


def _write(item: tuple[Path, bytes]) -> None:
    fileio.replace_file(item[0], item[1], "record")


def _fsync_dir(d: Path) -> None:
    fileio.fsync_dir(d, "record_dir.fsync")


def _remove(path: Path) -> bool:
    try:
        fileio.unlink(path, "record.unlink")
    except FileNotFoundError:
        return False
    return True
