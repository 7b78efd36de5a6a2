"""What the disk alone allows: the file-system ceilings of the write scenarios.

The HTTP ceiling (``benchmarks.ceiling``) says how fast Hypercorn can go with
nothing behind it; these two say how fast the disk can go with nothing in
front of it, measured in the same run, in the same directory as the
server's data:

- ``bulk_write``: fresh data appended to one file in 4 MiB ``pwrite`` calls
  (as the writer appends chunks), fsynced every 64 MiB (one object's commit)
  — the most a 64 MiB PUT scenario could reach, before any HTTP, hashing or
  IPC. On a VM whose freed memory goes back to the host, new page-cache
  pages are what this pays for, and the figure drifts with it.
- ``lone_commit``: the file-system work of one lone PUT's barrier, serially
  (SPEC §4): 4 KiB appended to a segment file and fsynced, a new ~300-byte
  manifest created, written and fsynced, its directory fsynced, and one WAL
  append of 12 pages fdatasynced — the floor under a c=1 PUT's latency.

Both are pure measurements with no Seglake code in the loop.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
PIECE = 4 * MiB
OBJECT = 64 * MiB
WAL_FRAMES = 12  # what one lone PUT's transaction appends to the WAL (strace)


@dataclass(frozen=True)
class DiskCeiling:
    bulk_mb_per_s: float
    lone_commit_p50_ms: float
    lone_commit_p99_ms: float


def bulk_write(directory: Path, total: int = 256 * MiB) -> float:
    """MB/s (10⁶ bytes) for fresh data: 4 MiB pwrites, fsync per 64 MiB."""
    path = directory / "disk-ceiling.bulk"
    buf = os.urandom(PIECE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        started = time.perf_counter()
        offset = 0
        while offset < total:
            os.pwrite(fd, buf, offset)
            offset += PIECE
            if offset % OBJECT == 0:
                os.fsync(fd)
        os.fsync(fd)
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        path.unlink()
    return total / elapsed / 1e6


def lone_commit(directory: Path, rounds: int = 300) -> tuple[float, float]:
    """p50 and p99 in ms of one lone PUT's serial file-system barrier."""
    root = directory / "disk-ceiling.lone"
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    seg = os.open(root / "segment", os.O_RDWR | os.O_CREAT, 0o644)
    wal = os.open(root / "wal", os.O_RDWR | os.O_CREAT, 0o644)
    record, manifest, page = os.urandom(4096 + 36), os.urandom(300), os.urandom(4096 + 24)
    times: list[float] = []
    try:
        seg_off = wal_off = 0
        for i in range(rounds):
            started = time.perf_counter()
            os.pwrite(seg, record, seg_off)
            seg_off += len(record)
            os.fsync(seg)
            fd = os.open(manifests / f"{i:08d}.mf", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.pwrite(fd, manifest, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            dfd = os.open(manifests, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            for _ in range(WAL_FRAMES):
                os.pwrite(wal, page, wal_off)
                wal_off += len(page)
            os.fdatasync(wal)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        # The files stay until the caller removes ``directory``, after the
        # last scenario. On ext4 without a journal (this VM's root file
        # system) a new inode is not taken from those freed in the last
        # ~60 s: each create scans past them, and 300 just-deleted manifests
        # made every create in the PUT scenarios after it ~0.6 ms dearer.
        os.close(seg)
        os.close(wal)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def measure(directory: Path) -> DiskCeiling:
    p50, p99 = lone_commit(directory)
    return DiskCeiling(bulk_write(directory), p50, p99)


if __name__ == "__main__":
    import sys
    import tempfile

    parent = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        result = measure(Path(tmp))
    print(
        f"bulk write {result.bulk_mb_per_s:,.0f} MB/s; lone-PUT barrier "
        f"p50 {result.lone_commit_p50_ms:.2f} ms, p99 {result.lone_commit_p99_ms:.2f} ms"
    )
