"""Multipart uploads end to end: boto3 against the real multi-process server.

Parts are random bytes from the per-test seeded generator. The minimum part
size (5 MiB) makes real parts big, so most tests use the smallest legal
layout: 5 MiB parts and a short last one.
"""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_request
from tests.harness import SeglakeServer

MiB = 1024 * 1024
PART = 5 * MiB


# ---- helpers -----------------------------------------------------------------------


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def upload_parts(s3: Any, bucket: str, key: str, upload_id: str, parts: list[bytes]) -> list[Any]:
    done = []
    for n, body in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=body)
        assert r["ETag"] == f'"{md5_hex(body)}"'
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    return done


@pytest.fixture
def plain_s3(server: SeglakeServer) -> Any:
    """A client that sends checksums only when an operation requires them."""
    return server.s3(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


# ---- the main path ---------------------------------------------------------------------


def test_multipart_round_trip(s3: Any, bucket: str, rng: random.Random) -> None:
    parts = [rng.randbytes(PART), rng.randbytes(PART), rng.randbytes(1)]
    data = b"".join(parts)
    meta = {"colour": "green"}
    create = s3.create_multipart_upload(
        Bucket=bucket, Key="big/obj.bin", ContentType="application/x-mp-test", Metadata=meta,
        CacheControl="max-age=5",
    )  # fmt: skip
    upload_id = create["UploadId"]
    assert create["Bucket"] == bucket and create["Key"] == "big/obj.bin"

    done = upload_parts(s3, bucket, "big/obj.bin", upload_id, parts)
    listed = s3.list_parts(Bucket=bucket, Key="big/obj.bin", UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]] == [
        (d["PartNumber"], len(b), d["ETag"]) for d, b in zip(done, parts, strict=True)
    ]
    assert listed["IsTruncated"] is False
    assert listed["StorageClass"] == "STANDARD"
    # Not visible as an object until completed.
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="big/obj.bin")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    result = s3.complete_multipart_upload(
        Bucket=bucket, Key="big/obj.bin", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert result["ETag"] == multipart_etag(parts)
    assert result["Bucket"] == bucket and result["Key"] == "big/obj.bin"
    assert result["Location"].endswith(f"/{bucket}/big/obj.bin")
    assert result["VersionId"]

    got = s3.get_object(Bucket=bucket, Key="big/obj.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == multipart_etag(parts)
    assert got["ContentType"] == "application/x-mp-test"
    assert got["Metadata"] == meta
    assert got["CacheControl"] == "max-age=5"
    assert got["VersionId"] == result["VersionId"]
    # A range across the part boundaries (the first part's short last chunk).
    lo, hi = PART - 10, 2 * PART
    ranged = s3.get_object(Bucket=bucket, Key="big/obj.bin", Range=f"bytes={lo}-{hi}")
    assert ranged["Body"].read() == data[lo : hi + 1]
    [entry] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert (entry["Key"], entry["Size"], entry["ETag"]) == (
        "big/obj.bin", len(data), multipart_etag(parts),
    )  # fmt: skip
    # The upload is gone; a repeated Complete (a retry) gets the same answer.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="big/obj.bin", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert (again["ETag"], again["VersionId"]) == (result["ETag"], result["VersionId"])


def test_repeated_complete_answers_the_same_etag(s3: Any, bucket: str) -> None:
    """SDKs retry a Complete whose response was lost: the same part list gets
    200 with the same ETag and version, and the object stays as it was; any
    other part list is NoSuchUpload, as for a completed upload on AWS."""
    body = [b"a" * PART, b"tail"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    done = upload_parts(s3, bucket, "k", upload_id, body)
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    head = s3.head_object(Bucket=bucket, Key="k")
    for cond in ({}, {"IfNoneMatch": "*"}):  # the retry of a create-only Complete too
        again = s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}, **cond
        )
        assert again["ETag"] == first["ETag"] == multipart_etag(body)
        assert again["VersionId"] == first["VersionId"]
    after = s3.head_object(Bucket=bucket, Key="k")
    assert (after["ETag"], after["VersionId"], after["LastModified"]) == (
        head["ETag"], head["VersionId"], head["LastModified"],
    )  # fmt: skip
    versions = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert len(versions) == 1
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"".join(body)
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done[:1]}
        )
    assert error_of(exc) == (404, "NoSuchUpload")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="other", UploadId=upload_id, MultipartUpload={"Parts": done}
        )
    assert error_of(exc) == (404, "NoSuchUpload")


def test_single_small_part_and_empty_part(s3: Any, bucket: str) -> None:
    for key, body in (("one", b"only part"), ("empty", b"")):
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        done = upload_parts(s3, bucket, key, upload_id, [body])
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body
        assert got["ETag"] == multipart_etag([body])


def test_complete_validation(s3: Any, bucket: str, rng: random.Random) -> None:
    parts = [rng.randbytes(PART), rng.randbytes(PART), rng.randbytes(100)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    done = upload_parts(s3, bucket, "k", upload_id, parts)

    def complete(listed: list[Any]) -> Any:
        return s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listed}
        )

    cases = [
        ([done[1], done[0], done[2]], "InvalidPartOrder"),
        ([done[0], done[0], done[2]], "InvalidPartOrder"),
        ([done[0], {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}, done[2]], "InvalidPart"),
        ([done[0], done[1], {"PartNumber": 4, "ETag": done[2]["ETag"]}], "InvalidPart"),
    ]
    for listed, code in cases:
        with pytest.raises(ClientError) as exc:
            complete(listed)
        assert error_of(exc) == (400, code), listed

    # Skipping a part number is fine; the upload is still open after the refusals.
    result = complete([done[0], done[2]])
    assert result["ETag"] == multipart_etag([parts[0], parts[2]])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == parts[0] + parts[2]


def test_small_part_not_last_is_entity_too_small(s3: Any, bucket: str, rng: random.Random) -> None:
    parts = [rng.randbytes(PART - 1), rng.randbytes(PART)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    done = upload_parts(s3, bucket, "k", upload_id, parts)
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
        )
    assert error_of(exc) == (400, "EntityTooSmall")


def test_complete_body_errors(server: SeglakeServer, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x")[
        "ETag"
    ]
    path, query = f"/{bucket}/k", f"uploadId={upload_id}"
    bad = [
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",  # truncated
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",  # no part
        b"<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&a;</ETag></Part>"
        b"</CompleteMultipartUpload>",
    ]
    for body in bad:
        r = signed_request(server, "POST", path, query, body=body)
        assert r.status_code == 400, (body, r.text)
        assert "<Code>MalformedXML</Code>" in r.text, r.text
    good = (
        '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Part><ETag>{etag}</ETag><PartNumber>1</PartNumber></Part>"
        "</CompleteMultipartUpload>"
    ).encode()
    r = signed_request(server, "POST", path, query, body=good)
    assert r.status_code == 200, r.text
    assert "<CompleteMultipartUploadResult" in r.text
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_abort(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    upload_parts(s3, bucket, "k", upload_id, [b"part one"])
    r = s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    calls = [
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=2, Body=b"x"),
        lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id),
        lambda: s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]},
        ),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == (404, "NoSuchUpload")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_upload_id_belongs_to_its_key(s3: Any, bucket: str, make_bucket: Any) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    other = make_bucket("other")
    for b, k in ((bucket, "other-key"), (other, "k")):
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=b, Key=k, UploadId=upload_id, PartNumber=1, Body=b"x")
        assert error_of(exc) == (404, "NoSuchUpload")
    for bogus in ("nope", "0" * 48, upload_id[:-1] + "x"):
        with pytest.raises(ClientError) as exc:
            s3.list_parts(Bucket=bucket, Key="k", UploadId=bogus)
        assert error_of(exc) == (404, "NoSuchUpload")
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="no-such-bucket-mp", Key="k", UploadId=upload_id)
    assert error_of(exc) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket="no-such-bucket-mp", Key="k")
    assert error_of(exc) == (404, "NoSuchBucket")


def test_part_number_limits(server: SeglakeServer, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for number in ("0", "10001", "-1", "x", ""):
        r = signed_request(
            server, "PUT", f"/{bucket}/k", f"partNumber={number}&uploadId={upload_id}", body=b"x"
        )
        assert r.status_code == 400, (number, r.text)
        assert "<Code>InvalidArgument</Code>" in r.text
    r = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=10000, Body=b"y")
    assert r["ETag"] == f'"{md5_hex(b"y")}"'


def test_reupload_replaces_part(s3: Any, bucket: str, rng: random.Random) -> None:
    first, second, last = rng.randbytes(PART), rng.randbytes(PART + 7), rng.randbytes(3)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    old = upload_parts(s3, bucket, "k", upload_id, [first, last])
    new = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=second)
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (1, new["ETag"], len(second)), (2, old[1]["ETag"], 3),
    ]  # fmt: skip
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": old}
        )
    assert error_of(exc) == (400, "InvalidPart")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": new["ETag"]}, old[1]]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == second + last


# ---- listing -------------------------------------------------------------------------


def test_list_parts_pagination(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    bodies = [f"part {n}".encode() for n in range(1, 6)]
    done = upload_parts(s3, bucket, "k", upload_id, bodies)
    seen: list[int] = []
    marker = 0
    pages = 0
    while True:
        page = s3.list_parts(
            Bucket=bucket, Key="k", UploadId=upload_id, MaxParts=2, PartNumberMarker=marker
        )
        pages += 1
        assert page["MaxParts"] == 2
        assert page["PartNumberMarker"] == marker
        seen += [p["PartNumber"] for p in page["Parts"]]
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
        assert marker == seen[-1]
    assert pages == 3
    assert seen == [1, 2, 3, 4, 5]
    paginated = s3.get_paginator("list_parts").paginate(
        Bucket=bucket, Key="k", UploadId=upload_id, PaginationConfig={"PageSize": 2}
    )
    etags = [p["ETag"] for page in paginated for p in page["Parts"]]
    assert etags == [d["ETag"] for d in done]


def test_list_multipart_uploads(s3: Any, bucket: str) -> None:
    keys = ["a/1", "a/2", "b", "b", "c/x/y", "d"]
    ids: dict[str, list[str]] = {}
    for k in keys:
        ids.setdefault(k, []).append(s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"])

    everything = s3.list_multipart_uploads(Bucket=bucket)
    got = [(u["Key"], u["UploadId"]) for u in everything["Uploads"]]
    # Keys in order; one key's uploads in the order they were initiated.
    assert got == [(k, i) for k in ids for i in ids[k]]
    assert everything["IsTruncated"] is False
    first = everything["Uploads"][0]
    assert first["StorageClass"] == "STANDARD" and first["Initiated"]

    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/", "c/"]
    assert [u["Key"] for u in rolled["Uploads"]] == ["b", "b", "d"]

    under_c = s3.list_multipart_uploads(Bucket=bucket, Prefix="c/", Delimiter="/")
    assert [p["Prefix"] for p in under_c["CommonPrefixes"]] == ["c/x/"]
    assert under_c.get("Uploads", []) == []

    only_a = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in only_a["Uploads"]] == ["a/1", "a/2"]

    after_b = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b")
    assert [u["Key"] for u in after_b["Uploads"]] == ["c/x/y", "d"]
    between = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b", UploadIdMarker=ids["b"][0])
    assert [(u["Key"], u["UploadId"]) for u in between["Uploads"]] == [
        ("b", ids["b"][1]), ("c/x/y", ids["c/x/y"][0]), ("d", ids["d"][0]),
    ]  # fmt: skip

    # Pages of two, entries and prefixes counted alike.
    entries: list[str] = []
    params: dict[str, Any] = {"Bucket": bucket, "MaxUploads": 2, "Delimiter": "/"}
    for _ in range(10):
        page = s3.list_multipart_uploads(**params)
        entries += [u["Key"] for u in page.get("Uploads", [])]
        entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        params["KeyMarker"] = page["NextKeyMarker"]
        params["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
    assert sorted(entries) == ["a/", "b", "b", "c/", "d"]

    paginated = s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}
    )
    assert [u["UploadId"] for page in paginated for u in page.get("Uploads", [])] == [
        i for k in ids for i in ids[k]
    ]


def test_list_multipart_uploads_url_encoding(s3: Any, bucket: str) -> None:
    s3.create_multipart_upload(Bucket=bucket, Key="sp ace/ü+x")
    r = s3.list_multipart_uploads(Bucket=bucket, EncodingType="url")
    assert r["EncodingType"] == "url"
    # boto3 does not decode this listing; the key arrives percent-encoded.
    assert [u["Key"] for u in r["Uploads"]] == ["sp%20ace/%C3%BC%2Bx"]
    assert [unquote(u["Key"]) for u in r["Uploads"]] == ["sp ace/ü+x"]
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", EncodingType="url")
    assert [unquote(p["Prefix"]) for p in rolled["CommonPrefixes"]] == ["sp ace/"]
    plain = s3.list_multipart_uploads(Bucket=bucket)
    assert [u["Key"] for u in plain["Uploads"]] == ["sp ace/ü+x"]


# ---- UploadPartCopy -----------------------------------------------------------------


def test_upload_part_copy(s3: Any, bucket: str, rng: random.Random) -> None:
    src = rng.randbytes(9 * MiB + 123)  # chunks of 4 MiB, 4 MiB, 1 MiB + 123
    put = s3.put_object(Bucket=bucket, Key="src", Body=src)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]

    whole = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
    )  # fmt: skip
    assert whole["CopyPartResult"]["ETag"] == f'"{md5_hex(src)}"'
    assert whole["CopySourceVersionId"] == put["VersionId"]
    # Cut at both ends and across a chunk boundary.
    lo, hi = 1000, 6 * MiB + 5
    ranged = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "src", "VersionId": put["VersionId"]},
        CopySourceRange=f"bytes={lo}-{hi}",
    )  # fmt: skip
    assert ranged["CopyPartResult"]["ETag"] == f'"{md5_hex(src[lo : hi + 1])}"'
    # Inside one chunk, and exactly one whole chunk.
    small = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=3,
        CopySource=f"{bucket}/src", CopySourceRange="bytes=10-19",
    )  # fmt: skip
    assert small["CopyPartResult"]["ETag"] == f'"{md5_hex(src[10:20])}"'
    sizes = [
        p["Size"] for p in s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload_id)["Parts"]
    ]
    assert sizes == [len(src), hi - lo + 1, 10]

    parts = [
        {"PartNumber": 1, "ETag": whole["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": ranged["CopyPartResult"]["ETag"]},
        {"PartNumber": 3, "ETag": small["CopyPartResult"]["ETag"]},
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    expected = src + src[lo : hi + 1] + src[10:20]
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == expected
    # The source is untouched.
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == src


def test_upload_part_copy_errors(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]

    def copy(source: Any, **kw: Any) -> Any:
        return s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1, CopySource=source, **kw
        )

    cases = [
        ({"Bucket": bucket, "Key": "missing"}, {}, (404, "NoSuchKey")),
        ({"Bucket": "no-such-bucket-mp", "Key": "src"}, {}, (404, "NoSuchBucket")),
        ({"Bucket": bucket, "Key": "src"}, {"CopySourceRange": "bytes=5-10"}, (400, "InvalidArgument")),
        ({"Bucket": bucket, "Key": "src"}, {"CopySourceRange": "bytes=5-"}, (400, "InvalidArgument")),
        ({"Bucket": bucket, "Key": "src"}, {"CopySourceIfMatch": '"nope"'}, (412, "PreconditionFailed")),
        (f"{bucket}", {}, (400, "InvalidArgument")),
    ]  # fmt: skip
    for source, kw, expected in cases:
        with pytest.raises(ClientError) as exc:
            copy(source, **kw)
        assert error_of(exc) == expected, (source, kw)
    ok = copy({"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=9-9")
    assert ok["CopyPartResult"]["ETag"] == f'"{md5_hex(b"9")}"'


# ---- checksums ------------------------------------------------------------------------


def composite(alg: str, parts: list[bytes]) -> str:
    raw = b"".join(hashlib.new(alg, p).digest() for p in parts)
    return base64.b64encode(hashlib.new(alg, raw).digest()).decode() + f"-{len(parts)}"


def test_part_checksums_and_composite(
    s3: Any, plain_s3: Any, bucket: str, rng: random.Random
) -> None:
    parts = [rng.randbytes(PART), rng.randbytes(PART + 1), rng.randbytes(10)]
    create = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")
    assert create["ChecksumAlgorithm"] == "SHA256"
    upload_id = create["UploadId"]
    done = []
    for n, body in enumerate(parts, start=1):
        # Part 2 comes without a checksum: the server computes it.
        client = plain_s3 if n == 2 else s3
        extra = {} if n == 2 else {"ChecksumAlgorithm": "SHA256"}
        r = client.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=n, Body=body, **extra
        )
        want = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert r["ChecksumSHA256"] == want
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": want})
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=4, Body=b"x",
            ChecksumAlgorithm="CRC32",
        )  # fmt: skip
    assert error_of(exc) == (400, "InvalidRequest")
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert [p["ChecksumSHA256"] for p in listed["Parts"]] == [d["ChecksumSHA256"] for d in done]
    assert listed["ChecksumAlgorithm"] == "SHA256"

    bad = [dict(done[0], ChecksumSHA256=done[1]["ChecksumSHA256"]), *done[1:]]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": bad}
        )
    assert error_of(exc) == (400, "InvalidPart")
    result = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert result["ChecksumSHA256"] == composite("sha256", parts)
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite("sha256", parts)
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)


def test_upload_file_and_download_file(s3: Any, bucket: str, tmp_path: Path) -> None:
    data = random.Random(23).randbytes(23 * MiB)
    src, back = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(data)
    cfg = TransferConfig(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4
    )
    s3.upload_file(str(src), bucket, "file.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="file.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-5"')
    # boto3 asks for CRC32 on multipart uploads: the object keeps the composite.
    assert head["ChecksumCRC32"].endswith("-5")
    s3.download_file(bucket, "file.bin", str(back), Config=cfg)
    assert back.read_bytes() == data


# ---- GET/HEAD ?partNumber= ------------------------------------------------------------


def test_get_and_head_by_part_number(s3: Any, bucket: str, rng: random.Random) -> None:
    parts = [rng.randbytes(PART), rng.randbytes(PART + 3), rng.randbytes(5)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    done = upload_parts(s3, bucket, "k", upload_id, parts)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    total = sum(len(p) for p in parts)
    start = 0
    for n, body in enumerate(parts, start=1):
        got = s3.get_object(Bucket=bucket, Key="k", PartNumber=n)
        # Read before asserting: an unread body would hold the connection open.
        assert got["Body"].read() == body
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {start}-{start + len(body) - 1}/{total}"
        head = s3.head_object(Bucket=bucket, Key="k", PartNumber=n)
        assert head["ContentLength"] == len(body)
        assert head["PartsCount"] == 3
        start += len(body)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", PartNumber=4)
    assert error_of(exc) == (416, "InvalidPartNumber")


# ---- durability ----------------------------------------------------------------------------


def test_upload_survives_kill_9(tmp_path: Path) -> None:
    rng = random.Random(99)
    parts = [rng.randbytes(PART), rng.randbytes(PART), rng.randbytes(777)]
    data_dir = tmp_path / "data"
    srv = SeglakeServer(data_dir, frontends=1)
    try:
        srv.start()
        s3 = srv.s3()
        s3.create_bucket(Bucket="crash")
        upload_id = s3.create_multipart_upload(Bucket="crash", Key="k", ContentType="text/x-crash")[
            "UploadId"
        ]
        done = upload_parts(s3, "crash", "k", upload_id, parts[:2])
        srv.kill()  # kill -9 the whole tree, mid-upload
        srv.close()

        srv = SeglakeServer(data_dir, frontends=1)
        srv.start()
        s3 = srv.s3(max_attempts=3)
        listed = s3.list_parts(Bucket="crash", Key="k", UploadId=upload_id)["Parts"]
        assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
            (1, done[0]["ETag"], PART), (2, done[1]["ETag"], PART),
        ]  # fmt: skip
        [upload] = s3.list_multipart_uploads(Bucket="crash")["Uploads"]
        assert upload["UploadId"] == upload_id
        last = s3.upload_part(
            Bucket="crash", Key="k", UploadId=upload_id, PartNumber=3, Body=parts[2]
        )
        done.append({"PartNumber": 3, "ETag": last["ETag"]})
        s3.complete_multipart_upload(
            Bucket="crash", Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
        )
        got = s3.get_object(Bucket="crash", Key="k")
        assert got["Body"].read() == b"".join(parts)
        assert got["ContentType"] == "text/x-crash"
        assert got["ETag"] == multipart_etag(parts)
    finally:
        srv.close()


def test_delete_bucket_refused_while_an_upload_is_open(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="open")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="open", UploadId=upload_id, PartNumber=1, Body=b"x" * 10)
    with pytest.raises(ClientError) as exc:  # the seed's rule: an open upload holds it
        s3.delete_bucket(Bucket=bucket)
    assert error_of(exc) == (409, "BucketNotEmpty")
    parts = s3.list_parts(Bucket=bucket, Key="open", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 10)]
    s3.abort_multipart_upload(Bucket=bucket, Key="open", UploadId=upload_id)
    s3.delete_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
