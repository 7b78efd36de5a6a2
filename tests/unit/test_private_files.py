"""private_files: what counts as exposed, and what the repair changes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from seglake.private_files import exposed, make_private, use_private_umask


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_exposed_and_repair_keep_owner_bits(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "objects" / "ab").mkdir(parents=True)
    root.chmod(0o755)
    (root / "objects").chmod(0o700)
    (root / "objects" / "ab").chmod(0o750)
    seg = root / "a.seg"
    seg.write_bytes(b"x")
    seg.chmod(0o644)
    ro = root / "objects" / "ab" / "m"
    ro.write_bytes(b"y")
    ro.chmod(0o440)
    fine = root / "meta.db"
    fine.write_bytes(b"z")
    fine.chmod(0o600)
    (root / "link").symlink_to("/etc/passwd")

    assert dict(exposed(root, deep=False)) == {root: 0o755, seg: 0o644}
    assert dict(exposed(root)) == {
        root: 0o755,
        seg: 0o644,
        root / "objects" / "ab": 0o750,
        ro: 0o440,
    }

    changed = {p: (old, new) for p, old, new in make_private(root)}
    assert changed == {
        root: (0o755, 0o700), seg: (0o644, 0o600),
        root / "objects" / "ab": (0o750, 0o700), ro: (0o440, 0o400),
    }  # fmt: skip
    assert exposed(root) == [] and mode(ro) == 0o400 and mode(fine) == 0o600
    assert os.readlink(root / "link") == "/etc/passwd"  # left alone, never followed


def test_private_umask_applies_to_new_files(tmp_path: Path) -> None:
    old = use_private_umask()
    try:
        (tmp_path / "f").write_bytes(b"x")
        (tmp_path / "d").mkdir()
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o600 and mode(tmp_path / "d") == 0o700
