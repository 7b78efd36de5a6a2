"""S3 Object Lock through boto3 against the real server (issue #19).

Every API with its success and error answers: bucket configuration,
per-version retention and legal hold (headers and sub-resources), the
fields GET/HEAD send, the integrity header a lock bucket requires, and the
enforcement — GOVERNANCE bypass with and without ``s3:BypassGovernanceRetention``,
COMPLIANCE refusing even the admin key, legal hold, delete markers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import subprocess
import sys
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.e2e._helpers import status_and_code, with_headers
from tests.harness import REGION, SeglakeServer, server_fixture

LOCKED = "lock-main"
DEFAULTED = "lock-default"
PLAIN = "lock-plain"
UNVERSIONED = "lock-unversioned"
KEYS = {"nobypass": "nobypass-secret-1", "bypasser": "bypasser-secret-2",
        "everyday": "everyday-secret-3"}  # fmt: skip
LOCKED_MSG = "Access Denied because object protected by object lock."


def _policy(*actions: str) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": [f"s3:{a}" for a in actions], "Resource": "*"}
        ]}
    )  # fmt: skip


BASIC = ("GetObject", "PutObject", "DeleteObject", "DeleteObjectVersion", "ListBucket",
         "GetObjectRetention", "PutObjectRetention", "GetObjectVersion")  # fmt: skip


def _setup(srv: SeglakeServer) -> None:
    s3 = srv.s3()
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket=DEFAULTED, ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket=PLAIN)
    with_headers(srv.s3(), {"x-seglake-versioning": "unversioned"}).create_bucket(
        Bucket=UNVERSIONED
    )
    for key, secret in KEYS.items():
        actions = BASIC + (("BypassGovernanceRetention",) if key == "bypasser" else ())
        policy = "rw" if key == "everyday" else _policy(*actions)
        out = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "keys", "create", "--key-access", key,
             "--key-secret", secret, "--key-policy", policy,
             "--data-dir", str(srv.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr


server = server_fixture(setup=_setup)


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    return server.s3()


def _client(server: SeglakeServer, key: str, **extra: Any) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=key,
        aws_secret_access_key=KEYS[key], region_name=REGION,
        config=BotoConfig(retries={"total_max_attempts": 1}, **extra),
    )  # fmt: skip


def _later(days: float = 1.0) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)


def _refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    status, code = status_and_code(info)
    return status, code, info.value.response["Error"].get("Message", "")


def _put_locked(s3: Any, key: str, mode: str, days: float = 1.0, **extra: Any) -> str:
    out = s3.put_object(
        Bucket=LOCKED, Key=key, Body=f"bytes of {key}".encode(), ObjectLockMode=mode,
        ObjectLockRetainUntilDate=_later(days), **extra,
    )  # fmt: skip
    return str(out["VersionId"])


# ---- bucket configuration -----------------------------------------------------------


def test_lock_bucket_is_versioned_and_cannot_be_suspended(s3: Any) -> None:
    assert s3.get_bucket_versioning(Bucket=LOCKED)["Status"] == "Enabled"
    status, code, _ = _refused(
        s3.put_bucket_versioning, Bucket=LOCKED,
        VersioningConfiguration={"Status": "Suspended"},
    )  # fmt: skip
    assert (status, code) == (409, "InvalidBucketState")
    assert s3.get_bucket_versioning(Bucket=LOCKED)["Status"] == "Enabled"


def test_lock_configuration_round_trip(s3: Any) -> None:
    got = s3.get_object_lock_configuration(Bucket=DEFAULTED)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled"}
    for rule in ({"Mode": "GOVERNANCE", "Days": 2}, {"Mode": "COMPLIANCE", "Years": 1}):
        s3.put_object_lock_configuration(
            Bucket=DEFAULTED,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                     "Rule": {"DefaultRetention": rule}},
        )  # fmt: skip
        got = s3.get_object_lock_configuration(Bucket=DEFAULTED)["ObjectLockConfiguration"]
        assert got == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}}
    s3.put_object_lock_configuration(
        Bucket=DEFAULTED,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                 "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}},
    )  # fmt: skip


def test_lock_configuration_errors(s3: Any, make_bucket: Any) -> None:
    status, code, _ = _refused(s3.get_object_lock_configuration, Bucket=PLAIN)
    assert (status, code) == (404, "ObjectLockConfigurationNotFoundError")
    status, code, _ = _refused(s3.get_object_lock_configuration, Bucket="lock-no-such-bucket")
    assert (status, code) == (404, "NoSuchBucket")
    # An unversioned bucket cannot take a configuration; a versioned one can.
    status, code, _ = _refused(
        s3.put_object_lock_configuration, Bucket=UNVERSIONED,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"},
    )  # fmt: skip
    assert (status, code) == (409, "InvalidBucketState")
    versioned = make_bucket()
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(
        Bucket=versioned, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
    )
    assert s3.get_object_lock_configuration(Bucket=versioned)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"
    }
    bad_rules: list[dict[str, Any]] = [
        {"Mode": "GOVERNANCE", "Days": 1, "Years": 1},
        {"Mode": "GOVERNANCE"},
    ]
    for rule in bad_rules:
        status, code, _ = _refused(
            s3.put_object_lock_configuration, Bucket=LOCKED,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                     "Rule": {"DefaultRetention": rule}},
        )  # fmt: skip
        assert (status, code) == (400, "MalformedXML"), rule
    status, code, _ = _refused(
        s3.put_object_lock_configuration, Bucket=LOCKED,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                 "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}},
    )  # fmt: skip
    assert (status, code) == (400, "InvalidArgument")


# ---- per-version headers ------------------------------------------------------------------


def test_put_with_retention_and_read_back(s3: Any) -> None:
    until = _later(2)
    vid = s3.put_object(
        Bucket=LOCKED, Key="hdr", Body=b"x", ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="OFF",
    )["VersionId"]  # fmt: skip
    head = s3.head_object(Bucket=LOCKED, Key="hdr", VersionId=vid)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    got = s3.get_object(Bucket=LOCKED, Key="hdr")
    assert got["ObjectLockMode"] == "GOVERNANCE" and got["ObjectLockRetainUntilDate"] == until
    retention = s3.get_object_retention(Bucket=LOCKED, Key="hdr", VersionId=vid)["Retention"]
    assert retention == {"Mode": "GOVERNANCE", "RetainUntilDate": until}
    hold = s3.get_object_legal_hold(Bucket=LOCKED, Key="hdr")["LegalHold"]
    assert hold == {"Status": "OFF"}


def test_header_errors(s3: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ObjectLockMode": "GOVERNANCE"}, "must both be supplied"),
        ({"ObjectLockRetainUntilDate": _later()}, "must both be supplied"),
        ({"ObjectLockMode": "SOFT", "ObjectLockRetainUntilDate": _later()}, "wormMode"),
        ({"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": _later(-1)}, "future"),
    ]
    for extra, words in cases:
        status, code, message = _refused(s3.put_object, Bucket=LOCKED, Key="bad", Body=b"x",
                                         **extra)  # fmt: skip
        assert (status, code) == (400, "InvalidArgument") and words in message, extra
    status, code, message = _refused(
        s3.put_object, Bucket=PLAIN, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(),
    )  # fmt: skip
    assert (status, code, message) == (400, "InvalidRequest",
                                       "Bucket is missing Object Lock Configuration")  # fmt: skip
    status, code, _ = _refused(s3.put_object, Bucket=PLAIN, Key="k", Body=b"x",
                               ObjectLockLegalHoldStatus="ON")  # fmt: skip
    assert (status, code) == (400, "InvalidRequest")
    # None of the refused writes stored anything.
    assert "Versions" not in s3.list_object_versions(Bucket=LOCKED, Prefix="bad")


def test_lock_bucket_requires_an_integrity_header(server: SeglakeServer, s3: Any) -> None:
    bare = server.s3(request_checksum_calculation="when_required")
    status, code, message = _refused(bare.put_object, Bucket=LOCKED, Key="bare", Body=b"x")
    assert (status, code) == (400, "InvalidRequest")
    assert "Content-MD5 OR x-amz-checksum-" in message
    bare.put_object(Bucket=PLAIN, Key="bare", Body=b"x")  # no lock, no requirement
    # With Content-MD5, or with a checksum (boto3's default), it is accepted.
    md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    bare.put_object(Bucket=LOCKED, Key="bare", Body=b"x", ContentMD5=md5)
    s3.put_object(Bucket=LOCKED, Key="bare", Body=b"x")
    upload = s3.create_multipart_upload(Bucket=LOCKED, Key="bare-mpu")["UploadId"]
    status, code, _ = _refused(
        bare.upload_part, Bucket=LOCKED, Key="bare-mpu", UploadId=upload, PartNumber=1, Body=b"x"
    )
    assert (status, code) == (400, "InvalidRequest")
    s3.abort_multipart_upload(Bucket=LOCKED, Key="bare-mpu", UploadId=upload)


def test_default_retention_applies(s3: Any) -> None:
    before = dt.datetime.now(dt.UTC)
    vid = s3.put_object(Bucket=DEFAULTED, Key="d", Body=b"defaulted")["VersionId"]
    head = s3.head_object(Bucket=DEFAULTED, Key="d", VersionId=vid)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert before + dt.timedelta(days=1) - dt.timedelta(seconds=5) <= until
    assert until <= dt.datetime.now(dt.UTC) + dt.timedelta(days=1, seconds=5)
    status, code, _ = _refused(s3.delete_object, Bucket=DEFAULTED, Key="d", VersionId=vid)
    assert (status, code) == (403, "AccessDenied")
    # Explicit headers win over the default.
    vid2 = s3.put_object(
        Bucket=DEFAULTED, Key="d2", Body=b"x", ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=_later(3),
    )["VersionId"]  # fmt: skip
    assert s3.head_object(Bucket=DEFAULTED, Key="d2", VersionId=vid2)["ObjectLockMode"] == (
        "COMPLIANCE"
    )


def test_copy_and_multipart_carry_lock_headers(s3: Any) -> None:
    s3.put_object(Bucket=LOCKED, Key="src", Body=b"source bytes")
    until = _later(1)
    copied = s3.copy_object(
        Bucket=LOCKED, Key="copy", CopySource={"Bucket": LOCKED, "Key": "src"},
        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )  # fmt: skip
    vid = copied["VersionId"]
    head = s3.head_object(Bucket=LOCKED, Key="copy", VersionId=vid)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    mpu = s3.create_multipart_upload(
        Bucket=LOCKED, Key="mpu", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until
    )
    part = s3.upload_part(
        Bucket=LOCKED, Key="mpu", UploadId=mpu["UploadId"], PartNumber=1, Body=b"p" * 100
    )
    done = s3.complete_multipart_upload(
        Bucket=LOCKED, Key="mpu", UploadId=mpu["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    head = s3.head_object(Bucket=LOCKED, Key="mpu", VersionId=done["VersionId"])
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    status, code, _ = _refused(s3.create_multipart_upload, Bucket=PLAIN, Key="mpu",
                               ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)  # fmt: skip
    assert (status, code) == (400, "InvalidRequest")


# ---- retention and legal hold sub-resources ----------------------------------------------


def test_retention_api(s3: Any) -> None:
    vid = s3.put_object(Bucket=LOCKED, Key="ret", Body=b"r")["VersionId"]
    status, code, _ = _refused(s3.get_object_retention, Bucket=LOCKED, Key="ret")
    assert (status, code) == (404, "NoSuchObjectLockConfiguration")
    until = _later(1)
    s3.put_object_retention(Bucket=LOCKED, Key="ret", VersionId=vid,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})  # fmt: skip
    assert s3.get_object_retention(Bucket=LOCKED, Key="ret")["Retention"] == {
        "Mode": "GOVERNANCE", "RetainUntilDate": until,
    }  # fmt: skip
    # Extending is free; shortening needs bypass (the admin holds the permission).
    longer = _later(2)
    s3.put_object_retention(Bucket=LOCKED, Key="ret",
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": longer})  # fmt: skip
    status, code, message = _refused(
        s3.put_object_retention, Bucket=LOCKED, Key="ret",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
    )  # fmt: skip
    assert (status, code, message) == (403, "AccessDenied", LOCKED_MSG)
    s3.put_object_retention(
        Bucket=LOCKED, Key="ret", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
        BypassGovernanceRetention=True,
    )  # fmt: skip
    # GOVERNANCE → COMPLIANCE strengthens; back again never.
    s3.put_object_retention(Bucket=LOCKED, Key="ret",
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})  # fmt: skip
    status, code, _ = _refused(
        s3.put_object_retention, Bucket=LOCKED, Key="ret",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": longer},
        BypassGovernanceRetention=True,
    )  # fmt: skip
    assert (status, code) == (403, "AccessDenied")
    other = s3.put_object(Bucket=LOCKED, Key="ret-other", Body=b"o")["VersionId"]
    errors: list[tuple[dict[str, Any], int, str]] = [
        ({"Bucket": PLAIN, "Key": "bare"}, 400, "InvalidRequest"),
        ({"Bucket": LOCKED, "Key": "no-such-key"}, 404, "NoSuchKey"),
        ({"Bucket": LOCKED, "Key": "ret", "VersionId": other}, 404, "NoSuchVersion"),
    ]
    for where, want_status, want_code in errors:
        status, code, _ = _refused(
            s3.put_object_retention, **where,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
        )  # fmt: skip
        assert (status, code) == (want_status, want_code), where
    status, code, _ = _refused(
        s3.put_object_retention, Bucket=LOCKED, Key="ret",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _later(-1)},
    )  # fmt: skip
    assert (status, code) == (400, "InvalidArgument")


def test_legal_hold_api(s3: Any) -> None:
    vid = s3.put_object(Bucket=LOCKED, Key="hold", Body=b"h")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=LOCKED, Key="hold")["LegalHold"] == {"Status": "OFF"}
    s3.put_object_legal_hold(Bucket=LOCKED, Key="hold", VersionId=vid, LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=LOCKED, Key="hold", VersionId=vid)["LegalHold"] == {
        "Status": "ON"
    }
    assert s3.head_object(Bucket=LOCKED, Key="hold")["ObjectLockLegalHoldStatus"] == "ON"
    status, code, _ = _refused(s3.delete_object, Bucket=LOCKED, Key="hold", VersionId=vid,
                               BypassGovernanceRetention=True)  # fmt: skip
    assert (status, code) == (403, "AccessDenied")
    s3.put_object_legal_hold(Bucket=LOCKED, Key="hold", VersionId=vid, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=LOCKED, Key="hold", VersionId=vid)
    status, code, _ = _refused(s3.get_object_legal_hold, Bucket=PLAIN, Key="bare")
    assert (status, code) == (400, "InvalidRequest")


# ---- enforcement ------------------------------------------------------------------------------


def test_compliance_refuses_even_the_admin(s3: Any) -> None:
    vid = _put_locked(s3, "comp", "COMPLIANCE")
    for bypass in (False, True):
        status, code, message = _refused(
            s3.delete_object, Bucket=LOCKED, Key="comp", VersionId=vid,
            BypassGovernanceRetention=bypass,
        )  # fmt: skip
        assert (status, code, message) == (403, "AccessDenied", LOCKED_MSG)
    result = s3.delete_objects(
        Bucket=LOCKED, Delete={"Objects": [{"Key": "comp", "VersionId": vid}]},
        BypassGovernanceRetention=True,
    )  # fmt: skip
    assert [e["Code"] for e in result.get("Errors", [])] == ["AccessDenied"]
    assert (
        s3.get_object(Bucket=LOCKED, Key="comp", VersionId=vid)["Body"].read() == b"bytes of comp"
    )


def test_delete_without_version_adds_a_marker(s3: Any) -> None:
    vid = _put_locked(s3, "marker", "COMPLIANCE")
    out = s3.delete_object(Bucket=LOCKED, Key="marker")
    assert out["DeleteMarker"] is True and out["VersionId"] != vid
    assert s3.get_object(Bucket=LOCKED, Key="marker", VersionId=vid)["Body"].read() == (
        b"bytes of marker"
    )
    # The marker itself is not locked.
    s3.delete_object(Bucket=LOCKED, Key="marker", VersionId=out["VersionId"])


def test_governance_bypass_needs_header_and_permission(server: SeglakeServer, s3: Any) -> None:
    nobypass = _client(server, "nobypass")
    bypasser = _client(server, "bypasser")
    vids = [_put_locked(s3, f"gov{i}", "GOVERNANCE") for i in range(3)]
    # Without the header nobody passes, the admin included.
    for client in (s3, bypasser):
        status, code, _ = _refused(client.delete_object, Bucket=LOCKED, Key="gov0",
                                   VersionId=vids[0])  # fmt: skip
        assert (status, code) == (403, "AccessDenied")
    # The header without the permission is not enough; the ``rw`` shorthand
    # does not grant it either.
    for client in (nobypass, _client(server, "everyday")):
        status, code, _ = _refused(client.delete_object, Bucket=LOCKED, Key="gov0",
                                   VersionId=vids[0], BypassGovernanceRetention=True)  # fmt: skip
        assert (status, code) == (403, "AccessDenied")
    result = nobypass.delete_objects(
        Bucket=LOCKED, Delete={"Objects": [{"Key": "gov1", "VersionId": vids[1]}]},
        BypassGovernanceRetention=True,
    )  # fmt: skip
    assert [e["Code"] for e in result.get("Errors", [])] == ["AccessDenied"]
    status, code, _ = _refused(
        nobypass.put_object_retention, Bucket=LOCKED, Key="gov0", VersionId=vids[0],
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _later(0.5)},
        BypassGovernanceRetention=True,
    )  # fmt: skip
    assert (status, code) == (403, "AccessDenied")
    # Header and permission: the GOVERNANCE lock yields.
    bypasser.delete_object(Bucket=LOCKED, Key="gov0", VersionId=vids[0],
                           BypassGovernanceRetention=True)  # fmt: skip
    result = bypasser.delete_objects(
        Bucket=LOCKED, Delete={"Objects": [{"Key": "gov1", "VersionId": vids[1]}]},
        BypassGovernanceRetention=True,
    )  # fmt: skip
    assert not result.get("Errors") and result["Deleted"][0]["VersionId"] == vids[1]
    s3.delete_object(Bucket=LOCKED, Key="gov2", VersionId=vids[2], BypassGovernanceRetention=True)
    for key, vid in zip(("gov0", "gov1", "gov2"), vids, strict=True):
        status, code, _ = _refused(s3.head_object, Bucket=LOCKED, Key=key, VersionId=vid)
        assert status == 404


def test_expired_retention_no_longer_protects(s3: Any) -> None:
    vid = s3.put_object(
        Bucket=LOCKED, Key="short", Body=b"s", ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2),
    )["VersionId"]  # fmt: skip
    assert _refused(s3.delete_object, Bucket=LOCKED, Key="short", VersionId=vid)[0] == 403
    import time

    time.sleep(2.5)
    s3.delete_object(Bucket=LOCKED, Key="short", VersionId=vid)
