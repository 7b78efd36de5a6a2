"""Per-bucket CORS against the real server: Put/Get/DeleteBucketCors through
boto3 (AWS's errors included), and browser-style preflights and actual
requests over raw HTTP, answered with exactly the bucket's rules.

The module's server also has server-wide ``--cors-*`` flags, so the fallback
for buckets without rules is visible next to the per-bucket answers; two
frontends, so a change must reach both on the next request. Expected headers
follow recorded AWS answers (``Allow-Credentials: true`` for an echoed
origin, none for ``*``; ``Allow-Methods`` = the rule's methods;
``Allow-Headers`` = the requested names, lower-cased; AWS's three-name
``Vary``).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from seglake.audit.replay import replay
from tests.e2e._helpers import status_and_code
from tests.e2e._signing import signed_headers, signed_request
from tests.faults.util import processes_by_name, sigkill, status_retry, wait_restarted
from tests.harness import SeglakeServer, server_fixture

SITE = "https://app.example.com"
SERVER_WIDE = "https://wide.example.org"
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
TIMEOUT_S = 10.0
BUCKET = "cors-rules"
PLAIN = "cors-plain"

RULES = [
    {"ID": "uploads", "AllowedOrigins": [SITE], "AllowedMethods": ["PUT", "POST"],
     "AllowedHeaders": ["Content-Type", "x-amz-*"], "ExposeHeaders": ["ETag"],
     "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["http://*.example.net", SITE], "AllowedMethods": ["GET", "HEAD"],
     "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "x-amz-request-id"]},
    {"ID": "anyone", "AllowedOrigins": ["*"], "AllowedMethods": ["GET"],
     "AllowedHeaders": ["Authorization"], "MaxAgeSeconds": 3000},
]  # fmt: skip

cors = server_fixture(
    "--cors-origins", SERVER_WIDE, "--cors-methods", "GET,PUT", "--cors-headers", "*",
    "--cors-max-age", "60",
    frontends=2, buckets=[BUCKET, PLAIN],
)  # fmt: skip


@pytest.fixture(scope="module")
def s3(cors: SeglakeServer) -> Any:
    client = cors.s3()
    client.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": RULES})
    client.put_object(Bucket=BUCKET, Key="obj", Body=b"cors body")
    client.put_object(Bucket=PLAIN, Key="obj", Body=b"plain body")
    return client


def options(srv: SeglakeServer, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.request("OPTIONS", srv.endpoint + path, headers=headers, timeout=TIMEOUT_S)


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-") or k == "vary"}


def xml_put(srv: SeglakeServer, bucket: str, body: bytes, md5: bool = True) -> httpx.Response:
    headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()} if md5 else {}
    return signed_request(srv, "PUT", f"/{bucket}", "cors", headers, body)


# ---- the endpoints ---------------------------------------------------------------------


def test_put_get_delete(cors: SeglakeServer, s3: Any) -> None:
    s3.create_bucket(Bucket="cors-crud")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket="cors-crud")
    assert status_and_code(e) == (404, "NoSuchCORSConfiguration")
    assert e.value.response["Error"]["Message"] == "The CORS configuration does not exist"
    assert e.value.response["Error"]["BucketName"] == "cors-crud"
    # Deleting what is not there is 204, as AWS.
    assert s3.delete_bucket_cors(Bucket="cors-crud")["ResponseMetadata"]["HTTPStatusCode"] == 204
    put = s3.put_bucket_cors(Bucket="cors-crud", CORSConfiguration={"CORSRules": RULES})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_cors(Bucket="cors-crud")["CORSRules"] == RULES
    # A second PUT replaces the whole configuration.
    one = [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]
    s3.put_bucket_cors(Bucket="cors-crud", CORSConfiguration={"CORSRules": one})
    assert s3.get_bucket_cors(Bucket="cors-crud")["CORSRules"] == one
    assert s3.delete_bucket_cors(Bucket="cors-crud")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket="cors-crud")
    assert status_and_code(e) == (404, "NoSuchCORSConfiguration")
    for call in (s3.get_bucket_cors, s3.delete_bucket_cors):
        with pytest.raises(ClientError) as e:
            call(Bucket="cors-none")
        assert status_and_code(e) == (404, "NoSuchBucket")


def test_values_come_back_as_written(cors: SeglakeServer, s3: Any) -> None:
    s3.create_bucket(Bucket="cors-casing")
    rules = [{"AllowedHeaders": ["x-AMZ-server-SIDE-encryption"], "AllowedMethods": ["GET"],
              "AllowedOrigins": [""], "ExposeHeaders": ["X-Custom"]}]  # fmt: skip
    s3.put_bucket_cors(Bucket="cors-casing", CORSConfiguration={"CORSRules": rules})
    assert s3.get_bucket_cors(Bucket="cors-casing")["CORSRules"] == rules


def _rule_xml(inner: str) -> bytes:
    return (
        '<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{inner}</CORSConfiguration>"
    ).encode()


GOOD_RULE = (
    "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>"
)
REFUSED = [
    ("no rule", _rule_xml(""), "MalformedXML"),
    ("no origin", _rule_xml("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"),
     "MalformedXML"),
    ("no method", _rule_xml("<CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"),
     "MalformedXML"),
    ("unknown element", _rule_xml("<CORSRule><AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod><Nope>1</Nope></CORSRule>"), "MalformedXML"),
    ("not xml", b"<CORSConfiguration><CORSRule>", "MalformedXML"),
    ("101 rules", _rule_xml(GOOD_RULE * 101), "InvalidRequest"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "code"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_bodies(cors: SeglakeServer, s3: Any, name: str, body: bytes, code: str) -> None:
    r = xml_put(cors, BUCKET, body)
    assert r.status_code == 400, r.text
    assert f"<Code>{code}</Code>" in r.text
    assert s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"] == RULES  # nothing changed


def test_refused_through_boto3(cors: SeglakeServer, s3: Any) -> None:
    bad = [
        ([{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}],
         "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"),
        ([{"AllowedOrigins": ["https://*.*.example.com"], "AllowedMethods": ["GET"]}],
         'AllowedOrigin "https://*.*.example.com" can not have more than one wildcard.'),
        ([{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["a*b*"]}],
         'AllowedHeader "a*b*" can not have more than one wildcard.'),
        ([{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "ExposeHeaders": ["*"]}],
         "wildcard for ExposeHeader"),
    ]  # fmt: skip
    for rules, message in bad:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": rules})
        assert status_and_code(e) == (400, "InvalidRequest")
        assert message in e.value.response["Error"]["Message"]
    assert s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"] == RULES


def test_content_md5_is_required_and_checked(cors: SeglakeServer, s3: Any) -> None:
    body = _rule_xml(GOOD_RULE)
    r = xml_put(cors, BUCKET, body, md5=False)
    assert r.status_code == 400 and "<Code>InvalidRequest</Code>" in r.text
    assert "Content-Md5" in r.text
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    r = signed_request(cors, "PUT", f"/{BUCKET}", "cors", {"Content-MD5": wrong}, body)
    assert r.status_code == 400 and "<Code>BadDigest</Code>" in r.text
    # An x-amz-checksum-* value does instead of Content-MD5, as AWS.
    crc = s3.put_bucket_cors(
        Bucket=PLAIN, ChecksumAlgorithm="CRC32",
        CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]},
    )  # fmt: skip
    assert crc["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.delete_bucket_cors(Bucket=PLAIN)
    assert s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"] == RULES


def test_a_bucket_policy_can_deny_the_cors_actions(cors: SeglakeServer, s3: Any) -> None:
    s3.create_bucket(Bucket="cors-denied")
    s3.put_bucket_policy(
        Bucket="cors-denied",
        Policy='{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", '
        '"Action": ["s3:GetBucketCORS", "s3:PutBucketCORS"], '
        '"Resource": "arn:aws:s3:::cors-denied"}]}',
    )
    calls = [
        lambda: s3.get_bucket_cors(Bucket="cors-denied"),
        lambda: s3.delete_bucket_cors(Bucket="cors-denied"),
        lambda: s3.put_bucket_cors(
            Bucket="cors-denied",
            CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]},
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert status_and_code(e) == (403, "AccessDenied")


def test_deleting_the_bucket_clears_its_rules(cors: SeglakeServer, s3: Any) -> None:
    s3.create_bucket(Bucket="cors-reborn")
    s3.put_bucket_cors(Bucket="cors-reborn", CORSConfiguration={"CORSRules": RULES})
    s3.delete_bucket(Bucket="cors-reborn")
    s3.create_bucket(Bucket="cors-reborn")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket="cors-reborn")
    assert status_and_code(e) == (404, "NoSuchCORSConfiguration")
    # ... and its preflights fall back to the server-wide policy.
    r = options(cors, "/cors-reborn/k", {"Origin": SITE, "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 403


# ---- preflights ------------------------------------------------------------------------

PREFLIGHTS = [
    # (origin, method, requested headers, expected CORS headers; None = 403)
    (SITE, "PUT", "Content-Type, X-Amz-Date", {
        "access-control-allow-origin": SITE, "access-control-allow-credentials": "true",
        "access-control-allow-methods": "PUT, POST",
        "access-control-allow-headers": "content-type, x-amz-date",
        "access-control-expose-headers": "ETag", "access-control-max-age": "600", "vary": VARY,
    }),
    # rule 1 refuses the header, rules 2 and 3 the method: no match
    (SITE, "PUT", "x-custom", None),
    # rule 1 has no GET; the second rule matches first (not the "*" one)
    (SITE, "GET", "x-custom", {
        "access-control-allow-origin": SITE, "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, HEAD", "access-control-allow-headers": "x-custom",
        "access-control-expose-headers": "ETag, x-amz-request-id", "vary": VARY,
    }),
    # wildcard origin pattern
    ("http://eu.cdn.example.net", "HEAD", None, {
        "access-control-allow-origin": "http://eu.cdn.example.net",
        "access-control-allow-credentials": "true", "access-control-allow-methods": "GET, HEAD",
        "access-control-expose-headers": "ETag, x-amz-request-id", "vary": VARY,
    }),
    # "*": answered "*", never with credentials
    ("https://anyone.example", "GET", "authorization", {
        "access-control-allow-origin": "*", "access-control-allow-methods": "GET",
        "access-control-allow-headers": "authorization", "access-control-max-age": "3000",
        "vary": VARY,
    }),
    ("https://anyone.example", "GET", "content-type", None),
    ("https://anyone.example", "DELETE", None, None),
    # the server-wide origin means nothing to a bucket with its own rules
    (SERVER_WIDE, "PUT", None, None),
]  # fmt: skip


@pytest.mark.parametrize(("origin", "method", "asked", "expected"), PREFLIGHTS)
def test_preflight_gets_exactly_the_rule(
    cors: SeglakeServer, s3: Any, origin: str, method: str, asked: str | None, expected: Any
) -> None:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if asked is not None:
        headers["Access-Control-Request-Headers"] = asked
    for path in (f"/{BUCKET}/some/key.txt", f"/{BUCKET}"):
        r = options(cors, path, headers)
        if expected is None:
            assert r.status_code == 403, r.text
            assert cors_headers(r) == {}
            assert "<Code>AccessForbidden</Code>" in r.text
            assert "CORSResponse: This CORS request is not allowed." in r.text
            assert f"<Method>{method}</Method>" in r.text
            kind = "OBJECT" if path.count("/") > 1 else "BUCKET"
            assert f"<ResourceType>{kind}</ResourceType>" in r.text
        else:
            assert r.status_code == 200, r.text
            assert cors_headers(r) == expected
            assert r.content == b""


def test_preflight_virtual_hosted(cors: SeglakeServer, s3: Any) -> None:
    r = options(
        cors, "/some/key",
        {"Host": f"{BUCKET}.localhost:{cors.port}", "Origin": "https://x.example",
         "Access-Control-Request-Method": "GET"},
    )  # fmt: skip
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"


def test_bucket_without_rules_uses_the_server_wide_flags(cors: SeglakeServer, s3: Any) -> None:
    ok = options(
        cors, f"/{PLAIN}/k", {"Origin": SERVER_WIDE, "Access-Control-Request-Method": "PUT"}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SERVER_WIDE
    assert ok.headers["access-control-allow-methods"] == "GET, PUT"
    assert ok.headers["access-control-max-age"] == "60"
    assert ok.headers["vary"] == "Origin"
    no = options(cors, f"/{PLAIN}/k", {"Origin": SITE, "Access-Control-Request-Method": "GET"})
    assert no.status_code == 403
    # a bucket that does not exist, and no bucket at all: the same fallback
    for path in ("/cors-nonexistent/k", "/"):
        r = options(cors, path, {"Origin": SERVER_WIDE, "Access-Control-Request-Method": "GET"})
        assert r.status_code == 200, path


def test_a_change_applies_to_the_next_request(cors: SeglakeServer, s3: Any) -> None:
    """Two frontends, new connections each time (the kernel spreads them):
    every one sees the change as soon as the PUT/DELETE has answered."""
    s3.create_bucket(Bucket="cors-flip")
    ask = {"Origin": "https://flip.example", "Access-Control-Request-Method": "GET"}
    for _ in range(3):
        s3.put_bucket_cors(
            Bucket="cors-flip",
            CORSConfiguration={
                "CORSRules": [
                    {"AllowedOrigins": ["https://flip.example"], "AllowedMethods": ["GET"]}
                ]
            },
        )
        for _ in range(8):
            assert options(cors, "/cors-flip/k", ask).status_code == 200
        s3.delete_bucket_cors(Bucket="cors-flip")
        for _ in range(8):
            assert options(cors, "/cors-flip/k", ask).status_code == 403


# ---- actual requests ------------------------------------------------------------------


def test_signed_requests_carry_the_matching_rule(cors: SeglakeServer, s3: Any) -> None:
    url = f"{cors.endpoint}/{BUCKET}/upload"
    put = httpx.put(url, content=b"x", headers={**signed_headers("PUT", url, b"x"), "Origin": SITE})
    assert put.status_code == 200
    assert cors_headers(put) == {
        "access-control-allow-origin": SITE, "access-control-allow-credentials": "true",
        "access-control-allow-methods": "PUT, POST", "access-control-expose-headers": "ETag",
        "access-control-max-age": "600", "vary": VARY,
    }  # fmt: skip
    url = f"{cors.endpoint}/{BUCKET}/obj"
    get = httpx.get(url, headers={**signed_headers("GET", url), "Origin": "https://o.example"})
    assert get.status_code == 200 and get.content == b"cors body"
    assert cors_headers(get) == {
        "access-control-allow-origin": "*", "access-control-allow-methods": "GET",
        "access-control-max-age": "3000", "vary": VARY,
    }  # fmt: skip
    # No rule allows DELETE: the request is served, with no CORS header at all.
    url = f"{cors.endpoint}/{BUCKET}/upload"
    gone = httpx.delete(url, headers={**signed_headers("DELETE", url), "Origin": SITE})
    assert gone.status_code == 204 and cors_headers(gone) == {}
    # Without an Origin the bucket is not even looked up: no Access-Control
    # header (only the server-wide policy's Vary, which this server has).
    url = f"{cors.endpoint}/{BUCKET}/obj"
    assert cors_headers(httpx.get(url, headers=signed_headers("GET", url))) == {"vary": "Origin"}


def test_errors_carry_the_rule(cors: SeglakeServer, s3: Any) -> None:
    # Unsigned: AccessDenied, readable by the page because the rule allows it.
    r = httpx.get(f"{cors.endpoint}/{BUCKET}/obj", headers={"Origin": SITE})
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
    assert r.headers["access-control-allow-origin"] == SITE
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    # Signed, missing key: 404 with the headers.
    url = f"{cors.endpoint}/{BUCKET}/missing"
    r = httpx.get(url, headers={**signed_headers("GET", url), "Origin": "https://o.example"})
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "*"
    assert r.headers["vary"] == VARY


def test_presigned_get_and_put_carry_the_rule(cors: SeglakeServer, s3: Any) -> None:
    s3 = cors.s3(signature_version="s3v4")
    get_url = s3.generate_presigned_url("get_object", {"Bucket": BUCKET, "Key": "obj"})
    r = httpx.get(get_url, headers={"Origin": "http://a.example.net"})
    assert r.status_code == 200 and r.content == b"cors body"
    assert r.headers["access-control-allow-origin"] == "http://a.example.net"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    put_url = s3.generate_presigned_url("put_object", {"Bucket": BUCKET, "Key": "presigned"})
    r = httpx.put(put_url, content=b"from a page", headers={"Origin": SITE})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == SITE
    assert r.headers["access-control-expose-headers"] == "ETag"
    assert s3.get_object(Bucket=BUCKET, Key="presigned")["Body"].read() == b"from a page"


def test_requests_to_a_bucket_without_rules_use_the_server_wide_flags(
    cors: SeglakeServer, s3: Any
) -> None:
    url = f"{cors.endpoint}/{PLAIN}/obj"
    r = httpx.get(url, headers={**signed_headers("GET", url), "Origin": SERVER_WIDE})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SERVER_WIDE
    assert r.headers["vary"] == "Origin"
    r = httpx.get(url, headers={**signed_headers("GET", url), "Origin": SITE})
    assert "access-control-allow-origin" not in r.headers and r.headers["vary"] == "Origin"


# ---- durability ------------------------------------------------------------------------


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _preflight_ok(srv: SeglakeServer) -> bool:
    r = options(srv, "/durable/k", {"Origin": SITE, "Access-Control-Request-Method": "PUT"})
    return r.status_code == 200 and r.headers.get("access-control-max-age") == "600"


def test_rules_survive_writer_kill_and_rebuild_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="durable")
        s3.put_bucket_cors(Bucket="durable", CORSConfiguration={"CORSRules": RULES})
        writer = processes_by_name(status_retry(srv))["writer"]
        sigkill(writer["pid"])
        wait_restarted(srv, "writer", writer["pid"], timeout=20.0)
        assert s3.get_bucket_cors(Bucket="durable")["CORSRules"] == RULES
        assert _preflight_ok(srv)
        # The restarted writer takes changes again.
        s3.create_bucket(Bucket="durable-2")
        s3.put_bucket_cors(Bucket="durable-2", CORSConfiguration={"CORSRules": RULES[2:]})
    # The bucket record in the segments' record log carries the rules.
    logged = replay(data / "objects" / "segments").buckets["durable"]
    assert logged is not None and "CORSConfiguration" in str(logged.get("cors"))
    for suffix in ("", "-wal", "-shm"):
        (data / f"meta.db{suffix}").unlink(missing_ok=True)
    done = _cli(data, "rebuild-index")
    assert done.returncode == 0, done.stderr
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        assert s3.get_bucket_cors(Bucket="durable")["CORSRules"] == RULES
        assert s3.get_bucket_cors(Bucket="durable-2")["CORSRules"] == RULES[2:]
        deadline = time.monotonic() + TIMEOUT_S
        while not _preflight_ok(srv) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _preflight_ok(srv)
