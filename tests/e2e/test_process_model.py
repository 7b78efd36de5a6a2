"""The process model (SPEC §3): one supervisor owning N frontends, one writer
and one maintenance process; crashed children come back; the data-dir lock
keeps a second server out; SIGTERM drains and exits 0; systemd gets
READY=1 / STOPPING=1.

Every server here is private to its test (the tests kill its children) and
is always torn down by pid.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.util import (
    MiB,
    RawPut,
    client,
    error_code,
    is_no_such_key,
    pid_alive,
    ppid_of,
    proc_cmdline,
    processes_by_name,
    retry,
    role_pids,
    server_status_ok,
    sigkill,
    status_retry,
    wait_for,
    wait_restarted,
)
from tests.harness import SeglakeServer, server_fixture

FRONTENDS = 3
BUCKET = "process-model"
RESTART_TIMEOUT_S = 20.0
SERVICE_RETRY_S = 10.0


srv = server_fixture(frontends=FRONTENDS, scope="function")


def kill_and_see_restarted(srv: SeglakeServer, name: str, pid: int) -> None:
    """SIGKILL child ``name`` (pid ``pid``) and wait until the supervisor has
    restarted it, as its own child."""
    sigkill(pid)
    entry = wait_restarted(srv, name, pid, timeout=RESTART_TIMEOUT_S)
    assert entry["restarts"] >= 1
    assert srv.proc is not None
    assert ppid_of(entry["pid"]) == srv.proc.pid


def make_bucket(server: SeglakeServer) -> Any:
    s3 = client(server)
    s3.create_bucket(Bucket=BUCKET)
    return s3


def put_get_roundtrip(s3: Any, key: str, data: bytes) -> None:
    """PUT then GET ``key``; raises unless both succeed and the bytes match."""
    resp = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    assert resp["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert got == data, f"{key}: read back {len(got)} B, expected {len(data)} B"


def children_of(pid: int) -> set[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if ppid_of(int(name)) == pid and pid_alive(int(name)):
                out.add(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return out


# ---- (a) the tree ---------------------------------------------------------------
def test_process_tree(srv: SeglakeServer) -> None:
    roles = role_pids(srv)
    assert srv.proc is not None
    sup = srv.proc.pid
    assert roles.get("supervisor") == [sup], roles
    assert len(roles.get("writer", [])) == 1, roles
    assert len(roles.get("frontend", [])) == FRONTENDS, roles
    assert len(roles.get("maintenance", [])) == 1, roles
    assert set(roles) == {"supervisor", "writer", "frontend", "maintenance"}, roles

    modules = {
        "writer": "seglake.writer.main",
        "frontend": "seglake.frontend.main",
        "maintenance": "seglake.maintenance.main",
    }
    children: set[int] = set()
    for role, module in modules.items():
        for pid in roles[role]:
            assert pid_alive(pid), f"{role} pid {pid} is not running"
            assert ppid_of(pid) == sup, f"{role} pid {pid} has parent {ppid_of(pid)}, not {sup}"
            assert module in proc_cmdline(pid), f"{role} pid {pid}: {proc_cmdline(pid)}"
            children.add(pid)
    assert len(children) == FRONTENDS + 2
    # The supervisor has no other (unreported) children.
    assert children_of(sup) == children

    st = status_retry(srv)
    by_name = processes_by_name(st)
    assert {f"frontend-{i}" for i in range(FRONTENDS)} <= set(by_name), by_name.keys()
    for p in st["processes"]:
        assert p["alive"], p
        assert p["restarts"] == 0, p
        assert p["uptime"] >= 0, p


# ---- (b) frontend crash -------------------------------------------------------------
def test_frontend_kill_is_restarted(srv: SeglakeServer) -> None:
    s3 = make_bucket(srv)
    put_get_roundtrip(s3, "before", b"before the crash")
    victim = processes_by_name(status_retry(srv))["frontend-1"]
    others = {
        n: p["pid"] for n, p in processes_by_name(status_retry(srv)).items() if n != "frontend-1"
    }

    kill_and_see_restarted(srv, "frontend-1", victim["pid"])

    # Only the killed child was replaced.
    now = processes_by_name(status_retry(srv))
    for name, pid in others.items():
        assert now[name]["pid"] == pid, f"{name} changed pid {pid} → {now[name]['pid']}"

    data = os.urandom(200_000)
    retry(lambda: put_get_roundtrip(s3, "after", data), timeout=SERVICE_RETRY_S, what="PUT/GET")
    # Several fresh connections, so every frontend (the new one too) gets some.
    for i in range(12):
        fresh = client(srv, max_attempts=3)
        retry(
            lambda fresh=fresh, i=i: put_get_roundtrip(fresh, f"spread-{i}", os.urandom(1000 + i)),
            timeout=SERVICE_RETRY_S,
            what=f"PUT/GET spread-{i}",
        )
    assert s3.get_object(Bucket=BUCKET, Key="before")["Body"].read() == b"before the crash"


# ---- (c) writer crash ------------------------------------------------------------------
def test_writer_kill_is_restarted_and_data_survives(srv: SeglakeServer) -> None:
    s3 = make_bucket(srv)
    objects = {
        "empty": b"",
        "one": b"\x00",
        "small": os.urandom(12_345),
        "chunky": os.urandom(5 * MiB + 17),
    }
    for key, data in objects.items():
        put_get_roundtrip(s3, key, data)

    writer = processes_by_name(status_retry(srv))["writer"]
    kill_and_see_restarted(srv, "writer", writer["pid"])

    new = os.urandom(300_000)
    retry(
        lambda: put_get_roundtrip(s3, "after-writer-crash", new),
        timeout=SERVICE_RETRY_S,
        what="PUT/GET",
    )
    for key, data in objects.items():
        resp = s3.get_object(Bucket=BUCKET, Key=key)
        assert resp["Body"].read() == data, key
        assert resp["ETag"].strip('"') == hashlib.md5(data).hexdigest(), key
    server_status_ok(srv)


# ---- (d) maintenance crash -------------------------------------------------------------
def test_maintenance_kill_is_restarted(srv: SeglakeServer) -> None:
    m = processes_by_name(status_retry(srv))["maintenance"]
    kill_and_see_restarted(srv, "maintenance", m["pid"])
    st = server_status_ok(srv)
    assert processes_by_name(st)["writer"]["restarts"] == 0
    # S3 service is unaffected.
    s3 = make_bucket(srv)
    put_get_roundtrip(s3, "after-maintenance-crash", b"still here")


# ---- (e) the data-dir lock ---------------------------------------------------------------
def test_second_server_on_same_data_dir_refuses(srv: SeglakeServer, tmp_path: Path) -> None:
    listen_before = (srv.data_dir / ".seglake-listen").read_text()
    second = SeglakeServer(srv.data_dir, frontends=1, log_path=tmp_path / "second.log")
    started = time.monotonic()
    proc = subprocess.Popen(
        second.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child, by pid
        out, _ = proc.communicate(timeout=10)
        pytest.fail(
            f"a second server on the same data dir kept running:\n{out.decode(errors='replace')[-2000:]}"
        )
    elapsed = time.monotonic() - started
    text = out.decode(errors="replace")
    assert proc.returncode != 0, f"second server exited 0:\n{text}"
    assert "already using" in text, text
    assert elapsed < 15, f"refusal took {elapsed:.1f}s"

    # The first server is untouched.
    assert (srv.data_dir / ".seglake-listen").read_text() == listen_before
    s3 = make_bucket(srv)
    put_get_roundtrip(s3, "still-mine", b"first server still serves")
    st = status_retry(srv)
    assert all(p["alive"] and p["restarts"] == 0 for p in st["processes"]), st["processes"]


# ---- (f) SIGTERM drains ------------------------------------------------------------------
def test_sigterm_drains_and_in_flight_put_is_never_a_lie(tmp_path: Path) -> None:
    """SIGTERM while a 20 MiB PUT is mid-body (connection accepted by a
    frontend, headers and 4 MiB of body on the wire): the supervisor exits 0,
    every child is gone, and the PUT either got a 200 and reads back after a
    restart, or failed — never a 200 whose object is missing."""
    data_dir = tmp_path / "data"
    data = os.urandom(20 * MiB)
    md5 = hashlib.md5(data).hexdigest()
    with SeglakeServer(data_dir, frontends=FRONTENDS) as srv:
        make_bucket(srv)
        roles = role_pids(srv)
        children = [p for r in ("writer", "frontend", "maintenance") for p in roles[r]]
        assert len(children) == FRONTENDS + 2

        put = RawPut(srv, BUCKET, "in-flight", data)
        in_flight = threading.Event()
        signalled = threading.Event()
        outcome: dict[str, Any] = {}

        def upload() -> None:
            try:
                put.open()
                put.send_headers()
                put.send(4 * MiB)
                in_flight.set()
                signalled.wait(10)
                status, headers, body = put.finish()
                outcome.update(
                    status=status, etag=headers.get("etag", "").strip('"'), body=body[:300]
                )
            except Exception as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc} (sent {put.sent} B)"
            finally:
                in_flight.set()
                put.close()

        t = threading.Thread(target=upload, name="in-flight-put", daemon=True)
        t.start()
        assert in_flight.wait(30), "the upload never got going"
        assert "error" not in outcome, outcome
        assert srv.proc is not None
        sup = srv.proc.pid
        srv.proc.send_signal(signal.SIGTERM)
        signalled.set()
        try:
            code = srv.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"supervisor did not exit within 60s of SIGTERM:\n{srv.log_tail()}")
        t.join(60)
        assert not t.is_alive(), "the in-flight PUT never finished"
        assert code == 0, f"supervisor exited {code}:\n{srv.log_tail()}"
        # Every child is gone (the supervisor waited for them; allow init a
        # moment to reap any it re-parented).
        wait_for(
            lambda: not any(pid_alive(p) for p in [sup, *children]),
            timeout=3,
            interval=0.05,
            what="every process of the stopped server to be gone",
        )
        assert not (data_dir / ".seglake-listen").exists()
        print(f"\nin-flight PUT during SIGTERM: {outcome}")

    with SeglakeServer(data_dir, frontends=1, log_path=tmp_path / "restart.log") as srv2:
        s3 = client(srv2)
        if outcome.get("status") == 200:
            assert outcome["etag"] == md5
            resp = s3.get_object(Bucket=BUCKET, Key="in-flight")
            got = resp["Body"].read()
            assert got == data, f"acknowledged PUT reads back {len(got)} B, not the 20 MiB sent"
            assert resp["ETag"].strip('"') == md5
        else:
            try:
                got = s3.get_object(Bucket=BUCKET, Key="in-flight")["Body"].read()
            except Exception as exc:
                assert is_no_such_key(exc), f"GET after restart: {error_code(exc)}: {exc}"
            else:
                assert got == data, f"a failed PUT left a partial object ({len(got)} B)"
        server_status_ok(srv2)


# ---- (g) systemd notification ----------------------------------------------------------------
def _notify_dir(tmp_path: Path) -> Path:
    # AF_UNIX paths are limited to ~108 bytes; fall back to a short temp dir.
    if len(str(tmp_path / "notify.sock")) < 100:
        return tmp_path
    return Path(tempfile.mkdtemp(prefix="sl-notify-"))


def _messages_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    got: list[str] = []
    for _ in range(1000):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            msg = sock.recv(4096).decode(errors="replace")
        except TimeoutError:
            break
        got.append(msg)
        if wanted in msg.split("\n"):
            return got
    raise AssertionError(f"no {wanted!r} within {timeout}s; got {got}")


def test_notify_socket_ready_and_stopping(tmp_path: Path) -> None:
    path = _notify_dir(tmp_path) / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        srv = SeglakeServer(tmp_path / "data", frontends=1, env={"NOTIFY_SOCKET": str(path)})
        try:
            srv.start()
            ready = _messages_until(sock, "READY=1", timeout=15)
            assert not any("STOPPING=1" in m for m in ready), ready
            # The service really is ready when READY=1 arrives.
            s3 = make_bucket(srv)
            put_get_roundtrip(s3, "ready", b"ready")
            code = srv.stop()
            assert code == 0, srv.log_tail()
            _messages_until(sock, "STOPPING=1", timeout=5)
        finally:
            srv.close()
    finally:
        sock.close()
