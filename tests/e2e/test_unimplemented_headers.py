"""Headers asking for what Seglake does not do yet (encryption, Object Lock,
storage classes) are refused with 501 NotImplemented and
leave nothing behind; their "default" values pass (#20, honest refusals)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from seglake.protocol.unimplemented_headers import BY_OPERATION
from tests.e2e._helpers import status_and_code, with_headers
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer, server_fixture

server = server_fixture(frontends=1)

# A value of the right shape for each header (what a client would send).
SAMPLE = {
    "x-amz-server-side-encryption": "AES256",
    "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:1:key/x",
    "x-amz-server-side-encryption-context": "e30=",
    "x-amz-server-side-encryption-bucket-key-enabled": "true",
    "x-amz-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-server-side-encryption-customer-key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "x-amz-server-side-encryption-customer-key-md5": "zZ5FnqcIqUjVwvWmyog4zw==",
    "x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-copy-source-server-side-encryption-customer-key": "MDEyMzQ1Njc4OWFi",
    "x-amz-copy-source-server-side-encryption-customer-key-md5": "zZ5FnqcIqUjVwvWmyog4zw==",
    "x-amz-object-lock-mode": "COMPLIANCE",
    "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z",
    "x-amz-object-lock-legal-hold": "ON",
    "x-amz-website-redirect-location": "/elsewhere",
    "x-amz-storage-class": "GLACIER",
    "x-amz-bucket-object-lock-enabled": "true",
}


def client(srv: SeglakeServer, headers: dict[str, str]) -> Any:
    s3 = boto3.client(
        "s3", endpoint_url=srv.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )  # fmt: skip
    return with_headers(s3, headers)


def call(s3: Any, op: str, n: int, up: str) -> None:
    b, k = "refusals", f"obj-{op}-{n}"
    if op == "CreateBucket":
        s3.create_bucket(Bucket=f"new-bucket-{n}")
    elif op == "PutObject":
        s3.put_object(Bucket=b, Key=k, Body=b"must not be stored")
    elif op == "CopyObject":
        s3.copy_object(Bucket=b, Key=k, CopySource={"Bucket": b, "Key": "source"})
    elif op == "CreateMultipartUpload":
        s3.create_multipart_upload(Bucket=b, Key=k)
    elif op in ("UploadPart", "UploadPartCopy"):
        if op == "UploadPart":
            s3.upload_part(Bucket=b, Key="mpu", UploadId=up, PartNumber=n + 1, Body=b"p")
        else:
            s3.upload_part_copy(
                Bucket=b, Key="mpu", UploadId=up, PartNumber=n + 1,
                CopySource={"Bucket": b, "Key": "source"},
            )  # fmt: skip
    elif op == "GetObject":
        s3.get_object(Bucket=b, Key="source")
    elif op == "HeadObject":
        s3.head_object(Bucket=b, Key="source")
    else:
        raise AssertionError(op)


def test_every_refused_header_on_every_operation(server: SeglakeServer) -> None:
    plain = server.s3()
    plain.create_bucket(Bucket="refusals")
    plain.put_object(Bucket="refusals", Key="source", Body=b"source bytes")
    upload_id = plain.create_multipart_upload(Bucket="refusals", Key="mpu")["UploadId"]
    cases = [(op, h) for op, table in BY_OPERATION.items() for h in table]
    # Shrinks as features land (#15, #19, #20); every entry left is tried.
    assert cases
    for n, (op, header) in enumerate(cases):
        s3 = client(server, {header: SAMPLE[header]})
        with pytest.raises(ClientError) as err:
            call(s3, op, n, upload_id)
        status, code = status_and_code(err)
        assert status == 501, (op, header, status, code)
        if op != "HeadObject":  # HEAD answers carry no body, so no code
            assert code == "NotImplemented", (op, header, code)
            message = err.value.response["Error"]["Message"]
            assert header in message and SAMPLE[header] not in message
    # Nothing was stored by any of them.
    keys = [o["Key"] for o in plain.list_objects_v2(Bucket="refusals").get("Contents", [])]
    assert keys == ["source"]
    assert [b["Name"] for b in plain.list_buckets()["Buckets"]] == ["refusals"]
    uploads = plain.list_multipart_uploads(Bucket="refusals").get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [upload_id]
    assert plain.list_parts(Bucket="refusals", Key="mpu", UploadId=upload_id).get("Parts") is None
    assert plain.get_object(Bucket="refusals", Key="source")["Body"].read() == b"source bytes"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amz-acl": "private"},
        {"x-amz-acl": "bucket-owner-full-control", "x-amz-storage-class": "STANDARD"},
        {"x-amz-object-lock-legal-hold": "OFF", "x-amz-tagging": ""},
        {"x-amz-server-side-encryption-bucket-key-enabled": "false"},
    ],
)
def test_default_values_pass(server: SeglakeServer, headers: dict[str, str]) -> None:
    plain = server.s3()
    plain.create_bucket(Bucket="defaults")
    key = "k-" + "-".join(sorted(headers))
    client(server, headers).put_object(Bucket="defaults", Key=key, Body=b"stored")
    assert plain.get_object(Bucket="defaults", Key=key)["Body"].read() == b"stored"
    assert plain.head_object(Bucket="defaults", Key=key).get("StorageClass") in (None, "STANDARD")
