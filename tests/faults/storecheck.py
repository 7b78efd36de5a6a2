"""In-process checks of a stopped store, shared by the power-cut tests.

Both read ``meta.db`` read-only and the files next to it; neither needs a
server. Each returns a list of problems (empty = consistent).
"""

from __future__ import annotations

import os
import random
from typing import Any

from seglake.audit.fsck import segment_path
from seglake.config import Config
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.format.records import (
    KIND_BUCKET,
    KIND_STATE,
    bucket_record_path,
    decode_record,
    state_record_path,
)
from seglake.format.segment import read_record
from seglake.meta.live_chunks import collect_live_chunks
from seglake.meta.schema import open_read, query


def _record(path: Any, kind: int) -> tuple[dict[str, Any] | None, str | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path.name}: missing"
    try:
        got, body = decode_record(raw, path=str(path))
    except FormatError as exc:
        return None, str(exc)
    if got != kind:
        return None, f"{path.name}: kind {got}, expected {kind}"
    return body, None


def record_problems(cfg: Config, *, in_flight_buckets: frozenset[str] = frozenset()) -> list[str]:
    """Every committed bucket and non-ACTIVE version has its record, and the
    record says what the database says (records are written before COMMIT,
    so they are never behind it). A record *ahead* of the database (a crash
    between the record and COMMIT, for a request never acknowledged) is not
    a problem: the caller names the buckets with a change in flight at the
    cut, whose record may say either."""
    root = cfg.manifests_dir.parent
    problems: list[str] = []
    conn = open_read(str(cfg.db_path))
    try:
        for name, versioning, policy in query(conn, "SELECT name, versioning, policy FROM buckets"):
            body, err = _record(bucket_record_path(root, str(name)), KIND_BUCKET)
            if err is not None or body is None:
                problems.append(f"bucket {name}: {err}")
            elif (body["versioning"], body["policy"]) != (versioning, policy) and (
                name not in in_flight_buckets
            ):
                problems.append(
                    f"bucket {name}: record says {body['versioning']}/{body['policy']!r}, "
                    f"database {versioning}/{policy!r}"
                )
        for uid, state in query(conn, "SELECT uid, state FROM versions WHERE state != 'ACTIVE'"):
            body, err = _record(state_record_path(root, str(uid)), KIND_STATE)
            if err is not None or body is None:
                problems.append(f"version {uid} ({state}): {err}")
            elif body["state"] != state and body["state"] != "PURGED":
                # PURGED ahead of a row still there: the purge's COMMIT was
                # lost with the power; the next gc-run purges it again.
                problems.append(f"version {uid}: record {body['state']}, database {state}")
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
