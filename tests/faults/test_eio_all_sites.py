"""EIO at every fsync and write call site of the writer (SPEC §4.5).

The registry in ``seglake/writer/fileio.py`` lists every site; this test
arms *all* fsync/directory-fsync sites and all write sites (plus file and
directory creation and the clean-up after a failed write) at once, each to
fail once with EIO (a marker file keeps it from firing again), on a fresh
data dir, and drives a sequential client until every marker exists. Four
recovery-only sites need a damaged store to run at all; the test makes one
(a torn segment header file; a torn tail after the committed end; a flipped
byte in a committed record) and kills the writer so recovery meets it.

Checked, per request: a request during which a commit-path site failed was
not acknowledged. Overall: every site fired (100% of the registry), the
writer was restarted at least once per failed fsync (it exits and never
retries), service resumed, every acknowledged object reads back byte for
byte — except the one whose bytes the test itself corrupted, which must
fail (500), never return wrong bytes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from seglake.format.manifest import ChunkRef, decode_manifest
from seglake.writer.fileio import FSYNC_SITES, WRITE_SITES
from tests.faults.figures import report
from tests.faults.util import processes_by_name, sigkill, status_retry, wait_for
from tests.harness import SeglakeServer

BUCKET = "eio-sites"
SERVER_ARGS = ["--segment-max-bytes", "40KiB", "--restart-backoff-max", "0.2s"]
# Need a damaged store; provoked explicitly below.
RECOVERY_DAMAGE = {
    "recovery.dir_fsync",
    "recovery.fsync_damaged",
    "recovery.unlink_torn",
    "recovery.truncate",
}
# Run while the writer starts, not on behalf of a request.
STARTUP = {"dir.fsync", "recovery.fsync", "recovery.footer_write", *RECOVERY_DAMAGE}
# Beyond writes and fsyncs: the creates, directory creation and the
# clean-up calls that run right after a failed write (a failure there too
# must stop the writer, never leave a half-cut segment in use).
OTHER_SITES = {
    "segment.create",
    "segment.create_cleanup",
    "segment.append_cutback",
    "recovery.unlink_torn",
    "recovery.truncate",
}
NOT_FATAL: set[str] = set()
# Not reachable from client requests: recovery's corrections need records a
# crash left flushed but uncommitted (test_recovery provokes that state),
# and seglake upgrade runs offline (an error there fails the command, which
# is restartable: tests/e2e/test_upgrade.py).
ELSEWHERE = {"recovery.append", "upgrade.dir_fsync", "upgrade.unlink", "upgrade.rmdir"}
# Segment GC and metadata records have their own test (test_eio_gc_records),
# which also checks that the two together arm every fsync and write site.
SITES = sorted(
    s
    for s in FSYNC_SITES | WRITE_SITES | OTHER_SITES
    if not s.startswith(("gc_", "record")) and s not in ELSEWHERE
)
DEADLINE_S = 150.0
MAX_REQUESTS = 1500


def _delete_ghosts(s3: Any, n: int) -> None:
    keys = [{"Key": f"ghost{n:04d}-{i}"} for i in range(5)]
    out = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    if out.get("Errors") or len(out.get("Deleted", [])) != len(keys):
        raise RuntimeError(f"DeleteObjects refused: {out.get('Errors')}")


def _fired(markers: Path) -> set[str]:
    return {p.name for p in markers.iterdir()}


def test_eio_at_every_fsync_and_write_site(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = ",".join(f"{s}=eio:{markers / s}" for s in SITES)
    data_dir = tmp_path / "data"
    acked: dict[str, bytes] = {}
    violations: list[str] = []
    requests = refused = 0
    sacrifice: str | None = None
    srv = SeglakeServer(
        data_dir, frontends=1, extra_args=SERVER_ARGS, env={"SEGLAKE_FAILPOINTS": spec}
    )
    try:
        srv.start()
        s3 = srv.s3(max_attempts=1, read_timeout=20)
        deadline = time.monotonic() + DEADLINE_S

        def request(
            fn: Any, key: str | None = None, body: bytes = b"", *, check: bool = True
        ) -> bool:
            nonlocal requests, refused
            requests += 1
            before = _fired(markers)
            try:
                fn()
                ok = True
            except Exception:
                ok = False
                refused += 1
            new = (_fired(markers) - before) - STARTUP - NOT_FATAL
            if ok and new and check:
                violations.append(f"request acknowledged although {sorted(new)} failed under it")
            if ok and key is not None:
                acked[key] = body
            if not ok:
                time.sleep(0.1)  # the writer is restarting
            return ok

        # The first writers die at start-up (SQLite's first write and sync, the
        # data-dir fsync); the bucket is created by whichever one survives.
        while not request(lambda: s3.create_bucket(Bucket=BUCKET), check=False):
            assert time.monotonic() < deadline, srv.log_tail()
        n = 0
        wanted = set(SITES) - RECOVERY_DAMAGE
        while not wanted <= _fired(markers) and time.monotonic() < deadline and n < MAX_REQUESTS:
            n += 1
            if n % 10 == 0:
                # Delete markers for keys never written: one mutation with
                # several manifest records.
                request(lambda n=n: _delete_ghosts(s3, n))
                continue
            key, body = f"k{n:04d}", os.urandom(2000 + (n * 977) % 9000)
            request(lambda k=key, b=body: s3.put_object(Bucket=BUCKET, Key=k, Body=b), key, body)
        assert wanted <= _fired(markers), f"never fired: {sorted(wanted - _fired(markers))}"

        # recovery.dir_fsync: a segment file with a torn header, then a restart.
        seg_dir = data_dir / "objects" / "segments"
        (seg_dir / f"{0xFFFF:016x}.seg").write_bytes(b"SGLK")
        _kill_writer_and_wait(srv, lambda: "recovery.dir_fsync" in _fired(markers))
        # recovery.truncate: a torn tail after the open segment's committed
        # end (a record whose write a crash cut short), then a restart.
        # Recovery seals every open segment, so an acknowledged PUT after the
        # restart is what gives us one (and proves recovery has finished).
        open_seg = None
        for i in range(50):
            key, body = f"after-recovery{i}", os.urandom(700)
            if request(
                lambda k=key, b=body: s3.put_object(Bucket=BUCKET, Key=k, Body=b), key, body
            ):
                open_seg = _open_segment(data_dir)
                if open_seg is not None:
                    break
        assert open_seg is not None, "no open segment with committed data"
        with open(seg_dir / f"{open_seg[0]:016x}.seg", "ab") as f:
            f.write(b"\xa5" * 100)
        _kill_writer_and_wait(srv, lambda: "recovery.truncate" in _fired(markers))
        # recovery.fsync_damaged: damage the last committed record of the
        # open segment (a fresh small object), then a restart.
        for i in range(50):
            key, body = f"sacrifice{i}", os.urandom(500)
            if not request(
                lambda k=key, b=body: s3.put_object(Bucket=BUCKET, Key=k, Body=b), key, body
            ):
                continue
            open_seg = _open_segment(data_dir)
            chunk = _chunk_of(data_dir, key)
            if open_seg is not None and chunk.segment_id == open_seg[0]:
                # The object's own chunk (below committed_end, which since
                # format 2 ends at the batch's records, after the chunk).
                path = seg_dir / f"{open_seg[0]:016x}.seg"
                at = chunk.offset + chunk.length - 1
                with open(path, "r+b") as f:
                    f.seek(at)
                    b = f.read(1)
                    f.seek(at)
                    f.write(bytes([b[0] ^ 0x01]))
                sacrifice = key
                break
        assert sacrifice is not None, "no committed record in an open segment to damage"
        _kill_writer_and_wait(srv, lambda: "recovery.fsync_damaged" in _fired(markers))
        acked.pop(sacrifice)

        fired = _fired(markers)
        assert set(SITES) <= fired, f"never fired: {sorted(set(SITES) - fired)}"
        writer = processes_by_name(status_retry(srv, timeout=30))["writer"]
        restarts = int(writer["restarts"])
        fsync_fired = len(FSYNC_SITES & fired & set(SITES))
        s3 = srv.s3(max_attempts=5)
        for key, body in acked.items():
            got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert got == body, f"{key}: wrong bytes after EIO recovery"
        try:
            s3.get_object(Bucket=BUCKET, Key=sacrifice)["Body"].read()
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 500, exc.response
        else:
            raise AssertionError("a chunk with a flipped bit was served")
        log = srv.log_tail(100_000)
        srv.stop()
    finally:
        srv.close()
    report(
        "eio-all-sites",
        fsync_sites=len(FSYNC_SITES & set(SITES)),
        write_sites=len(WRITE_SITES & set(SITES)),
        other_sites=len(OTHER_SITES),
        sites_fired=len(set(SITES) & fired),
        writer_restarts=restarts,
        requests=requests,
        refused=refused,
        objects_verified=len(acked),
    )
    assert not violations, violations
    # Each failed fsync stopped the writer (the supervisor restarted it); the
    # three explicit kills above add three more restarts.
    assert restarts >= fsync_fired + 3, (restarts, fsync_fired)
    at = log.find("Traceback")
    assert at < 0, f"an EIO surfaced as a traceback:\n{log[max(0, at - 300) : at + 2500]}"


def _chunk_of(data_dir: Path, key: str) -> ChunkRef:
    con = sqlite3.connect(f"file:{data_dir / 'meta.db'}?mode=ro", uri=True)
    try:
        (raw,) = con.execute(
            "SELECT v.manifest FROM current c JOIN versions v ON v.id = c.version "
            "WHERE c.bucket = ? AND c.key = ?",
            (BUCKET, key),
        ).fetchone()
    finally:
        con.close()
    return decode_manifest(bytes(raw), path=key, with_meta=False).chunks[-1]


def _open_segment(data_dir: Path) -> tuple[int, int] | None:
    con = sqlite3.connect(f"file:{data_dir / 'meta.db'}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT id, committed_end FROM segments WHERE state = 'OPEN' AND committed_end > 0 "
            "ORDER BY id DESC LIMIT 1"
        ).fetchall()
    finally:
        con.close()
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def _kill_writer_and_wait(srv: SeglakeServer, fired: Any) -> None:
    writer = processes_by_name(status_retry(srv))["writer"]
    sigkill(int(writer["pid"]))
    wait_for(fired, timeout=30, interval=0.1, what="the recovery failpoint")

    def back() -> bool:
        w = processes_by_name(srv.status())["writer"]
        return bool(w.get("alive")) and w.get("pid") != writer["pid"]

    wait_for(back, timeout=30, interval=0.2, what="the writer to be back")
