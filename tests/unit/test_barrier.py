"""When the writer trusts one syncfs for a batch's manifests (writer/barrier.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seglake.writer import barrier

# Real lines of /proc/self/mountinfo (the shape the kernel documents).
MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
31 27 8:17 / /srv/seglake rw,noatime shared:9 master:2 - xfs /dev/sdb1 rw,attr2
40 27 0:45 / /mnt/nfs rw - nfs4 server:/export rw,vers=4.2
"""


def test_fs_type_matches_the_device_number() -> None:
    assert barrier.fs_type(os.makedev(254, 0), MOUNTINFO) == "ext4"
    # optional fields (shared:9 master:2) before the separator
    assert barrier.fs_type(os.makedev(8, 17), MOUNTINFO) == "xfs"
    assert barrier.fs_type(os.makedev(0, 23), MOUNTINFO) == "tmpfs"
    assert barrier.fs_type(os.makedev(9, 9), MOUNTINFO) is None
    assert barrier.fs_type(os.makedev(254, 0), "") is None
    assert barrier.fs_type(os.makedev(254, 0), "garbage\n27 1 254:0 /\n") is None


@pytest.mark.parametrize(
    ("release", "expected"),
    [("6.18.44-fc-v657", (6, 18)), ("5.8.0", (5, 8)), ("4.19", (4, 19)), ("x", None)],
)
def test_kernel_version(release: str, expected: tuple[int, int] | None) -> None:
    assert barrier.kernel_version(release) == expected


@pytest.mark.parametrize(
    ("requested", "release", "fstype", "same", "syncfs", "why"),
    [
        ("auto", "6.1.0", "ext4", True, True, "syncfs for batches"),
        ("auto", "5.8.0", "xfs", True, True, "syncfs for batches"),
        ("auto", "6.1.0", "btrfs", True, True, "syncfs for batches"),
        ("fsync", "6.1.0", "ext4", True, False, "--sync-mode fsync"),
        # before 5.8, syncfs returns 0 after a failed writeback
        ("auto", "5.7.19", "ext4", True, False, "may hide syncfs errors"),
        ("auto", "garbage", "ext4", True, False, "may hide syncfs errors"),
        ("auto", "6.1.0", "ext4", False, False, "spans file systems"),
        ("auto", "6.1.0", "nfs4", True, False, "not trusted on nfs4"),
        ("auto", "6.1.0", "tmpfs", True, False, "not trusted on tmpfs"),
        ("auto", "6.1.0", None, True, False, "not trusted on unknown"),
    ],
)
def test_decide(
    requested: str, release: str, fstype: str | None, same: bool, syncfs: bool, why: str
) -> None:
    choice = barrier.decide(requested, release, fstype, same)
    assert choice.syncfs is syncfs
    assert why in choice.reason


def test_choose_reads_this_machine(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    choice = barrier.choose("fsync", tmp_path, [tmp_path / "a"])
    assert choice == barrier.SyncChoice(False, "per-file fsync (--sync-mode fsync)")
    auto = barrier.choose("auto", tmp_path, [tmp_path / "a"])
    assert auto.reason  # whatever this machine allows, it says why
