"""Conditional GET/HEAD (If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since) and the response-* header overrides, over the real server.

Raw requests (httpx, signed with botocore) check what boto3 hides: 304
headers, empty bodies, header formats.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import time
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_request
from tests.harness import SeglakeServer

HTTP_DATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")  # fmt: skip


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


@pytest.fixture
def obj(s3: Any, bucket: str) -> dict[str, Any]:
    s3.put_object(Bucket=bucket, Key="k", Body=b"conditional body")
    head = s3.head_object(Bucket=bucket, Key="k")
    return {"bucket": bucket, "etag": head["ETag"], "modified": head["LastModified"]}


def test_if_match(s3: Any, obj: dict[str, Any]) -> None:
    b, etag = obj["bucket"], obj["etag"]
    for good in (etag, etag.strip('"'), "*", f'"0000", {etag}'):
        assert s3.get_object(Bucket=b, Key="k", IfMatch=good)["Body"].read() == b"conditional body"
        s3.head_object(Bucket=b, Key="k", IfMatch=good)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k", IfMatch='"0123"')
    assert code_of(exc) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=b, Key="k", IfMatch='"0123"')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_if_none_match_304_has_etag_and_no_body(server: SeglakeServer, obj: dict[str, Any]) -> None:
    b, etag = obj["bucket"], obj["etag"]
    for method in ("GET", "HEAD"):
        for value in (etag, "*", f"W/{etag}", f'"aaaa", {etag}'):
            resp = signed_request(server, method, f"/{b}/k", headers={"If-None-Match": value})
            assert resp.status_code == 304, (method, value, resp.text)
            assert resp.content == b""
            assert resp.headers["etag"] == etag
            assert HTTP_DATE.match(resp.headers["last-modified"])
            assert resp.headers["x-amz-request-id"]
        resp = signed_request(server, method, f"/{b}/k", headers={"If-None-Match": '"other"'})
        assert resp.status_code == 200


def test_412_body_names_the_condition(server: SeglakeServer, obj: dict[str, Any]) -> None:
    resp = signed_request(server, "GET", f"/{obj['bucket']}/k", headers={"If-Match": '"nope"'})
    assert resp.status_code == 412
    assert b"<Code>PreconditionFailed</Code>" in resp.content
    assert b"<Condition>If-Match</Condition>" in resp.content


def test_modified_since_and_unmodified_since(s3: Any, obj: dict[str, Any]) -> None:
    b, modified = obj["bucket"], obj["modified"]
    earlier, later = modified - dt.timedelta(seconds=5), modified + dt.timedelta(seconds=5)
    assert s3.get_object(Bucket=b, Key="k", IfModifiedSince=earlier)["ContentLength"] == 16
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k", IfModifiedSince=modified)  # same second
    assert code_of(exc)[0] == 304
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=b, Key="k", IfModifiedSince=later)
    assert code_of(exc)[0] == 304

    s3.get_object(Bucket=b, Key="k", IfUnmodifiedSince=modified)
    s3.head_object(Bucket=b, Key="k", IfUnmodifiedSince=later)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k", IfUnmodifiedSince=earlier)
    assert code_of(exc) == (412, "PreconditionFailed")


def test_precedence(server: SeglakeServer, obj: dict[str, Any]) -> None:
    b, etag = obj["bucket"], obj["etag"]
    ts = obj["modified"].timestamp()
    earlier = email.utils.formatdate(ts - 5, usegmt=True)
    later = email.utils.formatdate(ts + 5, usegmt=True)
    cases = [
        # If-Match true beats a false If-Unmodified-Since (RFC 7232 §3.4).
        ({"If-Match": etag, "If-Unmodified-Since": earlier}, 200),
        ({"If-Match": '"x"', "If-Unmodified-Since": later}, 412),
        # If-None-Match false beats If-Modified-Since "not modified" (§3.3).
        ({"If-None-Match": '"x"', "If-Modified-Since": later}, 200),
        ({"If-None-Match": etag, "If-Modified-Since": earlier}, 304),
        # A failed If-Match is 412 even when If-None-Match would be 304.
        ({"If-Match": '"x"', "If-None-Match": etag}, 412),
        ({"If-Unmodified-Since": earlier, "If-Modified-Since": later}, 412),
        ({"If-Match": etag, "If-None-Match": '"x"', "If-Modified-Since": earlier}, 200),
        # Dates that do not parse are ignored.
        ({"If-Modified-Since": "not a date"}, 200),
        ({"If-Unmodified-Since": "1700000000"}, 200),
    ]
    for headers, status in cases:
        for method in ("GET", "HEAD"):
            resp = signed_request(server, method, f"/{b}/k", headers=headers)
            assert resp.status_code == status, (method, headers, resp.text)


def test_conditions_before_range(server: SeglakeServer, obj: dict[str, Any]) -> None:
    b, etag = obj["bucket"], obj["etag"]
    resp = signed_request(
        server, "GET", f"/{b}/k", headers={"If-None-Match": etag, "Range": "bytes=999-"}
    )
    assert resp.status_code == 304
    resp = signed_request(
        server, "GET", f"/{b}/k", headers={"If-Match": '"x"', "Range": "bytes=999-"}
    )
    assert resp.status_code == 412
    resp = signed_request(
        server, "GET", f"/{b}/k", headers={"If-Match": etag, "Range": "bytes=0-10"}
    )
    assert resp.status_code == 206
    assert resp.content == b"conditional"


def test_conditions_use_the_addressed_version(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")
    s3.put_object(Bucket=bucket, Key="v", Body=b"two")
    got = s3.get_object(Bucket=bucket, Key="v", VersionId=v1["VersionId"], IfMatch=v1["ETag"])
    assert got["Body"].read() == b"one"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="v", IfMatch=v1["ETag"])  # current is "two"
    assert code_of(exc) == (412, "PreconditionFailed")


def test_missing_key_is_404_whatever_the_conditions(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="absent", IfMatch="*")
    assert code_of(exc) == (404, "NoSuchKey")


# ---- response-* overrides --------------------------------------------------------

OVERRIDES = {
    "ResponseContentType": ("ContentType", "text/x-override"),
    "ResponseContentLanguage": ("ContentLanguage", "fr-CA"),
    "ResponseCacheControl": ("CacheControl", "no-store"),
    "ResponseContentDisposition": ("ContentDisposition", 'attachment; filename="o.txt"'),
    "ResponseContentEncoding": ("ContentEncoding", "gzip"),
}


def test_response_overrides_on_get(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket, Key="o", Body=b"override me", ContentType="text/plain",
        CacheControl="max-age=1", ContentLanguage="en",
    )  # fmt: skip
    expires = dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    params = {name: value for name, (_, value) in OVERRIDES.items()}
    got = s3.get_object(Bucket=bucket, Key="o", ResponseExpires=expires, **params)
    assert got["Body"].read() == b"override me"
    for field, value in OVERRIDES.values():
        assert got[field] == value
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    assert headers["expires"] == "Mon, 03 Feb 2031 04:05:06 GMT"
    # One header each: the stored value is replaced, not repeated.
    assert headers["cache-control"] == "no-store"
    # Without overrides the stored values come back.
    plain = s3.get_object(Bucket=bucket, Key="o")
    assert plain["ContentType"] == "text/plain"
    assert plain["CacheControl"] == "max-age=1"


def test_response_overrides_on_head_and_ranges(server: SeglakeServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"0123456789", ContentType="text/plain")
    q = "response-content-type=" + quote("application/x-test", safe="")
    resp = signed_request(server, "HEAD", f"/{bucket}/o", q)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-test"
    assert resp.headers["content-length"] == "10"
    resp = signed_request(server, "GET", f"/{bucket}/o", q, headers={"Range": "bytes=2-4"})
    assert resp.status_code == 206
    assert resp.headers["content-type"] == "application/x-test"
    assert resp.content == b"234"


@pytest.mark.parametrize(
    "value", ["a%0D%0Ab%3A%20c", "a%0Ab", "nul%00", "x" * 5000], ids=["crlf", "lf", "nul", "long"]
)
def test_bad_response_override_is_invalid_argument(
    server: SeglakeServer, s3: Any, bucket: str, value: str
) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    resp = signed_request(server, "GET", f"/{bucket}/o", f"response-content-disposition={value}")
    assert resp.status_code == 400, resp.text
    assert b"<Code>InvalidArgument</Code>" in resp.content
    assert "b: c" not in resp.headers


def test_last_modified_and_date_headers(server: SeglakeServer, s3: Any, bucket: str) -> None:
    before = time.time()
    s3.put_object(Bucket=bucket, Key="d", Body=b"date")
    resp = signed_request(server, "GET", f"/{bucket}/d")
    assert resp.status_code == 200
    assert HTTP_DATE.match(resp.headers["last-modified"]), resp.headers["last-modified"]
    assert HTTP_DATE.match(resp.headers["date"]), resp.headers["date"]
    modified = email.utils.parsedate_to_datetime(resp.headers["last-modified"]).timestamp()
    assert before - 2 <= modified <= time.time() + 1
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["LastModified"]
    # The listing has milliseconds; the header has the same time, truncated.
    assert int(listed.timestamp()) == int(modified)
