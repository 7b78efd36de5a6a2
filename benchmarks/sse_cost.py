"""What SSE-S3 costs: PUT and GET throughput of 4 KiB and 64 MiB objects into
a bucket with default encryption (AES256) against a plain bucket, on one
real multi-process server, in the same run.

``python -m benchmarks.sse_cost [--seconds S] [--rounds R] [--frontends N]``
(``make bench`` runs it after the main table). Prints ops/s and MB/s of
each, and the ratio encrypted / plain; docs/performance.md records a run.

Plain and encrypted phases alternate (plain first in odd rounds, encrypted
first in even ones) so drift on a shared machine hits both; the ratio of
each round's back-to-back pair is reported with its median. The encrypted
bucket is encrypted by its default configuration, so the load generator's
requests are byte for byte those of the plain bucket.
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
    KiB,
    MiB,
    Payload,
    Signer,
    Target,
    create_bucket,
    run_phase,
)
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer  # noqa: E402

PLAIN: Final = "bench-plain"
SEALED: Final = "bench-sse"
# (size, concurrency): the main table's 4 KiB c32 and 64 MiB c4 lines.
CASES: Final = ((4 * KiB, 32), (64 * MiB, 4))
MAX_OPS: Final = 200_000  # bound on one phase, whatever the machine
VERIFY_EVERY: Final = 10  # encrypted GETs are compared byte for byte this often

# bucket -> size -> op -> per-round figures (MB/s)
Figures = dict[str, dict[int, dict[str, list[float]]]]


async def one_round(target: Target, payloads: dict[int, Payload], seconds: float,
                    order: tuple[str, ...], figures: Figures) -> None:  # fmt: skip
    for size, conc in CASES:
        payload = payloads[size]
        for bucket in order:
            conns = target.connections(conc)
            try:
                put = await run_phase(
                    target, conns, "put", payload, seconds=seconds, bucket=bucket,
                    key_prefix=f"{bucket}-{size}", max_ops=MAX_OPS,
                )  # fmt: skip
                get = await run_phase(
                    target, conns, "get", payload, seconds=seconds, bucket=bucket,
                    paths=put.paths, max_ops=MAX_OPS, verify_every=VERIFY_EVERY,
                )  # fmt: skip
            finally:
                for c in conns:
                    c.close()
            if put.errors or get.errors:
                raise SystemExit(f"requests failed: {put.error_samples or get.error_samples}")
            for op, phase in (("put", put), ("get", get)):
                figures[bucket][size].setdefault(op, []).append(phase.mb_per_s)
                print(
                    f"  {bucket:11s} {op.upper()} {size // KiB:>6} KiB c{conc}: "
                    f"{phase.ops_per_s:8.1f} ops/s {phase.mb_per_s:8.1f} MB/s",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per phase")
    p.add_argument("--rounds", type=int, default=2, help="plain/encrypted pairs")
    p.add_argument("--frontends", type=int, default=0, help="0: one per CPU, as `seglake serve`")
    args = p.parse_args(argv)
    # Beside the work tree (same disk), as the main table's runs.
    parent = REPO_ROOT / ".bench-tmp"
    parent.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sse-cost-", dir=parent))
    server = SeglakeServer(
        tmp / "data", frontends=args.frontends, log_path=tmp / "server.log",
        extra_args=["--key-inflight-limit", "0", "--log-level", "warning"],
    )  # fmt: skip
    figures: Figures = {b: {size: {} for size, _ in CASES} for b in (PLAIN, SEALED)}
    try:
        server.start()
        assert server.port is not None
        target = Target("127.0.0.1", server.port, Signer(ACCESS_KEY, SECRET_KEY, REGION))
        for bucket in (PLAIN, SEALED):
            trio.run(create_bucket, target, bucket)
        server.s3().put_bucket_encryption(
            Bucket=SEALED,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        payloads = {size: Payload(size) for size, _ in CASES}
        for r in range(args.rounds):
            order = (PLAIN, SEALED) if r % 2 == 0 else (SEALED, PLAIN)
            print(f"round {r + 1}", flush=True)
            trio.run(one_round, target, payloads, args.seconds, order, figures)
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("SSE-S3 cost (encrypted / plain, median of per-round ratios):")
    for size, conc in CASES:
        for op in ("put", "get"):
            plain, sealed = figures[PLAIN][size][op], figures[SEALED][size][op]
            ratios = [s / b for s, b in zip(sealed, plain, strict=True) if b > 0]
            print(
                f"  {op.upper()} {size // KiB:>6} KiB c{conc}: plain {statistics.median(plain):8.1f}"
                f" MB/s, SSE-S3 {statistics.median(sealed):8.1f} MB/s, ratio "
                f"{statistics.median(ratios):.0%} ({min(ratios):.0%}..{max(ratios):.0%})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
