"""GetObjectAttributes end to end: boto3 and raw HTTP against the real server.

Every value the server reports is checked against one computed here from
the bytes sent (hashlib, zlib, awscrt), never against another answer of the
server. The server runs with ``--min-part-size 1`` so multipart objects can
be made of tiny parts (a 10,000-part upload of 5 MiB parts would be 50 GB);
everything else about multipart uploads is as on the default server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_request
from tests.harness import SeglakeServer, server_fixture

server = server_fixture("--min-part-size", "1", frontends=2, buckets=["attrs", "many"])

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def crc32c(data: bytes) -> bytes:
    return crt.crc32c(data).to_bytes(4, "big")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mp_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, dict[str, str]]:
    resp = exc.value.response
    meta = resp["ResponseMetadata"]
    return meta["HTTPStatusCode"], resp["Error"]["Code"], meta["HTTPHeaders"]


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    return server.s3(max_pool_connections=16)


def multipart(s3: Any, bucket: str, key: str, parts: list[bytes], alg: str | None) -> Any:
    kw = {"ChecksumAlgorithm": alg} if alg else {}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **kw)["UploadId"]
    done = []
    for n, body in enumerate(parts, start=1):
        r = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=body, **kw
        )
        item = {"PartNumber": n, "ETag": r["ETag"]}
        if alg:
            item[f"Checksum{alg}"] = r[f"Checksum{alg}"]
        done.append(item)
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )


# ---- single-part objects ---------------------------------------------------------


def test_single_part_object(s3: Any) -> None:
    data = random.Random(1).randbytes(100_000)
    put = s3.put_object(Bucket="attrs", Key="single", Body=data, ChecksumAlgorithm="CRC32C")
    got = s3.get_object_attributes(Bucket="attrs", Key="single", ObjectAttributes=ALL)
    head = s3.head_object(Bucket="attrs", Key="single")
    assert got["ETag"] == hashlib.md5(data).hexdigest()  # no quotes, unlike HeadObject
    assert got["Checksum"] == {"ChecksumCRC32C": b64(crc32c(data)), "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in got  # not uploaded in parts
    assert got["StorageClass"] == "STANDARD"
    assert got["ObjectSize"] == len(data)
    assert got["VersionId"] == put["VersionId"] == head["VersionId"]
    assert got["LastModified"] == head["LastModified"]
    # Only what was asked for.
    only = s3.get_object_attributes(Bucket="attrs", Key="single", ObjectAttributes=["ObjectSize"])
    assert {k for k in only if k != "ResponseMetadata"} == {
        "ObjectSize",
        "VersionId",
        "LastModified",
    }


def test_object_without_checksum_has_none(server: SeglakeServer, s3: Any) -> None:
    plain = server.s3(request_checksum_calculation="when_required")
    plain.put_object(Bucket="attrs", Key="plain", Body=b"no checksum")
    got = s3.get_object_attributes(Bucket="attrs", Key="plain", ObjectAttributes=ALL)
    assert "Checksum" not in got
    assert got["ETag"] == hashlib.md5(b"no checksum").hexdigest() and got["ObjectSize"] == 11


# ---- multipart objects --------------------------------------------------------------


def test_multipart_composite_parts_listed(s3: Any) -> None:
    rng = random.Random(2)
    parts = [rng.randbytes(n) for n in (3000, 2000, 1000, 17)]
    done = multipart(s3, "attrs", "mp-sha", parts, "SHA256")
    composite = b64(sha256(b"".join(sha256(p) for p in parts)))
    assert done["ChecksumSHA256"] == f"{composite}-4"
    got = s3.get_object_attributes(Bucket="attrs", Key="mp-sha", ObjectAttributes=ALL)
    assert got["ETag"] == mp_etag(parts)
    assert got["ObjectSize"] == sum(map(len, parts))
    assert got["Checksum"] == {"ChecksumSHA256": composite, "ChecksumType": "COMPOSITE"}
    op = got["ObjectParts"]
    assert op["TotalPartsCount"] == 4 and op["IsTruncated"] is False
    assert op["PartNumberMarker"] == 0 and op["NextPartNumberMarker"] == 4
    assert op["Parts"] == [
        {"PartNumber": n, "Size": len(p), "ChecksumSHA256": b64(sha256(p))}
        for n, p in enumerate(parts, start=1)
    ]
    # A page in the middle.
    page = s3.get_object_attributes(
        Bucket="attrs", Key="mp-sha", ObjectAttributes=["ObjectParts"], MaxParts=2,
        PartNumberMarker=1,
    )["ObjectParts"]  # fmt: skip
    assert [p["PartNumber"] for p in page["Parts"]] == [2, 3]
    assert page["IsTruncated"] is True and page["NextPartNumberMarker"] == 3
    assert page["MaxParts"] == 2


def test_multipart_without_checksum_counts_parts_only(server: SeglakeServer) -> None:
    plain = server.s3(request_checksum_calculation="when_required")
    parts = [b"a" * 100, b"b" * 50]
    multipart(plain, "attrs", "mp-plain", parts, None)
    got = plain.get_object_attributes(Bucket="attrs", Key="mp-plain", ObjectAttributes=ALL)
    assert got["ObjectParts"] == {"TotalPartsCount": 2}
    assert "Checksum" not in got and got["ETag"] == mp_etag(parts)


def test_ten_thousand_parts_paginated(s3: Any) -> None:
    """A 10,000-part upload (tiny parts, sent 16 at a time), listed 1000 parts
    per page: every part exactly once, with its size and CRC32C."""
    started = time.monotonic()
    key = "ten-thousand"
    upload_id = s3.create_multipart_upload(Bucket="many", Key=key, ChecksumAlgorithm="CRC32C")[
        "UploadId"
    ]
    bodies = [f"part {n:05d} ".encode() * (1 + n % 3) for n in range(1, 10_001)]

    def put(n: int) -> dict[str, Any]:
        r = s3.upload_part(
            Bucket="many", Key=key, UploadId=upload_id, PartNumber=n, Body=bodies[n - 1],
            ChecksumAlgorithm="CRC32C",
        )  # fmt: skip
        return {"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32C": r["ChecksumCRC32C"]}

    with ThreadPoolExecutor(16) as pool:
        done = list(pool.map(put, range(1, 10_001)))
    s3.complete_multipart_upload(
        Bucket="many", Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    want = [
        {"PartNumber": n, "Size": len(b), "ChecksumCRC32C": b64(crc32c(b))}
        for n, b in enumerate(bodies, start=1)
    ]
    seen: list[dict[str, Any]] = []
    marker, pages = 0, 0
    while True:
        got = s3.get_object_attributes(
            Bucket="many", Key=key, ObjectAttributes=["ObjectParts", "Checksum", "ObjectSize"],
            PartNumberMarker=marker,
        )  # fmt: skip
        op = got["ObjectParts"]
        pages += 1
        assert op["TotalPartsCount"] == 10_000 and op["MaxParts"] == 1000
        assert op["PartNumberMarker"] == marker
        seen += op["Parts"]
        if not op["IsTruncated"]:
            break
        marker = op["NextPartNumberMarker"]
    assert pages == 10
    assert seen == want
    assert got["ObjectSize"] == sum(map(len, bodies))
    composite = b64(crt.crc32c(b"".join(crc32c(b) for b in bodies)).to_bytes(4, "big"))
    assert got["Checksum"] == {"ChecksumCRC32C": composite, "ChecksumType": "COMPOSITE"}
    # The object itself is every part, in order.
    body = s3.get_object(Bucket="many", Key=key)["Body"].read()
    assert body == b"".join(bodies)
    assert time.monotonic() - started < 240


# ---- versions, delete markers, conditions, bad requests ---------------------------------


def test_versions_and_delete_markers(s3: Any) -> None:
    v1 = s3.put_object(Bucket="attrs", Key="ver", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket="attrs", Key="ver", Body=b"two!")["VersionId"]
    old = s3.get_object_attributes(
        Bucket="attrs", Key="ver", VersionId=v1, ObjectAttributes=["ETag", "ObjectSize"]
    )
    assert (old["VersionId"], old["ETag"], old["ObjectSize"]) == (
        v1, hashlib.md5(b"one").hexdigest(), 3,
    )  # fmt: skip
    new = s3.get_object_attributes(Bucket="attrs", Key="ver", ObjectAttributes=["ObjectSize"])
    assert (new["VersionId"], new["ObjectSize"]) == (v2, 4)

    marker = s3.delete_object(Bucket="attrs", Key="ver")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket="attrs", Key="ver", ObjectAttributes=["ETag"])
    status, code, headers = error_of(exc)
    assert (status, code) == (404, "NoSuchKey")
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(
            Bucket="attrs", Key="ver", VersionId=marker, ObjectAttributes=["ETag"]
        )
    status, code, headers = error_of(exc)
    assert (status, code) == (405, "MethodNotAllowed")
    assert headers["x-amz-delete-marker"] == "true" and "last-modified" in headers
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket="attrs", Key="absent", ObjectAttributes=["ETag"])
    assert error_of(exc)[:2] == (404, "NoSuchKey")


def test_conditional_headers(server: SeglakeServer, s3: Any) -> None:
    s3.put_object(Bucket="attrs", Key="cond", Body=b"conditional")
    etag = '"' + hashlib.md5(b"conditional").hexdigest() + '"'
    past, future = "Sat, 01 Jan 2000 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"

    def status(**headers: str) -> int:
        headers["x-amz-object-attributes"] = "ETag"
        r = signed_request(server, "GET", "/attrs/cond", "attributes", headers=headers)
        return r.status_code

    assert status() == 200
    assert status(**{"If-Match": etag}) == 200
    assert status(**{"If-Match": '"0000"'}) == 412
    assert status(**{"If-None-Match": etag}) == 304
    assert status(**{"If-None-Match": '"0000"'}) == 200
    assert status(**{"If-Modified-Since": future}) == 304
    assert status(**{"If-Unmodified-Since": past}) == 412
    # As documented: If-Match true wins over If-Unmodified-Since false, and
    # If-None-Match false with If-Modified-Since true is 304.
    assert status(**{"If-Match": etag, "If-Unmodified-Since": past}) == 200
    assert status(**{"If-None-Match": etag, "If-Modified-Since": past}) == 304


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "InvalidArgument"),
        ({"x-amz-object-attributes": ""}, "InvalidArgument"),
        ({"x-amz-object-attributes": "ETag,Owner"}, "InvalidArgument"),
        ({"x-amz-object-attributes": "ETag", "x-amz-max-parts": "-1"}, "InvalidArgument"),
        ({"x-amz-object-attributes": "ETag", "x-amz-part-number-marker": "x"}, "InvalidArgument"),
    ],
)
def test_bad_requests(server: SeglakeServer, s3: Any, headers: dict[str, str], code: str) -> None:
    s3.put_object(Bucket="attrs", Key="bad", Body=b"x")
    r = signed_request(server, "GET", "/attrs/bad", "attributes", headers=headers)
    assert r.status_code == 400
    assert f"<Code>{code}</Code>" in r.text


def test_awscli_get_object_attributes(server: SeglakeServer, s3: Any, tmp_path: Path) -> None:
    """The same call from awscli (`aws s3api get-object-attributes`), whose
    botocore parses the body on its own."""
    from tests.e2e.test_awscli import aws, ok

    data = b"awscli attributes " * 100
    s3.put_object(Bucket="attrs", Key="cli", Body=data, ChecksumAlgorithm="SHA256")
    args = ["s3api", "get-object-attributes", "--bucket", "attrs", "--key", "cli"]
    args += ["--object-attributes", "ETag", "Checksum", "ObjectSize", "StorageClass"]
    out = json.loads(ok(aws(server, *args, cwd=tmp_path)))
    assert out["ETag"] == hashlib.md5(data).hexdigest()
    assert out["Checksum"] == {"ChecksumSHA256": b64(sha256(data)), "ChecksumType": "FULL_OBJECT"}
    assert (out["ObjectSize"], out["StorageClass"]) == (len(data), "STANDARD")
