"""DeleteBucket as the seed defines it, driven by every client's own
"empty the bucket, then remove it" flow on a default (versioned) bucket:
awscli v1 and v2, rclone, s3cmd, boto3, minio-py and the JS SDK v3.

The rule (SPEC §6): DeleteBucket is refused with ``409 BucketNotEmpty`` only
while some key's current version is an object, or a multipart upload is open.
Noncurrent versions and delete markers go with the bucket, their chunks stop
being live (segment GC may reclaim them), and the name can be reused at once.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest
from botocore.exceptions import ClientError

from seglake.format.manifest import decode_manifest
from seglake.meta.live_chunks import collect_live_chunks
from tests.e2e.test_clients import (
    AWS_BIN,
    aws_env,
    clean_env,
    make_tree,
    need,
    ok,
    rclone_env,
    run,
    s3cmd_config,
)
from tests.e2e.test_versioning import error_of
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

TREE = {"a.txt": 1000, "sub/b.bin": 70_000, "sub/deeper/c.txt": 12, "z": 0}
REPO = Path(__file__).resolve().parents[2]
VENV_AWS = REPO / ".venv" / "bin" / "aws"
JS_DIR = REPO / "tests" / "js"


def _fill_with_history(s3: Any, bucket: str, rng: random.Random) -> None:
    """Two versions of each key, so that an emptied bucket keeps noncurrent
    versions and delete markers behind its empty listing."""
    for key in ("old/one", "old/two"):
        for _ in range(2):
            s3.put_object(Bucket=bucket, Key=key, Body=rng.randbytes(300))


def _assert_gone_and_reusable(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=bucket)
    assert error_of(exc)[0] == 404
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.create_bucket(Bucket=bucket)
    again = s3.list_object_versions(Bucket=bucket)
    assert "Versions" not in again and "DeleteMarkers" not in again
    s3.delete_bucket(Bucket=bucket)


def _versions_left(s3: Any, bucket: str) -> tuple[int, int]:
    page = s3.list_object_versions(Bucket=bucket)
    return len(page.get("Versions", [])), len(page.get("DeleteMarkers", []))


def test_rule_current_objects_and_open_uploads_refuse(
    s3: Any, make_bucket: Callable[..., str], rng: random.Random
) -> None:
    b = make_bucket()
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"  # the default
    _fill_with_history(s3, b, rng)
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=b)
    assert error_of(exc)[:2] == (409, "BucketNotEmpty")

    s3.delete_object(Bucket=b, Key="old/one")
    with pytest.raises(ClientError) as exc:  # old/two is still current
        s3.delete_bucket(Bucket=b)
    assert error_of(exc)[:2] == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=b, Key="old/two")

    upload = s3.create_multipart_upload(Bucket=b, Key="pending")["UploadId"]
    with pytest.raises(ClientError) as exc:  # an open upload holds the bucket
        s3.delete_bucket(Bucket=b)
    assert error_of(exc)[:2] == (409, "BucketNotEmpty")
    s3.abort_multipart_upload(Bucket=b, Key="pending", UploadId=upload)

    assert _versions_left(s3, b) == (4, 2)  # the history is still there ...
    resp = s3.delete_bucket(Bucket=b)  # ... and goes with the bucket
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    _assert_gone_and_reusable(s3, b)


def test_a_damaged_or_only_current_version_still_counts(
    s3: Any, make_bucket: Callable[..., str]
) -> None:
    b = make_bucket()
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=b, Key="k", Body=b"two")
    # Removing the *current* version makes the older one current again.
    current = s3.head_object(Bucket=b, Key="k")["VersionId"]
    s3.delete_object(Bucket=b, Key="k", VersionId=current)
    assert s3.head_object(Bucket=b, Key="k")["VersionId"] == v1
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=b)
    assert error_of(exc)[:2] == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=b, Key="k", VersionId=v1)
    s3.delete_bucket(Bucket=b)
    _assert_gone_and_reusable(s3, b)


def test_boto3_paginated_delete_then_delete_bucket(
    s3: Any, make_bucket: Callable[..., str], rng: random.Random
) -> None:
    b = make_bucket()
    _fill_with_history(s3, b, rng)
    for i in range(30):
        s3.put_object(Bucket=b, Key=f"k/{i:04d}", Body=b"x" * i)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=b, PaginationConfig={"PageSize": 8})
    for page in pages:  # several DeleteObjects calls, as SDK "empty bucket" helpers make
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=b, Delete={"Objects": objs, "Quiet": True})
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    s3.delete_bucket(Bucket=b)
    _assert_gone_and_reusable(s3, b)


def test_same_name_reuse_sees_nothing_of_the_old_bucket(
    s3: Any, make_bucket: Callable[..., str], rng: random.Random
) -> None:
    b = make_bucket()
    old = rng.randbytes(5000)
    vid = s3.put_object(Bucket=b, Key="k", Body=old)["VersionId"]
    s3.delete_object(Bucket=b, Key="k")
    s3.delete_bucket(Bucket=b)
    s3.create_bucket(Bucket=b)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k", VersionId=vid)
    assert error_of(exc)[0] in (400, 404)
    new = rng.randbytes(700)
    s3.put_object(Bucket=b, Key="k", Body=new)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == new
    assert _versions_left(s3, b) == (1, 0)


# ---- real clients ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["debian-v2", "pip-v1"])
def test_awscli_rm_recursive_then_rb(
    which: str,
    server: SeglakeServer,
    s3: Any,
    make_bucket: Callable[..., str],
    tmp_path: Path,
    rng: random.Random,
) -> None:
    binary = need(AWS_BIN if which == "debian-v2" else str(VENV_AWS))
    env = aws_env(tmp_path)

    def aws(*args: str) -> str:
        return ok(run([binary, "--endpoint-url", server.endpoint, *args], env))

    b = make_bucket(which)
    _fill_with_history(s3, b, rng)
    src = make_tree(tmp_path / "src", rng, TREE)
    aws("s3", "cp", "--recursive", "--no-progress", str(src), f"s3://{b}/tree")
    assert len(s3.list_objects_v2(Bucket=b)["Contents"]) == len(TREE) + 2
    aws("s3", "rm", "--recursive", f"s3://{b}")
    assert _versions_left(s3, b) == (len(TREE) + 4, len(TREE) + 2)
    out = aws("s3", "rb", f"s3://{b}")
    assert f"remove_bucket: {b}" in out, out
    _assert_gone_and_reusable(s3, b)


def test_rclone_purge_and_rmdir(
    server: SeglakeServer,
    s3: Any,
    make_bucket: Callable[..., str],
    tmp_path: Path,
    rng: random.Random,
) -> None:
    binary = need("rclone")
    env = rclone_env(tmp_path, server.endpoint)

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        return run([binary, *args, "--retries", "1", "--low-level-retries", "1"], env)

    src = make_tree(tmp_path / "src", rng, TREE)
    # `delete` then `rmdir`: the two-step flow.
    b1 = make_bucket("rmdir")
    _fill_with_history(s3, b1, rng)
    ok(rclone("copy", str(src), f"sl:{b1}"))
    ok(rclone("delete", f"sl:{b1}"))
    assert "Contents" not in s3.list_objects_v2(Bucket=b1)
    ok(rclone("rmdir", f"sl:{b1}"))
    _assert_gone_and_reusable(s3, b1)
    # `purge`: everything, then the bucket, in one command.
    b2 = make_bucket("purge")
    _fill_with_history(s3, b2, rng)
    ok(rclone("copy", str(src), f"sl:{b2}"))
    ok(rclone("purge", f"sl:{b2}"))
    _assert_gone_and_reusable(s3, b2)


def test_s3cmd_rb_recursive(
    server: SeglakeServer,
    s3: Any,
    make_bucket: Callable[..., str],
    tmp_path: Path,
    rng: random.Random,
) -> None:
    binary = need("s3cmd")
    cfg = s3cmd_config(tmp_path, server.port)
    env = clean_env(tmp_path)
    b = make_bucket("s3cmd")
    _fill_with_history(s3, b, rng)
    src = make_tree(tmp_path / "src", rng, TREE)
    ok(run([binary, "-c", str(cfg), "--no-progress", "sync", f"{src}/", f"s3://{b}/t/"], env))
    out = ok(run([binary, "-c", str(cfg), "rb", "--recursive", f"s3://{b}"], env))
    assert f"Bucket 's3://{b}/' removed" in out, out
    _assert_gone_and_reusable(s3, b)


def test_deleted_bucket_bytes_become_reclaimable(
    server: SeglakeServer, s3: Any, make_bucket: Callable[..., str], rng: random.Random
) -> None:
    """The bucket's versions leave the database with it: no row keeps their
    chunks live any more, which is what segment GC reclaims by."""
    b = make_bucket("space")
    data = rng.randbytes(64 * 1024)
    s3.put_object(Bucket=b, Key="k", Body=data)
    s3.put_object(Bucket=b, Key="k", Body=data[::-1])
    s3.delete_object(Bucket=b, Key="k")
    db = apsw.Connection(str(server.data_dir / "meta.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = db.execute(
            "SELECT manifest FROM versions WHERE bucket = ? AND delete_marker = 0", (b,)
        ).fetchall()
        assert len(rows) == 2
        ours = {
            (c.segment_id, c.offset, c.length, c.digest)
            for (raw,) in rows
            for c in decode_manifest(bytes(raw), path="test", with_meta=False).chunks
        }
        assert len(ours) == 2
        live = collect_live_chunks(db)
        assert all(k in live.by_segment.get(k[0], {}) for k in ours)
        # The server is shared: other modules' deliberate damage (test_copy
        # corrupts a manifest) is already there and is not ours to judge.
        damage_before = set(live.problems)

        s3.delete_bucket(Bucket=b)
        left = db.execute(
            "SELECT (SELECT count(*) FROM versions WHERE bucket = ?),"
            " (SELECT count(*) FROM current WHERE bucket = ?)",
            (b, b),
        ).fetchall()
        assert left == [(0, 0)]
        live = collect_live_chunks(db)
        assert not set(live.problems) - damage_before
        assert not any(k in live.by_segment.get(k[0], {}) for k in ours)
    finally:
        db.close()


def test_minio_py_remove_objects_then_remove_bucket(
    server: SeglakeServer, s3: Any, make_bucket: Callable[..., str], rng: random.Random
) -> None:
    minio = pytest.importorskip("minio")
    from minio.deleteobjects import DeleteObject

    client = minio.Minio(
        f"127.0.0.1:{server.port}",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        secure=False,
    )
    b = make_bucket("minio")
    s3.delete_bucket(Bucket=b)  # minio-py makes it itself
    client.make_bucket(b)
    _fill_with_history(s3, b, rng)
    data = rng.randbytes(3000)
    client.put_object(b, "m/obj", io.BytesIO(data), len(data))
    assert client.get_object(b, "m/obj").read() == data
    names = [o.object_name for o in client.list_objects(b, recursive=True)]
    assert sorted(names) == ["m/obj", "old/one", "old/two"]
    errors = list(client.remove_objects(b, (DeleteObject(n) for n in names)))
    assert errors == []
    assert list(client.list_objects(b, recursive=True)) == []
    client.remove_bucket(b)
    assert not client.bucket_exists(b)
    _assert_gone_and_reusable(s3, b)


def test_js_sdk_v3_empty_then_delete_bucket(
    server: SeglakeServer, s3: Any, make_bucket: Callable[..., str], tmp_path: Path
) -> None:
    node = need("node")
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-s3").is_dir():
        pytest.fail("the JS SDK is not installed: `make test` runs `npm ci` in tests/js")
    b = make_bucket("js")
    s3.delete_bucket(Bucket=b)  # the script creates it
    env = aws_env(tmp_path)
    env["AWS_REGION"] = REGION
    result = run([node, str(JS_DIR / "empty_and_remove.mjs"), server.endpoint, b], env)
    ok(result)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"body": "dir/b.txt#2", "deleted": 3, "status": 204}
    _assert_gone_and_reusable(s3, b)


# ---- ListBuckets paging (the 2024 API) ---------------------------------------------


def test_list_buckets_pages_by_prefix_and_token(
    server: SeglakeServer, s3: Any, rng: random.Random
) -> None:
    prefix = f"lbpage-{rng.randbytes(4).hex()}-"
    made = [f"{prefix}{i}" for i in range(5)]
    for name in made:
        s3.create_bucket(Bucket=name)
    seen: list[str] = []
    kwargs: dict[str, Any] = {"MaxBuckets": 2, "Prefix": prefix}
    for _ in range(10):
        resp = s3.list_buckets(**kwargs)
        assert resp["Prefix"] == prefix
        assert all(b["BucketRegion"] == REGION for b in resp["Buckets"])
        assert len(resp["Buckets"]) <= 2
        seen += [b["Name"] for b in resp["Buckets"]]
        if "ContinuationToken" not in resp:
            break
        kwargs["ContinuationToken"] = resp["ContinuationToken"]
    assert seen == made
    everything = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert set(made) <= set(everything) and everything == sorted(everything)
    assert s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-1")["Buckets"] == []
    unchecked = server.s3(parameter_validation=False)  # boto3 would refuse 0 itself
    for bad in ({"MaxBuckets": 0}, {"MaxBuckets": 10001}, {"ContinuationToken": "%%%"}):
        with pytest.raises(ClientError) as exc:
            unchecked.list_buckets(**bad)
        assert error_of(exc)[:2] == (400, "InvalidArgument")
