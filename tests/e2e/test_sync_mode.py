"""The barrier `status` reports is the two-flush one of segment format 2
(`seglake/writer/commit.py`), whatever `--sync-mode` says (kept so existing
command lines still start; it chose how manifest *files* were synced, and
format 2 has none), and batches of many manifest records are stored and
served: concurrent PUTs plus a DeleteObjects of several keys, read back
byte for byte and through fsck's check of every manifest record.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from seglake.config import Config, validate
from seglake.writer.commit import BARRIER
from tests.e2e._helpers import cli_json
from tests.harness import SeglakeServer

BUCKET = "sync-mode"
THREADS = 8
PUTS_PER_THREAD = 12


def _workload(s3: Any) -> tuple[dict[str, bytes], list[str]]:
    s3.create_bucket(Bucket=BUCKET)
    stored: dict[str, bytes] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def run(t: int) -> None:
        try:
            for i in range(PUTS_PER_THREAD):
                key, body = f"t{t}/k{i}", os.urandom(100 + 37 * i)
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                with lock:
                    stored[key] = body
        except Exception as exc:  # reported below, with the thread's name
            errors.append(f"thread {t}: {exc!r}")

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    # One mutation, one delete marker (and manifest) per key.
    gone = [f"t0/k{i}" for i in range(6)]
    out = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in gone]})
    assert not out.get("Errors") and len(out["Deleted"]) == len(gone), out
    assert all(d["DeleteMarker"] for d in out["Deleted"]), out
    for key in gone:
        del stored[key]
    return stored, gone


@pytest.mark.parametrize("mode", ["auto", "fsync"])
def test_status_names_the_barrier_and_batches_read_back(tmp_path: Path, mode: str) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, extra_args=["--sync-mode", mode]) as srv:
        assert srv.status()["store"]["barrier"] == BARRIER

        s3 = srv.s3()
        stored, gone = _workload(s3)
        for key, body in stored.items():
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
        for key in gone:
            with pytest.raises(s3.exceptions.NoSuchKey):
                s3.get_object(Bucket=BUCKET, Key=key)
        code, doc = cli_json(data, "fsck", "--all-manifests")
        assert code == 0 and doc["clean"], doc["errors"]
        assert srv.stop() == 0


def test_sync_mode_is_validated() -> None:
    validate(Config(sync_mode="fsync"))
    with pytest.raises(ValueError, match="sync-mode"):
        validate(Config(sync_mode="syncfs"))
