"""Bucket ownership controls end to end: Put/Get/DeleteBucketOwnershipControls,
``x-amz-object-ownership`` on CreateBucket, what BucketOwnerEnforced refuses
(AccessControlListNotSupported) and what it still answers, who owns an
object under BucketOwnerPreferred and ObjectWriter, and Seglake's default
(no controls: ACLs enabled, as S3 before April 2023; see
``seglake/protocol/ownership.py``)."""

from __future__ import annotations

import http.client
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from seglake.auth.canonical import canonical_id
from tests.e2e._helpers import cli, status_and_code, with_headers
from tests.harness import ACCESS_KEY, REGION, SeglakeServer, server_fixture

ADMIN_ID = canonical_id(ACCESS_KEY)
ALICE_ID = canonical_id("alice")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
PUBLIC = ("own-default", "own-enforced", "own-writer", "own-preferred", "own-switch")


def _setup(srv: SeglakeServer) -> None:
    done = cli(srv.data_dir, "-mode", "keys", "-keys-action", "create", "-key-access=alice",
               "-key-secret=alice-secret-own", "-key-policy=rw")  # fmt: skip
    assert done.returncode == 0, done.stderr


server = server_fixture("--public-buckets", ",".join(PUBLIC), setup=_setup)


def error(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as e:
        call()
    return status_and_code(e)


def controls(s3: Any, bucket: str) -> str:
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert len(rules) == 1
    return str(rules[0]["ObjectOwnership"])


def alice(srv: SeglakeServer) -> Any:
    return boto3.client(
        "s3", endpoint_url=srv.endpoint, aws_access_key_id="alice",
        aws_secret_access_key="alice-secret-own", region_name=REGION,
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def anon_get(srv: SeglakeServer, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_default_is_no_controls_and_acls_enabled(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="own-default")
    assert error(lambda: s3.get_bucket_ownership_controls(Bucket="own-default")) == (
        404, "OwnershipControlsNotFoundError",
    )  # fmt: skip
    s3.put_object(Bucket="own-default", Key="k", Body=b"k", ACL="public-read")
    assert anon_get(server, "/own-default/k") == 200
    assert error(lambda: s3.get_bucket_ownership_controls(Bucket="own-none-such")) == (
        404, "NoSuchBucket",
    )  # fmt: skip


def test_bucket_owner_enforced(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="own-enforced", ObjectOwnership="BucketOwnerEnforced")
    assert controls(s3, "own-enforced") == "BucketOwnerEnforced"
    b = "own-enforced"
    refused = [
        lambda: s3.put_object(Bucket=b, Key="p", Body=b"p", ACL="public-read"),
        lambda: s3.put_object(Bucket=b, Key="p", Body=b"p", GrantRead=f'uri="{ALL_USERS}"'),
        lambda: s3.put_bucket_acl(Bucket=b, ACL="public-read"),
        lambda: s3.create_multipart_upload(Bucket=b, Key="p", ACL="authenticated-read"),
        lambda: s3.copy_object(Bucket=b, Key="p", CopySource={"Bucket": b, "Key": "ok"},
                               ACL="public-read"),
    ]  # fmt: skip
    s3.put_object(Bucket=b, Key="ok", Body=b"ok", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=b, Key="ok2", Body=b"ok", ACL="private")
    s3.put_object(Bucket=b, Key="ok3", Body=b"ok", GrantFullControl=f'id="{ADMIN_ID}"')
    for call in refused:
        assert error(call) == (400, "AccessControlListNotSupported")
    assert error(lambda: s3.head_object(Bucket=b, Key="p"))[0] == 404
    # Reading ACLs still works: the owner's full control.
    acl = s3.get_bucket_acl(Bucket=b)
    assert [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == [
        (ADMIN_ID, "FULL_CONTROL")
    ]
    # An object alice writes is the bucket owner's.
    alice(server).put_object(Bucket=b, Key="by-alice", Body=b"a")
    assert s3.get_object_acl(Bucket=b, Key="by-alice")["Owner"]["ID"] == ADMIN_ID
    listed = s3.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"]
    assert {o["Key"]: o["Owner"]["ID"] for o in listed}["by-alice"] == ADMIN_ID


def test_create_bucket_enforced_with_public_acl_is_refused(server: SeglakeServer) -> None:
    s3 = server.s3()
    assert error(
        lambda: s3.create_bucket(
            Bucket="own-switch", ObjectOwnership="BucketOwnerEnforced", ACL="public-read"
        )
    ) == (400, "InvalidBucketAclWithObjectOwnership")
    assert "own-switch" not in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    s3raw = with_headers(server.s3(), {"x-amz-object-ownership": "Everyone"})
    assert error(lambda: s3raw.create_bucket(Bucket="own-switch")) == (400, "InvalidArgument")


def test_switching_controls(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="own-switch")
    s3.put_object(Bucket="own-switch", Key="pub", Body=b"pub", ACL="public-read")
    assert anon_get(server, "/own-switch/pub") == 200
    s3.put_bucket_ownership_controls(
        Bucket="own-switch",
        OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    )
    assert controls(s3, "own-switch") == "BucketOwnerEnforced"
    # ACLs disabled: the object's public-read no longer counts.
    assert anon_get(server, "/own-switch/pub") == 403
    s3.put_bucket_ownership_controls(
        Bucket="own-switch", OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    )
    assert anon_get(server, "/own-switch/pub") == 200
    s3.delete_bucket_ownership_controls(Bucket="own-switch")
    assert error(lambda: s3.get_bucket_ownership_controls(Bucket="own-switch"))[1] == (
        "OwnershipControlsNotFoundError"
    )
    # A bucket ACL granting others: BucketOwnerEnforced is refused.
    s3.put_bucket_acl(Bucket="own-switch", ACL="public-read")
    assert error(
        lambda: s3.put_bucket_ownership_controls(
            Bucket="own-switch",
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        )
    ) == (400, "InvalidBucketAclWithObjectOwnership")


def test_malformed_controls(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="own-writer", ObjectOwnership="ObjectWriter")
    for rules in ([], [{"ObjectOwnership": "ObjectWriter"}] * 2, [{"ObjectOwnership": "Mine"}]):
        assert error(
            lambda r=rules: s3.put_bucket_ownership_controls(
                Bucket="own-writer", OwnershipControls={"Rules": r}
            )
        ) == (400, "MalformedXML")
    assert controls(s3, "own-writer") == "ObjectWriter"


def test_preferred_and_writer_owners(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="own-preferred", ObjectOwnership="BucketOwnerPreferred")
    a = alice(server)
    a.put_object(Bucket="own-preferred", Key="given", Body=b"g", ACL="bucket-owner-full-control")
    a.put_object(Bucket="own-preferred", Key="kept", Body=b"k")
    assert s3.get_object_acl(Bucket="own-preferred", Key="given")["Owner"]["ID"] == ADMIN_ID
    assert s3.get_object_acl(Bucket="own-preferred", Key="kept")["Owner"]["ID"] == ALICE_ID
    s3.create_bucket(Bucket="own-writer2", ObjectOwnership="ObjectWriter")
    a.put_object(Bucket="own-writer2", Key="w", Body=b"w", ACL="bucket-owner-full-control")
    acl = s3.get_object_acl(Bucket="own-writer2", Key="w")
    assert acl["Owner"]["ID"] == ALICE_ID
    got = {(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]}
    assert got == {(ALICE_ID, "FULL_CONTROL"), (ADMIN_ID, "FULL_CONTROL")}
