"""kill -9 of the writer at each named failpoint, on the real server.

Every failpoint below is armed at once as ``kill`` with a marker file, so
each one kills the writer exactly once (the marker stops it firing again in
the restarted writer). A mixed client load (PUT, versioned overwrite, copy,
multipart, delete, permanent version delete, versioning changes, bucket
delete) keeps going, retrying refused requests, until every marker exists;
the supervisor restarts the writer each time, and recovery runs after each
kill (the recovery failpoints kill it *during* that recovery).

The sites are the writer's file operations (``seglake/writer/fileio.py``:
``<site>`` just before the operation, ``<site>.done`` just after), the
committer's transaction points (``apply.<mutation>`` / ``applied.<mutation>``
inside the savepoint, ``before_commit``, ``after_commit`` — committed but not
yet answered) and start-up recovery.

Checked: every failpoint fired (its marker exists), the writer was
restarted once per kill, every acknowledged write reads back by version id
byte for byte and every acknowledged delete is still a delete marker, the
store's fsck is clean and scrub finds nothing.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from seglake.audit.fsck import run_fsck
from seglake.audit.scrub import run_scrub
from seglake.config import Config
from tests.faults.figures import report
from tests.faults.util import Ack, status_retry, verify_acked
from tests.harness import SeglakeServer

_FILE_SITES = [
    "segment.create",
    "segment.header_write",
    "segment.header_fsync",
    "segments_dir.fsync",
    "segment.append",
    "segment.fsync",
    "seal.footer_write",
    "seal.fsync",
    "recovery.footer_write",
    "recovery.fsync",
    # Recovery restating the database after records a kill left flushed
    # but uncommitted (a kill at segment.fsync.done or before_commit).
    "recovery.append",
    "sqlite.sync",
]
FAILPOINTS = [
    *_FILE_SITES,
    *(f"{s}.done" for s in _FILE_SITES),
    "sqlite.write",
    *(
        f"{p}.{m}"
        for m in (
            "put",
            "copy_object",
            "create_upload",
            "upload_part",
            "complete_upload",
            "delete_object",
            "delete_version",
            "set_versioning",
            "delete_bucket",
        )
        for p in ("apply", "applied")
    ),
    "before_commit",
    "after_commit",
    "recovery.start",
    "recovery.sealed",
]
BUCKET = "failpoints"
DEADLINE_S = 240.0
MAX_ROUNDS = 2000
SERVER_ARGS = ["--segment-max-bytes", "48KiB", "--restart-backoff-max", "0.2s"]
WRITE_ERRORS = (ClientError, Exception)


def _try(fn: Any) -> Any:
    """One attempt; None when the writer died under it (or any refusal)."""
    try:
        return fn()
    except Exception:
        time.sleep(0.05)
        return None


def test_every_failpoint_kill9_loses_nothing(tmp_path: Path) -> None:
    assert len(set(FAILPOINTS)) >= 40
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = ",".join(f"{fp}=kill:{markers / fp}" for fp in FAILPOINTS)
    seed = int(os.environ.get("SEGLAKE_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"\nseed {seed}")
    rng = random.Random(seed)
    acked: list[Ack] = []
    data_dir = tmp_path / "data"
    # Create the bucket before arming: the first start then has something
    # for every recovery step to do only once writes began.
    with SeglakeServer(data_dir, frontends=1, extra_args=SERVER_ARGS) as srv:
        srv.s3().create_bucket(Bucket=BUCKET)
        assert srv.stop() == 0
    srv = SeglakeServer(
        data_dir, frontends=2, extra_args=SERVER_ARGS, env={"SEGLAKE_FAILPOINTS": spec}
    )
    rounds = 0
    try:
        srv.start()
        s3 = srv.s3(max_attempts=1, connect_timeout=3, read_timeout=20)
        deadline = time.monotonic() + DEADLINE_S
        live: dict[str, bytes] = {}
        maybe: dict[str, list[bytes]] = {}
        while time.monotonic() < deadline and rounds < MAX_ROUNDS:
            if all((markers / fp).exists() for fp in FAILPOINTS):
                break
            rounds += 1
            _one_round(s3, rng, rounds, live, maybe, acked)
        fired = sorted(fp for fp in FAILPOINTS if (markers / fp).exists())
        missing = sorted(set(FAILPOINTS) - set(fired))
        procs = {p["role"]: p for p in status_retry(srv, timeout=30)["processes"]}
        restarts = int(procs["writer"]["restarts"])
        verified = verify_acked(srv, BUCKET, acked)
        assert srv.stop() == 0, srv.log_tail()
    finally:
        srv.close()
    cfg = Config(data_dir=str(data_dir))
    fsck = run_fsck(cfg, all_manifests=True)
    scrub = run_scrub(cfg)
    report(
        "failpoints-kill9",
        failpoints=len(FAILPOINTS),
        failpoints_hit=len(fired),
        writer_kills=restarts,
        rounds=rounds,
        objects_verified=verified,
        fsck_errors=len(fsck.errors),
        scrub_damaged=len(scrub.damaged),
    )
    assert not missing, f"failpoints never reached: {missing}"
    # Every kill restarted the writer (a kill during recovery included).
    assert restarts >= len(fired), (restarts, len(fired))
    assert fsck.clean, fsck.errors[:10]
    assert not scrub.damaged, scrub.damaged[:10]


def _one_round(
    s3: Any,
    rng: random.Random,
    n: int,
    live: dict[str, bytes],
    maybe: dict[str, list[bytes]],
    acked: list[Ack],
) -> None:
    """One client operation of each family; failures (the writer died) are fine."""
    key = f"k{n:04d}"
    data = rng.randbytes(rng.choice([0, 100, 3000, 20_000, 40_000]))
    r = _try(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=data))
    if r is not None:
        acked.append(Ack(key, r["VersionId"], data))
        live[key] = data
    if live:
        old = rng.choice(sorted(live))
        new = rng.randbytes(rng.randint(1, 5000))
        r = _try(lambda: s3.put_object(Bucket=BUCKET, Key=old, Body=new))
        if r is not None:
            acked.append(Ack(old, r["VersionId"], new))
            live[old] = new
            maybe.pop(old, None)
        else:
            maybe.setdefault(old, []).append(new)
        src = rng.choice(sorted(live))
        r = _try(
            lambda: s3.copy_object(
                Bucket=BUCKET, Key=f"c{n:04d}", CopySource={"Bucket": BUCKET, "Key": src}
            )
        )
        if r is not None:
            acked.append(Ack(f"c{n:04d}", r["VersionId"], live[src], tuple(maybe.get(src, ()))))
    mkey = f"m{n:04d}"
    body = rng.randbytes(rng.randint(1, 30_000))
    up = _try(lambda: s3.create_multipart_upload(Bucket=BUCKET, Key=mkey))
    if up is not None:
        uid = up["UploadId"]
        part = _try(
            lambda: s3.upload_part(Bucket=BUCKET, Key=mkey, UploadId=uid, PartNumber=1, Body=body)
        )
        if part is not None:
            parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
            r = _try(
                lambda: s3.complete_multipart_upload(
                    Bucket=BUCKET, Key=mkey, UploadId=uid, MultipartUpload=parts
                )
            )
            if r is not None:
                acked.append(Ack(mkey, r["VersionId"], body))
                live[mkey] = body
    if n % 3 == 0 and live:
        victim = rng.choice(sorted(live))
        r = _try(lambda: s3.delete_object(Bucket=BUCKET, Key=victim))
        if r is not None:
            acked.append(Ack(victim, r["VersionId"], None))
            live.pop(victim, None)
    if n % 4 == 0:
        # A version that is then deleted for good (never verified).
        gone = f"gone{n:04d}"
        r = _try(lambda: s3.put_object(Bucket=BUCKET, Key=gone, Body=b"x"))
        if r is not None:
            _try(lambda: s3.delete_object(Bucket=BUCKET, Key=gone, VersionId=r["VersionId"]))
    if n % 5 == 0:
        # Versioning changes and a bucket removal that unlinks delete-marker manifests.
        tmp = f"tmp{n:04d}"
        if _try(lambda: s3.create_bucket(Bucket=tmp)) is not None:
            _try(
                lambda: s3.put_bucket_versioning(
                    Bucket=tmp, VersioningConfiguration={"Status": "Suspended"}
                )
            )
            _try(
                lambda: s3.put_bucket_versioning(
                    Bucket=tmp, VersioningConfiguration={"Status": "Enabled"}
                )
            )
            _try(lambda: s3.delete_object(Bucket=tmp, Key="marker"))
            _try(lambda: s3.delete_bucket(Bucket=tmp))
