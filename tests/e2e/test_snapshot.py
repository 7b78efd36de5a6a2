"""seglake snapshot (consistent database copy, usable for restore) and
seglake db-integrity-check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
from botocore.exceptions import ClientError

from tests.harness import SeglakeServer


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_snapshot_restore(tmp_path: Path) -> None:
    data = tmp_path / "data"
    snap = tmp_path / "snap.db"
    before: dict[str, bytes] = {}
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="snap")
        for i in range(20):
            before[f"k{i}"] = os.urandom(1000 + i)
            s3.put_object(Bucket="snap", Key=f"k{i}", Body=before[f"k{i}"])
        s3.delete_object(Bucket="snap", Key="k0")  # a delete marker
        del before["k0"]
        done = cli(data, "snapshot", "--out", str(snap), "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["recorded"] is True and report["path"] == str(snap)
        assert report["counts"]["buckets"] == 1 and report["counts"]["versions"] == 21
        assert json.loads(Path(report["report_path"]).read_text())["sha256"] == report["sha256"]
        assert report["sealed_api_keys"] == 0 and report["master_key_file"] is None
        # Written after the snapshot: not in it.
        s3.put_object(Bucket="snap", Key="after", Body=b"later")
    conn = apsw.Connection(str(snap), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    # Restore: replace the database with the snapshot.
    for suffix in ("", "-wal", "-shm"):
        (data / f"meta.db{suffix}").unlink(missing_ok=True)
    shutil.copy(snap, data / "meta.db")
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        for key, body in before.items():
            assert s3.get_object(Bucket="snap", Key=key)["Body"].read() == body
        for key in ("k0", "after"):
            with pytest.raises(ClientError) as e:
                s3.get_object(Bucket="snap", Key=key)
            assert e.value.response["Error"]["Code"] == "NoSuchKey"
        fsck = cli(data, "fsck", "--json")
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_db_integrity_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        srv.s3().create_bucket(Bucket="integ")
        for i in range(50):
            srv.s3().put_object(Bucket="integ", Key=f"k{i}", Body=b"x" * i)
        ok = cli(data, "db-integrity-check", "--json")
        assert ok.returncode == 0, ok.stderr
        doc = json.loads(ok.stdout)
        assert doc["ok"] is True and doc["messages"] == ["ok"] and doc["recorded"] is True
        assert cli(data, "snapshot", "--out", str(tmp_path / "copy.db")).returncode == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tmp_path / "copy.db", broken / "meta.db")
    with open(broken / "meta.db", "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        for page in range(1, size // 4096):  # every page but the header page
            f.seek(page * 4096 + 8)
            f.write(os.urandom(64))
    bad = cli(broken, "db-integrity-check", "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False and doc["messages"] and doc["recorded"] is False


def test_snapshot_names_the_master_key_it_leaves_out(tmp_path: Path) -> None:
    """API-key secrets are sealed with .seglake-keys.master, which a snapshot
    does not copy: the report and the human output say which file to keep."""
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1):
        made = cli(data, "keys", "create", "--key-access", "backup-reader", "--json")
        assert made.returncode == 0, made.stderr
        master = data / ".seglake-keys.master"
        assert master.exists() and (master.stat().st_mode & 0o777) == 0o600
        done = cli(data, "snapshot", "--out", str(tmp_path / "snap.db"), "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["sealed_api_keys"] == 1 and report["master_key_file"] == str(master)
        human = cli(data, "snapshot", "--out", str(tmp_path / "snap2.db"))
        assert human.returncode == 0, human.stderr
        assert f"1 API key(s) are sealed with {master}, which is not in the snapshot" in (
            human.stdout
        )
    # The snapshot holds the sealed secret, never the master key's bytes.
    assert master.read_bytes() not in (tmp_path / "snap.db").read_bytes()
