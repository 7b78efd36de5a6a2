"""User metadata (x-amz-meta-*) and the standard stored headers, end to end.

S3 lowercases metadata names, limits names + values to 2 KiB (UTF-8 bytes),
decodes a non-ASCII value (raw UTF-8 or RFC 2047) on the way in and returns
it RFC 2047-encoded; ASCII values come back byte for byte.
"""

from __future__ import annotations

import base64
import datetime as dt
from email.header import decode_header, make_header
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_headers
from tests.harness import SeglakeServer


def raw(
    server: SeglakeServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> httpx.Response:
    """A signed request whose header values go out as raw UTF-8 bytes."""
    url = server.endpoint + path
    hdrs = signed_headers(method, url, body=body, headers=headers)
    wire = [(k.encode(), v.encode("utf-8")) for k, v in hdrs.items()]
    return httpx.request(method, url, headers=wire, content=body)


def test_user_metadata_round_trip_and_lowercase(s3: Any, bucket: str) -> None:
    meta = {"Owner": "alice", "MiXeD-Case": "Value With Spaces", "empty": "", "n": "1"}
    s3.put_object(Bucket=bucket, Key="m", Body=b"x", Metadata=meta)
    for resp in (s3.head_object(Bucket=bucket, Key="m"), s3.get_object(Bucket=bucket, Key="m")):
        assert resp["Metadata"] == {
            "owner": "alice", "mixed-case": "Value With Spaces", "empty": "", "n": "1",
        }  # fmt: skip


def test_metadata_size_limit(s3: Any, bucket: str) -> None:
    # 2 KiB counts names and values: "k" + 2047 bytes is exactly the limit.
    s3.put_object(Bucket=bucket, Key="fits", Body=b"x", Metadata={"k": "v" * 2047})
    assert s3.head_object(Bucket=bucket, Key="fits")["Metadata"]["k"] == "v" * 2047
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="big", Body=b"x", Metadata={"k": "v" * 2048})
    assert exc.value.response["Error"]["Code"] == "MetadataTooLarge"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_non_ascii_value_comes_back_rfc2047(server: SeglakeServer, bucket: str) -> None:
    text = "Grüße, 日本 😀"
    resp = raw(server, "PUT", f"/{bucket}/u", headers={"x-amz-meta-greeting": text}, body=b"u")
    assert resp.status_code == 200, resp.text
    got = raw(server, "HEAD", f"/{bucket}/u")
    value = got.headers.raw  # bytes as sent
    sent = dict((k.lower(), v) for k, v in value)[b"x-amz-meta-greeting"]
    assert sent == b"=?UTF-8?B?" + base64.b64encode(text.encode()) + b"?="
    assert str(make_header(decode_header(sent.decode("ascii")))) == text


def test_rfc2047_input_is_decoded_then_reencoded(server: SeglakeServer, bucket: str) -> None:
    encoded = "=?UTF-8?Q?caf=C3=A9?="
    resp = raw(server, "PUT", f"/{bucket}/q", headers={"x-amz-meta-drink": encoded}, body=b"q")
    assert resp.status_code == 200, resp.text
    got = raw(server, "GET", f"/{bucket}/q")
    assert (
        got.headers["x-amz-meta-drink"]
        == "=?UTF-8?B?" + base64.b64encode("café".encode()).decode() + "?="
    )
    # An ASCII value that merely looks odd is kept as it is.
    odd = "=? not an encoded word ?="
    raw(server, "PUT", f"/{bucket}/odd", headers={"x-amz-meta-x": odd}, body=b"o")
    assert raw(server, "HEAD", f"/{bucket}/odd").headers["x-amz-meta-x"] == odd


def test_non_ascii_counts_utf8_bytes_in_limit(server: SeglakeServer, bucket: str) -> None:
    # 1023 two-byte characters + name "k" = 2047 bytes: fits; one more does not.
    resp = raw(server, "PUT", f"/{bucket}/a", headers={"x-amz-meta-k": "é" * 1023}, body=b"a")
    assert resp.status_code == 200, resp.text
    resp = raw(server, "PUT", f"/{bucket}/b", headers={"x-amz-meta-k": "é" * 1024}, body=b"b")
    assert resp.status_code == 400
    assert b"MetadataTooLarge" in resp.content


def test_standard_headers_stored_and_returned(s3: Any, bucket: str) -> None:
    expires = dt.datetime(2032, 7, 8, 9, 10, 11, tzinfo=dt.UTC)
    s3.put_object(
        Bucket=bucket, Key="std", Body=b"standard", ContentType="application/json",
        ContentDisposition="inline", ContentEncoding="br", ContentLanguage="de-AT",
        CacheControl="public, max-age=3600", Expires=expires, Metadata={"a": "b"},
    )  # fmt: skip
    for resp in (
        s3.head_object(Bucket=bucket, Key="std"),
        s3.get_object(Bucket=bucket, Key="std"),
    ):
        assert resp["ContentType"] == "application/json"
        assert resp["ContentDisposition"] == "inline"
        assert resp["ContentEncoding"] == "br"
        assert resp["ContentLanguage"] == "de-AT"
        assert resp["CacheControl"] == "public, max-age=3600"
        assert resp["ResponseMetadata"]["HTTPHeaders"]["expires"] == (
            "Thu, 08 Jul 2032 09:10:11 GMT"
        )
        assert resp["Metadata"] == {"a": "b"}
    # A new version replaces them all.
    s3.put_object(Bucket=bucket, Key="std", Body=b"plain")
    head = s3.head_object(Bucket=bucket, Key="std")
    assert head["ContentType"] == "binary/octet-stream"
    assert head["Metadata"] == {}
    for field in ("ContentDisposition", "ContentEncoding", "ContentLanguage", "CacheControl"):
        assert field not in head


def test_metadata_of_older_version_is_its_own(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"1", Metadata={"gen": "one"})["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"2", Metadata={"gen": "two"})
    assert s3.head_object(Bucket=bucket, Key="v")["Metadata"] == {"gen": "two"}
    assert s3.head_object(Bucket=bucket, Key="v", VersionId=v1)["Metadata"] == {"gen": "one"}
