"""The maintenance process: owns the admin socket and (later) the schedules
of scrub, GC, MPU-GC and replication.

Quiesce protocol (the rule every destructive operation here will follow):
destructive work (gc-run, gc-rewrite, rebuild-index) runs only while the
writer reports the maintenance state ``quiesced``; reads and non-destructive
checks (fsck, scrub) may run at any time. Mutations are never made directly:
they are sent to the writer over IPC like any frontend's. The state machine
itself lives in the writer (``seglake/writer/quiesce.py``); the admin command
``maintenance`` only asks the writer for a target and reports its answer.

Admin socket: ``.seglake-admin.sock`` (mode 0600) in the data dir, the same
msgpack framing as the writer's IPC. Every request carries the token from
``.seglake-admin.token`` (0600); a wrong token is refused before anything
else is looked at.
"""

from __future__ import annotations

import hmac
import importlib.metadata
import logging
import os
import sys
import time
from typing import Any, TypeVar

import apsw
import msgspec
import trio

from seglake import failpoints
from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.admin import RELAYED_MUTATIONS
from seglake.ipc.call import call_service, call_typed, call_writer
from seglake.ipc.channel import ChannelBroken, ChannelClosed, listen_unix, serve_channel
from seglake.ipc.messages import (
    ADMIN,
    AdminStats,
    ListProcesses,
    MaintenanceSet,
    MaintenanceStatus,
    MessageError,
    Request,
    Status,
    SupervisorStats,
    request_from,
)
from seglake.lifecycle import exit_when_orphaned, read_child_args
from seglake.logs import setup_logging
from seglake.maintenance.repl_tasks import ReplTasks
from seglake.maintenance.scheduler import Scheduler
from seglake.meta.maintenance_reads import recent_runs
from seglake.metrics import view

log = logging.getLogger("seglake.maintenance")
R = TypeVar("R")

STATUS_RUNS = 10  # last ops runs shown by `seglake status`
MAINTENANCE_TARGETS = {"enable": "quiesced", "disable": "off"}


class Maintenance:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.token = cfg.admin_token_path.read_text().strip()
        self.started = time.time()
        self.scheduler = Scheduler(cfg, self._writer_call)
        self.repl = ReplTasks(cfg)

    async def _writer_call(self, msg: Request[R]) -> R:
        return await call_service(str(self.cfg.writer_socket), msg)

    async def status(self) -> dict[str, Any]:
        procs = await call_typed(str(self.cfg.supervisor_socket), ListProcesses())
        try:
            store = await call_writer(str(self.cfg.writer_socket), Status())
        except (OSError, S3Error, trio.TooSlowError) as exc:
            store = {"error": f"writer unavailable: {exc}"}
        try:
            runs = await trio.to_thread.run_sync(recent_runs, self.cfg.db_path, STATUS_RUNS)
        except (OSError, RuntimeError, apsw.Error) as exc:
            runs = [{"error": f"ops_runs unavailable: {exc}"}]
        return {
            "oplog": await self._oplog(),
            "data_dir": str(self.cfg.root),
            "address": procs.address,
            "processes": procs.processes,
            "store": store,
            "runs": runs,
            "schedules": self.scheduler.describe(),
            "replication": self.repl.describe(),
        }

    async def stats(self) -> dict[str, Any]:
        """The ``/v1/meta/stats`` document (``metrics/view.py``): what the
        supervisor merged from every process, the writer's store counts,
        the last runs and the disk, each part fetched now."""
        unavailable = (
            OSError, S3Error, MessageError, ChannelBroken, ChannelClosed, trio.TooSlowError,
        )  # fmt: skip
        sup: dict[str, Any]
        try:
            merged = await call_typed(str(self.cfg.supervisor_socket), SupervisorStats())
            sup = msgspec.structs.asdict(merged)
        except unavailable as exc:
            sup = {"error": f"supervisor unavailable: {exc!r}"}
        try:
            store = await call_writer(str(self.cfg.writer_socket), Status())
        except unavailable as exc:
            store = {"error": f"writer unavailable: {exc!r}"}
        try:
            runs = await trio.to_thread.run_sync(recent_runs, self.cfg.db_path, STATUS_RUNS * 5)
        except (OSError, RuntimeError, apsw.Error):
            runs = []
        return view.build(
            now=time.time(), version=seglake_version(), supervisor=sup, store=store, runs=runs,
            disk=disk_state(self.cfg), replication=self.repl.describe(),
            oplog=await self._oplog(),
        )  # fmt: skip

    async def _oplog(self) -> dict[str, Any]:
        """Rows, bytes, floor and head of the oplog (meta/oplog_horizon.py)."""
        from seglake.meta.oplog_horizon import oplog_stats_at

        try:
            stats = await trio.to_thread.run_sync(oplog_stats_at, str(self.cfg.db_path))
        except (OSError, RuntimeError, apsw.Error) as exc:
            return {"error": f"oplog unavailable: {exc}"}
        return stats.as_dict()

    async def maintenance(self, action: Any) -> dict[str, Any]:
        writer = str(self.cfg.writer_socket)
        if action == "status":
            return await call_service(writer, MaintenanceStatus())
        target = MAINTENANCE_TARGETS.get(str(action))
        if target is None:
            raise S3Error("InvalidArgument", message=f"maintenance action {action!r}")
        return await call_service(writer, MaintenanceSet(target=target))

    async def handle(self, name: str, args: Any, body: memoryview) -> tuple[Any, bytes]:
        # Typed commands (``messages.ADMIN``) carry the token as a field,
        # the older ones in their plain map.
        if isinstance(args, AdminStats):
            token: Any = args.token
        else:
            token = args.get("token") if isinstance(args, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
            raise S3Error("AccessDenied", message="bad admin token")
        if name == "status":
            return await self.status(), b""
        if name == "ping":
            return {"pid": os.getpid()}, b""
        if isinstance(args, AdminStats):
            return await self.stats(), b""
        if name == "maintenance":
            return await self.maintenance(args.get("action")), b""
        if name == "writer_mutation":
            return await self._relay(args.get("mutation"), args.get("args")), b""
        raise S3Error("NotImplemented", message=f"admin command {name!r} is not available")

    async def _relay(self, mutation: Any, args: Any) -> Any:
        """One writer mutation for a CLI tool: validated as its request type
        here (a malformed one never reaches the writer), sent typed, and its
        typed reply returned."""
        if not isinstance(mutation, str) or mutation not in RELAYED_MUTATIONS:
            raise S3Error("AccessDenied", message=f"mutation {mutation!r} is not relayed")
        try:
            msg = request_from(mutation, args)
        except MessageError as exc:
            raise S3Error("InvalidArgument", message=str(exc)) from None
        failpoints.hit(f"relay.{mutation}")  # fault tests: die before / after relaying
        result = await call_service(str(self.cfg.writer_socket), msg)
        failpoints.hit(f"relayed.{mutation}")
        return result

    async def serve(self) -> None:
        path = str(self.cfg.admin_socket)
        sock = await listen_unix(path, backlog=16)

        async def conn(stream: trio.SocketStream) -> None:
            await serve_channel(stream, self.handle, max_in_flight=8, decode=ADMIN.decode_any)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(exit_when_orphaned)
            nursery.start_soon(trio.serve_listeners, conn, [trio.SocketListener(sock)])
            nursery.start_soon(self.scheduler.run)  # MPU-GC and scrub (scheduler.py)
            nursery.start_soon(self.repl.run)  # pull/push per --repl-remote (repl_tasks.py)
            log.info("maintenance ready; admin socket %s", path)
            import signal

            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()


def seglake_version() -> str:
    try:
        return importlib.metadata.version("seglake")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def disk_state(cfg: Config) -> dict[str, Any]:
    """Free and total bytes of the data dir's file system against the reserve."""
    try:
        st = os.statvfs(cfg.root)
    except OSError as exc:
        return {"error": str(exc), "reserve_bytes": cfg.min_free_bytes}
    free = st.f_bavail * st.f_frsize
    return {
        "free_bytes": free,
        "total_bytes": st.f_blocks * st.f_frsize,
        "reserve_bytes": cfg.min_free_bytes,
        "above_reserve": free >= cfg.min_free_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cfg_json, _ready, _rest = read_child_args(args)
    cfg = Config.from_json(cfg_json)
    setup_logging(cfg.log_level, "maintenance", cfg.log_format)
    trio.run(Maintenance(cfg).serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
