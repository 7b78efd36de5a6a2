"""The S3 application alone: Seglake's ASGI app called in-process, no HTTP.

Starts a real Seglake (``tests.harness.SeglakeServer``: its writer commits
the PUTs, its frontends stay idle), builds the same ``App`` a frontend runs
on the same data dir in this process, and calls it directly with ASGI
scopes signed like the load generator's requests, one request at a time.
Prints this process's CPU time per request: what the S3 layer costs on top
of what Hypercorn, h11 and trio cost per request (``benchmarks.ceiling``
measures those with a trivial app), and the writer process's CPU per
request. ``ping`` times one round trip over the writer's IPC socket.

    .venv/bin/python -m benchmarks.app_only            # get, put and ping
    .venv/bin/python -m benchmarks.app_only get --requests 5000

Signing the request heads is part of the loop (~25 µs each); it is the
client's work, timed here with the app's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Final

import trio

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.loadgen import Signer  # noqa: E402
from benchmarks.run import scratch_server  # noqa: E402
from benchmarks.writer_load import cpu_ticks  # noqa: E402
from seglake.config import Config  # noqa: E402
from seglake.frontend.app import App  # noqa: E402
from seglake.frontend.writer_client import WriterClient  # noqa: E402
from seglake.ipc.messages import Ping  # noqa: E402
from tests.harness import ACCESS_KEY, SECRET_KEY  # noqa: E402

BUCKET: Final = "app-only"
OBJECTS: Final = 50
BODY: Final = os.urandom(4096)
WARMUP: Final = 200


class Caller:
    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.signer = Signer(ACCESS_KEY, SECRET_KEY, "us-east-1")

    async def __call__(self, method: str, path: str, body: bytes = b"") -> int:
        head = self.signer.request_head(method, path, self.host, len(body) if body else None)
        headers = []
        for line in head.decode().split("\r\n")[1:]:
            if line:
                name, _, value = line.partition(": ")
                headers.append((name.lower().encode(), value.encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", self.port),
        }  # fmt: skip
        delivered = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])

        await self.app(scope, receive, send)
        return status


async def measure(data_dir: Path, port: int, mode: str, requests: int) -> str:
    cfg = Config.from_json(
        json.dumps(
            {
                "data_dir": str(data_dir), "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
                "key_inflight_limit": 0, "auth_fail_burst": 1_000_000,
                "log_level": "warning",  # no access line per request
            }
        )
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        writer = WriterClient(str(cfg.writer_socket), nursery)
        pid = (await writer.call(Ping())).pid
        if mode == "ping":

            async def one(i: int) -> None:
                await writer.call(Ping())

        else:
            app = App(cfg)
            app.bind(nursery)
            call = Caller(app, f"127.0.0.1:{port}", port)
            assert await call("PUT", f"/{BUCKET}") in (200, 409)
            for i in range(OBJECTS):
                assert await call("PUT", f"/{BUCKET}/o{i}", BODY) == 200

            async def one(i: int) -> None:
                if mode == "get":
                    status = await call("GET", f"/{BUCKET}/o{i % OBJECTS}")
                else:
                    status = await call("PUT", f"/{BUCKET}/p{i}", BODY)
                if status != 200:
                    raise RuntimeError(f"{mode} answered {status}")

        for i in range(WARMUP):
            await one(i)
        peer0 = cpu_ticks(pid)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(requests):
            await one(WARMUP + i)
        cpu1, t1 = time.process_time(), time.perf_counter()
        peer1 = cpu_ticks(pid)
        nursery.cancel_scope.cancel()
    line = (
        f"{mode:4}: {(cpu1 - cpu0) / requests * 1e6:6.0f} µs CPU per request in this process, "
        f"{(t1 - t0) / requests * 1e6:6.0f} µs wall"
    )
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    spent = (peer1[0] - peer0[0] + peer1[1] - peer0[1]) * tick_us / requests
    return line + f"; writer process {spent:.0f} µs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modes", nargs="*", metavar="get|put|ping")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    if set(args.modes) - {"get", "put", "ping"}:
        parser.error("modes are get, put and ping")
    with scratch_server("app-") as (data_dir, server):
        assert server.port is not None
        for mode in args.modes or ["get", "put", "ping"]:
            print(trio.run(measure, data_dir, server.port, mode, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
