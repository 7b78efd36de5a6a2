"""Simulated power cuts: every disk state the journal allows must recover.

How: a real server runs a mixed workload (PUT, versioned overwrites, copy,
multipart, delete) with ``SEGLAKE_IO_JOURNAL`` set, so the writer records
every file operation, SQLite's ``meta.db``/``-wal`` included
(``seglake/writer/fileio.py``). ``crashsim`` then replays the journal from a
snapshot taken before the workload and, at random cut points, builds the
disk a power cut could leave: unsynced writes dropped, kept or torn,
directory entries not covered by a directory fsync dropped. Since segment
format 2 a batch's manifest and metadata records are appended to the open
segment and flushed with its chunks: the states that matter are records
appended but not flushed (counted and required below), and records
flushed before a COMMIT that never happened.

For each crash state, in-process (the bulk — a full server start costs
~3 s on 2 cores, the same recovery code runs in ~0.2 s):
- the writer's real start-up (``Writer(cfg)``: SQLite opens and replays its
  WAL, every unsealed segment is validated, cut and sealed) succeeds;
- ``fsck`` (all manifest records) reports no error and ``scrub`` finds no
  bad chunk;
- every NESTED_EVERY-th state: ``rebuild-index --dry-run`` (a replay of the
  segments' records) gives exactly the recovered database;
- every write acknowledged before the cut reads back by version id byte for
  byte through the same codecs the frontends use, every acknowledged delete
  is still a delete marker, and each key's current version is one the
  history allows.
A subset of crash states is then served by the real multi-process server
and read back with boto3, proving the in-process check speaks for it.

``SEGLAKE_LONG_FAULTS=1`` raises the cut count to the long tier's 1,000+.
``SEGLAKE_TEST_SKIP_FSYNC`` (test mode only) is how ``mutation_check.py``
removes one fsync at a time and shows this test fails.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from seglake.audit.fsck import run_fsck
from seglake.audit.scrub import run_scrub
from seglake.config import Config
from seglake.meta.reads import MetaReader
from seglake.meta.schema import open_read
from seglake.ops.rebuild import check_index
from seglake.writer.main import Writer
from tests.faults import crashsim
from tests.faults.figures import report
from tests.faults.storecheck import fault_seed, object_bytes
from tests.harness import SeglakeServer

LONG = os.environ.get("SEGLAKE_LONG_FAULTS") == "1"
BUCKET = "power"
THREADS = 3
# A DeleteObjects of this many keys: one mutation, several manifest records.
MULTI_DELETE = 4
OPS_PER_THREAD = 70 if LONG else 30
CUTS = int(os.environ.get("SEGLAKE_POWER_CUTS", "1000" if LONG else "110"))
SERVER_SUBSET = 6 if LONG else 3
# Every NESTED_EVERY-th crash state is also recovered by a writer that
# records its own I/O, and power is cut again during that recovery.
NESTED_EVERY = 10
NESTED_CUTS = 3
SKIPPED = set(filter(None, os.environ.get("SEGLAKE_TEST_SKIP_FSYNC", "").split(",")))
# Small segments so rotation and sealing happen inside the workload.
SERVER_ARGS = ["--segment-max-bytes", "96KiB", "--segment-idle-seal", "600s"]


@dataclass
class Acked:
    kind: str  # put | copy | mpu | delete
    key: str
    version_id: str
    data: bytes | None  # None for a delete marker
    ack_offset: int  # journal length when the client had the answer
    start_offset: int  # journal length when the request was sent
    ack_ops: int = 0
    start_ops: int = 0


def _journal_len(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _workload(srv: SeglakeServer, journal: Path, seed: int) -> list[Acked]:
    """Each thread owns its keys, so per-key history is sequential."""
    acked: list[Acked] = []
    lock = threading.Lock()
    errors: list[str] = []

    def run(t: int) -> None:
        rng = random.Random(seed * 100 + t)
        s3 = srv.s3(max_attempts=1)
        live: dict[str, bytes] = {}
        deleted: set[str] = set()
        for n in range(OPS_PER_THREAD):
            x = rng.random()
            start = _journal_len(journal)
            recs: list[Acked] = []
            try:
                if x < 0.45 or not live:
                    key = f"t{t}/k{n:03d}"
                    data = rng.randbytes(rng.choice([0, 17, 900, 5000, 30_000, 70_000]))
                    vid = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["VersionId"]
                    rec = Acked("put", key, vid, data, 0, start)
                    live[key] = data
                elif x < 0.65:
                    key = rng.choice(sorted(live))
                    data = rng.randbytes(rng.randint(1, 20_000))
                    vid = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["VersionId"]
                    rec = Acked("put", key, vid, data, 0, start)
                    live[key] = data
                elif x < 0.78:
                    src = rng.choice(sorted(live))
                    key = f"t{t}/c{n:03d}"
                    resp = s3.copy_object(
                        Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": src}
                    )
                    rec = Acked("copy", key, resp["VersionId"], live[src], 0, start)
                    live[key] = live[src]
                elif x < 0.88:
                    key = f"t{t}/m{n:03d}"
                    data = rng.randbytes(rng.randint(1, 40_000))
                    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
                    etag = s3.upload_part(
                        Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=data
                    )["ETag"]
                    resp = s3.complete_multipart_upload(
                        Bucket=BUCKET,
                        Key=key,
                        UploadId=up,
                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
                    )
                    rec = Acked("mpu", key, resp["VersionId"], data, 0, start)
                    live[key] = data
                elif x < 0.94 and len(live) >= MULTI_DELETE:
                    # One mutation with several delete markers: several
                    # manifest records in one batch.
                    keys = rng.sample(sorted(live), MULTI_DELETE)
                    resp = s3.delete_objects(
                        Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]}
                    )
                    assert not resp.get("Errors") and len(resp["Deleted"]) == len(keys), resp
                    for d in resp["Deleted"]:
                        assert d.get("DeleteMarker") is True, d
                        vid = d["DeleteMarkerVersionId"]
                        recs.append(Acked("delete", d["Key"], vid, None, 0, start))
                        del live[d["Key"]]
                        deleted.add(d["Key"])
                else:
                    key = rng.choice(sorted(live))
                    resp = s3.delete_object(Bucket=BUCKET, Key=key)
                    assert resp.get("DeleteMarker") is True, resp
                    rec = Acked("delete", key, resp["VersionId"], None, 0, start)
                    del live[key]
                    deleted.add(key)
            except Exception as exc:
                errors.append(f"thread {t} op {n}: {exc!r}")
                return
            if not recs:
                recs = [rec]
            end = _journal_len(journal)
            with lock:
                for r in recs:
                    r.ack_offset = end
                    acked.append(r)

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert not any(th.is_alive() for th in threads), "workload threads hung"
    assert not errors, errors
    return acked


def _read_version(cfg: Config, reader: MetaReader, key: str, vid: str) -> tuple[bool, bytes]:
    """(is delete marker, bytes) of a version, read and verified as a GET would."""
    row = reader.version(BUCKET, key, vid)
    if row is None:
        raise AssertionError(f"{key} version {vid} is missing")
    if row.delete_marker:
        return True, b""
    if row.state != "ACTIVE":
        raise AssertionError(f"{key} version {vid} is {row.state}")
    assert row.manifest is not None
    return False, object_bytes(cfg, bytes(row.manifest))


def _check_state(data_dir: Path, history: list[Acked], cut: int) -> tuple[int, list[str]]:
    """Recover ``data_dir`` in-process and check it; (objects verified, problems)."""
    cfg = Config(data_dir=str(data_dir))
    problems: list[str] = []
    try:
        writer = Writer(cfg)
    except Exception as exc:
        return 0, [f"recovery failed: {exc!r}"]
    writer.close()
    os.close(writer.lock_fd)
    fsck = run_fsck(cfg, all_manifests=True)
    problems += [f"fsck: {f.kind}: {f.detail}" for f in fsck.errors]
    scrub = run_scrub(cfg)
    problems += [f"scrub: {d.key} {d.version_id}: {d.reason}" for d in scrub.damaged]
    conn = open_read(str(cfg.db_path))
    verified = 0
    try:
        reader = MetaReader(conn)
        by_key: dict[str, list[Acked]] = {}
        for a in history:
            by_key.setdefault(a.key, []).append(a)
        for key, ops in by_key.items():
            done = [a for a in ops if a.ack_ops <= cut]
            for a in done:
                try:
                    marker, body = _read_version(cfg, reader, key, a.version_id)
                except Exception as exc:
                    problems.append(f"ACKED {a.kind} {key} {a.version_id}: {exc}")
                    continue
                if a.data is None:
                    if not marker:
                        problems.append(f"acked delete of {key} is not a delete marker")
                elif marker or body != a.data:
                    problems.append(
                        f"ACKED {a.kind} {key} {a.version_id}: {len(body)} B read back, "
                        f"expected {len(a.data)} B"
                    )
                else:
                    verified += 1
            # The current version: the last one acknowledged before the cut,
            # or one of those in flight at the cut (durable or not).
            allowed = {a.version_id for a in ops if a.ack_ops > cut and a.start_ops <= cut}
            if done:
                allowed.add(done[-1].version_id)
            cur = reader.current(BUCKET, key)
            if cur is None:
                if done:
                    problems.append(f"{key}: no current version, expected {done[-1].version_id}")
            elif cur.version_id not in allowed:
                problems.append(f"{key}: current {cur.version_id} not in {sorted(allowed)}")
    finally:
        conn.close()
    return verified, problems


def _prepare(tmp_path: Path, seed: int) -> tuple[Path, Path, Path, list[Acked]]:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=SERVER_ARGS) as srv:
        srv.s3().create_bucket(Bucket=BUCKET)
        assert srv.stop() == 0
    snap = tmp_path / "snapshot"
    crashsim.copy_snapshot(data, snap)
    journal = tmp_path / "io.journal"
    env = {"SEGLAKE_IO_JOURNAL": str(journal)}
    srv = SeglakeServer(data, frontends=2, extra_args=SERVER_ARGS, env=env)
    try:
        srv.start()
        history = _workload(srv, journal, seed)
    finally:
        srv.kill()  # power cut at the very end; no shutdown work in the journal
        srv.close()
    return data, snap, journal, history


def test_power_cuts_recover_with_every_ack_intact(tmp_path: Path) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    data, snap, journal, history = _prepare(tmp_path, seed)
    ops = crashsim.read_journal(journal)
    assert len(ops) > 200, f"journal too short: {len(ops)} operations"
    kinds = {(o.kind, o.site) for o in ops}
    # SQLite's own files and every kind of writer file are in the journal.
    for must in [
        ("fsync", "sqlite.sync"),
        ("write", "sqlite.write"),
        ("fsync", "segment.fsync"),
        ("fsync", "seal.fsync"),
        ("write", "segment.append"),
        ("create", "segment.create"),
        ("dirsync", "segments_dir.fsync"),
    ]:
        if must[1] not in SKIPPED:  # the mutation check removed that fsync
            assert must in kinds, f"journal never saw {must}"
    for a in history:
        a.ack_ops = crashsim.ops_before(ops, a.ack_offset)
        a.start_ops = crashsim.ops_before(ops, a.start_offset)
    cuts = sorted(rng.randint(1, len(ops)) for _ in range(CUTS))
    subset = set(rng.sample(range(len(cuts)), SERVER_SUBSET))
    torn_states = dropped_entries = verified = nested_cuts = unflushed = rebuilt = 0
    failures: list[str] = []
    served: list[tuple[Path, int]] = []
    work = tmp_path / "crash"
    for i, state in enumerate(
        crashsim.crash_states(data.resolve(), snap, ops, cuts, rng, p_keep=0.5, p_torn=0.3)
    ):
        shutil.rmtree(work, ignore_errors=True)
        state.materialize(work)
        torn_states += state.torn_writes > 0
        dropped_entries += state.dropped_entries
        unflushed += crashsim.unflushed_records(ops, state.cut) > 0
        if i in subset:  # the raw crash state, before any recovery touched it
            keep = tmp_path / f"served-{i}"
            shutil.copytree(work, keep)
            served.append((keep, state.cut))
        nested_problems: list[str] = []
        if i % NESTED_EVERY == 0:
            pre = tmp_path / "pre-recovery"
            shutil.rmtree(pre, ignore_errors=True)
            shutil.copytree(work, pre)
        n, problems = _check_state(work, history, state.cut)
        verified += n
        if i % NESTED_EVERY == 0 and not problems:
            _report, differences, listed = check_index(Config(data_dir=str(work)))
            rebuilt += 1
            if differences:
                problems = [f"rebuild-index differs from the recovered database: {listed[:3]}"]
        if i % NESTED_EVERY == 0 and not problems:
            nested, nv, nested_problems = _crash_during_recovery(
                tmp_path, pre, history, state.cut, rng
            )
            nested_cuts += nested
            verified += nv
        if problems or nested_problems:
            failures.append(
                f"cut {state.cut}/{len(ops)} (torn={state.torn_writes}, dropped writes="
                f"{state.dropped_writes}, dropped entries={state.dropped_entries}): "
                f"{(problems or nested_problems)[:5]}"
            )
            if len(failures) >= 5:
                break
    report(
        "power-loss",
        power_cuts=len(cuts) if not failures else i + 1,
        power_cuts_during_recovery=nested_cuts,
        torn_states=torn_states,
        dropped_dir_entries=dropped_entries,
        records_appended_not_flushed=unflushed,
        rebuild_equivalence_checked=rebuilt,
        objects_verified=verified,
        journal_ops=len(ops),
        acked_ops=len(history),
        failures=len(failures),
    )
    assert not failures, "\n".join(failures)
    assert torn_states >= 0.2 * len(cuts), f"only {torn_states}/{len(cuts)} states had torn writes"
    assert unflushed > 0, "no crash state had records appended but not flushed"
    served_objects = 0
    for path, cut in served:
        served_objects += _serve_and_read(path, history, cut)
    report("power-loss-real-server", crash_states=len(served), objects_verified=served_objects)


_RECOVER_SCRIPT = """
import os, sys
from seglake.config import Config
from seglake.writer.main import Writer
w = Writer(Config(data_dir=sys.argv[1]))
w.close()
os._exit(0)
"""


def _crash_during_recovery(
    tmp_path: Path, pre: Path, history: list[Acked], cut: int, rng: random.Random
) -> tuple[int, int, list[str]]:
    """Recover ``pre`` in a writer that journals its I/O, cut power at random
    points of that recovery, and check each resulting state. Returns (cuts,
    objects verified, problems)."""
    snap = tmp_path / "pre-snapshot"
    shutil.rmtree(snap, ignore_errors=True)
    crashsim.copy_snapshot(pre, snap)
    journal = tmp_path / "recovery.journal"
    journal.unlink(missing_ok=True)
    env = dict(os.environ, SEGLAKE_IO_JOURNAL=str(journal))
    env.pop("SEGLAKE_FAILPOINTS", None)
    done = subprocess.run(
        [sys.executable, "-c", _RECOVER_SCRIPT, str(pre)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return 0, 0, [f"journaled recovery failed: {done.stderr[-500:]}"]
    ops = crashsim.read_journal(journal)
    if not ops:
        return 0, 0, []
    cuts = sorted(rng.randint(1, len(ops)) for _ in range(NESTED_CUTS))
    work = tmp_path / "crash-in-recovery"
    verified = 0
    for state in crashsim.crash_states(pre.resolve(), snap, ops, cuts, rng, p_keep=0.5, p_torn=0.3):
        shutil.rmtree(work, ignore_errors=True)
        state.materialize(work)
        n, problems = _check_state(work, history, cut)
        verified += n
        if problems:
            return (
                len(cuts),
                verified,
                [f"power cut {state.cut}/{len(ops)} during recovery: {p}" for p in problems],
            )
    return len(cuts), verified, []


def _serve_and_read(data_dir: Path, history: list[Acked], cut: int) -> int:
    """The real server starts on a crash state and serves every write
    acknowledged before the cut, byte for byte."""
    n = 0
    with SeglakeServer(data_dir, frontends=1, extra_args=SERVER_ARGS) as srv:
        s3 = srv.s3(max_attempts=3)
        for a in history:
            if a.ack_ops > cut:
                continue
            if a.data is None:
                head: Any
                try:
                    head = s3.head_object(Bucket=BUCKET, Key=a.key, VersionId=a.version_id)
                except Exception as exc:
                    # HEAD of a delete marker by version id: 405 with the marker header
                    resp = getattr(exc, "response", {})
                    hdrs = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                    assert hdrs.get("x-amz-delete-marker") == "true", (a.key, resp)
                    continue
                raise AssertionError(f"delete marker {a.key} served as an object: {head}")
            body = s3.get_object(Bucket=BUCKET, Key=a.key, VersionId=a.version_id)["Body"].read()
            assert body == a.data, f"{a.key} {a.version_id}: wrong bytes from the real server"
            n += 1
        assert srv.stop() == 0
    return n


def _write_journal(path: Path, recs: list[list[Any]], torn_tail: bytes = b"") -> None:
    """A journal as the writer's fileio layer appends it: length-prefixed msgpack."""
    import msgpack

    with open(path, "wb") as f:
        for r in recs:
            blob = msgpack.packb(r, use_bin_type=True)
            f.write(len(blob).to_bytes(4, "big") + blob)
        f.write(torn_tail)


@pytest.mark.parametrize("p_keep", [0.0, 1.0])
def test_crashsim_extremes(tmp_path: Path, p_keep: float) -> None:
    """Pure check of the model: with everything unsynced dropped the state is
    the synced one; with everything kept it is the writer's final view."""
    root = tmp_path / "root"
    snap = tmp_path / "snap"
    (snap / "d").mkdir(parents=True)
    (snap / "d" / "old").write_bytes(b"old")
    j = tmp_path / "j"

    recs = [
        ["create", "s", str(root / "d" / "a")],
        ["write", "s", str(root / "d" / "a"), 0, b"hello"],
        ["fsync", "s", str(root / "d" / "a")],
        ["dirsync", "s", str(root / "d")],
        ["write", "s", str(root / "d" / "a"), 5, b" world"],
        ["create", "s", str(root / "d" / "b")],
        ["write", "s", str(root / "d" / "b"), 0, b"bbb"],
        ["fsync", "s", str(root / "d" / "b")],
        ["unlink", "s", str(root / "d" / "old")],
    ]
    _write_journal(j, recs, torn_tail=b"\0\0\0\x09abc")  # a torn last record is ignored
    ops = crashsim.read_journal(j)
    assert len(ops) == len(recs)
    (state,) = crashsim.crash_states(
        root, snap, ops, [len(ops)], random.Random(1), p_keep=p_keep, p_torn=0.0
    )
    if p_keep == 0.0:
        assert state.files == {"d/a": b"hello", "d/old": b"old"}
    else:
        assert state.files == {"d/a": b"hello world", "d/b": b"bbb"}


def test_crashsim_rename_is_atomic(tmp_path: Path) -> None:
    """Pure check of the model: a replace-by-rename (temp file fsynced,
    renamed over the old file) leaves the old or the new file, never
    neither and never a torn one; after the directory fsync only the new."""

    root, snap, j = tmp_path / "root", tmp_path / "snap", tmp_path / "j"
    (snap / "d").mkdir(parents=True)
    (snap / "d" / "f").write_bytes(b"old")
    tmp, final = str(root / "d" / "f.tmp"), str(root / "d" / "f")
    recs = [
        ["create", "s", tmp],
        ["write", "s", tmp, 0, b"new"],
        ["fsync", "s", tmp],
        ["rename", "s", tmp, final],
        ["dirsync", "s", str(root / "d")],
    ]
    _write_journal(j, recs)
    ops = crashsim.read_journal(j)
    seen: set[tuple[tuple[str, bytes], ...]] = set()
    for seed in range(200):
        for state in crashsim.crash_states(
            root, snap, ops, [4, 5], random.Random(seed), p_keep=0.5, p_torn=0.5
        ):
            files = tuple(sorted(state.files.items()))
            if state.cut == 5:
                assert files == (("d/f", b"new"),), files
            seen.add(files)
    assert seen == {(("d/f", b"old"),), (("d/f", b"new"),)}, seen
