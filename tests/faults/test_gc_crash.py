"""kill -9 in the middle of gc-run and gc-rewrite-run (SPEC §3, §8).

Each case arms one failpoint of the GC path (``SEGLAKE_FAILPOINTS``, with a
marker so it fires once even across the restart), runs the command under
maintenance mode, and checks: the killed process is restarted, ``fsck`` is
clean, every live object (plain, copied, an open upload's part) reads back
byte for byte, and running the command again completes the job.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.faults.util import processes_by_name, status_retry, wait_for, wait_restarted
from tests.harness import SeglakeServer

KiB = 1024
CLI_TIMEOUT_S = 120
SERVER_ARGS = ["--segment-max-bytes", "128KiB"]
BUCKET = "gc-crash"


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def body_for(key: str, size: int) -> bytes:
    return random.Random(key).randbytes(size)


def segment_bytes(data_dir: Path) -> int:
    seg_dir = data_dir / "objects" / "segments"
    return sum(p.stat().st_size for p in seg_dir.iterdir() if p.suffix == ".seg")


class Dataset:
    """Objects of which every 4th of the first half survives (segments for
    gc-rewrite), a copy whose source is deleted, and an open multipart
    upload; the second half dies entirely (segments for gc-run)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.kept: dict[str, bytes] = {}
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
        for i in range(64):
            key = f"o/{i:03d}"
            data = body_for(key, 20 * KiB + i)
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            if i % 4 == 0 and i < 24:
                self.kept[key] = data
            if i == 10:
                s3.copy_object(Bucket=BUCKET, Key="copy", CopySource={"Bucket": BUCKET, "Key": key})
                self.kept["copy"] = data
            if i == 20:
                self.part = body_for("part", 20 * KiB)
                self.upload = s3.create_multipart_upload(Bucket=BUCKET, Key="open")["UploadId"]
                self.etag = s3.upload_part(
                    Bucket=BUCKET, Key="open", UploadId=self.upload, PartNumber=1, Body=self.part
                )["ETag"]
        for i in range(64):
            if f"o/{i:03d}" not in self.kept:
                s3.delete_object(Bucket=BUCKET, Key=f"o/{i:03d}")

    def verify(self) -> None:
        for key, data in self.kept.items():
            got = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert got == data, key
        parts = self.s3.list_parts(Bucket=BUCKET, Key="open", UploadId=self.upload)["Parts"]
        assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
            (1, self.etag, len(self.part))
        ]

    def complete_upload(self) -> None:
        self.s3.complete_multipart_upload(
            Bucket=BUCKET, Key="open", UploadId=self.upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": self.etag}]},
        )  # fmt: skip
        assert self.s3.get_object(Bucket=BUCKET, Key="open")["Body"].read() == self.part


def fsck_clean(data_dir: Path) -> None:
    out = cli(data_dir, "fsck", "--json")
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["clean"], doc["errors"]


CASES = [
    # (process killed, command, failpoint spec)
    ("writer", "gc-run", "gc_drop_committed=kill"),
    ("writer", "gc-run", "gc_segment_unlinked=kill@2"),
    ("writer", "gc-rewrite-run", "gc_rewrite_appended=kill@2"),
    ("writer", "gc-rewrite-run", "applied.gc_repoint=kill@2"),
    ("writer", "gc-rewrite-run", "gc_repoint_committed=kill@2"),
    ("writer", "gc-rewrite-run", "gc_repoint_committed=kill@1"),
    # GC's file operations (fileio sites; the records it appends go
    # through the committer like any batch's: test_power_loss_gc cuts
    # power in them).
    ("writer", "gc-run", "gc_segment.unlink.done=kill@2"),
    ("maintenance", "gc-run", "relay.gc_delete_segments=kill"),
    ("maintenance", "gc-rewrite-run", "relayed.gc_rewrite_chunks=kill@3"),
]


@pytest.mark.parametrize(("victim", "command", "spec"), CASES)
def test_kill_during_gc(tmp_path: Path, victim: str, command: str, spec: str) -> None:
    marker = tmp_path / "fired"
    env = {"SEGLAKE_FAILPOINTS": f"{spec}:{marker}"}
    with SeglakeServer(tmp_path / "data", frontends=1, extra_args=SERVER_ARGS, env=env) as srv:
        data = Dataset(srv.s3())
        before = segment_bytes(srv.data_dir)
        old_pid = int(processes_by_name(status_retry(srv))[victim]["pid"])
        assert cli(srv.data_dir, "maintenance", "enable").returncode == 0

        out = cli(srv.data_dir, command)
        assert marker.exists(), f"failpoint {spec} never fired:\n{out.stdout}\n{out.stderr}"
        assert out.returncode != 0, out.stdout
        wait_restarted(srv, victim, old_pid, timeout=30)
        # A restarted writer comes back quiesced: maintenance mode survives.
        # (Alive is not yet answering: status shows the store once it does.)
        store = wait_for(
            lambda: srv.status()["store"].get("maintenance") and srv.status()["store"],
            timeout=30,
            interval=0.2,
            what="the restarted writer to answer status",
        )
        assert store["maintenance"]["state"] == "quiesced"

        fsck_clean(srv.data_dir)
        data.verify()
        # Running it again finishes the job.
        again = cli(srv.data_dir, command, "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout)["status"] == "ok"
        for follow_up in ("gc-run", "gc-rewrite-run"):
            out = cli(srv.data_dir, follow_up, "--json")
            assert out.returncode == 0, out.stdout + out.stderr
        fsck_clean(srv.data_dir)
        assert segment_bytes(srv.data_dir) < before / 2
        assert cli(srv.data_dir, "maintenance", "disable").returncode == 0
        data.verify()
        data.complete_upload()
        srv.s3().put_object(Bucket=BUCKET, Key="after", Body=b"written after the crash")
        fsck_clean(srv.data_dir)
