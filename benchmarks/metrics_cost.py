"""What the counters cost: 4 KiB PUT and GET throughput with metrics on
(the default) and off (``--metrics false``), on the real multi-process
server, alternating the two settings so drift on the machine hits both.

``python -m benchmarks.metrics_cost [--seconds S] [--rounds R] [-c C]``
(``make bench`` runs it after the main table). Prints ops/s for each and
the ratio on/off; docs/performance.md records a run.

Throughput on a shared machine swings by more than the 3 % this is meant to
resolve, so each phase also records the server's CPU seconds (every process
of the tree, from /proc) per request: work the counters add shows there
whether or not a neighbour steals the cores, so the CPU ratio on/off is the
figure to judge the cost by when the throughput ratios scatter.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Final

import trio

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.loadgen import (  # noqa: E402
    Payload,
    Signer,
    Target,
    create_bucket,
    run_phase,
)
from benchmarks.procstat import cpu_seconds, descendants  # noqa: E402
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer  # noqa: E402

SIZE: Final = 4096
MAX_OPS: Final = 200_000  # bound on one phase, whatever the machine


# (PUT ops/s, GET ops/s, server CPU µs per PUT, server CPU µs per GET)
Round = tuple[float, float, float, float]


async def one_round(port: int, server_pid: int, seconds: float, conc: int) -> Round:
    target = Target("127.0.0.1", port, Signer(ACCESS_KEY, SECRET_KEY, REGION))
    await create_bucket(target, "bench")
    payload = Payload(SIZE)
    conns = target.connections(conc)
    pids = descendants(server_pid)
    try:
        cpu0 = cpu_seconds(pids)
        put = await run_phase(target, conns, "put", payload, seconds=seconds, max_ops=MAX_OPS)
        cpu1 = cpu_seconds(pids)
        get = await run_phase(
            target, conns, "get", payload, seconds=seconds, paths=put.paths, max_ops=MAX_OPS
        )
        cpu2 = cpu_seconds(pids)
    finally:
        for c in conns:
            c.close()
    if put.errors or get.errors:
        raise SystemExit(f"requests failed: {put.error_samples or get.error_samples}")
    put_us = (cpu1 - cpu0) / max(put.ops, 1) * 1e6
    get_us = (cpu2 - cpu1) / max(get.ops, 1) * 1e6
    return put.ops_per_s, get.ops_per_s, put_us, get_us


def measure(metrics: bool, seconds: float, conc: int) -> Round:
    tmp = Path(tempfile.mkdtemp(prefix="metrics-cost-"))
    server = SeglakeServer(
        tmp / "data", frontends=2, log_path=tmp / "server.log",
        extra_args=["--key-inflight-limit", "0", "--metrics", str(metrics).lower(),
                    "--log-level", "warning"],
    )  # fmt: skip
    try:
        server.start()
        assert server.port is not None and server.proc is not None
        return trio.run(one_round, server.port, server.proc.pid, seconds, conc)
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


def counter_cost_us(n: int = 100_000) -> float:
    """CPU µs the frontend's counters add to one request (begin, end, done),
    timed in this process: the part of the on/off difference that is the
    counters' own work, without the machine's noise."""
    from seglake.metrics.requests import RequestCounters

    counters = RequestCounters()

    def one() -> None:
        counters.begin("PutObject")
        counters.end("PutObject")
        counters.done("PutObject", 200, 0.002, bucket="bench", key_id=ACCESS_KEY, bytes_in=SIZE)

    return timeit.timeit(one, number=n) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per phase")
    p.add_argument("--rounds", type=int, default=3, help="on/off pairs")
    p.add_argument("-c", "--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    runs: dict[bool, list[Round]] = {True: [], False: []}
    for r in range(args.rounds):
        for metrics in (True, False) if r % 2 == 0 else (False, True):
            runs[metrics].append(measure(metrics, args.seconds, args.concurrency))
            put, get, put_us, get_us = runs[metrics][-1]
            print(f"round {r + 1} metrics {'on ' if metrics else 'off'}: "
                  f"PUT {put:8.0f} ops/s {put_us:6.0f} µs CPU/op  "
                  f"GET {get:8.0f} ops/s {get_us:6.0f} µs CPU/op", flush=True)  # fmt: skip
    own = counter_cost_us()
    for i, op in enumerate(("PUT", "GET")):
        on_runs, off_runs = [x[i] for x in runs[True]], [x[i] for x in runs[False]]
        on, off = statistics.median(on_runs), statistics.median(off_runs)
        # Each round's own on/off (its two runs were back to back): less
        # exposed to drift than the medians, and its spread says how well a
        # run resolves a difference at all.
        pairs = sorted(a / b for a, b in zip(on_runs, off_runs, strict=True))
        print(f"4 KiB {op}: metrics on {on:8.0f} ops/s ({min(on_runs):.0f}..{max(on_runs):.0f}), "
              f"off {off:8.0f} ops/s ({min(off_runs):.0f}..{max(off_runs):.0f}), "
              f"on/off {on / off:.3f}; per round median {statistics.median(pairs):.3f} "
              f"({pairs[0]:.2f}..{pairs[-1]:.2f})")  # fmt: skip
        cpu_on = statistics.median(x[i + 2] for x in runs[True])
        cpu_off = statistics.median(x[i + 2] for x in runs[False])
        print(f"4 KiB {op}: server CPU per request, metrics on {cpu_on:.0f} µs, "
              f"off {cpu_off:.0f} µs, on/off {cpu_on / cpu_off:.3f}; the counters' own "
              f"work {own:.1f} µs = {own / cpu_off:.2%} of it")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
