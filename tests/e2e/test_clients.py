"""Real S3 clients end to end: rclone, s3cmd and Debian's awscli (v2).

Each client runs as a subprocess against the shared server, path style, with
no user configuration (a clean environment: no ``AWS_*``/``RCLONE_*`` from the
caller, ``HOME`` in a temporary directory). Every transfer is checked byte for
byte, against the source tree or through boto3. The binaries are Debian
packages (``.ci/run`` installs them); a missing one skips its tests.

Files are at most 5 MiB except one 20 MiB file for rclone, sent as a single
PUT (``--s3-upload-cutoff 64M``); s3cmd is given a 64 MiB multipart chunk.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

MiB = 1024 * 1024
CLIENT_TIMEOUT_S = 60
AWS_BIN = "/usr/bin/aws"  # Debian's awscli; the venv's `aws` is v1 (tests/e2e/test_awscli.py)

SMALL_TREE = {
    "a.txt": 1000,
    "empty.txt": 0,
    "sub/b.bin": 5 * MiB,
    "sub/deeper/c.txt": 70_000,
    "name with spaces+plus.txt": 123,
}
BIG_FILE = ("big.bin", 20 * MiB)


def need(binary: str) -> str:
    path = binary if os.path.isabs(binary) else shutil.which(binary)
    if not path or not os.access(path, os.X_OK):
        pytest.skip(f"{binary} is not installed (apt-get install rclone s3cmd awscli; see .ci/run)")
    return path


def make_tree(root: Path, rng: random.Random, files: dict[str, int]) -> Path:
    for name, size in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))
    return root


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def remote_digest(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"][len(prefix) :]] = hashlib.sha256(body).hexdigest()
    return out


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(HOME=str(home), **extra)
    return env


def rclone_env(home: Path, endpoint: str) -> dict[str, str]:
    """rclone with one remote ``sl:`` at ``endpoint``, from the environment alone."""
    (home / "rclone.conf").write_text("")
    return clean_env(
        home,
        RCLONE_CONFIG=str(home / "rclone.conf"),
        RCLONE_CONFIG_SL_TYPE="s3",
        RCLONE_CONFIG_SL_PROVIDER="Other",
        RCLONE_CONFIG_SL_ENV_AUTH="false",
        RCLONE_CONFIG_SL_ACCESS_KEY_ID=ACCESS_KEY,
        RCLONE_CONFIG_SL_SECRET_ACCESS_KEY=SECRET_KEY,
        RCLONE_CONFIG_SL_REGION=REGION,
        RCLONE_CONFIG_SL_ENDPOINT=endpoint,
        RCLONE_CONFIG_SL_FORCE_PATH_STYLE="true",
    )


def aws_env(home: Path) -> dict[str, str]:
    """awscli with the test key and no config or credentials file; one attempt."""
    return clean_env(
        home,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )


def s3cmd_config(home: Path, port: int) -> Path:
    """An s3cmd config file for the test key on 127.0.0.1:``port``, path style."""
    cfg = home / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
        f"host_base = 127.0.0.1:{port}\nhost_bucket = 127.0.0.1:{port}\n"
        f"bucket_location = {REGION}\nuse_https = False\nsignature_v2 = False\n"
        "multipart_chunk_size_mb = 64\n"
    )
    return cfg


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


# ---- rclone ---------------------------------------------------------------------


@pytest.fixture
def rclone(
    server: SeglakeServer, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = need("rclone")
    env = rclone_env(tmp_path, server.endpoint)

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        # One attempt: a retry would hide a server error behind a second try.
        flags = ["--s3-upload-cutoff", "64M", "--retries", "1", "--low-level-retries", "1", "-v"]
        return run([binary, *args, *flags], env)

    return call


def test_rclone_copy_sync_check_lsf_delete(
    rclone: Callable[..., subprocess.CompletedProcess[str]],
    s3: Any,
    bucket: str,
    tmp_path: Path,
    rng: random.Random,
) -> None:
    src = make_tree(tmp_path / "src", rng, {**SMALL_TREE, BIG_FILE[0]: BIG_FILE[1]})
    expected = tree_digest(src)

    ok(rclone("copy", str(src), f"sl:{bucket}/copy"))
    assert remote_digest(s3, bucket, "copy/") == expected

    first = ok(rclone("sync", str(src), f"sl:{bucket}/sync"))
    assert first.count("Copied (new)") == len(expected)
    second = ok(rclone("sync", str(src), f"sl:{bucket}/sync"))
    assert "There was nothing to transfer" in second, second
    assert "Copied" not in second
    assert remote_digest(s3, bucket, "sync/") == expected

    check = ok(rclone("check", str(src), f"sl:{bucket}/sync"))
    assert "0 differences found" in check
    assert f"{len(expected)} matching files" in check

    listing = ok(rclone("lsf", "-R", "--files-only", f"sl:{bucket}")).split("\n")
    listed = sorted(line for line in listing if line and not line.startswith("20"))
    assert listed == sorted([f"copy/{k}" for k in expected] + [f"sync/{k}" for k in expected])

    back = tmp_path / "back"
    ok(rclone("copy", f"sl:{bucket}/sync", str(back)))
    assert tree_digest(back) == expected

    ok(rclone("delete", f"sl:{bucket}/copy"))
    assert remote_digest(s3, bucket, "copy/") == {}
    assert remote_digest(s3, bucket, "sync/") == expected


def test_rclone_server_side_copyto(
    rclone: Callable[..., subprocess.CompletedProcess[str]],
    s3: Any,
    bucket: str,
    rng: random.Random,
) -> None:
    data = rng.randbytes(300_000)
    s3.put_object(Bucket=bucket, Key="orig.bin", Body=data)
    out = ok(rclone("copyto", f"sl:{bucket}/orig.bin", f"sl:{bucket}/copied/dup.bin"))
    assert "server-side copy" in out, out
    assert s3.get_object(Bucket=bucket, Key="copied/dup.bin")["Body"].read() == data


# ---- s3cmd ---------------------------------------------------------------------


def test_s3cmd_put_get_ls_sync_del(
    server: SeglakeServer, s3: Any, bucket: str, tmp_path: Path, rng: random.Random
) -> None:
    binary = need("s3cmd")
    cfg = s3cmd_config(tmp_path, server.port)
    env = clean_env(tmp_path)

    def s3cmd(*args: str) -> str:
        return ok(run([binary, "-c", str(cfg), "--no-progress", *args], env))

    src = make_tree(tmp_path / "src", rng, SMALL_TREE)
    expected = tree_digest(src)

    s3cmd("put", str(src / "sub/b.bin"), f"s3://{bucket}/single/b.bin")
    assert remote_digest(s3, bucket, "single/") == {"b.bin": expected["sub/b.bin"]}
    s3cmd("get", f"s3://{bucket}/single/b.bin", str(tmp_path / "b.out"))
    assert (tmp_path / "b.out").read_bytes() == (src / "sub/b.bin").read_bytes()
    assert f"s3://{bucket}/single/b.bin" in s3cmd("ls", f"s3://{bucket}/single/")
    assert f"s3://{bucket}" in s3cmd("ls")

    up = s3cmd("sync", f"{src}/", f"s3://{bucket}/tree/")
    assert up.count("upload:") == len(expected), up
    again = s3cmd("sync", f"{src}/", f"s3://{bucket}/tree/")
    assert "upload:" not in again, again
    assert remote_digest(s3, bucket, "tree/") == expected

    down = tmp_path / "down"
    got = s3cmd("sync", f"s3://{bucket}/tree/", f"{down}/")
    assert got.count("download:") == len(expected), got
    assert tree_digest(down) == expected
    assert "download:" not in s3cmd("sync", f"s3://{bucket}/tree/", f"{down}/")

    s3cmd("del", f"s3://{bucket}/single/b.bin")
    assert remote_digest(s3, bucket, "single/") == {}
    listing = s3cmd("ls", "-r", f"s3://{bucket}")
    assert sorted(
        line.split(f"s3://{bucket}/tree/", 1)[1] for line in listing.splitlines()
    ) == sorted(expected)


# ---- awscli (Debian, v2) --------------------------------------------------------


@pytest.fixture
def aws(server: SeglakeServer, tmp_path: Path) -> Callable[..., str]:
    need(AWS_BIN)
    env = aws_env(tmp_path)

    def call(*args: str) -> str:
        return ok(run([AWS_BIN, "--endpoint-url", server.endpoint, *args], env))

    return call


def test_awscli_download_sync_and_head(
    aws: Callable[..., str], s3: Any, bucket: str, tmp_path: Path, rng: random.Random
) -> None:
    src = make_tree(tmp_path / "src", rng, SMALL_TREE)
    expected = tree_digest(src)
    for name in expected:
        s3.put_object(Bucket=bucket, Key=f"tree/{name}", Body=(src / name).read_bytes())

    aws("s3", "cp", "--no-progress", f"s3://{bucket}/tree/sub/b.bin", str(tmp_path / "b.out"))
    assert (tmp_path / "b.out").read_bytes() == (src / "sub/b.bin").read_bytes()

    down = tmp_path / "down"
    first = aws("s3", "sync", "--no-progress", f"s3://{bucket}/tree", str(down))
    assert first.count("download:") == len(expected), first
    assert tree_digest(down) == expected
    second = aws("s3", "sync", "--no-progress", f"s3://{bucket}/tree", str(down))
    assert "download:" not in second, second

    import json

    head = json.loads(
        aws(
            "s3api",
            "head-object",
            "--bucket",
            bucket,
            "--key",
            "tree/sub/b.bin",
            "--output",
            "json",
        )
    )
    assert head["ContentLength"] == 5 * MiB
    assert head["ETag"] == '"' + hashlib.md5((src / "sub/b.bin").read_bytes()).hexdigest() + '"'


# Known open problem, not a pass: in about 1 run in 7, Debian's awscli 2.9
# does not finish `s3 sync` up although every PutObject of it was answered 200
# (the server's access log shows all of them; the client then sends nothing
# more until the 60 s timeout). Suspected: its vendored botocore's
# Expect: 100-continue handling on a reused connection. Non-strict so that
# the test still runs and checks everything whenever the client completes.
def test_awscli_upload_and_sync_up(
    aws: Callable[..., str], s3: Any, bucket: str, tmp_path: Path, rng: random.Random
) -> None:
    src = make_tree(tmp_path / "src", rng, SMALL_TREE)
    expected = tree_digest(src)
    aws("s3", "cp", "--no-progress", str(src / "sub/b.bin"), f"s3://{bucket}/one/b.bin")
    assert remote_digest(s3, bucket, "one/") == {"b.bin": expected["sub/b.bin"]}
    first = aws("s3", "sync", "--no-progress", str(src), f"s3://{bucket}/tree")
    assert first.count("upload:") == len(expected), first
    second = aws("s3", "sync", "--no-progress", str(src), f"s3://{bucket}/tree")
    assert "upload:" not in second, second
    assert remote_digest(s3, bucket, "tree/") == expected
