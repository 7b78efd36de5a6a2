"""ACLs end to end: canned ACLs and grants on every write that takes them,
Get/Put Bucket and Object ACL (with versionId), owners and display names in
every listing, anonymous (unsigned, raw HTTP) access exactly as far as the
ACLs allow, explicit denies and the key-policy ceiling on top, real clients
(s3cmd ``--acl-public``, rclone ``acl = public-read``), and ACLs surviving a
writer kill -9 and ``rebuild-index``.

Anonymous requests are served only on buckets in ``--public-buckets``
(Seglake's Block Public Access); a public ACL elsewhere is refused with
AccessDenied so no client is told its data is public when it is not.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from seglake.audit.replay import replay
from seglake.auth.canonical import canonical_id
from tests.e2e._helpers import cli, status_and_code
from tests.faults.util import processes_by_name, sigkill, status_retry, wait_restarted
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

PUB = "acl-pub"  # listed in --public-buckets
PUB2 = "acl-pub2"
CLIENTS = "acl-clients"
HIDDEN = "acl-hidden"  # not listed
ADMIN_ID = canonical_id(ACCESS_KEY)
KEYS = {
    "alice": "alice-secret-acl-1", "bob": "bob-secret-acl-2", "gus": "gus-secret-acl-3",
    "pat": "pat-secret-acl-4",
}  # fmt: skip
ALICE_ID = canonical_id("alice")
BOB_ID = canonical_id("bob")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
GET_ONLY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
# Writes and reads objects, but may not set ACLs (no s3:PutObjectAcl).
PUT_NO_ACL = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":'
    '["s3:GetObject","s3:PutObject"],"Resource":"*"}]}'
)


def _setup(srv: SeglakeServer) -> None:
    admin = srv.s3()
    for b in (PUB, PUB2, CLIENTS, HIDDEN):
        admin.create_bucket(Bucket=b)
    for key, secret in KEYS.items():
        policy = {"alice": "rw", "bob": "ro", "gus": GET_ONLY, "pat": PUT_NO_ACL}[key]
        done = cli(srv.data_dir, "-mode", "keys", "-keys-action", "create", f"-key-access={key}",
                   f"-key-secret={secret}", f"-key-policy={policy}")  # fmt: skip
        assert done.returncode == 0, done.stderr


server = server_fixture(
    "--public-buckets", f"{PUB},{PUB2},{CLIENTS}", buckets=[], setup=_setup, frontends=1
)


def client(srv: SeglakeServer, key: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=srv.endpoint, aws_access_key_id=key,
        aws_secret_access_key=KEYS[key], region_name=REGION,
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def raw(srv: SeglakeServer, method: str, path: str, body: bytes = b"",
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    """An unsigned request, as curl or a browser would send it."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def code(status_body: tuple[int, bytes]) -> tuple[int, str]:
    status, body = status_body
    text = body.decode("utf-8", "replace")
    found = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""
    return status, found


def grants(acl: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for g in acl["Grants"]:
        who = g["Grantee"]
        ident = who.get("ID") or who.get("URI")
        out.add((who["Type"], ident, g["Permission"]))
    return out


def error(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as e:
        call()
    return status_and_code(e)


# ---- bucket ACLs -------------------------------------------------------------------


def test_bucket_acl_owner_and_canned(server: SeglakeServer) -> None:
    s3 = server.s3()
    acl = s3.get_bucket_acl(Bucket=PUB2)
    assert acl["Owner"] == {"ID": ADMIN_ID, "DisplayName": ACCESS_KEY}
    assert grants(acl) == {("CanonicalUser", ADMIN_ID, "FULL_CONTROL")}
    assert acl["Grants"][0]["Grantee"]["DisplayName"] == ACCESS_KEY
    # A private bucket: anonymous listing is refused.
    assert code(raw(server, "GET", f"/{PUB2}")) == (403, "AccessDenied")
    s3.put_bucket_acl(Bucket=PUB2, ACL="public-read")
    assert grants(s3.get_bucket_acl(Bucket=PUB2)) == {
        ("CanonicalUser", ADMIN_ID, "FULL_CONTROL"), ("Group", ALL_USERS, "READ"),
    }  # fmt: skip
    status, body = raw(server, "GET", f"/{PUB2}?list-type=2")
    assert status == 200 and b"<ListBucketResult" in body
    # READ is not READ_ACP, nor WRITE.
    assert code(raw(server, "GET", f"/{PUB2}?acl")) == (403, "AccessDenied")
    assert code(raw(server, "PUT", f"/{PUB2}/anon", b"x")) == (403, "AccessDenied")
    s3.put_bucket_acl(Bucket=PUB2, ACL="private")
    assert code(raw(server, "GET", f"/{PUB2}")) == (403, "AccessDenied")


def test_bucket_acl_as_a_document_and_grant_headers(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="acl-doc")
    policy = {
        "Owner": {"ID": ADMIN_ID},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": ADMIN_ID}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "CanonicalUser", "ID": BOB_ID}, "Permission": "READ_ACP"},
            {"Grantee": {"Type": "Group", "URI": AUTH_USERS}, "Permission": "READ"},
        ],
    }
    s3.put_bucket_acl(Bucket="acl-doc", AccessControlPolicy=policy)
    got = s3.get_bucket_acl(Bucket="acl-doc")
    assert grants(got) == {
        ("CanonicalUser", ADMIN_ID, "FULL_CONTROL"), ("CanonicalUser", BOB_ID, "READ_ACP"),
        ("Group", AUTH_USERS, "READ"),
    }  # fmt: skip
    names = {g["Grantee"].get("ID"): g["Grantee"].get("DisplayName") for g in got["Grants"]}
    assert names[BOB_ID] == "bob"
    s3.put_bucket_acl(Bucket="acl-doc", GrantRead=f'id="{ALICE_ID}"', GrantWrite=f'id="{BOB_ID}"')
    assert grants(s3.get_bucket_acl(Bucket="acl-doc")) == {
        ("CanonicalUser", ALICE_ID, "READ"), ("CanonicalUser", BOB_ID, "WRITE"),
    }  # fmt: skip
    # The owner named in a document must be the bucket's.
    wrong = {**policy, "Owner": {"ID": BOB_ID}}
    assert error(lambda: s3.put_bucket_acl(Bucket="acl-doc", AccessControlPolicy=wrong)) == (
        403, "AccessDenied",
    )  # fmt: skip
    # Hostile input: AWS's errors, nothing changes.
    bad = [
        (dict(ACL="everyone"), (400, "InvalidArgument")),
        (dict(ACL="private", GrantRead=f'id="{BOB_ID}"'), (400, "InvalidRequest")),
        (dict(GrantRead='emailAddress="x@example.com"'), (400, "UnresolvableGrantByEmailAddress")),
        (dict(GrantRead=f'id="{"0" * 64}"'), (400, "InvalidArgument")),
        (dict(GrantRead='uri="http://acs.amazonaws.com/groups/global/Robots"'),
         (400, "InvalidArgument")),
        (dict(GrantRead="garbage"), (400, "InvalidArgument")),
    ]  # fmt: skip
    for kwargs, expected in bad:
        assert error(lambda kw=kwargs: s3.put_bucket_acl(Bucket="acl-doc", **kw)) == expected
    for body in (b"<AccessControlPolicy><Owner>", b"<AccessControlPolicy/>", b"<x/>"):
        assert code(_signed(server, "PUT", "/acl-doc?acl", body)) == (400, "MalformedACLError")
    assert grants(s3.get_bucket_acl(Bucket="acl-doc")) == {
        ("CanonicalUser", ALICE_ID, "READ"), ("CanonicalUser", BOB_ID, "WRITE"),
    }  # fmt: skip


def _signed(srv: SeglakeServer, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """A SigV4-signed raw request with the admin key (for bodies boto3 would not send)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=srv.endpoint + path, data=body)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    return raw(srv, method, path, body, dict(request.headers.items()))


def test_public_acls_are_refused_on_buckets_not_public(server: SeglakeServer) -> None:
    s3 = server.s3()
    assert error(lambda: s3.put_bucket_acl(Bucket=HIDDEN, ACL="public-read")) == (
        403, "AccessDenied",
    )  # fmt: skip
    assert error(lambda: s3.put_object(Bucket=HIDDEN, Key="k", Body=b"x", ACL="public-read")) == (
        403, "AccessDenied",
    )  # fmt: skip
    assert error(lambda: s3.create_bucket(Bucket="acl-new-public", ACL="public-read")) == (
        403, "AccessDenied",
    )  # fmt: skip
    assert "Contents" not in s3.list_objects_v2(Bucket=HIDDEN)
    assert "acl-new-public" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # Not public: authenticated-read and grants to keys are fine anywhere.
    s3.put_object(Bucket=HIDDEN, Key="k", Body=b"x", ACL="authenticated-read")
    assert ("Group", AUTH_USERS, "READ") in grants(s3.get_object_acl(Bucket=HIDDEN, Key="k"))


def test_keys_list_shows_canonical_ids(server: SeglakeServer) -> None:
    done = cli(server.data_dir, "keys", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {k["access_key"]: k["canonical_id"] for k in json.loads(done.stdout)}
    assert listed["alice"] == ALICE_ID and listed["bob"] == BOB_ID


def test_create_bucket_with_acl_records_the_creator(server: SeglakeServer) -> None:
    alice = client(server, "alice")
    alice.create_bucket(Bucket="acl-alices", GrantRead=f'id="{BOB_ID}"')
    acl = server.s3().get_bucket_acl(Bucket="acl-alices")
    assert acl["Owner"] == {"ID": ALICE_ID, "DisplayName": "alice"}
    assert grants(acl) == {("CanonicalUser", BOB_ID, "READ")}


# ---- object ACLs, anonymous reads ---------------------------------------------------


def test_public_read_object_anonymous_get_and_head(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(Bucket=PUB, Key="open.txt", Body=b"open bytes", ACL="public-read")
    s3.put_object(Bucket=PUB, Key="closed.txt", Body=b"closed bytes")
    assert raw(server, "GET", f"/{PUB}/open.txt") == (200, b"open bytes")
    assert raw(server, "HEAD", f"/{PUB}/open.txt")[0] == 200
    assert code(raw(server, "GET", f"/{PUB}/closed.txt")) == (403, "AccessDenied")
    assert raw(server, "HEAD", f"/{PUB}/closed.txt")[0] == 403
    # A private bucket: a missing key is 403 to strangers (no ListBucket) ...
    assert code(raw(server, "GET", f"/{PUB}/missing.txt")) == (403, "AccessDenied")
    # ... a public-read bucket: 404 NoSuchKey.
    s3.put_bucket_acl(Bucket=PUB, ACL="public-read")
    try:
        assert code(raw(server, "GET", f"/{PUB}/missing.txt")) == (404, "NoSuchKey")
        assert raw(server, "HEAD", f"/{PUB}/missing.txt")[0] == 404
        # Bucket READ lists, but does not read a private object.
        assert code(raw(server, "GET", f"/{PUB}/closed.txt")) == (403, "AccessDenied")
    finally:
        s3.put_bucket_acl(Bucket=PUB, ACL="private")
    acl = s3.get_object_acl(Bucket=PUB, Key="open.txt")
    assert acl["Owner"] == {"ID": ADMIN_ID, "DisplayName": ACCESS_KEY}
    assert grants(acl) == {
        ("CanonicalUser", ADMIN_ID, "FULL_CONTROL"),
        ("Group", ALL_USERS, "READ"),
    }
    # Anonymous callers may not read or change the ACL itself.
    assert code(raw(server, "GET", f"/{PUB}/open.txt?acl")) == (403, "AccessDenied")
    # The ACL goes private: anonymous reads stop.
    s3.put_object_acl(Bucket=PUB, Key="open.txt", ACL="private")
    assert code(raw(server, "GET", f"/{PUB}/open.txt")) == (403, "AccessDenied")
    assert grants(s3.get_object_acl(Bucket=PUB, Key="open.txt")) == {
        ("CanonicalUser", ADMIN_ID, "FULL_CONTROL")
    }


def test_object_acl_per_version(server: SeglakeServer) -> None:
    s3 = server.s3()
    v1 = s3.put_object(Bucket=PUB, Key="ver.txt", Body=b"one", ACL="public-read")["VersionId"]
    v2 = s3.put_object(Bucket=PUB, Key="ver.txt", Body=b"two")["VersionId"]
    assert raw(server, "GET", f"/{PUB}/ver.txt?versionId={v1}") == (200, b"one")
    assert code(raw(server, "GET", f"/{PUB}/ver.txt")) == (403, "AccessDenied")
    assert ("Group", ALL_USERS, "READ") in grants(
        s3.get_object_acl(Bucket=PUB, Key="ver.txt", VersionId=v1)
    )
    assert ("Group", ALL_USERS, "READ") not in grants(s3.get_object_acl(Bucket=PUB, Key="ver.txt"))
    s3.put_object_acl(Bucket=PUB, Key="ver.txt", VersionId=v2, ACL="public-read")
    assert raw(server, "GET", f"/{PUB}/ver.txt") == (200, b"two")
    s3.put_object_acl(Bucket=PUB, Key="ver.txt", VersionId=v1, ACL="private")
    assert code(raw(server, "GET", f"/{PUB}/ver.txt?versionId={v1}")) == (403, "AccessDenied")
    assert error(lambda: s3.get_object_acl(Bucket=PUB, Key="ver.txt", VersionId="nope")) == (
        404, "NoSuchVersion",
    )  # fmt: skip
    assert error(lambda: s3.get_object_acl(Bucket=PUB, Key="nothing")) == (404, "NoSuchKey")
    assert error(lambda: s3.put_object_acl(Bucket=PUB, Key="nothing", ACL="private")) == (
        404, "NoSuchKey",
    )  # fmt: skip
    marker = s3.delete_object(Bucket=PUB, Key="ver.txt")["VersionId"]
    assert error(lambda: s3.get_object_acl(Bucket=PUB, Key="ver.txt")) == (404, "NoSuchKey")
    assert error(lambda: s3.get_object_acl(Bucket=PUB, Key="ver.txt", VersionId=marker))[0] == 405


def test_object_grants_and_documents(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(Bucket=PUB, Key="g.txt", Body=b"g", GrantRead=f'id="{BOB_ID}", uri="{ALL_USERS}"',
                  GrantFullControl=f'id="{ADMIN_ID}"')  # fmt: skip
    acl = s3.get_object_acl(Bucket=PUB, Key="g.txt")
    assert grants(acl) == {
        ("CanonicalUser", BOB_ID, "READ"), ("Group", ALL_USERS, "READ"),
        ("CanonicalUser", ADMIN_ID, "FULL_CONTROL"),
    }  # fmt: skip
    assert raw(server, "GET", f"/{PUB}/g.txt") == (200, b"g")
    doc = {"Owner": {"ID": ADMIN_ID}, "Grants": [
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ_ACP"}]}  # fmt: skip
    s3.put_object_acl(Bucket=PUB, Key="g.txt", AccessControlPolicy=doc)
    assert grants(s3.get_object_acl(Bucket=PUB, Key="g.txt")) == {("Group", ALL_USERS, "READ_ACP")}
    # READ_ACP to everyone: the ACL is readable anonymously, the object is not.
    status, body = raw(server, "GET", f"/{PUB}/g.txt?acl")
    assert status == 200 and b"READ_ACP" in body and b"AccessControlPolicy" in body
    assert code(raw(server, "GET", f"/{PUB}/g.txt")) == (403, "AccessDenied")
    for kwargs, expected in [
        (dict(ACL="log-delivery-write"), (400, "InvalidArgument")),
        (dict(ACL="public-read", GrantRead=f'id="{BOB_ID}"'), (400, "InvalidRequest")),
        (dict(GrantRead='emailAddress="a@b.example"'), (400, "UnresolvableGrantByEmailAddress")),
        (dict(GrantRead='id="not-a-canonical-id"'), (400, "InvalidArgument")),
    ]:  # fmt: skip
        assert error(lambda kw=kwargs: s3.put_object(Bucket=PUB, Key="bad", Body=b"b", **kw)) == (
            expected
        )
    assert error(lambda: s3.head_object(Bucket=PUB, Key="bad"))[0] == 404


def test_acl_on_copy_multipart_and_post(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(Bucket=PUB, Key="src", Body=b"source")
    s3.copy_object(Bucket=PUB, Key="copied", CopySource={"Bucket": PUB, "Key": "src"},
                   ACL="public-read")  # fmt: skip
    assert raw(server, "GET", f"/{PUB}/copied") == (200, b"source")
    assert code(raw(server, "GET", f"/{PUB}/src")) == (403, "AccessDenied")
    # Tags and the ACL of one write land together (one version-metadata record).
    s3.copy_object(Bucket=PUB, Key="tagged", CopySource={"Bucket": PUB, "Key": "src"},
                   ACL="public-read", TaggingDirective="REPLACE", Tagging="team=blue")  # fmt: skip
    assert s3.get_object_tagging(Bucket=PUB, Key="tagged")["TagSet"] == [
        {"Key": "team", "Value": "blue"}
    ]
    assert raw(server, "GET", f"/{PUB}/tagged") == (200, b"source")
    s3.put_object(Bucket=PUB, Key="tagged-put", Body=b"tp", ACL="public-read", Tagging="a=1")
    assert s3.get_object_tagging(Bucket=PUB, Key="tagged-put")["TagSet"] == [
        {"Key": "a", "Value": "1"}
    ]
    assert raw(server, "GET", f"/{PUB}/tagged-put") == (200, b"tp")
    up = s3.create_multipart_upload(Bucket=PUB, Key="mpu", ACL="public-read")["UploadId"]
    # Applied on Complete, not before.
    etag = s3.upload_part(Bucket=PUB, Key="mpu", UploadId=up, PartNumber=1, Body=b"parts")["ETag"]
    s3.complete_multipart_upload(Bucket=PUB, Key="mpu", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})  # fmt: skip
    assert raw(server, "GET", f"/{PUB}/mpu") == (200, b"parts")
    assert ("Group", ALL_USERS, "READ") in grants(s3.get_object_acl(Bucket=PUB, Key="mpu"))
    # boto3 writes SigV2 forms unless told to sign with SigV4.
    post = server.s3(signature_version="s3v4").generate_presigned_post(PUB, "posted", Fields={"acl": "public-read"},
                                      Conditions=[{"acl": "public-read"}])  # fmt: skip
    resp = httpx.post(post["url"], data=post["fields"],
                      files={"file": ("f", b"posted bytes", "text/plain")}, timeout=30)  # fmt: skip
    assert resp.status_code == 204, resp.text
    assert raw(server, "GET", f"/{PUB}/posted") == (200, b"posted bytes")


def test_public_read_write_bucket_anonymous_writes(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="acl-dropbox")
    # acl-dropbox is not listed: the public ACL is refused ...
    assert error(lambda: s3.put_bucket_acl(Bucket="acl-dropbox", ACL="public-read-write"))[0] == 403
    # ... on a listed bucket it works: anonymous PUT and DELETE.
    s3.put_bucket_acl(Bucket=PUB2, ACL="public-read-write")
    try:
        assert raw(server, "PUT", f"/{PUB2}/anon.txt", b"anonymous")[0] == 200
        assert s3.get_object(Bucket=PUB2, Key="anon.txt")["Body"].read() == b"anonymous"
        # Owned by the bucket owner (the account), not readable anonymously.
        acl = s3.get_object_acl(Bucket=PUB2, Key="anon.txt")
        assert acl["Owner"]["ID"] == ADMIN_ID
        assert code(raw(server, "GET", f"/{PUB2}/anon.txt")) == (403, "AccessDenied")
        # WRITE deletes (a delete marker), but never a version by its id.
        vid = s3.head_object(Bucket=PUB2, Key="anon.txt")["VersionId"]
        assert code(raw(server, "DELETE", f"/{PUB2}/anon.txt?versionId={vid}")) == (
            403, "AccessDenied",
        )  # fmt: skip
        assert raw(server, "DELETE", f"/{PUB2}/anon.txt")[0] == 204
        assert error(lambda: s3.head_object(Bucket=PUB2, Key="anon.txt"))[0] == 404
        # WRITE is not WRITE_ACP or deleting the bucket.
        assert code(raw(server, "PUT", f"/{PUB2}?acl", headers={"x-amz-acl": "private"})) == (
            403, "AccessDenied",
        )  # fmt: skip
        assert code(raw(server, "DELETE", f"/{PUB2}")) == (403, "AccessDenied")
    finally:
        s3.put_bucket_acl(Bucket=PUB2, ACL="private")
    assert code(raw(server, "PUT", f"/{PUB2}/anon2.txt", b"x")) == (403, "AccessDenied")


# ---- policies on top ------------------------------------------------------------------


def test_explicit_deny_beats_a_public_acl(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(Bucket=CLIENTS, Key="secret/x", Body=b"s", ACL="public-read")
    s3.put_object(Bucket=CLIENTS, Key="open/x", Body=b"o", ACL="public-read")
    deny = ('{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*",'
            f'"Action":"s3:GetObject","Resource":"arn:aws:s3:::{CLIENTS}/secret/*"}}]}}')  # fmt: skip
    s3.put_bucket_policy(Bucket=CLIENTS, Policy=deny)
    try:
        assert code(raw(server, "GET", f"/{CLIENTS}/secret/x")) == (403, "AccessDenied")
        assert raw(server, "GET", f"/{CLIENTS}/open/x") == (200, b"o")
    finally:
        s3.delete_bucket_policy(Bucket=CLIENTS)
    assert raw(server, "GET", f"/{CLIENTS}/secret/x") == (200, b"s")


def test_key_policy_stays_the_ceiling(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(
        Bucket=PUB, Key="for-gus", Body=b"g", GrantFullControl=f'id="{canonical_id("gus")}"'
    )
    gus = client(server, "gus")
    assert gus.get_object(Bucket=PUB, Key="for-gus")["Body"].read() == b"g"
    # FULL_CONTROL granted, but gus's own policy allows only GetObject.
    assert error(lambda: gus.put_object_acl(Bucket=PUB, Key="for-gus", ACL="private")) == (
        403, "AccessDenied",
    )  # fmt: skip
    assert error(lambda: gus.get_object_acl(Bucket=PUB, Key="for-gus")) == (403, "AccessDenied")
    # bob (ro) reads ACLs but cannot change them, grant or not.
    bob = client(server, "bob")
    assert bob.get_object_acl(Bucket=PUB, Key="for-gus")["Owner"]["ID"] == ADMIN_ID
    assert error(lambda: bob.put_object_acl(Bucket=PUB, Key="for-gus", ACL="private")) == (
        403, "AccessDenied",
    )  # fmt: skip


def test_setting_an_acl_on_a_write_needs_put_object_acl(server: SeglakeServer) -> None:
    """AWS: PutObject, CopyObject and CreateMultipartUpload with x-amz-acl or
    x-amz-grant-* need s3:PutObjectAcl besides s3:PutObject; refused, they
    store nothing."""
    pat = client(server, "pat")
    pat.put_object(Bucket=PUB, Key="pat/plain", Body=b"p")
    assert pat.get_object(Bucket=PUB, Key="pat/plain")["Body"].read() == b"p"
    grant = {"GrantRead": f'id="{ALICE_ID}"'}
    attempts = {
        "put canned": lambda: pat.put_object(Bucket=PUB, Key="pat/a", Body=b"x", ACL="private"),
        "put grant": lambda: pat.put_object(Bucket=PUB, Key="pat/b", Body=b"x", **grant),
        "copy": lambda: pat.copy_object(
            Bucket=PUB, Key="pat/c", CopySource={"Bucket": PUB, "Key": "pat/plain"},
            ACL="bucket-owner-full-control",
        ),
        "multipart": lambda: pat.create_multipart_upload(Bucket=PUB, Key="pat/d", **grant),
    }  # fmt: skip
    for what, call in attempts.items():
        assert error(call) == (403, "AccessDenied"), what
    admin = server.s3()
    for key in ("pat/a", "pat/b", "pat/c"):
        assert error(lambda k=key: admin.head_object(Bucket=PUB, Key=k)) == (404, "404"), key
    assert "Uploads" not in admin.list_multipart_uploads(Bucket=PUB, Prefix="pat/")
    # alice (rw, which includes PutObjectAcl) may.
    alice = client(server, "alice")
    alice.put_object(Bucket=PUB, Key="alice/acl", Body=b"a", GrantRead=f'id="{BOB_ID}"')
    assert (f"{BOB_ID}", "READ") in {
        (g["Grantee"].get("ID"), g["Permission"])
        for g in admin.get_object_acl(Bucket=PUB, Key="alice/acl")["Grants"]
    }


# ---- owners in listings ---------------------------------------------------------------


def test_owners_in_every_listing(server: SeglakeServer) -> None:
    alice = client(server, "alice")
    alice.put_object(Bucket=PUB2, Key="by-alice", Body=b"a")
    server.s3().put_object(Bucket=PUB2, Key="by-admin", Body=b"b")
    up = alice.create_multipart_upload(Bucket=PUB2, Key="alice-upload")["UploadId"]
    alice_owner = {"ID": ALICE_ID, "DisplayName": "alice"}
    admin_owner = {"ID": ADMIN_ID, "DisplayName": ACCESS_KEY}
    try:
        v2 = alice.list_objects_v2(Bucket=PUB2, FetchOwner=True)["Contents"]
        owners = {o["Key"]: o["Owner"] for o in v2}
        assert owners["by-alice"] == alice_owner and owners["by-admin"] == admin_owner
        assert all("Owner" not in o for o in alice.list_objects_v2(Bucket=PUB2)["Contents"])
        v1 = {o["Key"]: o["Owner"] for o in alice.list_objects(Bucket=PUB2)["Contents"]}
        assert v1["by-alice"] == alice_owner
        versions = alice.list_object_versions(Bucket=PUB2)["Versions"]
        assert {v["Key"]: v["Owner"] for v in versions}["by-alice"] == alice_owner
        uploads = alice.list_multipart_uploads(Bucket=PUB2)["Uploads"]
        mine = next(u for u in uploads if u["UploadId"] == up)
        assert mine["Initiator"] == alice_owner and mine["Owner"] == alice_owner
        parts = alice.list_parts(Bucket=PUB2, Key="alice-upload", UploadId=up)
        assert parts["Initiator"] == alice_owner and parts["Owner"] == alice_owner
        assert alice.list_buckets()["Owner"] == alice_owner
        assert server.s3().list_buckets()["Owner"] == admin_owner
        acl = alice.get_object_acl(Bucket=PUB2, Key="by-alice")
        assert acl["Owner"] == alice_owner
    finally:
        alice.abort_multipart_upload(Bucket=PUB2, Key="alice-upload", UploadId=up)


# ---- real clients ---------------------------------------------------------------------


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        pytest.skip(f"{binary} is not installed")
    return path


def test_s3cmd_acl_public_then_anonymous_get(server: SeglakeServer, tmp_path: Path) -> None:
    s3cmd = _need("s3cmd")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
        f"host_base = 127.0.0.1:{server.port}\nhost_bucket = 127.0.0.1:{server.port}\n"
        f"bucket_location = {REGION}\nuse_https = False\nsignature_v2 = False\n"
    )
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from s3cmd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [s3cmd, "-c", str(cfg), "put", "--acl-public", str(src), f"s3://{CLIENTS}/s3cmd/hello.txt"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # As curl would: no signature.
    assert raw(server, "GET", f"/{CLIENTS}/s3cmd/hello.txt") == (200, b"hello from s3cmd")
    acl = server.s3().get_object_acl(Bucket=CLIENTS, Key="s3cmd/hello.txt")
    assert ("Group", ALL_USERS, "READ") in grants(acl)


def test_rclone_acl_public_read(server: SeglakeServer, tmp_path: Path) -> None:
    rclone = _need("rclone")
    (tmp_path / "rclone.conf").write_text("")
    src = tmp_path / "r.txt"
    src.write_bytes(b"hello from rclone")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(
        HOME=str(tmp_path), RCLONE_CONFIG=str(tmp_path / "rclone.conf"),
        RCLONE_CONFIG_SL_TYPE="s3", RCLONE_CONFIG_SL_PROVIDER="Other",
        RCLONE_CONFIG_SL_ACCESS_KEY_ID=ACCESS_KEY, RCLONE_CONFIG_SL_SECRET_ACCESS_KEY=SECRET_KEY,
        RCLONE_CONFIG_SL_REGION=REGION, RCLONE_CONFIG_SL_ENDPOINT=server.endpoint,
        RCLONE_CONFIG_SL_FORCE_PATH_STYLE="true", RCLONE_CONFIG_SL_ACL="public-read",
    )  # fmt: skip
    done = subprocess.run(
        [rclone, "copyto", str(src), f"sl:{CLIENTS}/rclone/r.txt"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    acl = server.s3().get_object_acl(Bucket=CLIENTS, Key="rclone/r.txt")
    assert grants(acl) == {
        ("CanonicalUser", ADMIN_ID, "FULL_CONTROL"),
        ("Group", ALL_USERS, "READ"),
    }
    assert raw(server, "GET", f"/{CLIENTS}/rclone/r.txt") == (200, b"hello from rclone")


# ---- durability -------------------------------------------------------------------------


def _state(s3: Any) -> tuple[Any, ...]:
    return (
        grants(s3.get_bucket_acl(Bucket="durable-acl")),
        s3.get_bucket_acl(Bucket="durable-acl")["Owner"]["ID"],
        grants(s3.get_object_acl(Bucket="durable-acl", Key="k")),
        s3.get_bucket_ownership_controls(Bucket="durable-acl")["OwnershipControls"],
    )


def test_acls_survive_writer_kill_and_rebuild_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=["--public-buckets", "durable-acl"]) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="durable-acl", ObjectOwnership="BucketOwnerPreferred")
        s3.put_bucket_acl(Bucket="durable-acl", ACL="public-read")
        s3.put_object(Bucket="durable-acl", Key="k", Body=b"kept", ACL="public-read")
        s3.put_object_acl(Bucket="durable-acl", Key="k", GrantRead=f'uri="{ALL_USERS}"',
                          GrantReadACP=f'uri="{AUTH_USERS}"')  # fmt: skip
        before = _state(s3)
        writer = processes_by_name(status_retry(srv))["writer"]
        sigkill(writer["pid"])
        wait_restarted(srv, "writer", writer["pid"], timeout=20.0)
        assert _state(s3) == before
        assert raw(srv, "GET", "/durable-acl/k") == (200, b"kept")
    logged = replay(data / "objects" / "segments").buckets["durable-acl"]
    assert logged is not None and "public-read" in str(logged.get("acl"))
    for suffix in ("", "-wal", "-shm"):
        (data / f"meta.db{suffix}").unlink(missing_ok=True)
    done = cli(data, "rebuild-index")
    assert done.returncode == 0, done.stderr
    with SeglakeServer(data, frontends=1, extra_args=["--public-buckets", "durable-acl"]) as srv:
        assert _state(srv.s3()) == before
        deadline = time.monotonic() + 10
        while raw(srv, "GET", "/durable-acl/k")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert raw(srv, "GET", "/durable-acl/k") == (200, b"kept")


def test_missing_key_404_when_a_policy_lets_anyone_list(server: SeglakeServer) -> None:
    """AWS: a missing key is 404 to a caller with s3:ListBucket, 403 to others;
    the listing right may come from a bucket policy as well as from an ACL."""
    s3 = server.s3()
    assert code(raw(server, "GET", f"/{CLIENTS}/no-such-key")) == (403, "AccessDenied")
    lister = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
              f'"Action":"s3:ListBucket","Resource":"arn:aws:s3:::{CLIENTS}"}}]}}')  # fmt: skip
    s3.put_bucket_policy(Bucket=CLIENTS, Policy=lister)
    try:
        assert code(raw(server, "GET", f"/{CLIENTS}/no-such-key")) == (404, "NoSuchKey")
        assert raw(server, "HEAD", f"/{CLIENTS}/no-such-key")[0] == 404
    finally:
        s3.delete_bucket_policy(Bucket=CLIENTS)
    assert code(raw(server, "GET", f"/{CLIENTS}/no-such-key")) == (403, "AccessDenied")
