"""Segment GC against the real server: gc-plan / gc-run / gc-rewrite* (SPEC §5, §7, §8).

Servers here use a small ``--segment-max-bytes`` so segments seal after a
few objects, and mostly unversioned buckets so deletes really make data dead
(in a versioned bucket a plain DELETE only adds a marker).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from botocore.exceptions import ClientError

from seglake.format.manifest import decode_manifest
from seglake.ipc.call import call_writer
from seglake.ipc.messages import ReplPruneOplog
from tests.e2e._helpers import cli, cli_json, db_rows
from tests.harness import SeglakeServer, server_fixture

ROOT = Path(__file__).resolve().parents[2]
SEED_BINARY = ROOT / "build" / "seglake"
CLI_TIMEOUT_S = 120
SEGMENT_BYTES = "256KiB"
KiB = 1024
MiB = 1024 * KiB


def seed(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The seed's spelling: ``./build/seglake -mode X -flag ...``."""
    assert SEED_BINARY.exists(), "run `make build` first"
    return subprocess.run(
        [str(SEED_BINARY), *args, "-data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def segment_bytes(data_dir: Path) -> int:
    seg_dir = data_dir / "objects" / "segments"
    return sum(p.stat().st_size for p in seg_dir.iterdir() if p.suffix == ".seg")


def maintenance(data_dir: Path, action: str) -> None:
    out = cli(data_dir, "maintenance", action)
    assert out.returncode == 0, out.stderr


def quiesced_gc(data_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """gc-run then gc-rewrite-run under maintenance mode; their two reports."""
    maintenance(data_dir, "enable")
    code, run = cli_json(data_dir, "gc-run")
    assert code == 0, run
    code, rw = cli_json(data_dir, "gc-rewrite-run")
    assert code == 0, rw
    maintenance(data_dir, "disable")
    return run, rw


def fsck_clean(data_dir: Path) -> dict[str, Any]:
    code, doc = cli_json(data_dir, "fsck", "--all-manifests")
    assert code == 0 and doc["clean"], doc["errors"]
    return doc


def make_unversioned(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


def body_for(key: str, size: int) -> bytes:
    rng = random.Random(key)
    return rng.randbytes(size)


def fill_and_thin(s3: Any, bucket: str, count: int, size: int, keep_every: int) -> dict[str, bytes]:
    """An unversioned ``bucket`` with ``count`` objects ``o/NNN`` of ``size``
    bytes, all deleted again but every ``keep_every``-th: the kept ones, by key."""
    make_unversioned(s3, bucket)
    kept: dict[str, bytes] = {}
    for i in range(count):
        key = f"o/{i:03d}"
        data = body_for(key, size)
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        if i % keep_every == 0:
            kept[key] = data
    for i in range(count):
        if i % keep_every:
            s3.delete_object(Bucket=bucket, Key=f"o/{i:03d}")
    return kept


gsrv = server_fixture("--segment-max-bytes", SEGMENT_BYTES, scope="function")


# ---- the seed flow under client load ----------------------------------------------


class Load:
    """A bounded background client: PUTs new keys and GETs acknowledged ones."""

    def __init__(
        self,
        srv: SeglakeServer,
        bucket: str,
        *,
        max_ops: int,
        max_s: float,
        also_read: dict[str, bytes] | None = None,
    ) -> None:
        self.s3 = srv.s3(max_attempts=1)
        self.bucket = bucket
        self.max_ops, self.max_s = max_ops, max_s
        self.also_read = dict(also_read or {})
        self.reads = 0
        self.acked: dict[str, bytes] = {}
        self.refused = 0
        self.read_errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        for i in range(self.max_ops):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            key = f"load/{i:05d}"
            data = body_for(key, 3 * KiB + i % 5000)
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
                self.acked[key] = data
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code != "MaintenanceMode":
                    self.read_errors.append(f"PUT {key}: {code}")
                self.refused += 1
            readable = {**self.also_read, **self.acked}
            if readable:
                k = random.Random(i).choice(sorted(readable))
                try:
                    got = self.s3.get_object(Bucket=self.bucket, Key=k)["Body"].read()
                    self.reads += 1
                    if got != readable[k]:
                        self.read_errors.append(f"GET {k}: wrong bytes")
                except ClientError as exc:
                    self.read_errors.append(f"GET {k}: {exc.response['Error']['Code']}")
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def test_seed_flow_reclaims_under_load(gsrv: SeglakeServer) -> None:
    s3 = gsrv.s3()
    make_unversioned(s3, "gc-seed")
    kept: dict[str, bytes] = {}
    for i in range(120):
        key = f"pre/{i:04d}"
        data = body_for(key, 20 * KiB)
        s3.put_object(Bucket="gc-seed", Key=key, Body=data)
        if i >= 100:
            kept[key] = data
    for i in range(100):
        s3.delete_object(Bucket="gc-seed", Key=f"pre/{i:04d}")
    before = segment_bytes(gsrv.data_dir)

    with Load(gsrv, "gc-seed", max_ops=2000, max_s=90) as load:
        time.sleep(1.0)
        out = seed(gsrv.data_dir, "-mode", "maintenance", "-maintenance-action", "enable")
        assert out.returncode == 0, out.stderr
        # Writes are refused with 503 while quiesced; reads keep working.
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket="gc-seed", Key="during", Body=b"x")
        assert info.value.response["Error"]["Code"] == "MaintenanceMode"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        out = seed(gsrv.data_dir, "-mode", "gc-run", "-gc-force")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "reclaimed on disk" in out.stdout
        after = segment_bytes(gsrv.data_dir)
        time.sleep(0.5)
        out = seed(gsrv.data_dir, "-mode", "maintenance", "-maintenance-action", "disable")
        assert out.returncode == 0, out.stderr
        time.sleep(1.0)
    assert not load.thread.is_alive()
    assert load.read_errors == []
    assert load.refused >= 1  # the load really ran into the quiesced window
    assert len(load.acked) >= 10
    # 100 dead objects of 20 KiB: most of their segments were fully dead.
    assert before - after >= 1 * MiB, (before, after)

    s3.put_object(Bucket="gc-seed", Key="after", Body=b"writes work again")
    assert s3.get_object(Bucket="gc-seed", Key="after")["Body"].read() == b"writes work again"
    for key, data in {**kept, **load.acked}.items():
        assert s3.get_object(Bucket="gc-seed", Key=key)["Body"].read() == data, key
    fsck_clean(gsrv.data_dir)
    runs = gsrv.status()["runs"]
    gc_runs = [r for r in runs if r["mode"] == "gc-run"]
    assert gc_runs and gc_runs[0]["status"] == "ok"
    assert json.loads(gc_runs[0]["report"])["deleted_segments"]


# ---- space figures ------------------------------------------------------------------


def prune_oplog(srv: SeglakeServer) -> None:
    """Every oplog row but the newest, as a scheduled prune with no push
    remote and no retention would."""
    head = int(db_rows(srv.data_dir, "SELECT max(seq) FROM oplog")[0][0])
    trio.run(
        call_writer,
        str(srv.data_dir / ".seglake-writer.sock"),
        ReplPruneOplog(below=head, limit=10_000),
    )


def test_space_figures_1000_objects(gsrv: SeglakeServer) -> None:
    s3 = gsrv.s3()
    make_unversioned(s3, "gc-space")
    rng = random.Random(1000)
    sizes = {f"obj/{i:04d}": rng.randrange(4 * KiB, 28 * KiB) for i in range(1000)}
    for key, size in sizes.items():
        s3.put_object(Bucket="gc-space", Key=key, Body=body_for(key, size))
    keys = sorted(sizes)
    # 90% deleted: a contiguous 60% (whole segments die: gc-run) and a
    # scattered 30% of the rest (segments left mostly dead: gc-rewrite).
    doomed = set(keys[:600]) | set(rng.sample(keys[600:], 300))
    for key in sorted(doomed):
        s3.delete_object(Bucket="gc-space", Key=key)
    # The tombstone horizon: DELETED rows are purged only once the oplog is
    # pruned past their deletions (a later write stays as its newest row)
    # and they are older than -repl-oplog-retention (0 here).
    s3.put_object(Bucket="gc-space", Key="zz-after-deletes", Body=b"x")
    prune_oplog(gsrv)
    live_bytes = sum(sizes[k] for k in keys if k not in doomed)
    before = segment_bytes(gsrv.data_dir)
    dead = before - live_bytes

    code, plan = cli_json(gsrv.data_dir, "gc-plan")
    assert code == 0 and plan["warnings"] == []
    assert plan["segment_count"] > 0
    code, rplan = cli_json(gsrv.data_dir, "gc-rewrite-plan")
    assert code == 0

    maintenance(gsrv.data_dir, "enable")
    t0 = time.monotonic()
    code, run = cli_json(gsrv.data_dir, "gc-run", "-repl-oplog-retention", "0")
    gc_s = time.monotonic() - t0
    assert code == 0, run
    mid = segment_bytes(gsrv.data_dir)
    # gc-plan's prediction is what gc-run freed; on disk, less the manifest
    # and metadata records it copied forward out of the dropped segments.
    assert run["freed_bytes"] == plan["reclaim_bytes"], run
    assert run["reclaimed_on_disk"] == before - mid, run
    assert run["reclaimed_on_disk"] >= 0.9 * plan["reclaim_bytes"], run
    t0 = time.monotonic()
    code, rw = cli_json(gsrv.data_dir, "gc-rewrite-run")
    rw_s = time.monotonic() - t0
    assert code == 0, rw
    after = segment_bytes(gsrv.data_dir)
    maintenance(gsrv.data_dir, "disable")

    reclaimed = before - after
    print(
        f"\nGC space figures: 1000 objects ({sum(sizes.values())} bytes), 900 deleted; "
        f"segments on disk before {before}, dead {dead}; gc-plan predicted "
        f"{plan['reclaim_bytes']} ({plan['segment_count']} segments), gc-run freed "
        f"{before - mid} in {gc_s:.2f}s; gc-rewrite-plan predicted {rplan['reclaim_bytes']} "
        f"(copy {rplan['copy_bytes']}), gc-rewrite-run freed {mid - after} in {rw_s:.2f}s "
        f"(moved {rw['moved_bytes']}); after {after}; reclaimed {reclaimed} = "
        f"{100 * reclaimed / dead:.1f}% of dead bytes"
    )
    assert reclaimed >= 0.85 * dead, (before, after, dead)
    for key in keys:
        if key not in doomed:
            got = s3.get_object(Bucket="gc-space", Key=key)["Body"].read()
            assert got == body_for(key, sizes[key]), key
    for key in rng.sample(sorted(doomed), 20):
        with pytest.raises(ClientError) as info:
            s3.head_object(Bucket="gc-space", Key=key)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    fsck_clean(gsrv.data_dir)
    # Nothing DELETED is left: rows and manifest files were purged.
    assert (
        db_rows(gsrv.data_dir, "SELECT count(*) FROM versions WHERE state = 'DELETED'")[0][0] == 0
    )


# ---- shared chunks ------------------------------------------------------------------


class Junk:
    """Objects in an unversioned bucket that are deleted later, placed around
    the data under test so its segments end up mostly dead."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket, self.n = s3, bucket, 0
        make_unversioned(s3, bucket)

    def put(self, size: int) -> None:
        self.n += 1
        self.s3.put_object(Bucket=self.bucket, Key=f"j/{self.n}", Body=body_for(f"j{self.n}", size))

    def around(self) -> None:
        """Before: 200 KiB (the data under test follows in the same segment)."""
        self.put(200 * KiB)

    def after(self) -> None:
        """After: 40 KiB, which fills the 256 KiB segment and seals it."""
        self.put(40 * KiB)

    def delete_all(self) -> None:
        for i in range(1, self.n + 1):
            self.s3.delete_object(Bucket=self.bucket, Key=f"j/{i}")


def test_shared_chunks_survive_gc(gsrv: SeglakeServer) -> None:
    s3 = gsrv.s3()
    make_unversioned(s3, "gc-shared")
    junk = Junk(s3, "gc-shared-junk")
    src = body_for("src", 30 * KiB)
    junk.around()
    s3.put_object(Bucket="gc-shared", Key="src", Body=src)
    junk.after()
    s3.copy_object(Bucket="gc-shared", Key="copy", CopySource={"Bucket": "gc-shared", "Key": "src"})
    # A completed upload whose parts hold its bytes, then a copy of it.
    part1, part2 = body_for("p1", 5 * MiB), body_for("p2", 30 * KiB)
    up = s3.create_multipart_upload(Bucket="gc-shared", Key="mpu")["UploadId"]
    e1 = s3.upload_part(Bucket="gc-shared", Key="mpu", UploadId=up, PartNumber=1, Body=part1)
    junk.around()
    e2 = s3.upload_part(Bucket="gc-shared", Key="mpu", UploadId=up, PartNumber=2, Body=part2)
    junk.after()
    s3.complete_multipart_upload(
        Bucket="gc-shared", Key="mpu", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                   {"PartNumber": 2, "ETag": e2["ETag"]}]},
    )  # fmt: skip
    s3.copy_object(
        Bucket="gc-shared", Key="mpu-copy", CopySource={"Bucket": "gc-shared", "Key": "mpu"}
    )
    # An open upload: its part is live although no version lists it.
    open_part = body_for("open", 30 * KiB)
    open_up = s3.create_multipart_upload(Bucket="gc-shared", Key="open")["UploadId"]
    junk.around()
    eo = s3.upload_part(
        Bucket="gc-shared", Key="open", UploadId=open_up, PartNumber=1, Body=open_part
    )
    junk.after()
    for _ in range(12):  # whole segments of garbage for gc-run
        junk.put(30 * KiB)
    junk.put(250 * KiB)
    junk.delete_all()
    # Read once before GC, so the frontend has these chunk lists cached.
    assert s3.get_object(Bucket="gc-shared", Key="copy")["Body"].read() == src
    assert s3.get_object(Bucket="gc-shared", Key="mpu-copy")["Body"].read() == part1 + part2
    s3.delete_object(Bucket="gc-shared", Key="src")
    s3.delete_object(Bucket="gc-shared", Key="mpu")
    before = segment_bytes(gsrv.data_dir)

    run, rw = quiesced_gc(gsrv.data_dir)
    assert run["deleted_segments"], run
    # copy (src's chunk) and mpu-copy (part 2's chunk) were re-pointed, and
    # so was the open upload's part row.
    assert rw["versions_repointed"] >= 2 and rw["parts_repointed"] == 1, rw
    assert len(rw["deleted_segments"]) >= 3
    assert segment_bytes(gsrv.data_dir) < before

    assert s3.get_object(Bucket="gc-shared", Key="copy")["Body"].read() == src
    assert s3.get_object(Bucket="gc-shared", Key="mpu-copy")["Body"].read() == part1 + part2
    # Range reads go through the re-pointed chunk lists too.
    got = s3.get_object(Bucket="gc-shared", Key="mpu-copy", Range="bytes=5242870-5242889")
    assert got["Body"].read() == (part1 + part2)[5242870:5242890]
    # The open upload completes after GC, with the bytes of its moved part.
    s3.complete_multipart_upload(
        Bucket="gc-shared", Key="open", UploadId=open_up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": eo["ETag"]}]},
    )  # fmt: skip
    assert s3.get_object(Bucket="gc-shared", Key="open")["Body"].read() == open_part
    fsck_clean(gsrv.data_dir)


def test_noncurrent_and_damaged_versions_are_live(gsrv: SeglakeServer) -> None:
    import trio

    from seglake.config import build_config
    from seglake.ops.admin_client import admin_call

    s3 = gsrv.s3()
    s3.create_bucket(Bucket="gc-versions")
    s3.put_bucket_versioning(Bucket="gc-versions", VersioningConfiguration={"Status": "Enabled"})
    junk = Junk(s3, "gc-versions-junk")
    old = body_for("old", 30 * KiB)
    junk.around()
    v1 = s3.put_object(Bucket="gc-versions", Key="k", Body=old)["VersionId"]
    junk.after()
    junk.around()
    dmg = s3.put_object(Bucket="gc-versions", Key="d", Body=body_for("d", 30 * KiB))["VersionId"]
    junk.after()
    for i in range(3):
        s3.put_object(Bucket="gc-versions", Key="k", Body=body_for(f"new{i}", 30 * KiB))
    s3.delete_object(Bucket="gc-versions", Key="k")  # only a marker: nothing dies
    junk.put(250 * KiB)
    junk.delete_all()
    uid = db_rows(
        gsrv.data_dir, "SELECT uid FROM versions WHERE key = 'd' AND version_id = ?", (dmg,)
    )[0][0]
    cfg = build_config({"data_dir": str(gsrv.data_dir)}, env={})
    trio.run(admin_call, cfg, "writer_mutation", {"mutation": "mark_damaged", "args": {"uid": uid}})
    _, rw = quiesced_gc(gsrv.data_dir)
    assert rw["versions_repointed"] >= 2 and rw["deleted_segments"], rw
    got = s3.get_object(Bucket="gc-versions", Key="k", VersionId=v1)["Body"].read()
    assert got == old
    state = db_rows(gsrv.data_dir, "SELECT state FROM versions WHERE uid = ?", (uid,))[0][0]
    assert state == "DAMAGED"

    # After GC moved data, a damage report from a reader that used the old
    # chunk list is checked by the writer: v1 reads back, so it stays ACTIVE.
    v1_uid, v1_manifest = db_rows(
        gsrv.data_dir, "SELECT uid, manifest FROM versions WHERE version_id = ?", (v1,)
    )[0]
    mark = {"mutation": "mark_damaged", "args": {"uid": v1_uid}}
    assert trio.run(admin_call, cfg, "writer_mutation", mark) == {"marked": False}
    assert db_rows(gsrv.data_dir, "SELECT state FROM versions WHERE uid = ?", (v1_uid,)) == [
        ("ACTIVE",)
    ]
    # Real damage is still marked: flip one byte of v1's data on disk.
    chunk = decode_manifest(v1_manifest, path="test", with_meta=False).chunks[0]
    seg = gsrv.data_dir / "objects" / "segments" / f"{chunk.segment_id:016x}.seg"
    with open(seg, "r+b") as f:
        f.seek(chunk.offset + 7)
        byte = f.read(1)
        f.seek(chunk.offset + 7)
        f.write(bytes([byte[0] ^ 0xFF]))
    trio.run(admin_call, cfg, "writer_mutation", mark)
    assert db_rows(gsrv.data_dir, "SELECT state FROM versions WHERE uid = ?", (v1_uid,)) == [
        ("DAMAGED",)
    ]
    # fsck checks every kept version's chunk ranges, DAMAGED ones included.
    fsck_clean(gsrv.data_dir)


# ---- refusals, limits, pause and throttle -----------------------------------------


def _garbage(s3: Any, bucket: str, n: int, size: int) -> None:
    make_unversioned(s3, bucket)
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"g/{i}", Body=body_for(f"{bucket}{i}", size))
    for i in range(n):
        s3.delete_object(Bucket=bucket, Key=f"g/{i}")


def test_refusals_and_limits(gsrv: SeglakeServer) -> None:
    s3 = gsrv.s3()
    _garbage(s3, "gc-limits", 60, 30 * KiB)
    before = segment_bytes(gsrv.data_dir)
    # Live and not quiesced, no --yes: refused by the gate, nothing deleted.
    out = cli(gsrv.data_dir, "gc-run", "--force")
    assert out.returncode == 1 and "maintenance enable" in out.stderr
    assert segment_bytes(gsrv.data_dir) == before

    maintenance(gsrv.data_dir, "enable")
    # A minimum age every segment fails: a warning, so no run without --force.
    code, doc = cli_json(gsrv.data_dir, "gc-run", "--gc-min-age", "1h")
    assert code == 1 and doc["status"] == "refused"
    assert any("younger than --gc-min-age" in w for w in doc["plan"]["warnings"])
    assert segment_bytes(gsrv.data_dir) == before
    code, doc = cli_json(gsrv.data_dir, "gc-run", "--gc-min-age", "1h", "--force")
    assert code == 0 and doc["deleted_segments"] == []
    # Limits: at most 2 segments per run.
    code, plan = cli_json(gsrv.data_dir, "gc-plan", "--gc-max-segments", "2")
    assert plan["segment_count"] == 2 and plan["skipped_limit"] > 0
    code, doc = cli_json(gsrv.data_dir, "gc-run", "--gc-max-segments", "2")
    assert code == 0 and len(doc["deleted_segments"]) == 2
    code, plan = cli_json(gsrv.data_dir, "gc-plan", "--gc-max-reclaim-bytes", "300KiB")
    assert plan["segment_count"] == 1 and plan["reclaim_bytes"] <= 300 * KiB
    code, doc = cli_json(gsrv.data_dir, "gc-run")
    assert code == 0 and len(doc["deleted_segments"]) >= 2
    code, plan = cli_json(gsrv.data_dir, "gc-plan")
    assert plan["segment_count"] == 0
    maintenance(gsrv.data_dir, "disable")
    # With --yes a live, not quiesced server is collected too.
    _garbage(s3, "gc-limits-2", 30, 30 * KiB)
    code, doc = cli_json(gsrv.data_dir, "gc-run", "--yes")
    assert code == 0 and doc["deleted_segments"], doc
    s3.put_object(Bucket="gc-limits-2", Key="still", Body=b"writable")
    assert s3.get_object(Bucket="gc-limits-2", Key="still")["Body"].read() == b"writable"
    fsck_clean(gsrv.data_dir)
    runs = [r for r in gsrv.status()["runs"] if r["mode"] == "gc-run"]
    assert {r["status"] for r in runs} >= {"ok", "failed"}


def test_rewrite_pause_file_and_throttle(gsrv: SeglakeServer) -> None:
    s3 = gsrv.s3()
    keep = fill_and_thin(s3, "gc-pause", 60, 30 * KiB, keep_every=4)
    code, plan = cli_json(gsrv.data_dir, "gc-rewrite-plan")
    assert code == 0 and plan["segment_count"] >= 3 and plan["copy_bytes"] > 0
    rate = 128 * KiB
    pause = gsrv.data_dir / ".seglake-gc-pause"
    pause.write_text("paused by the test\n")
    maintenance(gsrv.data_dir, "enable")
    before = segment_bytes(gsrv.data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seglake.cli", "gc-rewrite", "--json", "--data-dir",
         str(gsrv.data_dir), "--gc-rewrite-bytes-per-sec", str(rate)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(4.0)
        assert proc.poll() is None, proc.communicate()
        assert segment_bytes(gsrv.data_dir) == before  # nothing moved while paused
        t0 = time.monotonic()
        pause.unlink()
        stdout, stderr = proc.communicate(timeout=120)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["paused_s"] >= 0.5
    assert doc["moved_bytes"] == plan["copy_bytes"]
    # Throttled: the copy took at least about moved / rate seconds.
    assert elapsed >= 0.8 * doc["moved_bytes"] / rate, (elapsed, doc["moved_bytes"])
    maintenance(gsrv.data_dir, "disable")
    assert segment_bytes(gsrv.data_dir) < before
    for key, data in keep.items():
        assert s3.get_object(Bucket="gc-pause", Key=key)["Body"].read() == data
    fsck_clean(gsrv.data_dir)


def test_offline_gc_and_plan_without_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    args = ["--segment-max-bytes", SEGMENT_BYTES]
    with SeglakeServer(data_dir, frontends=1, extra_args=args) as srv:
        keep = fill_and_thin(srv.s3(), "gc-offline", 40, 25 * KiB, keep_every=5)
        assert srv.stop() == 0
    before = segment_bytes(data_dir)
    code, plan = cli_json(data_dir, "gc-rewrite-plan")
    assert code == 0 and plan["segment_count"] > 0
    code, doc = cli_json(data_dir, "gc-rewrite-run")
    assert code == 0, doc
    assert doc["server"] is False and doc["record_note"] == "recorded in ops_runs (offline)"
    assert segment_bytes(data_dir) < before
    fsck_clean(data_dir)
    with SeglakeServer(
        data_dir, frontends=1, extra_args=args, log_path=tmp_path / "data-2.log"
    ) as srv:
        s3 = srv.s3()
        for key, data in keep.items():
            assert s3.get_object(Bucket="gc-offline", Key=key)["Body"].read() == data
        runs = [r for r in srv.status()["runs"] if r["mode"] == "gc-rewrite-run"]
        assert runs and runs[0]["status"] == "ok"


def test_gc_requests_cannot_bypass_the_writer_checks(gsrv: SeglakeServer) -> None:
    """The writer's GC mutations are not callable as plain mutations, and a
    relayed GC request needs quiesce or an explicit yes."""
    import trio

    from seglake.config import build_config
    from seglake.ops.admin_client import AdminRefused, admin_call

    cfg = build_config({"data_dir": str(gsrv.data_dir)}, env={})
    refusals: list[tuple[str, dict[str, Any], str]] = [
        ("gc_delete_segments", {"segments": [1]}, "InvalidRequest"),
        ("gc_drop_segments", {"segments": [1]}, "AccessDenied"),
        ("gc_rewrite_chunks", {"segment": "x", "yes": True}, "InvalidArgument"),
    ]
    for mutation, args, code in refusals:
        with pytest.raises(AdminRefused) as info:
            trio.run(admin_call, cfg, "writer_mutation", {"mutation": mutation, "args": args})
        assert info.value.error.code == code, mutation


def test_live_rewrite_with_yes_under_load(gsrv: SeglakeServer) -> None:
    """gc-rewrite-run --yes on a live server: concurrent PUTs and GETs (of the
    very objects being moved) all succeed, and nothing is marked DAMAGED."""
    s3 = gsrv.s3()
    kept = fill_and_thin(s3, "gc-live", 80, 24 * KiB, keep_every=5)
    before = segment_bytes(gsrv.data_dir)
    with Load(gsrv, "gc-live", max_ops=3000, max_s=120, also_read=kept) as load:
        time.sleep(0.5)
        code, doc = cli_json(gsrv.data_dir, "gc-rewrite-run", "--yes")
        time.sleep(0.5)
    assert code in (0, 1), doc  # 1: a segment kept because a new write landed in it
    assert doc["deleted_segments"] and doc["moved_chunks"] >= len(kept) // 2, doc
    assert load.read_errors == [] and load.refused == 0
    assert load.reads >= 10
    assert segment_bytes(gsrv.data_dir) < before + sum(len(v) for v in load.acked.values())
    damaged = db_rows(gsrv.data_dir, "SELECT count(*) FROM versions WHERE state = 'DAMAGED'")
    assert damaged[0][0] == 0
    for key, data in {**kept, **load.acked}.items():
        assert s3.get_object(Bucket="gc-live", Key=key)["Body"].read() == data, key
    fsck_clean(gsrv.data_dir)


def test_reads_from_a_row_gc_moved_are_stale_not_damaged(gsrv: SeglakeServer) -> None:
    """A copy (or part copy) that read a version's row before a live
    gc-rewrite moved its chunks and removed their segment finds the segment
    gone: that is ``ChunksMoved`` (read the row again), never a reason to
    mark a sound object DAMAGED. Driven through the frontend's own chunk
    reader with the real writer, meta.db and segment files."""
    import trio

    from seglake.config import build_config
    from seglake.frontend.objects import ChunksMoved, SegmentFiles, read_chunk_checked
    from seglake.frontend.writer_client import WriterClient
    from seglake.meta.reads import MetaReader
    from seglake.meta.schema import open_read

    s3 = gsrv.s3()
    kept = fill_and_thin(s3, "gc-stale", 40, 24 * KiB, keep_every=5)
    cfg = build_config({"data_dir": str(gsrv.data_dir)})
    reader = MetaReader(open_read(str(cfg.db_path)))
    stale = {key: reader.current("gc-stale", key) for key in kept}
    code, doc = cli_json(gsrv.data_dir, "gc-rewrite-run", "--yes")
    assert code in (0, 1) and doc["deleted_segments"], doc
    moved = []
    for key, v in stale.items():
        assert v is not None and v.manifest is not None
        (ref,) = decode_manifest(v.manifest, path="test", with_meta=False).chunks
        if not (cfg.segments_dir / f"{ref.segment_id:016x}.seg").exists():
            moved.append((key, v, ref))
    assert moved, "gc-rewrite removed no segment of a kept object"

    async def read_stale() -> None:
        async with trio.open_nursery() as nursery:
            writer = WriterClient(str(cfg.writer_socket), nursery)
            segments = SegmentFiles(cfg)
            for _key, v, ref in moved:
                with pytest.raises(ChunksMoved):
                    await read_chunk_checked(segments, writer, reader, v, ref)
            nursery.cancel_scope.cancel()

    trio.run(read_stale)
    damaged = db_rows(gsrv.data_dir, "SELECT count(*) FROM versions WHERE state = 'DAMAGED'")
    assert damaged[0][0] == 0
    key = moved[0][0]
    s3.copy_object(Bucket="gc-stale", Key="copy", CopySource=f"gc-stale/{key}")
    assert s3.get_object(Bucket="gc-stale", Key="copy")["Body"].read() == kept[key]
