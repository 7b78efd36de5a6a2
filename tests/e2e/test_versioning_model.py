"""Versioning against a reference model: random sequences of put / delete /
delete-version / suspend / enable run on Seglake and on a small in-test model
of S3's versioning rules, and after every step GET, HEAD, ListObjectVersions
and ListObjects must agree with the model.

The model (``Model``) is the whole of S3 versioning for one bucket: per key a
list of versions, newest first, each a version id and a body (``None`` for a
delete marker). Ids come from the server (they are opaque); the model decides
which ids must exist, in which order, and which one is current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import bucket_name
from tests.e2e.test_versioning import ordered_entries, raw_listing
from tests.harness import SeglakeServer

KEYS = ("a", "a/b", "b")
NULL = "null"
MAX_STEPS = 15
# A well-formed version id that no server ever issues (its clock is year 2554).
UNKNOWN_ID = "0000000000000000ffffffff"

Version = tuple[str, bytes | None]  # (version id, body or None for a delete marker)


@dataclass
class Model:
    versioning: str = "enabled"
    keys: dict[str, list[Version]] = field(default_factory=dict)

    def write(self, key: str, vid: str, body: bytes | None) -> None:
        versions = self.keys.setdefault(key, [])
        if vid == NULL:
            # The null version is replaced, never any other version.
            versions[:] = [v for v in versions if v[0] != NULL]
        versions.insert(0, (vid, body))

    def remove(self, key: str, vid: str) -> Version | None:
        versions = self.keys.get(key, [])
        for i, v in enumerate(versions):
            if v[0] == vid:
                return versions.pop(i)
        return None

    def listing(self) -> list[tuple[str, str, bool, bool]]:
        out = []
        for key in sorted(self.keys, key=str.encode):
            for i, (vid, body) in enumerate(self.keys[key]):
                out.append((key, vid, i == 0, body is None))
        return out


ops = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("delete_version"), st.sampled_from(KEYS), st.integers(0, 6)),
    st.tuples(st.just("suspend")),
    st.tuples(st.just("enable")),
)


def _error(exc: ClientError) -> tuple[int, str, dict[str, str]]:
    meta = exc.response["ResponseMetadata"]
    return meta["HTTPStatusCode"], exc.response["Error"]["Code"], meta["HTTPHeaders"]


def _reported_id(resp: dict[str, Any]) -> str:
    # A null version may be reported with or without x-amz-version-id: null
    # here; test_versioning.py::test_null_version_reports_version_id_null
    # holds the server to AWS's spelling.
    return str(resp.get("VersionId") or NULL)


def check_key(s3: Any, bucket: str, model: Model, key: str, *, by_id: bool) -> None:
    versions = model.keys.get(key, [])
    for call in (s3.get_object, s3.head_object):
        if versions and versions[0][1] is not None:
            vid, body = versions[0]
            resp = call(Bucket=bucket, Key=key)
            assert _reported_id(resp) == vid, (call, key)
            if call is s3.get_object:
                assert resp["Body"].read() == body
            else:
                assert resp["ContentLength"] == len(body or b"")
            continue
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket, Key=key)
        status, _, headers = _error(exc.value)
        assert status == 404, (call, key)
        if versions:  # the latest is a delete marker
            assert headers.get("x-amz-delete-marker") == "true"
            assert headers.get("x-amz-version-id") == versions[0][0]
        else:
            assert "x-amz-delete-marker" not in headers
    if not by_id:
        return
    for vid, body in versions:
        if body is None:
            with pytest.raises(ClientError) as exc:
                s3.get_object(Bucket=bucket, Key=key, VersionId=vid)
            status, code, headers = _error(exc.value)
            assert (status, code) == (405, "MethodNotAllowed")
            assert headers.get("x-amz-delete-marker") == "true"
        else:
            resp = s3.get_object(Bucket=bucket, Key=key, VersionId=vid)
            assert resp["Body"].read() == body
            assert _reported_id(resp) == vid


def step(s3: Any, bucket: str, model: Model, op: tuple[Any, ...], n: int) -> str | None:
    """Run one operation on both sides; returns the key it touched."""
    name = op[0]
    if name in ("suspend", "enable"):
        status = "Suspended" if name == "suspend" else "Enabled"
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
        model.versioning = "suspended" if name == "suspend" else "enabled"
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == status
        return None
    key = op[1]
    seen = {v[0] for vs in model.keys.values() for v in vs}
    if name == "put":
        body = f"step {n} {key}".encode()
        resp = s3.put_object(Bucket=bucket, Key=key, Body=body)
        if model.versioning == "enabled":
            vid = resp["VersionId"]
            assert vid != NULL and vid not in seen
        else:
            assert "VersionId" not in resp
            vid = NULL
        model.write(key, vid, body)
    elif name == "delete":
        resp = s3.delete_object(Bucket=bucket, Key=key)
        assert resp["DeleteMarker"] is True
        vid = resp["VersionId"]
        if model.versioning == "enabled":
            assert vid != NULL and vid not in seen
        else:
            assert vid == NULL
        model.write(key, vid, None)
    else:
        versions = model.keys.get(key, [])
        pick = op[2]
        vid = versions[pick][0] if pick < len(versions) else UNKNOWN_ID
        resp = s3.delete_object(Bucket=bucket, Key=key, VersionId=vid)
        assert resp["VersionId"] == vid
        removed = model.remove(key, vid)
        assert resp.get("DeleteMarker", False) is (removed is not None and removed[1] is None)
    return str(key)


def check_all(
    server: SeglakeServer, s3: Any, bucket: str, model: Model, touched: str | None
) -> None:
    for key in KEYS:
        check_key(s3, bucket, model, key, by_id=key == touched)
    assert ordered_entries(raw_listing(server, bucket, "")) == model.listing()
    live = sorted(k for k, vs in model.keys.items() if vs and vs[0][1] is not None)
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == live


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(ops, min_size=1, max_size=MAX_STEPS))
def test_versioning_matches_model(server: SeglakeServer, s3: Any, script: list[Any]) -> None:
    bucket = bucket_name("model")
    s3.create_bucket(Bucket=bucket)
    model = Model()
    for n, op in enumerate(script):
        touched = step(s3, bucket, model, op, n)
        check_all(server, s3, bucket, model, touched)
