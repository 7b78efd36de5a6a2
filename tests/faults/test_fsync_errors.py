"""A failed fsync is never retried and trusted (SPEC §4.5).

EIO is injected once (a marker file keeps it from firing again after the
restart) at each durability call site of the writer. The PUT caught by it
must not be acknowledged, the writer must exit and be restarted by the
supervisor, service must resume, and every acknowledged object must read
back byte for byte (the refused one is absent or complete, never partial).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

from tests.harness import SeglakeServer

# The barrier's segment flush, and the instant before its COMMIT (since
# segment format 2 there is no manifest file or directory fsync).
SITES = ["segment_fsync", "before_commit"]


@pytest.mark.parametrize("site", SITES)
def test_fsync_eio_stops_writer_and_loses_nothing(tmp_path: Path, site: str) -> None:
    marker = tmp_path / f"{site}.fired"
    env = {"SEGLAKE_FAILPOINTS": f"{site}=eio@6:{marker}"}
    acked: dict[str, bytes] = {}
    refused: dict[str, bytes] = {}
    with SeglakeServer(tmp_path / "data", frontends=1, env=env) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="eio")  # one commit (no segment fsync, no manifest)
        writer_before = srv.refresh_pids()["writer"]
        for i in range(12):
            body = os.urandom(3000 + i)
            key = f"k{i:02d}"
            try:
                s3.put_object(Bucket="eio", Key=key, Body=body)
                acked[key] = body
            except (ClientError, ConnectionError, ReadTimeoutError):
                refused[key] = body
                # The writer is restarting: wait until writes work again.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        s3.put_object(Bucket="eio", Key=f"probe{i}", Body=b"p")
                        acked[f"probe{i}"] = b"p"
                        break
                    except (ClientError, ConnectionError, ReadTimeoutError):
                        time.sleep(0.2)
        assert marker.exists(), f"failpoint {site} never fired"
        assert len(refused) == 1, f"expected exactly one refused PUT, got {sorted(refused)}"
        procs = {p["role"]: p for p in srv.status()["processes"]}
        assert procs["writer"]["restarts"] >= 1 and procs["writer"]["pid"] not in writer_before
        assert procs["writer"]["last_exit"] == 70  # WriterFatal, not a crash
        for key, body in acked.items():
            assert s3.get_object(Bucket="eio", Key=key)["Body"].read() == body
        for key, body in refused.items():
            try:
                got = s3.get_object(Bucket="eio", Key=key)["Body"].read()
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "NoSuchKey"
            else:
                assert got == body  # committed before the failure: complete, never partial
        assert "writer cannot guarantee durability" in srv.log_tail(
            300
        ) or "commit failed" in srv.log_tail(300)
