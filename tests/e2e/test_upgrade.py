"""``seglake upgrade`` on a version-1 store written by main's code before #17.

The store is ``tests/fixtures/v1-store.tar.gz``, written by commit 635d0f0
(``tests/fixtures/make_v1_store.py`` says how): manifest files, record
files, a version-1 segment. The server refuses to start on it and names the
command; the upgrade is refused next to a live server, survives a crash at
either side of its COMMIT, and leaves a store that serves every object
the old one did, passes fsck, and rebuilds to the same database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from seglake.format import segment as segfmt
from tests.e2e._helpers import cli, cli_json, db_rows
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v1-store.tar.gz"
V1_DIRS = ("objects/manifests", "objects/records", "objects/gc-pending")


def _unpack(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(data, filter="data")
    return data


def _upgrade(data: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", "upgrade", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_server_refuses_a_version_1_store_and_names_upgrade(tmp_path: Path) -> None:
    data = _unpack(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "seglake.cli", "serve", "--data-dir", str(data),
         "--addr", "127.0.0.1:0", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "seglake upgrade" in out.stderr and "version-1 store" in out.stderr, out.stderr
    # Offline commands that would start the writer refuse it the same way.
    code, doc = cli_json(data, "fsck")
    assert code == 1 and [e["kind"] for e in doc["errors"]] == ["store-version-1"], doc


@pytest.mark.parametrize(
    "crash",
    [
        None,
        "segment.fsync=kill",  # records appended, nothing committed
        "upgrade.unlink.done=kill@3",  # committed, old files half removed
    ],
)
def test_upgrade_converts_and_the_store_reads_back(tmp_path: Path, crash: str | None) -> None:
    data = _unpack(tmp_path)
    files_before = sum(1 for d in V1_DIRS for p in (data / d).rglob("*") if p.is_file())
    if crash is not None:
        out = _upgrade(data, {"SEGLAKE_FAILPOINTS": crash})
        assert out.returncode != 0, out.stdout
        assert any((data / d).exists() for d in V1_DIRS)
    out = _upgrade(data)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    if crash is None:
        assert doc["manifests"] == 12 and doc["buckets"] == 2 and doc["states"] == 2, doc
        assert doc["files_removed"] == files_before, doc
        assert doc["manifest_files"] == 12 and doc["manifest_files_differing"] == 0, doc
    assert not any((data / d).exists() for d in V1_DIRS)
    again = json.loads(_upgrade(data).stdout)
    assert again["already"] is True
    # The old segment stays version 1, readable; new records went to a
    # segment of the current format (3), and the store says so.
    versions = {}
    for seg in sorted((data / "objects" / "segments").iterdir()):
        with open(seg, "rb") as f:
            versions[seg.name] = segfmt.decode_header(f.read(32), path=str(seg)).version
    assert versions["0000000000000001.seg"] == 1 and 3 in versions.values(), versions
    assert db_rows(data, "SELECT value FROM settings WHERE name = 'store_format'") == [("3",)]

    code, fsck = cli_json(data, "fsck", "--all-manifests")
    assert code == 0 and fsck["clean"], fsck["errors"]
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, check
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        for i in range(1, 5):
            if i == 1:
                continue  # k1 is a delete marker now
            got = s3.get_object(Bucket="versioned", Key=f"k{i}")["Body"].read()
            assert got == f"v1 body {i}".encode() * (i + 1)
        k0 = s3.list_object_versions(Bucket="versioned", Prefix="k0")["Versions"]
        assert len(k0) == 2
        assert s3.get_object(Bucket="versioned", Key="k0")["Body"].read() == b"second version of k0"
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="versioned", Key="k1")
        big = s3.get_object(Bucket="versioned", Key="big")
        assert big["Body"].read() == bytes(range(256)) * 20000
        assert big["ContentType"] == "application/x-test" and big["Metadata"] == {"color": "blue"}
        assert s3.get_object(Bucket="plain", Key="n")["Body"].read() == b"null two"
        assert s3.get_bucket_versioning(Bucket="plain")["Status"] == "Suspended"
        assert "Statement" in json.loads(s3.get_bucket_policy(Bucket="versioned")["Policy"])
        names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert names == {"versioned", "plain"}
        # New writes land in format 3 and the store stays consistent.
        s3.put_object(Bucket="versioned", Key="new", Body=b"format 3")
        s3.delete_object(Bucket="versioned", Key="k2")
        assert s3.get_object(Bucket="versioned", Key="new")["Body"].read() == b"format 3"
        # Refused next to a live server.
        refused = _upgrade(data)
        assert refused.returncode == 1 and "refused" in refused.stderr, refused.stderr
        assert srv.stop() == 0
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, check


def test_upgrade_of_a_format_2_store_is_a_no_op(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        srv.s3().create_bucket(Bucket="fresh-store")
        assert srv.stop() == 0
    out = cli(data, "upgrade")
    assert out.returncode == 0 and "nothing to do" in out.stdout, out.stdout + out.stderr
