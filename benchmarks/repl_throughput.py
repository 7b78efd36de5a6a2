"""Replication throughput and lag between two real servers on loopback.

``python -m benchmarks.repl_throughput [--small-count N] [--large-count N]
[--steady-seconds S] [-c C] [--profile]`` (``make bench-repl``; ``make
bench`` runs it last). docs/performance.md ("Replication") records a run.

1. **One-shot pull.** Site A (a server) is loaded with ``--small-count``
   4 KiB objects; site B, a data dir with no server, runs
   ``seglake -mode repl-pull`` (the embedded writer, the same steps as the
   continuous task) until caught up. Then A gets ``--large-count`` 64 MiB
   objects (every 4 MiB chunk distinct, so nothing is deduplicated) and B
   pulls again. Each pull is timed by the command itself (``seconds`` of
   its JSON, interpreter start excluded) and split per phase: page fetch
   (``oplog``), "which chunks do we lack" (SQLite), chunk fetch, append,
   apply. ``--profile`` also runs the pulls under cProfile and prints the
   top functions.
2. **Ceilings, same run.** The plain PUT rate of the same number of objects
   of the same sizes into B (B's server, a fresh bucket), and a raw copy of
   the same bytes over a loopback TCP socket in the same pieces.
3. **Steady state.** B is started with ``--repl-remote A`` (continuous
   pull, ``--repl-interval``); A takes 4 KiB PUTs at concurrency ``-c`` for
   ``--steady-seconds``; B's stats (``/v1/meta/stats``, its pull task's
   ``lag_seconds`` and ``backlog_entries``) are sampled every 0.5 s. After
   the load, how long B took to drain the backlog.

Everything is bounded: counts by the flags, each phase by a deadline.
Exit status 0, or 1 if a request failed or B did not catch up in time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.loadgen import (  # noqa: E402
    TAG_BYTES,
    HttpConnection,
    KiB,
    MiB,
    Payload,
    Signer,
    Target,
    create_bucket,
    object_path,
    object_tag,
    run_phase,
)
from benchmarks.run import CLEANED_STAMP, TMP_PARENT, settle_after_cleanup  # noqa: E402
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer  # noqa: E402

SMALL: Final = 4 * KiB
LARGE: Final = 64 * MiB
CHUNK: Final = 4 * MiB  # seglake/format/segment.py CHUNK_SIZE: large bodies are cut here
SMALL_LOAD_C: Final = 32
LARGE_LOAD_C: Final = 4
SAMPLE_S: Final = 0.5
PROFILE_LINES: Final = 90  # of the cProfile text (two listings) printed with a pull
PULL_TIMEOUT_S: Final = 900.0  # one one-shot pull, whatever the machine
CATCH_UP_S: Final = 300.0  # B draining its backlog after the steady load
LOAD_LIMIT_S: Final = 600.0  # loading A (or the ceiling PUTs into B)
MAX_STEADY_OPS: Final = 200_000
REPL_FLAGS: Final = ["--repl-access-key", ACCESS_KEY, "--repl-secret-key", SECRET_KEY]
SERVER_FLAGS: Final = ["--key-inflight-limit", "0", "--log-level", "warning"]


# ---- the one-shot pull, in a child process with timers per phase -------------


def child_pull(argv: list[str]) -> int:
    """``--child-pull OUT [--profile] -- SEGLAKE-ARGS``: run ``seglake
    SEGLAKE-ARGS`` (a ``-mode repl-pull``) in this process with each phase
    of a pull step timed; write the timings (and a profile) to OUT."""
    out = Path(argv[0])
    profile = argv[1] == "--profile"
    args = argv[argv.index("--") + 1 :]
    from seglake import cli
    from seglake.repl import pull
    from seglake.repl.client import ReplClient
    from seglake.writer.embedded import EmbeddedWriter

    phases: dict[str, list[float]] = {}

    def timed_async(owner: Any, name: str, label: str) -> None:
        inner: Callable[..., Awaitable[Any]] = getattr(owner, name)

        async def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await inner(*a, **kw)
            finally:
                slot = phases.setdefault(label, [0.0, 0.0])
                slot[0] += time.perf_counter() - t0
                slot[1] += 1

        setattr(owner, name, wrapper)

    def timed_sync(owner: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                slot = phases.setdefault(label, [0.0, 0.0])
                slot[0] += time.perf_counter() - t0
                slot[1] += 1

        setattr(owner, name, wrapper)

    timed_async(ReplClient, "oplog", "page fetch")
    timed_async(ReplClient, "chunks", "chunk fetch")
    timed_async(EmbeddedWriter, "append", "append")
    timed_async(EmbeddedWriter, "apply", "apply")
    timed_sync(pull, "_missing", "missing digests")
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    rc = cli.main(args)
    if prof is not None:
        prof.disable()
    doc: dict[str, Any] = {"rc": rc, "wall": time.perf_counter() - t0, "phases": phases}
    if prof is not None:
        text = Path(str(out) + ".prof.txt")
        with text.open("w") as f:
            stats = pstats.Stats(prof, stream=f)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(30)
        doc["profile"] = str(text)
    out.write_text(json.dumps(doc))
    return 0


@dataclass
class Pull:
    label: str
    objects: int
    seconds: float  # the command's own figure: interpreter start excluded
    wall: float
    entries: int
    chunks: int
    bytes_in: int
    phases: dict[str, list[float]]
    profile: str = ""

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / self.seconds / 1e6


def one_shot_pull(label: str, objects: int, b_dir: Path, remote: str, tmp: Path,
                  profile: bool) -> Pull:  # fmt: skip
    out = tmp / f"pull-{label}.json"
    cmd = [sys.executable, "-m", "benchmarks.repl_throughput", "--child-pull", str(out),
           "--profile" if profile else "--no-profile", "--",
           "-mode", "repl-pull", "-data-dir", str(b_dir), "-repl-remote", remote,
           "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY,
           "-repl-retry-timeout", "30s", "--json"]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PULL_TIMEOUT_S,
                          cwd=REPO_ROOT, check=False)  # fmt: skip
    wall = time.perf_counter() - t0
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"repl-pull ({label}) failed:\n{done.stdout}\n{done.stderr}")
    timing = json.loads(out.read_text())
    if timing["rc"] != 0:
        raise SystemExit(f"repl-pull ({label}) exited {timing['rc']}:\n{done.stdout}{done.stderr}")
    doc = json.loads(done.stdout)
    (remote_doc,) = doc["remotes"]
    if remote_doc["backlog_entries"] != 0:
        raise SystemExit(f"repl-pull ({label}) did not catch up: {remote_doc}")
    return Pull(
        label=label, objects=objects, seconds=float(doc["seconds"]), wall=wall,
        entries=int(remote_doc["entries"]), chunks=int(remote_doc["chunks"]),
        bytes_in=int(remote_doc["bytes_in"]), phases=timing["phases"],
        profile=timing.get("profile", ""),
    )  # fmt: skip


# ---- loading a server ----------------------------------------------------------


@dataclass
class Load:
    label: str
    objects: int
    size: int
    seconds: float

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.objects * self.size / self.seconds / 1e6


async def put_small(target: Target, bucket: str, count: int) -> Load:
    await create_bucket(target, bucket)
    conns = target.connections(SMALL_LOAD_C)
    try:
        phase = await run_phase(target, conns, "put", Payload(SMALL), seconds=LOAD_LIMIT_S,
                                bucket=bucket, key_prefix="small", max_ops=count)  # fmt: skip
    finally:
        for c in conns:
            c.close()
    if phase.errors or phase.ops != count:
        raise SystemExit(f"loading {bucket}: {phase.ops}/{count} PUTs, {phase.error_samples}")
    return Load(f"PUT {count} x 4 KiB c={SMALL_LOAD_C}", count, SMALL, phase.elapsed_s)


def large_message(head: bytes, base: memoryview, path: str) -> list[bytes | memoryview]:
    """A 64 MiB body whose every 4 MiB chunk starts with its own tag: the
    chunks of different objects (and of one object) never share a digest,
    so replication moves every byte."""
    parts: list[bytes | memoryview] = [head]
    for off in range(0, len(base), CHUNK):
        parts.append(object_tag(f"{path}#{off}"))
        parts.append(base[off + TAG_BYTES : off + CHUNK])
    return parts


async def put_large(target: Target, bucket: str, count: int) -> Load:
    await create_bucket(target, bucket)
    base = memoryview(os.urandom(LARGE))
    todo = list(range(count))
    failures: list[str] = []

    async def worker(conn: HttpConnection) -> None:
        while todo:
            n = todo.pop()
            path = object_path(bucket, f"large-{n}")
            head = target.signer.request_head("PUT", path, target.hostport, LARGE)
            resp = await conn.request(large_message(head, base, path))
            if resp.status >= 300:
                failures.append(f"{path}: {resp.status} {resp.error_body[:200]!r}")

    conns = target.connections(LARGE_LOAD_C)
    t0 = time.perf_counter()
    try:
        with trio.fail_after(LOAD_LIMIT_S):
            async with trio.open_nursery() as nursery:
                for c in conns:
                    nursery.start_soon(worker, c)
    finally:
        for c in conns:
            c.close()
    if failures:
        raise SystemExit(f"loading {bucket}: {failures[:3]}")
    return Load(f"PUT {count} x 64 MiB c={LARGE_LOAD_C}", count, LARGE, time.perf_counter() - t0)


def loopback_copy(count: int, size: int) -> Load:
    """``count`` pieces of ``size`` bytes through one TCP connection on
    127.0.0.1 (a thread sends, this one receives): what moving the bytes
    alone costs on this machine."""
    data = memoryview(os.urandom(size))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def send() -> None:
            with socket.create_connection(listener.getsockname()) as s:
                for _ in range(count):
                    s.sendall(data)

        t0 = time.perf_counter()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        conn, _ = listener.accept()
        buf = bytearray(min(size, 4 * MiB))
        left = count * size
        with conn:
            conn.settimeout(60)
            while left:
                got = conn.recv_into(buf)
                if not got:
                    raise SystemExit("loopback copy: connection closed early")
                left -= got
        sender.join(60)
        return Load(f"TCP loopback {count} x {size // KiB} KiB", count, size,
                    time.perf_counter() - t0)  # fmt: skip


# ---- steady state -------------------------------------------------------------


@dataclass
class Steady:
    puts: int = 0
    put_seconds: float = 0.0
    errors: int = 0
    lags: list[float] = field(default_factory=list)
    backlogs: list[int] = field(default_factory=list)
    unknown_lag: int = 0
    # Measured here, not by B: A's head against B's cursor at each sample,
    # and for how long the oldest entry B lacks has been on A (to within
    # one sample interval).
    live_backlogs: list[int] = field(default_factory=list)
    live_lags: list[float] = field(default_factory=list)
    drain_s: float = -1.0  # after the load ended; -1: did not catch up
    head: int = 0
    cursor: int = 0


async def pull_task(client: Any) -> dict[str, Any]:
    doc = json.loads(await client.fetch("GET", "/v1/meta/stats"))
    tasks = [t for t in doc.get("replication") or [] if t.get("direction") == "pull"]
    if len(tasks) != 1:
        raise SystemExit(f"B's stats show no single pull task: {doc.get('replication')}")
    return dict(tasks[0])


async def oplog_head(a_client: Any) -> int:
    return int((await a_client.oplog("0", 1)).head)


async def wait_caught_up(b_client: Any, a_client: Any, limit: float) -> float:
    """Seconds until B's pull cursor reaches A's head (as it is now); -1 on timeout."""
    head = await oplog_head(a_client)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        task = await pull_task(b_client)
        if task.get("cursor", 0) >= head and task.get("backlog_entries") == 0:
            return time.perf_counter() - t0
        await trio.sleep(0.1)
    return -1.0


async def steady_state(a: Target, b_url: str, a_url: str, seconds: float, conc: int) -> Steady:
    from seglake.repl.client import ReplClient

    b_client = ReplClient(b_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    a_client = ReplClient(a_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    result = Steady()
    try:
        if await wait_caught_up(b_client, a_client, CATCH_UP_S) < 0:
            raise SystemExit("B did not catch up with A before the steady-state load")
        await create_bucket(a, "steady")
        done = trio.Event()

        seen: list[tuple[float, int]] = []  # (when, A's head then)

        async def sample() -> None:
            while not done.is_set():
                head = await oplog_head(a_client)
                now = time.perf_counter()
                seen.append((now, head))
                task = await pull_task(b_client)
                cursor = int(task.get("cursor") or 0)
                result.live_backlogs.append(max(0, head - cursor))
                # The first sample whose head was past B's cursor: the
                # entry after the cursor was written before it.
                first = next((t for t, h in seen if h > cursor), None)
                result.live_lags.append(0.0 if first is None else now - first)
                lag = task.get("lag_seconds")
                if lag is None:
                    result.unknown_lag += 1
                else:
                    result.lags.append(float(lag))
                result.backlogs.append(int(task.get("backlog_entries") or 0))
                with trio.move_on_after(SAMPLE_S):
                    await done.wait()

        async def load() -> None:
            conns = a.connections(conc)
            try:
                phase = await run_phase(a, conns, "put", Payload(SMALL), seconds=seconds,
                                        bucket="steady", key_prefix="steady",
                                        max_ops=MAX_STEADY_OPS)  # fmt: skip
            finally:
                for c in conns:
                    c.close()
                done.set()
            result.puts, result.put_seconds, result.errors = (
                phase.ops,
                phase.elapsed_s,
                phase.errors,
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            nursery.start_soon(load)
        result.drain_s = await wait_caught_up(b_client, a_client, CATCH_UP_S)
        result.head = await oplog_head(a_client)
        result.cursor = int((await pull_task(b_client)).get("cursor", 0))
    finally:
        await b_client.aclose()
        await a_client.aclose()
    return result


# ---- report -------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def print_pull(p: Pull, ceilings: list[Load]) -> None:
    print(f"one-shot repl-pull, {p.label}: {p.objects} objects, {p.entries} entries, "
          f"{p.chunks} chunks, {p.bytes_in / 1e6:.1f} MB in {p.seconds:.2f} s "
          f"(command wall {p.wall:.2f} s): {p.objects_per_s:,.0f} objects/s, "
          f"{p.mb_per_s:,.1f} MB/s")  # fmt: skip
    for c in ceilings:
        print(f"  against {c.label}: {c.objects_per_s:,.0f} objects/s, {c.mb_per_s:,.1f} MB/s "
              f"-> pull is {p.objects_per_s / c.objects_per_s:.0%} of it")  # fmt: skip
    total = sum(t for t, _ in p.phases.values())
    for name, (t, n) in sorted(p.phases.items(), key=lambda kv: -kv[1][0]):
        print(f"  phase {name:16s} {t:7.2f} s in {int(n):6d} calls "
              f"({t / max(n, 1) * 1e3:8.2f} ms each, {t / p.seconds:4.0%} of the pull)")  # fmt: skip
    print(
        f"  phases sum {total:.2f} s; the rest ({p.seconds - total:.2f} s) is the command's "
        "own start (open the store, start the embedded writer) and the loop between calls"
    )
    if p.profile:
        # The head of each listing: by own time, then by cumulative time.
        lines = Path(p.profile).read_text().splitlines()
        print(f"  cProfile of the pull ({p.profile}):")
        for line in lines[:PROFILE_LINES]:
            print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child-pull":
        return child_pull(argv[1:])
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--small-count", type=int, default=10_000)
    p.add_argument("--large-count", type=int, default=20)
    p.add_argument("--steady-seconds", type=float, default=30.0)
    p.add_argument("-c", "--concurrency", type=int, default=8, help="steady-state PUT load on A")
    p.add_argument("--repl-interval", default="0.1", help="B's --repl-interval (steady state)")
    p.add_argument("--frontends", type=int, default=0, help="0: one per CPU, as `seglake serve`")
    p.add_argument("--profile", action="store_true", help="cProfile the one-shot pulls")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    for name in ("small_count", "large_count"):
        if not 1 <= getattr(args, name) <= 100_000:
            p.error(f"--{name.replace('_', '-')} must be 1..100000")
    if not 1 <= args.steady_seconds <= 600 or not 1 <= args.concurrency <= 256:
        p.error("--steady-seconds must be 1..600 and -c 1..256")

    trio.run(settle_after_cleanup)
    TMP_PARENT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="repl-bench-", dir=TMP_PARENT))
    a = SeglakeServer(tmp / "a", frontends=args.frontends, log_path=tmp / "a.log",
                      extra_args=SERVER_FLAGS)  # fmt: skip
    b_dir = tmp / "b"
    b: SeglakeServer | None = None
    figures: dict[str, Any] = {}
    status = 0
    try:
        a.start()
        assert a.port is not None
        signer = Signer(ACCESS_KEY, SECRET_KEY, REGION)
        ta = Target("127.0.0.1", a.port, signer)
        load_small = trio.run(put_small, ta, "small", args.small_count)
        print(
            f"A loaded: {load_small.label}: {load_small.objects_per_s:,.0f} objects/s", flush=True
        )
        pull_small = one_shot_pull("4 KiB", args.small_count, b_dir, a.endpoint, tmp, args.profile)
        load_large = trio.run(put_large, ta, "large", args.large_count)
        print(f"A loaded: {load_large.label}: {load_large.mb_per_s:,.1f} MB/s", flush=True)
        pull_large = one_shot_pull("64 MiB", args.large_count, b_dir, a.endpoint, tmp,
                                   args.profile)  # fmt: skip

        # Ceilings: the same objects PUT into B, and the same bytes over TCP.
        b = SeglakeServer(b_dir, frontends=args.frontends, log_path=tmp / "b.log",
                          extra_args=SERVER_FLAGS)  # fmt: skip
        b.start()
        assert b.port is not None
        tb = Target("127.0.0.1", b.port, signer)
        put_b_small = trio.run(put_small, tb, "ceiling-small", args.small_count)
        put_b_large = trio.run(put_large, tb, "ceiling-large", args.large_count)
        b.close()
        b = None
        tcp_small = loopback_copy(args.small_count, SMALL)
        tcp_large = loopback_copy(args.large_count, LARGE)
        print()
        print_pull(pull_small, [put_b_small, tcp_small])
        print_pull(pull_large, [put_b_large, tcp_large])

        # Steady state: B pulls continuously while A takes writes.
        b = SeglakeServer(
            b_dir, frontends=args.frontends, log_path=tmp / "b-steady.log",
            extra_args=[*SERVER_FLAGS, *REPL_FLAGS, "--repl-remote", a.endpoint,
                        "--repl-interval", args.repl_interval, "--repl-backoff-max", "1"],
        )  # fmt: skip
        b.start()
        steady = trio.run(steady_state, ta, b.endpoint, a.endpoint, args.steady_seconds,
                          args.concurrency)  # fmt: skip
        put_rate = steady.puts / steady.put_seconds if steady.put_seconds else 0.0
        print()
        print(f"steady state: A took {steady.puts} PUTs of 4 KiB at c={args.concurrency} in "
              f"{steady.put_seconds:.1f} s ({put_rate:,.0f}/s, {steady.errors} failed); B pulls "
              f"every {args.repl_interval} s when caught up")  # fmt: skip
        print(f"  B's lag (stats, every {SAMPLE_S} s, {len(steady.lags)} samples"
              f"{f', {steady.unknown_lag} without a figure yet' if steady.unknown_lag else ''}): "
              f"p50 {pct(steady.lags, 0.5):.2f} s, p95 {pct(steady.lags, 0.95):.2f} s, "
              f"max {max(steady.lags, default=float('nan')):.2f} s")  # fmt: skip
        print(f"  measured here (A's head against B's cursor, same samples): backlog p50 "
              f"{pct([float(x) for x in steady.live_backlogs], 0.5):.0f}, p95 "
              f"{pct([float(x) for x in steady.live_backlogs], 0.95):.0f}, max "
              f"{max(steady.live_backlogs, default=0)} entries; age of the oldest entry B "
              f"lacks p50 {pct(steady.live_lags, 0.5):.2f} s, p95 "
              f"{pct(steady.live_lags, 0.95):.2f} s, max "
              f"{max(steady.live_lags, default=float('nan')):.2f} s (±{SAMPLE_S} s)")  # fmt: skip
        print(f"  B's backlog entries (stats): p50 {pct([float(x) for x in steady.backlogs], 0.5):.0f}, "
              f"p95 {pct([float(x) for x in steady.backlogs], 0.95):.0f}, "
              f"max {max(steady.backlogs, default=0)}")  # fmt: skip
        if steady.drain_s < 0:
            print(f"  B did NOT catch up within {CATCH_UP_S:.0f} s after the load "
                  f"(cursor {steady.cursor}, A's head {steady.head})")  # fmt: skip
            status = 1
        else:
            print(f"  caught up {steady.drain_s:.2f} s after the load ended "
                  f"(cursor {steady.cursor} = A's head {steady.head})")  # fmt: skip
        if steady.errors:
            status = 1
        figures = {
            "load_a": [load_small.__dict__, load_large.__dict__],
            "pulls": [pull_small.__dict__, pull_large.__dict__],
            "ceilings": [x.__dict__ for x in (put_b_small, put_b_large, tcp_small, tcp_large)],
            "steady": {**steady.__dict__, "put_rate": put_rate,
                       "lag_p50": pct(steady.lags, 0.5), "lag_p95": pct(steady.lags, 0.95),
                       "lag_median_all": statistics.median(steady.lags) if steady.lags else None},
        }  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        if b is not None:
            b.close()
        a.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            CLEANED_STAMP.touch()
        else:
            print(f"kept {tmp}")
    return status


if __name__ == "__main__":
    sys.exit(main())
