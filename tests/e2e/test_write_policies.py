"""Operator write rules: --require-content-md5 and --require-if-match-buckets."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import status_and_code, with_headers
from tests.harness import SeglakeServer, server_fixture

MiB = 1024 * 1024


server = server_fixture(
    "--require-content-md5",
    "--require-if-match-buckets",
    "guarded,other-guarded",
    buckets=["guarded", "free", "source"],
)


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_content_md5_required_for_data(server: SeglakeServer) -> None:
    s3 = server.s3()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="free", Key="k", Body=b"data")
    assert status_and_code(e) == (400, "InvalidRequest")
    assert "Content-MD5" in e.value.response["Error"]["Message"]
    s3.put_object(Bucket="free", Key="k", Body=b"data", ContentMD5=md5(b"data"))
    assert s3.get_object(Bucket="free", Key="k")["Body"].read() == b"data"
    upload = s3.create_multipart_upload(Bucket="free", Key="mp")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket="free", Key="mp", UploadId=upload, PartNumber=1, Body=b"p")
    assert status_and_code(e) == (400, "InvalidRequest")
    s3.upload_part(
        Bucket="free", Key="mp", UploadId=upload, PartNumber=1, Body=b"p", ContentMD5=md5(b"p")
    )


def test_if_match_required_in_guarded_buckets(server: SeglakeServer) -> None:
    s3 = server.s3()
    body = b"v1"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="guarded", Key="k", Body=body, ContentMD5=md5(body))
    assert status_and_code(e) == (428, "PreconditionRequired")
    # Create with If-None-Match: *, overwrite with the right If-Match.
    first = s3.put_object(
        Bucket="guarded", Key="k", Body=body, ContentMD5=md5(body), IfNoneMatch="*"
    )
    body2 = b"v2"
    with pytest.raises(ClientError) as e:
        s3.put_object(
            Bucket="guarded", Key="k", Body=body2, ContentMD5=md5(body2), IfMatch='"0123"'
        )
    assert status_and_code(e) == (412, "PreconditionFailed")
    s3.put_object(
        Bucket="guarded", Key="k", Body=body2, ContentMD5=md5(body2), IfMatch=first["ETag"]
    )
    assert s3.get_object(Bucket="guarded", Key="k")["Body"].read() == body2
    # Other buckets are not affected.
    s3.put_object(Bucket="free", Key="k2", Body=body, ContentMD5=md5(body))


def test_if_match_required_for_copy_and_complete(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(Bucket="source", Key="src", Body=b"copy me", ContentMD5=md5(b"copy me"))
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="guarded", Key="copy", CopySource={"Bucket": "source", "Key": "src"})
    assert status_and_code(e) == (428, "PreconditionRequired")
    guarded = with_headers(server.s3(), {"If-None-Match": "*"})
    guarded.copy_object(Bucket="guarded", Key="copy", CopySource={"Bucket": "source", "Key": "src"})
    assert s3.get_object(Bucket="guarded", Key="copy")["Body"].read() == b"copy me"

    upload = s3.create_multipart_upload(Bucket="guarded", Key="mp")["UploadId"]
    part = s3.upload_part(
        Bucket="guarded", Key="mp", UploadId=upload, PartNumber=1, Body=b"x", ContentMD5=md5(b"x")
    )
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket="guarded", Key="mp", UploadId=upload, MultipartUpload=parts
        )
    assert status_and_code(e) == (428, "PreconditionRequired")
    guarded.complete_multipart_upload(
        Bucket="guarded", Key="mp", UploadId=upload, MultipartUpload=parts
    )
    assert s3.get_object(Bucket="guarded", Key="mp")["Body"].read() == b"x"
