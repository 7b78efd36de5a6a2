"""A frontend process: Hypercorn (trio worker) serving the S3 app on the
listening socket the supervisor bound once and passed down as a descriptor.

SIGTERM starts a graceful shutdown: stop accepting, let in-flight requests
finish for up to ``shutdown_timeout``, exit.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from hypercorn.trio import serve

from seglake.config import Config
from seglake.frontend import h11_fixes, hypercorn_tuning, patched_versions
from seglake.frontend.app import App
from seglake.frontend.tls import HypercornConfig, ReloadingContext
from seglake.lifecycle import exit_when_orphaned, read_child_args, signal_ready
from seglake.logs import setup_logging

log = logging.getLogger("seglake.frontend")


def hypercorn_config(cfg: Config, fd: int) -> HypercornConfig:
    """The Hypercorn settings every frontend uses (and the benchmark ceiling)."""
    h11_fixes.install()  # 100 Continue after authentication; reason phrases
    hypercorn_tuning.install()  # bigger reads for bodies; a cheaper keep-alive timer
    hc = HypercornConfig()
    hc.bind = [f"fd://{fd}"]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = cfg.shutdown_timeout
    # Header section limit; h11 refuses anything larger with 431/400.
    hc.h11_max_incomplete_size = cfg.max_header_bytes + 1024
    # Closes idle connections, and bounds how long a request head may take
    # to arrive (the timer runs until the head is parsed): slow-header clients.
    hc.keep_alive_timeout = cfg.keep_alive_timeout
    hc.read_timeout = 120  # a client that sends nothing for this long is dropped
    hc.backlog = 1024
    # Hypercorn closes a connection after 1,000 requests by default; S3
    # clients keep pools of long-lived connections, and reconnecting costs
    # far more than anything a limit protects here.
    hc.keep_alive_max_requests = 1_000_000
    hc.include_server_header = False  # responses carry our own Server header
    return hc


async def serve_until_signal(
    app: Callable[..., Awaitable[None]],
    hc: HypercornConfig,
    ready_fd: int | None = None,
    extra: tuple[Callable[..., Awaitable[None]], HypercornConfig] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; ``ready_fd`` hears once Hypercorn accepts.
    ``extra``: a second (app, config) served alongside (the metrics listener)."""
    stop = trio.Event()

    async def watch_signals() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals)

        async def serve_then_stop(task_status: trio.TaskStatus[Any]) -> None:
            await serve(app, hc, shutdown_trigger=stop.wait, task_status=task_status)
            nursery.cancel_scope.cancel()

        if extra is not None:
            extra_app, extra_hc = extra

            async def serve_extra(task_status: trio.TaskStatus[Any]) -> None:
                await serve(
                    extra_app, extra_hc, shutdown_trigger=stop.wait, task_status=task_status
                )

            await nursery.start(serve_extra)
        await nursery.start(serve_then_stop)
        signal_ready(ready_fd)


async def run(
    cfg: Config, fd: int, ready_fd: int | None = None, name: str = "frontend", metrics_fd: int = -1
) -> None:
    app = App(cfg, name)
    hc = hypercorn_config(cfg, fd)
    extra = None
    if metrics_fd >= 0:
        mhc = hypercorn_config(cfg, metrics_fd)
        mhc.graceful_timeout = 1.0
        extra = (app.metrics_listener, mhc)
    async with trio.open_nursery() as nursery:
        app.bind(nursery)
        nursery.start_soon(exit_when_orphaned)
        if cfg.tls:
            hc.tls = ReloadingContext(Path(cfg.tls_cert), Path(cfg.tls_key))
            nursery.start_soon(hc.tls.watch)
        log.info("frontend serving %s on fd %d", "https" if cfg.tls else "http", fd)
        await serve_until_signal(app, hc, ready_fd, extra)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args: list[str] = sys.argv[1:] if argv is None else argv
    cfg_json, ready_fd, rest = read_child_args(args)
    cfg = Config.from_json(cfg_json)
    fd = int(rest[0])
    name = rest[1] if len(rest) > 1 else "frontend"
    metrics_fd = int(rest[2]) if len(rest) > 2 else -1
    setup_logging(cfg.log_level, "frontend", cfg.log_format)
    try:
        # Before anything is patched or served: the patches are only known
        # to be right for the tested Hypercorn and h11 versions.
        patched_versions.check()
    except patched_versions.UntestedVersion as exc:
        log.error("frontend refuses to start: %s", exc)
        return 2
    trio.run(run, cfg, fd, ready_fd, name, metrics_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
