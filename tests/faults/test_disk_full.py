"""Disk full: the store refuses writes cleanly and loses nothing.

The data dir lives on a size-limited tmpfs (root only; CI runs as root). A
ballast file takes part of it so that space can be freed again without
touching the store. Two ways to run out: the configured reserve
(``--min-free-bytes``) and the real thing (reserve 0, the kernel says
ENOSPC to segment, manifest and SQLite writes alike).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.harness import SeglakeServer

MiB = 1024 * 1024
TMPFS_SIZE = 48 * MiB
BALLAST = 12 * MiB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {done.stderr.decode(errors='replace')}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_until_refused(
    s3, bucket: str, size: int, limit: int = 200
) -> tuple[dict[str, bytes], ClientError]:  # type: ignore[no-untyped-def]
    stored: dict[str, bytes] = {}
    for i in range(limit):
        body = os.urandom(size)
        try:
            s3.put_object(Bucket=bucket, Key=f"fill-{i:04d}", Body=body)
        except ClientError as exc:
            return stored, exc
        stored[f"fill-{i:04d}"] = body
    raise AssertionError(
        f"{limit} PUTs of {size} bytes were all accepted on a {TMPFS_SIZE}-byte disk"
    )


def check_refusal(exc: ClientError) -> None:
    meta = exc.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 507, exc.response
    assert exc.response["Error"]["Code"] == "InsufficientStorage"


@pytest.mark.parametrize("reserve", ["8MiB", "0"], ids=["reserve", "real-enospc"])
def test_disk_full_refuses_then_recovers(small_disk: Path, reserve: str) -> None:
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as f:
        f.write(os.urandom(BALLAST))
    data = small_disk / "data"
    srv = SeglakeServer(
        data, frontends=1, extra_args=["--min-free-bytes", reserve],
        log_path=small_disk.parent / "server.log",
    )  # fmt: skip
    with srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="full")
        stored, exc = fill_until_refused(s3, "full", 1 * MiB + 17)
        check_refusal(exc)
        assert len(stored) >= 5
        # Further writes keep being refused cleanly (never a 500).
        for i in range(3):
            with pytest.raises(ClientError) as again:
                s3.put_object(Bucket="full", Key=f"again-{i}", Body=os.urandom(2 * MiB))
            check_refusal(again.value)
        # Reads keep working and return exactly what was acknowledged.
        for key, body in stored.items():
            assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]]
        assert listed == sorted(stored)
        # Freeing space lets writes resume without a restart.
        ballast.unlink()
        body = os.urandom(3 * MiB)
        s3.put_object(Bucket="full", Key="after-free", Body=body)
        assert s3.get_object(Bucket="full", Key="after-free")["Body"].read() == body
        stored["after-free"] = body
        assert "Traceback" not in srv.log_tail(400)
    # A restart finds everything acknowledged, byte for byte.
    with SeglakeServer(data, frontends=1, log_path=small_disk.parent / "server2.log") as srv2:
        s3 = srv2.s3()
        for key, body in stored.items():
            assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body
