"""The ops toolbox end to end: rebuild-index, support-bundle, MPU-GC, the
scheduled scrub, buckets, db-reindex, and the --yes gate, each against the
real multi-process server and the real CLI (both spellings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import apsw
import msgpack
import pytest
from botocore.exceptions import ClientError

from seglake.audit.replay import replay
from seglake.format.segment import RECORD_HEADER_SIZE
from tests.e2e._helpers import db_rows, flip_chunk_byte
from tests.harness import SeglakeServer

CLI_TIMEOUT_S = 120


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def cli_json(data: Path, *args: str) -> dict[str, Any]:
    done = cli(data, *args, "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def dump(db: Path) -> dict[str, Any]:
    """Everything rebuild-index promises to restore, keyed so order does not matter."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        buckets = {
            r[0]: (r[1], r[2], r[3], r[4], r[5])
            for r in conn.execute(
                "SELECT name, created_ns, versioning, policy, lifecycle, cors FROM buckets"
            )
        }
        versions = {
            r[0]: (
                r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                msgpack.unpackb(r[10], raw=False), bytes(r[11]),
            )
            for r in conn.execute(
                "SELECT uid, bucket, key, version_id, size, etag, created_ns, state, "
                "delete_marker, hlc, meta, manifest FROM versions"
            )
        }  # fmt: skip
        current = {
            (r[0], r[1]): r[2]
            for r in conn.execute(
                "SELECT c.bucket, c.key, v.uid FROM current c JOIN versions v ON v.id = c.version"
            )
        }
        segments = {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, state, size FROM segments")
        }
    finally:
        conn.close()
    return {"buckets": buckets, "versions": versions, "current": current, "segments": segments}


def listing(s3: Any, bucket: str) -> tuple[list[Any], list[Any], dict[str, bytes]]:
    versions = s3.list_object_versions(Bucket=bucket)
    vs = sorted(
        (v["Key"], v["VersionId"], v["ETag"], v["IsLatest"]) for v in versions.get("Versions", [])
    )
    ms = sorted(
        (m["Key"], m["VersionId"], m["IsLatest"]) for m in versions.get("DeleteMarkers", [])
    )
    bodies = {}
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        bodies[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return vs, ms, bodies


CORS_RULES = [
    {"ID": "web", "AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 60},
]  # fmt: skip


def populate(s3: Any, data: Path) -> None:
    # enabled bucket: versions, a delete marker, a deleted version, a removed marker
    s3.create_bucket(Bucket="ver")
    s3.put_object(Bucket="ver", Key="k1", Body=b"one-v1")
    s3.put_object(Bucket="ver", Key="k1", Body=b"one-v2")
    s3.delete_object(Bucket="ver", Key="k1")
    v1 = s3.put_object(Bucket="ver", Key="k2", Body=b"two-v1")["VersionId"]
    s3.put_object(Bucket="ver", Key="k2", Body=b"two-v2" * 1000)
    s3.delete_object(Bucket="ver", Key="k2", VersionId=v1)
    s3.put_object(Bucket="ver", Key="k3", Body=b"three")
    marker = s3.delete_object(Bucket="ver", Key="k3")["VersionId"]
    s3.delete_object(Bucket="ver", Key="k3", VersionId=marker)
    s3.copy_object(Bucket="ver", Key="copy", CopySource={"Bucket": "ver", "Key": "k3"})
    up = s3.create_multipart_upload(Bucket="ver", Key="mpu", ContentType="text/x-test")
    part = s3.upload_part(
        Bucket="ver", Key="mpu", UploadId=up["UploadId"], PartNumber=1, Body=b"p" * 1000
    )
    s3.complete_multipart_upload(
        Bucket="ver", Key="mpu", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    s3.put_object(
        Bucket="ver", Key="meta", Body=b"m", Metadata={"a": "b"}, ContentType="text/plain"
    )
    s3.put_bucket_cors(Bucket="ver", CORSConfiguration={"CORSRules": CORS_RULES})
    # unversioned bucket made by the CLI (seed spelling): null overwrite, real delete
    done = cli(data, "-mode", "buckets", "-buckets-action", "create", "-bucket", "unv",
               "-versioning", "unversioned")  # fmt: skip
    assert done.returncode == 0, done.stderr
    s3.put_object(Bucket="unv", Key="a", Body=b"a1")
    s3.put_object(Bucket="unv", Key="a", Body=b"a2")
    s3.put_object(Bucket="unv", Key="b", Body=b"b1")
    s3.delete_object(Bucket="unv", Key="b")
    # Many state changes in one batch (records written in parallel).
    for i in range(12):
        s3.put_object(Bucket="unv", Key=f"many/{i}", Body=b"m")
    deleted = s3.delete_objects(
        Bucket="unv", Delete={"Objects": [{"Key": f"many/{i}"} for i in range(12)]}
    )
    assert len(deleted["Deleted"]) == 12
    # suspended bucket: a versioned write, then null writes
    s3.create_bucket(Bucket="susp")
    s3.put_object(Bucket="susp", Key="x", Body=b"x-versioned")
    s3.put_bucket_versioning(Bucket="susp", VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket="susp", Key="x", Body=b"x-null-1")
    s3.put_object(Bucket="susp", Key="x", Body=b"x-null-2")
    # a bucket that is gone again (its DELETED rows stay, its markers do not)
    s3.create_bucket(Bucket="gone")
    gv = s3.put_object(Bucket="gone", Key="o", Body=b"o")["VersionId"]
    s3.delete_object(Bucket="gone", Key="o")
    s3.delete_object(Bucket="gone", Key="o", VersionId=gv)
    s3.delete_bucket(Bucket="gone")


def test_rebuild_index_restores_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        populate(s3, data)
        before_lists = {b: listing(s3, b) for b in ("ver", "unv", "susp")}
        # Live and not quiesced: refused, with the way out in the message.
        refused = cli(data, "rebuild-index", "--force")
        assert refused.returncode == 1
        assert "maintenance enable" in refused.stderr and "--yes" in refused.stderr
        # Even with --yes it needs the server stopped (it replaces meta.db).
        refused = cli(data, "rebuild-index", "--force", "--yes")
        assert refused.returncode == 1 and "stop the server" in refused.stderr
        # The dry run reads only, so it runs next to the live server.
        check = cli_json(data, "-mode", "rebuild-index", "-dry-run")
        assert check["differences"] == 0 and check["listed"] == [] and check["dry_run"]
    original = dump(data / "meta.db")
    assert original["buckets"].keys() == {"ver", "unv", "susp"}
    assert original["buckets"]["ver"][4] is not None and original["buckets"]["unv"][4] is None
    states = {v[6] for v in original["versions"].values()}
    assert states == {"ACTIVE", "DELETED"}
    assert sum(v[7] for v in original["versions"].values()) >= 1  # delete markers kept

    # An existing database is not overwritten without --force.
    kept = cli(data, "-mode", "rebuild-index")
    assert kept.returncode == 1 and "--force" in kept.stderr
    for suffix in ("", "-wal", "-shm"):
        (data / f"meta.db{suffix}").unlink(missing_ok=True)
    report = cli_json(data, "rebuild-index")
    assert report["problems"] == [] and report["records"] is True
    assert report["recorded"] is True
    rebuilt = dump(data / "meta.db")
    assert rebuilt["buckets"] == original["buckets"]
    assert rebuilt["versions"] == original["versions"]
    assert rebuilt["current"] == original["current"]
    # The run is recorded through the embedded writer, which starts as
    # `seglake serve` does: its recovery seals the segment the stopped server
    # left open (a footer appended, nothing else changes).
    assert rebuilt["segments"].keys() == original["segments"].keys()
    for sid, (state, size) in original["segments"].items():
        if state == "OPEN":
            assert rebuilt["segments"][sid][0] == "SEALED" and rebuilt["segments"][sid][1] > size
        else:
            assert rebuilt["segments"][sid] == (state, size)

    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        for b, lists in before_lists.items():
            assert listing(s3, b) == lists, b
        assert s3.get_object(Bucket="susp", Key="x")["Body"].read() == b"x-null-2"
        assert s3.get_bucket_versioning(Bucket="susp")["Status"] == "Suspended"
        assert s3.get_bucket_cors(Bucket="ver")["CORSRules"] == CORS_RULES
        with pytest.raises(ClientError) as err:
            s3.head_bucket(Bucket="gone")
        assert err.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
        # New writes sort after every restored version.
        new = s3.put_object(Bucket="ver", Key="k1", Body=b"after")["VersionId"]
        latest = [v for v in s3.list_object_versions(Bucket="ver", Prefix="k1")["Versions"]
                  if v["IsLatest"]]  # fmt: skip
        assert latest[0]["VersionId"] == new
        runs = srv.status()
        assert runs is not None


def test_rebuild_index_force_keeps_old_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="keep")
        s3.put_object(Bucket="keep", Key="k", Body=b"v")
    original = dump(data / "meta.db")
    done = cli_json(data, "-mode", "rebuild-index", "-force")
    backup = Path(done["replaced_to"])
    assert (backup / "meta.db").exists()
    assert dump(backup / "meta.db")["versions"] == original["versions"]
    assert dump(data / "meta.db")["versions"] == original["versions"]


def test_buckets_modes_live_and_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        done = cli(data, "buckets", "create", "alpha")
        assert done.returncode == 0 and "created" in done.stdout, done.stderr
        s3.head_bucket(Bucket="alpha")
        assert s3.get_bucket_versioning(Bucket="alpha")["Status"] == "Enabled"
        again = cli_json(data, "buckets", "create", "alpha")
        assert again["created"] is False and again["via"] == "server"
        assert (
            cli(
                data, "-mode", "buckets", "-buckets-action", "exists", "-bucket", "alpha"
            ).returncode
            == 0
        )
        missing = cli(data, "buckets", "exists", "nope")
        assert missing.returncode == 1 and "does not exist" in missing.stdout
        bad = cli(data, "buckets", "create", "Bad_Name")
        assert bad.returncode == 2 and "invalid bucket name" in bad.stderr
        vid = s3.put_object(Bucket="alpha", Key="k", Body=b"x")["VersionId"]
        busy = cli(data, "buckets", "delete", "alpha")
        assert busy.returncode == 1 and "BucketNotEmpty" in busy.stderr
        listed = cli_json(data, "-mode", "buckets", "-buckets-action", "list")
        assert [(b["name"], b["objects"], b["bytes"]) for b in listed["buckets"]] == [
            ("alpha", 1, 1)
        ]
        s3.delete_object(Bucket="alpha", Key="k", VersionId=vid)
        gone = cli(data, "-mode", "buckets", "-buckets-action", "delete", "-bucket", "alpha")
        assert gone.returncode == 0, gone.stderr
        with pytest.raises(ClientError):
            s3.head_bucket(Bucket="alpha")
        # Quiesced: bucket changes are data mutations and are refused clearly.
        assert cli(data, "maintenance", "enable").returncode == 0
        refused = cli(data, "buckets", "create", "beta")
        assert refused.returncode == 1 and "MaintenanceMode" in refused.stderr
        assert cli(data, "maintenance", "disable").returncode == 0
    # Offline: applied under the data-dir lock, visible to the next server.
    done = cli_json(data, "buckets", "create", "gamma", "--versioning", "unversioned")
    assert done["via"] == "offline" and done["created"] is True
    assert db_rows(data, "SELECT name, versioning FROM buckets") == [("gamma", "unversioned")]
    modes = [r[0] for r in db_rows(data, "SELECT mode FROM ops_runs ORDER BY id")]
    assert modes.count("buckets") >= 3
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.put_object(Bucket="gamma", Key="k", Body=b"offline-made")
        assert s3.get_object(Bucket="gamma", Key="k")["Body"].read() == b"offline-made"
        status = cli_json(data, "status")
        assert any(r.get("mode") == "buckets" for r in status["runs"])
        human = cli(data, "status")
        assert "last ops runs" in human.stdout and "buckets" in human.stdout


def test_gate_and_db_reindex(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        srv.s3().create_bucket(Bucket="idx")
        refused = cli(data, "db-reindex")
        assert refused.returncode == 1
        assert "seglake maintenance enable" in refused.stderr and "--yes" in refused.stderr
        forced = cli_json(data, "-mode", "db-reindex", "-yes")
        assert forced["via"] == "server" and forced["indexes"] >= 1
        assert cli(data, "maintenance", "enable").returncode == 0
        quiesced = cli_json(data, "db-reindex")
        assert quiesced["via"] == "server" and quiesced["recorded"] is True
        assert cli(data, "maintenance", "disable").returncode == 0
        assert db_rows(data, "SELECT count(*) FROM sqlite_stat1")[0][0] >= 1
    offline = cli_json(data, "db-reindex")
    assert offline["via"] == "offline" and offline["indexes"] == forced["indexes"]
    runs = [r[0] for r in db_rows(data, "SELECT mode FROM ops_runs WHERE mode = 'db-reindex'")]
    assert len(runs) == 3


# The two uploads are created this far apart; each CLI call gets a TTL that
# puts its cutoff half-way between them, so it may take up to half the gap
# to start (a loaded machine) without changing which upload is "old".
MPU_GAP_S = 8.0


def test_mpu_gc_aborts_only_old_uploads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="mpu")
        old = s3.create_multipart_upload(Bucket="mpu", Key="old")["UploadId"]
        s3.upload_part(Bucket="mpu", Key="old", UploadId=old, PartNumber=1, Body=b"o" * 100)
        # Refusals first: neither needs the uploads' ages.
        unforced = cli(data, "mpu-gc-run", "--mpu-ttl", "1s")
        assert unforced.returncode == 2 and "--force" in unforced.stderr
        ungated = cli(data, "mpu-gc-run", "--mpu-ttl", "1s", "--force")
        assert ungated.returncode == 1 and "maintenance enable" in ungated.stderr
        time.sleep(MPU_GAP_S)
        young_at = time.time()
        young = s3.create_multipart_upload(Bucket="mpu", Key="young")["UploadId"]

        def ttl() -> str:
            return f"{time.time() - young_at + MPU_GAP_S / 2:.3f}s"

        plan = cli_json(data, "mpu-gc-plan", "--mpu-ttl", ttl())
        assert [u["upload_id"] for u in plan["uploads"]] == [old]
        assert plan["reclaimable_bytes"] == 100
        run = cli_json(data, "-mode", "mpu-gc-run", "-mpu-force", "-mpu-ttl", ttl(), "-yes")
        assert run["aborted"] == [old] and run["parts_dropped"] == 1
        left = s3.list_multipart_uploads(Bucket="mpu").get("Uploads", [])
        assert [u["UploadId"] for u in left] == [young]
        with pytest.raises(ClientError) as err:
            s3.list_parts(Bucket="mpu", Key="old", UploadId=old)
        assert err.value.response["Error"]["Code"] == "NoSuchUpload"


def _flip_first_chunk_byte(data: Path, bucket: str, key: str) -> None:
    from seglake.format.manifest import decode_manifest

    raw = db_rows(
        data,
        "SELECT v.manifest FROM current c JOIN versions v ON v.id = c.version "
        "WHERE c.bucket = ? AND c.key = ?",
        (bucket, key),
    )[0][0]
    chunk = decode_manifest(bytes(raw), path="test").chunks[0]
    flip_chunk_byte(data, chunk, 10)


def test_scheduled_scrub_and_mpu_gc(tmp_path: Path) -> None:
    data = tmp_path / "data"
    flags = ["--scrub-interval", "1", "--scrub-bytes-per-sec", "1MiB",
             "--mpu-gc-interval", "1", "--mpu-ttl", "2s"]  # fmt: skip
    with SeglakeServer(data, frontends=1, extra_args=flags) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="sched")
        s3.put_object(Bucket="sched", Key="good", Body=os.urandom(5000))
        s3.put_object(Bucket="sched", Key="bad", Body=os.urandom(5000))
        upload = s3.create_multipart_upload(Bucket="sched", Key="stale")["UploadId"]
        _flip_first_chunk_byte(data, "sched", "bad")
        deadline = time.monotonic() + 30
        state, uploads = None, [upload]
        while time.monotonic() < deadline:
            state = db_rows(
                data, "SELECT state FROM versions WHERE bucket = 'sched' AND key = 'bad'"
            )[0][0]
            uploads = [
                u["UploadId"] for u in s3.list_multipart_uploads(Bucket="sched").get("Uploads", [])
            ]
            if state == "DAMAGED" and not uploads:
                break
            time.sleep(0.5)
        assert state == "DAMAGED"
        assert uploads == []
        good = db_rows(data, "SELECT state FROM versions WHERE key = 'good'")[0][0]
        assert good == "ACTIVE"
        runs = db_rows(data, "SELECT mode, status, report FROM ops_runs")
        scrubs = [json.loads(r[2]) for r in runs if r[0] == "scrub" and r[1] == "errors"]
        assert scrubs and scrubs[0]["scheduled"] is True
        assert scrubs[0]["damaged"][0]["key"] == "bad"
        assert any(r[0] == "mpu-gc-run" and upload in r[2] for r in runs)
        status = cli_json(data, "status")
        assert status["schedules"]["scrub_interval"] == 1.0
        assert status["schedules"]["last"]["scrub"]["damaged"] >= 1


def test_support_bundle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = tmp_path / "bundle.tar.gz"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="sup")
        s3.put_object(Bucket="sup", Key="k", Body=b"bundle me")
        assert cli(data, "fsck").returncode == 0
        done = cli_json(data, "-mode", "support-bundle", "-out", str(out),
                        "-secret-key", "testsecret")  # fmt: skip
    assert done["path"] == str(out) and done["fsck_clean"] and done["scrub_clean"]
    with tarfile.open(out) as tar:
        names = {m.name.split("/", 1)[1]: m for m in tar.getmembers()}
        assert set(names) == {
            "meta.db", "snapshot.json", "fsck.json", "scrub.json", "status.json",
            "config.json", "ops_runs.json", "index.json",
        }  # fmt: skip
        files = {n: tar.extractfile(m).read() for n, m in names.items()}  # type: ignore[union-attr]
    for name, blob in files.items():
        assert b"testsecret" not in blob, name
    config = json.loads(files["config.json"])
    assert config["secret_key"] == "[redacted]" and config["data_dir"] == str(data)
    assert json.loads(files["fsck.json"])["clean"] is True
    scrub = json.loads(files["scrub.json"])
    assert scrub["clean"] is True and scrub["bytes"] == len(b"bundle me")
    assert json.loads(files["status.json"])["server"] == "running"
    assert [r["mode"] for r in json.loads(files["ops_runs.json"])][-1] == "fsck"
    snap = tmp_path / "snap.db"
    snap.write_bytes(files["meta.db"])
    conn = apsw.Connection(str(snap), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert list(conn.execute("SELECT name FROM buckets")) == [("sup",)]
    finally:
        conn.close()
    index = json.loads(files["index.json"])
    import hashlib

    assert index["fsck.json"] == hashlib.sha256(files["fsck.json"]).hexdigest()
    # Offline: the same bundle from the files, the run recorded under the lock.
    offline = cli_json(data, "support-bundle", "--out", str(tmp_path / "offline.tar.gz"))
    assert offline["recorded"] is True and offline["fsck_clean"] is True
    with tarfile.open(tmp_path / "offline.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/status.json"))
        status = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    assert status["server"] == "not running" and status["maintenance"]["state"] == "off"


def test_rebuild_index_refuses_a_version_1_store(tmp_path: Path) -> None:
    """Manifest files (a version-1 store) need seglake upgrade first."""
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        srv.s3().create_bucket(Bucket="old")
    (data / "objects" / "manifests").mkdir()
    out = cli(data, "rebuild-index", "--force")
    assert out.returncode != 0
    assert "seglake upgrade" in out.stderr + out.stdout


def test_rebuild_index_reports_damaged_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="dmg")
        s3.put_object(Bucket="dmg", Key="fine", Body=b"fine")
        s3.put_object(Bucket="dmg", Key="broken", Body=b"broken")
        s3.delete_object(Bucket="dmg", Key="fine")
    broken_uid = db_rows(data, "SELECT uid FROM versions WHERE key = 'broken'")[0][0]
    at = replay(data / "objects" / "segments").manifest_copies[broken_uid][0]
    seg = data / "objects" / "segments" / f"{at.segment_id:016x}.seg"
    with open(seg, "r+b") as f:
        where = at.offset + RECORD_HEADER_SIZE + len(at.data) // 2
        f.seek(where)
        byte = f.read(1)
        f.seek(where)
        f.write(bytes([byte[0] ^ 0xFF]))
    check = cli(data, "rebuild-index", "--dry-run", "--json")
    assert check.returncode == 1
    assert json.loads(check.stdout)["listed"] == [
        f"versions {broken_uid!r}: missing in rebuild",
        "current ('dmg', 'broken'): missing in rebuild",
    ]
    done = cli(data, "rebuild-index", "--force", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert any(str(seg) in p and "manifest record" in p for p in report["problems"]), report
    rebuilt = dump(data / "meta.db")
    assert {v[1] for v in rebuilt["versions"].values()} == {"fine"}  # the version and its marker
    assert len(rebuilt["versions"]) == 2
