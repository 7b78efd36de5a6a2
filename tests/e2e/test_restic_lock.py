"""restic (a real backup client) backs up to an Object Lock bucket and restores byte for byte.

The bucket has Object Lock with a default GOVERNANCE retention, so every
object restic writes is locked the moment it lands; the test then checks
that the pack files really are locked (delete by version id refused) and
that a restore gives back exactly the files. Skipped when restic is not
installed (``apt-get install restic``; ``.ci/run`` does it).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import status_and_code
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer

BUCKET = "restic-vault"


def _restic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("restic")
    assert binary is not None
    return subprocess.run(
        [binary, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_restic_backup_and_restore_on_a_lock_bucket(tmp_path: Path) -> None:
    if shutil.which("restic") is None:
        pytest.skip("restic is not installed (apt-get install restic; see .ci/run)")
    with SeglakeServer(tmp_path / "data", frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=BUCKET,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {
                "DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}},
        )  # fmt: skip
        src = tmp_path / "src"
        rng = random.Random(7)
        for i in range(12):
            sub = src / f"dir{i % 3}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"file{i}.bin").write_bytes(rng.randbytes(rng.randint(0, 3 * 1024 * 1024)))
        (src / "empty").write_bytes(b"")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
            "RESTIC_REPOSITORY": f"s3:{srv.endpoint}/{BUCKET}",
            "RESTIC_PASSWORD": "correct horse battery staple",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for args in (("init",), ("backup", str(src)), ("check",)):
            out = _restic(env, *args)
            assert out.returncode == 0, f"restic {args[0]}: {out.stdout}\n{out.stderr}"
        back = tmp_path / "restored"
        out = _restic(env, "restore", "latest", "--target", str(back))
        assert out.returncode == 0, out.stderr
        restored_root = back / src.relative_to("/")
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            assert (restored_root / path.relative_to(src)).read_bytes() == path.read_bytes()
        # What restic wrote is locked: a pack file's version cannot be deleted.
        listing = s3.list_object_versions(Bucket=BUCKET, Prefix="data/")["Versions"]
        assert listing
        version = listing[0]
        head = s3.head_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
        assert head["ObjectLockMode"] == "GOVERNANCE"
        with pytest.raises(ClientError) as info:
            s3.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
        assert status_and_code(info) == (403, "AccessDenied")
