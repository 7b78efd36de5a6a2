"""Bucket and key policies in the shape of AWS's documentation examples,
against the real server: exact status and error codes through boto3 and raw
(unsigned) HTTP, and GetBucketPolicyStatus.

127.0.0.1 is a trusted proxy, so a test presents another client address
with ``X-Forwarded-For`` and HTTPS with ``X-Forwarded-Proto``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from seglake.protocol.policy import ACCOUNT_ID
from tests.e2e._helpers import status_and_code, with_headers
from tests.e2e.test_access_control import raw
from tests.harness import REGION, SeglakeServer, server_fixture

KEYS = {"ann": "ann-secret-0a1b2c", "ben": "ben-secret-3d4e5f", "liz": "liz-secret-6a7b8c"}
IP, TLS, HOME, NOTP, CROSS, ELSEWHERE, ANON, ANON_IP, AUTH = (
    "pg-ip", "pg-tls", "pg-home", "pg-notp", "pg-cross", "pg-elsewhere", "pg-anon",
    "pg-anon-ip", "pg-auth",
)  # fmt: skip
INSIDE, OUTSIDE = "198.51.100.7", "203.0.113.9"


def doc(*statements: dict[str, Any], sid: str = "Policy1") -> str:
    return json.dumps({"Version": "2012-10-17", "Id": sid, "Statement": list(statements)})


def both(bucket: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


POLICIES = {
    # "Restricting access to specific IP addresses" (deny form).
    IP: doc({"Sid": "IPAllow", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": both(IP),
             "Condition": {"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}}}),
    # "Enforce encryption of data in transit".
    TLS: doc({"Sid": "RestrictToTLSRequestsOnly", "Effect": "Deny", "Principal": "*",
              "Action": "s3:*", "Resource": both(TLS),
              "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
    # NotPrincipal: everyone but ann (and the admin) is refused reads.
    NOTP: doc({"Sid": "OnlyAnn", "Effect": "Deny",
               "NotPrincipal": {"AWS": [f"arn:aws:iam::{ACCOUNT_ID}:user/ann",
                                        f"arn:aws:iam::{ACCOUNT_ID}:root"]},
               "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{NOTP}/*"}),
    # A statement naming this bucket and another: the other is ignored.
    CROSS: doc({"Sid": "Locked", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                "Resource": [f"arn:aws:s3:::{ELSEWHERE}/*", f"arn:aws:s3:::{CROSS}/locked/*"]}),
    # "Granting read-only permission to a public anonymous user".
    ANON: doc({"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
               "Action": ["s3:GetObject", "s3:GetObjectVersion"],
               "Resource": [f"arn:aws:s3:::{ANON}/*"]}),
    ANON_IP: doc({"Sid": "PublicReadFromOffice", "Effect": "Allow", "Principal": {"AWS": "*"},
                  "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{ANON_IP}/*",
                  "Condition": {"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}}),
    # No presigned URLs: s3:authType.
    AUTH: doc({"Sid": "NoPresigned", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
               "Resource": both(AUTH),
               "Condition": {"StringEquals": {"s3:authType": "REST-QUERY-STRING"}}}),
}  # fmt: skip
# liz's own policy: "Allow users to access their home folder" (IAM user guide),
# with the policy variable ${aws:username}.
LIZ_POLICY = doc(
    {"Sid": "AllowRootAndHomeListing", "Effect": "Allow", "Action": "s3:ListBucket",
     "Resource": f"arn:aws:s3:::{HOME}",
     "Condition": {"StringEquals": {"s3:prefix": ["", "home/"], "s3:delimiter": ["/"]}}},
    {"Sid": "AllowListingOfUserFolder", "Effect": "Allow", "Action": "s3:ListBucket",
     "Resource": f"arn:aws:s3:::{HOME}",
     "Condition": {"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}}},
    {"Sid": "AllowAllS3ActionsInUserFolder", "Effect": "Allow", "Action": "s3:*",
     "Resource": f"arn:aws:s3:::{HOME}/home/${{aws:username}}/*"},
)  # fmt: skip


def cli(server: SeglakeServer, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def client(server: SeglakeServer, key: str, headers: dict[str, str] | None = None) -> Any:
    s3 = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=key,
        aws_secret_access_key=KEYS[key], region_name=REGION,
        config=BotoConfig(retries={"total_max_attempts": 1}, signature_version="s3v4"),
    )  # fmt: skip
    return with_headers(s3, headers) if headers else s3


def _setup(srv: SeglakeServer) -> None:
    admin = srv.s3()
    for bucket in (IP, TLS, NOTP, CROSS, ELSEWHERE, ANON, ANON_IP, AUTH):
        admin.put_object(Bucket=bucket, Key="open/x", Body=f"open of {bucket}".encode())
        admin.put_object(Bucket=bucket, Key="locked/x", Body=f"locked of {bucket}".encode())
    for user in ("ann", "liz"):
        admin.put_object(Bucket=HOME, Key=f"home/{user}/notes", Body=f"{user}'s".encode())
    for bucket, policy in POLICIES.items():
        admin.put_bucket_policy(Bucket=bucket, Policy=policy)
    policies = {"ann": "rw", "ben": "rw", "liz": LIZ_POLICY}
    for key, secret in KEYS.items():
        cli(srv, "keys", "create", "--key-access", key, "--key-secret", secret,
            "--key-policy", policies[key])  # fmt: skip


server = server_fixture(
    "--public-buckets", f"{ANON},{ANON_IP}", "--trusted-proxies", "127.0.0.1/32",
    buckets=[IP, TLS, HOME, NOTP, CROSS, ELSEWHERE, ANON, ANON_IP, AUTH], setup=_setup,
)  # fmt: skip


def _denied(call: Any) -> None:
    with pytest.raises(ClientError) as e:
        call()
    assert status_and_code(e) == (403, "AccessDenied")


def _body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_ip_restriction(server: SeglakeServer) -> None:
    inside = client(server, "ann", {"X-Forwarded-For": INSIDE})
    assert _body(inside, IP, "open/x") == b"open of pg-ip"
    assert [o["Key"] for o in inside.list_objects_v2(Bucket=IP)["Contents"]] == [
        "locked/x", "open/x"
    ]  # fmt: skip
    for headers in ({"X-Forwarded-For": OUTSIDE}, {}):  # 127.0.0.1 is outside too
        outside = client(server, "ann", headers)
        _denied(lambda s3=outside: s3.get_object(Bucket=IP, Key="open/x"))
        _denied(lambda s3=outside: s3.list_objects_v2(Bucket=IP))
        _denied(lambda s3=outside: s3.put_object(Bucket=IP, Key="open/new", Body=b"x"))
    # The deny binds the admin too, except repairing the policy.
    _denied(lambda: server.s3().get_object(Bucket=IP, Key="open/x"))
    assert json.loads(server.s3().get_bucket_policy(Bucket=IP)["Policy"]) == json.loads(
        POLICIES[IP]
    )
    # Nothing was stored by the refused PUTs.
    with pytest.raises(ClientError) as e:
        client(server, "ann", {"X-Forwarded-For": INSIDE}).head_object(Bucket=IP, Key="open/new")
    assert status_and_code(e)[0] == 404


def test_secure_transport_deny(server: SeglakeServer) -> None:
    _denied(lambda: client(server, "ann").get_object(Bucket=TLS, Key="open/x"))
    _denied(lambda: client(server, "ann").put_object(Bucket=TLS, Key="open/y", Body=b"y"))
    https = client(server, "ann", {"X-Forwarded-Proto": "https"})
    assert _body(https, TLS, "open/x") == b"open of pg-tls"
    https.put_object(Bucket=TLS, Key="open/y", Body=b"over tls")
    assert _body(https, TLS, "open/y") == b"over tls"


def test_prefix_limited_listing(server: SeglakeServer) -> None:
    liz = client(server, "liz")
    own = liz.list_objects_v2(Bucket=HOME, Prefix="home/liz/")
    assert [o["Key"] for o in own["Contents"]] == ["home/liz/notes"]
    root = liz.list_objects_v2(Bucket=HOME, Delimiter="/")
    assert [p["Prefix"] for p in root["CommonPrefixes"]] == ["home/"]
    assert "Contents" not in root
    top = liz.list_objects_v2(Bucket=HOME, Prefix="home/", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["home/ann/", "home/liz/"]
    _denied(lambda: liz.list_objects_v2(Bucket=HOME))  # no delimiter: the whole tree
    _denied(lambda: liz.list_objects_v2(Bucket=HOME, Prefix="home/ann/"))
    _denied(lambda: liz.list_objects_v2(Bucket=HOME, Prefix="home/", Delimiter=","))
    liz.put_object(Bucket=HOME, Key="home/liz/new", Body=b"mine")
    assert _body(liz, HOME, "home/liz/new") == b"mine"
    _denied(lambda: liz.get_object(Bucket=HOME, Key="home/ann/notes"))
    _denied(lambda: liz.put_object(Bucket=HOME, Key="home/ann/new", Body=b"x"))
    with pytest.raises(ClientError) as e:
        server.s3().head_object(Bucket=HOME, Key="home/ann/new")
    assert status_and_code(e)[0] == 404


def test_not_principal(server: SeglakeServer) -> None:
    assert _body(client(server, "ann"), NOTP, "open/x") == b"open of pg-notp"
    assert _body(server.s3(), NOTP, "open/x") == b"open of pg-notp"  # the account root
    _denied(lambda: client(server, "ben").get_object(Bucket=NOTP, Key="open/x"))
    # Only GetObject is denied to ben; his rw policy still lets him list.
    listed = client(server, "ben").list_objects_v2(Bucket=NOTP)
    assert [o["Key"] for o in listed["Contents"]] == ["locked/x", "open/x"]


def test_cross_bucket_resources_are_ignored(server: SeglakeServer) -> None:
    ann = client(server, "ann")
    assert _body(ann, CROSS, "open/x") == b"open of pg-cross"
    _denied(lambda: ann.get_object(Bucket=CROSS, Key="locked/x"))
    # The statement named pg-elsewhere/* too: only pg-elsewhere's own policy
    # (none) decides there.
    assert _body(ann, ELSEWHERE, "locked/x") == b"locked of pg-elsewhere"
    # A policy whose only resources are another bucket's is accepted, and
    # changes nothing.
    admin = server.s3()
    only_other = doc({"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                      "Resource": both(CROSS)})  # fmt: skip
    admin.put_bucket_policy(Bucket=ELSEWHERE, Policy=only_other)
    try:
        assert admin.get_bucket_policy(Bucket=ELSEWHERE)["Policy"] == only_other
        assert _body(ann, ELSEWHERE, "locked/x") == b"locked of pg-elsewhere"
        assert _body(ann, CROSS, "open/x") == b"open of pg-cross"
    finally:
        admin.delete_bucket_policy(Bucket=ELSEWHERE)


def test_anonymous_read_via_principal_star(server: SeglakeServer) -> None:
    assert raw(server, "GET", f"/{ANON}/open/x") == (200, b"open of pg-anon")
    assert raw(server, "HEAD", f"/{ANON}/locked/x")[0] == 200
    for method, path, body in [("PUT", f"/{ANON}/anon", b"x"), ("GET", f"/{ANON}", b""),
                               ("DELETE", f"/{ANON}/open/x", b""),
                               ("GET", f"/{ANON}?policy", b"")]:  # fmt: skip
        status, answer = raw(server, method, path, body=body)
        assert status == 403 and b"<Code>AccessDenied</Code>" in answer, (method, path)
    # Principal {"AWS": "*"} limited to a range: only from inside it.
    inside = raw(server, "GET", f"/{ANON_IP}/open/x", {"X-Forwarded-For": INSIDE})
    assert inside == (200, b"open of pg-anon-ip")
    status, answer = raw(server, "GET", f"/{ANON_IP}/open/x", {"X-Forwarded-For": OUTSIDE})
    assert status == 403 and b"<Code>AccessDenied</Code>" in answer
    # The bucket policy does not widen signed keys: a read-only key still
    # cannot write where "*" may only read.
    cli(server, "keys", "create", "--key-access", "ro-reader", "--key-secret", "ro-secret-1",
        "--key-policy", "ro")  # fmt: skip
    KEYS["ro-reader"] = "ro-secret-1"
    reader = client(server, "ro-reader")
    assert _body(reader, ANON, "open/x") == b"open of pg-anon"
    _denied(lambda: reader.put_object(Bucket=ANON, Key="open/x", Body=b"overwrite"))


def test_auth_type_condition(server: SeglakeServer) -> None:
    ann = client(server, "ann")
    assert _body(ann, AUTH, "open/x") == b"open of pg-auth"
    url = ann.generate_presigned_url(
        "get_object", Params={"Bucket": AUTH, "Key": "open/x"}, ExpiresIn=300
    )
    status, answer = raw(server, "GET", url.split(str(server.port), 1)[1])
    assert status == 403 and b"<Code>AccessDenied</Code>" in answer
    url = ann.generate_presigned_url(
        "get_object", Params={"Bucket": CROSS, "Key": "open/x"}, ExpiresIn=300
    )
    assert raw(server, "GET", url.split(str(server.port), 1)[1]) == (200, b"open of pg-cross")


@pytest.mark.parametrize(
    ("bucket", "public"),
    [
        (ANON, True),  # allow to "*", listed in --public-buckets
        (ANON_IP, False),  # limited to a CIDR: not public by AWS's rules
        (IP, False),  # only a Deny
        (NOTP, False),
        (CROSS, False),
    ],
)
def test_bucket_policy_status(server: SeglakeServer, bucket: str, public: bool) -> None:
    # From inside pg-ip's range: its Deny covers s3:GetBucketPolicyStatus too.
    admin = with_headers(server.s3(), {"X-Forwarded-For": INSIDE})
    status = admin.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]
    assert status == {"IsPublic": public}


def test_policy_status_errors_and_rights(server: SeglakeServer) -> None:
    with pytest.raises(ClientError) as e:
        server.s3().get_bucket_policy_status(Bucket=HOME)
    assert status_and_code(e) == (404, "NoSuchBucketPolicy")
    with pytest.raises(ClientError) as e:
        server.s3().get_bucket_policy_status(Bucket="pg-no-such-bucket")
    assert status_and_code(e) == (404, "NoSuchBucket")
    assert (
        client(server, "ann").get_bucket_policy_status(Bucket=ANON)["PolicyStatus"]["IsPublic"]
        is True
    )  # rw allows s3:GetBucketPolicyStatus
    _denied(lambda: client(server, "liz").get_bucket_policy_status(Bucket=ANON))
    status, answer = raw(server, "GET", f"/{ANON}?policyStatus")
    assert status == 403 and b"<Code>AccessDenied</Code>" in answer


def test_malformed_and_unknown(server: SeglakeServer) -> None:
    admin = server.s3()
    bucket = ELSEWHERE
    malformed = [
        "{not json",
        doc({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/*",
             "Condition": {"StringEqualsAlmost": {"aws:UserAgent": "x"}}}),
        doc({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/*",
             "Condition": {"IpAddress": {"aws:SourceIp": "300.1.2.3/8"}}}),
        doc({"Effect": "Deny", "Principal": {"Group": "x"}, "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/*"}),
    ]  # fmt: skip
    for text in malformed:
        with pytest.raises(ClientError) as e:
            admin.put_bucket_policy(Bucket=bucket, Policy=text)
        assert status_and_code(e) == (400, "MalformedPolicy"), text
    with pytest.raises(ClientError) as e:
        admin.get_bucket_policy(Bucket=bucket)
    assert status_and_code(e) == (404, "NoSuchBucketPolicy")
    # An unknown condition key is accepted and never matches, even negated;
    # a known key the request lacks follows AWS (negated: matches).
    unknown = doc({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                   "Resource": f"arn:aws:s3:::{bucket}/open/*",
                   "Condition": {"StringNotEquals": {"acme:Thing": "x"}}},
                  {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                   "Resource": f"arn:aws:s3:::{bucket}/locked/*",
                   "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}})  # fmt: skip
    admin.put_bucket_policy(Bucket=bucket, Policy=unknown)
    try:
        ann = client(server, "ann")
        assert _body(ann, bucket, "open/x") == b"open of pg-elsewhere"
        _denied(lambda: ann.get_object(Bucket=bucket, Key="locked/x"))
    finally:
        admin.delete_bucket_policy(Bucket=bucket)
