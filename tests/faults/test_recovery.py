"""Segment rotation, idle sealing and start-up recovery on the real server.

Small ``--segment-max-bytes`` and ``--segment-idle-seal`` make rotation and
sealing happen on little data; the on-disk result is checked with the
segment codec (an operator's audit), and a torn tail left by a crash is cut
on restart without losing any acknowledged object.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from seglake.format import segment as segfmt
from tests.harness import SeglakeServer

SMALL_SEGMENTS = ["--segment-max-bytes", "256KiB", "--segment-idle-seal", "1s"]


def segment_files(data: Path) -> list[Path]:
    return sorted((data / "objects" / "segments").glob("*.seg"))


def audit(path: Path) -> tuple[segfmt.Footer | None, segfmt.ScanResult]:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        footer = segfmt.read_footer(fd, size, path=str(path))
        end = footer.data_end if footer else None
        return footer, segfmt.scan_records(fd, path=str(path), end=end)
    finally:
        os.close(fd)


def db_segments(data: Path) -> dict[int, str]:
    con = sqlite3.connect(f"file:{data / 'meta.db'}?mode=ro", uri=True)
    try:
        return {int(i): str(s) for i, s in con.execute("SELECT id, state FROM segments")}
    finally:
        con.close()


def test_rotation_idle_seal_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    objects: dict[str, bytes] = {}
    with SeglakeServer(data, frontends=1, extra_args=SMALL_SEGMENTS) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="rot")
        for i in range(40):
            body = os.urandom(20_000 + i * 997)
            objects[f"k{i:03d}"] = body
            s3.put_object(Bucket="rot", Key=f"k{i:03d}", Body=body)
        files = segment_files(data)
        assert len(files) >= 3, "256 KiB segments must have rotated"
        # Idle sealing: after >1 s without appends the open segment is sealed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(audit(f)[0] is not None for f in segment_files(data)):
                break
            time.sleep(0.2)
        for f in segment_files(data):
            footer, scan = audit(f)
            assert footer is not None, f"{f.name} not sealed"
            assert scan.error is None and scan.valid_end == footer.data_end
            assert [r.offset for r in scan.records] == [r.offset for r in footer.records]
        for key, body in objects.items():
            assert s3.get_object(Bucket="rot", Key=key)["Body"].read() == body
        assert srv.stop() == 0
    states = db_segments(data)
    assert states and set(states.values()) == {"SEALED"}
    # Restart: everything still there.
    with SeglakeServer(data, frontends=1, extra_args=SMALL_SEGMENTS) as srv:
        s3 = srv.s3()
        for key, body in objects.items():
            assert s3.get_object(Bucket="rot", Key=key)["Body"].read() == body


@pytest.mark.parametrize("tail", ["torn-record", "garbage", "torn-header"])
def test_torn_tail_cut_on_restart(tmp_path: Path, tail: str) -> None:
    data = tmp_path / "data"
    objects: dict[str, bytes] = {}
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="torn")
        for i in range(10):
            body = os.urandom(5_000 + i)
            objects[f"k{i}"] = body
            s3.put_object(Bucket="torn", Key=f"k{i}", Body=body)
        srv.kill()  # kill -9: the open segment stays unsealed
    files = segment_files(data)
    assert len(files) == 1
    seg = files[0]
    acked_size = seg.stat().st_size
    with open(seg, "ab") as f:
        if tail == "torn-record":
            # A record header promising 100 KiB followed by only 10 bytes.
            f.write(segfmt.encode_record_header(b"\x11" * 32, 100_000) + b"x" * 10)
        elif tail == "garbage":
            f.write(os.urandom(777))
        else:
            f.write(b"\x00\x01")  # not even a full record header
        f.flush()
        os.fsync(f.fileno())
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        for key, body in objects.items():
            assert s3.get_object(Bucket="torn", Key=key)["Body"].read() == body
        footer, scan = audit(seg)
        assert footer is not None and footer.data_end == acked_size
        assert scan.error is None
        assert sum(r.rtype == segfmt.TYPE_CHUNK for r in scan.records) == 10
        # New writes go to a new segment and work.
        s3.put_object(Bucket="torn", Key="after", Body=b"fresh")
        assert s3.get_object(Bucket="torn", Key="after")["Body"].read() == b"fresh"
    assert db_segments(data)[int(seg.stem, 16)] == "SEALED"


def test_records_flushed_but_not_committed_are_restated(tmp_path: Path) -> None:
    """A crash between the batch's segment flush and its COMMIT: the records
    are durable, the rows are not. Recovery appends the database's state
    after them, so the version does not exist and a replay of the log
    (rebuild-index --dry-run) gives exactly the database."""
    import json
    import subprocess
    import sys

    from botocore.exceptions import BotoCoreError, ClientError

    data = tmp_path / "data"
    marker = tmp_path / "fired"
    with SeglakeServer(
        data, frontends=1, env={"SEGLAKE_FAILPOINTS": f"before_commit=kill@3:{marker}"}
    ) as srv:
        s3 = srv.s3(max_attempts=1)
        s3.create_bucket(Bucket="crash")  # commit 1
        s3.put_object(Bucket="crash", Key="kept", Body=b"acknowledged")  # commit 2
        with pytest.raises((ClientError, BotoCoreError)):
            s3.put_object(Bucket="crash", Key="lost", Body=b"never acknowledged")
        assert marker.exists()
        deadline = time.monotonic() + 60
        while True:  # the supervisor restarts the writer into recovery
            try:
                s3.put_object(Bucket="crash", Key="after", Body=b"after")
                break
            except (ClientError, BotoCoreError):
                assert time.monotonic() < deadline, srv.log_tail()
                time.sleep(0.2)
        assert s3.get_object(Bucket="crash", Key="kept")["Body"].read() == b"acknowledged"
        with pytest.raises(ClientError):
            s3.head_object(Bucket="crash", Key="lost")
        assert "committed state after them" in srv.log_tail(20_000)
        assert srv.stop() == 0
    out = subprocess.run(
        [sys.executable, "-m", "seglake.cli", "rebuild-index", "--dry-run", "--json",
         "--data-dir", str(data)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["differences"] == 0, doc


def test_uncommitted_kek_is_gone_after_recovery(tmp_path: Path) -> None:
    """The first SSE-S3 PUT stores a KEK (its own batch, commit 2). A crash
    between that batch's flush and COMMIT leaves a key record without a row:
    recovery appends a "gone" record, the retried PUT makes another KEK, and
    a replay of the log gives exactly the database's KEKs."""
    import json
    import subprocess
    import sys

    from botocore.exceptions import BotoCoreError, ClientError

    data = tmp_path / "data"
    marker = tmp_path / "fired"
    with SeglakeServer(
        data, frontends=1, env={"SEGLAKE_FAILPOINTS": f"before_commit=kill@2:{marker}"}
    ) as srv:
        s3 = srv.s3(max_attempts=1)
        s3.create_bucket(Bucket="crash")  # commit 1
        with pytest.raises((ClientError, BotoCoreError)):
            s3.put_object(Bucket="crash", Key="k", Body=b"sealed", ServerSideEncryption="AES256")
        assert marker.exists()
        deadline = time.monotonic() + 60
        while True:  # the supervisor restarts the writer into recovery
            try:
                s3.put_object(
                    Bucket="crash", Key="k", Body=b"sealed", ServerSideEncryption="AES256"
                )
                break
            except (ClientError, BotoCoreError):
                assert time.monotonic() < deadline, srv.log_tail()
                time.sleep(0.2)
        assert s3.get_object(Bucket="crash", Key="k")["Body"].read() == b"sealed"
        assert srv.stop() == 0
    con = sqlite3.connect(f"file:{data / 'meta.db'}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT count(*) FROM sse_keks").fetchone() == (1,)
    finally:
        con.close()
    out = subprocess.run(
        [sys.executable, "-m", "seglake.cli", "rebuild-index", "--dry-run", "--json",
         "--data-dir", str(data)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["differences"] == 0, doc
