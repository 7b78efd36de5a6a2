"""SSE-C (customer-provided keys) end to end.

The server runs with ``--sse-c-allow-http`` (tests speak plain HTTP on
loopback); one test starts a server without it to see AWS's refusal.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import db_rows, status_and_code
from tests.e2e._signing import signed_request
from tests.e2e.test_sse import MARKER, PLAIN_CHUNK, files_containing, marked_body
from tests.harness import SeglakeServer

KEY = os.urandom(32)
OTHER = os.urandom(32)


def key_md5(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def sse_c(key: bytes = KEY) -> dict[str, Any]:
    """boto3's SSE-C arguments (it base64-encodes the key and adds the MD5)."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def raw_sse_c(
    key: bytes = KEY, prefix: str = "x-amz-server-side-encryption-customer-"
) -> dict[str, str]:
    return {
        prefix + "algorithm": "AES256",
        prefix + "key": base64.b64encode(key).decode(),
        prefix + "key-md5": key_md5(key),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeglakeServer]:
    root = tmp_path_factory.mktemp("ssec")
    args = ["--sse-c-allow-http", "--min-part-size", "1024"]
    with SeglakeServer(root / "data", frontends=2, extra_args=args) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    return server.s3()


def test_put_get_head_ranges(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="ssec")
    body = marked_body(2 * PLAIN_CHUNK + 999, 7)
    put = s3.put_object(Bucket="ssec", Key="k", Body=body, **sse_c())
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == key_md5(KEY)
    assert "ServerSideEncryption" not in put
    got = s3.get_object(Bucket="ssec", Key="k", **sse_c())
    assert got["Body"].read() == body
    assert got["SSECustomerKeyMD5"] == key_md5(KEY)
    head = s3.head_object(Bucket="ssec", Key="k", **sse_c())
    assert head["ContentLength"] == len(body) and head["SSECustomerAlgorithm"] == "AES256"
    for start, end in ((0, 10), (PLAIN_CHUNK - 3, PLAIN_CHUNK + 3), (len(body) - 5, len(body) - 1)):
        part = s3.get_object(Bucket="ssec", Key="k", Range=f"bytes={start}-{end}", **sse_c())
        assert part["Body"].read() == body[start : end + 1]
    assert files_containing(server.data_dir, MARKER) == []
    # Neither the key nor its plain MD5 or SHA-256 is stored anywhere.
    for needle in (
        KEY,
        base64.b64encode(KEY),
        hashlib.md5(KEY).digest(),
        hashlib.sha256(KEY).digest(),
        key_md5(KEY).encode(),
    ):
        assert files_containing(server.data_dir, needle) == []
    # Nor logged.
    log = server.log_path.read_bytes()
    assert base64.b64encode(KEY) not in log and key_md5(KEY).encode() not in log


def test_missing_wrong_and_mismatching_keys(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="ssec-err")
    s3.put_object(Bucket="ssec-err", Key="k", Body=b"secret " + MARKER, **sse_c())
    s3.put_object(Bucket="ssec-err", Key="plain", Body=b"plain")

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ssec-err", Key="k")
    assert status_and_code(e) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ssec-err", Key="k", **sse_c(OTHER))
    assert status_and_code(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="ssec-err", Key="k")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="ssec-err", Key="k", **sse_c(OTHER))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # GetObjectAttributes, as GET: the key is required.
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket="ssec-err", Key="k", ObjectAttributes=["ObjectSize"])
    assert status_and_code(e) == (400, "InvalidRequest")
    r = signed_request(
        server, "GET", "/ssec-err/k", query="attributes",
        headers={**raw_sse_c(), "x-amz-object-attributes": "ObjectSize"},
    )  # fmt: skip
    assert r.status_code == 200 and f"<ObjectSize>{len(MARKER) + 7}</ObjectSize>" in r.text
    # A key for an object that has none.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ssec-err", Key="plain", **sse_c())
    assert status_and_code(e) == (400, "InvalidRequest")
    # An SSE-S3 request for it is not a key: the plain GET is refused.
    assert (
        s3.get_object(Bucket="ssec-err", Key="k", **sse_c())["Body"].read() == b"secret " + MARKER
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"x-amz-server-side-encryption-customer-key-md5": key_md5(OTHER)}, "InvalidArgument"),
        (
            {"x-amz-server-side-encryption-customer-algorithm": "AES128"},
            "InvalidEncryptionAlgorithmError",
        ),
        (
            {"x-amz-server-side-encryption-customer-key": base64.b64encode(b"short").decode()},
            "InvalidArgument",
        ),
        ({"x-amz-server-side-encryption-customer-key": None}, "InvalidArgument"),
        ({"x-amz-server-side-encryption-customer-key-md5": None}, "InvalidArgument"),
        ({"x-amz-server-side-encryption": "AES256"}, "InvalidArgument"),
    ],
)
def test_bad_headers_on_put(
    s3: Any, server: SeglakeServer, change: dict[str, str | None], code: str
) -> None:
    s3.create_bucket(Bucket="ssec-bad")
    headers = raw_sse_c()
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    r = signed_request(server, "PUT", "/ssec-bad/k", headers=headers, body=b"data")
    assert r.status_code == 400, r.text
    assert f"<Code>{code}</Code>" in r.text
    assert base64.b64encode(KEY).decode() not in r.text
    assert "Contents" not in s3.list_objects_v2(Bucket="ssec-bad")


def test_copy_both_sides(s3: Any) -> None:
    s3.create_bucket(Bucket="ssec-copy")
    # No marker: this test stores a plain copy on purpose.
    body = os.urandom(PLAIN_CHUNK + 50)
    s3.put_object(Bucket="ssec-copy", Key="src", Body=body, **sse_c())
    src = {"Bucket": "ssec-copy", "Key": "src"}
    # Without the source's key: refused.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="ssec-copy", Key="d0", CopySource=src)
    assert status_and_code(e) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.copy_object(
            Bucket="ssec-copy", Key="d0", CopySource=src,
            CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=OTHER,
        )  # fmt: skip
    assert status_and_code(e) == (403, "AccessDenied")
    source_key = {
        "CopySourceSSECustomerAlgorithm": "AES256",
        "CopySourceSSECustomerKey": KEY,
    }
    # Same key on both sides.
    s3.copy_object(Bucket="ssec-copy", Key="same", CopySource=src, **source_key, **sse_c())
    assert s3.get_object(Bucket="ssec-copy", Key="same", **sse_c())["Body"].read() == body
    # Another key: re-sealed; the old key no longer opens it.
    out = s3.copy_object(
        Bucket="ssec-copy", Key="other", CopySource=src, **source_key, **sse_c(OTHER)
    )
    assert out["SSECustomerKeyMD5"] == key_md5(OTHER)
    assert s3.get_object(Bucket="ssec-copy", Key="other", **sse_c(OTHER))["Body"].read() == body
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ssec-copy", Key="other", **sse_c())
    assert status_and_code(e) == (403, "AccessDenied")
    # To SSE-S3, and to plain.
    out = s3.copy_object(
        Bucket="ssec-copy", Key="s3", CopySource=src, ServerSideEncryption="AES256", **source_key
    )
    assert out["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="ssec-copy", Key="s3")
    assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
    s3.copy_object(Bucket="ssec-copy", Key="plain", CopySource=src, **source_key)
    got = s3.get_object(Bucket="ssec-copy", Key="plain")
    assert got["Body"].read() == body and "ServerSideEncryption" not in got
    # Plain source to SSE-C.
    s3.copy_object(
        Bucket="ssec-copy",
        Key="back",
        CopySource={"Bucket": "ssec-copy", "Key": "plain"},
        **sse_c(OTHER),
    )
    assert s3.get_object(Bucket="ssec-copy", Key="back", **sse_c(OTHER))["Body"].read() == body


def test_multipart_every_part(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="ssec-mpu")
    p1, p2 = marked_body(PLAIN_CHUNK + 1, 41), marked_body(777, 42)
    up = s3.create_multipart_upload(Bucket="ssec-mpu", Key="m", **sse_c())
    assert up["SSECustomerKeyMD5"] == key_md5(KEY)
    uid = up["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket="ssec-mpu", Key="m", UploadId=uid, PartNumber=1, Body=p1)
    assert status_and_code(e) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.upload_part(
            Bucket="ssec-mpu", Key="m", UploadId=uid, PartNumber=1, Body=p1, **sse_c(OTHER)
        )
    assert status_and_code(e) == (403, "AccessDenied")
    e1 = s3.upload_part(Bucket="ssec-mpu", Key="m", UploadId=uid, PartNumber=1, Body=p1, **sse_c())
    assert e1["SSECustomerKeyMD5"] == key_md5(KEY)
    s3.put_object(Bucket="ssec-mpu", Key="src", Body=p2, **sse_c(OTHER))
    e2 = s3.upload_part_copy(
        Bucket="ssec-mpu", Key="m", UploadId=uid, PartNumber=2,
        CopySource={"Bucket": "ssec-mpu", "Key": "src"},
        CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=OTHER, **sse_c(),
    )["CopyPartResult"]  # fmt: skip
    parts = [{"PartNumber": 1, "ETag": e1["ETag"]}, {"PartNumber": 2, "ETag": e2["ETag"]}]
    s3.complete_multipart_upload(
        Bucket="ssec-mpu", Key="m", UploadId=uid, MultipartUpload={"Parts": parts}
    )
    assert s3.get_object(Bucket="ssec-mpu", Key="m", **sse_c())["Body"].read() == p1 + p2
    got = s3.get_object(Bucket="ssec-mpu", Key="m", PartNumber=2, **sse_c())
    assert got["Body"].read() == p2
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ssec-mpu", Key="m")
    assert status_and_code(e) == (400, "InvalidRequest")
    assert files_containing(server.data_dir, MARKER) == []


def test_refused_over_plain_http(tmp_path: Path) -> None:
    with SeglakeServer(tmp_path / "data", frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="plain-http")
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="plain-http", Key="k", Body=b"x", **sse_c())
        assert status_and_code(e) == (400, "InvalidRequest")
        assert "Contents" not in s3.list_objects_v2(Bucket="plain-http")
        assert srv.stop() == 0
    assert db_rows(tmp_path / "data", "SELECT count(*) FROM versions") == [(0,)]
