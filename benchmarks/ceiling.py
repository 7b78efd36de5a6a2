"""The ceiling: a trivial ASGI app behind Seglake's exact Hypercorn setup.

It answers GET with a fixed 4 KiB body and PUT by reading and discarding the
body, so whatever it achieves is what Hypercorn + trio + h11 allow on this
machine before Seglake does any work of its own. Like ``seglake serve``, the
parent binds one listening socket and N processes serve it as ``fd://N`` with
``hypercorn_config(Config(), fd)``; the parent knows each child's pid and
stops them by pid (SIGTERM, then SIGKILL after a deadline).

Run alone: ``.venv/bin/python -m benchmarks.ceiling [--processes N]`` prints
the port and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
# Same size as the 4 KiB GET scenario, so the bytes on the wire match.
GET_BODY: Final = b"x" * 4096
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "PUT":
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b""
    else:
        body = GET_BODY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve_fd(fd: int) -> None:
    """Child process: serve ``app`` on the inherited listening socket."""
    import trio

    from seglake.config import Config
    from seglake.frontend.main import hypercorn_config, serve_until_signal

    trio.run(serve_until_signal, app, hypercorn_config(Config(), fd))


class CeilingServer:
    def __init__(self, processes: int):
        self.processes = processes
        self.port: int | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self._sock: socket.socket | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> CeilingServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.set_inheritable(True)
        self._sock = sock
        self.port = sock.getsockname()[1]
        fd = sock.fileno()
        for _ in range(self.processes):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.ceiling", "--serve-fd", str(fd)],
                    pass_fds=(fd,),
                    cwd=REPO_ROOT,
                    stdin=subprocess.DEVNULL,
                )
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        # The kernel queues connections on the shared socket as soon as it
        # listens, so an answer proves that at least one child serves; the
        # settle lets the others finish importing before load starts.
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"ceiling process {proc.pid} exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port or 0), timeout=1) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        time.sleep(1.0)
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ceiling app did not answer within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        self.procs = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> CeilingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fd is not None:
        serve_fd(args.serve_fd)
        return 0
    server = CeilingServer(args.processes).start()
    # Block only after the children started: they inherit the signal mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    print(f"ceiling app on 127.0.0.1:{server.port} (pids {server.pids}); Ctrl-C stops it")
    sys.stdout.flush()
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
