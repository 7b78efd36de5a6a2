"""``seglake bucket delete NAME --force`` (the seed's ``segctl bucket delete
--force``) against the real server and offline: every version, delete marker
and open upload goes through the writer, then the bucket; other buckets keep
every byte."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import db_rows
from tests.e2e.test_ops_toolbox import cli, cli_json
from tests.harness import SeglakeServer


def fill(s3: Any, data: Path, bucket: str, keys: int) -> dict[str, Any]:
    """Versions, overwrites, delete markers and two open uploads in ``bucket``."""
    s3.create_bucket(Bucket=bucket)

    def one(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"k/{i:04d}", Body=b"v1-%d" % i)
        if i % 3 == 0:
            s3.put_object(Bucket=bucket, Key=f"k/{i:04d}", Body=b"v2-%d" % i)
        if i % 5 == 0:
            s3.delete_object(Bucket=bucket, Key=f"k/{i:04d}")

    # boto3 clients are thread-safe; the writer groups the concurrent puts.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(keys)))
    uploads = [
        s3.create_multipart_upload(Bucket=bucket, Key=f"mpu/{n}")["UploadId"] for n in range(2)
    ]
    s3.upload_part(Bucket=bucket, Key="mpu/0", UploadId=uploads[0], PartNumber=1, Body=b"p" * 1024)
    versions = db_rows(data, "SELECT count(*) FROM versions WHERE bucket = ?", (bucket,))[0][0]
    return {"versions": versions, "uploads": uploads}


def test_force_delete_live(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        filled = fill(s3, data, "doomed", 1200)  # more than one DeleteObjects batch
        # 1200 puts + 400 overwrites + 240 delete markers
        assert filled["versions"] == 1840
        s3.create_bucket(Bucket="keeper")
        s3.put_object(Bucket="keeper", Key="stay", Body=b"still here")

        plain = cli(data, "bucket", "delete", "doomed")
        assert plain.returncode == 1 and "BucketNotEmpty" in plain.stderr

        # Maintenance mode refuses it like any client's delete, and changes nothing.
        assert cli(data, "maintenance", "enable").returncode == 0
        refused = cli(data, "bucket", "delete", "doomed", "--force")
        assert refused.returncode == 1 and "MaintenanceMode" in refused.stderr
        assert db_rows(data, "SELECT count(*) FROM versions WHERE bucket = 'doomed' "
                       "AND state != 'DELETED'")[0][0] == 1840  # fmt: skip
        assert cli(data, "maintenance", "disable").returncode == 0

        done = cli_json(data, "bucket", "delete", "doomed", "--force")
        assert done["deleted"] is True and done["via"] == "server"
        assert done["versions_deleted"] == 1840 and done["uploads_aborted"] == 2
        assert done["rounds"] == 1 and done["errors"] == []

        with pytest.raises(ClientError) as err:
            s3.head_bucket(Bucket="doomed")
        assert err.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
        assert db_rows(data, "SELECT count(*) FROM versions WHERE bucket = 'doomed'") == [(0,)]
        assert db_rows(data, "SELECT count(*) FROM uploads WHERE bucket = 'doomed'") == [(0,)]
        # The name is free again, and the new bucket is empty.
        s3.create_bucket(Bucket="doomed")
        assert "Versions" not in s3.list_object_versions(Bucket="doomed")
        assert s3.list_multipart_uploads(Bucket="doomed").get("Uploads", []) == []
        assert s3.get_object(Bucket="keeper", Key="stay")["Body"].read() == b"still here"
        runs = db_rows(data, "SELECT report FROM ops_runs WHERE mode = 'buckets'")
        assert any(json.loads(r[0]).get("force") is True for r in runs)

        missing = cli(data, "bucket", "delete", "never-was", "--force")
        assert missing.returncode == 1 and "NoSuchBucket" in missing.stderr


def test_force_delete_offline_and_seed_spelling(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        filled = fill(s3, data, "old", 30)
        s3.create_bucket(Bucket="keeper")
        s3.put_object(Bucket="keeper", Key="stay", Body=b"kept offline too")
    done = cli_json(
        data, "-mode", "buckets", "-buckets-action", "delete", "-bucket", "old", "-force"
    )
    assert done["via"] == "offline" and done["deleted"] is True
    assert done["versions_deleted"] == filled["versions"] and done["uploads_aborted"] == 2
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert names == ["keeper"]
        assert s3.get_object(Bucket="keeper", Key="stay")["Body"].read() == b"kept offline too"
