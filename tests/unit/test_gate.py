"""The destructive-mode gate without a server (seglake/ops/gate.py).

A live server's side (quiesced / not quiesced / --yes) is covered end to
end in tests/e2e/test_ops_toolbox.py."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from seglake.config import Config
from seglake.ops.gate import GateRefused, offline_lock, require_quiesced_or_yes


def _cfg(tmp_path: Path) -> Config:
    data = tmp_path / "data"
    data.mkdir()
    return Config(data_dir=str(data))


def test_no_server_passes_and_lock_is_exclusive(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    require_quiesced_or_yes(cfg, False, "gc-run")  # nothing runs: offline work may start
    with offline_lock(cfg, "gc-run"):
        pid, _when = cfg.lock_path.read_text().split()
        assert int(pid) == os.getpid()
        with pytest.raises(GateRefused) as err, offline_lock(cfg, "db-reindex"):
            pass
        assert "db-reindex" in str(err.value) and ".seglake.lock" in str(err.value)
    with offline_lock(cfg, "again"):  # released on exit
        pass


def test_locked_but_silent_server_is_never_bypassed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    fd = os.open(cfg.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a server that does not answer
        for yes in (False, True):
            with pytest.raises(GateRefused) as err:
                require_quiesced_or_yes(cfg, yes, "rebuild-index")
            assert "does not answer" in str(err.value)
    finally:
        os.close(fd)
    require_quiesced_or_yes(cfg, False, "rebuild-index")


def test_orphaned_writer_lock_blocks_offline_work(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    fd = os.open(cfg.root / ".seglake-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(GateRefused) as err, offline_lock(cfg, "mpu-gc-run"):
            pass
        assert ".seglake-writer.lock" in str(err.value)
    finally:
        os.close(fd)


def test_missing_data_dir(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path / "nope"))
    with pytest.raises(GateRefused), offline_lock(cfg, "db-reindex"):
        pass
