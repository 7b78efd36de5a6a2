"""``seglake -mode repl-validate`` on stores the real server built: a data
dir copied with its server stopped is identical to its original; one
object, one tag and one delete changed on the copy give exactly their
lines and exit 1, read from data dirs (one of them live) and from two live
endpoints; ``--deep`` finds a flipped chunk byte."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seglake.format.manifest import decode_manifest
from tests.e2e._helpers import db_rows, flip_chunk_byte
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer

BUCKET = "validate"
TIMEOUT_S = 120


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", "-mode", "repl-validate", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def _tags(*pairs: tuple[str, str]) -> str:
    """The vmeta value as a difference line prints it (no ACL, lock, hold)."""
    return repr((tuple(pairs), None, None, False, ()))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("validate")
    a, b = root / "a", root / "b"
    with SeglakeServer(a, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        k1 = s3.put_object(Bucket=BUCKET, Key="k1", Body=b"one" * 1000)["VersionId"]
        k2 = s3.put_object(Bucket=BUCKET, Key="k2", Body=b"two", Tagging="color=blue")["VersionId"]
        k3 = s3.put_object(Bucket=BUCKET, Key="k 3", Body=b"three")["VersionId"]
    shutil.copytree(a, b, ignore=shutil.ignore_patterns("*.sock", "*.lock", ".seglake-listen"))
    return {"a": a, "b": b, "k1": k1, "k2": k2, "k3": k3}


def test_a_copy_is_identical(stores: dict[str, Any]) -> None:
    out = validate("-data-dir", str(stores["a"]), "-repl-other", str(stores["b"]))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("repl-validate: A and B hold the same state: 1 buckets, "
                                 "3 versions (3 not deleted), 3 current keys")  # fmt: skip
    deep = validate("-data-dir", str(stores["a"]), "-repl-other", str(stores["b"]), "--deep")
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert "; 3 + 3 chunks read and verified" in deep.stdout


def test_changes_are_each_one_line(stores: dict[str, Any]) -> None:
    a, b = stores["a"], stores["b"]
    with SeglakeServer(b, frontends=1) as srv:
        s3 = srv.s3()
        new = s3.put_object(Bucket=BUCKET, Key="k1", Body=b"changed")["VersionId"]
        s3.put_object_tagging(Bucket=BUCKET, Key="k2", VersionId=stores["k2"],
                              Tagging={"TagSet": [{"Key": "color", "Value": "red"}]})  # fmt: skip
        s3.delete_object(Bucket=BUCKET, Key="k 3", VersionId=stores["k3"])
        # In (bucket, key, uid) order: "k 3" sorts before "k1".
        expected = [
            f'version {BUCKET}/"k 3" {stores["k3"]} state: A=ACTIVE B=DELETED',
            f"version {BUCKET}/k1 {new}: only in B (ACTIVE)",
            f"version {BUCKET}/k2 {stores['k2']} vmeta: A={_tags(('color', 'blue'))} "
            f"B={_tags(('color', 'red'))}",
            f'current {BUCKET}/"k 3": A={stores["k3"]} B=none',
            f"current {BUCKET}/k1: A={stores['k1']} B={new}",
        ]

        # B's server is running: read-only, nothing locked or disturbed.
        out = validate("-data-dir", str(a), "-repl-other", str(b))
        assert out.returncode == 1, out.stderr
        assert out.stdout.splitlines() == expected
        assert "repl-validate: 5 differences" in out.stderr
        s3.head_object(Bucket=BUCKET, Key="k1")  # still serving

        with SeglakeServer(a, frontends=1) as srv_a:
            creds = ("-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY)
            out = validate("-repl-remote", srv_a.endpoint, "-repl-other", srv.endpoint, *creds)
            assert out.returncode == 1, out.stderr
            assert out.stdout.splitlines() == expected
            deep = validate("-repl-remote", srv_a.endpoint, "-repl-other", srv.endpoint,
                            *creds, "--deep")  # fmt: skip
            assert deep.returncode == 1 and deep.stdout.splitlines() == expected, deep.stderr

            bad = validate("-repl-remote", srv_a.endpoint, "-repl-other", srv.endpoint,
                           "-repl-access-key", ACCESS_KEY, "-repl-secret-key", "wrong")  # fmt: skip
            assert bad.returncode == 2 and "403 SignatureDoesNotMatch" in bad.stderr


def test_deep_finds_a_flipped_chunk_byte(stores: dict[str, Any]) -> None:
    b = stores["b"]
    (manifest,) = db_rows(b, "SELECT manifest FROM versions WHERE uid = ?", (stores["k2"],))[0]
    chunk = decode_manifest(manifest, path="t").chunks[0]
    flip_chunk_byte(b, chunk, 1)
    shallow = validate("-data-dir", str(stores["a"]), "-repl-other", str(b))
    assert "chunk" not in shallow.stdout  # metadata alone cannot see it
    out = validate("-data-dir", str(stores["a"]), "-repl-other", str(b), "--deep")
    assert out.returncode == 1
    assert (
        f"chunk {chunk.digest.hex()} B: bytes at segment {chunk.segment_id} offset "
        f"{chunk.offset} do not match the BLAKE3 digest"
    ) in out.stdout.splitlines()


def test_usage_errors(tmp_path: Path) -> None:
    out = validate("-data-dir", str(tmp_path))
    assert out.returncode == 2 and "needs -repl-other" in out.stderr
    out = validate("-data-dir", str(tmp_path), "-repl-other", str(tmp_path / "nope"))
    assert out.returncode == 2 and "not a seglake data dir" in out.stderr


def test_a_bootstrapped_site_validates_identical(tmp_path: Path) -> None:
    """Snapshot → bootstrap → repl-validate: the new site holds what its
    source holds (an endpoint compared with a data dir, deep)."""
    src, new = tmp_path / "src", tmp_path / "new"
    creds = ("-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY)
    with SeglakeServer(src, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
        v1 = s3.put_object(Bucket=BUCKET, Key="k", Body=b"one")["VersionId"]
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"two", Tagging="color=blue")
        s3.delete_object(Bucket=BUCKET, Key="k", VersionId=v1)
        s3.put_object(Bucket=BUCKET, Key="marked", Body=b"m")
        s3.delete_object(Bucket=BUCKET, Key="marked")
        s3.put_object(Bucket=BUCKET, Key="secret", Body=b"s" * 5000, ServerSideEncryption="AES256")
        s3.create_bucket(Bucket="validate-locked", ObjectLockEnabledForBucket=True)
        s3.put_object(Bucket="validate-locked", Key="held", Body=b"h",
                      ObjectLockLegalHoldStatus="ON")  # fmt: skip
        s3.create_bucket(Bucket="validate-plain")
        s3.put_object(Bucket="validate-plain", Key="p", Body=b"p1")
        s3.put_object(Bucket="validate-plain", Key="p", Body=b"p2")
        s3.put_object(Bucket="validate-plain", Key="q", Body=b"q")
        s3.delete_object(Bucket="validate-plain", Key="q")

        boot = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "-mode", "repl-bootstrap", "-data-dir", str(new),
             "-repl-remote", srv.endpoint, *creds, "-repl-retry-timeout", "5s"],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        assert boot.returncode == 0, boot.stdout + boot.stderr
        out = validate("-repl-remote", srv.endpoint, "-repl-other", str(new), *creds, "--deep")
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("repl-validate: A and B hold the same state: 3 buckets")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_sites_with_a_conflict_converge_to_identical(tmp_path: Path) -> None:
    """Concurrent writes to one key while the sites cannot reach each other:
    after healing, one version is CONFLICT on both sites, and repl-validate
    (endpoints, deep; a live data dir against an endpoint) finds them
    identical."""
    import time

    pa, pb = _free_port(), _free_port()
    creds = ("--repl-access-key", ACCESS_KEY, "--repl-secret-key", SECRET_KEY)
    fast = ("--repl-interval", "0.2", "--repl-backoff-max", "0.5", *creds)

    def node(name: str, port: int, *extra: str) -> SeglakeServer:
        return SeglakeServer(tmp_path / name, frontends=1,
                             extra_args=["--addr", f"127.0.0.1:{port}", *extra])  # fmt: skip

    url_a, url_b = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}"
    # Apart first: neither site has a remote.
    with node("a", pa) as a:
        sa = a.s3()
        sa.create_bucket(Bucket=BUCKET)
        sa.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sa.put_object(Bucket=BUCKET, Key="x", Body=b"base")
        # B starts from A's snapshot.
        boot = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "-mode", "repl-bootstrap", "-data-dir",
             str(tmp_path / "b"), "-repl-remote", url_a, *creds, "-repl-retry-timeout", "5s"],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        assert boot.returncode == 0, boot.stdout + boot.stderr
        with node("b", pb) as b:
            b.s3().put_object(Bucket=BUCKET, Key="x", Body=b"from b")
        sa.put_object(Bucket=BUCKET, Key="x", Body=b"from a")  # concurrent: same prev
    # Healed: each pulls from the other.
    with (
        node("a", pa, "--repl-remote", url_b, *fast) as a,
        node("b", pb, "--repl-remote", url_a, *fast) as b,
    ):
        deadline = time.monotonic() + 60
        while True:
            out = validate("-repl-remote", url_a, "-repl-other", url_b,
                           "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY)  # fmt: skip
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert out.returncode == 0, out.stdout + out.stderr
        for d in (a.data_dir, b.data_dir):
            assert db_rows(d, "SELECT count(*) FROM versions WHERE state = 'CONFLICT'") == [(1,)]
        deep = validate("-repl-remote", url_a, "-repl-other", url_b, "--deep",
                        "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY)  # fmt: skip
        assert deep.returncode == 0, deep.stdout + deep.stderr
        # Stored CONFLICT/current (a live data dir) against derived (an endpoint).
        mixed = validate("-data-dir", str(a.data_dir), "-repl-other", url_b,
                         "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY)  # fmt: skip
        assert mixed.returncode == 0, mixed.stdout + mixed.stderr
