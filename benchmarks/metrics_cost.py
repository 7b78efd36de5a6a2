"""What the counters cost: 4 KiB PUT and GET throughput with metrics on
(the default) and off (``--metrics false``), on the real multi-process
server, alternating the two settings so drift on the machine hits both.

``python -m benchmarks.metrics_cost [--seconds S] [--rounds R] [-c C]``
(``make bench`` runs it after the main table). Prints ops/s for each and
the ratio on/off; docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
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
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer  # noqa: E402

SIZE: Final = 4096
MAX_OPS: Final = 200_000  # bound on one phase, whatever the machine


async def one_round(port: int, seconds: float, conc: int) -> tuple[float, float]:
    target = Target("127.0.0.1", port, Signer(ACCESS_KEY, SECRET_KEY, REGION))
    await create_bucket(target, "bench")
    payload = Payload(SIZE)
    conns = target.connections(conc)
    try:
        put = await run_phase(target, conns, "put", payload, seconds=seconds, max_ops=MAX_OPS)
        get = await run_phase(
            target, conns, "get", payload, seconds=seconds, paths=put.paths, max_ops=MAX_OPS
        )
    finally:
        for c in conns:
            c.close()
    if put.errors or get.errors:
        raise SystemExit(f"requests failed: {put.error_samples or get.error_samples}")
    return put.ops_per_s, get.ops_per_s


def measure(metrics: bool, seconds: float, conc: int) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="metrics-cost-"))
    server = SeglakeServer(
        tmp / "data", frontends=2, log_path=tmp / "server.log",
        extra_args=["--key-inflight-limit", "0", "--metrics", str(metrics).lower(),
                    "--log-level", "warning"],
    )  # fmt: skip
    try:
        server.start()
        assert server.port is not None
        return trio.run(one_round, server.port, seconds, conc)
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per phase")
    p.add_argument("--rounds", type=int, default=3, help="on/off pairs")
    p.add_argument("-c", "--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for r in range(args.rounds):
        for metrics in (True, False) if r % 2 == 0 else (False, True):
            runs[metrics].append(measure(metrics, args.seconds, args.concurrency))
            put, get = runs[metrics][-1]
            print(f"round {r + 1} metrics {'on ' if metrics else 'off'}: "
                  f"PUT {put:8.0f} ops/s  GET {get:8.0f} ops/s", flush=True)  # fmt: skip
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
