"""GETs from one key are not refused below what a client may expect (#17).

The real server with default settings (one frontend per CPU, the default
per-key in-flight limit), driven by the benchmark's raw signed-HTTP load
generator: 4 KiB GETs from one access key at c=32 and c=128 must all succeed
and return the bytes that were PUT. Reads have their own per-frontend pool
(``frontend/authz.py``); the write pool still refuses a key above its limit
(``test_access_control.py::test_inflight_limit``).
"""

from __future__ import annotations

import trio

from benchmarks.loadgen import KiB, Payload, Signer, Target, create_bucket, run_phase
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

BUCKET = "getlimits"
OBJECTS = 64
# Bounded in count and time: each phase stops at GETS or SECONDS, whichever
# comes first, and the load generator fails a phase stuck beyond its grace.
GETS = 3000
SECONDS = 15.0

# frontends=0 is the default: one frontend per CPU.
server = server_fixture(frontends=0)


async def _put_then_get(srv: SeglakeServer, concurrencies: tuple[int, ...]) -> list[str]:
    target = Target("127.0.0.1", srv.port or 0, Signer(ACCESS_KEY, SECRET_KEY, REGION))
    payload = Payload(4 * KiB)
    await create_bucket(target, BUCKET)
    conns = target.connections(4)  # well under the key's write limit
    try:
        put = await run_phase(
            target, conns, "put", payload, seconds=60.0, bucket=BUCKET, max_ops=OBJECTS
        )
    finally:
        for conn in conns:
            conn.close()
    assert put.errors == 0, put.error_samples
    assert len(put.paths) == OBJECTS
    report = []
    for c in concurrencies:
        conns = target.connections(c)
        try:
            get = await run_phase(
                target, conns, "get", payload, seconds=SECONDS, bucket=BUCKET,
                paths=put.paths, max_ops=GETS, verify_every=1,
            )  # fmt: skip
        finally:
            for conn in conns:
                conn.close()
        assert get.errors == 0, f"c={c}: {get.errors} errors, e.g. {get.error_samples}"
        # Every body compared byte for byte with what was PUT under its key.
        assert get.verified == get.ops > 0, (c, get.verified, get.ops)
        report.append(f"c={c}: {get.ops} GETs, 0 errors, {get.ops_per_s:,.0f}/s")
    return report


def test_get_from_one_key_at_c32_and_c128_is_never_refused(server: SeglakeServer) -> None:
    report = trio.run(_put_then_get, server, (32, 128))
    print("\n" + "\n".join(report))
