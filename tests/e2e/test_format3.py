"""Segment format 3 on a store written in format 2.

``tests/fixtures/v2-store.tar.gz`` was written by main's code before format
3 (``tests/fixtures/make_v2_store.py``): one sealed and one open version-2
segment. The current server opens it without an upgrade step, serves every
object, writes new data into a version-3 segment (and says so in
``settings['store_format']``), and fsck and ``rebuild-index --dry-run``
agree with the database afterwards.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from seglake.audit.replay import replay
from seglake.format import segment as segfmt
from tests.e2e._helpers import cli, cli_json, db_rows
from tests.harness import SeglakeServer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v2-store.tar.gz"


def _unpack(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(data, filter="data")
    return data


def _versions(data: Path) -> dict[str, int]:
    out = {}
    for path in sorted((data / "objects" / "segments").iterdir()):
        with open(path, "rb") as f:
            out[path.name] = segfmt.decode_header(f.read(32), path=str(path)).version
    return out


def test_fixture_is_a_format_2_store(tmp_path: Path) -> None:
    data = _unpack(tmp_path)
    assert set(_versions(data).values()) == {2}
    assert db_rows(data, "SELECT value FROM settings WHERE name = 'store_format'") == []
    # Its log replays as it is (the database is schema 7: only the writer
    # migrates it, so the offline checks run after the server opened it).
    log = replay(data / "objects" / "segments")
    assert log.problems == [] and len(log.manifests) == 13 and not log.vmeta, log.problems


def test_a_format_2_store_opens_reads_and_grows_in_format_3(tmp_path: Path) -> None:
    data = _unpack(tmp_path)
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        for i in range(2, 5):
            got = s3.get_object(Bucket="versioned", Key=f"k{i}")["Body"].read()
            assert got == f"v2 body {i}".encode() * (i + 1)
        assert s3.get_object(Bucket="versioned", Key="k0")["Body"].read() == b"second version of k0"
        assert len(s3.list_object_versions(Bucket="versioned", Prefix="k0")["Versions"]) == 2
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="versioned", Key="k1")
        big = s3.get_object(Bucket="versioned", Key="big")
        assert big["Body"].read() == bytes(range(256)) * 4000
        assert big["ContentType"] == "application/x-test" and big["Metadata"] == {"color": "blue"}
        assert s3.get_object(Bucket="plain", Key="mpu")["Body"].read() == b"p" * 100
        assert s3.get_object(Bucket="plain", Key="n")["Body"].read() == b"null two"
        assert "Statement" in json.loads(s3.get_bucket_policy(Bucket="versioned")["Policy"])
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"versioned", "plain"}
        # Reading alone marks nothing: the store is still readable by format-2 code.
        assert db_rows(data, "SELECT value FROM settings WHERE name = 'store_format'") == []
        s3.put_object(Bucket="versioned", Key="new", Body=b"format 3")
        s3.delete_object(Bucket="versioned", Key="k2")
        s3.put_object(Bucket="plain", Key="n", Body=b"null three")
        assert s3.get_object(Bucket="versioned", Key="new")["Body"].read() == b"format 3"
        assert s3.get_object(Bucket="plain", Key="n")["Body"].read() == b"null three"
        assert srv.stop() == 0
    versions = _versions(data)
    # The old segments keep their version (the open one was sealed as
    # version 2 by recovery); new records went to a version-3 segment.
    assert versions["0000000000000001.seg"] == 2 and versions["0000000000000002.seg"] == 2
    assert 3 in versions.values(), versions
    assert db_rows(data, "SELECT value FROM settings WHERE name = 'store_format'") == [("3",)]
    code, fsck = cli_json(data, "fsck", "--all-manifests")
    assert code == 0 and fsck["clean"], fsck["errors"]
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, check
    # A full rebuild from the mixed log serves the same objects.
    moved = cli(data, "rebuild-index", "--force")
    assert moved.returncode == 0, moved.stderr
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        assert s3.get_object(Bucket="versioned", Key="new")["Body"].read() == b"format 3"
        assert s3.get_object(Bucket="versioned", Key="big")["Body"].read() == (
            bytes(range(256)) * 4000
        )
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="versioned", Key="k2")
        assert srv.stop() == 0
