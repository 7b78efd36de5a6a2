"""CopyObject: directives, self-copy rules, conditions, versions, sources that
are missing or malformed, and that a copy shares the source's chunks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import sqlite3
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
from awscrt import checksums as crt_checksums
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_request
from tests.harness import SeglakeServer

MiB = 1024 * 1024
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
SELF_COPY = "This copy request is illegal because it is trying to copy an object to itself"


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def put_source(s3: Any, bucket: str, key: str = "src", body: bytes = b"source bytes") -> Any:
    return s3.put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="text/plain",
        ContentDisposition="inline", CacheControl="max-age=5", ContentLanguage="en",
        Metadata={"origin": "source", "n": "1"},
    )  # fmt: skip


def test_copy_directive_copy_keeps_everything(s3: Any, bucket: str) -> None:
    src = put_source(s3, bucket)
    out = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    result = out["CopyObjectResult"]
    assert result["ETag"] == src["ETag"]
    assert abs(result["LastModified"] - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=30)
    assert out["VersionId"] and out["VersionId"] != src["VersionId"]
    assert out["CopySourceVersionId"] == src["VersionId"]
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"source bytes"
    assert got["ETag"] == src["ETag"]
    assert got["VersionId"] == out["VersionId"]
    assert got["ContentType"] == "text/plain"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "max-age=5"
    assert got["ContentLanguage"] == "en"
    assert got["Metadata"] == {"origin": "source", "n": "1"}


def test_copy_ignores_request_metadata_without_replace(s3: Any, bucket: str) -> None:
    put_source(s3, bucket)
    s3.copy_object(
        Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", Metadata={"new": "x"},
        ContentType="image/png",
    )  # fmt: skip
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["Metadata"] == {"origin": "source", "n": "1"}
    assert head["ContentType"] == "text/plain"


def test_copy_directive_replace(s3: Any, bucket: str) -> None:
    src = put_source(s3, bucket)
    s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE", ContentType="application/json",
        Metadata={"Fresh": "yes"}, ContentEncoding="gzip",
    )  # fmt: skip
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"source bytes"
    assert got["ETag"] == src["ETag"]
    assert got["ContentType"] == "application/json"
    assert got["Metadata"] == {"fresh": "yes"}
    assert got["ContentEncoding"] == "gzip"
    assert "ContentDisposition" not in got and "CacheControl" not in got
    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"origin": "source", "n": "1"}


def test_replace_without_content_type_defaults(s3: Any, bucket: str) -> None:
    put_source(s3, bucket)
    s3.copy_object(
        Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", MetadataDirective="REPLACE"
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["Metadata"] == {}
    assert head["ContentType"] in ("binary/octet-stream", "application/octet-stream")


def test_unknown_directive(s3: Any, bucket: str) -> None:
    put_source(s3, bucket)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", MetadataDirective="MOVE"
        )
    assert code_of(exc) == (400, "InvalidArgument")


def test_self_copy_rules(s3: Any, bucket: str) -> None:
    first = put_source(s3, bucket, body=b"first")
    second = put_source(s3, bucket, body=b"second")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert code_of(exc) == (400, "InvalidRequest")
    assert SELF_COPY in exc.value.response["Error"]["Message"]
    # Naming the current version explicitly is still a copy onto itself.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="src",
            CopySource={"Bucket": bucket, "Key": "src", "VersionId": second["VersionId"]},
        )  # fmt: skip
    assert code_of(exc) == (400, "InvalidRequest")
    # REPLACE changes the metadata: allowed, and a new version.
    out = s3.copy_object(
        Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE", Metadata={"edited": "1"}, ContentType="text/csv",
    )  # fmt: skip
    head = s3.head_object(Bucket=bucket, Key="src")
    assert head["Metadata"] == {"edited": "1"}
    assert head["ContentType"] == "text/csv"
    assert head["VersionId"] == out["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"second"
    # An older version copied over the current one restores it (COPY is fine).
    restored = s3.copy_object(
        Bucket=bucket, Key="src",
        CopySource={"Bucket": bucket, "Key": "src", "VersionId": first["VersionId"]},
    )  # fmt: skip
    assert restored["CopySourceVersionId"] == first["VersionId"]
    got = s3.get_object(Bucket=bucket, Key="src")
    assert got["Body"].read() == b"first"
    assert got["Metadata"] == {"origin": "source", "n": "1"}
    versions = s3.list_object_versions(Bucket=bucket, Prefix="src").get("Versions", [])
    assert len(versions) == 4


def test_copy_across_buckets(s3: Any, make_bucket: Any, rng: Any) -> None:
    a, b = make_bucket("a"), make_bucket("b")
    body = rng.randbytes(9 * MiB + 123)  # three chunks
    src = s3.put_object(Bucket=a, Key="big/src", Body=body)
    out = s3.copy_object(Bucket=b, Key="copied", CopySource={"Bucket": a, "Key": "big/src"})
    assert out["CopyObjectResult"]["ETag"] == src["ETag"]
    got = s3.get_object(Bucket=b, Key="copied")
    assert got["ContentLength"] == len(body)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(body).digest()
    part = s3.get_object(Bucket=b, Key="copied", Range=f"bytes={4 * MiB - 5}-{8 * MiB + 5}")
    assert part["Body"].read() == body[4 * MiB - 5 : 8 * MiB + 6]
    # Deleting the source, even for good, leaves the copy whole.
    s3.delete_object(Bucket=a, Key="big/src", VersionId=src["VersionId"])
    again = s3.get_object(Bucket=b, Key="copied")["Body"].read()
    assert hashlib.sha256(again).digest() == hashlib.sha256(body).digest()


def test_copy_to_missing_bucket_and_from_missing_things(s3: Any, bucket: str) -> None:
    put_source(s3, bucket)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="no-such-bucket-copy", Key="d", CopySource=f"{bucket}/src")
    assert code_of(exc) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource="no-such-bucket-copy/src")
    assert code_of(exc) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/absent")
    assert code_of(exc) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="d",
            CopySource={"Bucket": bucket, "Key": "src", "VersionId": "f" * 24},
        )  # fmt: skip
    assert code_of(exc) == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "src", "VersionId": "x"}
        )
    assert code_of(exc) == (400, "InvalidArgument")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="d")


def test_copy_from_delete_marker(s3: Any, bucket: str) -> None:
    put_source(s3, bucket)
    marker = s3.delete_object(Bucket=bucket, Key="src")
    assert marker["DeleteMarker"]
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/src")
    assert code_of(exc) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="d",
            CopySource={"Bucket": bucket, "Key": "src", "VersionId": marker["VersionId"]},
        )  # fmt: skip
    assert code_of(exc) == (400, "InvalidRequest")
    assert "delete marker" in exc.value.response["Error"]["Message"]


def test_copy_source_conditions(s3: Any, bucket: str) -> None:
    src = put_source(s3, bucket)
    etag = src["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    earlier, later = modified - dt.timedelta(seconds=5), modified + dt.timedelta(seconds=5)
    source = {"Bucket": bucket, "Key": "src"}
    ok = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfMatch": etag.strip('"')},
        {"CopySourceIfNoneMatch": '"other"'},
        {"CopySourceIfModifiedSince": earlier},
        {"CopySourceIfUnmodifiedSince": later},
        # AWS's two documented pairs: If-Match true wins over Unmodified-Since
        # false; If-None-Match false (no match) wins over Modified-Since.
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": earlier},
        {"CopySourceIfNoneMatch": '"other"', "CopySourceIfModifiedSince": later},
    ]
    for i, conds in enumerate(ok):
        s3.copy_object(Bucket=bucket, Key=f"ok{i}", CopySource=source, **conds)
        assert s3.get_object(Bucket=bucket, Key=f"ok{i}")["Body"].read() == b"source bytes"
    failing = [
        {"CopySourceIfMatch": '"other"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": later},
        {"CopySourceIfUnmodifiedSince": earlier},
        {"CopySourceIfMatch": '"other"', "CopySourceIfUnmodifiedSince": later},
        {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": earlier},
    ]
    for i, conds in enumerate(failing):
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key=f"bad{i}", CopySource=source, **conds)
        assert code_of(exc) == (412, "PreconditionFailed"), conds
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=f"bad{i}")


def test_copy_keys_that_need_encoding(s3: Any, bucket: str) -> None:
    keys = ["dir/ä b?c+d&e=f", "a/../b", "../up", "sp ace/%41", "😀/q?x=y"]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        s3.copy_object(
            Bucket=bucket, Key=f"copy{i}/{key}", CopySource={"Bucket": bucket, "Key": key}
        )
        got = s3.get_object(Bucket=bucket, Key=f"copy{i}/{key}")["Body"].read()
        assert got == key.encode()


@pytest.mark.parametrize(
    "source",
    ["", "/", "only-bucket", "only-bucket/", "/only-bucket", "//key", "b/%00nul", "b/%FF%FE"],
)
def test_malformed_copy_source(server: SeglakeServer, bucket: str, source: str) -> None:
    resp = signed_request(server, "PUT", f"/{bucket}/dst", headers={"x-amz-copy-source": source})
    assert resp.status_code == 400, (source, resp.text)
    assert b"<Code>InvalidArgument</Code>" in resp.content


def test_copy_result_xml_and_headers(server: SeglakeServer, s3: Any, bucket: str) -> None:
    src = put_source(s3, bucket, key="raw src")
    resp = signed_request(
        server, "PUT", f"/{bucket}/raw-dst",
        headers={"x-amz-copy-source": quote(f"/{bucket}/raw src")},
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    root = ElementTree.fromstring(resp.content)
    assert root.tag == f"{S3_NS}CopyObjectResult"
    assert root.findtext(f"{S3_NS}ETag") == src["ETag"]
    assert (root.findtext(f"{S3_NS}LastModified") or "").endswith("Z")
    assert resp.headers["x-amz-copy-source-version-id"] == src["VersionId"]
    assert resp.headers["x-amz-version-id"]
    assert resp.headers["content-type"] == "application/xml"


def test_copy_into_unversioned_bucket_has_no_version_headers(
    server: SeglakeServer, s3: Any, bucket: str, request: Any
) -> None:
    from tests.e2e.conftest import bucket_name

    plain = bucket_name(request.node.name + "-plain")
    resp = signed_request(
        server, "PUT", f"/{plain}", headers={"x-seglake-versioning": "unversioned"}
    )
    assert resp.status_code == 200, resp.text
    s3.put_object(Bucket=plain, Key="src", Body=b"plain")
    out = s3.copy_object(Bucket=plain, Key="dst", CopySource=f"{plain}/src")
    assert "VersionId" not in out
    assert "CopySourceVersionId" not in out
    # And from the unversioned bucket into a versioned one.
    out = s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{plain}/src")
    assert out["VersionId"]
    assert "CopySourceVersionId" not in out
    # Overwriting a copy in place (unversioned: the old version goes away).
    s3.copy_object(
        Bucket=plain, Key="dst", CopySource=f"{plain}/dst", MetadataDirective="REPLACE",
        Metadata={"v": "2"},
    )  # fmt: skip
    assert s3.get_object(Bucket=plain, Key="dst")["Body"].read() == b"plain"
    assert s3.head_object(Bucket=plain, Key="dst")["Metadata"] == {"v": "2"}


def _crc32(data: bytes) -> str:
    return base64.b64encode(crt_checksums.crc32(data).to_bytes(4, "big")).decode()


def test_copy_keeps_checksums(s3: Any, bucket: str) -> None:
    body = b"checksummed source"
    s3.put_object(Bucket=bucket, Key="src", Body=body, ChecksumAlgorithm="CRC32")
    out = s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    assert out["CopyObjectResult"].get("ChecksumCRC32") == _crc32(body)
    got = s3.get_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ChecksumCRC32"] == _crc32(body)
    # The same algorithm again is fine; a different one would need the bytes read.
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src", ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="dst3", CopySource=f"{bucket}/src", ChecksumAlgorithm="SHA256"
        )
    assert code_of(exc) == (501, "NotImplemented")


def test_copy_destination_conditions(s3: Any, bucket: str) -> None:
    put_source(s3, bucket)
    s3.put_object(Bucket=bucket, Key="dst", Body=b"existing")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", IfNoneMatch="*")
    assert code_of(exc) == (412, "PreconditionFailed")
    s3.copy_object(Bucket=bucket, Key="fresh", CopySource=f"{bucket}/src", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"existing"


def test_copy_of_multipart_source_is_single_part(
    server: SeglakeServer, s3: Any, bucket: str
) -> None:
    """As on AWS, a CopyObject of an object uploaded in parts makes a
    single-part object: its ETag is the MD5 of the bytes (not "<md5>-N"), it
    has no part layout, and its checksums are whole-object ones."""
    parts = [bytes([i]) * (5 * MiB) for i in (1, 2)] + [b"tail bytes"]
    body = b"".join(parts)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256")
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=data,
            ChecksumAlgorithm="SHA256",
        )  # fmt: skip
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    src = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    assert src["ETag"].strip('"').endswith("-3")
    out = s3.copy_object(Bucket=bucket, Key="mp-copy", CopySource=f"{bucket}/mp")
    md5 = hashlib.md5(body).hexdigest()
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert out["CopyObjectResult"]["ETag"] == f'"{md5}"'
    assert out["CopyObjectResult"]["ChecksumSHA256"] == sha
    got = s3.get_object(Bucket=bucket, Key="mp-copy", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ETag"] == f'"{md5}"' and got["ChecksumSHA256"] == sha
    # No part layout: part 1 is the whole object, there is no part 2.
    head = s3.head_object(Bucket=bucket, Key="mp-copy", PartNumber=1)
    assert head["ContentLength"] == len(body) and "PartsCount" not in head
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="mp-copy", PartNumber=2)
    assert code_of(exc)[0] == 416
    # The source is untouched; a new checksum algorithm can be had, as the
    # bytes are read anyway; a copy of the copy keeps the plain ETag.
    assert s3.head_object(Bucket=bucket, Key="mp")["ETag"] == src["ETag"]
    crc = s3.copy_object(
        Bucket=bucket, Key="mp-crc", CopySource=f"{bucket}/mp", ChecksumAlgorithm="CRC32"
    )
    assert crc["CopyObjectResult"]["ETag"] == f'"{md5}"'
    assert crc["CopyObjectResult"]["ChecksumCRC32"] == _crc32(body)
    again = s3.copy_object(Bucket=bucket, Key="mp-copy2", CopySource=f"{bucket}/mp-copy")
    assert again["CopyObjectResult"]["ETag"] == f'"{md5}"'
    # Source conditions still compare against the source's own ETag.
    s3.copy_object(
        Bucket=bucket, Key="mp-cond", CopySource=f"{bucket}/mp", CopySourceIfMatch=src["ETag"]
    )
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="mp-cond2", CopySource=f"{bucket}/mp", CopySourceIfMatch=f'"{md5}"'
        )
    assert code_of(exc) == (412, "PreconditionFailed")
    # A damaged source (its manifest in meta.db fails its checksum) is
    # refused as ObjectDamaged and marked so, never copied.
    db = sqlite3.connect(str(server.data_dir / "meta.db"), timeout=30)
    try:
        with db:
            (blob,) = db.execute(
                "SELECT manifest FROM versions WHERE bucket = ? AND key = 'mp'", (bucket,)
            ).fetchone()
            bad = bytearray(blob)
            bad[len(bad) // 2] ^= 0x10
            db.execute(
                "UPDATE versions SET manifest = ? WHERE bucket = ? AND key = 'mp'",
                (bytes(bad), bucket),
            )
    finally:
        db.close()
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="mp-bad", CopySource=f"{bucket}/mp")
    assert code_of(exc) == (500, "ObjectDamaged")
    state = sqlite3.connect(f"file:{server.data_dir / 'meta.db'}?mode=ro", uri=True)
    try:
        rows = state.execute(
            "SELECT state FROM versions WHERE bucket = ? AND key = 'mp'", (bucket,)
        ).fetchall()
    finally:
        state.close()
    assert rows == [("DAMAGED",)]
