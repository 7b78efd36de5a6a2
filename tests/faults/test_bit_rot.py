"""Bit rot: single-bit flips are always detected and never served.

A real server stores objects in small, sealed segments; then the test flips
one bit at a time in distinct places:
- chunk data: a GET must fail with 500 (there is no second copy), never
  return bytes; scrub reports the version (and marks it DAMAGED);
- record headers and footers of sealed segments, segment headers: GETs read
  by the manifest's offsets and digests, so they return the right bytes (or
  fail), never wrong ones; scrub's structural pass reports the segment file;
- manifest records in the segments: GETs use the database copy (right
  bytes); scrub reports the segment file.
Scrub must report every flip and nothing else. Segment headers carry no
checksum: flips land in the fields the decoder validates (magic, version,
flags, reserved, segment id), not in the informational creation time.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from botocore.exceptions import ClientError

from seglake.audit.replay import replay
from seglake.format.manifest import decode_manifest
from seglake.format.segment import RECORD_HEADER_SIZE
from tests.faults.figures import report
from tests.harness import SeglakeServer

LONG = os.environ.get("SEGLAKE_LONG_FAULTS") == "1"
BUCKET = "bitrot"
OBJECTS = 110
DATA_FLIPS = 30
RECORD_HEADER_FLIPS = 5
FOOTER_FLIPS = 8
SEGMENT_HEADER_FLIPS = 5
MANIFEST_FLIPS = 12
# ~825 KB of objects over 24 KiB segments: ~29 segments, comfortably more
# than the 18 the structural flips need whatever sizes the seed draws.
SERVER_ARGS = ["--segment-max-bytes", "24KiB", "--segment-idle-seal", "1s"]
HEADER_CHECKED_BYTES = 24  # magic 8 | version 2 | flags 2 | reserved 4 | id 8


def _flip(path: Path, offset: int, rng: random.Random) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ (1 << rng.randrange(8))]))


def _rows(data: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(f"file:{data / 'meta.db'}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_single_bit_flips_detected_never_served(tmp_path: Path) -> None:
    seed = int(os.environ.get("SEGLAKE_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"\nseed {seed}")
    rng = random.Random(seed)
    data = tmp_path / "data"
    seg_dir = data / "objects" / "segments"
    bodies: dict[str, bytes] = {}
    with SeglakeServer(data, frontends=1, extra_args=SERVER_ARGS) as srv:
        s3 = srv.s3(max_attempts=3)
        s3.create_bucket(Bucket=BUCKET)
        for i in range(OBJECTS):
            body = rng.randbytes(rng.randint(1000, 14_000))
            bodies[f"o{i:03d}"] = body
            s3.put_object(Bucket=BUCKET, Key=f"o{i:03d}", Body=body)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = _rows(data, "SELECT state FROM segments")
            if states and all(s == ("SEALED",) for s in states):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("segments were not sealed by the idle timer")
        # key -> (uid, chunk) ; segment -> keys stored in it
        where: dict[str, tuple[str, int, int, int]] = {}
        for key, uid, manifest in _rows(data, "SELECT key, uid, manifest FROM versions"):
            m = decode_manifest(bytes(manifest), path="db", with_meta=False)  # type: ignore[arg-type]
            (c,) = m.chunks
            where[str(key)] = (str(uid), c.segment_id, c.offset, c.length)
        segs = sorted({w[1] for w in where.values()})
        rng.shuffle(segs)
        need = FOOTER_FLIPS + SEGMENT_HEADER_FLIPS + RECORD_HEADER_FLIPS
        assert len(segs) >= need, f"only {len(segs)} segments"
        footer_segs = segs[:FOOTER_FLIPS]
        header_segs = segs[FOOTER_FLIPS : FOOTER_FLIPS + SEGMENT_HEADER_FLIPS]
        rechdr_segs = segs[FOOTER_FLIPS + SEGMENT_HEADER_FLIPS : need]
        keys = sorted(where)
        rng.shuffle(keys)
        data_keys = keys[:DATA_FLIPS]
        manifest_keys = keys[DATA_FLIPS : DATA_FLIPS + MANIFEST_FLIPS]
        expect_files: set[str] = set()
        log = replay(seg_dir)  # where each manifest record is, before any flip
        for k in data_keys:
            _uid, seg, off, length = where[k]
            _flip(seg_dir / f"{seg:016x}.seg", off + rng.randrange(length), rng)
        for seg in footer_segs:
            path = seg_dir / f"{seg:016x}.seg"
            size = path.stat().st_size
            end = max(w[2] + w[3] for w in where.values() if w[1] == seg)
            _flip(path, rng.randrange(end, size), rng)
            expect_files.add(str(path))
        for seg in header_segs:
            path = seg_dir / f"{seg:016x}.seg"
            _flip(path, rng.randrange(HEADER_CHECKED_BYTES), rng)
            expect_files.add(str(path))
        for seg in rechdr_segs:
            path = seg_dir / f"{seg:016x}.seg"
            k = rng.choice([k for k in where if where[k][1] == seg])
            _flip(path, where[k][2] - RECORD_HEADER_SIZE + rng.randrange(RECORD_HEADER_SIZE), rng)
            expect_files.add(str(path))
        for k in manifest_keys:
            at = log.manifests[where[k][0]]
            path = seg_dir / f"{at.segment_id:016x}.seg"
            _flip(path, at.offset + RECORD_HEADER_SIZE + rng.randrange(len(at.data)), rng)
            expect_files.add(str(path))
        flips = DATA_FLIPS + FOOTER_FLIPS + SEGMENT_HEADER_FLIPS + RECORD_HEADER_FLIPS
        flips += MANIFEST_FLIPS

        def check_gets() -> tuple[int, int]:
            served = refused = 0
            for key, body in bodies.items():
                try:
                    got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                except ClientError as exc:
                    status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
                    assert status == 500, f"{key}: {status} {exc}"
                    refused += 1
                    continue
                assert got == body, f"{key}: WRONG BYTES served after a bit flip"
                assert key not in data_keys, f"{key}: served although its data is damaged"
                served += 1
            return served, refused

        served, refused = check_gets()
        assert refused == DATA_FLIPS, refused
        out = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "scrub", "--json", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 1, out.stderr
        doc = json.loads(out.stdout)
        reported_keys = {d["key"] for d in doc["damaged"]}
        reported_files = {f["path"] for f in doc["file_damage"]}
        assert reported_keys == set(data_keys), (
            sorted(reported_keys ^ set(data_keys)),
            doc["damaged"][:5],
        )
        assert reported_files == expect_files, sorted(reported_files ^ expect_files)
        assert sorted(doc["marked"]) == sorted(where[k][0] for k in data_keys), doc["mark_note"]
        # Marked DAMAGED: still never served; everything else unchanged.
        served2, refused2 = check_gets()
        assert (served2, refused2) == (served, refused)
        assert srv.stop() == 0
    report(
        "bit-rot",
        bit_flips=flips,
        data_flips=DATA_FLIPS,
        structure_flips=flips - DATA_FLIPS,
        detected=len(reported_keys) + len(reported_files),
        wrong_bytes_served=0,
        objects_verified=served,
    )
