"""The store's files are its owner's alone.

Segments hold every object's bytes in the clear and ``meta.db`` every key
and policy, so a file another local user can read is a way past every
policy and allow-list. Three layers keep them private:

* every Seglake process runs with umask 077 (``use_private_umask``, called
  first thing by the CLI and by each child), so whatever creates a file,
  SQLite's WAL and the snapshot included, creates it 0600 and a directory
  0700;
* the modes we pass to ``os.open`` are 0600 as well, so a caller that skipped
  the umask still does not leak;
* a store written by an older version, or opened up by hand, is found by
  ``exposed`` (start-up warns, ``fsck`` reports) and repaired by
  ``seglake doctor --fix-permissions`` (``make_private``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

PRIVATE_UMASK: Final = 0o077
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
# Group and world bits: any of them set is an exposure.
OPEN_BITS: Final = 0o077


def use_private_umask() -> int:
    """Set umask 077 for this process (and its children); the previous umask."""
    return os.umask(PRIVATE_UMASK)


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a new link, a rename) durable."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def create_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) durably holding ``data``, never replacing one:
    written and fsynced beside it, then hard-linked into place, so a reader
    sees either no file or the whole of it. FileExistsError if ``path``
    exists (another process was first: callers use theirs)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def _walk(root: Path, deep: bool) -> Iterator[tuple[Path, os.stat_result]]:
    """``root`` and what lies under it (only its own entries unless ``deep``).

    Symlinks are reported as themselves and never followed: their mode means
    nothing, and following one could lead out of the store."""
    try:
        yield root, root.lstat()
    except FileNotFoundError:
        return
    stack = [root]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we looked (GC, a committed temp file)
            path = Path(entry.path)
            yield path, st
            if deep and stat.S_ISDIR(st.st_mode):
                stack.append(path)


def exposed(root: Path, *, deep: bool = True) -> list[tuple[Path, int]]:
    """Every path under ``root`` whose mode gives group or others any access,
    with that mode; ``deep=False`` looks at the data dir and its own entries
    only (cheap enough for every start-up)."""
    return [
        (path, stat.S_IMODE(st.st_mode))
        for path, st in _walk(root, deep)
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & OPEN_BITS
    ]


def make_private(root: Path) -> list[tuple[Path, int, int]]:
    """Take group and world access off everything under ``root``: (path, old
    mode, new mode) for each change. Owner bits stay as they were, so a
    read-only file stays read-only."""
    changed: list[tuple[Path, int, int]] = []
    for path, mode in exposed(root, deep=True):
        new = mode & ~OPEN_BITS
        try:
            os.chmod(path, new)
        except FileNotFoundError:
            continue
        changed.append((path, mode, new))
    return changed
