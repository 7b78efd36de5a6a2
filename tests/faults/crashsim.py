"""Disk states a power cut could leave, computed from an I/O journal.

Pure code: no server, no SQLite. Input is a snapshot of the data dir taken
while nothing was running (every file in it counts as durable) and the
journal the writer recorded afterwards (``seglake/writer/fileio.py``: every
create, write, truncate, fsync, directory fsync, mkdir, rename and unlink of the
writer and of SQLite's own files, in the order they completed).

The model (pessimistic, the way POSIX allows, not the way ext4 happens to
behave):
- file data: what the last fsync (or fdatasync) of a file covered is on
  disk; every later
  write or truncate of that file is independently kept, dropped, or (for a
  write) kept in part — a torn tail: a prefix of its bytes. Applying a
  subset in order is the same as the writes reaching the disk in any order;
- directory entries: a name created or removed since its directory's last
  fsync may or may not be there (a new directory too, with all below it);
- a rename is atomic: while neither name's directory has been fsynced since,
  both names are old or both are new (never neither); once one side is
  fsynced the other one is decided on its own, as POSIX allows;
- a cut at operation ``k`` means operations ``[0, k)`` had completed.

The cases that matter since segment format 2 (no manifest or record file
per version, no directory fsync on the acknowledgement path):
- **records appended but not flushed**: a batch's manifest and metadata
  records (``segment.append`` writes of typed records, see
  ``unflushed_records``) after the segment's last flush are kept, dropped
  or torn like any write; the WAL commit that would make them count comes
  only after the flush;
- a segment's header and the segments directory entry (fsynced when a
  segment is created, before any record is appended), SQLite's WAL and
  ``meta.db``, footers written when a segment is sealed.

``CrashState`` records what it chose (so a failure can be replayed from the
seed) and how many writes it tore.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

# Files that never matter after a power cut: SQLite rebuilds -shm from the
# WAL; sockets, locks and the listen address belong to a running server.
VOLATILE_SUFFIXES = ("-shm", ".sock")
VOLATILE_NAMES = (".seglake.lock", ".seglake-writer.lock", ".seglake-listen")


@dataclass(frozen=True)
class Op:
    kind: str
    site: str
    path: str
    args: tuple[Any, ...]
    end: int  # journal byte offset just after this record


def read_journal(path: Path) -> list[Op]:
    """Every complete record; a torn last record (the writer was killed while
    appending it) is ignored."""
    data = path.read_bytes()
    ops: list[Op] = []
    pos = 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + n > len(data):
            break
        rec = msgpack.unpackb(data[pos + 4 : pos + 4 + n], raw=False)
        pos += 4 + n
        ops.append(Op(rec[0], rec[1], rec[2], tuple(rec[3:]), pos))
    return ops


def ops_before(ops: list[Op], journal_offset: int) -> int:
    """How many operations had completed when the journal was this long."""
    lo, hi = 0, len(ops)
    while lo < hi:
        mid = (lo + hi) // 2
        if ops[mid].end <= journal_offset:
            lo = mid + 1
        else:
            hi = mid
    return lo


class _Inode:
    __slots__ = ("durable", "pending", "volatile")

    def __init__(self, content: bytes = b"") -> None:
        self.durable = bytearray(content)
        self.volatile = bytearray(content)
        self.pending: list[tuple[str, int, bytes]] = []  # ("w", off, data) | ("t", size, b"")


def _apply_write(buf: bytearray, offset: int, data: bytes) -> None:
    if len(buf) < offset:
        buf.extend(b"\0" * (offset - len(buf)))
    buf[offset : offset + len(data)] = data


def _apply_truncate(buf: bytearray, size: int) -> None:
    if size < len(buf):
        del buf[size:]
    else:
        buf.extend(b"\0" * (size - len(buf)))


@dataclass
class CrashState:
    cut: int
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content
    dirs: set[str] = field(default_factory=set)  # relative paths
    torn_writes: int = 0
    dropped_writes: int = 0
    dropped_entries: int = 0

    def materialize(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.dirs):
            (target / d).mkdir(parents=True, exist_ok=True)
        for rel, content in self.files.items():
            p = target / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)


class FsModel:
    """The writer's view of the data dir (volatile) next to what is durable."""

    def __init__(self, root: Path, snapshot: Path) -> None:
        self.root = os.path.abspath(root)
        self.inodes: list[_Inode] = []
        self.vol_entries: dict[str, int] = {}  # path -> inode index
        self.dur_entries: dict[str, int] = {}
        self.vol_dirs: set[str] = set()
        self.dur_dirs: set[str] = set()
        # Both names of a rename share one decision (see the module docstring).
        self.rename_group: dict[str, int] = {}
        self._renames = 0
        for dirpath, dirnames, filenames in os.walk(snapshot):
            rel_dir = os.path.relpath(dirpath, snapshot)
            for d in dirnames:
                p = self._abs(os.path.join(rel_dir, d))
                self.vol_dirs.add(p)
                self.dur_dirs.add(p)
            for f in filenames:
                if f.endswith(VOLATILE_SUFFIXES) or f in VOLATILE_NAMES:
                    continue
                src = os.path.join(dirpath, f)
                if not os.path.isfile(src):
                    continue
                with open(src, "rb") as fh:
                    ino = self._new(fh.read())
                p = self._abs(os.path.join(rel_dir, f))
                self.vol_entries[p] = ino
                self.dur_entries[p] = ino

    def _abs(self, rel: str) -> str:
        return os.path.normpath(os.path.join(self.root, rel))

    def _new(self, content: bytes = b"") -> int:
        self.inodes.append(_Inode(content))
        return len(self.inodes) - 1

    def _inode(self, path: str) -> _Inode | None:
        ino = self.vol_entries.get(path)
        return None if ino is None else self.inodes[ino]

    def apply(self, op: Op) -> None:
        path = op.path
        if not path.startswith(self.root):
            return
        if op.kind == "create":
            if path not in self.vol_entries:
                self.vol_entries[path] = self._new()
        elif op.kind == "write":
            node = self._inode(path)
            if node is not None:
                offset, data = int(op.args[0]), bytes(op.args[1])
                _apply_write(node.volatile, offset, data)
                node.pending.append(("w", offset, data))
        elif op.kind == "truncate":
            node = self._inode(path)
            if node is not None:
                size = int(op.args[0])
                _apply_truncate(node.volatile, size)
                node.pending.append(("t", size, b""))
        elif op.kind == "fsync":
            node = self._inode(path)
            if node is not None:
                node.durable = bytearray(node.volatile)
                node.pending.clear()
        elif op.kind == "dirsync":
            for p in list(self.vol_entries) + list(self.dur_entries):
                if os.path.dirname(p) == path:
                    if p in self.vol_entries:
                        self.dur_entries[p] = self.vol_entries[p]
                    else:
                        self.dur_entries.pop(p, None)
            for d in list(self.vol_dirs | self.dur_dirs):
                if os.path.dirname(d) == path:
                    if d in self.vol_dirs:
                        self.dur_dirs.add(d)
                    else:
                        self.dur_dirs.discard(d)
        elif op.kind == "unlink":
            self.vol_entries.pop(path, None)
        elif op.kind == "mkdir":
            self.vol_dirs.add(path)
        elif op.kind == "rename":
            dst = os.path.normpath(str(op.args[0]))
            ino = self.vol_entries.pop(path, None)
            if ino is not None:
                self.vol_entries[dst] = ino
                self._renames += 1
                self.rename_group[path] = self.rename_group[dst] = self._renames
        else:
            raise ValueError(f"unknown journal operation {op.kind!r}")

    def crash(self, rng: random.Random, cut: int, *, p_keep: float, p_torn: float) -> CrashState:
        """One disk state after a power cut now (see the module docstring)."""
        state = CrashState(cut)
        dirs: set[str] = set()
        for d in self.vol_dirs | self.dur_dirs:
            if (d in self.vol_dirs and d in self.dur_dirs) or rng.random() < p_keep:
                dirs.add(d)
            else:
                state.dropped_entries += 1

        def reachable(p: str) -> bool:
            parent = os.path.dirname(p)
            while parent != self.root and len(parent) > len(self.root):
                if parent not in dirs:
                    return False
                parent = os.path.dirname(parent)
            return True

        coins: dict[int, bool] = {}
        for p in sorted(set(self.vol_entries) | set(self.dur_entries)):
            vol, dur = self.vol_entries.get(p), self.dur_entries.get(p)
            ino = vol
            if vol != dur:
                group = self.rename_group.get(p)
                keep = rng.random() < p_keep
                if group is not None:
                    keep = coins.setdefault(group, keep)
                if keep:
                    ino = vol
                else:
                    ino = dur
                    state.dropped_entries += 1
            if ino is None or not reachable(p):
                continue
            node = self.inodes[ino]
            content = bytearray(node.durable)
            for kind, a, data in node.pending:
                x = rng.random()
                if kind == "t":
                    if x < p_keep:
                        _apply_truncate(content, a)
                    continue
                if x < p_keep:
                    _apply_write(content, a, data)
                elif x < p_keep + p_torn and len(data) > 1:
                    _apply_write(content, a, data[: rng.randrange(1, len(data))])
                    state.torn_writes += 1
                else:
                    state.dropped_writes += 1
            state.files[os.path.relpath(p, self.root)] = bytes(content)
        state.dirs = {os.path.relpath(d, self.root) for d in dirs}
        return state


def crash_states(
    root: Path,
    snapshot: Path,
    ops: list[Op],
    cuts: list[int],
    rng: random.Random,
    *,
    p_keep: float = 0.5,
    p_torn: float = 0.25,
) -> Iterator[CrashState]:
    """One crash state per cut (ascending), replaying the journal once."""
    model = FsModel(root, snapshot)
    done = 0
    for cut in sorted(cuts):
        while done < cut:
            model.apply(ops[done])
            done += 1
        yield model.crash(rng, cut, p_keep=p_keep, p_torn=p_torn)


# Byte 36 of a version-2 segment record's header is its type (0 = chunk).
_TYPE_AT = 36


def unflushed_records(ops: list[Op], cut: int) -> int:
    """How many manifest/metadata records (non-chunk ``segment.append``
    writes) lie, at a cut before operation ``cut``, after the last flush of
    their segment: the "appended but not flushed" state of a batch."""
    pending: dict[str, int] = {}
    for op in ops[:cut]:
        if op.kind == "write" and op.site == "segment.append":
            data = op.args[1] if len(op.args) > 1 else b""
            if isinstance(data, bytes) and len(data) > _TYPE_AT and data[_TYPE_AT] != 0:
                pending[op.path] = pending.get(op.path, 0) + 1
        elif op.kind == "fsync" and op.path in pending:
            pending[op.path] = 0
    return sum(pending.values())


def copy_snapshot(src: Path, dst: Path) -> None:
    """Copy a stopped server's data dir, leaving out what a crash discards."""
    shutil.copytree(
        src,
        dst,
        ignore=lambda _d, names: [
            n for n in names if n.endswith(VOLATILE_SUFFIXES) or n in VOLATILE_NAMES
        ],
    )
