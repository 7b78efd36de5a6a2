"""A scheduled lifecycle run killed half-way (kill -9 of the maintenance
process, then of the writer) is finished by the next run: every expired key
ends with exactly one delete marker over its one version, and the objects no
rule matches are untouched byte for byte."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e._helpers import db_rows
from tests.harness import SeglakeServer, server_fixture

KEYS = 1500  # expired keys per bucket: 1500 versions + 1500 delete markers each
KEEP = 20
RATE = 300  # actions/s: a pass over one bucket takes ~5 s, long enough to kill it in
WAIT_S = 90.0  # bound on every wait below

csrv = server_fixture(
    "--lifecycle-interval", "1", "--lifecycle-actions-per-sec", str(RATE),
    "--lifecycle-day-seconds", "1",
)  # fmt: skip


def _fill(s3: Any, bucket: str) -> dict[str, str]:
    """KEYS objects under x/ (the rule's prefix) and KEEP others; the digests
    of the others."""
    s3.create_bucket(Bucket=bucket)
    keep: dict[str, str] = {}

    def put(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"x/{i:05d}", Body=f"expire {i}".encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(KEYS)))
    for i in range(KEEP):
        body = os.urandom(1000 + i)
        s3.put_object(Bucket=bucket, Key=f"keep/{i:02d}", Body=body)
        keep[f"keep/{i:02d}"] = hashlib.sha256(body).hexdigest()
    return keep


def _markers(srv: SeglakeServer, bucket: str) -> int:
    rows = db_rows(
        srv.data_dir,
        "SELECT count(*) FROM versions WHERE bucket = ? AND delete_marker = 1 "
        "AND state != 'DELETED'",
        (bucket,),
    )
    return int(rows[0][0])


def _kill_mid_run(srv: SeglakeServer, bucket: str, role: str) -> int:
    """Wait until the scheduled run has applied some but not all of its
    actions, then kill -9 ``role``; the count of markers at that moment."""
    pid = srv.refresh_pids()[role][0]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        n = _markers(srv, bucket)
        if n >= 200:
            os.kill(pid, signal.SIGKILL)
            return n
        time.sleep(0.05)
    pytest.fail(f"the scheduled lifecycle run never started on {bucket}")


def _wait_done(srv: SeglakeServer, bucket: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if _markers(srv, bucket) >= KEYS:
            time.sleep(2.5)  # one more scheduled run, which must change nothing
            return
        time.sleep(0.2)
    pytest.fail(f"lifecycle never finished {bucket}: {_markers(srv, bucket)} of {KEYS}")


def _check(srv: SeglakeServer, s3: Any, bucket: str, keep: dict[str, str]) -> None:
    rows = db_rows(
        srv.data_dir,
        "SELECT key, delete_marker FROM versions WHERE bucket = ? AND state != 'DELETED'",
        (bucket,),
    )
    markers = Counter(k for k, m in rows if m)
    objects = Counter(k for k, m in rows if not m)
    expired = {f"x/{i:05d}" for i in range(KEYS)}
    assert set(markers) == expired
    assert set(markers.values()) == {1}, "a key got more than one delete marker"
    assert {k: n for k, n in objects.items() if k in expired} == dict.fromkeys(expired, 1)
    current = db_rows(
        srv.data_dir,
        "SELECT c.key, v.delete_marker FROM current c JOIN versions v ON v.id = c.version "
        "WHERE c.bucket = ?",
        (bucket,),
    )
    assert {k for k, m in current if m} == expired
    for key, digest in keep.items():
        assert hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest() == (
            digest
        )
        assert objects[key] == 1 and key not in markers


def _expire(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [{
            "ID": "crash", "Status": "Enabled", "Filter": {"Prefix": "x/"},
            "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)},
        }]},
    )  # fmt: skip


@pytest.mark.parametrize("role", ["maintenance", "writer"])
def test_killed_run_is_finished_by_the_next(csrv: SeglakeServer, role: str) -> None:
    s3 = csrv.s3(max_attempts=5)
    bucket = f"crash-{role}"
    keep = _fill(s3, bucket)
    _expire(s3, bucket)
    at_kill = _kill_mid_run(csrv, bucket, role)
    assert at_kill < KEYS, "the run finished before it could be killed"
    _wait_done(csrv, bucket)
    _check(csrv, s3, bucket, keep)
    runs = [r for r in csrv.status()["runs"] if r["mode"] == "lifecycle-run"]
    assert runs and runs[0]["status"] == "ok"
    assert csrv.status()["schedules"]["lifecycle_interval"] == 1
