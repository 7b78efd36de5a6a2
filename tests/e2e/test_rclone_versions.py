"""Versions as real clients see them: ``rclone lsf --s3-versions`` and
``aws s3api list-object-versions`` against the shared server.

rclone names an old version ``name-vYYYY-MM-DD-HHMMSS-mmm.ext`` (UTC, from the
version's LastModified); the current version keeps its plain name and a key
whose latest version is a delete marker shows only its old versions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import bucket_name
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

REPO = Path(__file__).resolve().parents[2]
AWS_BIN = REPO / ".venv" / "bin" / "aws"
CLI_TIMEOUT_S = 60


def _rclone_or_skip() -> str:
    found = shutil.which("rclone")
    if found is None:
        pytest.skip("rclone is not installed (Debian package `rclone`; CI installs it)")
    return found


def rclone_env(server: SeglakeServer, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "rclone.conf"
    config.write_text("")
    # The AWS SDK inside rclone reads AWS_* (a CA bundle, a profile) from the
    # environment; none of that may leak into a loopback test.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(
        RCLONE_CONFIG=str(config),
        RCLONE_CONFIG_SEG_TYPE="s3",
        RCLONE_CONFIG_SEG_PROVIDER="Other",
        RCLONE_CONFIG_SEG_ENDPOINT=server.endpoint,
        RCLONE_CONFIG_SEG_ACCESS_KEY_ID=ACCESS_KEY,
        RCLONE_CONFIG_SEG_SECRET_ACCESS_KEY=SECRET_KEY,
        RCLONE_CONFIG_SEG_REGION=REGION,
        RCLONE_CONFIG_SEG_FORCE_PATH_STYLE="true",
    )
    return env


def aws_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    return env


def version_name(key: str, last_modified: dt.datetime) -> str:
    """rclone's name for an old version of ``key``."""
    t = last_modified.astimezone(dt.UTC)
    suffix = t.strftime("-v%Y-%m-%d-%H%M%S-") + f"{t.microsecond // 1000:03d}"
    stem, dot, ext = key.rpartition(".")
    return f"{stem}{suffix}.{ext}" if dot and stem else key + suffix


@pytest.fixture
def versioned(s3: Any) -> tuple[str, dict[str, Any]]:
    """A bucket with overwritten, deleted and plain keys; returns its name and
    boto3's ListObjectVersions answer."""
    bucket = bucket_name("rclone-versions")
    s3.create_bucket(Bucket=bucket)
    for key, body in [
        ("doc.txt", b"one"), ("doc.txt", b"two"), ("doc.txt", b"three"),
        ("gone.txt", b"soon deleted"), ("plain", b"p"),
    ]:  # fmt: skip
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        time.sleep(0.01)  # distinct millisecond timestamps, so distinct rclone names
    s3.delete_object(Bucket=bucket, Key="gone.txt")
    return bucket, s3.list_object_versions(Bucket=bucket)


def test_rclone_lists_versions(
    server: SeglakeServer, versioned: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    rclone = _rclone_or_skip()
    bucket, listing = versioned
    env = rclone_env(server, tmp_path)
    expected = {"doc.txt", "plain"}
    for v in listing["Versions"]:
        if not v["IsLatest"]:
            expected.add(version_name(v["Key"], v["LastModified"]))
    assert len(expected) == 5  # two old doc.txt, one old gone.txt, two current
    out = subprocess.run(
        [rclone, "lsf", "--s3-versions", f"seg:{bucket}"],
        env=env, capture_output=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert set(out.stdout.decode().split()) == expected
    # Without --s3-versions only the current, non-deleted objects.
    out = subprocess.run(
        [rclone, "lsf", f"seg:{bucket}"],
        env=env, capture_output=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert sorted(out.stdout.decode().split()) == ["doc.txt", "plain"]
    # An old version can be read back by its version name.
    old = min(
        (v for v in listing["Versions"] if v["Key"] == "doc.txt"), key=lambda v: v["LastModified"]
    )
    out = subprocess.run(
        [
            rclone, "cat", "--s3-versions",
            f"seg:{bucket}/{version_name('doc.txt', old['LastModified'])}",
        ],
        env=env, capture_output=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert out.stdout == b"one"


def test_awscli_list_object_versions(
    server: SeglakeServer, versioned: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    bucket, listing = versioned
    out = subprocess.run(
        [
            str(AWS_BIN), "s3api", "list-object-versions", "--bucket", bucket,
            "--endpoint-url", server.endpoint, "--output", "json",
        ],
        env=aws_env(tmp_path), capture_output=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    got = json.loads(out.stdout)

    def ids(entries: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
        return [(e["Key"], e["VersionId"], e["IsLatest"]) for e in entries]

    assert ids(got["Versions"]) == ids(listing["Versions"])
    assert ids(got["DeleteMarkers"]) == ids(listing["DeleteMarkers"])
    assert [k for k, _, latest in ids(got["Versions"]) if latest] == ["doc.txt", "plain"]
    assert len(got["Versions"]) == 5 and len(got["DeleteMarkers"]) == 1
    doc = [e for e in got["Versions"] if e["Key"] == "doc.txt"]
    assert [e["Size"] for e in doc] == [5, 3, 3]  # three, two, one: newest first
