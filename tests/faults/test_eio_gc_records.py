"""EIO at every call site of segment GC and of the metadata records.

The companion of ``test_eio_all_sites`` (which covers segments, manifests,
recovery and SQLite): together they arm every fsync and write site of the
registry in ``seglake/writer/fileio.py`` (asserted below). Here every
``gc_*`` and ``record*`` site but one (see ``NOT_ARMED``) is armed to fail
once with EIO, on a live server, and a client drives what reaches them:
bucket creation, versioning changes and bucket deletion (bucket records),
overwrites and deletes in a versioning-suspended bucket (state records),
then ``gc-run`` and ``gc-rewrite-run`` under maintenance mode, with new
garbage made whenever a site is still waiting.

Checked: no request and no GC command succeeded while a site failed under
it; the writer was restarted at least once per failed fsync (it exits,
never retries); every acknowledged write reads back byte for byte (an
unacknowledged one may or may not be there); fsck is clean; no traceback.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from seglake.writer.fileio import FSYNC_SITES, SITES, WRITE_SITES
from tests.faults import test_eio_all_sites
from tests.faults.figures import report
from tests.faults.test_gc_crash import cli
from tests.faults.util import processes_by_name, status_retry
from tests.harness import SeglakeServer

BUCKET = "eio-gc"
SERVER_ARGS = ["--segment-max-bytes", "48KiB", "--restart-backoff-max", "0.2s"]
GC_SITES = sorted(s for s in SITES if s.startswith("gc_"))
# Run at every writer start, not on behalf of a request (none since format 2).
STARTUP: set[str] = set()
DEADLINE_S = 200.0
MAX_ROUNDS = 60


def _fired(markers: Path) -> set[str]:
    return {p.name for p in markers.iterdir()}


def test_every_fsync_and_write_site_is_armed_by_one_of_the_eio_tests() -> None:
    armed = set(GC_SITES) | set(test_eio_all_sites.SITES) | test_eio_all_sites.ELSEWHERE
    assert armed >= FSYNC_SITES | WRITE_SITES, sorted((FSYNC_SITES | WRITE_SITES) - armed)


def test_eio_at_every_gc_and_record_site(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = ",".join(f"{s}=eio:{markers / s}" for s in GC_SITES)
    data_dir = tmp_path / "data"
    # key -> every content it may hold (None: deleted); one entry once acked
    expected: dict[str, set[bytes | None]] = {}
    violations: list[str] = []
    requests = refused = gc_runs = 0
    srv = SeglakeServer(
        data_dir, frontends=1, extra_args=SERVER_ARGS, env={"SEGLAKE_FAILPOINTS": spec}
    )
    try:
        srv.start()
        s3 = srv.s3(max_attempts=1, read_timeout=20)
        deadline = time.monotonic() + DEADLINE_S

        def attempt(fn: Any) -> bool:
            """Run one request or command; a site firing under a success is a violation."""
            nonlocal requests, refused
            requests += 1
            before = _fired(markers)
            try:
                ok = fn() is not False
            except Exception:
                ok = False
            new = (_fired(markers) - before) - STARTUP
            if ok and new:
                violations.append(f"succeeded although {sorted(new)} failed under it")
            if not ok:
                refused += 1
                time.sleep(0.1)  # the writer is restarting
            return ok

        def until_ok(fn: Any, what: str) -> None:
            while not attempt(fn):
                assert time.monotonic() < deadline, f"{what} never succeeded\n{srv.log_tail()}"

        def put(key: str, body: bytes) -> None:
            ok = attempt(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=body))
            prior = expected.get(key, {None})
            expected[key] = {body} if ok else prior | {body}

        def delete(key: str) -> None:
            ok = attempt(lambda: s3.delete_object(Bucket=BUCKET, Key=key))
            expected[key] = {None} if ok else expected.get(key, {None}) | {None}

        def gc(command: str) -> bool:
            nonlocal gc_runs
            gc_runs += 1
            out = cli(data_dir, command, "--json")
            return out.returncode == 0 and json.loads(out.stdout).get("status") == "ok"

        until_ok(lambda: s3.create_bucket(Bucket=BUCKET), "create bucket")
        until_ok(
            lambda: s3.put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}
            ),
            "suspend versioning",
        )
        rounds = 0
        while not set(GC_SITES) <= _fired(markers):
            rounds += 1
            assert rounds <= MAX_ROUNDS and time.monotonic() < deadline, (
                f"never fired: {sorted(set(GC_SITES) - _fired(markers))}"
            )
            # Garbage: whole dead segments, mostly dead ones, DELETED rows.
            for i in range(24):
                key = f"r{rounds:02d}/{i:02d}"
                put(key, os.urandom(6000 + i * 37))
                if i % 3:
                    put(key, os.urandom(900 + i))  # overwrite: a DELETED row
                if i % 4:
                    delete(key)
            spare = f"spare-{rounds}"
            if attempt(lambda b=spare: s3.create_bucket(Bucket=b)):
                attempt(lambda b=spare: s3.delete_bucket(Bucket=b))  # a record removed
            until_ok(lambda: cli(data_dir, "maintenance", "enable").returncode == 0, "quiesce")
            attempt(lambda: gc("gc-run"))
            attempt(lambda: gc("gc-rewrite-run"))
            until_ok(lambda: cli(data_dir, "maintenance", "disable").returncode == 0, "resume")

        fired = _fired(markers)
        writer = processes_by_name(status_retry(srv, timeout=30))["writer"]
        restarts = int(writer["restarts"])
        fsync_fired = len(FSYNC_SITES & fired)
        # Once more with nothing failing: GC completes and fsck is clean.
        until_ok(lambda: cli(data_dir, "maintenance", "enable").returncode == 0, "quiesce")
        assert gc("gc-run") and gc("gc-rewrite-run")
        fsck = cli(data_dir, "fsck", "--json")
        assert fsck.returncode == 0 and json.loads(fsck.stdout)["clean"], fsck.stdout[-2000:]
        until_ok(lambda: cli(data_dir, "maintenance", "disable").returncode == 0, "resume")
        s3 = srv.s3(max_attempts=5)
        verified = 0
        for key, allowed in expected.items():
            try:
                got: bytes | None = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "NoSuchKey":
                    raise
                got = None
            assert got in allowed, f"{key}: {None if got is None else len(got)} B not allowed"
            verified += 1
        log = srv.log_tail(100_000)
        srv.stop()
    finally:
        srv.close()
    report(
        "eio-gc-record-sites",
        sites=len(GC_SITES),
        sites_fired=len(set(GC_SITES) & fired),
        writer_restarts=restarts,
        requests=requests,
        refused=refused,
        gc_commands=gc_runs,
        keys_verified=verified,
    )
    assert not violations, violations
    assert restarts >= fsync_fired, (restarts, fsync_fired)
    at = log.find("Traceback")
    assert at < 0, f"an EIO surfaced as a traceback:\n{log[max(0, at - 300) : at + 2500]}"
