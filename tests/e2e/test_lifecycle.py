"""Bucket lifecycle rules on the real server (issue #16): the configuration
endpoints, every action type with the test-only time scale, filters,
x-amz-expiration, lifecycle-plan / lifecycle-run, maintenance mode, a racing
overwrite, and segment GC reclaiming what expired."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from botocore.exceptions import ClientError

from seglake.config import build_config
from seglake.ipc.messages import LifecycleAction, LifecycleExpire
from seglake.ops.admin_client import admin_mutation
from tests.e2e._helpers import cli, cli_json, db_rows, status_and_code
from tests.e2e._signing import signed_request
from tests.harness import SeglakeServer, server_fixture

DAY_S = 2  # one lifecycle day lasts 2 s on this server
NS = 1_000_000_000
# A rule with Days=1 acts 1..2 days after the write (rounded up to a day
# boundary); this waits for that, plus slack for a loaded machine.
ONE_DAY_PASSED_S = 2 * DAY_S + 0.5

lsrv = server_fixture(
    "--lifecycle-day-seconds", str(DAY_S), "--lifecycle-interval", "0",
    "--lifecycle-actions-per-sec", "0", "--segment-max-bytes", str(1024 * 1024),
)  # fmt: skip


def due_ns(start_ns: int, days: int) -> int:
    """Independent of the server's code: N days later, up to a day boundary."""
    day = DAY_S * NS
    return -(-(start_ns + days * day) // day) * day


def http_date(ns: int) -> str:
    return format_datetime(datetime.fromtimestamp(ns // NS, UTC), usegmt=True)


def created_ns(srv: SeglakeServer, bucket: str, key: str) -> int:
    rows = db_rows(
        srv.data_dir,
        "SELECT v.created_ns FROM current c JOIN versions v ON v.id = c.version "
        "WHERE c.bucket = ? AND c.key = ?",
        (bucket, key),
    )
    return int(rows[0][0])


def versions(s3: Any, bucket: str, prefix: str = "") -> list[tuple[str, bool, bool]]:
    """(key, is delete marker, is latest) of every version, in listing order."""
    out = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    rows = [(v["Key"], False, v["IsLatest"]) for v in out.get("Versions", [])]
    rows += [(m["Key"], True, m["IsLatest"]) for m in out.get("DeleteMarkers", [])]
    return sorted(rows)


def put_rules(s3: Any, bucket: str, *rules: dict[str, Any]) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)}
    )


def unversioned_bucket(srv: SeglakeServer, name: str) -> str:
    resp = signed_request(srv, "PUT", f"/{name}", headers={"x-seglake-versioning": "unversioned"})
    assert resp.status_code == 200, resp.text
    return name


def run_pass(srv: SeglakeServer, *args: str) -> dict[str, Any]:
    code, doc = cli_json(srv.data_dir, "lifecycle-run", *args)
    assert code == 0, doc
    return doc


def plan(srv: SeglakeServer, bucket: str) -> dict[str, Any]:
    code, doc = cli_json(srv.data_dir, "lifecycle-plan", bucket)
    assert code == 0
    return doc


# ---- the configuration --------------------------------------------------------------

RULES_XML = (
    b"<LifecycleConfiguration><Rule><ID>r1</ID><Filter><Prefix>a/</Prefix></Filter>"
    b"<Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule>"
    b"</LifecycleConfiguration>"
)


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_configuration_endpoints(lsrv: SeglakeServer) -> None:
    s3 = lsrv.s3()
    s3.create_bucket(Bucket="cfg")
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket="cfg")
    assert status_and_code(info) == (404, "NoSuchLifecycleConfiguration")

    rule = {
        "ID": "and-rule", "Status": "Enabled",
        "Filter": {"And": {"Prefix": "p/", "ObjectSizeGreaterThan": 10,
                           "ObjectSizeLessThan": 100}},
        "Expiration": {"Days": 7},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 2, "NewerNoncurrentVersions": 3},
    }  # fmt: skip
    put_rules(s3, "cfg", rule, {
        "ID": "mpu", "Status": "Disabled", "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    })  # fmt: skip
    got = s3.get_bucket_lifecycle_configuration(Bucket="cfg")["Rules"]
    assert got[0] == rule
    assert got[1]["ID"] == "mpu" and got[1]["Status"] == "Disabled"

    # Raw requests: the body must carry Content-MD5 (or a checksum), as on AWS.
    resp = signed_request(lsrv, "PUT", "/cfg", "lifecycle", body=RULES_XML)
    assert resp.status_code == 400 and b"<Code>InvalidRequest</Code>" in resp.content
    resp = signed_request(
        lsrv, "PUT", "/cfg", "lifecycle", body=RULES_XML, headers={"Content-MD5": _md5(b"x")}
    )
    assert resp.status_code == 400 and b"<Code>BadDigest</Code>" in resp.content
    bad = [
        (b"<LifecycleConfiguration/>", "MalformedXML"),
        (RULES_XML.replace(b"<Days>3</Days>", b"<Days>0</Days>"), "InvalidArgument"),
        (RULES_XML.replace(b"<Expiration><Days>3</Days></Expiration>", b""), "InvalidRequest"),
    ]
    for body, code in bad:
        resp = signed_request(
            lsrv, "PUT", "/cfg", "lifecycle", body=body, headers={"Content-MD5": _md5(body)}
        )
        assert resp.status_code == 400 and f"<Code>{code}</Code>".encode() in resp.content, body
    # Refused documents changed nothing.
    assert s3.get_bucket_lifecycle_configuration(Bucket="cfg")["Rules"][0] == rule
    resp = signed_request(
        lsrv, "PUT", "/cfg", "lifecycle", body=RULES_XML, headers={"Content-MD5": _md5(RULES_XML)}
    )
    assert resp.status_code == 200, resp.text
    assert s3.get_bucket_lifecycle_configuration(Bucket="cfg")["Rules"] == [
        {"ID": "r1", "Filter": {"Prefix": "a/"}, "Status": "Enabled", "Expiration": {"Days": 3}}
    ]
    s3.delete_bucket_lifecycle(Bucket="cfg")
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket="cfg")
    assert status_and_code(info) == (404, "NoSuchLifecycleConfiguration")
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket="nosuch")
    assert status_and_code(info) == (404, "NoSuchBucket")


def test_configuration_survives_rebuild_index(tmp_path: Path) -> None:
    """The bucket record carries the configuration: rebuild-index restores it."""
    with SeglakeServer(tmp_path / "data", frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="kept")
        put_rules(s3, "kept", {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": "t/"},
                               "Expiration": {"Days": 9}})  # fmt: skip
        before = s3.get_bucket_lifecycle_configuration(Bucket="kept")["Rules"]
    out = cli(tmp_path / "data", "rebuild-index", "--force")
    assert out.returncode == 0, out.stderr
    with SeglakeServer(tmp_path / "data", frontends=1, log_path=tmp_path / "again.log") as srv:
        assert srv.s3().get_bucket_lifecycle_configuration(Bucket="kept")["Rules"] == before


# ---- current-version expiry, filters, x-amz-expiration, plan ------------------------


def test_expiration_days_with_filters_and_headers(lsrv: SeglakeServer) -> None:
    s3 = lsrv.s3()
    s3.create_bucket(Bucket="ver")
    unversioned_bucket(lsrv, "unver")
    put_rules(s3, "ver", {
        "ID": "sized", "Status": "Enabled",
        "Filter": {"And": {"Prefix": "exp/", "ObjectSizeGreaterThan": 10,
                           "ObjectSizeLessThan": 1000}},
        "Expiration": {"Days": 1},
    })  # fmt: skip
    put_rules(s3, "unver", {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": "gone/"},
                            "Expiration": {"Days": 1}})  # fmt: skip
    bodies = {
        "exp/small": b"s" * 5,
        "exp/mid": b"m" * 100,
        "exp/big": b"b" * 2000,
        "keep/mid": b"k" * 100,
    }
    for key, body in bodies.items():
        out = s3.put_object(Bucket="ver", Key=key, Body=body)
        if key == "exp/mid":
            created = created_ns(lsrv, "ver", key)
            header = f'expiry-date="{http_date(due_ns(created, 1))}", rule-id="sized"'
            assert out["Expiration"] == header
            assert s3.head_object(Bucket="ver", Key=key)["Expiration"] == header
            assert s3.get_object(Bucket="ver", Key=key)["Expiration"] == header
        else:
            assert "Expiration" not in out, key
            assert "Expiration" not in s3.head_object(Bucket="ver", Key=key)
    s3.put_object(Bucket="unver", Key="gone/a", Body=b"a" * 50)
    s3.put_object(Bucket="unver", Key="stay/a", Body=b"b" * 50)

    assert plan(lsrv, "ver")["actions"] == []  # nothing is due yet
    time.sleep(ONE_DAY_PASSED_S)
    doc = plan(lsrv, "ver")
    assert [(a["key"], a["action"], a["rule_id"]) for a in doc["actions"]] == [
        ("exp/mid", "expire-current", "sized")
    ]
    assert doc["counts"] == {"expire-current": 1}
    out = cli(lsrv.data_dir, "lifecycle-plan", "ver")
    assert out.returncode == 0 and "1 expire-current" in out.stdout

    report = run_pass(lsrv)
    assert report["via"] == "server" and report["applied"]["expire-current"] == 2
    assert report["recorded"] is True
    # Versioned: a delete marker on top, the version kept as noncurrent.
    assert versions(s3, "ver", "exp/mid") == [("exp/mid", False, False), ("exp/mid", True, True)]
    for key in ("exp/small", "exp/big", "keep/mid"):
        assert s3.get_object(Bucket="ver", Key=key)["Body"].read() == bodies[key]
    # Unversioned: deleted for real, nothing listed; the hidden tombstone
    # left behind (docs/design-replication.md §2) is planned for nothing.
    assert versions(s3, "unver") == [("stay/a", False, True)]
    assert db_rows(
        lsrv.data_dir,
        "SELECT state, tombstone FROM versions WHERE bucket = 'unver' AND key = 'gone/a' "
        "ORDER BY id",
    ) == [("DELETED", 0), ("ACTIVE", 1)]
    assert plan(lsrv, "unver")["actions"] == []
    assert run_pass(lsrv, "unver")["applied_total"] == 0
    # Nothing is done twice.
    again = run_pass(lsrv, "ver")
    assert again["applied_total"] == 0 and again["planned"] == 0
    assert versions(s3, "ver", "exp/mid") == [("exp/mid", False, False), ("exp/mid", True, True)]


# ---- Date, ExpiredObjectDeleteMarker, NoncurrentVersionExpiration, MPU abort --------


def test_date_marker_noncurrent_and_uploads(lsrv: SeglakeServer) -> None:
    s3 = lsrv.s3()
    s3.create_bucket(Bucket="acts")
    future_day = datetime(2099, 1, 1, tzinfo=UTC)
    put_rules(
        s3, "acts",
        {"ID": "past", "Status": "Enabled", "Filter": {"Prefix": "dated/"},
         "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)}},
        {"ID": "future", "Status": "Enabled", "Filter": {"Prefix": "future/"},
         "Expiration": {"Date": future_day}},
        {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": "dm/"},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "nc/"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}},
        {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": "mpu/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "off/"},
         "Expiration": {"Days": 1}},
    )  # fmt: skip
    out = s3.put_object(Bucket="acts", Key="dated/a", Body=b"d")
    assert out["Expiration"] == 'expiry-date="Wed, 01 Jan 2020 00:00:00 GMT", rule-id="past"'
    out = s3.put_object(Bucket="acts", Key="future/a", Body=b"f")
    assert out["Expiration"] == 'expiry-date="Thu, 01 Jan 2099 00:00:00 GMT", rule-id="future"'
    s3.put_object(Bucket="acts", Key="off/a", Body=b"o")
    # dm/alone: its only version deleted, so the marker is alone; dm/over: not.
    v = s3.put_object(Bucket="acts", Key="dm/alone", Body=b"x")["VersionId"]
    s3.delete_object(Bucket="acts", Key="dm/alone")
    s3.delete_object(Bucket="acts", Key="dm/alone", VersionId=v)
    s3.put_object(Bucket="acts", Key="dm/over", Body=b"y")
    s3.delete_object(Bucket="acts", Key="dm/over")
    nc = [s3.put_object(Bucket="acts", Key="nc/k", Body=f"v{i}".encode())["VersionId"]
          for i in range(5)]  # fmt: skip
    upload = s3.create_multipart_upload(Bucket="acts", Key="mpu/x")["UploadId"]
    s3.upload_part(Bucket="acts", Key="mpu/x", UploadId=upload, PartNumber=1, Body=b"p" * 100)
    other = s3.create_multipart_upload(Bucket="acts", Key="other/y")["UploadId"]

    # The Date rule and the lone marker act at once; the others wait a day.
    first = run_pass(lsrv, "acts")
    assert first["applied"] == {"expire-current": 1, "remove-marker": 1}
    time.sleep(ONE_DAY_PASSED_S)
    doc = plan(lsrv, "acts")
    assert sorted((a["key"], a["action"]) for a in doc["actions"]) == [
        ("mpu/x", "abort-upload"), ("nc/k", "delete-version"), ("nc/k", "delete-version"),
    ]  # fmt: skip
    assert {a["version_id"] for a in doc["actions"] if a["key"] == "nc/k"} == set(nc[:2])
    second = run_pass(lsrv, "acts")
    assert second["applied"] == {"delete-version": 2, "abort-upload": 1}

    assert versions(s3, "acts", "dated/") == [("dated/a", False, False), ("dated/a", True, True)]
    assert s3.get_object(Bucket="acts", Key="future/a")["Body"].read() == b"f"
    assert s3.get_object(Bucket="acts", Key="off/a")["Body"].read() == b"o"
    assert versions(s3, "acts", "dm/alone") == []
    assert versions(s3, "acts", "dm/over") == [("dm/over", False, False), ("dm/over", True, True)]
    left = s3.list_object_versions(Bucket="acts", Prefix="nc/")["Versions"]
    assert [x["VersionId"] for x in left] == list(reversed(nc[2:]))  # current + 2 newer
    uploads = s3.list_multipart_uploads(Bucket="acts").get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [other]
    with pytest.raises(ClientError) as info:
        s3.list_parts(Bucket="acts", Key="mpu/x", UploadId=upload)
    assert status_and_code(info) == (404, "NoSuchUpload")


# ---- the writer re-checks: a racing overwrite, a replayed plan ----------------------


def test_racing_overwrite_and_replayed_plan_change_nothing(lsrv: SeglakeServer) -> None:
    s3 = lsrv.s3()
    s3.create_bucket(Bucket="race")
    put_rules(s3, "race", {"ID": "d1", "Status": "Enabled", "Filter": {"Prefix": ""},
                           "Expiration": {"Days": 1}})  # fmt: skip
    s3.put_object(Bucket="race", Key="hot", Body=b"old")
    s3.put_object(Bucket="race", Key="cold", Body=b"cold")
    time.sleep(ONE_DAY_PASSED_S)
    stale = plan(lsrv, "race")
    assert sorted(a["key"] for a in stale["actions"]) == ["cold", "hot"]
    # A client overwrites "hot" after the plan was made, before it is applied.
    new_version = s3.put_object(Bucket="race", Key="hot", Body=b"new")["VersionId"]

    uids = dict(
        db_rows(lsrv.data_dir, "SELECT version_id, uid FROM versions WHERE bucket = 'race'")
    )
    msg = LifecycleExpire(
        bucket="race", now_ns=int(stale["now_ns"]), day_ns=DAY_S * NS,
        actions=[
            LifecycleAction(key=a["key"], action=a["action"], rule_id=a["rule_id"],
                            version_id=a["version_id"], uid=uids[a["version_id"]])
            for a in sorted(stale["actions"], key=lambda a: a["key"])
        ],
    )  # fmt: skip
    cfg = build_config({"data_dir": str(lsrv.data_dir)})
    first = trio.run(admin_mutation, cfg, msg)
    assert first.results == ["applied", "skipped: the version is no longer current"]
    # The same plan again (a reply lost, a second run): nothing more happens.
    second = trio.run(admin_mutation, cfg, msg)
    assert all(r.startswith("skipped") for r in second.results), second.results
    assert s3.get_object(Bucket="race", Key="hot")["Body"].read() == b"new"
    assert s3.head_object(Bucket="race", Key="hot")["VersionId"] == new_version
    markers = Counter(k for k, marker, _ in versions(s3, "race") if marker)
    assert markers == {"cold": 1}


def test_runs_pause_in_maintenance_mode(lsrv: SeglakeServer) -> None:
    s3 = lsrv.s3()
    s3.create_bucket(Bucket="quiet")
    s3.put_object(Bucket="quiet", Key="a", Body=b"a")
    put_rules(s3, "quiet", {"ID": "now", "Status": "Enabled", "Filter": {"Prefix": ""},
                            "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)}})  # fmt: skip
    assert cli(lsrv.data_dir, "maintenance", "enable").returncode == 0
    try:
        code, doc = cli_json(lsrv.data_dir, "lifecycle-run", "quiet")
        assert code == 0
        assert doc["paused"] is True and doc["applied_total"] == 0
        assert doc["recorded"] is True, doc["record_note"]
        assert s3.get_object(Bucket="quiet", Key="a")["Body"].read() == b"a"
    finally:
        assert cli(lsrv.data_dir, "maintenance", "disable").returncode == 0
    assert run_pass(lsrv, "quiet")["applied"] == {"expire-current": 1}
    runs = [r for r in lsrv.status()["runs"] if r["mode"] == "lifecycle-run"]
    assert [r["status"] for r in runs[:2]] == ["ok", "paused"], runs[:3]


# ---- segment GC reclaims what expired -----------------------------------------------


def segment_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "objects" / "segments").glob("*.seg"))


def test_gc_reclaims_expired_bytes(lsrv: SeglakeServer) -> None:
    s3 = lsrv.s3()
    unversioned_bucket(lsrv, "reclaim")
    blob = 256 * 1024
    for i in range(16):  # 4 MiB over several 1 MiB segments
        s3.put_object(Bucket="reclaim", Key=f"tmp/{i:02d}", Body=os.urandom(blob))
    keep = os.urandom(1000)
    s3.put_object(Bucket="reclaim", Key="keep", Body=keep)
    put_rules(s3, "reclaim", {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                              "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)}})  # fmt: skip
    assert run_pass(lsrv, "reclaim")["applied"] == {"expire-current": 16}
    before = segment_bytes(lsrv.data_dir)
    out = cli(lsrv.data_dir, "gc-run", "--force", "--yes")
    assert out.returncode == 0, out.stderr
    after = segment_bytes(lsrv.data_dir)
    # Other tests' data and the record log share segments (segment format
    # 2 keeps manifests and state records beside the chunks), so not every
    # byte of the 4 MiB goes; at least two thirds of it is freed.
    assert before - after >= 2.75 * 1024 * 1024, (before, after)
    assert s3.get_object(Bucket="reclaim", Key="keep")["Body"].read() == keep
