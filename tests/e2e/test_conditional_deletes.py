"""Conditional deletes over the real server: DeleteObject with ``If-Match``,
``x-amz-if-match-last-modified-time`` and ``x-amz-if-match-size``, and
DeleteObjects with per-object ``ETag``, ``LastModifiedTime`` and ``Size``;
every outcome, in versioned and unversioned buckets.

Conditions are evaluated against the key's current version (a delete marker
counts as no object): a mismatch of any one is 412 PreconditionFailed naming
it; ``If-Match`` on no object is 404 NoSuchKey; the time and size conditions
alone hold on no object (AWS answers 204).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import status_and_code
from tests.e2e._signing import signed_request
from tests.harness import SeglakeServer

MTIME = "x-amz-if-match-last-modified-time"
SIZE = "x-amz-if-match-size"


@pytest.fixture(params=["versioned", "unversioned"])
def any_bucket(
    request: pytest.FixtureRequest, server: SeglakeServer, make_bucket: Callable[..., str]
) -> tuple[str, bool]:
    """(bucket, versioned): a default (versioned) bucket, or one created
    unversioned (deletes remove the object instead of adding a marker)."""
    if request.param == "versioned":
        return make_bucket(), True
    name = f"{make_bucket('scratch')}-u"
    resp = signed_request(
        server, "PUT", f"/{name}", headers={"x-seglake-versioning": "unversioned"}
    )
    assert resp.status_code == 200, resp.text
    return name, False


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False
    return True


def test_delete_if_match(s3: Any, any_bucket: tuple[str, bool]) -> None:
    bucket, versioned = any_bucket
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"body")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch='"0123"')
    assert status_and_code(exc) == (412, "PreconditionFailed")
    assert exists(s3, bucket, "k")
    out = s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert bool(out.get("DeleteMarker")) is versioned
    assert not exists(s3, bucket, "k")
    # Now no object (a delete marker or nothing): If-Match is 404.
    for value in (etag, "*"):
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=bucket, Key="k", IfMatch=value)
        assert status_and_code(exc) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="never", IfMatch=etag)
    assert status_and_code(exc) == (404, "NoSuchKey")
    # "*" asks only that the object exist; bare ETags match too.
    s3.put_object(Bucket=bucket, Key="star", Body=b"s")
    s3.delete_object(Bucket=bucket, Key="star", IfMatch="*")
    assert not exists(s3, bucket, "star")
    bare = s3.put_object(Bucket=bucket, Key="bare", Body=b"b")["ETag"].strip('"')
    s3.delete_object(Bucket=bucket, Key="bare", IfMatch=bare)
    assert not exists(s3, bucket, "bare")


def test_delete_if_match_last_modified_time_and_size(s3: Any, any_bucket: tuple[str, bool]) -> None:
    bucket, _ = any_bucket
    s3.put_object(Bucket=bucket, Key="k", Body=b"twelve bytes")
    head = s3.head_object(Bucket=bucket, Key="k")
    modified: dt.datetime = head["LastModified"]
    for cond in (
        {"IfMatchLastModifiedTime": modified - dt.timedelta(seconds=1)},
        {"IfMatchSize": 11},
        {"IfMatchSize": 12, "IfMatchLastModifiedTime": modified + dt.timedelta(seconds=1)},
        {"IfMatch": head["ETag"], "IfMatchSize": 0},
    ):
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=bucket, Key="k", **cond)
        assert status_and_code(exc) == (412, "PreconditionFailed"), cond
        assert exists(s3, bucket, "k")
    out = s3.delete_object(
        Bucket=bucket, Key="k", IfMatch=head["ETag"], IfMatchLastModifiedTime=modified,
        IfMatchSize=12,
    )  # fmt: skip
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not exists(s3, bucket, "k")
    # Time and size alone hold on no object: 204, as an ordinary delete.
    for cond in ({"IfMatchSize": 5}, {"IfMatchLastModifiedTime": modified}):
        out = s3.delete_object(Bucket=bucket, Key="k", **cond)
        assert out["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_412_names_the_delete_condition_and_bad_values_are_400(
    server: SeglakeServer, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"abc")
    head = s3.head_object(Bucket=bucket, Key="k")
    stamp = head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
    cases = [
        ({"If-Match": '"nope"'}, 412, b"<Condition>If-Match</Condition>"),
        ({SIZE: "4"}, 412, f"<Condition>{SIZE}</Condition>".encode()),
        ({MTIME: "Mon, 01 Jan 2024 00:00:00 GMT"}, 412, f"<Condition>{MTIME}</Condition>".encode()),
        ({SIZE: "three"}, 400, b"<Code>InvalidArgument</Code>"),
        ({SIZE: "-3"}, 400, b"<Code>InvalidArgument</Code>"),
        ({MTIME: "yesterday"}, 400, b"<Code>InvalidArgument</Code>"),
    ]
    for headers, status, needle in cases:
        resp = signed_request(server, "DELETE", f"/{bucket}/k", headers=headers)
        assert resp.status_code == status, (headers, resp.text)
        assert needle in resp.content, (headers, resp.text)
    assert exists(s3, bucket, "k")
    resp = signed_request(server, "DELETE", f"/{bucket}/k", headers={SIZE: "3", MTIME: stamp})
    assert resp.status_code == 204, resp.text
    assert not exists(s3, bucket, "k")


def test_version_delete_conditions_apply_to_the_current_version(s3: Any, bucket: str) -> None:
    """AWS: conditional delete evaluations apply to the current version only,
    also with ?versionId=."""
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="k", VersionId=v1["VersionId"], IfMatch=v1["ETag"])
    assert status_and_code(exc) == (412, "PreconditionFailed")
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v1["VersionId"], IfMatch=v2["ETag"])
    versions = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert [v["VersionId"] for v in versions] == [v2["VersionId"]]


def test_delete_objects_conditions_every_outcome(s3: Any, any_bucket: tuple[str, bool]) -> None:
    bucket, _ = any_bucket
    heads = {}
    for key in ("match", "etag-wrong", "time-wrong", "size-wrong", "time-size", "plain"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        heads[key] = s3.head_object(Bucket=bucket, Key=key)
    later = heads["time-wrong"]["LastModified"] + dt.timedelta(seconds=5)
    objects = [
        {"Key": "match", "ETag": heads["match"]["ETag"]},
        {"Key": "etag-wrong", "ETag": '"0123456789abcdef0123456789abcdef"'},
        {"Key": "time-wrong", "LastModifiedTime": later},
        {"Key": "size-wrong", "Size": 999},
        {
            "Key": "time-size", "LastModifiedTime": heads["time-size"]["LastModified"],
            "Size": len(b"time-size"), "ETag": heads["time-size"]["ETag"],
        },
        {"Key": "plain"},
        {"Key": "missing", "ETag": heads["match"]["ETag"]},
        {"Key": "missing-size", "Size": 1},
    ]  # fmt: skip
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    deleted = sorted(d["Key"] for d in out.get("Deleted", []))
    errors = {e["Key"]: e["Code"] for e in out.get("Errors", [])}
    assert deleted == ["match", "missing-size", "plain", "time-size"]
    assert errors == {
        "etag-wrong": "PreconditionFailed", "time-wrong": "PreconditionFailed",
        "size-wrong": "PreconditionFailed", "missing": "NoSuchKey",
    }  # fmt: skip
    for key in ("etag-wrong", "time-wrong", "size-wrong"):
        assert exists(s3, bucket, key)
    for key in ("match", "time-size", "plain"):
        assert not exists(s3, bucket, key)
    # Quiet mode still reports each failed condition.
    quiet = s3.delete_objects(
        Bucket=bucket,
        Delete={"Quiet": True, "Objects": [{"Key": "size-wrong", "Size": 1}, {"Key": "plain"}]},
    )
    assert [(e["Key"], e["Code"]) for e in quiet["Errors"]] == [
        ("size-wrong", "PreconditionFailed")
    ]
    assert "Deleted" not in quiet
