"""DeleteObjects (POST ?delete): boto3, awscli ``s3 rm --recursive``, and raw
requests for the integrity headers and malformed documents.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zlib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_headers
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
AWS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"


def post_delete(
    server: SeglakeServer, bucket: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    url = f"{server.endpoint}/{bucket}?delete"
    hdrs = signed_headers("POST", url, body=body, headers=headers)
    return httpx.post(url, headers=hdrs, content=body)


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def delete_doc(keys: list[str], quiet: bool = False) -> bytes:
    objs = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    return (
        f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Quiet>{'true' if quiet else 'false'}</Quiet>{objs}</Delete>"
    ).encode()


def put_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())


def live_keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_delete_objects_creates_markers(s3: Any, bucket: str) -> None:
    keys = [f"k{i:02d}" for i in range(30)]
    put_keys(s3, bucket, keys)
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert "Errors" not in out
    deleted = out["Deleted"]
    assert [d["Key"] for d in deleted] == keys
    for d in deleted:
        assert d["DeleteMarker"] is True
        assert len(d["DeleteMarkerVersionId"]) == 24
        assert "VersionId" not in d
    assert live_keys(s3, bucket) == []
    versions = s3.list_object_versions(Bucket=bucket)
    assert len(versions["DeleteMarkers"]) == 30
    assert len(versions["Versions"]) == 30


def test_quiet_lists_only_errors(s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["a", "b"])
    out = s3.delete_objects(
        Bucket=bucket,
        Delete={"Quiet": True, "Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "never-existed"}]},
    )
    assert "Deleted" not in out and "Errors" not in out
    assert live_keys(s3, bucket) == []
    out = s3.delete_objects(
        Bucket=bucket,
        Delete={"Quiet": True, "Objects": [{"Key": "a", "VersionId": "bogus"}, {"Key": "c"}]},
    )
    assert "Deleted" not in out
    assert out["Errors"] == [
        {
            "Key": "a", "VersionId": "bogus", "Code": "NoSuchVersion",
            "Message": "The specified version does not exist.",
        }
    ]  # fmt: skip


def test_versions_markers_and_errors_mixed(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="multi", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="multi", Body=b"2")["VersionId"]
    s3.put_object(Bucket=bucket, Key="other", Body=b"o")
    marker = s3.delete_object(Bucket=bucket, Key="gone-soon")["VersionId"]  # marker, no data
    s3.put_object(Bucket=bucket, Key="plain", Body=b"p")
    objects = [
        {"Key": "multi", "VersionId": v2},  # the current version: v1 becomes current
        {"Key": "gone-soon", "VersionId": marker},  # removes a delete marker
        {"Key": "multi", "VersionId": "not-a-version"},  # malformed: per-key error
        {"Key": "k" * 1025},  # too long: per-key error
        {"Key": "multi", "VersionId": "0" * 24},  # well-formed, absent: success
        {"Key": "plain"},  # a new delete marker
    ]
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    deleted = out["Deleted"]
    assert deleted[0] == {"Key": "multi", "VersionId": v2}
    assert deleted[1] == {
        "Key": "gone-soon", "VersionId": marker, "DeleteMarker": True,
        "DeleteMarkerVersionId": marker,
    }  # fmt: skip
    assert deleted[2] == {"Key": "multi", "VersionId": "0" * 24}
    assert deleted[3]["Key"] == "plain" and deleted[3]["DeleteMarker"] is True
    errors = {e["Code"]: e for e in out["Errors"]}
    assert errors["NoSuchVersion"]["Key"] == "multi"
    assert errors["NoSuchVersion"]["VersionId"] == "not-a-version"
    assert errors["KeyTooLongError"]["Key"] == "k" * 1025
    got = s3.get_object(Bucket=bucket, Key="multi")
    assert got["Body"].read() == b"1" and got["VersionId"] == v1
    assert sorted(live_keys(s3, bucket)) == ["multi", "other"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="gone-soon")
    assert not versions.get("DeleteMarkers") and not versions.get("Versions")


def test_unversioned_bucket_deletes_for_real(server: SeglakeServer, s3: Any, request: Any) -> None:
    from tests.e2e.conftest import bucket_name

    name = bucket_name(request.node.name)
    url = f"{server.endpoint}/{name}"
    hdrs = signed_headers("PUT", url, headers={"x-seglake-versioning": "unversioned"})
    assert httpx.put(url, headers=hdrs).status_code == 200
    put_keys(s3, name, ["x", "y"])
    out = s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "x"}, {"Key": "y"}]})
    assert out["Deleted"] == [{"Key": "x"}, {"Key": "y"}]
    assert live_keys(s3, name) == []
    assert not s3.list_object_versions(Bucket=name).get("DeleteMarkers")


def test_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket="no-such-bucket-md", Delete={"Objects": [{"Key": "a"}]})
    assert exc.value.response["Error"]["Code"] == "NoSuchBucket"


def test_integrity_headers(server: SeglakeServer, s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["m1", "m2", "m3"])
    body = delete_doc(["m1"])
    resp = post_delete(server, bucket, body)
    assert resp.status_code == 400
    assert b"<Code>InvalidRequest</Code>" in resp.content
    assert b"Missing required header for this request: Content-Md5" in resp.content

    resp = post_delete(server, bucket, body, md5_header(body + b" "))
    assert resp.status_code == 400 and b"<Code>BadDigest</Code>" in resp.content
    crc = base64.b64encode(zlib.crc32(body + b"x").to_bytes(4, "big")).decode()
    resp = post_delete(server, bucket, body, {"x-amz-checksum-crc32": crc})
    assert resp.status_code == 400 and b"<Code>BadDigest</Code>" in resp.content
    assert sorted(live_keys(s3, bucket)) == ["m1", "m2", "m3"]

    resp = post_delete(server, bucket, body, md5_header(body))
    assert resp.status_code == 200, resp.text
    root = ElementTree.fromstring(resp.content)
    assert root.tag == f"{S3_NS}DeleteResult"
    assert root.findtext(f"{S3_NS}Deleted/{S3_NS}Key") == "m1"
    body = delete_doc(["m2"])
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert post_delete(server, bucket, body, {"x-amz-checksum-crc32": crc}).status_code == 200
    body = delete_doc(["m3"])
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert post_delete(server, bucket, body, {"x-amz-checksum-sha256": sha}).status_code == 200
    assert live_keys(s3, bucket) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<Delete></Delete>",
        b"<Delete><Quiet>maybe</Quiet><Object><Key>a</Key></Object></Delete>",
        b"<Delete><Object><VersionId>x</VersionId></Object></Delete>",
        b"<Delete><Object><Key></Key></Object></Delete>",
        b"<Delete><Object><Key>a</Key><Color>red</Color></Object></Delete>",
        b"<Remove><Object><Key>a</Key></Object></Remove>",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "boom">]>'
        b"<Delete><Object><Key>&e;</Key></Object></Delete>",
        delete_doc([f"k{i}" for i in range(1001)]),
    ],
    ids=[
        "empty", "garbage", "no-objects", "bad-quiet", "no-key", "empty-key", "unknown-field",
        "wrong-root", "entity", "1001-keys",
    ],
)  # fmt: skip
def test_malformed_documents(server: SeglakeServer, bucket: str, body: bytes) -> None:
    resp = post_delete(server, bucket, body, md5_header(body))
    assert resp.status_code == 400, resp.text
    assert b"<Code>MalformedXML</Code>" in resp.content


def test_thousand_keys_is_the_limit(server: SeglakeServer, s3: Any, bucket: str) -> None:
    body = delete_doc([f"k{i}" for i in range(1000)], quiet=True)
    resp = post_delete(server, bucket, body, md5_header(body))
    assert resp.status_code == 200, resp.text
    assert ElementTree.fromstring(resp.content).findall(f"{S3_NS}Deleted") == []


def test_body_size_limit(server: SeglakeServer, bucket: str) -> None:
    body = b"<Delete>" + b" " * (2 * 1024 * 1024) + b"</Delete>"
    resp = post_delete(server, bucket, body, md5_header(body))
    assert resp.status_code == 400
    assert b"<Code>MaxMessageLengthExceeded</Code>" in resp.content


def test_odd_keys(s3: Any, bucket: str) -> None:
    keys = ["a&b<c>", "sp ace", "ü/😀", "q?x", "../dots"]
    put_keys(s3, bucket, keys)
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert [d["Key"] for d in out["Deleted"]] == keys
    assert live_keys(s3, bucket) == []


def aws(server: SeglakeServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }  # fmt: skip
    return subprocess.run(
        [str(AWS), "--endpoint-url", server.endpoint, *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_awscli_rm_recursive(server: SeglakeServer, s3: Any, bucket: str) -> None:
    keys = [f"tree/{d}/f{i:02d}.txt" for d in ("a", "b", "c") for i in range(10)]
    put_keys(s3, bucket, [*keys, "keep/me.txt", "keep/too.txt"])
    out = aws(server, "s3", "rm", "--recursive", f"s3://{bucket}/tree/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("delete: ") == 30
    assert sorted(live_keys(s3, bucket)) == ["keep/me.txt", "keep/too.txt"]
    # awscli v1's `s3 rm` sends one DeleteObject per key; its s3api command
    # is the DeleteObjects path (with the checksum header botocore adds).
    out = aws(
        server, "s3api", "delete-objects", "--bucket", bucket, "--delete",
        '{"Objects": [{"Key": "keep/me.txt"}, {"Key": "keep/too.txt"}], "Quiet": false}',
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert '"DeleteMarker": true' in out.stdout
    assert live_keys(s3, bucket) == []
