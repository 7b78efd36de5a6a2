"""Random-time kill -9 of any process of the tree under mixed load.

Three client threads run a mixed load (PUT, versioned overwrite, copy,
multipart, delete) against the real server while the test kills, at random
moments, the writer, a frontend, the maintenance process or the supervisor
(then the whole tree is restarted on the same data dir, as systemd would).
Clients record only what was acknowledged. At the end (and after every
supervisor kill) every acknowledged version reads back byte for byte,
every acknowledged delete is still a delete marker, and after a clean stop
fsck and scrub are clean.

Fast tier: 12 kills. ``SEGLAKE_LONG_FAULTS=1``: 500 (``SEGLAKE_RANDOM_KILLS``
overrides either).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from seglake.audit.fsck import run_fsck
from seglake.audit.scrub import run_scrub
from seglake.config import Config
from tests.faults.figures import report
from tests.faults.util import Ack, processes_by_name, sigkill, status_retry, verify_acked, wait_for
from tests.harness import SeglakeServer

LONG = os.environ.get("SEGLAKE_LONG_FAULTS") == "1"
KILLS = int(os.environ.get("SEGLAKE_RANDOM_KILLS", "500" if LONG else "12"))
BUCKET = "randomkills"
THREADS = 3
SERVER_ARGS = ["--segment-max-bytes", "64KiB", "--restart-backoff-max", "0.3s"]
VICTIMS = ["writer"] * 4 + ["frontend"] * 3 + ["maintenance"] * 2 + ["supervisor"]
TIME_LIMIT_S = 3600.0 if LONG else 150.0


class Load:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.endpoint_srv: SeglakeServer | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[Ack] = []
        self.attempts = 0
        self.crashes: list[str] = []
        self.generation = 0

    def start(self, srv: SeglakeServer) -> list[threading.Thread]:
        self.endpoint_srv = srv
        threads = [
            threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(THREADS)
        ]
        for th in threads:
            th.start()
        return threads

    def _client(self) -> tuple[int, Any]:
        with self.lock:
            srv, gen = self.endpoint_srv, self.generation
        assert srv is not None
        return gen, srv.s3(max_attempts=1, connect_timeout=2, read_timeout=15)

    def _run(self, t: int) -> None:
        try:
            self._loop(t)
        except BaseException as exc:
            self.crashes.append(f"thread {t}: {exc!r}")

    def _loop(self, t: int) -> None:
        rng = random.Random(self.seed * 10 + t)
        gen, s3 = self._client()
        live: dict[str, bytes] = {}
        maybe: dict[str, list[bytes]] = {}  # key -> contents of unanswered overwrites
        for n in range(1_000_000):
            if self.stop.is_set():
                return
            if gen != self.generation:
                gen, s3 = self._client()
            self.attempts += 1
            try:
                self._op(s3, rng, t, n, live, maybe)
            except Exception:
                self.stop.wait(0.05)

    def _ack(self, key: str, vid: str, data: bytes | None, alts: tuple[bytes, ...] = ()) -> None:
        with self.lock:
            self.acked.append(Ack(key, vid, data, alts))

    def _op(
        self,
        s3: Any,
        rng: random.Random,
        t: int,
        n: int,
        live: dict[str, bytes],
        maybe: dict[str, list[bytes]],
    ) -> None:
        x = rng.random()
        if x < 0.4 or not live:
            key, data = f"t{t}/k{n:06d}", rng.randbytes(rng.choice([0, 500, 9000, 40_000]))
            r = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            self._ack(key, r["VersionId"], data)
            live[key] = data
        elif x < 0.6:
            key, data = rng.choice(sorted(live)), rng.randbytes(rng.randint(1, 20_000))
            try:
                r = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            except Exception:
                maybe.setdefault(key, []).append(data)
                raise
            self._ack(key, r["VersionId"], data)
            live[key] = data
            maybe.pop(key, None)
        elif x < 0.72:
            src, key = rng.choice(sorted(live)), f"t{t}/c{n:06d}"
            r = s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": src})
            alts = tuple(maybe.get(src, ()))
            self._ack(key, r["VersionId"], live[src], alts)
            live[key] = live[src]
            if alts:
                maybe[key] = list(alts)
        elif x < 0.85:
            key, data = f"t{t}/m{n:06d}", rng.randbytes(rng.randint(1, 30_000))
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=data)
            r = s3.complete_multipart_upload(
                Bucket=BUCKET,
                Key=key,
                UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag["ETag"]}]},
            )
            self._ack(key, r["VersionId"], data)
            live[key] = data
        else:
            key = rng.choice(sorted(live))
            r = s3.delete_object(Bucket=BUCKET, Key=key)
            self._ack(key, r["VersionId"], None)
            del live[key]


def test_random_kills_under_mixed_load(tmp_path: Path) -> None:
    seed = int(os.environ.get("SEGLAKE_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"\nseed {seed}")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    kills: Counter[str] = Counter()
    verified = 0
    load = Load(seed)
    srv = SeglakeServer(data_dir, frontends=2, extra_args=SERVER_ARGS, log_path=log)
    threads: list[threading.Thread] = []
    started = time.monotonic()
    try:
        srv.start()
        srv.s3().create_bucket(Bucket=BUCKET)
        threads = load.start(srv)
        for _ in range(KILLS):
            if time.monotonic() - started > TIME_LIMIT_S:
                break
            time.sleep(rng.uniform(0.05, 0.8))
            victim = rng.choice(VICTIMS)
            if victim == "supervisor":
                assert srv.proc is not None
                srv.refresh_pids(quiet=True)
                sigkill(srv.proc.pid)
                kills["supervisor"] += 1
                # Orphaned children stop by themselves (they watch their
                # parent); the test reaps whatever is left by pid.
                srv.kill()
                srv.close()
                srv = SeglakeServer(data_dir, frontends=2, extra_args=SERVER_ARGS, log_path=log)
                srv.start()
                with load.lock:
                    load.endpoint_srv = srv
                    load.generation += 1
                continue
            procs = processes_by_name(status_retry(srv, timeout=30))
            name = victim if victim != "frontend" else f"frontend-{rng.randrange(2)}"
            old = procs[name]
            if not old.get("alive"):
                continue
            sigkill(int(old["pid"]))
            kills[victim] += 1

            def back(
                name: str = name, old_pid: int = int(old["pid"]), live: SeglakeServer = srv
            ) -> bool:
                p = processes_by_name(live.status())[name]
                if p.get("alive") and p.get("pid") != old_pid:
                    live.known_pids.add(int(p["pid"]))
                    return True
                return False

            wait_for(back, timeout=30, interval=0.1, what=f"{name} to restart")
        load.stop.set()
        for th in threads:
            th.join(60)
        assert not any(th.is_alive() for th in threads), "load threads hung"
        assert not load.crashes, load.crashes
        verified = verify_acked(srv, BUCKET, load.acked)
        assert srv.stop() == 0, srv.log_tail()
    finally:
        load.stop.set()
        srv.close()
    cfg = Config(data_dir=str(data_dir))
    fsck = run_fsck(cfg, all_manifests=True)
    scrub = run_scrub(cfg)
    report(
        "random-kills",
        kills=sum(kills.values()),
        writer_kills=kills["writer"],
        frontend_kills=kills["frontend"],
        maintenance_kills=kills["maintenance"],
        supervisor_kills=kills["supervisor"],
        requests=load.attempts,
        acked=len(load.acked),
        objects_verified=verified,
        fsck_errors=len(fsck.errors),
        scrub_damage=len(scrub.damaged) + len(scrub.files),
    )
    assert fsck.clean, fsck.errors[:10]
    assert not scrub.damaged and not scrub.files, (scrub.damaged[:5], scrub.files[:5])
    assert len(load.acked) > 0
