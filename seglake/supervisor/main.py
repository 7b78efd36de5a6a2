"""The supervisor (``seglake serve``): owns the data-dir lock, the listening
socket and the lives of every child. It never touches segments or SQLite.

Start: lock the data dir (a second server on it refuses) → create the admin
token → bind the listening socket once → start the writer and wait until it
answers (asking systemd for more start time, EXTEND_TIMEOUT_USEC, while its
recovery makes progress) → start N frontends (each inherits the socket) and
the maintenance process → READY=1 to systemd once every frontend serves.
Each child gets its configuration, secret key included, through an
inherited pipe: never on a command line or in its environment.

Watchdog: WATCHDOG=1 only while the writer answers an IPC ping in time and
no frontend is gone for good, so systemd restarts a service whose writer
hangs.

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
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from seglake.config import FIELD_TYPES, Config, env_name
from seglake.ipc.channel import connect, listen_unix, serve_channel
from seglake.ipc.messages import (
    SUPERVISOR,
    Done,
    ListProcesses,
    MergedStats,
    Ping,
    ProcessList,
    Report,
    Request,
    SupervisorStats,
)
from seglake.lifecycle import CONFIG_FD_FLAG, EXIT_REFUSED, MAX_CONFIG_BYTES, READY_FD_FLAG
from seglake.locks import try_lock, write_holder
from seglake.logs import setup_logging
from seglake.metrics.merge import Aggregate
from seglake.private_files import DIR_MODE, exposed
from seglake.supervisor.notify import sd_notify

log = logging.getLogger("seglake.supervisor")

WRITER_READY_TIMEOUT_S = 300.0  # recovery of many open segments can take a while
WRITER_PING_TIMEOUT_S = 5.0  # a writer slower than this to answer a ping is hung
FRONTEND_READY_TIMEOUT_S = 60.0
# A child down this much longer than the restart backoff is not coming back.
RESTART_GRACE_S = 5.0
# Start-up extensions asked of systemd while recovery progresses: each buys
# this much time and is asked for at most every EXTEND_EVERY_S.
EXTEND_TIMEOUT_S = 30.0
EXTEND_EVERY_S = 10.0
STABLE_AFTER_S = 30.0  # a child up this long resets its backoff
HEARTBEAT_INTERVAL_S = 5.0
KILL_GRACE_S = 5.0


class WriterRefused(Exception):
    """The writer exited with EXIT_REFUSED before it was ever ready."""


class DataDirLocked(Exception):
    pass


def child_environment() -> dict[str, str]:
    """The supervisor's environment less what children must not see: the
    settings (children get the whole configuration through their pipe, and
    the secret key must not sit in /proc/<pid>/environ) and systemd's
    notification socket (only the supervisor talks to systemd)."""
    drop = {env_name(name) for name in FIELD_TYPES} | {"SEGLAKE_SECRETS_FILE", "NOTIFY_SOCKET"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["SEGLAKE_PARENT_PID"] = str(os.getpid())
    return env


class RecoveryProgress:
    """Whether a starting writer is still getting somewhere: its CPU time or
    its I/O counters grew since the last look (read from /proc)."""

    def __init__(self, pid: int, every_s: float = EXTEND_EVERY_S) -> None:
        self.pid = pid
        self.every_s = every_s
        self.last: tuple[int, ...] | None = None
        self.checked = time.monotonic()

    def _counters(self) -> tuple[int, ...] | None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            io = Path(f"/proc/{self.pid}/io").read_text().split()
        except (OSError, IndexError):
            return None
        # utime, stime (fields 14 and 15), then rchar and wchar.
        return int(stat[11]), int(stat[12]), int(io[1]), int(io[3])

    def advanced(self) -> bool:
        now = time.monotonic()
        if now - self.checked < self.every_s:
            return False
        self.checked = now
        current = self._counters()
        moved = current is not None and current != self.last
        self.last = current
        return moved


@dataclass
class Child:
    role: str
    index: int
    module: str
    args: list[str] = field(default_factory=list)  # after the hand-off flags
    pass_fds: tuple[int, ...] = ()
    proc: trio.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    stopped_at: float = 0.0  # when it last exited (0: never)
    serving: bool = False  # a frontend that said it accepts connections
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
            **(proc_usage(self.proc.pid) if alive and self.proc is not None else {}),
        }  # fmt: skip


_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def proc_usage(pid: int) -> dict[str, float]:
    """Resident memory and CPU time of ``pid`` from /proc ({} if unreadable)."""
    try:
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return {}
    # utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
    return {"rss_bytes": rss_pages * _PAGE, "cpu_seconds": (int(stat[11]) + int(stat[12])) / _TICKS}


def lock_data_dir(cfg: Config) -> int:
    cfg.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if not any(cfg.root.iterdir()):
        # A new store in a directory made for it (by a script, a test, a
        # unit's StateDirectory) is private from the start; an existing
        # store's modes are the operator's, warned about, and repaired on
        # request (``seglake doctor --fix-permissions``).
        os.chmod(cfg.root, DIR_MODE)
    fd = try_lock(cfg.lock_path)
    if fd is None:
        try:  # the holder's "pid time" (seglake/locks.py)
            holder = cfg.lock_path.read_bytes()[:200].decode("ascii", "replace").split()
        except OSError:
            holder = []
        who = f" (pid {holder[0]})" if holder else ""
        raise DataDirLocked(
            f"another Seglake server{who} is already using {cfg.root}; refusing to start"
        )
    write_holder(fd)
    return fd


# Start-up names this many exposed paths; fsck lists them all.
EXPOSED_SHOWN = 5


def warn_if_exposed(cfg: Config) -> None:
    """A store others can read (written by an older version, or opened up by
    hand) keeps working, but the operator hears of it at every start: the
    data dir and its own entries are checked, the deep walk is fsck's."""
    found = exposed(cfg.root, deep=False)
    if found:
        shown = ", ".join(f"{p} ({m:04o})" for p, m in found[:EXPOSED_SHOWN])
        more = f" and {len(found) - EXPOSED_SHOWN} more" if len(found) > EXPOSED_SHOWN else ""
        log.warning(
            "group or other users can access %d path(s) of the store: %s%s; "
            "run `seglake doctor --fix-permissions`",
            len(found), shown, more,
        )  # fmt: skip


def ensure_admin_token(cfg: Config) -> None:
    path = cfg.admin_token_path
    if path.exists():
        os.chmod(path, 0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def bind_listener(cfg: Config, where: str = "") -> socket.socket:
    """Bind ``where`` (HOST:PORT), by default the S3 address ``cfg.addr``."""
    host, port = cfg.listen_host_port(where)
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
        warn_if_exposed(cfg)
        ensure_admin_token(cfg)
        self.listener = bind_listener(cfg)
        bound = self.listener.getsockname()
        host = bound[0]
        self.address = f"[{host}]:{bound[1]}" if ":" in host else f"{host}:{bound[1]}"
        cfg.listen_path.write_text(self.address + "\n")
        self.stopping = False
        self.cfg_json = cfg.to_json().encode()
        if len(self.cfg_json) > MAX_CONFIG_BYTES:
            raise OSError(f"configuration of {len(self.cfg_json)} bytes is too large to hand over")
        fd = self.listener.fileno()
        self.writer = Child("writer", 0, "seglake.writer.main")
        # The separate metrics listener (--metrics-addr): bound once here
        # like the S3 one, and served by every frontend.
        self.metrics_listener = bind_listener(cfg, cfg.metrics_addr) if cfg.metrics_addr else None
        mfd = self.metrics_listener.fileno() if self.metrics_listener is not None else -1
        self.frontends = [
            Child(
                "frontend", i, "seglake.frontend.main", [str(fd), f"frontend-{i}", str(mfd)],
                (fd,) if mfd < 0 else (fd, mfd),
            )
            for i in range(cfg.frontend_count())
        ]  # fmt: skip
        self.stats = Aggregate()
        self.maintenance = Child("maintenance", 0, "seglake.maintenance.main")
        self.started = time.time()
        self.writer_ready = False
        self.ready_sent = False

    @property
    def children(self) -> list[Child]:
        return [self.writer, *self.frontends, self.maintenance]

    async def _spawn(self, child: Child) -> tuple[trio.Process, int | None]:
        """Start ``child`` with its configuration in an inherited pipe; for a
        frontend, also return the read end of its "serving" pipe."""
        cfg_r, cfg_w = os.pipe()
        try:
            os.write(cfg_w, self.cfg_json)  # fits the pipe buffer (checked in __init__)
        finally:
            os.close(cfg_w)
        argv = [sys.executable, "-m", child.module, CONFIG_FD_FLAG, str(cfg_r)]
        fds = [cfg_r, *child.pass_fds]
        ready_r: int | None = None
        ready_w: int | None = None
        if child.role == "frontend":
            ready_r, ready_w = os.pipe()
            argv += [READY_FD_FLAG, str(ready_w)]
            fds.append(ready_w)
        try:
            proc = await trio.lowlevel.open_process(
                [*argv, *child.args], pass_fds=tuple(fds), env=child_environment(),
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            if ready_r is not None:
                os.close(ready_r)
            raise
        finally:
            os.close(cfg_r)
            if ready_w is not None:
                os.close(ready_w)
        child.proc = proc
        child.started_at = time.time()
        child.serving = False
        log.info("started %s (pid %d)", child.name, proc.pid)
        return proc, ready_r

    async def _wait_serving(self, child: Child, ready_r: int) -> None:
        """Until the frontend says it accepts connections (or exits)."""
        try:
            with trio.move_on_after(FRONTEND_READY_TIMEOUT_S):
                await trio.lowlevel.wait_readable(ready_r)
                child.serving = os.read(ready_r, 1) == b"R"
        finally:
            os.close(ready_r)
        if not child.serving:
            log.error("%s did not start serving", child.name)

    async def _wait_writer_ready(self, proc: trio.Process) -> bool:
        deadline = trio.current_time() + WRITER_READY_TIMEOUT_S
        progress = RecoveryProgress(proc.pid)
        while trio.current_time() < deadline:
            if proc.returncode is not None or proc.poll() is not None:
                return False
            if not self.ready_sent and progress.advanced():
                # Recovery is still reading and hashing: ask systemd for more
                # start time, a little at a time, never for a stalled writer.
                sd_notify(f"EXTEND_TIMEOUT_USEC={EXTEND_TIMEOUT_S * 1_000_000:.0f}")
            if await self._ping_writer(WRITER_PING_TIMEOUT_S):
                return True
            await trio.sleep(0.05)
        return False

    async def _ping_writer(self, within_s: float) -> bool:
        """Whether the writer answers an IPC ping within ``within_s`` seconds."""
        try:
            channel, _stream = await connect(str(self.cfg.writer_socket))
        except OSError:
            return False
        async with trio.open_nursery() as n:
            n.start_soon(channel.run_reader)
            try:
                with trio.fail_after(within_s):
                    await channel.request(Ping())
                return True
            except Exception:  # not ready yet, hung, or gone
                return False
            finally:
                await channel.aclose()
                n.cancel_scope.cancel()

    def _down_too_long(self, child: Child, now: float) -> bool:
        """A child that is not running and not about to be restarted."""
        if child.proc is not None and child.proc.returncode is None:
            return False
        return now - child.stopped_at > self.cfg.restart_backoff_max + RESTART_GRACE_S

    async def _healthy(self, ping_timeout: float) -> bool:
        """What WATCHDOG=1 vouches for: the writer answers (or is still in its
        start-up recovery) and no frontend is gone for good. A hung writer
        stops the heartbeats, and systemd restarts the service."""
        now = time.time()
        if any(self._down_too_long(c, now) for c in self.frontends):
            return False
        if self.writer_ready:
            return await self._ping_writer(ping_timeout)
        # Restarting: alive and within its recovery time, or in its backoff.
        proc = self.writer.proc
        if proc is not None and proc.returncode is None:
            return now - self.writer.started_at < WRITER_READY_TIMEOUT_S
        return not self._down_too_long(self.writer, now)

    async def _keep(
        self, child: Child, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run ``child`` until shutdown, restarting it with backoff."""
        backoff = 0.1
        announced = False
        while not self.stopping:
            proc, ready_r = await self._spawn(child)
            if child.role == "writer":
                self.writer_ready = await self._wait_writer_ready(proc)
                if not self.writer_ready:
                    log.error("writer did not become ready")
                    if proc.returncode is None:
                        proc.kill()
                elif not announced:
                    announced = True
                    task_status.started()
            else:
                if ready_r is not None:
                    await self._wait_serving(child, ready_r)
                if not announced:
                    announced = True
                    task_status.started()
            code = await proc.wait()
            if child.role == "writer" and not announced and code == EXIT_REFUSED:
                # The writer refused this configuration (its log says why):
                # a restart would refuse again.
                raise WriterRefused(f"the writer refused to start (exit {code}); see its log")
            child.stopped_at = time.time()
            self.stats.retire(child.name)  # its counters stay in the totals
            if child.role == "writer":
                self.writer_ready = False
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
        # Two heartbeats per watchdog period, each health check bounded so
        # that a slow one cannot make a healthy service miss its period.
        if watchdog_usec:
            interval = min(interval, watchdog_usec / 2e6)
        ping_timeout = min(WRITER_PING_TIMEOUT_S, interval / 2)
        while True:
            write_holder(self.lock_fd)
            if watchdog_usec and await self._healthy(ping_timeout):
                sd_notify("WATCHDOG=1")
            await trio.sleep(interval)

    async def _control(self, stream: trio.SocketStream) -> None:
        async def handle(name: str, msg: Request[Any], body: memoryview) -> tuple[Any, bytes]:
            if isinstance(msg, ListProcesses):
                return ProcessList(self.address, self._processes(usage=False)), b""
            if isinstance(msg, Report):
                self._report(msg)
                return Done(), b""
            if isinstance(msg, SupervisorStats):
                return MergedStats(
                    self.address, self._processes(usage=True),
                    frontends=self.stats.totals("frontend"), writer=self.stats.totals("writer"),
                    reports=self.stats.reports(),
                ), b""  # fmt: skip
            raise ValueError(name)  # SUPERVISOR.decode let through an unhandled request

        await serve_channel(stream, handle, max_in_flight=8, decode=SUPERVISOR.decode)

    def _processes(self, *, usage: bool) -> list[dict[str, Any]]:
        me = {
            "name": "supervisor", "role": "supervisor", "pid": os.getpid(), "alive": True,
            "restarts": 0, "uptime": time.time() - self.started, "last_exit": None,
            **(proc_usage(os.getpid()) if usage else {}),
        }  # fmt: skip
        return [me] + [c.info() for c in self.children]

    def _report(self, msg: Report) -> None:
        """A child's counters: accepted only from the pid running under that name."""
        child = next((c for c in self.children if c.name == msg.process), None)
        if child is None or child.proc is None or child.proc.pid != msg.pid:
            return
        if child.proc.returncode is not None:
            return
        self.stats.report({
            "name": msg.process, "role": child.role, "pid": msg.pid, "started": msg.started,
            "at": msg.at, "counters": msg.counters, "gauges": msg.gauges,
        })  # fmt: skip

    async def _serve_control(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        path = str(self.cfg.supervisor_socket)
        sock = await listen_unix(path, backlog=16)
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
            # The frontends start side by side; READY=1 waits for all of them.
            async with trio.open_nursery() as starting:
                for child in [*self.frontends, self.maintenance]:
                    starting.start_soon(nursery.start, self._keep, child)
            log.info(
                "Seglake serving on %s with %d frontends (data dir %s)",
                self.address, len(self.frontends), self.cfg.root,
            )  # fmt: skip
            serving = sum(c.serving for c in self.frontends)
            sd_notify(f"READY=1\nSTATUS=serving with {serving} frontends")
            self.ready_sent = True
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
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.cfg.listen_path.unlink()
        log.info("stopped")


def serve(cfg: Config) -> int:
    setup_logging(cfg.log_level, "supervisor", cfg.log_format)
    if not cfg.access_key or not cfg.secret_key:
        log.error(
            "an access key and secret key are required (-access-key/-secret-key or SEGLAKE_ACCESS_KEY/SEGLAKE_SECRET_KEY)"
        )
        return 2
    if cfg.tls:
        # Fail here, once, with a clear message, rather than in every frontend
        # (frontend/tls.py sets the protocol versions and ciphers).
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cfg.tls_cert, cfg.tls_key)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            print(f"seglake: cannot use tls-cert/tls-key: {exc}", file=sys.stderr)
            return 2
    upgrade = cfg.needs_upgrade()
    if upgrade is not None:
        # Not upgraded automatically: converting a store is a one-way step an
        # operator should choose (and back up for), not a side effect of a start.
        log.error("refusing to start: %s", upgrade)
        print(f"seglake: refusing to start: {upgrade}", file=sys.stderr)
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
    refused: list[BaseException] = []
    try:
        trio.run(sup.run)
    except* WriterRefused as group:
        refused.extend(group.exceptions)
    if refused:
        log.error("%s", refused[0])
        print(f"seglake: {refused[0]}", file=sys.stderr)
        return EXIT_REFUSED
    return 0
