"""``seglake dashboard`` in a real terminal (tmux, 80×24) against the real
server: it shows the processes and the live request rate under load,
switches maintenance mode with ``m`` + ``y``, and leaves with ``q``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness import SeglakeServer, server_fixture

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

server = server_fixture("--stats-interval", "0.2", frontends=2)
WAIT_S = 20.0


@pytest.fixture
def tmux(server: SeglakeServer) -> Iterator[Callable[..., str]]:
    sock = f"seglake-test-{os.getpid()}"
    cmd = f"{sys.executable} -m seglake.cli dashboard --data-dir {server.data_dir}"
    base = ["tmux", "-L", sock]
    subprocess.run([*base, "new-session", "-d", "-s", "dash", "-x", "80", "-y", "24", cmd],
                   check=True, timeout=10)  # fmt: skip

    def run(*args: str) -> str:
        out = subprocess.run([*base, *args], capture_output=True, text=True, timeout=10)
        return out.stdout if out.returncode == 0 else ""

    try:
        yield run
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=10, check=False)


def wait_screen(tmux: Callable[..., str], check: Callable[[str], bool], load: Any = None) -> str:
    deadline = time.monotonic() + WAIT_S
    screen = ""
    while time.monotonic() < deadline:
        if load is not None:
            load()
        screen = tmux("capture-pane", "-p", "-t", "dash")
        if check(screen):
            return screen
        time.sleep(0.1)
    raise AssertionError(f"screen never matched:\n{screen}")


def put_rate(screen: str) -> float:
    """The PutObject row's req/s; 0 while there is none, or while it shows
    ``-``: a dashboard whose first sample already counted PUTs has no rate
    until its second (``REFRESH_S`` later)."""
    for line in screen.splitlines():
        cells = line.split()
        if cells[:1] == ["PutObject"] and len(cells) > 1:
            try:
                return float(cells[1])
            except ValueError:
                return 0.0
    return 0.0


def test_dashboard_under_load_toggles_maintenance_and_quits(
    server: SeglakeServer, tmux: Callable[..., str]
) -> None:
    s3 = server.s3()
    s3.create_bucket(Bucket="dash")
    n = 0

    def load() -> None:
        nonlocal n
        for _ in range(5):
            s3.put_object(Bucket="dash", Key=f"k{n}", Body=b"x" * 4096)
            n += 1

    def busy(screen: str) -> bool:
        return put_rate(screen) > 0 and "frontend-0" in screen

    screen = wait_screen(tmux, busy, load)
    assert all(len(line) <= 80 for line in screen.splitlines())
    for name in ("supervisor", "writer", "frontend-1", "maintenance off"):
        assert name in screen, screen
    assert n <= 2000  # bounded load

    tmux("send-keys", "-t", "dash", "m")
    wait_screen(tmux, lambda s: "enable maintenance mode? y to confirm" in s)
    tmux("send-keys", "-t", "dash", "y")
    screen = wait_screen(tmux, lambda s: "maintenance quiesced" in s)
    assert server.status()["store"]["maintenance"]["state"] == "quiesced"

    tmux("send-keys", "-t", "dash", "m")
    wait_screen(tmux, lambda s: "disable maintenance mode?" in s)
    tmux("send-keys", "-t", "dash", "n")  # anything but y cancels
    wait_screen(tmux, lambda s: "cancelled" in s)
    assert server.status()["store"]["maintenance"]["state"] == "quiesced"
    tmux("send-keys", "-t", "dash", "m")
    wait_screen(tmux, lambda s: "disable maintenance mode?" in s)
    tmux("send-keys", "-t", "dash", "y")
    wait_screen(tmux, lambda s: "maintenance off" in s)

    tmux("send-keys", "-t", "dash", "q")
    deadline = time.monotonic() + WAIT_S
    while _has(tmux):
        assert time.monotonic() < deadline, "the dashboard did not exit on q"
        time.sleep(0.1)


def _has(tmux: Callable[..., str]) -> bool:
    return bool(tmux("list-sessions"))


def test_dashboard_once_and_json_without_a_tty(server: SeglakeServer) -> None:
    base = [sys.executable, "-m", "seglake.cli", "--data-dir", str(server.data_dir)]
    out = subprocess.run([*base, "dashboard", "--once"], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert "processes" in out.stdout and "writer" in out.stdout
    out = subprocess.run([*base, "top", "--json"], capture_output=True, text=True, timeout=60,
                         check=True)  # fmt: skip
    import json

    doc = json.loads(out.stdout)
    assert {p["name"] for p in doc["processes"]} >= {"writer", "frontend-0", "maintenance"}
    out = subprocess.run([*base, "stats"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout)["schema"] == 1
