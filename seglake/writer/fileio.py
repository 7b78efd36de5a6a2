"""Every file operation the writer makes on the data dir, by named call site.

Rules this module keeps:
- In production each function is the plain system call plus one failpoint
  lookup on an empty dict: no buffering, no retries, no extra syscalls.
- Every call site has a name, listed once in ``SITES`` with its kind; the
  fault tests read this registry to prove they covered every fsync and
  every write site (an unknown name is a programming error).
- Failpoints: ``<site>`` fires *before* the operation (``eio``/``enospc``
  there mean "the call failed"; ``kill`` means "crashed just before"), and
  ``<site>.done`` fires right after it succeeded.
- Test mode only (``SEGLAKE_IO_JOURNAL=<file>``): each completed operation is
  appended to that journal (msgpack, one record per operation, data
  included) so that ``tests/faults/crashsim.py`` can compute the disk states
  a power cut could leave. ``install_sqlite_recorder()`` routes SQLite's own
  writes and syncs (``meta.db``, ``-wal``) into the same journal through a
  pass-through APSW VFS. In test mode ``SEGLAKE_TEST_SKIP_FSYNC=site,...``
  turns the named fsyncs into no-ops: the mutation check uses it to show
  that each required fsync is caught by the power-loss test. Without the
  journal variable the skip list is ignored, so it can never weaken a
  production server.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Final

import apsw
import msgpack

from seglake import failpoints

FSYNC = "fsync"
DIRSYNC = "dirsync"
WRITE = "write"
CREATE = "create"
TRUNCATE = "truncate"
UNLINK = "unlink"
MKDIR = "mkdir"
RENAME = "rename"

# Every named call site and what it does. Recovery sites run before the
# writer accepts requests; ``sqlite.*`` sites are SQLite's own I/O.
SITES: Final[dict[str, str]] = {
    "segment.create": CREATE,
    "segment.header_write": WRITE,
    "segment.header_fsync": FSYNC,
    "segments_dir.fsync": DIRSYNC,
    "segment.append": WRITE,
    "segment.append_cutback": TRUNCATE,
    "segment.create_cleanup": UNLINK,
    # The barrier's one data flush: a batch's chunks and records (fdatasync).
    "segment.fsync": FSYNC,
    "seal.footer_write": WRITE,
    "seal.fsync": FSYNC,
    "dir.fsync": DIRSYNC,
    "recovery.unlink_torn": UNLINK,
    "recovery.dir_fsync": DIRSYNC,
    "recovery.truncate": TRUNCATE,
    "recovery.fsync_damaged": FSYNC,
    "recovery.footer_write": WRITE,
    "recovery.fsync": FSYNC,
    # Recovery's corrections: the state the database kept, appended after
    # records a crash left flushed but uncommitted (writer/segments.py).
    "recovery.append": WRITE,
    # Segment GC (writer/gc_ops.py): dead segment files unlinked after COMMIT.
    "gc_segment.unlink": UNLINK,
    # seglake upgrade (writer/upgrade.py): a version-1 store's manifest and
    # record files removed once their records are committed in a segment.
    "upgrade.unlink": UNLINK,
    "upgrade.rmdir": UNLINK,
    "upgrade.dir_fsync": DIRSYNC,
    "gc_segments_dir.fsync": DIRSYNC,
    "sqlite.write": WRITE,
    "sqlite.truncate": TRUNCATE,
    "sqlite.sync": FSYNC,
}
FSYNC_SITES: Final = frozenset(s for s, k in SITES.items() if k in (FSYNC, DIRSYNC))
WRITE_SITES: Final = frozenset(s for s, k in SITES.items() if k == WRITE)

_JOURNAL_PATH = os.environ.get("SEGLAKE_IO_JOURNAL", "")
_SKIP: frozenset[str] = (
    frozenset(filter(None, os.environ.get("SEGLAKE_TEST_SKIP_FSYNC", "").split(",")))
    if _JOURNAL_PATH
    else frozenset()
)


class _Journal:
    """Append-only record of completed operations (test mode only).

    Records are written with one ``write`` each on an O_APPEND descriptor:
    a kill -9 of the writer leaves every record it finished (the page cache
    keeps them), and a reader ignores a torn last record.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._lock = threading.Lock()
        self._names: dict[int, str] = {}

    def name(self, fd: int, path: str | Path) -> None:
        self._names[fd] = os.path.abspath(path)

    def path_of(self, fd: int) -> str | None:
        return self._names.get(fd)

    def forget(self, fd: int) -> None:
        self._names.pop(fd, None)

    def record(self, op: str, site: str, path: str, *args: Any) -> None:
        blob = msgpack.packb([op, site, path, *args], use_bin_type=True)
        frame = len(blob).to_bytes(4, "big") + blob
        with self._lock:
            os.write(self._fd, frame)


_journal: _Journal | None = _Journal(_JOURNAL_PATH) if _JOURNAL_PATH else None


def journal_enabled() -> bool:
    return _journal is not None


def _check(site: str) -> None:
    if site not in SITES:
        raise KeyError(f"unregistered file-operation site {site!r}")


def _record_fd(op: str, site: str, fd: int, *args: Any) -> None:
    if _journal is not None:
        path = _journal.path_of(fd)
        if path is not None:
            _journal.record(op, site, path, *args)


# ---- files -------------------------------------------------------------------
def open_file(path: str | Path, flags: int, mode: int, site: str) -> int:
    """``os.open``; a name this call may create is recorded as created."""
    _check(site)
    failpoints.hit(site)
    existed = _journal is not None and bool(flags & os.O_CREAT) and os.path.exists(path)
    fd = os.open(path, flags, mode)
    if _journal is not None:
        _journal.name(fd, path)
        if flags & os.O_CREAT and not existed:
            _journal.record(CREATE, site, os.path.abspath(path))
        if flags & os.O_TRUNC:
            _journal.record(TRUNCATE, site, os.path.abspath(path), 0)
    failpoints.hit(site + ".done")
    return fd


def track(fd: int, path: str | Path) -> None:
    """Name an fd opened elsewhere (e.g. by recovery) for the journal."""
    if _journal is not None:
        _journal.name(fd, path)


def close(fd: int) -> None:
    if _journal is not None:
        _journal.forget(fd)
    os.close(fd)


def _pwrite_rest(fd: int, view: memoryview, pos: int, site: str) -> None:
    """All of ``view`` at ``pos``, in as many positioned writes as it takes
    (each one journalled as it happened)."""
    while view:
        n = os.pwrite(fd, view, pos)
        if n <= 0:
            raise OSError("short write")
        if _journal is not None:
            _record_fd(WRITE, site, fd, pos, bytes(view[:n]))
        view = view[n:]
        pos += n


def pwrite_all(fd: int, data: bytes | memoryview, offset: int, site: str) -> None:
    _check(site)
    failpoints.hit(site)
    _pwrite_rest(fd, memoryview(data), offset, site)
    failpoints.hit(site + ".done")


def pwritev_all(fd: int, buffers: list[bytes | memoryview], offset: int, site: str) -> None:
    _check(site)
    failpoints.hit(site)
    total = sum(len(b) for b in buffers)
    n = os.pwritev(fd, buffers, offset)
    if _journal is not None and n > 0:
        _record_fd(WRITE, site, fd, offset, b"".join(bytes(b) for b in buffers)[:n])
    if n != total:
        # Rare: a short vectored write; finish the rest piece by piece.
        rest = memoryview(b"".join(bytes(b) for b in buffers))[n:]
        _pwrite_rest(fd, rest, offset + n, site)
    failpoints.hit(site + ".done")


def ftruncate(fd: int, size: int, site: str) -> None:
    _check(site)
    failpoints.hit(site)
    os.ftruncate(fd, size)
    _record_fd(TRUNCATE, site, fd, size)
    failpoints.hit(site + ".done")


def fsync(fd: int, site: str) -> None:
    """fsync a file. An error propagates: the caller must not trust or retry."""
    _check(site)
    failpoints.hit(site)
    if site in _SKIP:
        return
    os.fsync(fd)
    _record_fd(FSYNC, site, fd)
    failpoints.hit(site + ".done")


def fdatasync(fd: int, site: str) -> None:
    """fdatasync a file: its data and the metadata needed to read it back
    (the size of an append) are durable; an error propagates, never retried.
    Journalled as an fsync (crashsim treats both alike)."""
    _check(site)
    failpoints.hit(site)
    if site in _SKIP:
        return
    os.fdatasync(fd)
    _record_fd(FSYNC, site, fd)
    failpoints.hit(site + ".done")


def fsync_dir(path: str | Path, site: str) -> None:
    """Make the directory's entries (creates, unlinks) durable."""
    _check(site)
    failpoints.hit(site)
    if site in _SKIP:
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if _journal is not None:
        _journal.record(DIRSYNC, site, os.path.abspath(path))
    failpoints.hit(site + ".done")


def unlink(path: str | Path, site: str) -> None:
    _check(site)
    failpoints.hit(site)
    os.unlink(path)
    if _journal is not None:
        _journal.record(UNLINK, site, os.path.abspath(path))
    failpoints.hit(site + ".done")


def rmdir(path: str | Path, site: str) -> None:
    """Remove an empty directory (journalled as an unlink of its name)."""
    _check(site)
    failpoints.hit(site)
    os.rmdir(path)
    if _journal is not None:
        _journal.record(UNLINK, site, os.path.abspath(path))
    failpoints.hit(site + ".done")


def rename(src: str | Path, dst: str | Path, site: str) -> None:
    """``os.replace``: atomic, but durable only once both directories are fsynced."""
    _check(site)
    failpoints.hit(site)
    os.replace(src, dst)
    if _journal is not None:
        _journal.record(RENAME, site, os.path.abspath(src), os.path.abspath(dst))
    failpoints.hit(site + ".done")


def mkdir(path: str | Path, site: str) -> None:
    """Create one directory level (an existing one is fine)."""
    _check(site)
    failpoints.hit(site)
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    if _journal is not None:
        _journal.record(MKDIR, site, os.path.abspath(path))
    failpoints.hit(site + ".done")


# ---- SQLite --------------------------------------------------------------------
_SQLITE_BASE_VFS = "unix"
# The unix VFS fsyncs the directory on the first sync of a journal or WAL it
# created (so the new name is durable); the recorder mirrors that.
_DIRSYNC_ON_FIRST_SYNC = apsw.SQLITE_OPEN_WAL | apsw.SQLITE_OPEN_MAIN_JOURNAL


class _RecordingFile(apsw.VFSFile):
    def __init__(self, name: Any, flags: list[int], path: str, created: bool) -> None:
        super().__init__(_SQLITE_BASE_VFS, name, flags)
        self._path = path
        self._dirsync_pending = created and bool(flags[0] & _DIRSYNC_ON_FIRST_SYNC)
        if created and _journal is not None:
            _journal.record(CREATE, "sqlite.write", path)

    def xWrite(self, data: bytes, offset: int) -> None:
        failpoints.hit("sqlite.write")
        super().xWrite(data, offset)
        if _journal is not None:
            _journal.record(WRITE, "sqlite.write", self._path, offset, bytes(data))

    def xTruncate(self, newsize: int) -> None:
        failpoints.hit("sqlite.truncate")
        super().xTruncate(newsize)
        if _journal is not None:
            _journal.record(TRUNCATE, "sqlite.truncate", self._path, newsize)

    def xSync(self, flags: int) -> None:
        failpoints.hit("sqlite.sync")
        if "sqlite.sync" in _SKIP:
            return
        super().xSync(flags)
        if _journal is not None:
            _journal.record(FSYNC, "sqlite.sync", self._path)
            if self._dirsync_pending:
                _journal.record(DIRSYNC, "sqlite.sync", os.path.dirname(self._path))
        self._dirsync_pending = False
        failpoints.hit("sqlite.sync.done")


class _RecordingVFS(apsw.VFS):
    def __init__(self) -> None:
        super().__init__("seglake-recording", _SQLITE_BASE_VFS, makedefault=True)

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        path = name if isinstance(name, str) or name is None else name.filename()
        if path is None:  # a temporary file: nothing durable
            return apsw.VFSFile(_SQLITE_BASE_VFS, name, flags)
        path = os.path.abspath(path)
        created = bool(flags[0] & apsw.SQLITE_OPEN_CREATE) and not os.path.exists(path)
        return _RecordingFile(name, flags, path, created)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        super().xDelete(filename, syncdir)
        if _journal is not None:
            path = os.path.abspath(filename)
            _journal.record(UNLINK, "sqlite.write", path)
            if syncdir:
                _journal.record(DIRSYNC, "sqlite.sync", os.path.dirname(path))


_vfs: _RecordingVFS | None = None


def install_sqlite_recorder() -> None:
    """Route SQLite's file I/O through the recorder, in test mode only (the
    journal or any failpoint is set); a production writer keeps SQLite's
    native VFS untouched."""
    global _vfs
    if _vfs is None and (_journal is not None or os.environ.get("SEGLAKE_FAILPOINTS")):
        _vfs = _RecordingVFS()
