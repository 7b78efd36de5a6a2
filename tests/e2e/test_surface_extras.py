"""Smaller parts of the S3 surface: object size limit, V2 listing options,
malformed Content-MD5, and the date formats clients parse."""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

MiB = 1024 * 1024


small_server = server_fixture("--max-object-size", "6MiB", buckets=["lim"])


def code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def test_max_object_size(small_server: SeglakeServer) -> None:
    s3 = small_server.s3()
    s3.put_object(Bucket="lim", Key="ok", Body=b"x" * (6 * MiB))
    assert s3.head_object(Bucket="lim", Key="ok")["ContentLength"] == 6 * MiB
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="lim", Key="big", Body=b"x" * (6 * MiB + 1))
    assert code(e) == (400, "EntityTooLarge")
    # A multipart object may not grow past the limit either.
    upload = s3.create_multipart_upload(Bucket="lim", Key="mp")["UploadId"]
    parts = []
    for n in (1, 2):
        r = s3.upload_part(
            Bucket="lim", Key="mp", UploadId=upload, PartNumber=n, Body=b"y" * (5 * MiB)
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket="lim", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
        )
    assert code(e) == (400, "EntityTooLarge")
    for key in ("big", "mp"):
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket="lim", Key=key)
        assert code(e)[0] == 404


def test_v2_fetch_owner_and_start_after(s3: Any, bucket: str) -> None:
    for k in ("a", "b", "b/c", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    plain = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in plain["Contents"]] == ["a", "b", "b/c", "c"]
    assert all("Owner" not in o for o in plain["Contents"])
    owned = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)
    assert all(o["Owner"]["ID"] for o in owned["Contents"])
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="b")
    assert [o["Key"] for o in after["Contents"]] == ["b/c", "c"]
    assert after["StartAfter"] == "b" and after["KeyCount"] == 2


@pytest.mark.parametrize("bad", ["not base64!", "AAAA", ""])
def test_malformed_content_md5(server: SeglakeServer, bucket: str, bad: str) -> None:
    url = f"{server.endpoint}/{bucket}/md5"
    req = AWSRequest(
        method="PUT", url=url, data=b"data", headers={"Content-MD5": bad, "Content-Length": "4"}
    )
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    r = httpx.put(url, content=b"data", headers=dict(req.headers.items()), timeout=30)
    assert r.status_code == 400 and "<Code>InvalidDigest</Code>" in r.text, r.text
    with pytest.raises(ClientError):
        server.s3().head_object(Bucket=bucket, Key="md5")


def test_date_formats(server: SeglakeServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="d", Body=b"d")
    head = s3.head_object(Bucket=bucket, Key="d")
    raw = head["ResponseMetadata"]["HTTPHeaders"]
    # RFC 7231 IMF-fixdate in headers ...
    for name in ("last-modified", "date"):
        parsed = email.utils.parsedate_to_datetime(raw[name])
        assert raw[name].endswith(" GMT") and parsed.tzinfo is not None
    # ... and ISO 8601 with milliseconds in XML listings.
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["LastModified"]
    assert abs((listed - head["LastModified"]).total_seconds()) < 1
