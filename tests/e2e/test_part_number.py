"""GET/HEAD ``?partNumber=N`` on multipart and single-part objects (boto3 and raw HTTP).

Status codes as AWS answers them: a part is 206 with its Content-Range (and
``x-amz-mp-parts-count`` for an object uploaded in parts), a part number
beyond the object's parts 416 InvalidPartNumber, one outside 1..10000 400
InvalidArgument, partNumber with Range 400 InvalidRequest. With
``x-amz-checksum-mode: ENABLED`` the checksum sent is the part's, computed
here with zlib and checked by botocore against the part's bytes too.
"""

from __future__ import annotations

import base64
import random
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_request
from tests.harness import SeglakeServer, server_fixture

server = server_fixture("--min-part-size", "1", buckets=["parts"])


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    return server.s3()


@pytest.fixture(scope="module")
def layout(s3: Any) -> dict[str, list[bytes]]:
    """A COMPOSITE and a FULL_OBJECT multipart object and a single-part one."""
    rng = random.Random(7)
    objects: dict[str, list[bytes]] = {}
    for key, ctype in (("mp-composite", "COMPOSITE"), ("mp-full", "FULL_OBJECT")):
        parts = [rng.randbytes(n) for n in (4_194_304 + 9, 1000, 1)]
        upload_id = s3.create_multipart_upload(
            Bucket="parts", Key=key, ChecksumAlgorithm="CRC32", ChecksumType=ctype
        )["UploadId"]
        done = []
        for n, body in enumerate(parts, start=1):
            r = s3.upload_part(
                Bucket="parts", Key=key, UploadId=upload_id, PartNumber=n, Body=body,
                ChecksumAlgorithm="CRC32",
            )  # fmt: skip
            done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
        s3.complete_multipart_upload(
            Bucket="parts", Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
        objects[key] = parts
    single = rng.randbytes(5000)
    s3.put_object(Bucket="parts", Key="single", Body=single, ChecksumAlgorithm="CRC32")
    objects["single"] = [single]
    return objects


@pytest.mark.parametrize("key", ["mp-composite", "mp-full"])
def test_each_part_of_a_multipart_object(s3: Any, layout: dict[str, list[bytes]], key: str) -> None:
    parts = layout[key]
    total = sum(map(len, parts))
    start = 0
    for n, body in enumerate(parts, start=1):
        got = s3.get_object(Bucket="parts", Key=key, PartNumber=n, ChecksumMode="ENABLED")
        assert got["Body"].read() == body  # botocore verified it against ChecksumCRC32
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {start}-{start + len(body) - 1}/{total}"
        assert got["PartsCount"] == 3
        assert got["ChecksumCRC32"] == crc32(body)  # the part's, not the object's
        head = s3.head_object(Bucket="parts", Key=key, PartNumber=n, ChecksumMode="ENABLED")
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert (head["ContentLength"], head["PartsCount"]) == (len(body), 3)
        assert head["ContentRange"] == got["ContentRange"]
        assert head["ChecksumCRC32"] == crc32(body)
        start += len(body)
    # Without checksum mode, no checksum header at all.
    plain = s3.head_object(Bucket="parts", Key=key, PartNumber=1)
    assert "ChecksumCRC32" not in plain and "ChecksumType" not in plain


def test_single_part_object_is_one_part(s3: Any, layout: dict[str, list[bytes]]) -> None:
    (body,) = layout["single"]
    got = s3.get_object(Bucket="parts", Key="single", PartNumber=1, ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes 0-{len(body) - 1}/{len(body)}"
    assert "PartsCount" not in got  # only objects uploaded in parts have a count
    assert (got["ChecksumCRC32"], got["ChecksumType"]) == (crc32(body), "FULL_OBJECT")
    head = s3.head_object(Bucket="parts", Key="single", PartNumber=1)
    assert head["ContentLength"] == len(body) and "PartsCount" not in head


@pytest.mark.parametrize(("key", "n"), [("mp-composite", 4), ("mp-full", 10000), ("single", 2)])
def test_part_beyond_the_object_is_416(
    s3: Any, layout: dict[str, list[bytes]], key: str, n: int
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="parts", Key=key, PartNumber=n)
    assert error_of(exc) == (416, "InvalidPartNumber")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="parts", Key=key, PartNumber=n)
    assert error_of(exc)[0] == 416  # HEAD has no body: the status says it


@pytest.mark.parametrize("value", ["0", "10001", "-1", "abc", "", "1.5"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_invalid_part_numbers_are_400(
    server: SeglakeServer, layout: dict[str, list[bytes]], value: str, method: str
) -> None:
    r = signed_request(server, method, "/parts/mp-composite", f"partNumber={value}")
    assert r.status_code == 400
    if method == "GET":
        assert "<Code>InvalidArgument</Code>" in r.text


@pytest.mark.parametrize("key", ["mp-composite", "single"])
def test_part_number_with_range_is_400(
    server: SeglakeServer, layout: dict[str, list[bytes]], key: str
) -> None:
    r = signed_request(
        server, "GET", f"/parts/{key}", "partNumber=1", headers={"Range": "bytes=0-1"}
    )
    assert r.status_code == 400
    assert "<Code>InvalidRequest</Code>" in r.text


def test_part_of_a_missing_key_is_404(s3: Any, layout: dict[str, list[bytes]]) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="parts", Key="absent", PartNumber=1)
    assert error_of(exc) == (404, "NoSuchKey")
