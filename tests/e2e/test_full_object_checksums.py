"""FULL_OBJECT and COMPOSITE multipart checksums end to end (boto3, real server).

Expected values are computed here over the whole body (zlib.crc32, awscrt's
crc32c/crc64nvme) or over the parts (COMPOSITE), independently of the
server's combine math. GETs with ChecksumMode=ENABLED are also validated by
botocore itself against the body it receives (it does so for any value
without a ``-N`` suffix). ``--min-part-size 1`` keeps the parts tiny.
"""

from __future__ import annotations

import base64
import hashlib
import random
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError

from tests.harness import SeglakeServer, server_fixture

server = server_fixture("--min-part-size", "1", frontends=2, buckets=["fullobj"])

CRCS: dict[str, Callable[[bytes], bytes]] = {
    "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "CRC32C": lambda d: crt.crc32c(d).to_bytes(4, "big"),
    "CRC64NVME": lambda d: crt.crc64nvme(d).to_bytes(8, "big"),
}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    return server.s3()


@pytest.fixture(scope="module")
def plain(server: SeglakeServer) -> Any:
    """Sends no checksum unless an operation requires one."""
    return server.s3(request_checksum_calculation="when_required")


def upload(
    client: Any, key: str, parts: list[bytes], alg: str, ctype: str | None, send: bool = True
) -> tuple[str, list[dict[str, Any]]]:
    kw: dict[str, Any] = {"ChecksumAlgorithm": alg}
    if ctype:
        kw["ChecksumType"] = ctype
    create = client.create_multipart_upload(Bucket="fullobj", Key=key, **kw)
    assert create["ChecksumAlgorithm"] == alg
    upload_id = create["UploadId"]
    done = []
    for n, body in enumerate(parts, start=1):
        extra = {"ChecksumAlgorithm": alg} if send else {}
        r = client.upload_part(
            Bucket="fullobj", Key=key, UploadId=upload_id, PartNumber=n, Body=body, **extra
        )
        assert r[f"Checksum{alg}"] == b64(CRCS[alg](body))
        done.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{alg}": r[f"Checksum{alg}"]})
    return upload_id, done


@pytest.mark.parametrize("alg", sorted(CRCS))
def test_full_object_round_trip(s3: Any, alg: str) -> None:
    rng = random.Random(alg)
    parts = [rng.randbytes(n) for n in (70_000, 4_194_304 + 5, 1, 333)]
    body = b"".join(parts)
    whole = b64(CRCS[alg](body))
    key = f"full-{alg}"
    upload_id, done = upload(s3, key, parts, alg, "FULL_OBJECT")
    listed = s3.list_parts(Bucket="fullobj", Key=key, UploadId=upload_id)
    assert (listed["ChecksumAlgorithm"], listed["ChecksumType"]) == (alg, "FULL_OBJECT")
    uploads = s3.list_multipart_uploads(Bucket="fullobj", Prefix=key)["Uploads"]
    assert [(u["ChecksumAlgorithm"], u["ChecksumType"]) for u in uploads] == [(alg, "FULL_OBJECT")]

    result = s3.complete_multipart_upload(
        Bucket="fullobj", Key=key, UploadId=upload_id, MultipartUpload={"Parts": done},
        ChecksumType="FULL_OBJECT", **{f"Checksum{alg}": whole},
    )  # fmt: skip
    assert result[f"Checksum{alg}"] == whole  # no -N: a checksum of the whole body
    assert result["ChecksumType"] == "FULL_OBJECT"

    head = s3.head_object(Bucket="fullobj", Key=key, ChecksumMode="ENABLED")
    assert (head[f"Checksum{alg}"], head["ChecksumType"]) == (whole, "FULL_OBJECT")
    got = s3.get_object(Bucket="fullobj", Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # botocore checked the body against `whole`
    assert (got[f"Checksum{alg}"], got["ChecksumType"]) == (whole, "FULL_OBJECT")

    attrs = s3.get_object_attributes(
        Bucket="fullobj", Key=key, ObjectAttributes=["Checksum", "ObjectParts", "ObjectSize"]
    )
    assert attrs["Checksum"] == {f"Checksum{alg}": whole, "ChecksumType": "FULL_OBJECT"}
    assert attrs["ObjectSize"] == len(body)
    assert attrs["ObjectParts"]["Parts"] == [
        {"PartNumber": n, "Size": len(p), f"Checksum{alg}": b64(CRCS[alg](p))}
        for n, p in enumerate(parts, start=1)
    ]


def test_full_object_parts_without_client_checksums(s3: Any, plain: Any) -> None:
    """Parts sent with no checksum: the server computes each part's CRC, and
    the whole-object value still comes out right."""
    parts = [b"first part " * 1000, b"second", b"third " * 77]
    upload_id, done = upload(plain, "full-plain", parts, "CRC32C", "FULL_OBJECT", send=False)
    result = plain.complete_multipart_upload(
        Bucket="fullobj", Key="full-plain", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert result["ChecksumCRC32C"] == b64(CRCS["CRC32C"](b"".join(parts)))
    got = s3.get_object(Bucket="fullobj", Key="full-plain", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)


def test_crc64nvme_defaults_to_full_object(s3: Any) -> None:
    parts = [b"a" * 1000, b"b" * 10]
    create = s3.create_multipart_upload(Bucket="fullobj", Key="nvme", ChecksumAlgorithm="CRC64NVME")
    assert create["ChecksumType"] == "FULL_OBJECT"
    s3.abort_multipart_upload(Bucket="fullobj", Key="nvme", UploadId=create["UploadId"])
    upload_id, done = upload(s3, "nvme", parts, "CRC64NVME", None)
    result = s3.complete_multipart_upload(
        Bucket="fullobj", Key="nvme", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert result["ChecksumCRC64NVME"] == b64(CRCS["CRC64NVME"](b"".join(parts)))
    assert result["ChecksumType"] == "FULL_OBJECT"


def test_composite_stays_composite(s3: Any) -> None:
    parts = [b"x" * 5000, b"y" * 3]
    create = s3.create_multipart_upload(Bucket="fullobj", Key="comp", ChecksumAlgorithm="CRC32")
    assert create["ChecksumType"] == "COMPOSITE"  # the default for CRC32
    s3.abort_multipart_upload(Bucket="fullobj", Key="comp", UploadId=create["UploadId"])
    upload_id, done = upload(s3, "comp", parts, "CRC32", "COMPOSITE")
    want = b64(CRCS["CRC32"](b"".join(CRCS["CRC32"](p) for p in parts))) + "-2"
    result = s3.complete_multipart_upload(
        Bucket="fullobj", Key="comp", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert (result["ChecksumCRC32"], result["ChecksumType"]) == (want, "COMPOSITE")
    head = s3.head_object(Bucket="fullobj", Key="comp", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (want, "COMPOSITE")


def test_single_part_objects_are_full_object(s3: Any) -> None:
    data = b"single part body"
    put = s3.put_object(Bucket="fullobj", Key="one", Body=data, ChecksumAlgorithm="CRC32")
    assert (put["ChecksumCRC32"], put["ChecksumType"]) == (b64(CRCS["CRC32"](data)), "FULL_OBJECT")
    head = s3.head_object(Bucket="fullobj", Key="one", ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "FULL_OBJECT"
    copy = s3.copy_object(Bucket="fullobj", Key="one-copy", CopySource="fullobj/one")
    assert copy["CopyObjectResult"]["ChecksumType"] == "FULL_OBJECT"
    # Without x-amz-checksum-mode no checksum, and so no type, is sent.
    assert "ChecksumType" not in s3.head_object(Bucket="fullobj", Key="one")


def test_complete_mismatches(s3: Any) -> None:
    parts = [b"m" * 2000, b"n" * 20]
    body = b"".join(parts)
    upload_id, done = upload(s3, "mismatch", parts, "CRC32", "FULL_OBJECT")

    def complete(**kw: Any) -> Any:
        return s3.complete_multipart_upload(
            Bucket="fullobj",
            Key="mismatch",
            UploadId=upload_id,
            MultipartUpload={"Parts": done},
            **kw,
        )

    # A wrong whole-object value is BadDigest ...
    with pytest.raises(ClientError) as exc:
        complete(ChecksumCRC32=b64(CRCS["CRC32"](body + b"!")))
    assert error_of(exc) == (400, "BadDigest")
    # ... so is the COMPOSITE value of a FULL_OBJECT upload ...
    composite = b64(CRCS["CRC32"](b"".join(CRCS["CRC32"](p) for p in parts)))
    with pytest.raises(ClientError) as exc:
        complete(ChecksumCRC32=composite)
    assert error_of(exc) == (400, "BadDigest")
    # ... while another checksum type is a different request: InvalidRequest.
    with pytest.raises(ClientError) as exc:
        complete(ChecksumType="COMPOSITE")
    assert error_of(exc) == (400, "InvalidRequest")
    # A malformed value (not 4 bytes of base64) is InvalidRequest too.
    with pytest.raises(ClientError) as exc:
        complete(ChecksumCRC32="AAAA")
    assert error_of(exc) == (400, "InvalidRequest")
    # The upload is still open and completes with the right value.
    result = complete(ChecksumCRC32=b64(CRCS["CRC32"](body)), ChecksumType="FULL_OBJECT")
    assert result["ChecksumCRC32"] == b64(CRCS["CRC32"](body))


@pytest.mark.parametrize(
    "kw",
    [
        {"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"},
        {"ChecksumAlgorithm": "SHA1", "ChecksumType": "FULL_OBJECT"},
        {"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "COMPOSITE"},
        {"ChecksumType": "FULL_OBJECT"},  # a type needs an algorithm
    ],
    ids=lambda kw: "-".join(kw.values()),
)
def test_create_refusals(plain: Any, kw: dict[str, str]) -> None:
    with pytest.raises(ClientError) as exc:
        plain.create_multipart_upload(Bucket="fullobj", Key="refused", **kw)
    assert error_of(exc) == (400, "InvalidRequest")


def test_sha256_composite_parts_checked_against_hashlib(s3: Any) -> None:
    parts = [b"p" * 3000, b"q" * 30]
    create = s3.create_multipart_upload(Bucket="fullobj", Key="sha", ChecksumAlgorithm="SHA256")
    done = []
    for n, p in enumerate(parts, start=1):
        r = s3.upload_part(
            Bucket="fullobj", Key="sha", UploadId=create["UploadId"], PartNumber=n, Body=p,
            ChecksumAlgorithm="SHA256",
        )  # fmt: skip
        assert r["ChecksumSHA256"] == b64(hashlib.sha256(p).digest())
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    result = s3.complete_multipart_upload(
        Bucket="fullobj", Key="sha", UploadId=create["UploadId"], MultipartUpload={"Parts": done}
    )
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    assert result["ChecksumSHA256"] == b64(hashlib.sha256(joined).digest()) + "-2"
    assert result["ChecksumType"] == "COMPOSITE"
