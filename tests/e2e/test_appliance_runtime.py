"""What the running appliance promises systemd and the host's other users.

- No process of a running server carries the secret key on its command line
  or in its environment: children get their configuration through an
  inherited pipe (``seglake/lifecycle.py``).
- READY=1 comes once the writer answers and every frontend serves; WATCHDOG=1
  is sent only while the writer answers an IPC ping: a stopped (hung) writer
  silences it within one watchdog period, and it resumes once the writer
  does.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seglake.lifecycle import read_child_args, signal_ready
from tests.harness import ACCESS_KEY, SeglakeServer

SECRET = "appliance-secret-d0e5-not-on-any-cmdline"
WATCHDOG_USEC = 2_000_000  # a 2 s watchdog: heartbeats every second


class SecretsFileServer(SeglakeServer):
    """The server as the installed unit starts it: secrets from a 0600 file."""

    def __init__(self, data_dir: Path, secrets: Path, **kw: object) -> None:
        super().__init__(data_dir, **kw)  # type: ignore[arg-type]
        self.secrets = secrets

    def command(self) -> list[str]:
        argv = super().command()
        i = argv.index("--access-key")
        del argv[i : i + 4]  # --access-key K --secret-key S
        return [*argv, "--secrets-file", str(self.secrets)]


def _proc_text(pid: int, what: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _descendants(pid: int) -> set[int]:
    found = {pid}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_text(int(entry.name), "stat")
        if not stat:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        if ppid == pid:
            found |= _descendants(int(entry.name))
    return found


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text(f"SEGLAKE_ACCESS_KEY={ACCESS_KEY}\nSEGLAKE_SECRET_KEY={SECRET}\n")
    path.chmod(0o600)
    return path


def test_no_process_shows_a_secret(tmp_path: Path, secrets_file: Path) -> None:
    with SecretsFileServer(tmp_path / "data", secrets_file) as srv:
        assert srv.proc is not None
        token = (srv.data_dir / ".seglake-admin.token").read_text().strip()
        roles = srv.refresh_pids()
        assert sorted(roles) == ["frontend", "maintenance", "supervisor", "writer"]
        pids = _descendants(srv.proc.pid)
        assert set().union(*roles.values()) <= pids and len(pids) >= 5
        for pid in pids:
            for what in ("cmdline", "environ"):
                text = _proc_text(pid, what)
                assert SECRET.encode() not in text, f"the secret key is in /proc/{pid}/{what}"
                assert token.encode() not in text, f"the admin token is in /proc/{pid}/{what}"
        # The children were handed the configuration, secret included: a
        # signed request works.
        import boto3

        s3 = boto3.client(
            "s3", endpoint_url=srv.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
        )  # fmt: skip
        s3.create_bucket(Bucket="handed-over")
        s3.put_object(Bucket="handed-over", Key="k", Body=b"v")
        assert s3.get_object(Bucket="handed-over", Key="k")["Body"].read() == b"v"


def test_secret_in_the_environment_does_not_reach_children(tmp_path: Path) -> None:
    srv = SeglakeServer(tmp_path / "data", env={"SEGLAKE_SECRET_KEY": SECRET})
    srv.extra_args = []
    with srv:
        assert srv.proc is not None
        for pid in _descendants(srv.proc.pid) - {srv.proc.pid}:
            assert SECRET.encode() not in _proc_text(pid, "environ"), pid


# ---- systemd notifications ------------------------------------------------------------


class NotifyListener:
    """A NOTIFY_SOCKET that records every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def since(self, t: float, text: str) -> int:
        with self.lock:
            return sum(1 for at, m in self.messages if at >= t and text in m)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for _, m in self.messages:
                    if text in m:
                        return m
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never arrived: {self.messages}")

    def close(self) -> None:
        self.done = True
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def test_watchdog_follows_the_writer(tmp_path: Path, notify: NotifyListener) -> None:
    period = WATCHDOG_USEC / 1e6
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with SeglakeServer(tmp_path / "data", env=env) as srv:
        ready = notify.wait_for("READY=1", timeout=30)
        assert "serving with 2 frontends" in ready
        writer = srv.refresh_pids()["writer"][0]
        for pid in _descendants(srv.proc.pid if srv.proc else 0) - {
            srv.proc.pid if srv.proc else 0
        }:
            assert b"NOTIFY_SOCKET" not in _proc_text(pid, "environ")  # only the supervisor talks

        t0 = time.monotonic()
        time.sleep(2 * period)
        assert notify.since(t0, "WATCHDOG=1") >= 2  # healthy: heartbeats flow

        os.kill(writer, signal.SIGSTOP)
        try:
            time.sleep(period)  # one period for the heartbeat in flight to land
            t1 = time.monotonic()
            time.sleep(2 * period)
            assert notify.since(t1, "WATCHDOG=1") == 0, "WATCHDOG=1 sent for a hung writer"
        finally:
            os.kill(writer, signal.SIGCONT)
        t2 = time.monotonic()
        deadline = t2 + 3 * period
        while notify.since(t2, "WATCHDOG=1") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notify.since(t2, "WATCHDOG=1") >= 1, "WATCHDOG=1 did not resume"
        assert srv.refresh_pids()["writer"] == [writer]  # no restart: it was only stopped
    assert notify.wait_for("STOPPING=1", timeout=5)


# ---- the hand-off itself (pure) --------------------------------------------------------


def test_child_args_read_the_config_pipe_and_the_ready_pipe() -> None:
    cfg_r, cfg_w = os.pipe()
    os.write(cfg_w, b'{"x": 1}')
    os.close(cfg_w)
    ready_r, ready_w = os.pipe()
    got = read_child_args(["--config-fd", str(cfg_r), "--ready-fd", str(ready_w), "7"])
    assert got == ('{"x": 1}', ready_w, ["7"])
    with pytest.raises(OSError):
        os.fstat(cfg_r)  # read once, then closed
    signal_ready(ready_w)
    assert os.read(ready_r, 8) == b"R"
    os.close(ready_r)
    with pytest.raises(SystemExit):
        read_child_args(['{"secret": "on the command line"}'])


def test_recovery_progress_tells_a_working_writer_from_a_stalled_one() -> None:
    """EXTEND_TIMEOUT_USEC is asked for only while the starting writer's CPU
    or I/O counters grow: a busy process advances, a sleeping one does not."""
    import subprocess
    import sys

    from seglake.supervisor.main import RecoveryProgress

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)  # let the interpreter finish starting
        working, stalled = RecoveryProgress(busy.pid, 0.2), RecoveryProgress(idle.pid, 0.2)
        assert not working.advanced()  # not before its interval has passed
        time.sleep(0.3)
        working.advanced(), stalled.advanced()  # the first look only records
        time.sleep(0.3)
        assert working.advanced() is True
        assert stalled.advanced() is False
        busy.kill()
        busy.wait()
        time.sleep(0.3)
        assert working.advanced() is False  # gone: nothing to extend for
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()
