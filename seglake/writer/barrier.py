"""How a batch's manifests are made durable: an fsync each, or one syncfs.

A group commit of many small PUTs creates one manifest file per version
(SPEC §5). An fsync per file costs a disk cache flush and, on a VM, a round
of device notifications each; on the development machine the writer alone
did ~1,250 puts/s at c=32 with ~280 µs of kernel time per put that way, and
~1,500–1,800 puts/s at ~170–195 µs with one ``syncfs(2)`` per batch instead.

``syncfs`` is used only where it is known to be a barrier with honest error
reporting:

- Linux 5.8 or later: older kernels return success from ``syncfs`` even
  when writeback of a file failed;
- ext4, XFS or btrfs, whose ``sync_fs`` writes back every dirty inode and
  then flushes the device cache (a journal or log commit where they keep
  one). Other file systems (network, FUSE, tmpfs) keep per-file fsyncs;
- segments, manifests and records on the same file system as the data dir,
  so one call covers them all.

Directory entries are still fsynced one directory at a time after the
``syncfs``: on ext4 without a journal, ``syncfs`` writes directory blocks
back *after* its cache flush. The choice is made once at start-up and
logged. ``--sync-mode fsync`` forces per-file fsyncs everywhere: for a file
system shared with other heavy writers, whose dirty data ``syncfs`` would
make every large batch wait for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SYNCFS_FILESYSTEMS = frozenset({"ext4", "xfs", "btrfs"})
MIN_KERNEL = (5, 8)
# Fewer manifests than this in a batch are fsynced one by one: for a lone
# PUT the per-file path measured no slower, and it does not make a quiet
# server's commit wait for other files' dirty data.
SYNCFS_MIN_MANIFESTS = 4
MODES = ("auto", "fsync")

_RELEASE = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True)
class SyncChoice:
    syncfs: bool
    reason: str


def kernel_version(release: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a ``uname -r`` string, or None if unreadable."""
    m = _RELEASE.match(release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def fs_type(dev: int, mountinfo: str) -> str | None:
    """The file-system type mounted from device ``dev`` (``st_dev``), per
    ``/proc/self/mountinfo``; None when no line names that device."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or fields[2] != want or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if sep + 1 < len(fields):
            return fields[sep + 1]
    return None


def decide(requested: str, release: str, fstype: str | None, same_device: bool) -> SyncChoice:
    """Pure: whether batches may use ``syncfs``, and why (for the log)."""
    if requested == "fsync":
        return SyncChoice(False, "per-file fsync (--sync-mode fsync)")
    version = kernel_version(release)
    if version is None or version < MIN_KERNEL:
        return SyncChoice(False, f"per-file fsync: kernel {release} may hide syncfs errors")
    if not same_device:
        return SyncChoice(False, "per-file fsync: the data dir spans file systems")
    if fstype not in SYNCFS_FILESYSTEMS:
        return SyncChoice(False, f"per-file fsync: syncfs not trusted on {fstype or 'unknown'}")
    return SyncChoice(
        True, f"syncfs for batches of {SYNCFS_MIN_MANIFESTS}+ manifests ({fstype}, {release})"
    )


def choose(requested: str, data_dir: Path, paths: list[Path]) -> SyncChoice:
    """``decide`` for this machine: the data dir's device and file system,
    and whether every path that holds durable state is on it."""
    dev = os.stat(data_dir).st_dev
    same = all(os.stat(p).st_dev == dev for p in paths)
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        mountinfo = ""
    return decide(requested, os.uname().release, fs_type(dev, mountinfo), same)
