"""Object and bucket tagging through boto3 (issue #15's tagging section).

Each refusal is checked for its exact status and S3 error code and for
nothing having changed; tags are version metadata, so changing them writes
no object data, and they survive a kill -9 of the writer and a
``rebuild-index`` from the segments alone.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.e2e import test_lifecycle as lifecycle
from tests.e2e._helpers import db_rows, status_and_code
from tests.e2e._signing import signed_request
from tests.e2e.test_presigned_post import post_form
from tests.faults.util import processes_by_name, sigkill, status_retry, wait_restarted
from tests.harness import SeglakeServer, server_fixture

srv = server_fixture(buckets=("tags", "tags-plain"))


@pytest.fixture(scope="module")
def s3(srv: SeglakeServer) -> Any:
    client = srv.s3()
    client.put_bucket_versioning(Bucket="tags", VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_versioning(
        Bucket="tags-plain", VersioningConfiguration={"Status": "Suspended"}
    )
    return client


def tagset(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}


def got_tags(s3: Any, key: str, bucket: str = "tags", **kw: Any) -> list[tuple[str, str]]:
    out = s3.get_object_tagging(Bucket=bucket, Key=key, **kw)
    return [(t["Key"], t["Value"]) for t in out["TagSet"]]


def segment_bytes(srv: SeglakeServer) -> int:
    seg_dir = srv.data_dir / "objects" / "segments"
    return sum(p.stat().st_size for p in seg_dir.iterdir() if p.suffix == ".seg")


def fails(call: Any, **kw: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as exc:
        call(**kw)
    return status_and_code(exc)


# ---- Put/Get/DeleteObjectTagging -------------------------------------------------


def test_put_get_delete_object_tagging(s3: Any, srv: SeglakeServer) -> None:
    v1 = s3.put_object(Bucket="tags", Key="obj", Body=b"x" * 5000)["VersionId"]
    assert got_tags(s3, "obj") == []
    assert "TagCount" not in s3.head_object(Bucket="tags", Key="obj")
    before = segment_bytes(srv)
    chunks = db_rows(srv.data_dir, "SELECT count(*) FROM versions")[0][0]
    pairs = [("project", "seglake"), ("empty", ""), ("ünï", "çödé " * 10), ("k" * 128, "v" * 256)]
    put = s3.put_object_tagging(Bucket="tags", Key="obj", Tagging=tagset(pairs))
    assert put["VersionId"] == v1
    assert got_tags(s3, "obj") == pairs
    got = s3.get_object_tagging(Bucket="tags", Key="obj")
    assert got["VersionId"] == v1
    head = s3.head_object(Bucket="tags", Key="obj")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "4"
    assert s3.get_object(Bucket="tags", Key="obj")["TagCount"] == 4
    # No object data was written: only a small metadata record, no version.
    assert segment_bytes(srv) - before < 4096
    assert db_rows(srv.data_dir, "SELECT count(*) FROM versions")[0][0] == chunks
    # Replacing is whole: the new set, not a merge.
    s3.put_object_tagging(Bucket="tags", Key="obj", Tagging=tagset([("a", "1")]))
    assert got_tags(s3, "obj") == [("a", "1")]
    deleted = s3.delete_object_tagging(Bucket="tags", Key="obj")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted["VersionId"] == v1
    assert got_tags(s3, "obj") == []
    head = s3.head_object(Bucket="tags", Key="obj")
    assert "x-amz-tagging-count" not in head["ResponseMetadata"]["HTTPHeaders"]


def test_tagging_by_version_id(s3: Any) -> None:
    v1 = s3.put_object(Bucket="tags", Key="ver", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket="tags", Key="ver", Body=b"2")["VersionId"]
    r = s3.put_object_tagging(
        Bucket="tags", Key="ver", VersionId=v1, Tagging=tagset([("old", "y")])
    )
    assert r["VersionId"] == v1
    s3.put_object_tagging(Bucket="tags", Key="ver", Tagging=tagset([("new", "y")]))
    assert got_tags(s3, "ver", VersionId=v1) == [("old", "y")]
    assert got_tags(s3, "ver", VersionId=v2) == [("new", "y")]
    assert got_tags(s3, "ver") == [("new", "y")]
    assert s3.head_object(Bucket="tags", Key="ver", VersionId=v1)["TagCount"] == 1
    s3.delete_object_tagging(Bucket="tags", Key="ver", VersionId=v1)
    assert got_tags(s3, "ver", VersionId=v1) == []
    assert got_tags(s3, "ver") == [("new", "y")]


def test_missing_keys_versions_and_delete_markers(s3: Any) -> None:
    assert fails(s3.get_object_tagging, Bucket="tags", Key="nope") == (404, "NoSuchKey")
    assert fails(s3.put_object_tagging, Bucket="tags", Key="nope", Tagging=tagset([])) == (
        404,
        "NoSuchKey",
    )
    assert fails(s3.delete_object_tagging, Bucket="tags", Key="nope") == (404, "NoSuchKey")
    s3.put_object(Bucket="tags", Key="dm", Body=b"x")
    marker = s3.delete_object(Bucket="tags", Key="dm")["VersionId"]
    assert fails(s3.get_object_tagging, Bucket="tags", Key="dm") == (404, "NoSuchKey")
    assert fails(s3.get_object_tagging, Bucket="tags", Key="dm", VersionId=marker) == (
        405,
        "MethodNotAllowed",
    )
    assert fails(
        s3.put_object_tagging, Bucket="tags", Key="dm", VersionId=marker, Tagging=tagset([])
    ) == (405, "MethodNotAllowed")
    assert fails(s3.delete_object_tagging, Bucket="tags", Key="dm", VersionId=marker) == (
        405,
        "MethodNotAllowed",
    )
    missing = "0" * 16 + "deadbeef"
    assert fails(s3.get_object_tagging, Bucket="tags", Key="obj-x", VersionId=missing) == (
        404,
        "NoSuchVersion",
    )
    s3.put_object(Bucket="tags", Key="obj-x", Body=b"x")
    assert fails(
        s3.put_object_tagging, Bucket="tags", Key="obj-x", VersionId=missing, Tagging=tagset([])
    ) == (404, "NoSuchVersion")
    assert fails(s3.get_object_tagging, Bucket="no-such-bkt", Key="k") == (404, "NoSuchBucket")


@pytest.mark.parametrize(
    ("pairs", "code"),
    [
        ([(f"k{i}", "v") for i in range(11)], "InvalidTag"),  # more than 10
        ([("k" * 129, "v")], "InvalidTag"),
        ([("k", "v" * 257)], "InvalidTag"),
        ([("dup", "1"), ("dup", "2")], "InvalidTag"),
        ([("aws:reserved", "v")], "InvalidTag"),
    ],
)
def test_tag_limits(s3: Any, pairs: list[tuple[str, str]], code: str) -> None:
    s3.put_object(Bucket="tags", Key="limits", Body=b"x")
    s3.put_object_tagging(Bucket="tags", Key="limits", Tagging=tagset([("keep", "me")]))
    assert fails(s3.put_object_tagging, Bucket="tags", Key="limits", Tagging=tagset(pairs)) == (
        400,
        code,
    )
    assert got_tags(s3, "limits") == [("keep", "me")]  # nothing changed


def test_ten_tags_and_unicode_lengths_are_accepted(s3: Any) -> None:
    s3.put_object(Bucket="tags", Key="ten", Body=b"x")
    pairs = [(f"k{i}", "é" * 256) for i in range(9)] + [("中" * 128, "")]
    s3.put_object_tagging(Bucket="tags", Key="ten", Tagging=tagset(pairs))
    assert got_tags(s3, "ten") == pairs


def test_characters_outside_the_tag_pattern_are_invalid_tag(s3: Any) -> None:
    """AWS's S3 Tag pattern: letters, numbers, separators and _.:/=+-@ only.
    A comma or a parenthesis (values real clients send) is InvalidTag, and
    the object's tags stay as they were."""
    s3.put_object(Bucket="tags", Key="chars", Body=b"x")
    s3.put_object_tagging(
        Bucket="tags", Key="chars", Tagging=tagset([("ok", "a:b/c=d+e-f@g_h.i j")])
    )
    for pairs, field in (([("platform", "metal,openstack")], "TagValue"),
                         ([("name(x)", "1")], "TagKey"), ([("price", "€5")], "TagValue")):  # fmt: skip
        with pytest.raises(ClientError) as err:
            s3.put_object_tagging(Bucket="tags", Key="chars", Tagging=tagset(pairs))
        e = err.value.response
        assert e["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert e["Error"]["Code"] == "InvalidTag", e
        assert e["Error"]["Message"] == f"The {field} you have provided is invalid"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="tags", Key="chars2", Body=b"y", Tagging="team=a%2Cb")
    assert err.value.response["Error"]["Code"] == "InvalidTag"
    assert got_tags(s3, "chars") == [("ok", "a:b/c=d+e-f@g_h.i j")]


def _raw_put_tagging(srv: SeglakeServer, key: str, body: bytes) -> httpx.Response:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return signed_request(
        srv, "PUT", f"/tags/{key}", "tagging", headers={"Content-MD5": md5}, body=body
    )


def test_malformed_tagging_xml(s3: Any, srv: SeglakeServer) -> None:
    s3.put_object(Bucket="tags", Key="xml", Body=b"x")
    for body in (
        b"not xml",
        b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value><Extra/></Tag></TagSet></Tagging>",
        b"<Other><TagSet/></Other>",
        b"<Tagging></Tagging>",
    ):
        r = _raw_put_tagging(srv, "xml", body)
        assert r.status_code == 400 and b"<Code>MalformedXML</Code>" in r.content, (body, r.text)
    # An empty key (boto3 will not send one) is an invalid tag, not bad XML.
    empty = b"<Tagging><TagSet><Tag><Key></Key><Value>v</Value></Tag></TagSet></Tagging>"
    r = _raw_put_tagging(srv, "xml", empty)
    assert r.status_code == 400 and b"<Code>InvalidTag</Code>" in r.content, r.text
    # Without Content-MD5 or a checksum: refused as AWS does.
    ok = b"<Tagging><TagSet/></Tagging>"
    r = signed_request(srv, "PUT", "/tags/xml", "tagging", body=ok)
    assert r.status_code == 400 and b"<Code>InvalidRequest</Code>" in r.content, r.text
    assert got_tags(s3, "xml") == []


# ---- tags given at write time ----------------------------------------------------


def test_x_amz_tagging_on_put_object(s3: Any) -> None:
    s3.put_object(Bucket="tags", Key="hdr", Body=b"x", Tagging="a=1&b=&c%20d=e%2Bf")
    assert got_tags(s3, "hdr") == [("a", "1"), ("b", ""), ("c d", "e+f")]
    assert s3.get_object(Bucket="tags", Key="hdr")["TagCount"] == 3
    assert fails(s3.put_object, Bucket="tags", Key="hdr2", Body=b"x", Tagging="a=1&a=2") == (
        400,
        "InvalidTag",
    )
    assert fails(
        s3.put_object, Bucket="tags", Key="hdr2", Body=b"x",
        Tagging="&".join(f"k{i}=v" for i in range(11)),
    ) == (400, "InvalidTag")  # fmt: skip
    assert fails(s3.head_object, Bucket="tags", Key="hdr2") == (404, "404")


def test_x_amz_tagging_on_multipart_upload(s3: Any) -> None:
    up = s3.create_multipart_upload(Bucket="tags", Key="mpu", Tagging="team=blue")
    part = s3.upload_part(
        Bucket="tags", Key="mpu", UploadId=up["UploadId"], PartNumber=1, Body=b"p"
    )
    s3.complete_multipart_upload(
        Bucket="tags", Key="mpu", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert got_tags(s3, "mpu") == [("team", "blue")]
    assert fails(s3.create_multipart_upload, Bucket="tags", Key="mpu2", Tagging="aws:x=1") == (
        400,
        "InvalidTag",
    )


def test_copy_object_tagging_directive(s3: Any) -> None:
    s3.put_object(Bucket="tags", Key="src", Body=b"x", Tagging="from=source")
    s3.copy_object(Bucket="tags", Key="c-default", CopySource="tags/src")
    assert got_tags(s3, "c-default") == [("from", "source")]
    s3.copy_object(
        Bucket="tags", Key="c-copy", CopySource="tags/src", TaggingDirective="COPY",
        Tagging="ignored=1",
    )  # fmt: skip
    assert got_tags(s3, "c-copy") == [("from", "source")]
    s3.copy_object(
        Bucket="tags", Key="c-replace", CopySource="tags/src", TaggingDirective="REPLACE",
        Tagging="new=tag",
    )  # fmt: skip
    assert got_tags(s3, "c-replace") == [("new", "tag")]
    s3.copy_object(Bucket="tags", Key="c-none", CopySource="tags/src", TaggingDirective="REPLACE")
    assert got_tags(s3, "c-none") == []
    assert fails(
        s3.copy_object, Bucket="tags", Key="c-bad", CopySource="tags/src",
        TaggingDirective="MERGE",
    ) == (400, "InvalidArgument")  # fmt: skip
    # The source keeps its tags.
    assert got_tags(s3, "src") == [("from", "source")]


def test_presigned_post_tagging_field(s3: Any, srv: SeglakeServer) -> None:
    s3 = srv.s3(signature_version="s3v4")  # boto3 signs forms with SigV2 otherwise
    xml = "<Tagging><TagSet><Tag><Key>form</Key><Value>yes</Value></Tag></TagSet></Tagging>"
    post = s3.generate_presigned_post(
        "tags", "posted", Fields={"tagging": xml}, Conditions=[{"tagging": xml}], ExpiresIn=300
    )
    resp = post_form(post["url"], post["fields"], b"form body")
    assert resp.status_code == 204, resp.text
    assert got_tags(s3, "posted") == [("form", "yes")]
    bad = "<Tagging><TagSet><Tag><Key>aws:x</Key><Value>1</Value></Tag></TagSet></Tagging>"
    post = s3.generate_presigned_post(
        "tags", "posted-bad", Fields={"tagging": bad}, Conditions=[{"tagging": bad}], ExpiresIn=300
    )
    resp = post_form(post["url"], post["fields"], b"form body")
    assert resp.status_code == 400 and b"<Code>InvalidTag</Code>" in resp.content, resp.text
    assert fails(s3.head_object, Bucket="tags", Key="posted-bad") == (404, "404")


def test_null_version_tagging(s3: Any) -> None:
    s3.put_object(Bucket="tags-plain", Key="n", Body=b"x")
    r = s3.put_object_tagging(Bucket="tags-plain", Key="n", Tagging=tagset([("n", "1")]))
    assert r["VersionId"] == "null"
    assert got_tags(s3, "n", bucket="tags-plain", VersionId="null") == [("n", "1")]
    # Overwriting the null version replaces it, tags and all.
    s3.put_object(Bucket="tags-plain", Key="n", Body=b"y")
    assert got_tags(s3, "n", bucket="tags-plain") == []


# ---- bucket tagging --------------------------------------------------------------


def test_bucket_tagging(s3: Any) -> None:
    assert fails(s3.get_bucket_tagging, Bucket="tags") == (404, "NoSuchTagSet")
    pairs = [(f"k{i}", f"v{i}") for i in range(50)]
    s3.put_bucket_tagging(Bucket="tags", Tagging=tagset(pairs))
    got = s3.get_bucket_tagging(Bucket="tags")["TagSet"]
    assert [(t["Key"], t["Value"]) for t in got] == pairs
    too_many = [(f"k{i}", "v") for i in range(51)]
    assert fails(s3.put_bucket_tagging, Bucket="tags", Tagging=tagset(too_many)) == (
        400,
        "InvalidTag",
    )
    assert fails(s3.put_bucket_tagging, Bucket="tags", Tagging=tagset([("aws:x", "1")])) == (
        400,
        "InvalidTag",
    )
    assert len(s3.get_bucket_tagging(Bucket="tags")["TagSet"]) == 50  # unchanged
    r = s3.delete_bucket_tagging(Bucket="tags")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert fails(s3.get_bucket_tagging, Bucket="tags") == (404, "NoSuchTagSet")
    assert fails(s3.get_bucket_tagging, Bucket="no-such-bkt") == (404, "NoSuchBucket")


# ---- durability --------------------------------------------------------------------


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_tags_survive_writer_kill_and_rebuild_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as server:
        s3 = server.s3()
        s3.create_bucket(Bucket="durable")
        s3.put_bucket_versioning(Bucket="durable", VersioningConfiguration={"Status": "Enabled"})
        v1 = s3.put_object(Bucket="durable", Key="a", Body=b"1", Tagging="at=put")["VersionId"]
        s3.put_object(Bucket="durable", Key="a", Body=b"2")
        s3.put_object_tagging(Bucket="durable", Key="a", Tagging=tagset([("latest", "yes")]))
        s3.put_object(Bucket="durable", Key="b", Body=b"b", Tagging="gone=soon")
        s3.delete_object_tagging(Bucket="durable", Key="b")
        s3.put_bucket_tagging(Bucket="durable", Tagging=tagset([("cost", "center")]))
        writer = processes_by_name(status_retry(server))["writer"]
        sigkill(writer["pid"])
        wait_restarted(server, "writer", writer["pid"], timeout=20.0)
        assert got_tags(s3, "a", bucket="durable") == [("latest", "yes")]
        assert got_tags(s3, "a", bucket="durable", VersionId=v1) == [("at", "put")]
        assert got_tags(s3, "b", bucket="durable") == []
        assert server.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        (data / f"meta.db{suffix}").unlink(missing_ok=True)
    done = _cli(data, "rebuild-index")
    assert done.returncode == 0, done.stderr
    with SeglakeServer(data, frontends=1) as server:
        s3 = server.s3()
        assert got_tags(s3, "a", bucket="durable") == [("latest", "yes")]
        assert got_tags(s3, "a", bucket="durable", VersionId=v1) == [("at", "put")]
        assert got_tags(s3, "b", bucket="durable") == []
        assert s3.head_object(Bucket="durable", Key="a")["TagCount"] == 1
        tags = s3.get_bucket_tagging(Bucket="durable")["TagSet"]
        assert tags == [{"Key": "cost", "Value": "center"}]
        assert server.stop() == 0


# ---- lifecycle filters on tags -------------------------------------------------------

lcsrv = server_fixture(
    "--lifecycle-day-seconds", str(lifecycle.DAY_S), "--lifecycle-interval", "0",
)  # fmt: skip


def test_lifecycle_tag_filters_match_real_tags(lcsrv: SeglakeServer) -> None:
    s3 = lcsrv.s3()
    s3.create_bucket(Bucket="lcb")
    s3.put_bucket_versioning(Bucket="lcb", VersioningConfiguration={"Status": "Suspended"})
    lifecycle.put_rules(
        s3, "lcb",
        {"ID": "one-tag", "Status": "Enabled", "Filter": {"Tag": {"Key": "tmp", "Value": "yes"}},
         "Expiration": {"Days": 1}},
        {"ID": "and-tags", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "x", "Value": "1"},
                                                     {"Key": "y", "Value": "2"}]}},
         "Expiration": {"Days": 1}},
    )  # fmt: skip
    out = s3.put_object(Bucket="lcb", Key="t1", Body=b"1", Tagging="tmp=yes")
    assert 'rule-id="one-tag"' in out["Expiration"]
    s3.put_object(Bucket="lcb", Key="t2", Body=b"2", Tagging="tmp=no")
    s3.put_object(Bucket="lcb", Key="a/both", Body=b"3", Tagging="x=1&y=2&z=3")
    s3.put_object(Bucket="lcb", Key="a/one", Body=b"4", Tagging="x=1")
    s3.put_object(Bucket="lcb", Key="b/both", Body=b"5", Tagging="x=1&y=2")
    s3.put_object(Bucket="lcb", Key="later", Body=b"6")
    # Tagged after the write: the filter sees the tags as they are now.
    s3.put_object_tagging(Bucket="lcb", Key="later", Tagging=tagset([("tmp", "yes")]))
    assert 'rule-id="one-tag"' in s3.head_object(Bucket="lcb", Key="later")["Expiration"]
    assert "Expiration" not in s3.head_object(Bucket="lcb", Key="t2")
    time.sleep(lifecycle.ONE_DAY_PASSED_S)
    report = lifecycle.run_pass(lcsrv, "lcb")
    assert report["applied"]["expire-current"] == 3, report
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="lcb").get("Contents", []))
    assert left == ["a/one", "b/both", "t2"]


# ---- policies: tagging actions and tag condition keys ----------------------------------

TAG_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "secret-objects", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::ptags/*",
         "Condition": {"StringEquals": {"s3:ExistingObjectTag/secret": "yes"}}},
        {"Sid": "no-forbidden-key", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": "arn:aws:s3:::ptags/*",
         "Condition": {"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["forbidden"]}}},
        {"Sid": "no-top-level", "Effect": "Deny", "Principal": "*",
         "Action": ["s3:PutObjectTagging", "s3:PutObject"], "Resource": "arn:aws:s3:::ptags/*",
         "Condition": {"StringEquals": {"s3:RequestObjectTag/level": "top"}}},
        {"Sid": "no-version-tags", "Effect": "Deny", "Principal": "*",
         "Action": "s3:GetObjectVersionTagging", "Resource": "arn:aws:s3:::ptags/*"},
        {"Sid": "no-bucket-tags", "Effect": "Deny", "Principal": "*",
         "Action": "s3:PutBucketTagging", "Resource": "arn:aws:s3:::ptags"},
    ],
}  # fmt: skip


def test_policy_actions_and_tag_condition_keys(srv: SeglakeServer) -> None:
    import json

    import boto3
    from botocore.config import Config as BotoConfig

    from tests.harness import REGION

    subprocess.run(
        [sys.executable, "-m", "seglake.cli", "keys", "create", "--key-access", "tagger",
         "--key-secret", "tagger-secret-1", "--key-policy", "rw", "--data-dir", str(srv.data_dir)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    admin = srv.s3()
    admin.create_bucket(Bucket="ptags")
    admin.put_bucket_versioning(Bucket="ptags", VersioningConfiguration={"Status": "Enabled"})
    admin.put_bucket_policy(Bucket="ptags", Policy=json.dumps(TAG_POLICY))
    s3 = boto3.client(
        "s3", endpoint_url=srv.endpoint, aws_access_key_id="tagger",
        aws_secret_access_key="tagger-secret-1", region_name=REGION,
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )  # fmt: skip
    # s3:ExistingObjectTag/<key>: the object's tags as they are now.
    v = s3.put_object(Bucket="ptags", Key="doc", Body=b"d", Tagging="secret=no")["VersionId"]
    assert s3.get_object(Bucket="ptags", Key="doc")["Body"].read() == b"d"
    s3.put_object_tagging(Bucket="ptags", Key="doc", Tagging=tagset([("secret", "yes")]))
    assert fails(s3.get_object, Bucket="ptags", Key="doc") == (403, "AccessDenied")
    s3.delete_object_tagging(Bucket="ptags", Key="doc")
    assert s3.get_object(Bucket="ptags", Key="doc")["Body"].read() == b"d"
    # s3:RequestObjectTagKeys and s3:RequestObjectTag/<key> from x-amz-tagging ...
    assert fails(s3.put_object, Bucket="ptags", Key="f", Body=b"f", Tagging="ok=1&forbidden=x") == (
        403,
        "AccessDenied",
    )
    assert fails(s3.put_object, Bucket="ptags", Key="f", Body=b"f", Tagging="level=top") == (
        403,
        "AccessDenied",
    )
    s3.put_object(Bucket="ptags", Key="f", Body=b"f", Tagging="level=low")
    # ... and from a PutObjectTagging body (decided once the body is read).
    assert fails(
        s3.put_object_tagging, Bucket="ptags", Key="f", Tagging=tagset([("level", "top")])
    ) == (403, "AccessDenied")
    assert got_tags(s3, "f", bucket="ptags") == [("level", "low")]
    # s3:GetObjectVersionTagging applies only with a versionId.
    assert got_tags(s3, "doc", bucket="ptags") == []
    assert fails(s3.get_object_tagging, Bucket="ptags", Key="doc", VersionId=v) == (
        403,
        "AccessDenied",
    )
    assert fails(s3.put_bucket_tagging, Bucket="ptags", Tagging=tagset([("a", "b")])) == (
        403,
        "AccessDenied",
    )
    admin.delete_bucket_policy(Bucket="ptags")


def test_tag_change_flushed_but_not_committed_is_restated(tmp_path: Path) -> None:
    """A crash between a tagging batch's segment flush and its COMMIT: the
    version-meta record is durable, the change is not. Recovery appends the
    database's value after it, so a replay (rebuild-index) gives the tags
    the database kept, not the lost ones."""
    import json

    from botocore.exceptions import BotoCoreError

    data = tmp_path / "data"
    marker = tmp_path / "fired"
    with SeglakeServer(
        data, frontends=1, env={"SEGLAKE_FAILPOINTS": f"before_commit=kill@3:{marker}"}
    ) as server:
        s3 = server.s3(max_attempts=1)
        s3.create_bucket(Bucket="crash")  # commit 1
        s3.put_object(Bucket="crash", Key="k", Body=b"x", Tagging="kept=1")  # commit 2
        with pytest.raises((ClientError, BotoCoreError)):
            s3.put_object_tagging(Bucket="crash", Key="k", Tagging=tagset([("lost", "1")]))
        assert marker.exists()
        deadline = time.monotonic() + 60
        while True:  # the supervisor restarts the writer into recovery
            try:
                s3.put_object(Bucket="crash", Key="after", Body=b"after")
                break
            except (ClientError, BotoCoreError):
                assert time.monotonic() < deadline, server.log_tail()
                time.sleep(0.2)
        assert got_tags(s3, "k", bucket="crash") == [("kept", "1")]
        assert server.stop() == 0
    out = _cli(data, "rebuild-index", "--dry-run", "--json")
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["differences"] == 0, doc
    for suffix in ("", "-wal", "-shm"):
        (data / f"meta.db{suffix}").unlink(missing_ok=True)
    assert _cli(data, "rebuild-index").returncode == 0
    with SeglakeServer(data, frontends=1) as server:
        assert got_tags(server.s3(), "k", bucket="crash") == [("kept", "1")]
        assert server.stop() == 0
