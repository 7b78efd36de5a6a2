"""In-process checks of a stopped store, shared by the power-cut tests.

Both read ``meta.db`` read-only and the files next to it; neither needs a
server. Each returns a list of problems (empty = consistent).
"""

from __future__ import annotations

import os
import random

from seglake.audit.fsck import segment_path
from seglake.audit.replay import replay
from seglake.config import Config
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.format.segment import read_record
from seglake.meta.live_chunks import collect_live_chunks
from seglake.meta.schema import open_read, query


def record_problems(cfg: Config, *, in_flight_buckets: frozenset[str] = frozenset()) -> list[str]:
    """Replaying the segments' records (what rebuild-index would restore)
    agrees with the database: every committed bucket's newest record says
    what its row says, a bucket without a row is gone, and every version's
    newest state record (none: ACTIVE) is its row's state. A record *ahead*
    of the database (records flushed before a COMMIT lost with the power,
    for a request never acknowledged) is restated by recovery, so only the
    buckets the caller names as having a change in flight at the cut may
    differ."""
    log = replay(cfg.segments_dir)
    problems = [f"log: {p}" for p in log.problems]
    conn = open_read(str(cfg.db_path))
    try:
        db_buckets = {
            str(r[0]): (r[1], r[2])
            for r in query(conn, "SELECT name, versioning, policy FROM buckets")
        }
        for name, (versioning, policy) in db_buckets.items():
            body = log.buckets.get(name)
            if body is None:
                problems.append(f"bucket {name}: no bucket record in the log")
            elif (body["versioning"], body["policy"]) != (versioning, policy) and (
                name not in in_flight_buckets
            ):
                problems.append(
                    f"bucket {name}: record says {body['versioning']}/{body['policy']!r}, "
                    f"database {versioning}/{policy!r}"
                )
        for name, body in log.buckets.items():
            if body is not None and name not in db_buckets and name not in in_flight_buckets:
                problems.append(f"bucket {name}: the log has it, the database does not")
        states = {str(r[0]): str(r[1]) for r in query(conn, "SELECT uid, state FROM versions")}
        for uid, state in states.items():
            logged = log.states.get(uid, "ACTIVE")
            if logged != state:
                problems.append(f"version {uid}: record {logged}, database {state}")
            if uid not in log.manifests:
                problems.append(f"version {uid} ({state}): no manifest record")
        for uid in log.manifests.keys() - states.keys():
            if log.states.get(uid) != "PURGED":
                problems.append(f"version {uid}: manifest record without a row or PURGED record")
    finally:
        conn.close()
    return problems


def live_chunk_problems(cfg: Config) -> tuple[int, list[str]]:
    """Every chunk a kept version or an open upload's part references reads
    back with its BLAKE3. Returns (chunks verified, problems)."""
    conn = open_read(str(cfg.db_path))
    try:
        conn.execute("BEGIN")
        live = collect_live_chunks(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    problems = list(live.problems)
    verified = 0
    for seg_id, chunks in sorted(live.by_segment.items()):
        path = segment_path(cfg, seg_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            problems.append(f"segment {seg_id} referenced by {len(chunks)} chunk(s): {exc}")
            continue
        try:
            for _seg, offset, length, digest in sorted(chunks):
                try:
                    read_record(fd, offset, length, digest, path=str(path))
                    verified += 1
                except (FormatError, OSError, ValueError) as exc:
                    problems.append(f"chunk {seg_id}@{offset}: {exc}")
        finally:
            os.close(fd)
    return verified, problems


def fault_seed() -> int:
    """The run's seed: ``SEGLAKE_FAULT_SEED`` or a fresh one, printed for replay."""
    env = os.environ.get("SEGLAKE_FAULT_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(1 << 30)
    print(f"\nseed {seed} (replay with SEGLAKE_FAULT_SEED={seed})")
    return seed


def object_bytes(cfg: Config, manifest: bytes) -> bytes:
    """An object's content, every chunk checked as a GET checks it."""
    m = decode_manifest(manifest, path="meta.db", with_meta=False)
    out = bytearray()
    for c in m.chunks:
        path = segment_path(cfg, c.segment_id)
        fd = os.open(path, os.O_RDONLY)
        try:
            out += read_record(fd, c.offset, c.length, c.digest, path=str(path))
        finally:
            os.close(fd)
    return bytes(out)
