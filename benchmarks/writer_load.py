"""The writer alone: small PUT mutations straight over its IPC socket.

Starts a real Seglake (``tests.harness.SeglakeServer``, one frontend that
stays idle), connects to the writer's socket like a frontend does, and keeps
``--concurrency`` ``put`` mutations in flight, each carrying a 4 KiB body
inline (the frontend's path for small objects). Prints the writer's
throughput and its CPU per mutation, split into user and system time: no
HTTP, no SigV4, no load generator competing for the cores, so the writer's
own costs (group commit, SQL, manifest files, fsyncs) are measured with
much less noise than through ``benchmarks.run``.

Back-to-back runs bias each other if the first one's data dir is deleted:
on this machine's ext4 a file created within a minute of thousands of
deletions costs far more system time (inode allocation skips recently
freed inodes; measured 226 → 1,212 µs of writer system time per put).
Like ``benchmarks.run``, it waits until a minute has passed since the last
run's clean-up; ``--keep`` leaves the data dir under ``.bench-tmp/``
(remove it later).

    .venv/bin/python -m benchmarks.writer_load --concurrency 32 --seconds 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Final

import blake3
import trio

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.run import scratch_server  # noqa: E402
from seglake.ipc.channel import connect  # noqa: E402
from seglake.ipc.messages import CreateBucket, Ping, Put  # noqa: E402

BUCKET: Final = "writer-load"
BODY_BYTES: Final = 4096
WARMUP_S: Final = 1.0


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[11]), int(fields[12])


async def drive(socket_path: str, concurrency: int, seconds: float) -> str:
    channel, _ = await connect(socket_path, max_in_flight=max(64, concurrency))
    body = os.urandom(BODY_BYTES)
    digest = blake3.blake3(body).digest()
    etag = hashlib.md5(body).hexdigest()
    done = 0
    stop = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.run_reader)
        await channel.request(CreateBucket(bucket=BUCKET, versioning="enabled"))
        pid = (await channel.request(Ping()))[0].pid

        async def worker(n: int) -> None:
            nonlocal done
            i = 0
            while not stop:
                put = Put(
                    bucket=BUCKET, key=f"w{n}-{i}", size=BODY_BYTES, etag=etag,
                    tail_digest=digest,
                )  # fmt: skip
                await channel.request(put, body)
                i += 1
                done += 1

        async with trio.open_nursery() as workers:
            for n in range(concurrency):
                workers.start_soon(worker, n)
            await trio.sleep(WARMUP_S)
            ops0, (user0, sys0), t0 = done, cpu_ticks(pid), time.monotonic()
            await trio.sleep(seconds)
            ops1, (user1, sys1), t1 = done, cpu_ticks(pid), time.monotonic()
            stop = True
        nursery.cancel_scope.cancel()
    ops = max(1, ops1 - ops0)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return (
        f"c={concurrency}: {ops / (t1 - t0):,.0f} puts/s; writer CPU per put: "
        f"user {(user1 - user0) * tick_us / ops:.0f} µs, system {(sys1 - sys0) * tick_us / ops:.0f} µs"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="leave the data dir in place")
    args = parser.parse_args(argv)
    with scratch_server("writer-", keep=args.keep) as (data_dir, _):
        line = trio.run(
            drive, str(data_dir / ".seglake-writer.sock"), args.concurrency, args.seconds
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
