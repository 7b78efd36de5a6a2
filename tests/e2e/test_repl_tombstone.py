"""The hidden tombstone of an unversioned DELETE (docs/design-replication.md
§2): the key's LWW winner, kept so a late older put from another site
cannot bring the key back, and invisible to every S3 read."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import cli, db_rows, status_and_code
from tests.e2e._signing import signed_request
from tests.e2e.test_replication import (
    free_port,
    node,
    repl_once,
    restart,
    running,
    seglake,
    validate,
)  # fmt: skip
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer

UNVERSIONED = ["--default-versioning", "unversioned"]
TOMB_SQL = (
    "SELECT state, delete_marker, version_id, size FROM versions "
    "WHERE bucket = ? AND key = ? AND tombstone = 1 ORDER BY id"
)


def tombstones(data: Path, bucket: str, key: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db_rows(data, TOMB_SQL, (bucket, key))]


def error_of(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as exc:
        call()
    return status_and_code(exc)


def raw_answer(srv: SeglakeServer, method: str, path: str, query: str = "") -> tuple[int, Any]:
    """Status and headers (lowercased names) of a raw signed request."""
    r = signed_request(srv, method, path, query)
    return r.status_code, {k.lower(): v for k, v in r.headers.items()}


def assert_invisible(srv: SeglakeServer, bucket: str, key: str, never: str) -> None:
    """Every S3 read of ``key`` answers as it does for ``never``, a key that
    was never written: nothing of the tombstone shows."""
    s3 = srv.s3()
    for k in (key, never):
        assert error_of(lambda k=k: s3.get_object(Bucket=bucket, Key=k)) == (404, "NoSuchKey")
        assert error_of(lambda k=k: s3.head_object(Bucket=bucket, Key=k))[0] == 404
        for method in ("GET", "HEAD"):
            status, headers = raw_answer(srv, method, f"/{bucket}/{k}")
            assert status == 404 and "x-amz-delete-marker" not in headers, (method, headers)
            status, headers = raw_answer(srv, method, f"/{bucket}/{k}", "versionId=null")
            assert "x-amz-delete-marker" not in headers, (method, headers)
        assert error_of(
            lambda k=k: s3.copy_object(
                Bucket=bucket, Key="copy-dst", CopySource={"Bucket": bucket, "Key": k}
            )
        ) == (404, "NoSuchKey")
    # ?versionId=null answers exactly as for a key never written.
    for method in ("GET", "HEAD"):
        got = raw_answer(srv, method, f"/{bucket}/{key}", "versionId=null")[0]
        assert got == raw_answer(srv, method, f"/{bucket}/{never}", "versionId=null")[0]
    got_err = error_of(lambda: s3.get_object(Bucket=bucket, Key=key, VersionId="null"))
    assert got_err == error_of(lambda: s3.get_object(Bucket=bucket, Key=never, VersionId="null"))
    assert key not in [o["Key"] for o in s3.list_objects(Bucket=bucket).get("Contents", [])]
    assert key not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    versions = s3.list_object_versions(Bucket=bucket)
    assert versions.get("DeleteMarkers", []) == []
    assert key not in [v["Key"] for v in versions.get("Versions", [])]
    raw = signed_request(srv, "GET", f"/{bucket}", "versions=")
    assert raw.status_code == 200 and b"<DeleteMarker>" not in raw.content
    assert f"<Key>{key}</Key>".encode() not in raw.content


def test_the_tombstone_is_invisible_to_every_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=UNVERSIONED) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="plain")
        s3.put_object(Bucket="plain", Key="k", Body=b"first")
        assert (
            s3.delete_object(Bucket="plain", Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
        )
        assert tombstones(data, "plain", "k") == [("ACTIVE", 1, "null", 0)]
        assert db_rows(data, "SELECT count(*) FROM current WHERE bucket = 'plain'") == [(0,)]
        assert_invisible(srv, "plain", "k", "never")
        # Deleting again leaves it as it is (nothing current to delete).
        s3.delete_object(Bucket="plain", Key="k")
        s3.delete_object(Bucket="plain", Key="k", VersionId="null")
        assert tombstones(data, "plain", "k") == [("ACTIVE", 1, "null", 0)]

        # A conditional create succeeds over it, and replaces it.
        s3.put_object(Bucket="plain", Key="k", Body=b"second", IfNoneMatch="*")
        assert s3.get_object(Bucket="plain", Key="k")["Body"].read() == b"second"
        assert tombstones(data, "plain", "k") == [("DELETED", 1, "null", 0)]
        listed = s3.list_object_versions(Bucket="plain")
        assert [v["VersionId"] for v in listed["Versions"]] == ["null"]
        assert listed.get("DeleteMarkers", []) == []

        # A multipart Complete's If-None-Match: * too.
        s3.delete_object(Bucket="plain", Key="k")
        up = s3.create_multipart_upload(Bucket="plain", Key="k")["UploadId"]
        etag = s3.upload_part(Bucket="plain", Key="k", UploadId=up, PartNumber=1, Body=b"mp")[
            "ETag"
        ]
        s3.complete_multipart_upload(
            Bucket="plain", Key="k", UploadId=up, IfNoneMatch="*",
            MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
        )  # fmt: skip
        assert s3.get_object(Bucket="plain", Key="k")["Body"].read() == b"mp"
        s3.delete_object(Bucket="plain", Key="k")
        assert [t[0] for t in tombstones(data, "plain", "k")] == ["DELETED", "DELETED", "ACTIVE"]

        # Versioning turned on, then suspended: still hidden.
        for status in ("Enabled", "Suspended"):
            s3.put_bucket_versioning(Bucket="plain", VersioningConfiguration={"Status": status})
            assert_invisible(srv, "plain", "k", "never")

        # A bucket holding only tombstones is empty: it goes, and they with it.
        s3.delete_bucket(Bucket="plain")
        assert db_rows(data, "SELECT count(*) FROM versions WHERE bucket = 'plain'") == [(0,)]


def test_rebuild_index_restores_the_tombstone_hidden(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=UNVERSIONED) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="plain")
        s3.put_object(Bucket="plain", Key="k", Body=b"first")
        s3.delete_object(Bucket="plain", Key="k")
        s3.put_object(Bucket="plain", Key="alive", Body=b"here")
        srv.stop()
    before = db_rows(data, "SELECT uid, state, tombstone, hlc, site FROM versions ORDER BY uid")
    out = cli(data, "rebuild-index", "--force")
    assert out.returncode == 0, out.stderr
    after = db_rows(data, "SELECT uid, state, tombstone, hlc, site FROM versions ORDER BY uid")
    assert after == before
    assert tombstones(data, "plain", "k") == [("ACTIVE", 1, "null", 0)]
    with SeglakeServer(data, frontends=1, extra_args=UNVERSIONED) as srv:
        assert_invisible(srv, "plain", "k", "never")
        s3 = srv.s3()
        assert s3.get_object(Bucket="plain", Key="alive")["Body"].read() == b"here"
        srv.stop()


def pulled(puller: SeglakeServer, remote: SeglakeServer) -> SeglakeServer:
    """One-shot pull into ``puller`` (stopped for it) from ``remote``; the
    puller's new handle, started again."""
    puller.close()
    repl_once("repl-pull", puller.data_dir, remote.endpoint)
    return restart(puller)


def test_a_late_older_put_does_not_bring_the_key_back(tmp_path: Path) -> None:
    a = node(tmp_path, "a", free_port(), *UNVERSIONED)
    b = node(tmp_path, "b", free_port(), *UNVERSIONED)
    handles = [a, b]
    with running(a, b), contextlib.ExitStack() as later:
        later.callback(lambda: [h.close() for h in handles])
        a.s3().create_bucket(Bucket="shared")
        a.s3().put_object(Bucket="shared", Key="k", Body=b"v1 from a")
        b = pulled(b, a)
        handles.append(b)
        a.s3().put_object(Bucket="shared", Key="k", Body=b"v2 from a")
        time.sleep(0.01)
        # B's put follows v1 (what B saw), is older than A's delete, and
        # reaches A only after it.
        b.s3().put_object(Bucket="shared", Key="k", Body=b"older, from b")
        time.sleep(0.01)
        a.s3().delete_object(Bucket="shared", Key="k")
        a = pulled(a, b)
        handles.append(a)
        b = pulled(b, a)
        handles.append(b)
        for srv in (a, b):
            assert_invisible(srv, "shared", "k", "never")
            assert tombstones(srv.data_dir, "shared", "k") == [("ACTIVE", 1, "null", 0)]
            live = db_rows(
                srv.data_dir,
                "SELECT count(*) FROM versions WHERE bucket = 'shared' AND state != 'DELETED'",
            )
            assert live == [(1,)]  # the tombstone only
        validate(a, b)
        # A's rows against B's snapshot (the tombstone travels in it, and
        # wins there without being current, as in the writer).
        for ours, theirs in ((a, b), (b, a)):
            out = seglake(
                "-mode", "repl-validate", "-data-dir", str(ours.data_dir), "-repl-other",
                theirs.endpoint, "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY,
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr

        # A newer put wins over the tombstone, on both sites.
        b.s3().put_object(Bucket="shared", Key="k", Body=b"newest, from b")
        a = pulled(a, b)
        handles.append(a)
        for srv in (a, b):
            s3 = srv.s3()
            assert s3.get_object(Bucket="shared", Key="k")["Body"].read() == b"newest, from b"
            listed = s3.list_object_versions(Bucket="shared")
            assert [v["VersionId"] for v in listed["Versions"]] == ["null"]
            assert listed.get("DeleteMarkers", []) == []
            assert tombstones(srv.data_dir, "shared", "k") == [("DELETED", 1, "null", 0)]
        validate(a, b)
