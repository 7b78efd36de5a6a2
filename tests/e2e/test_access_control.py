"""API keys, bucket allow-lists, policies, public buckets and the per-key
in-flight limit, against the real server with several keys.

Keys are managed through the CLI (seed and idiomatic spellings) while the
server runs, exactly as an operator would; every assertion reads content
back (bytes, listings, error codes, what is stored).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e._helpers import status_and_code, with_headers
from tests.harness import REGION, SeglakeServer, server_fixture

PUBLIC = "pub-open"
PUBLIC_NO_POLICY = "pub-nopolicy"
NOT_LISTED = "not-public"
MATRIX = "mtx"
# Secrets are fixed so a test can look for them in meta.db's bytes.
KEYS = {
    "alice": "alice-secret-5f1e9c",
    "bob": "bob-secret-77aa01",
    "carol": "carol-secret-c4r0l",
    "dave": "dave-secret-d4v3",
    "erin": "erin-secret-e41n",
}


def aws_policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALICE_POLICY = aws_policy(
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{MATRIX}/*",
     "Condition": {"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}},
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{MATRIX}",
     "Condition": {"StringLike": {"s3:prefix": "home/*"}}},
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{MATRIX}/*",
     "Condition": {"DateLessThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}}},
)  # fmt: skip
DAVE_POLICY = json.dumps(
    {"version": "v1", "statements": [
        {"effect": "allow", "actions": ["GetObject", "HeadObject"],
         "resources": [{"bucket": MATRIX, "prefix": "open/"}],
         "conditions": {"headers": {"x-tenant": "alpha"}}},
    ]}
)  # fmt: skip
ERIN_POLICY = aws_policy(
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*",
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
)  # fmt: skip
MATRIX_BUCKET_POLICY = aws_policy(
    {"Sid": "bob-uploads", "Effect": "Allow", "Principal": {"AWS": ["bob"]},
     "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{MATRIX}/uploads/*"},
    {"Sid": "no-secrets", "Effect": "Deny", "Principal": "*",
     "Action": ["s3:GetObject", "s3:DeleteObject"], "Resource": f"arn:aws:s3:::{MATRIX}/secret/*"},
)  # fmt: skip
PUBLIC_POLICY = aws_policy(
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
     "Resource": f"arn:aws:s3:::{PUBLIC}/*"},
    {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
     "Resource": f"arn:aws:s3:::{PUBLIC}/private/*"},
)  # fmt: skip


def cli(server: SeglakeServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def client(server: SeglakeServer, key: str, secret: str | None = None, **extra: Any) -> Any:
    cfg = BotoConfig(retries={"total_max_attempts": 1}, **extra)
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=key,
        aws_secret_access_key=secret or KEYS[key], region_name=REGION, config=cfg,
    )  # fmt: skip


def raw(server: SeglakeServer, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes = b"") -> tuple[int, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _populate(srv: SeglakeServer) -> None:
    admin = srv.s3()
    for b in (PUBLIC, PUBLIC_NO_POLICY, NOT_LISTED):
        admin.put_object(Bucket=b, Key="hello.txt", Body=b"public bytes")
        admin.put_object(Bucket=b, Key="private/x", Body=b"private bytes")
    admin.put_bucket_policy(Bucket=PUBLIC, Policy=PUBLIC_POLICY)
    admin.put_bucket_policy(Bucket=NOT_LISTED, Policy=PUBLIC_POLICY.replace(PUBLIC, NOT_LISTED))
    for key in ("open/x", "secret/x", "home/a", "uploads/seed"):
        admin.put_object(Bucket=MATRIX, Key=key, Body=f"data of {key}".encode())
    admin.put_bucket_policy(Bucket=MATRIX, Policy=MATRIX_BUCKET_POLICY)
    policies = {"alice": ALICE_POLICY, "bob": "ro", "carol": "rw", "dave": DAVE_POLICY,
                "erin": ERIN_POLICY}  # fmt: skip
    for key, secret in KEYS.items():
        ok(cli(srv, "-mode", "keys", "-keys-action", "create", f"-key-access={key}",
               f"-key-secret={secret}", f"-key-policy={policies[key]}"))  # fmt: skip


# One frontend, so the per-key in-flight limit is exactly the key's own;
# 127.0.0.1 is a trusted proxy so tests can present other client addresses
# through X-Forwarded-For.
server = server_fixture(
    "--public-buckets", f"{PUBLIC},{PUBLIC_NO_POLICY}",
    "--trusted-proxies", "127.0.0.1/32",
    buckets=[PUBLIC, PUBLIC_NO_POLICY, NOT_LISTED, MATRIX], setup=_populate,
)  # fmt: skip


# ---- policy matrix -----------------------------------------------------------

# (key, operation, object key, extra headers, expected outcome)
GET_CASES = [
    # identity rw, bucket policy deny → denied; elsewhere allowed
    ("carol", "open/x", {}, 200),
    ("carol", "secret/x", {}, 403),
    # identity ro: reads allowed except where the bucket denies
    ("bob", "open/x", {}, 200),
    ("bob", "secret/x", {}, 403),
    # identity allow with an IP condition (client address via trusted XFF)
    ("alice", "open/x", {"X-Forwarded-For": "198.51.100.40"}, 200),
    ("alice", "open/x", {"X-Forwarded-For": "203.0.113.1"}, 403),
    ("alice", "open/x", {}, 403),  # 127.0.0.1 is outside 198.51.100.0/24
    ("alice", "secret/x", {"X-Forwarded-For": "198.51.100.40"}, 403),  # bucket deny wins
    # v1 header condition and prefix resource
    ("dave", "open/x", {"x-tenant": "alpha"}, 200),
    ("dave", "open/x", {"x-tenant": "beta"}, 403),
    ("dave", "open/x", {}, 403),
    ("dave", "home/a", {"x-tenant": "alpha"}, 403),
    # SecureTransport: deny over plain HTTP, unless a trusted proxy says https
    ("erin", "open/x", {}, 403),
    ("erin", "open/x", {"X-Forwarded-Proto": "https"}, 200),
]


@pytest.mark.parametrize(("key", "obj", "headers", "expected"), GET_CASES)
def test_get_matrix(
    server: SeglakeServer, key: str, obj: str, headers: dict[str, str], expected: int
) -> None:
    s3 = with_headers(client(server, key), headers)
    if expected == 200:
        assert s3.get_object(Bucket=MATRIX, Key=obj)["Body"].read() == f"data of {obj}".encode()
    else:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=MATRIX, Key=obj)
        assert status_and_code(e) == (403, "AccessDenied")


def test_put_matrix_nothing_stored_when_denied(server: SeglakeServer) -> None:
    admin = server.s3()
    # carol is rw: her own policy allows, the bucket policy does not narrow uploads/*.
    client(server, "carol").put_object(Bucket=MATRIX, Key="uploads/c1", Body=b"from carol")
    assert admin.get_object(Bucket=MATRIX, Key="uploads/c1")["Body"].read() == b"from carol"
    cases = [
        # bob is ro: the bucket policy's grant of uploads/* does not lift him,
        # a key's own policy is its ceiling (SPEC §5)
        ("bob", "uploads/b1"),
        ("bob", "other/b2"),
        ("alice", "uploads/a1"),  # alice's PutObject allow expired in 2001
        ("dave", "open/d1"),  # v1 policy without PutObject
    ]
    for key, obj in cases:
        with pytest.raises(ClientError) as e:
            client(server, key).put_object(Bucket=MATRIX, Key=obj, Body=b"x" * 100_000)
        assert status_and_code(e) == (403, "AccessDenied"), (key, obj)
        with pytest.raises(ClientError) as e:
            admin.head_object(Bucket=MATRIX, Key=obj)
        assert status_and_code(e)[0] == 404, (key, obj)


def test_listing_prefix_condition(server: SeglakeServer) -> None:
    alice = client(server, "alice")
    listed = alice.list_objects_v2(Bucket=MATRIX, Prefix="home/")
    assert [o["Key"] for o in listed["Contents"]] == ["home/a"]
    for prefix in ("", "open/"):
        with pytest.raises(ClientError) as e:
            alice.list_objects_v2(Bucket=MATRIX, Prefix=prefix)
        assert status_and_code(e) == (403, "AccessDenied")


def test_admin_bound_by_bucket_deny_but_can_repair(server: SeglakeServer) -> None:
    admin = server.s3()
    with pytest.raises(ClientError) as e:
        admin.get_object(Bucket=MATRIX, Key="secret/x")
    assert status_and_code(e) == (403, "AccessDenied")
    assert json.loads(admin.get_bucket_policy(Bucket=MATRIX)["Policy"]) == json.loads(
        MATRIX_BUCKET_POLICY
    )


def test_delete_objects_checked_per_key(server: SeglakeServer) -> None:
    admin = server.s3()
    admin.put_object(Bucket=MATRIX, Key="open/del", Body=b"d")
    result = client(server, "carol").delete_objects(
        Bucket=MATRIX, Delete={"Objects": [{"Key": "open/del"}, {"Key": "secret/x"}]}
    )
    assert [d["Key"] for d in result.get("Deleted", [])] == ["open/del"]
    assert [(x["Key"], x["Code"]) for x in result["Errors"]] == [("secret/x", "AccessDenied")]
    # Only the admin's view can prove secret/x survived: it lists the key.
    keys = [o["Key"] for o in admin.list_objects_v2(Bucket=MATRIX, Prefix="secret/")["Contents"]]
    assert keys == ["secret/x"]
    # A key that may not delete anything is refused before its body is read.
    with pytest.raises(ClientError) as e:
        client(server, "bob").delete_objects(Bucket=MATRIX, Delete={"Objects": [{"Key": "open/x"}]})
    assert status_and_code(e) == (403, "AccessDenied")
    assert admin.get_object(Bucket=MATRIX, Key="open/x")["Body"].read() == b"data of open/x"


def test_copy_needs_read_on_the_source(server: SeglakeServer) -> None:
    carol = client(server, "carol")
    with pytest.raises(ClientError) as e:
        carol.copy_object(
            Bucket=MATRIX, Key="open/stolen", CopySource={"Bucket": MATRIX, "Key": "secret/x"}
        )
    assert status_and_code(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        server.s3().head_object(Bucket=MATRIX, Key="open/stolen")
    assert status_and_code(e)[0] == 404
    carol.copy_object(
        Bucket=MATRIX, Key="open/copied", CopySource={"Bucket": MATRIX, "Key": "open/x"}
    )
    assert carol.get_object(Bucket=MATRIX, Key="open/copied")["Body"].read() == b"data of open/x"


def test_deny_is_never_ignored(server: SeglakeServer) -> None:
    """Regression: an explicit Deny beats every Allow, in the key's own
    policy (set live through the CLI) as in a bucket policy."""
    policy = aws_policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::{MATRIX}/open/*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{MATRIX}/*"},
    )  # fmt: skip
    ok(cli(server, "keys", "set-policy", "--key-access", "carol", "--key-policy", policy))
    try:
        carol = client(server, "carol")
        deadline = time.monotonic() + 1.0
        while True:
            try:
                carol.get_object(Bucket=MATRIX, Key="open/x")
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "AccessDenied"
                break
            assert time.monotonic() < deadline, "the Deny was not enforced within a second"
            time.sleep(0.05)
        with pytest.raises(ClientError) as e:
            carol.put_object(Bucket=MATRIX, Key="open/new", Body=b"x")
        assert status_and_code(e) == (403, "AccessDenied")
        assert carol.get_object(Bucket=MATRIX, Key="home/a")["Body"].read() == b"data of home/a"
    finally:
        ok(cli(server, "keys", "set-policy", "--key-access", "carol", "--key-policy", "rw"))


def test_unsupported_policies_are_refused_not_ignored(server: SeglakeServer) -> None:
    admin = server.s3()
    # (StringNotLike, NotAction, CanonicalUser principals and resources of
    # other buckets are AWS grammar now: tests/e2e/test_policy_grammar.py.)
    bad = [
        aws_policy({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{MATRIX}/*",
                    "Condition": {"StringNotLikeish": {"s3:prefix": "x"}}}),
        aws_policy({"Effect": "Deny", "Principal": "*", "NotAction": "s3:GetObject",
                    "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{MATRIX}/*"}),
        aws_policy({"Effect": "Deny", "Principal": {"Group": "x"},
                    "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{MATRIX}/*"}),
        aws_policy({"Effect": "Allow", "NotPrincipal": {"AWS": "bob"}, "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{MATRIX}/*"}),
        "not json",
    ]  # fmt: skip
    for text in bad:
        with pytest.raises(ClientError) as e:
            admin.put_bucket_policy(Bucket=MATRIX, Policy=text)
        assert status_and_code(e) == (400, "MalformedPolicy"), text
    # Nothing changed.
    assert admin.get_bucket_policy(Bucket=MATRIX)["Policy"] == MATRIX_BUCKET_POLICY
    result = cli(server, "keys", "set-policy", "--key-access", "bob", "--key-policy",
                 '{"version": "v1", "statements": [{"effect": "deny", "actions": ["Nope"]}]}')  # fmt: skip
    assert result.returncode == 1 and "unknown action" in result.stderr
    listing = json.loads(ok(cli(server, "keys", "list", "--json")))
    assert {k["access_key"]: k["policy"] for k in listing}["bob"] == "ro"


# ---- bucket policy endpoints and CLI ------------------------------------------


def test_bucket_policy_endpoints_and_cli(server: SeglakeServer) -> None:
    admin = server.s3()
    admin.create_bucket(Bucket="policy-crud")
    with pytest.raises(ClientError) as e:
        admin.get_bucket_policy(Bucket="policy-crud")
    assert status_and_code(e) == (404, "NoSuchBucketPolicy")
    with pytest.raises(ClientError) as e:
        admin.get_bucket_policy(Bucket="no-such-bucket-here")
    assert status_and_code(e) == (404, "NoSuchBucket")
    v1 = json.dumps({"version": "v1", "statements": [
        {"effect": "allow", "actions": ["ListBucket"], "resources": [{"bucket": "policy-crud"}]}]})  # fmt: skip
    admin.put_bucket_policy(Bucket="policy-crud", Policy=v1)
    assert admin.get_bucket_policy(Bucket="policy-crud")["Policy"] == v1
    assert ok(cli(server, "bucket-policy", "get", "policy-crud")).strip() == v1
    admin.delete_bucket_policy(Bucket="policy-crud")
    with pytest.raises(ClientError) as e:
        admin.get_bucket_policy(Bucket="policy-crud")
    assert status_and_code(e) == (404, "NoSuchBucketPolicy")
    # The seed's spelling sets it again.
    ok(cli(server, "-mode", "bucket-policy", "-bucket-policy-action", "set",
           "-bucket-policy-bucket=policy-crud", f"-bucket-policy={v1}"))  # fmt: skip
    assert admin.get_bucket_policy(Bucket="policy-crud")["Policy"] == v1
    ok(cli(server, "-mode", "bucket-policy", "-bucket-policy-action", "delete",
           "-bucket-policy-bucket=policy-crud"))  # fmt: skip
    missing = cli(server, "bucket-policy", "get", "policy-crud")
    assert missing.returncode == 1 and "NoSuchBucketPolicy" in missing.stderr
    # A key without PutBucketPolicy cannot change a policy.
    with pytest.raises(ClientError) as e:
        client(server, "bob").put_bucket_policy(Bucket="policy-crud", Policy=v1)
    assert status_and_code(e) == (403, "AccessDenied")


# ---- public buckets ------------------------------------------------------------


def test_public_bucket_anonymous_access(server: SeglakeServer) -> None:
    status, body = raw(server, "GET", f"/{PUBLIC}/hello.txt")
    assert (status, body) == (200, b"public bytes")
    status, _ = raw(server, "HEAD", f"/{PUBLIC}/hello.txt")
    assert status == 200
    # Denied inside the allowed bucket by the policy's own Deny.
    status, body = raw(server, "GET", f"/{PUBLIC}/private/x")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    # Actions the policy does not allow stay signed-only; nothing is stored.
    status, body = raw(server, "PUT", f"/{PUBLIC}/anon.txt", body=b"anonymous write")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    with pytest.raises(ClientError) as e:
        server.s3().head_object(Bucket=PUBLIC, Key="anon.txt")
    assert status_and_code(e)[0] == 404
    for method, path in [("GET", f"/{PUBLIC}"), ("DELETE", f"/{PUBLIC}/hello.txt"),
                         ("GET", f"/{PUBLIC}?policy"), ("GET", "/")]:  # fmt: skip
        status, body = raw(server, method, path)
        assert status == 403 and b"<Code>AccessDenied</Code>" in body, (method, path)
    # Public list without a policy, and a policy without the public list: no.
    for bucket in (PUBLIC_NO_POLICY, NOT_LISTED):
        status, body = raw(server, "GET", f"/{bucket}/hello.txt")
        assert status == 403 and b"<Code>AccessDenied</Code>" in body, bucket
    assert server.s3().get_object(Bucket=PUBLIC, Key="hello.txt")["Body"].read() == (
        b"public bytes"
    )
    # GetBucketPolicyStatus says exactly which of them unsigned requests reach.
    admin = server.s3()
    assert admin.get_bucket_policy_status(Bucket=PUBLIC)["PolicyStatus"]["IsPublic"] is True
    assert admin.get_bucket_policy_status(Bucket=NOT_LISTED)["PolicyStatus"]["IsPublic"] is False
    with pytest.raises(ClientError) as e:
        admin.get_bucket_policy_status(Bucket=PUBLIC_NO_POLICY)
    assert status_and_code(e) == (404, "NoSuchBucketPolicy")


# ---- keys lifecycle, allow-lists, secrets at rest ---------------------------------


def _wait_for(fn: Any, what: str, seconds: float = 1.0) -> None:
    deadline = time.monotonic() + seconds
    while not fn():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds}s"
        time.sleep(0.02)


def _code_of(call: Any) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "OK"


def test_key_lifecycle(server: SeglakeServer) -> None:
    out = ok(cli(server, "keys", "create", "--key-access", "frank", "--json"))
    secret = json.loads(out)["secret_key"]  # generated, shown once
    assert len(secret) >= 32
    frank = client(server, "frank", secret)
    frank.put_object(Bucket=MATRIX, Key="open/frank", Body=b"frank's")
    assert frank.get_object(Bucket=MATRIX, Key="open/frank")["Body"].read() == b"frank's"
    assert _code_of(lambda: client(server, "frank", "wrong" + secret).list_buckets()) == (
        "SignatureDoesNotMatch"
    )
    ok(cli(server, "-mode", "keys", "-keys-action", "disable", "-key-access=frank"))
    _wait_for(lambda: _code_of(frank.list_buckets) == "InvalidAccessKeyId", "disable")
    listed = {k["access_key"]: k for k in json.loads(ok(cli(server, "keys", "list", "--json")))}
    assert listed["frank"]["enabled"] is False
    assert "secret" not in json.dumps(listed["frank"]).lower()
    ok(cli(server, "keys", "enable", "--key-access", "frank"))
    _wait_for(lambda: _code_of(frank.list_buckets) == "OK", "enable")
    ok(cli(server, "keys", "delete", "--key-access", "frank"))
    _wait_for(lambda: _code_of(frank.list_buckets) == "InvalidAccessKeyId", "delete")
    assert "frank" not in {k["access_key"] for k in json.loads(ok(cli(server, "keys", "list",
                                                                    "--json")))}  # fmt: skip
    # The bootstrap admin key is refused by a CLI that knows it, and a
    # database row of that name can never shadow it.
    refused = cli(server, "keys", "create", "--key-access", "test", "--access-key", "test")
    assert refused.returncode == 2 and "bootstrap" in refused.stderr
    ok(cli(server, "keys", "create", "--key-access", "test", "--key-secret", "shadow-secret-1"))
    try:
        assert _code_of(lambda: client(server, "test", "shadow-secret-1").list_buckets()) == (
            "SignatureDoesNotMatch"
        )
        assert _code_of(server.s3().list_buckets) == "OK"
    finally:
        ok(cli(server, "keys", "delete", "--key-access", "test"))


def test_allow_list_filters_buckets(server: SeglakeServer) -> None:
    ok(cli(server, "keys", "create", "--key-access", "gina", "--key-secret", "gina-secret-1"))
    gina = client(server, "gina", "gina-secret-1")
    everything = {b["Name"] for b in gina.list_buckets()["Buckets"]}
    assert {PUBLIC, MATRIX, NOT_LISTED} <= everything
    ok(cli(server, "-mode", "keys", "-keys-action", "allow-bucket", "-key-access=gina",
           f"-key-bucket={PUBLIC}"))  # fmt: skip
    _wait_for(lambda: [b["Name"] for b in gina.list_buckets()["Buckets"]] == [PUBLIC], "filter")
    assert gina.get_object(Bucket=PUBLIC, Key="hello.txt")["Body"].read() == b"public bytes"
    with pytest.raises(ClientError) as e:
        gina.get_object(Bucket=MATRIX, Key="open/x")
    assert status_and_code(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:  # the copy source's bucket counts too
        gina.copy_object(Bucket=PUBLIC, Key="c", CopySource={"Bucket": MATRIX, "Key": "open/x"})
    assert status_and_code(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        gina.create_bucket(Bucket="gina-new-bucket")
    assert status_and_code(e) == (403, "AccessDenied")
    assert json.loads(ok(cli(server, "keys", "list-buckets", "--key-access", "gina", "--json")))[
        "buckets"
    ] == [PUBLIC]
    ok(cli(server, "keys", "disallow-bucket", "--key-access", "gina", "--key-bucket", PUBLIC))
    _wait_for(lambda: len(gina.list_buckets()["Buckets"]) == len(everything), "unfilter")


def test_secrets_not_readable_from_meta_db(server: SeglakeServer) -> None:
    data = Path(server.data_dir)
    blobs = b"".join(
        p.read_bytes() for p in data.iterdir() if p.name.startswith("meta.db") and p.is_file()
    )
    assert b"alice" in blobs  # the rows are there...
    for secret in KEYS.values():
        assert secret.encode() not in blobs  # ...but no secret in clear
        assert secret.encode("utf-16-le") not in blobs
    master = data / ".seglake-keys.master"
    assert master.stat().st_mode & 0o777 == 0o600
    assert len(master.read_bytes()) == 32


# ---- per-key in-flight limit -------------------------------------------------


def _signed_request_head(server: SeglakeServer, key: str, method: str, path: str,
                         length: int) -> bytes:  # fmt: skip
    url = f"{server.endpoint}{path}"
    req = AWSRequest(method=method, url=url, headers={
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(length),
        "Expect": "100-continue"})  # fmt: skip
    SigV4Auth(Credentials(key, KEYS.get(key, "")), "s3", REGION).add_auth(req)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_inflight_limit(server: SeglakeServer) -> None:
    ok(cli(server, "keys", "create", "--key-access", "hank", "--key-secret", "hank-secret-1",
           "--key-inflight", "1"))  # fmt: skip
    KEYS["hank"] = "hank-secret-1"
    hank = client(server, "hank")
    assert hank.get_object(Bucket=MATRIX, Key="open/x")["Body"].read() == b"data of open/x"
    # A PUT that has sent its head and part of its body holds hank's one slot.
    # "100 Continue" comes once its handler reads the body, i.e. after it was
    # authorised and took the slot: only then may another request compete.
    sock = socket.create_connection(("127.0.0.1", server.port or 0), timeout=30)
    try:
        sock.sendall(_signed_request_head(server, "hank", "PUT", f"/{MATRIX}/open/slow", 1000))
        interim = b""
        while b"\r\n\r\n" not in interim and len(interim) < 65536:
            piece = sock.recv(1)
            assert piece, interim
            interim += piece
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(b"x" * 10)
        # A second write is refused, with a hint when to retry ...
        with pytest.raises(ClientError) as e:
            hank.put_object(Bucket=MATRIX, Key="open/second", Body=b"2")
        assert status_and_code(e) == (503, "SlowDown")
        assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
        # ... while reads have their own pool (4 per frontend for a limit of 1).
        assert hank.get_object(Bucket=MATRIX, Key="open/x")["Body"].read() == b"data of open/x"
        assert hank.list_objects_v2(Bucket=MATRIX)["KeyCount"] >= 1
        ready, _, _ = select.select([sock], [], [], 0)
        assert not ready, sock.recv(65536)[:300]  # the PUT itself is still running
        # Other keys are not affected.
        assert client(server, "carol").get_object(Bucket=MATRIX, Key="open/x")["Body"].read()
        sock.sendall(b"y" * 990)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
    finally:
        sock.close()
    _wait_for(lambda: _code_of(lambda: hank.head_bucket(Bucket=MATRIX)) == "OK", "release", 5)
    assert hank.get_object(Bucket=MATRIX, Key="open/slow")["Body"].read() == b"x" * 10 + b"y" * 990


# ---- offline key management ----------------------------------------------------


def test_keys_managed_offline_then_served(tmp_path: Path) -> None:
    """With no server, the CLI takes the data-dir lock and writes itself;
    the next server serves the key, its allow-list and its policy."""
    srv = SeglakeServer(tmp_path / "data", frontends=1)
    srv.data_dir.mkdir(parents=True)
    secret_file = tmp_path / "ivan.secret"  # @file keeps the secret out of `ps`
    secret_file.write_text("ivan-secret-1\n")
    ok(cli(srv, "keys", "create", "--key-access", "ivan", "--key-secret", f"@{secret_file}",
           "--key-policy", "ro"))  # fmt: skip
    ok(cli(srv, "keys", "allow-bucket", "--key-access", "ivan", "--key-bucket", "ivans"))
    listing = json.loads(ok(cli(srv, "keys", "list", "--json")))
    assert [(k["access_key"], k["policy"], k["buckets"]) for k in listing] == [
        ("ivan", "ro", ["ivans"])
    ]
    with srv:
        admin = srv.s3()
        admin.create_bucket(Bucket="ivans")
        admin.create_bucket(Bucket="others")
        admin.put_object(Bucket="ivans", Key="k", Body=b"ivan reads this")
        ivan = client(srv, "ivan", "ivan-secret-1")
        assert [b["Name"] for b in ivan.list_buckets()["Buckets"]] == ["ivans"]
        assert ivan.get_object(Bucket="ivans", Key="k")["Body"].read() == b"ivan reads this"
        with pytest.raises(ClientError) as e:
            ivan.put_object(Bucket="ivans", Key="k", Body=b"ro key")
        assert status_and_code(e) == (403, "AccessDenied")
        # While the server runs, the same commands go through the admin socket.
        ok(cli(srv, "keys", "disable", "--key-access", "ivan"))
        _wait_for(lambda: _code_of(ivan.list_buckets) == "InvalidAccessKeyId", "disable")
    # And offline again after it stopped.
    ok(cli(srv, "keys", "delete", "--key-access", "ivan"))
    assert json.loads(ok(cli(srv, "keys", "list", "--json"))) == []
    # Bucket policies change only through a running server.
    policy = PUBLIC_POLICY.replace(PUBLIC, "ivans")
    offline = cli(srv, "bucket-policy", "set", "ivans", "--bucket-policy", policy)
    assert offline.returncode == 1 and "running server" in offline.stderr
    assert "NoSuchBucketPolicy" in cli(srv, "bucket-policy", "get", "ivans").stderr


def test_version_deletes_follow_version_actions(server: SeglakeServer) -> None:
    admin = server.s3()
    admin.create_bucket(Bucket="vers-deny")
    admin.put_bucket_policy(
        Bucket="vers-deny",
        Policy=aws_policy(
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObjectVersion",
             "Resource": "arn:aws:s3:::vers-deny/*"}
        ),
    )  # fmt: skip
    v1 = admin.put_object(Bucket="vers-deny", Key="k", Body=b"first")["VersionId"]
    carol = client(server, "carol")
    with pytest.raises(ClientError) as e:
        carol.delete_object(Bucket="vers-deny", Key="k", VersionId=v1)
    assert status_and_code(e) == (403, "AccessDenied")
    result = carol.delete_objects(
        Bucket="vers-deny", Delete={"Objects": [{"Key": "k", "VersionId": v1}]}
    )
    assert [(x["Key"], x["Code"]) for x in result["Errors"]] == [("k", "AccessDenied")]
    # A plain delete only adds a delete marker, which the policy allows.
    assert carol.delete_object(Bucket="vers-deny", Key="k")["DeleteMarker"] is True
    kept = admin.get_object(Bucket="vers-deny", Key="k", VersionId=v1)["Body"].read()
    assert kept == b"first"


def test_presigned_urls_of_database_keys(server: SeglakeServer) -> None:
    ok(cli(server, "keys", "create", "--key-access", "judy", "--key-secret", "judy-secret-1",
           "--key-policy", "ro"))  # fmt: skip
    judy = client(server, "judy", "judy-secret-1", signature_version="s3v4")
    url = judy.generate_presigned_url(
        "get_object", Params={"Bucket": MATRIX, "Key": "open/x"}, ExpiresIn=300
    )
    path = url.split(str(server.port), 1)[1]
    assert raw(server, "GET", path) == (200, b"data of open/x")
    put_url = judy.generate_presigned_url(
        "put_object", Params={"Bucket": MATRIX, "Key": "open/judy"}, ExpiresIn=300
    )
    status, body = raw(server, "PUT", put_url.split(str(server.port), 1)[1], body=b"nope")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    ok(cli(server, "keys", "disable", "--key-access", "judy"))
    _wait_for(lambda: raw(server, "GET", path)[0] == 403, "presigned URL refused")
    assert b"<Code>InvalidAccessKeyId</Code>" in raw(server, "GET", path)[1]


def test_multipart_under_bucket_policy(server: SeglakeServer) -> None:
    # bob is ro: the bucket policy's PutObject grant on uploads/* does not lift him.
    bob = client(server, "bob")
    with pytest.raises(ClientError) as e:
        bob.create_multipart_upload(Bucket=MATRIX, Key="uploads/mp")
    assert status_and_code(e) == (403, "AccessDenied")
    carol = client(server, "carol")  # rw
    part = b"p" * (5 * 1024 * 1024)
    upload = carol.create_multipart_upload(Bucket=MATRIX, Key="uploads/mp")["UploadId"]
    with pytest.raises(ClientError) as e:  # nor can bob add a part to carol's upload
        bob.upload_part(Bucket=MATRIX, Key="uploads/mp", UploadId=upload, PartNumber=1, Body=b"x")
    assert status_and_code(e) == (403, "AccessDenied")
    etag = carol.upload_part(
        Bucket=MATRIX, Key="uploads/mp", UploadId=upload, PartNumber=1, Body=part
    )["ETag"]
    carol.complete_multipart_upload(
        Bucket=MATRIX, Key="uploads/mp", UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
    )  # fmt: skip
    assert server.s3().get_object(Bucket=MATRIX, Key="uploads/mp")["Body"].read() == part
    second = carol.create_multipart_upload(Bucket=MATRIX, Key="uploads/mp2")["UploadId"]
    with pytest.raises(ClientError) as e:  # ro grants no AbortMultipartUpload
        bob.abort_multipart_upload(Bucket=MATRIX, Key="uploads/mp2", UploadId=second)
    assert status_and_code(e) == (403, "AccessDenied")
    carol.abort_multipart_upload(Bucket=MATRIX, Key="uploads/mp2", UploadId=second)


def test_ro_key_cannot_be_lifted_by_a_bucket_policy(server: SeglakeServer) -> None:
    """The escalation #20 names: an rw key writes a permissive bucket policy,
    then the ro key tries to write. Refused at every step."""
    admin = server.s3()
    admin.create_bucket(Bucket="escalate")
    admin.put_object(Bucket="escalate", Key="victim", Body=b"original")
    permissive = aws_policy(
        {"Effect": "Allow", "Principal": {"AWS": ["bob"]}, "Action": "s3:*",
         "Resource": ["arn:aws:s3:::escalate", "arn:aws:s3:::escalate/*"]},
    )  # fmt: skip
    carol = client(server, "carol")  # rw: every action but changing policies
    for attempt in (
        lambda: carol.put_bucket_policy(Bucket="escalate", Policy=permissive),
        lambda: carol.delete_bucket_policy(Bucket="escalate"),
    ):
        with pytest.raises(ClientError) as e:
            attempt()
        assert status_and_code(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        admin.get_bucket_policy(Bucket="escalate")
    assert status_and_code(e) == (404, "NoSuchBucketPolicy")
    # Even when the admin writes it, the policy cannot lift bob past "ro".
    admin.put_bucket_policy(Bucket="escalate", Policy=permissive)
    bob = client(server, "bob")
    for attempt in (
        lambda: bob.put_object(Bucket="escalate", Key="victim", Body=b"overwritten"),
        lambda: bob.delete_object(Bucket="escalate", Key="victim"),
        lambda: bob.copy_object(
            Bucket="escalate", Key="copy", CopySource={"Bucket": "escalate", "Key": "victim"}
        ),
        lambda: bob.delete_objects(Bucket="escalate", Delete={"Objects": [{"Key": "victim"}]}),
        lambda: bob.put_bucket_policy(Bucket="escalate", Policy=permissive),
    ):
        try:
            result = attempt()
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        else:  # DeleteObjects answers 200 with a per-key AccessDenied
            assert [e["Code"] for e in result["Errors"]] == ["AccessDenied"]
    assert admin.get_object(Bucket="escalate", Key="victim")["Body"].read() == b"original"
    assert [o["Key"] for o in admin.list_objects_v2(Bucket="escalate")["Contents"]] == ["victim"]
    assert len(admin.list_object_versions(Bucket="escalate")["Versions"]) == 1
    assert bob.get_object(Bucket="escalate", Key="victim")["Body"].read() == b"original"
