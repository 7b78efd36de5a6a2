"""Simulated power cuts during segment GC and metadata-record writes.

How: a real server builds the dataset of ``test_gc_crash`` (objects of
which most die, a copy whose source is deleted, an open multipart upload,
versioning suspended so overwrites and deletes leave DELETED rows and
state records), stops, and is snapshotted. It is started again with
``SEGLAKE_IO_JOURNAL`` and, under maintenance mode, runs ``gc-run`` (purges
DELETED rows: PURGED records appended; the records of dropped segments
copied forward; dead segment files unlinked) and ``gc-rewrite-run`` (live
chunks copied, re-pointed manifests appended as records after them). ``crashsim`` replays the
journal to random cut points and builds the disks a power cut could leave.

For each crash state, in-process: the writer's real start-up succeeds
(recovery), ``fsck`` (all manifest records) and ``scrub``
are clean, every chunk a kept version or the open part references reads
back with its checksum, every kept object's current version reads back
byte for byte, and the metadata records agree with ``meta.db``. A few
states are then served by the real server: boto3 reads everything back,
and both GC commands run again to completion.

``SEGLAKE_LONG_FAULTS=1`` raises the cut count.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from seglake.audit.fsck import run_fsck
from seglake.audit.scrub import run_scrub
from seglake.config import Config
from seglake.meta.reads import MetaReader
from seglake.meta.schema import open_read
from seglake.writer.main import Writer
from tests.faults import crashsim
from tests.faults.figures import report
from tests.faults.storecheck import (
    fault_seed,
    live_chunk_problems,
    object_bytes,
    record_problems,
)
from tests.faults.test_gc_crash import BUCKET, SERVER_ARGS, Dataset, cli, fsck_clean
from tests.harness import SeglakeServer

LONG = os.environ.get("SEGLAKE_LONG_FAULTS") == "1"
CUTS = int(os.environ.get("SEGLAKE_GC_POWER_CUTS", "300" if LONG else "40"))
SERVER_SUBSET = 2
SKIPPED = set(filter(None, os.environ.get("SEGLAKE_TEST_SKIP_FSYNC", "").split(",")))


def _current_bytes(cfg: Config, reader: MetaReader, key: str) -> bytes:
    row = reader.current(BUCKET, key)
    if row is None or row.delete_marker or row.manifest is None:
        raise AssertionError(f"{key}: no current object")
    return object_bytes(cfg, bytes(row.manifest))


def _check_state(
    data_dir: Path, kept: dict[str, bytes], in_flight: frozenset[str]
) -> tuple[int, list[str]]:
    cfg = Config(data_dir=str(data_dir))
    try:
        writer = Writer(cfg)
    except Exception as exc:
        return 0, [f"recovery failed: {exc!r}"]
    writer.close()
    os.close(writer.lock_fd)
    problems = [f"fsck: {f.kind}: {f.detail}" for f in run_fsck(cfg, all_manifests=True).errors]
    problems += [f"scrub: {d.key} {d.version_id}: {d.reason}" for d in run_scrub(cfg).damaged]
    chunks, chunk_problems = live_chunk_problems(cfg)
    problems += chunk_problems
    problems += [f"record: {p}" for p in record_problems(cfg, in_flight_buckets=in_flight)]
    conn = open_read(str(cfg.db_path))
    try:
        reader = MetaReader(conn)
        for key, data in kept.items():
            try:
                if _current_bytes(cfg, reader, key) != data:
                    problems.append(f"{key}: wrong bytes")
            except (AssertionError, OSError, ValueError) as exc:
                problems.append(f"{key}: {exc}")
    finally:
        conn.close()
    return chunks, problems


@dataclass
class Prepared:
    data: Path
    snapshot: Path
    journal: Path
    dataset: Dataset
    versioning_sent: int = 0  # journal lengths around the versioning change
    versioning_acked: int = 0
    gc_started: int = 0  # journal length when GC began


def _journal_len(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _prepare(tmp_path: Path) -> Prepared:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=SERVER_ARGS) as srv:
        dataset = Dataset(srv.s3())
        assert srv.stop() == 0
    snap = tmp_path / "snapshot"
    crashsim.copy_snapshot(data, snap)
    journal = tmp_path / "io.journal"
    prep = Prepared(data, snap, journal, dataset)
    srv = SeglakeServer(
        data, frontends=1, extra_args=SERVER_ARGS, env={"SEGLAKE_IO_JOURNAL": str(journal)}
    )
    try:
        srv.start()
        # Metadata records under the journal too: overwrites and deletes in
        # the versioning-suspended bucket (state records), a new bucket and
        # a versioning change (bucket records).
        s3 = srv.s3()
        for i in range(8):
            s3.put_object(Bucket=BUCKET, Key=f"x/{i}", Body=b"first" * (i + 1))
            s3.put_object(Bucket=BUCKET, Key=f"x/{i}", Body=b"second" * (i + 1))
            if i % 2:
                s3.delete_object(Bucket=BUCKET, Key=f"x/{i}")
        s3.create_bucket(Bucket="gc-extra")
        prep.versioning_sent = _journal_len(journal)
        s3.put_bucket_versioning(Bucket="gc-extra", VersioningConfiguration={"Status": "Suspended"})
        prep.versioning_acked = _journal_len(journal)
        assert cli(data, "maintenance", "enable").returncode == 0
        prep.gc_started = _journal_len(journal)
        for command in ("gc-run", "gc-rewrite-run"):
            out = cli(data, command, "--json")
            assert out.returncode == 0, out.stdout + out.stderr
            assert json.loads(out.stdout)["status"] == "ok", out.stdout
    finally:
        srv.kill()  # the power cut comes after the last operation at the latest
        srv.close()
    return prep


def test_power_cuts_during_gc_and_record_writes(tmp_path: Path) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    prep = _prepare(tmp_path)
    data, snap, dataset = prep.data, prep.snapshot, prep.dataset
    ops = crashsim.read_journal(prep.journal)
    sites = {(o.kind, o.site) for o in ops}
    for must in [
        ("unlink", "gc_segment.unlink"),
        ("dirsync", "gc_segments_dir.fsync"),
        ("write", "segment.append"),
        ("fsync", "segment.fsync"),
        ("fsync", "sqlite.sync"),
    ]:
        if must[1] not in SKIPPED:  # the mutation check removed that fsync
            assert must in sites, f"journal never saw {must}"
    kept = {**dataset.kept}
    versioning_window = (
        crashsim.ops_before(ops, prep.versioning_sent),
        crashsim.ops_before(ops, prep.versioning_acked),
    )
    # Random cuts, plus one right after each SQLite sync of the GC phase:
    # a COMMIT just became durable and the files that follow it (renames
    # of staged manifests, unlinks) have not happened or are not durable.
    gc_start = crashsim.ops_before(ops, prep.gc_started)
    commits = [i + 1 for i, o in enumerate(ops) if i >= gc_start and o.site == "sqlite.sync"]
    cuts = sorted([rng.randint(1, len(ops)) for _ in range(CUTS)] + commits)
    subset = set(rng.sample(range(len(cuts)), SERVER_SUBSET))
    work = tmp_path / "crash"
    failures: list[str] = []
    served: list[Path] = []
    torn = dropped_entries = chunks = 0
    for i, state in enumerate(
        crashsim.crash_states(data.resolve(), snap, ops, cuts, rng, p_keep=0.5, p_torn=0.3)
    ):
        shutil.rmtree(work, ignore_errors=True)
        state.materialize(work)
        torn += state.torn_writes > 0
        dropped_entries += state.dropped_entries
        if i in subset:
            keep = tmp_path / f"served-{i}"
            shutil.copytree(work, keep)
            served.append(keep)
        lo, hi = versioning_window
        in_flight = frozenset({"gc-extra"}) if lo <= state.cut < hi else frozenset()
        n, problems = _check_state(work, kept, in_flight)
        chunks += n
        if problems:
            failures.append(f"cut {state.cut}/{len(ops)}: {problems[:5]}")
            if len(failures) >= 5:
                break
    report(
        "power-loss-gc",
        power_cuts=len(cuts) if not failures else i + 1,
        cuts_after_gc_commits=len(commits),
        torn_states=torn,
        dropped_dir_entries=dropped_entries,
        live_chunks_verified=chunks,
        journal_ops=len(ops),
        failures=len(failures),
    )
    assert not failures, "\n".join(failures)
    for path in served:
        with SeglakeServer(path, frontends=1, extra_args=SERVER_ARGS) as srv:
            dataset.s3 = srv.s3(max_attempts=3)
            dataset.verify()
            # The cut may have come before maintenance mode was durable.
            assert cli(path, "maintenance", "enable").returncode == 0
            for command in ("gc-run", "gc-rewrite-run"):
                out = cli(path, command, "--json")
                assert out.returncode == 0, out.stdout + out.stderr
            fsck_clean(path)
            assert cli(path, "maintenance", "disable").returncode == 0
            dataset.verify()
            assert srv.stop() == 0
