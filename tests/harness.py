"""Start the real multi-process server for tests and benchmarks.

Each ``SeglakeServer`` runs ``seglake serve`` (supervisor, writer, frontends,
maintenance) in its own temporary data dir on a kernel-chosen loopback port,
and is always torn down by pid: the supervisor and every child it reported.
``server_fixture`` makes the pytest fixture a test module needs from the
flags it wants the server started with.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

ACCESS_KEY = "test"
SECRET_KEY = "testsecret"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0


class ServerError(Exception):
    pass


class SeglakeServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        frontends: int = 2,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.frontends = frontends
        self.extra_args = list(extra_args or [])
        self.env = env
        self.log_path = log_path or (self.data_dir.parent / f"{self.data_dir.name}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.known_pids: set[int] = set()

    # ---- lifecycle -------------------------------------------------------
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "seglake.cli", "serve",
            "--data-dir", str(self.data_dir), "--addr", "127.0.0.1:0",
            "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
            # Suites that sign thousands of deliberately wrong requests from
            # one address must not meet the auth-failure limit; the limit's
            # own tests pass real values in extra_args (later flags win).
            "--auth-fail-burst", "1000000",
            "--frontends", str(self.frontends), *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT_S) -> SeglakeServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listen = self.data_dir / ".seglake-listen"
        if listen.exists():
            listen.unlink()
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.known_pids.add(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if listen.exists():
                text = listen.read_text().strip()
                if text:
                    self.port = int(text.rsplit(":", 1)[1])
                    if self._http_ready():
                        self.refresh_pids()
                        return self
            time.sleep(0.05)
        self.kill()
        raise ServerError(f"server did not become ready in {timeout}s:\n{self.log_tail()}")

    def _http_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port or 0), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return s.recv(12).startswith(b"HTTP/1.1")
        except OSError:
            return False

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int:
        """Graceful stop (SIGTERM); returns the supervisor's exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ServerError("server did not stop on SIGTERM") from None
        self._reap_children()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """kill -9 the whole tree we know of (supervisor and children)."""
        self.refresh_pids(quiet=True)
        for pid in sorted(self.known_pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._reap_children()

    def _reap_children(self) -> None:
        deadline = time.monotonic() + 10
        for pid in self.known_pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ServerError):
                self.stop(timeout=30)
        else:
            self._reap_children()
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> SeglakeServer:
        # A start that fails half-way (the writer up, a frontend not) still
        # leaves processes and the log file behind: close them too.
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- introspection -----------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "status", "--json", "--data-dir", str(self.data_dir)],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise ServerError(f"status failed: {out.stderr.decode(errors='replace')}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def refresh_pids(self, quiet: bool = False) -> dict[str, list[int]]:
        """Role → pids of live processes, as the supervisor reports them."""
        try:
            procs = self.status()["processes"]
        except (ServerError, subprocess.TimeoutExpired, KeyError, ValueError):
            if quiet:
                return {}
            raise
        roles: dict[str, list[int]] = {}
        for p in procs:
            if p.get("pid") and p.get("alive"):
                roles.setdefault(p["role"], []).append(int(p["pid"]))
                self.known_pids.add(int(p["pid"]))
        return roles

    def s3(self, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        # total_max_attempts counts the first try (max_attempts counts retries).
        cfg = Config(retries={"total_max_attempts": config.pop("max_attempts", 1)}, **config)
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name=REGION, config=cfg,
        )  # fmt: skip


def server_fixture(
    *flags: str,
    frontends: int = 1,
    buckets: Sequence[str] = (),
    setup: Callable[[SeglakeServer], None] | None = None,
    scope: Literal["session", "module", "function"] = "module",
) -> Any:
    """A pytest fixture yielding a started server, always torn down.

    Assign it to the fixture's name in a test module
    (``server = server_fixture("--domains", "s3.test")``): the server runs
    with ``flags`` added to its command line, in a fresh directory named
    after the fixture, with ``buckets`` created and then ``setup`` run on it.
    """
    import pytest

    def fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[SeglakeServer]:
        root = tmp_path_factory.mktemp(request.fixturename)
        with SeglakeServer(root / "data", frontends=frontends, extra_args=list(flags)) as srv:
            if buckets:
                s3 = srv.s3()
                for bucket in buckets:
                    s3.create_bucket(Bucket=bucket)
            if setup is not None:
                setup(srv)
            yield srv

    return pytest.fixture(scope=scope)(fixture)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
