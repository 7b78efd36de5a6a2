"""Maintenance mode, fsck and scrub against the real server (SPEC §7, §8)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from seglake.audit.replay import replay
from seglake.format.manifest import decode_manifest
from seglake.format.segment import RECORD_HEADER_SIZE
from tests.e2e._helpers import cli as shared_cli
from tests.e2e._helpers import cli_json as shared_cli_json
from tests.e2e._helpers import db_rows, flip_chunk_byte
from tests.harness import SeglakeServer, server_fixture

ROOT = Path(__file__).resolve().parents[2]
SEED_BINARY = ROOT / "build" / "seglake"
CLI_TIMEOUT_S = 60


# Tighter than the shared default: these commands run on small stores.
cli = functools.partial(shared_cli, timeout_s=CLI_TIMEOUT_S)
cli_json = functools.partial(shared_cli_json, timeout_s=CLI_TIMEOUT_S)


def error_code(exc: ClientError) -> tuple[str, int, dict[str, str]]:
    meta = exc.response["ResponseMetadata"]
    return exc.response["Error"]["Code"], meta["HTTPStatusCode"], meta["HTTPHeaders"]


msrv = server_fixture()


# ---- maintenance mode ------------------------------------------------------------


def test_quiesce_refuses_writes_keeps_reads(msrv: SeglakeServer) -> None:
    s3 = msrv.s3()
    s3.create_bucket(Bucket="quiet")
    s3.put_object(Bucket="quiet", Key="k", Body=b"before")

    out = cli(msrv.data_dir, "maintenance", "enable")
    assert out.returncode == 0, out.stderr
    assert "quiesced" in out.stdout
    status = msrv.status()["store"]["maintenance"]
    assert status["state"] == "quiesced"
    assert status["write_in_flight"] == 0
    assert [h["to"] for h in status["history"][-2:]] == ["entering", "quiesced"]

    writes = [
        lambda: s3.put_object(Bucket="quiet", Key="k2", Body=b"x"),
        lambda: s3.put_object(Bucket="quiet", Key="big", Body=os.urandom(5 * 1024 * 1024)),
        lambda: s3.delete_object(Bucket="quiet", Key="k"),
        lambda: s3.create_bucket(Bucket="quiet2"),
        lambda: s3.create_multipart_upload(Bucket="quiet", Key="mpu"),
        lambda: s3.copy_object(Bucket="quiet", Key="c", CopySource={"Bucket": "quiet", "Key": "k"}),
    ]
    for write in writes:
        with pytest.raises(ClientError) as info:
            write()
        code, http, headers = error_code(info.value)
        assert (code, http) == ("MaintenanceMode", 503)
        assert headers.get("retry-after")

    assert s3.get_object(Bucket="quiet", Key="k")["Body"].read() == b"before"
    assert s3.head_object(Bucket="quiet", Key="k")["ContentLength"] == 6
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="quiet")["Contents"]] == ["k"]

    out = cli(msrv.data_dir, "maintenance", "status", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "quiesced"

    out = cli(msrv.data_dir, "maintenance", "disable")
    assert out.returncode == 0, out.stderr
    assert msrv.status()["store"]["maintenance"]["state"] == "off"
    s3.put_object(Bucket="quiet", Key="k2", Body=b"after")
    s3.delete_object(Bucket="quiet", Key="k")
    assert s3.get_object(Bucket="quiet", Key="k2")["Body"].read() == b"after"


def test_put_in_flight_is_never_lost(msrv: SeglakeServer) -> None:
    s3 = msrv.s3()
    s3.create_bucket(Bucket="inflight")
    body = os.urandom(48 * 1024 * 1024)
    outcome: dict[str, Any] = {}

    def put() -> None:
        try:
            outcome["etag"] = s3.put_object(Bucket="inflight", Key="big", Body=body)["ETag"]
        except ClientError as exc:
            outcome["error"] = error_code(exc)

    t = threading.Thread(target=put)
    t.start()
    try:
        out = cli(msrv.data_dir, "maintenance", "enable", "--wait-timeout", "30")
        assert out.returncode == 0, out.stderr
    finally:
        t.join(60)
    assert not t.is_alive()
    assert msrv.status()["store"]["maintenance"]["state"] == "quiesced"
    assert cli(msrv.data_dir, "maintenance", "disable").returncode == 0
    if "etag" in outcome:
        got = s3.get_object(Bucket="inflight", Key="big")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    else:
        assert outcome["error"][:2] == ("MaintenanceMode", 503)
        with pytest.raises(ClientError) as info:
            s3.head_object(Bucket="inflight", Key="big")
        assert error_code(info.value)[1] == 404


def test_state_survives_restart_and_seed_spelling(msrv: SeglakeServer) -> None:
    assert SEED_BINARY.exists(), "run `make build` first"
    seed = [str(SEED_BINARY), "-mode", "maintenance", "-data-dir", str(msrv.data_dir)]
    out = subprocess.run(
        [*seed, "-maintenance-action", "enable"], capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    msrv.stop()

    offline = cli(msrv.data_dir, "maintenance", "status")
    assert offline.returncode == 0, offline.stderr
    assert "not running" in offline.stdout and "quiesced" in offline.stdout
    rc, doc = cli_json(msrv.data_dir, "maintenance", "status")
    assert rc == 0 and doc["server"] == "not running" and doc["state"] == "quiesced"

    # The same data dir under a new server (the module fixture's one stays stopped).
    with SeglakeServer(msrv.data_dir, frontends=1) as again:
        maint = again.status()["store"]["maintenance"]
        assert maint["state"] == "quiesced"
        s3 = again.s3()
        assert s3.get_object(Bucket="quiet", Key="k2")["Body"].read() == b"after"
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket="quiet", Key="again", Body=b"x")
        assert error_code(info.value)[:2] == ("MaintenanceMode", 503)
        out = subprocess.run(
            [*seed, "-maintenance-action", "disable", "-json"], capture_output=True, text=True,
            timeout=CLI_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["state"] == "off"
        s3.put_object(Bucket="quiet", Key="again", Body=b"x")


# ---- fsck and scrub ----------------------------------------------------------------


def _uid_and_manifest(data_dir: Path, bucket: str, key: str) -> tuple[str, bytes]:
    rows = db_rows(
        data_dir,
        "SELECT v.uid, v.manifest FROM current c JOIN versions v ON v.id = c.version "
        "WHERE c.bucket = ? AND c.key = ?",
        (bucket, key),
    )
    return str(rows[0][0]), bytes(rows[0][1])


def test_fsck_and_scrub(tmp_path: Path) -> None:
    with SeglakeServer(tmp_path / "data", frontends=1) as srv:
        data = srv.data_dir
        s3 = srv.s3()
        s3.create_bucket(Bucket="chk")
        bodies = {
            "a": b"alpha" * 100,
            "b": os.urandom(5 * 1024 * 1024),
            "c": os.urandom(300_000),
        }
        for key, body in bodies.items():
            s3.put_object(Bucket="chk", Key=key, Body=body)
        s3.delete_object(Bucket="chk", Key="a")  # a delete marker on top of "a"

        rc, doc = cli_json(data, "fsck", "--all-manifests")
        assert rc == 0 and doc["clean"], doc
        assert doc["versions"] == 4 and doc["recorded"] is True
        assert db_rows(data, "SELECT status FROM ops_runs WHERE mode = 'fsck'") == [("ok",)]

        # A manifest record that no longer verifies (rebuild-index could not
        # restore the version) is an error naming the version.
        uid, _ = _uid_and_manifest(data, "chk", "c")
        at = replay(data / "objects" / "segments").manifest_copies[uid][0]
        seg = data / "objects" / "segments" / f"{at.segment_id:016x}.seg"
        flip_at = at.offset + RECORD_HEADER_SIZE + 5
        with open(seg, "r+b") as f:
            f.seek(flip_at)
            saved = f.read(1)
            f.seek(flip_at)
            f.write(bytes([saved[0] ^ 0xFF]))
        out = cli(data, "fsck")
        assert out.returncode == 1 and "1 error(s)" in out.stdout
        rc, doc = cli_json(data, "fsck")
        assert rc == 1 and [e["kind"] for e in doc["errors"]] == ["manifest-record-missing"]
        assert doc["errors"][0]["key"] == "c" and uid in doc["errors"][0]["detail"]
        with open(seg, "r+b") as f:
            f.seek(flip_at)
            f.write(saved)
        assert cli(data, "fsck").returncode == 0

        # One flipped byte inside one chunk of "b": scrub names exactly that version.
        uid_b, manifest_b = _uid_and_manifest(data, "chk", "b")
        chunk = decode_manifest(manifest_b, path="b").chunks[1]
        seg = flip_chunk_byte(data, chunk, 17)
        rc, doc = cli_json(data, "scrub")
        assert rc == 1
        assert [(d["bucket"], d["key"], d["uid"], d["chunk"]) for d in doc["damaged"]] == [
            ("chk", "b", uid_b, 1)
        ]
        assert doc["marked"] == [uid_b]
        assert db_rows(data, "SELECT state FROM versions WHERE uid = ?", (uid_b,)) == [("DAMAGED",)]
        try:
            got = s3.get_object(Bucket="chk", Key="b")["Body"].read()
        except ClientError as exc:
            assert error_code(exc)[:2] == ("ObjectDamaged", 500)
        except Exception:  # a cut connection is an acceptable failure too
            pass
        else:
            pytest.fail(f"GET of a damaged object returned {len(got)} bytes")
        assert s3.get_object(Bucket="chk", Key="c")["Body"].read() == bodies["c"]
        assert (
            s3.get_object(Bucket="chk", Key="a", VersionId=_first_version(s3, "a"))["Body"].read()
            == bodies["a"]
        )

        # A truncated segment: fsck fails.
        size = seg.stat().st_size
        os.truncate(seg, size - 1000)
        rc, doc = cli_json(data, "fsck")
        assert rc == 1
        kinds = {e["kind"] for e in doc["errors"]}
        assert kinds & {"segment-truncated", "chunk-out-of-range", "segment-footer"}


def _first_version(s3: Any, key: str) -> str:
    versions = s3.list_object_versions(Bucket="chk", Prefix=key)["Versions"]
    return str(versions[0]["VersionId"])


def test_offline_fsck_not_recorded(tmp_path: Path) -> None:
    srv = SeglakeServer(tmp_path / "data", frontends=1)
    with srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="off")
        s3.put_object(Bucket="off", Key="k", Body=b"v")
    rc, doc = cli_json(srv.data_dir, "fsck")
    assert rc == 0 and doc["recorded"] is False
    assert "no server" in doc["record_note"]
