"""The supervisor (``seglake serve``): owns the data-dir lock, the listening
socket and the lives of every child. It never touches segments or SQLite.

Start: lock the data dir (a second server on it refuses) → create the admin
token → bind the listening socket once → start the writer and wait until it
answers → start N frontends (each inherits the socket) and the maintenance
process → READY=1 to systemd.

Run: a child that exits is restarted with exponential backoff (reset once it
has stayed up a while), logged and counted. Children watch their parent's
pid and leave if the supervisor disappears, so a new supervisor never meets
an orphaned writer (the writer also holds its own lock).

Stop (SIGTERM/SIGINT): STOPPING=1 → frontends drain in-flight requests (up to
``shutdown_timeout``) → maintenance stops → the writer commits what it has
queued and exits → exit 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from seglake.config import Config
from seglake.ipc.channel import connect, serve_channel
from seglake.logs import setup_logging
from seglake.supervisor.notify import sd_notify

log = logging.getLogger("seglake.supervisor")

WRITER_READY_TIMEOUT_S = 300.0  # recovery of many open segments can take a while
STABLE_AFTER_S = 30.0  # a child up this long resets its backoff
HEARTBEAT_INTERVAL_S = 5.0
KILL_GRACE_S = 5.0


class DataDirLocked(Exception):
    pass


@dataclass
class Child:
    role: str
    index: int
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    proc: trio.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    exits: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}" if self.role == "frontend" else self.role

    def info(self) -> dict[str, Any]:
        alive = self.proc is not None and self.proc.returncode is None
        return {
            "name": self.name, "role": self.role,
            "pid": self.proc.pid if self.proc is not None else None,
            "alive": alive, "restarts": self.restarts,
            "uptime": time.time() - self.started_at if alive else 0.0,
            "last_exit": self.exits[-1] if self.exits else None,
        }  # fmt: skip


def lock_data_dir(cfg: Config) -> int:
    cfg.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(cfg.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("ascii", "replace").split()
        os.close(fd)
        who = f" (pid {holder[0]})" if holder else ""
        raise DataDirLocked(
            f"another Seglake server{who} is already using {cfg.root}; refusing to start"
        ) from None
    write_heartbeat(fd)
    return fd


def write_heartbeat(fd: int) -> None:
    data = f"{os.getpid()} {int(time.time())}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def ensure_admin_token(cfg: Config) -> None:
    path = cfg.admin_token_path
    if path.exists():
        os.chmod(path, 0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def bind_listener(cfg: Config) -> socket.socket:
    host, port = cfg.listen_host_port()
    if host in ("", "::"):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            addr: tuple[Any, ...] = ("::", port)
        except OSError:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            addr = ("0.0.0.0", port)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        addr = (host, port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(1024)
    return sock


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.lock_fd = lock_data_dir(cfg)
        ensure_admin_token(cfg)
        self.listener = bind_listener(cfg)
        bound = self.listener.getsockname()
        host = bound[0]
        self.address = f"[{host}]:{bound[1]}" if ":" in host else f"{host}:{bound[1]}"
        cfg.listen_path.write_text(self.address + "\n")
        self.stopping = False
        cfg_json = cfg.to_json()
        py = sys.executable
        fd = self.listener.fileno()
        self.writer = Child("writer", 0, [py, "-m", "seglake.writer.main", cfg_json])
        self.frontends = [
            Child("frontend", i, [py, "-m", "seglake.frontend.main", cfg_json, str(fd)], (fd,))
            for i in range(cfg.frontend_count())
        ]
        self.maintenance = Child("maintenance", 0, [py, "-m", "seglake.maintenance.main", cfg_json])
        self.started = time.time()

    @property
    def children(self) -> list[Child]:
        return [self.writer, *self.frontends, self.maintenance]

    async def _spawn(self, child: Child) -> trio.Process:
        env = dict(os.environ)
        env["SEGLAKE_PARENT_PID"] = str(os.getpid())
        env.pop("NOTIFY_SOCKET", None)  # only the supervisor talks to systemd
        proc = await trio.lowlevel.open_process(
            child.argv, pass_fds=child.pass_fds, env=env, stdin=subprocess.DEVNULL
        )
        child.proc = proc
        child.started_at = time.time()
        log.info("started %s (pid %d)", child.name, proc.pid)
        return proc

    async def _wait_writer_ready(self, proc: trio.Process) -> bool:
        deadline = trio.current_time() + WRITER_READY_TIMEOUT_S
        while trio.current_time() < deadline:
            if proc.returncode is not None or proc.poll() is not None:
                return False
            try:
                channel, _stream = await connect(str(self.cfg.writer_socket))
            except OSError:
                await trio.sleep(0.05)
                continue
            async with trio.open_nursery() as n:
                n.start_soon(channel.run_reader)
                try:
                    with trio.fail_after(5):
                        await channel.call("ping")
                    return True
                except Exception:  # not ready yet (old socket, still recovering)
                    await trio.sleep(0.05)
                finally:
                    await channel.aclose()
                    n.cancel_scope.cancel()
        return False

    async def _keep(
        self, child: Child, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run ``child`` until shutdown, restarting it with backoff."""
        backoff = 0.1
        announced = False
        while not self.stopping:
            proc = await self._spawn(child)
            if child.role == "writer":
                if not await self._wait_writer_ready(proc):
                    log.error("writer did not become ready")
                    if proc.returncode is None:
                        proc.kill()
                elif not announced:
                    announced = True
                    task_status.started()
            elif not announced:
                announced = True
                task_status.started()
            code = await proc.wait()
            child.exits.append(code)
            if self.stopping:
                return
            up = time.time() - child.started_at
            if up >= STABLE_AFTER_S:
                backoff = 0.1
            child.restarts += 1
            log.error(
                "%s (pid %d) exited with %d after %.1fs; restart #%d in %.1fs",
                child.name, proc.pid, code, up, child.restarts, backoff,
            )  # fmt: skip
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.cfg.restart_backoff_max)

    async def _heartbeat(self) -> None:
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        interval = HEARTBEAT_INTERVAL_S
        if watchdog_usec:
            interval = min(interval, watchdog_usec / 2e6)
        while True:
            write_heartbeat(self.lock_fd)
            if watchdog_usec:
                sd_notify("WATCHDOG=1")
            await trio.sleep(interval)

    async def _control(self, stream: trio.SocketStream) -> None:
        async def handle(name: str, args: Any, body: memoryview) -> tuple[Any, bytes]:
            if name == "processes":
                me = {
                    "name": "supervisor", "role": "supervisor", "pid": os.getpid(), "alive": True,
                    "restarts": 0, "uptime": time.time() - self.started, "last_exit": None,
                }  # fmt: skip
                return {
                    "address": self.address,
                    "processes": [me] + [c.info() for c in self.children],
                }, b""
            raise ValueError(name)

        await serve_channel(stream, handle, max_in_flight=8)

    async def _serve_control(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        path = str(self.cfg.supervisor_socket)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(16)
        task_status.started()
        await trio.serve_listeners(self._control, [trio.SocketListener(sock)])

    async def _stop_group(self, children: list[Child], grace: float) -> None:
        procs = [c.proc for c in children if c.proc is not None and c.proc.returncode is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            for p in procs:
                await p.wait()
        for p in procs:
            if p.returncode is None:
                log.warning("pid %d did not stop in %.0fs; killing", p.pid, grace)
                p.kill()
                await p.wait()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._serve_control)
            nursery.start_soon(self._heartbeat)
            await nursery.start(self._keep, self.writer)
            for child in self.frontends:
                await nursery.start(self._keep, child)
            await nursery.start(self._keep, self.maintenance)
            log.info(
                "Seglake serving on %s with %d frontends (data dir %s)",
                self.address, len(self.frontends), self.cfg.root,
            )  # fmt: skip
            sd_notify("READY=1\nSTATUS=serving")
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("received %s: draining", signal.Signals(signum).name)
                    break
            self.stopping = True
            sd_notify("STOPPING=1")
            await self._stop_group(self.frontends, self.cfg.shutdown_timeout + KILL_GRACE_S)
            await self._stop_group([self.maintenance], KILL_GRACE_S)
            await self._stop_group([self.writer], max(60.0, self.cfg.shutdown_timeout))
            nursery.cancel_scope.cancel()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.cfg.listen_path.unlink()
        log.info("stopped")


def serve(cfg: Config) -> int:
    setup_logging(cfg.log_level, "supervisor")
    if not cfg.access_key or not cfg.secret_key:
        log.error(
            "an access key and secret key are required (-access-key/-secret-key or SEGLAKE_ACCESS_KEY/SEGLAKE_SECRET_KEY)"
        )
        return 2
    try:
        sup = Supervisor(cfg)
    except DataDirLocked as exc:
        log.error("%s", exc)
        print(f"seglake: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    trio.run(sup.run)
    return 0
