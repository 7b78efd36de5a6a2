"""Replication from an https:// site whose certificate a private CA signed:
``--repl-ca-file`` (continuous) and ``-repl-ca-file`` (one-shot) trust it;
without the flag the task stops on a TLS error instead of retrying."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3

from tests.e2e.test_replication import COMMON, free_port, node, running, seglake
from tests.e2e.test_tls import Pki, TlsServer
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

WAIT_S = 40.0


def _s3(srv: SeglakeServer, ca: Path) -> Any:
    return boto3.client(
        "s3", endpoint_url=srv.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION, verify=str(ca),
    )  # fmt: skip


def _task(srv: SeglakeServer, want: str) -> dict[str, Any]:
    """The pull task once its state is ``want`` (bounded wait)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        (task,) = srv.status()["replication"]
        if task["state"] == want:
            return dict(task)
        assert time.monotonic() < deadline, task
        time.sleep(0.3)


def _objects(srv: SeglakeServer, bucket: str) -> dict[str, bytes]:
    s3 = srv.s3(max_attempts=3)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_pull_from_https_site_needs_the_ca_file(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    pki.issue(cert, key)
    pa, pb = free_port(), free_port()
    a = TlsServer(
        tmp_path / "a", frontends=1,
        extra_args=["--addr", f"127.0.0.1:{pa}", "--tls", "--tls-cert", str(cert),
                    "--tls-key", str(key), *COMMON],
    )  # fmt: skip
    remote = f"https://127.0.0.1:{pa}"
    want = {"k1": b"one" * 1000, "dir/k2": b"two"}
    untrusting = node(tmp_path, "b", pb, "--repl-remote", remote)
    with running(a):
        s3a = _s3(a, pki.ca_path)
        s3a.create_bucket(Bucket="tls")
        for k, v in want.items():
            s3a.put_object(Bucket="tls", Key=k, Body=v)
        with running(untrusting):
            task = _task(untrusting, "stopped")
            assert "TLSError" in task["last_error"], task
            # Stopped at once: a certificate that is not trusted is not retried.
            assert task["failures"] == 1 and task["entries"] == 0, task
            assert untrusting.s3().list_buckets()["Buckets"] == []
        trusting = SeglakeServer(
            untrusting.data_dir, frontends=1,
            extra_args=[*untrusting.extra_args, "--repl-ca-file", str(pki.ca_path)],
        )  # fmt: skip
        with running(trusting):
            deadline = time.monotonic() + WAIT_S
            while True:
                buckets = [b["Name"] for b in trusting.s3().list_buckets()["Buckets"]]
                if buckets == ["tls"] and _objects(trusting, "tls") == want:
                    break
                assert time.monotonic() < deadline, trusting.status()["replication"]
                time.sleep(0.3)
            task = _task(trusting, "running")
            assert task["last_error"] in ("", None), task
        # One-shot, seed spelling: the same trust from -repl-ca-file.
        c = tmp_path / "c"
        base = ["-mode", "repl-pull", "-data-dir", str(c), "-repl-remote", remote,
                "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY,
                "-repl-retry-timeout", "5s"]  # fmt: skip
        refused = seglake(*base)
        assert refused.returncode == 1 and "TLSError" in refused.stdout + refused.stderr, (
            refused.stdout + refused.stderr
        )
        out = seglake(*base, "-repl-ca-file", str(pki.ca_path))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "backlog 0" in out.stdout, out.stdout
        missing = seglake(*base, "-repl-ca-file", str(tmp_path / "nope.pem"))
        assert missing.returncode == 2 and "repl-ca-file" in missing.stderr, missing.stderr
