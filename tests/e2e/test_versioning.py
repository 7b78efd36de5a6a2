"""Bucket versioning through boto3 (and raw signed HTTP): bucket states, version
ids, null versions, delete markers, ListObjectVersions.

Every rule of issue #4 has a test here that checks bodies, version ids and
headers. All tests share the session server; each works in its own bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

import apsw
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_request
from tests.e2e.conftest import bucket_name
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
VERSIONING_XML = (
    '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<Status>{}</Status></VersioningConfiguration>"
)


# ---- helpers -----------------------------------------------------------------


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, dict[str, str]]:
    resp = exc.value.response
    meta = resp["ResponseMetadata"]
    return meta["HTTPStatusCode"], resp["Error"]["Code"], meta["HTTPHeaders"]


def error_code(resp: httpx.Response) -> str:
    root = ElementTree.fromstring(resp.content)
    assert root.tag == "Error", resp.content
    return root.findtext("Code") or ""


def create_bucket(server: SeglakeServer, name: str, versioning: str | None = None) -> None:
    headers = {"x-seglake-versioning": versioning} if versioning else {}
    resp = signed_request(server, "PUT", f"/{name}", headers=headers)
    assert resp.status_code == 200, resp.content


def set_versioning(s3: Any, bucket: str, status: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def versions_of(s3: Any, bucket: str, **kw: Any) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is delete marker) in listing order."""
    resp = s3.list_object_versions(Bucket=bucket, **kw)
    return listing_entries(resp)


def listing_entries(resp: dict[str, Any]) -> list[tuple[str, str, bool, bool]]:
    out = [(v["Key"], v["VersionId"], v["IsLatest"], False) for v in resp.get("Versions", [])]
    out += [(m["Key"], m["VersionId"], m["IsLatest"], True) for m in resp.get("DeleteMarkers", [])]
    # boto3 splits the two kinds; the server's order is key, then newest first,
    # which the tests state explicitly where it matters.
    return out


def raw_listing(server: SeglakeServer, bucket: str, query: str) -> ElementTree.Element:
    resp = signed_request(
        server, "GET", f"/{bucket}", query="versions&" + query if query else "versions"
    )
    assert resp.status_code == 200, resp.content
    return ElementTree.fromstring(resp.content)


def ordered_entries(root: ElementTree.Element) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is marker) in the document's own order."""
    out = []
    for child in root:
        tag = child.tag.removeprefix("{" + S3_NS + "}")
        if tag in ("Version", "DeleteMarker"):
            out.append(
                (
                    child.findtext(f"{{{S3_NS}}}Key") or "",
                    child.findtext(f"{{{S3_NS}}}VersionId") or "",
                    child.findtext(f"{{{S3_NS}}}IsLatest") == "true",
                    tag == "DeleteMarker",
                )
            )
    return out


def get(s3: Any, bucket: str, key: str, **kw: Any) -> tuple[bytes, str | None]:
    resp = s3.get_object(Bucket=bucket, Key=key, **kw)
    return resp["Body"].read(), resp.get("VersionId")


@pytest.fixture
def unversioned_bucket(request: pytest.FixtureRequest, server: SeglakeServer) -> str:
    name = bucket_name(request.node.name + "-unv")
    create_bucket(server, name, "unversioned")
    return name


# ---- bucket states -------------------------------------------------------------


def test_new_bucket_is_versioning_enabled(s3: Any, bucket: str) -> None:
    resp = s3.get_bucket_versioning(Bucket=bucket)
    assert resp["Status"] == "Enabled"
    assert "MFADelete" not in resp


def test_unversioned_bucket_reports_no_status(
    server: SeglakeServer, s3: Any, unversioned_bucket: str
) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=unversioned_bucket)
    raw = signed_request(server, "GET", f"/{unversioned_bucket}", query="versioning")
    root = ElementTree.fromstring(raw.content)
    assert root.tag == f"{{{S3_NS}}}VersioningConfiguration"
    assert list(root) == []


def test_versioning_transitions(server: SeglakeServer, s3: Any, unversioned_bucket: str) -> None:
    b = unversioned_bucket
    set_versioning(s3, b, "Enabled")
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    set_versioning(s3, b, "Suspended")
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"
    set_versioning(s3, b, "Enabled")
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    # There is no status that returns the bucket to unversioned.
    for status in ("Unversioned", "Disabled", "enabled", ""):
        with pytest.raises(ClientError) as exc:
            set_versioning(s3, b, status)
        assert error_of(exc)[:2] == (400, "IllegalVersioningConfigurationException")
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"


def test_unversioned_bucket_can_be_suspended_directly(s3: Any, unversioned_bucket: str) -> None:
    set_versioning(s3, unversioned_bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=unversioned_bucket)["Status"] == "Suspended"


def test_put_bucket_versioning_rejects_bad_xml(server: SeglakeServer, bucket: str) -> None:
    path = f"/{bucket}"
    bad_bodies = [
        b"",
        b"not xml at all",
        b"<VersioningConfiguration><Status>Enabled</Status>",  # unclosed
        b"<Other><Status>Enabled</Status></Other>",
        b"<VersioningConfiguration><Status>Enabled</Status><Extra/></VersioningConfiguration>",
        b"<VersioningConfiguration><Status>Enabled</Status><Status>Enabled</Status>"
        b"</VersioningConfiguration>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "Enabled">]>'
        b"<VersioningConfiguration><Status>&e;</Status></VersioningConfiguration>",
    ]
    for body in bad_bodies:
        resp = signed_request(server, "PUT", path, query="versioning", body=body)
        assert (resp.status_code, error_code(resp)) == (400, "MalformedXML"), body
    for body in (
        b"<VersioningConfiguration><Status>Bogus</Status></VersioningConfiguration>",
        b"<VersioningConfiguration></VersioningConfiguration>",
    ):
        resp = signed_request(server, "PUT", path, query="versioning", body=body)
        assert (resp.status_code, error_code(resp)) == (
            400,
            "IllegalVersioningConfigurationException",
        )
    # MFA delete is not implemented: refused, never silently ignored.
    mfa = (
        b"<VersioningConfiguration><Status>Suspended</Status><MfaDelete>Enabled</MfaDelete>"
        b"</VersioningConfiguration>"
    )
    resp = signed_request(server, "PUT", path, query="versioning", body=mfa)
    assert (resp.status_code, error_code(resp)) == (501, "NotImplemented")
    # Nothing above changed the state.
    raw = signed_request(server, "GET", path, query="versioning")
    assert b"<Status>Enabled</Status>" in raw.content
    # Without the namespace and with MfaDelete=Disabled (what is true) it is accepted.
    ok = (
        b"<VersioningConfiguration><Status>Suspended</Status><MfaDelete>Disabled</MfaDelete>"
        b"</VersioningConfiguration>"
    )
    resp = signed_request(server, "PUT", path, query="versioning", body=ok)
    assert resp.status_code == 200, resp.content
    raw = signed_request(server, "GET", path, query="versioning")
    assert b"<Status>Suspended</Status>" in raw.content


def test_put_bucket_versioning_body_must_match_signature(
    server: SeglakeServer, bucket: str
) -> None:
    body = VERSIONING_XML.format("Suspended").encode()
    url = f"{server.endpoint}/{bucket}?versioning"
    req = AWSRequest(method="PUT", url=url, data=body)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    tampered = VERSIONING_XML.format("Enabled").encode().replace(b"Enabled", b"Suspend")
    resp = httpx.put(url, headers=dict(req.headers.items()), content=tampered)
    assert resp.status_code in (400, 403), resp.content
    assert error_code(resp) in ("XAmzContentSHA256Mismatch", "SignatureDoesNotMatch")
    bad_md5 = signed_request(
        server, "PUT", f"/{bucket}", query="versioning", body=body,
        headers={"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
    )  # fmt: skip
    assert (bad_md5.status_code, error_code(bad_md5)) == (400, "BadDigest")
    raw = signed_request(server, "GET", f"/{bucket}", query="versioning")
    assert b"<Status>Enabled</Status>" in raw.content


def test_versioning_of_missing_bucket(s3: Any) -> None:
    name = bucket_name("no-such-bucket-versioning")
    for call in (
        lambda: s3.get_bucket_versioning(Bucket=name),
        lambda: set_versioning(s3, name, "Enabled"),
        lambda: s3.list_object_versions(Bucket=name),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc)[:2] == (404, "NoSuchBucket")


def test_default_versioning_flag(tmp_path: Path) -> None:
    srv = SeglakeServer(
        tmp_path / "data", frontends=1, extra_args=["--default-versioning", "unversioned"]
    )
    with srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="plain")
        assert "Status" not in s3.get_bucket_versioning(Bucket="plain")
        put = s3.put_object(Bucket="plain", Key="k", Body=b"x")
        assert "VersionId" not in put
        create_bucket(srv, "kept", "enabled")
        assert s3.get_bucket_versioning(Bucket="kept")["Status"] == "Enabled"
        bad = signed_request(srv, "PUT", "/other", headers={"x-seglake-versioning": "suspended"})
        assert (bad.status_code, error_code(bad)) == (400, "InvalidArgument")


# ---- version ids ---------------------------------------------------------------


def test_version_ids_unique_sortable_and_addressable(s3: Any, bucket: str) -> None:
    bodies = [f"body {i}".encode() * (i + 1) for i in range(5)]
    ids = []
    for body in bodies:
        put = s3.put_object(Bucket=bucket, Key="k", Body=body)
        assert put["ResponseMetadata"]["HTTPHeaders"]["x-amz-version-id"] == put["VersionId"]
        ids.append(put["VersionId"])
    assert len(set(ids)) == len(ids)
    assert all(len(v) == 24 and v != "null" for v in ids)
    # Opaque, but sortable by creation: ascending order is newest first.
    assert sorted(ids) == ids[::-1]
    listed = versions_of(s3, bucket)
    assert listed == [("k", v, v == ids[-1], False) for v in reversed(ids)]
    for body, vid in zip(bodies, ids, strict=True):
        assert get(s3, bucket, "k", VersionId=vid) == (body, vid)
        head = s3.head_object(Bucket=bucket, Key="k", VersionId=vid)
        assert head["VersionId"] == vid
        assert head["ContentLength"] == len(body)
        assert head["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert get(s3, bucket, "k") == (bodies[-1], ids[-1])
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == ids[-1]


def test_bad_version_ids(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for bad in ("nope", "0" * 23, "Z" * 24):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="k", VersionId=bad)
        assert error_of(exc)[:2] == (400, "InvalidArgument")
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=bucket, Key="k", VersionId=bad)
        assert error_of(exc)[:2] == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="0123456789abcdef01234567")
    assert error_of(exc)[:2] == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert error_of(exc)[:2] == (404, "NoSuchVersion")


# ---- delete markers ----------------------------------------------------------


def test_delete_creates_marker_and_hides_key(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="other", Body=b"o")
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (v1, "null") and len(marker) == 24
    assert marker < v1  # newer sorts first

    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    status, code, headers = error_of(exc)
    assert (status, code) == (404, "NoSuchKey")
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    status, _, headers = error_of(exc)
    assert status == 404
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker

    # A marker addressed by its version id has no body: 405.
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId=marker)
    status, code, headers = error_of(exc)
    assert (status, code) == (405, "MethodNotAllowed")
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker)
    status, _, headers = error_of(exc)
    assert status == 405
    assert headers["x-amz-delete-marker"] == "true"

    # The old version is still there by id.
    assert get(s3, bucket, "k", VersionId=v1) == (b"one", v1)
    # ListObjects hides the key; ListObjectVersions shows both.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["other"]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == ["other"]
    assert versions_of(s3, bucket, Prefix="k") == [
        ("k", v1, False, False),
        ("k", marker, True, True),
    ]


def test_delete_of_missing_key_still_creates_marker(s3: Any, bucket: str) -> None:
    deleted = s3.delete_object(Bucket=bucket, Key="never")
    assert deleted["DeleteMarker"] is True
    assert versions_of(s3, bucket) == [("never", deleted["VersionId"], True, True)]


def test_deleting_marker_restores_previous_version(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    m1 = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    m2 = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]  # a marker on a marker
    assert versions_of(s3, bucket) == [
        ("k", v2, False, False), ("k", v1, False, False),
        ("k", m2, True, True), ("k", m1, False, True),
    ]  # fmt: skip
    gone = s3.delete_object(Bucket=bucket, Key="k", VersionId=m2)
    assert gone["DeleteMarker"] is True and gone["VersionId"] == m2
    with pytest.raises(ClientError) as exc:  # m1 is now current
        s3.get_object(Bucket=bucket, Key="k")
    assert error_of(exc)[2]["x-amz-version-id"] == m1
    gone = s3.delete_object(Bucket=bucket, Key="k", VersionId=m1)
    assert gone["DeleteMarker"] is True and gone["VersionId"] == m1
    assert get(s3, bucket, "k") == (b"two", v2)
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == v2
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId=m1)
    assert error_of(exc)[:2] == (404, "NoSuchVersion")


def test_deleting_versions_by_id(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"three")["VersionId"]
    # A non-current version: current stays.
    gone = s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert gone["VersionId"] == v2 and "DeleteMarker" not in gone
    assert get(s3, bucket, "k") == (b"three", v3)
    # The current one: the previous remaining version becomes current.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v3)
    assert get(s3, bucket, "k") == (b"one", v1)
    assert versions_of(s3, bucket) == [("k", v1, True, False)]
    # Deleting a version that is gone (or never was) succeeds, as in S3.
    again = s3.delete_object(Bucket=bucket, Key="k", VersionId=v3)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204
    # The last one: the key is gone for real, with no marker.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    status, code, headers = error_of(exc)
    assert (status, code) == (404, "NoSuchKey")
    assert "x-amz-delete-marker" not in headers
    assert versions_of(s3, bucket) == []


# ---- suspended buckets and the null version -------------------------------------


def test_suspended_writes_replace_only_the_null_version(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    set_versioning(s3, bucket, "Suspended")

    put = s3.put_object(Bucket=bucket, Key="k", Body=b"null A")
    # AWS answers a PUT to a suspended bucket without x-amz-version-id.
    assert "x-amz-version-id" not in put["ResponseMetadata"]["HTTPHeaders"]
    assert get(s3, bucket, "k", VersionId="null")[0] == b"null A"
    assert versions_of(s3, bucket) == [("k", "null", True, False), ("k", v1, False, False)]

    s3.put_object(Bucket=bucket, Key="k", Body=b"null B")  # replaces null A, not v1
    assert versions_of(s3, bucket) == [("k", "null", True, False), ("k", v1, False, False)]
    assert get(s3, bucket, "k", VersionId="null")[0] == b"null B"
    assert get(s3, bucket, "k", VersionId=v1) == (b"versioned", v1)
    assert get(s3, bucket, "k")[0] == b"null B"

    # DELETE without a version id: a null delete marker, replacing null B.
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    assert deleted["VersionId"] == "null"
    assert versions_of(s3, bucket) == [("k", v1, False, False), ("k", "null", True, True)]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    status, code, headers = error_of(exc)
    assert (status, code) == (404, "NoSuchKey")
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == "null"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert error_of(exc)[:2] == (405, "MethodNotAllowed")

    # Re-enabled: new writes get ids again, the null marker stays.
    set_versioning(s3, bucket, "Enabled")
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"three")["VersionId"]
    assert v3 not in ("null", v1)
    assert versions_of(s3, bucket) == [
        ("k", v3, True, False), ("k", v1, False, False), ("k", "null", False, True),
    ]  # fmt: skip
    # Removing the null marker by id leaves the current version alone.
    gone = s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert gone["DeleteMarker"] is True and gone["VersionId"] == "null"
    assert get(s3, bucket, "k") == (b"three", v3)
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v3)
    assert get(s3, bucket, "k") == (b"versioned", v1)


def test_null_version_from_unversioned_days_survives_enabling(
    s3: Any, unversioned_bucket: str
) -> None:
    b = unversioned_bucket
    s3.put_object(Bucket=b, Key="k", Body=b"old")
    set_versioning(s3, b, "Enabled")
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"new")["VersionId"]
    assert versions_of(s3, b) == [("k", v1, True, False), ("k", "null", False, False)]
    assert get(s3, b, "k", VersionId="null")[0] == b"old"
    # Deleting the current version makes the null version current again.
    s3.delete_object(Bucket=b, Key="k", VersionId=v1)
    assert get(s3, b, "k")[0] == b"old"
    # Suspended: a write replaces that null version (there is only one).
    set_versioning(s3, b, "Suspended")
    s3.put_object(Bucket=b, Key="k", Body=b"newer null")
    assert versions_of(s3, b) == [("k", "null", True, False)]
    assert get(s3, b, "k", VersionId="null")[0] == b"newer null"


def test_suspended_delete_of_null_version_restores_previous(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    set_versioning(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null")
    gone = s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert gone["VersionId"] == "null" and "DeleteMarker" not in gone
    assert get(s3, bucket, "k") == (b"one", v1)


def test_null_version_reports_version_id_null(s3: Any, bucket: str) -> None:
    """GET/HEAD of a null version in a bucket with versioning configured say
    ``x-amz-version-id: null`` (AWS does; unversioned buckets send none)."""
    set_versioning(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null body")
    for kw in ({}, {"VersionId": "null"}):
        assert get(s3, bucket, "k", **kw) == (b"null body", "null")
        assert s3.head_object(Bucket=bucket, Key="k", **kw)["VersionId"] == "null"
    set_versioning(s3, bucket, "Enabled")
    assert get(s3, bucket, "k") == (b"null body", "null")


# ---- unversioned buckets ----------------------------------------------------------


def test_unversioned_bucket_deletes_for_real(s3: Any, unversioned_bucket: str) -> None:
    b = unversioned_bucket
    put = s3.put_object(Bucket=b, Key="k", Body=b"one")
    assert "x-amz-version-id" not in put["ResponseMetadata"]["HTTPHeaders"]
    s3.put_object(Bucket=b, Key="k", Body=b"two")  # an overwrite keeps nothing
    got = s3.get_object(Bucket=b, Key="k")
    assert got["Body"].read() == b"two"
    assert "x-amz-version-id" not in got["ResponseMetadata"]["HTTPHeaders"]
    head = s3.head_object(Bucket=b, Key="k")
    assert "x-amz-version-id" not in head["ResponseMetadata"]["HTTPHeaders"]
    # ListObjectVersions still works: one null version per key.
    assert versions_of(s3, b) == [("k", "null", True, False)]
    assert get(s3, b, "k", VersionId="null")[0] == b"two"

    deleted = s3.delete_object(Bucket=b, Key="k")
    headers = deleted["ResponseMetadata"]["HTTPHeaders"]
    assert "x-amz-delete-marker" not in headers and "x-amz-version-id" not in headers
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k")
    status, code, headers = error_of(exc)
    assert (status, code) == (404, "NoSuchKey")
    assert "x-amz-delete-marker" not in headers and "x-amz-version-id" not in headers
    assert versions_of(s3, b) == []
    # Deleting again is idempotent; the empty bucket can be deleted.
    s3.delete_object(Bucket=b, Key="k")
    s3.delete_bucket(Bucket=b)


# ---- ListObjectVersions ---------------------------------------------------------


def _populate(s3: Any, bucket: str) -> list[tuple[str, str, bool, bool]]:
    """A bucket with several keys, versions, markers; returns the expected full
    listing in server order (key, then newest first)."""
    entries: dict[str, list[tuple[str, bool]]] = {}
    for key, ops in [
        ("a/1", "ppd"), ("a/2", "p"), ("a/b/c", "pp"), ("b", "dp"), ("c d+é", "pdp"), ("z", "p"),
    ]:  # fmt: skip
        for op in ops:
            if op == "p":
                vid = s3.put_object(Bucket=bucket, Key=key, Body=f"{key}:{op}".encode())[
                    "VersionId"
                ]
                entries.setdefault(key, []).insert(0, (vid, False))
            else:
                vid = s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
                entries.setdefault(key, []).insert(0, (vid, True))
    out = []
    for key in sorted(entries, key=lambda k: k.encode()):
        for i, (vid, marker) in enumerate(entries[key]):
            out.append((key, vid, i == 0, marker))
    return out


def test_list_object_versions_order_and_fields(server: SeglakeServer, s3: Any, bucket: str) -> None:
    expected = _populate(s3, bucket)
    root = raw_listing(server, bucket, "")
    assert ordered_entries(root) == expected
    assert root.findtext(f"{{{S3_NS}}}IsTruncated") == "false"
    assert root.findtext(f"{{{S3_NS}}}Name") == bucket
    resp = s3.list_object_versions(Bucket=bucket)
    for v in resp["Versions"]:
        got = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        assert v["ETag"] == got["ETag"]
        assert v["Size"] == got["ContentLength"]
        assert v["StorageClass"] == "STANDARD"
        assert v["Owner"]["ID"]
    for m in resp["DeleteMarkers"]:
        assert "ETag" not in m and "Size" not in m and m["Owner"]["ID"]


def test_list_object_versions_prefix_and_delimiter(s3: Any, bucket: str) -> None:
    expected = _populate(s3, bucket)
    resp = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/"]
    assert sorted(listing_entries(resp)) == sorted(e for e in expected if "/" not in e[0])
    resp = s3.list_object_versions(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert resp["Prefix"] == "a/"
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/b/"]
    assert sorted(listing_entries(resp)) == sorted(e for e in expected if e[0] in ("a/1", "a/2"))
    resp = s3.list_object_versions(Bucket=bucket, Prefix="a/b")
    assert sorted(listing_entries(resp)) == sorted(e for e in expected if e[0] == "a/b/c")
    assert "CommonPrefixes" not in resp
    assert versions_of(s3, bucket, Prefix="nothing") == []


@pytest.mark.parametrize("delimiter", ["", "/"])
def test_list_object_versions_pagination(
    server: SeglakeServer, s3: Any, bucket: str, delimiter: str
) -> None:
    expected = _populate(s3, bucket)
    order = [e[1] for e in expected]
    want = [e for e in expected if not delimiter or "/" not in e[0]]
    for max_keys in (1, 2, 3, 5):
        seen: list[tuple[str, str, bool, bool]] = []
        prefixes: list[str] = []
        kw: dict[str, Any] = {"MaxKeys": max_keys}
        if delimiter:
            kw["Delimiter"] = delimiter
        for _ in range(100):
            resp = s3.list_object_versions(Bucket=bucket, **kw)
            page = listing_entries(resp)
            cps = [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
            assert len(page) + len(cps) <= max_keys
            seen += sorted(page, key=lambda e: order.index(e[1]))
            prefixes += cps
            if not resp["IsTruncated"]:
                assert "NextKeyMarker" not in resp
                break
            kw["KeyMarker"] = resp["NextKeyMarker"]
            if "NextVersionIdMarker" in resp:
                kw["VersionIdMarker"] = resp["NextVersionIdMarker"]
            else:
                kw.pop("VersionIdMarker", None)
        else:
            pytest.fail("pagination did not end")
        assert seen == want
        assert prefixes == (["a/"] if delimiter else [])


def test_list_object_versions_markers(server: SeglakeServer, s3: Any, bucket: str) -> None:
    expected = _populate(s3, bucket)
    # key-marker alone: strictly after every version of that key.
    resp = s3.list_object_versions(Bucket=bucket, KeyMarker="a/2")
    assert sorted(listing_entries(resp)) == sorted(e for e in expected if e[0].encode() > b"a/2")
    assert resp["KeyMarker"] == "a/2"
    # key-marker + version-id-marker: older versions of that key, then later keys.
    c_versions = [e for e in expected if e[0] == "c d+é"]
    root = raw_listing(
        server, bucket, "key-marker=c%20d%2B%C3%A9&version-id-marker=" + c_versions[0][1]
    )
    assert ordered_entries(root) == c_versions[1:] + [e for e in expected if e[0] == "z"]
    assert root.findtext(f"{{{S3_NS}}}VersionIdMarker") == c_versions[0][1]
    # A version-id-marker needs a key-marker; it must look like a version id.
    resp_bad = signed_request(
        server, "GET", f"/{bucket}", query="versions&version-id-marker=" + c_versions[0][1]
    )
    assert (resp_bad.status_code, error_code(resp_bad)) == (400, "InvalidArgument")
    resp_bad = signed_request(
        server, "GET", f"/{bucket}", query="versions&key-marker=b&version-id-marker=xyz"
    )
    assert (resp_bad.status_code, error_code(resp_bad)) == (400, "InvalidArgument")
    # max-keys=0: nothing, not truncated; max-keys above 1000 is capped.
    resp = s3.list_object_versions(Bucket=bucket, MaxKeys=0)
    assert listing_entries(resp) == [] and resp["IsTruncated"] is False
    assert s3.list_object_versions(Bucket=bucket, MaxKeys=5000)["MaxKeys"] == 1000


def test_list_object_versions_encoding_url(server: SeglakeServer, s3: Any, bucket: str) -> None:
    key = "dir one/ü&<x>+%"
    vid = s3.put_object(Bucket=bucket, Key=key, Body=b"x")["VersionId"]
    root = raw_listing(server, bucket, "encoding-type=url&prefix=dir%20one%2F")
    assert root.findtext(f"{{{S3_NS}}}EncodingType") == "url"
    assert root.findtext(f"{{{S3_NS}}}Prefix") == "dir%20one/"
    (entry,) = ordered_entries(root)
    assert unquote(entry[0]) == key and entry[0] != key
    assert entry[1:] == (vid, True, False)
    # boto3 asks for url encoding itself and decodes it back.
    assert versions_of(s3, bucket) == [(key, vid, True, False)]
    bad = signed_request(server, "GET", f"/{bucket}", query="versions&encoding-type=base64")
    assert (bad.status_code, error_code(bad)) == (400, "InvalidArgument")


def test_list_object_versions_many(s3: Any, bucket: str) -> None:
    """More entries than one page of the server's internal batches."""
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=b"%d" % i)["VersionId"] for i in range(30)]
    resp = s3.list_object_versions(Bucket=bucket, MaxKeys=25)
    assert [v["VersionId"] for v in resp["Versions"]] == ids[::-1][:25]
    assert resp["IsTruncated"] and resp["NextVersionIdMarker"] == ids[::-1][24]
    resp = s3.list_object_versions(
        Bucket=bucket, KeyMarker="k", VersionIdMarker=resp["NextVersionIdMarker"]
    )
    assert [v["VersionId"] for v in resp["Versions"]] == ids[::-1][25:]


# ---- ListObjects and DeleteBucket ---------------------------------------------------


def test_delete_bucket_removes_noncurrent_versions_and_markers(
    server: SeglakeServer, s3: Any, make_bucket: Callable[..., str]
) -> None:
    b = make_bucket()
    s3.delete_object(Bucket=b, Key="ghost")  # a marker with nothing under it
    v = s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=b, Key="k")
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    assert [x["VersionId"] for x in s3.list_object_versions(Bucket=b)["Versions"]] == [v]
    # No key has a current object: the bucket goes, and the noncurrent
    # version and the delete markers with it (the seed's rule).
    s3.delete_bucket(Bucket=b)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=b)
    assert error_of(exc)[0] == 404
    s3.create_bucket(Bucket=b)
    assert versions_of(s3, b) == []


def test_every_version_keeps_its_own_manifest(server: SeglakeServer, s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    conn = apsw.Connection(str(server.data_dir / "meta.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute(
            "SELECT version_id, uid, state FROM versions WHERE bucket = ? AND key = 'k'",
            (bucket,),
        ).fetchall()
    finally:
        conn.close()
    states = {str(r[0]): str(r[2]) for r in rows}
    # Overwrites and markers keep every version; only the one deleted by id
    # is released (for GC to reclaim).
    assert states == {v1: "DELETED", v2: "ACTIVE", marker: "ACTIVE"}
    from seglake.audit.replay import replay

    log = replay(server.data_dir / "objects" / "segments")
    for _, uid, _ in rows:
        assert uid in log.manifests  # a manifest record in the segments
    assert log.states[str(rows[[r[0] for r in rows].index(v1)][1])] == "DELETED"


# ---- CopyObject --------------------------------------------------------------------


def test_copy_source_version_id(s3: Any, bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"second")
    copied = s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1}
    )
    assert copied["CopySourceVersionId"] == v1
    dst_vid = copied["VersionId"]
    assert dst_vid not in ("null", v1)
    assert get(s3, bucket, "dst") == (b"first", dst_vid)
    assert versions_of(s3, bucket, Prefix="dst") == [("dst", dst_vid, True, False)]
