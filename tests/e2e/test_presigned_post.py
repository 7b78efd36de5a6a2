"""Browser form uploads (POST Object) against the real server.

Forms come from boto3's ``generate_presigned_post`` (the signer browsers'
backends use) or, for policies boto3 will not write (expired, odd
conditions), from the same signing steps done here by hand. Bodies are
posted as real multipart/form-data (httpx) or raw bytes. Every refusal is
checked for its S3 error code and for nothing having been stored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import httpx
import pytest

from tests.e2e._signing import signed_headers
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

TIMEOUT = 30.0


def _dropbox_policy(srv: SeglakeServer) -> None:
    # Anyone may upload into dropbox/incoming/, nothing else.
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::dropbox/incoming/*",
    }
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    srv.s3().put_bucket_policy(Bucket="dropbox", Policy=json.dumps(policy))


server = server_fixture(
    "--public-buckets", "dropbox", buckets=["forms", "elsewhere", "dropbox"], setup=_dropbox_policy
)


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    # boto3 writes SigV2 forms unless told to sign with SigV4.
    return server.s3(signature_version="s3v4")


def keys_in(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def post_form(
    url: str, fields: dict[str, str], content: bytes, filename: str = "f.bin"
) -> httpx.Response:
    # httpx writes the data fields first and the file last, as S3 requires.
    return httpx.post(
        url,
        data=fields,
        files={"file": (filename, content, "application/octet-stream")},
        timeout=TIMEOUT,
    )


def error_code(resp: httpx.Response) -> str:
    root = ElementTree.fromstring(resp.content)
    return root.findtext("Code") or ""


def hand_signed(
    conditions: list[Any],
    *,
    expires_in: float = 600,
    secret: str = SECRET_KEY,
    access_key: str = ACCESS_KEY,
) -> dict[str, str]:
    """A form signed the SigV4 POST way: HMAC of the base64 policy."""
    now = dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{access_key}/{now:%Y%m%d}/{REGION}/s3/aws4_request"
    expiration = (now + dt.timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    policy = {
        "expiration": expiration,
        "conditions": [
            *conditions,
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
        ],
    }
    encoded = base64.b64encode(json.dumps(policy).encode()).decode()
    key = ("AWS4" + secret).encode()
    for part in (f"{now:%Y%m%d}", REGION, "s3", "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return {
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": credential,
        "x-amz-date": amz_date,
        "policy": encoded,
        "x-amz-signature": hmac.new(key, encoded.encode(), "sha256").hexdigest(),
    }


# --------------------------------------------------------------------------
# Uploads that work


def test_boto3_presigned_post_round_trip(server: SeglakeServer, s3: Any) -> None:
    post = s3.generate_presigned_post("forms", "plain.txt", ExpiresIn=300)
    assert post["url"].endswith("/forms")
    data = b"hello from a browser form\n"
    resp = post_form(post["url"], post["fields"], data)
    assert resp.status_code == 204, resp.text
    md5 = hashlib.md5(data).hexdigest()
    assert resp.headers["etag"] == f'"{md5}"'
    assert resp.headers["location"].endswith("/forms/plain.txt")
    got = s3.get_object(Bucket="forms", Key="plain.txt")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{md5}"'


def test_large_file_streams_across_chunks(s3: Any) -> None:
    # 9 MiB + a bit: two full 4 MiB chunks and a tail, with the multipart
    # delimiter search running across every network read.
    data = os.urandom(9 * 1024 * 1024 + 12345)
    post = s3.generate_presigned_post(
        "forms", "big.bin", Conditions=[["content-length-range", 1, 10 * 1024 * 1024]]
    )
    resp = post_form(post["url"], post["fields"], data)
    assert resp.status_code == 204, resp.text
    body = s3.get_object(Bucket="forms", Key="big.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("status", ["200", "201", "204"])
def test_success_action_status(s3: Any, status: str) -> None:
    key = f"status-{status}"
    post = s3.generate_presigned_post(
        "forms",
        key,
        Fields={"success_action_status": status},
        Conditions=[{"success_action_status": status}],
    )
    resp = post_form(post["url"], post["fields"], b"x" * 10)
    assert resp.status_code == int(status), resp.text
    etag = f'"{hashlib.md5(b"x" * 10).hexdigest()}"'
    if status == "201":
        root = ElementTree.fromstring(resp.content)
        assert root.tag == "PostResponse"
        assert root.findtext("Bucket") == "forms"
        assert root.findtext("Key") == key
        assert root.findtext("ETag") == etag
        assert (root.findtext("Location") or "").endswith(f"/forms/{key}")
    else:
        assert resp.content == b""
    assert s3.get_object(Bucket="forms", Key=key)["Body"].read() == b"x" * 10


def test_success_action_redirect(s3: Any) -> None:
    target = "https://app.example/done?from=form"
    post = s3.generate_presigned_post(
        "forms",
        "redirected",
        Fields={"success_action_redirect": target},
        Conditions=[{"success_action_redirect": target}],
    )
    resp = post_form(post["url"], post["fields"], b"redirect me")
    assert resp.status_code == 303, resp.text
    location = urlsplit(resp.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://app.example/done"
    query = parse_qs(location.query)
    assert query["from"] == ["form"]
    assert query["bucket"] == ["forms"]
    assert query["key"] == ["redirected"]
    assert query["etag"] == [f'"{hashlib.md5(b"redirect me").hexdigest()}"']
    assert s3.get_object(Bucket="forms", Key="redirected")["Body"].read() == b"redirect me"


def test_filename_substitution(s3: Any) -> None:
    post = s3.generate_presigned_post("forms", "uploads/${filename}")
    assert ["starts-with", "$key", "uploads/"] in json.loads(
        base64.b64decode(post["fields"]["policy"])
    )["conditions"]
    resp = post_form(post["url"], post["fields"], b"photo bytes", filename="cat photo.jpg")
    assert resp.status_code == 204, resp.text
    assert s3.get_object(Bucket="forms", Key="uploads/cat photo.jpg")["Body"].read() == (
        b"photo bytes"
    )


def test_metadata_and_content_type_fields(s3: Any) -> None:
    fields = {"Content-Type": "image/png", "x-amz-meta-owner": "alice"}
    post = s3.generate_presigned_post(
        "forms",
        "meta.png",
        Fields=fields,
        Conditions=[["starts-with", "$Content-Type", "image/"], {"x-amz-meta-owner": "alice"}],
    )
    resp = post_form(post["url"], post["fields"], b"\x89PNG....")
    assert resp.status_code == 204, resp.text
    head = s3.head_object(Bucket="forms", Key="meta.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"owner": "alice"}


# --------------------------------------------------------------------------
# Refusals: each with the right S3 error, and nothing stored


def test_expired_policy_refused(s3: Any, server: SeglakeServer) -> None:
    fields = {
        "key": "expired",
        **hand_signed([{"bucket": "forms"}, {"key": "expired"}], expires_in=-5),
    }
    resp = post_form(f"{server.endpoint}/forms", fields, b"too late")
    assert resp.status_code == 403
    assert error_code(resp) == "AccessDenied"
    assert "expired" in resp.text
    assert "expired" not in keys_in(s3, "forms")


@pytest.mark.parametrize(
    ("conditions", "extra", "code"),
    [
        ([{"key": "allowed"}], {}, "AccessDenied"),  # eq on key fails
        ([["starts-with", "$key", "only/"]], {}, "AccessDenied"),
        (
            [["eq", "$key", "violation"], {"x-amz-meta-a": "1"}],
            {"x-amz-meta-a": "2"},
            "AccessDenied",
        ),
        ([["eq", "$key", "violation"]], {"x-amz-meta-extra": "not in policy"}, "AccessDenied"),
        ([["eq", "$key", "violation"], ["content-length-range", 1, 4]], {}, "EntityTooLarge"),
        ([["eq", "$key", "violation"], ["content-length-range", 100, 200]], {}, "EntityTooSmall"),
        (
            [["eq", "$key", "violation"], ["not-an-operator", "$key", "x"]],
            {},
            "InvalidPolicyDocument",
        ),
    ],
    ids=["eq", "starts-with", "meta-eq", "extra-field", "too-large", "too-small", "bad-operator"],
)
def test_violated_conditions_refused(
    server: SeglakeServer, s3: Any, conditions: list[Any], extra: dict[str, str], code: str
) -> None:
    fields = {"key": "violation", **extra, **hand_signed([{"bucket": "forms"}, *conditions])}
    resp = post_form(f"{server.endpoint}/forms", fields, b"0123456789")
    assert error_code(resp) == code, resp.text
    assert resp.status_code in (400, 403)
    assert "violation" not in keys_in(s3, "forms")


def test_bucket_field_cannot_redirect_upload(server: SeglakeServer, s3: Any) -> None:
    # The policy names "elsewhere" and the form says bucket=elsewhere, but the
    # URL is /forms: the upload must neither land in "elsewhere" nor pass.
    fields = {
        "key": "smuggled",
        "bucket": "elsewhere",
        **hand_signed([{"bucket": "elsewhere"}, {"key": "smuggled"}]),
    }
    resp = post_form(f"{server.endpoint}/forms", fields, b"smuggled bytes")
    assert resp.status_code in (400, 403), resp.text
    assert error_code(resp) in ("InvalidArgument", "AccessDenied")
    assert "smuggled" not in keys_in(s3, "elsewhere")
    assert "smuggled" not in keys_in(s3, "forms")
    # The same policy without the bucket field fails its bucket condition.
    del fields["bucket"]
    resp = post_form(f"{server.endpoint}/forms", fields, b"smuggled bytes")
    assert resp.status_code == 403
    assert error_code(resp) == "AccessDenied"
    assert "smuggled" not in keys_in(s3, "forms")


def test_tampered_signature_and_unknown_key_refused(server: SeglakeServer, s3: Any) -> None:
    post = s3.generate_presigned_post("forms", "tampered")
    fields = dict(post["fields"])
    sig = fields["x-amz-signature"]
    fields["x-amz-signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    resp = post_form(post["url"], fields, b"nope")
    assert resp.status_code == 403
    assert error_code(resp) == "SignatureDoesNotMatch"
    assert sig not in resp.text  # the expected signature never leaks
    # A policy edited after signing (wider key) fails the same way.
    fields = dict(post["fields"])
    policy = json.loads(base64.b64decode(fields["policy"]))
    policy["conditions"] = [c for c in policy["conditions"] if c != {"key": "tampered"}]
    fields["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    fields["key"] = "anything-goes"
    resp = post_form(post["url"], fields, b"nope")
    assert error_code(resp) == "SignatureDoesNotMatch"
    wrong = {"key": "tampered", **hand_signed([{"key": "tampered"}], secret="not-the-secret")}
    assert error_code(post_form(post["url"], wrong, b"nope")) == "SignatureDoesNotMatch"
    unknown = {"key": "tampered", **hand_signed([{"key": "tampered"}], access_key="NOBODY")}
    assert error_code(post_form(post["url"], unknown, b"nope")) == "InvalidAccessKeyId"
    assert not {"tampered", "anything-goes"} & set(keys_in(s3, "forms"))


def test_sigv2_form_refused_with_a_clear_message(server: SeglakeServer) -> None:
    post = server.s3().generate_presigned_post("forms", "v2")
    assert "AWSAccessKeyId" in post["fields"]
    resp = post_form(post["url"], post["fields"], b"v2 bytes")
    assert resp.status_code == 403
    assert error_code(resp) == "AccessDenied"
    assert "Signature Version 2" in resp.text
    assert "v2" not in keys_in(server.s3(), "forms")


def test_not_a_form_and_missing_file(server: SeglakeServer, s3: Any) -> None:
    url = f"{server.endpoint}/forms"
    resp = httpx.post(
        url, content=b"key=x", headers={"content-type": "text/plain"}, timeout=TIMEOUT
    )
    assert resp.status_code == 412
    assert error_code(resp) == "PreconditionFailed"
    fields = {"key": "nofile", **hand_signed([{"bucket": "forms"}, {"key": "nofile"}])}
    resp = httpx.post(url, data=fields, files={"other": ("x", b"y")}, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert error_code(resp) == "IncorrectNumberOfFilesInPostRequest"
    assert "nofile" not in keys_in(s3, "forms")


def test_hostile_form_bodies(server: SeglakeServer, s3: Any) -> None:
    url = f"{server.endpoint}/forms"
    boundary = "xyzBOUNDARY"
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    huge_field = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\n'.encode()
        + b"k" * (200 * 1024)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    resp = httpx.post(url, content=huge_field, headers=headers, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert error_code(resp) == "MalformedPOSTRequest"
    no_disposition = f"--{boundary}\r\nX: y\r\n\r\nv\r\n--{boundary}--\r\n".encode()
    resp = httpx.post(url, content=no_disposition, headers=headers, timeout=TIMEOUT)
    assert error_code(resp) == "MalformedPOSTRequest"
    truncated = f'--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\nab'.encode()
    resp = httpx.post(url, content=truncated, headers=headers, timeout=TIMEOUT)
    assert error_code(resp) == "MalformedPOSTRequest"
    assert keys_in(s3, "elsewhere") == []


def test_unsigned_form_only_where_a_public_policy_allows(server: SeglakeServer, s3: Any) -> None:
    url = server.endpoint
    # Not a public bucket: an unsigned form is anonymous and refused.
    resp = post_form(f"{url}/forms", {"key": "anon"}, b"anonymous bytes")
    assert resp.status_code == 403
    assert error_code(resp) == "AccessDenied"
    assert "anon" not in keys_in(s3, "forms")
    # Public bucket, key outside what its policy lets anyone write.
    resp = post_form(f"{url}/dropbox", {"key": "outside"}, b"anonymous bytes")
    assert resp.status_code == 403
    assert error_code(resp) == "AccessDenied"
    # Public bucket, allowed prefix: stored.
    resp = post_form(f"{url}/dropbox", {"key": "incoming/${filename}"}, b"hi", filename="a.txt")
    assert resp.status_code == 204, resp.text
    assert keys_in(s3, "dropbox") == ["incoming/a.txt"]
    assert s3.get_object(Bucket="dropbox", Key="incoming/a.txt")["Body"].read() == b"hi"


def test_header_signed_post_is_not_a_form_signature(server: SeglakeServer, s3: Any) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="key"\r\n\r\nhdr\r\n--b--\r\n'
    url = f"{server.endpoint}/forms"
    headers = signed_headers("POST", url, body=body)
    headers["content-type"] = "multipart/form-data; boundary=b"
    resp = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert error_code(resp) == "InvalidRequest"
    assert "hdr" not in keys_in(s3, "forms")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--max-object-size", "1KiB"], "EntityTooLarge"),
        (["--allow-unsigned-payload=false"], "AccessDenied"),
    ],
    ids=["max-object-size", "unsigned-disabled"],
)
def test_server_limits_apply_to_forms(tmp_path: Any, args: list[str], code: str) -> None:
    srv = SeglakeServer(tmp_path / "data", frontends=1, extra_args=args)
    with srv:
        s3 = srv.s3(signature_version="s3v4")
        s3.create_bucket(Bucket="capped")
        post = s3.generate_presigned_post("capped", "big")
        resp = post_form(post["url"], post["fields"], b"b" * 4096)
        assert error_code(resp) == code, resp.text
        assert keys_in(s3, "capped") == []
        if code == "EntityTooLarge":
            small = post_form(post["url"], post["fields"], b"s" * 1024)
            assert small.status_code == 204
            assert keys_in(s3, "capped") == ["big"]


def test_virtual_hosted_form(server: SeglakeServer, s3: Any) -> None:
    # The bucket comes from the Host header; the form's fields cannot move it.
    post = s3.generate_presigned_post("forms", "vhost-form")
    host = f"forms.localhost:{server.port}"
    fields = dict(post["fields"])
    resp = httpx.post(
        f"{server.endpoint}/",
        data=fields,
        files={"file": ("v", b"vhost bytes")},
        headers={"Host": host},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 204, resp.text
    assert s3.get_object(Bucket="forms", Key="vhost-form")["Body"].read() == b"vhost bytes"
    moved = httpx.post(
        f"{server.endpoint}/",
        data={**fields, "bucket": "forms"},
        files={"file": ("v", b"other")},
        headers={"Host": f"elsewhere.localhost:{server.port}"},
        timeout=TIMEOUT,
    )
    assert moved.status_code in (400, 403)
    assert "vhost-form" not in keys_in(s3, "elsewhere")
