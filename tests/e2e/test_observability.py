"""Stats, Prometheus metrics, health probes and access logs of the real
multi-process server, under a known load.

The load is counted on the client; the server's figures must equal it per
operation, per bucket and per access key (as deltas from a baseline taken
before the load), in ``/v1/meta/stats`` and ``/.seglake/metrics`` alike.
Latency percentiles are checked against the server's own access-log
durations (same bucket) and against the client's measured latencies.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from seglake.metrics.histogram import SECONDS
from seglake.units import MiB
from tests.e2e._helpers import cli, status_and_code
from tests.e2e._signing import signed_request
from tests.harness import ACCESS_KEY, SeglakeServer, server_fixture


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


METRICS_PORT = _free_port()
INTERVAL_S = 0.2  # --stats-interval: how stale a report may be
WAIT_S = 15.0  # bound on waiting for reports to catch up

server = server_fixture(
    "--stats-interval", str(INTERVAL_S), "--log-format", "json",
    "--metrics-addr", f"127.0.0.1:{METRICS_PORT}",
    frontends=2,
)  # fmt: skip


def stats(srv: SeglakeServer) -> dict[str, Any]:
    r = signed_request(srv, "GET", "/v1/meta/stats")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def metrics(url: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value}."""
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, float] = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def req_count(doc: dict[str, Any], op: str, cls: str) -> int:
    return int((doc["requests_total"].get(op) or {}).get(cls, 0))


def row(doc: dict[str, Any], table: str, label: str) -> dict[str, int]:
    base = {"requests": 0, "errors": 0, "bytes_in": 0, "bytes_out": 0}
    return {**base, **(doc[table].get(label) or {})}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def wait_for(srv: SeglakeServer, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        doc = stats(srv)
        if done(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(INTERVAL_S / 2)


def test_counters_equal_the_known_load(server: SeglakeServer) -> None:
    s3 = server.s3()
    a, b = "obs-photos", "obs-logs"
    s3.create_bucket(Bucket=a)
    s3.create_bucket(Bucket=b)
    time.sleep(INTERVAL_S * 3)
    before = stats(server)
    before_metrics = metrics(f"{server.endpoint}/.seglake/metrics")
    assert req_count(before, "GetObject", "2xx") == 0
    n_put_a, n_put_b, m_get, k_err = 20, 5, 30, 7
    body = os.urandom(4096)
    for i in range(n_put_a):
        s3.put_object(Bucket=a, Key=f"k{i}", Body=body)
    for i in range(n_put_b):
        s3.put_object(Bucket=b, Key=f"k{i}", Body=body)
    client_s: list[float] = []
    for i in range(m_get):
        t0 = time.perf_counter()
        assert s3.get_object(Bucket=a, Key=f"k{i % n_put_a}")["Body"].read() == body
        client_s.append(time.perf_counter() - t0)
    for i in range(k_err):
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket=b, Key=f"missing-{i}")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"

    def caught_up(doc: dict[str, Any]) -> bool:
        return (
            req_count(doc, "GetObject", "2xx") == m_get
            and req_count(doc, "GetObject", "4xx") == k_err
            and req_count(doc, "PutObject", "2xx") - req_count(before, "PutObject", "2xx")
            == n_put_a + n_put_b
        )

    after = wait_for(server, caught_up)
    # per operation and status class
    assert req_count(after, "PutObject", "2xx") - req_count(before, "PutObject", "2xx") == 25
    assert req_count(after, "GetObject", "2xx") == m_get
    assert req_count(after, "GetObject", "4xx") == k_err
    for cls in ("3xx", "4xx", "5xx"):
        assert req_count(after, "PutObject", cls) == req_count(before, "PutObject", cls)
    assert after["bytes_in"]["PutObject"] - before["bytes_in"].get("PutObject", 0) == 25 * 4096
    assert after["errors_by_code"]["NoSuchKey"] - before["errors_by_code"].get("NoSuchKey", 0) == 7
    # per bucket
    da = delta(row(after, "by_bucket", a), row(before, "by_bucket", a))
    assert da == {"requests": 50, "errors": 0, "bytes_in": 20 * 4096, "bytes_out": 30 * 4096}
    db = delta(row(after, "by_bucket", b), row(before, "by_bucket", b))
    assert db["requests"] == 12 and db["errors"] == 7 and db["bytes_in"] == 5 * 4096
    assert db["bytes_out"] > 0  # the seven error documents
    # per access key: everything above was signed with the one key
    dk = delta(row(after, "by_key", ACCESS_KEY), row(before, "by_key", ACCESS_KEY))
    assert dk["bytes_in"] == 25 * 4096 and dk["errors"] == 7
    assert dk["requests"] >= 62  # and the signed stats requests of this test
    assert after["inflight"].get("PutObject", 0) == 0
    assert after["objects"] == 25
    assert after["writer"]["mutations_total"] - before["writer"]["mutations_total"] == 25

    # /metrics says the same, on the S3 listener and on --metrics-addr
    for url in (f"{server.endpoint}/.seglake/metrics", f"http://127.0.0.1:{METRICS_PORT}/metrics"):
        now = metrics(url)
        m = {k: v - before_metrics.get(k, 0) for k, v in now.items()}
        assert m['seglake_requests_total{op="GetObject",status_class="2xx"}'] == m_get
        assert m['seglake_requests_total{op="GetObject",status_class="4xx"}'] == k_err
        put = 'seglake_requests_total{op="PutObject",status_class="2xx"}'
        assert m[put] == 25
        assert m[f'seglake_bucket_requests_total{{bucket="{a}"}}'] == 50
        assert m[f'seglake_bucket_errors_total{{bucket="{b}"}}'] == 7
        assert m[f'seglake_bucket_sent_bytes_total{{bucket="{a}"}}'] == 30 * 4096
        assert m['seglake_request_duration_seconds_count{op="GetObject"}'] == m_get + k_err
        assert m['seglake_request_duration_seconds_bucket{op="GetObject",le="+Inf"}'] == 37
        assert m['seglake_errors_total{code="NoSuchKey"}'] >= 7
        assert now['seglake_maintenance_state{state="off"}'] == 1
        assert now['seglake_process_up{process="writer"}'] == 1
        assert any(k.startswith("seglake_build_info{") for k in now)

    # latency: the GetObject histogram against the access log and the client
    lines = [json.loads(x) for x in server.log_path.read_text().splitlines() if '"access"' in x]
    logged = sorted(
        x["duration_ms"] / 1000 for x in lines if x.get("op") == "GetObject" and x["status"] == 200
    )
    assert len(logged) == m_get
    # The histogram mixes the 200s and the 404s: rank over all of them.
    all_get = sorted(x["duration_ms"] / 1000 for x in lines if x.get("op") == "GetObject")
    client_s.sort()
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        reported = after["latency_ms"]["GetObject"][name] / 1000
        exact = all_get[math.ceil(q * len(all_get)) - 1]
        i = SECONDS.index(reported * (1 - 1e-9))  # a bucket's upper bound, ms→s round trip
        # the logged duration (rounded to 1 µs) lies in the reported bucket
        assert SECONDS.lower(i) - 1e-6 < exact <= SECONDS.upper(i) + 1e-6, (name, exact, reported)
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        reported = after["latency_ms"]["GetObject"][name] / 1000
        client_q = client_s[math.ceil(q * len(client_s)) - 1]
        # the server's time is part of the client's: its bucket starts below
        # the client's quantile, and the client adds only its own overhead
        assert SECONDS.lower(SECONDS.index(reported * (1 - 1e-9))) <= client_q, (name, client_q)
        assert client_q <= reported + 0.25, (name, client_q, reported)


def _ready(base: str) -> httpx.Response:
    return httpx.get(f"{base}/.seglake/health/ready", timeout=10)


def test_probes_do_not_shadow_buckets_and_reveal_nothing(server: SeglakeServer) -> None:
    s3 = server.s3()
    for name in ("health", "metrics"):
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="live", Body=b"an object")
        assert s3.get_object(Bucket=name, Key="live")["Body"].read() == b"an object"
    s3.put_object(Bucket="health", Key="ready", Body=b"another")
    assert s3.get_object(Bucket="health", Key="ready")["Body"].read() == b"another"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="metrics")["Contents"]]
    assert keys == ["live"]
    # unsigned /health/live is S3: a private bucket refuses it
    assert httpx.get(f"{server.endpoint}/health/live").status_code == 403
    for base in (f"{server.endpoint}/.seglake", f"http://127.0.0.1:{METRICS_PORT}"):
        live = httpx.get(f"{base}/health/live")
        ready = httpx.get(f"{base}/health/ready")
        assert (live.status_code, live.json()) == (200, {"status": "live"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        for r in (live, ready):
            assert b"health" not in r.content and b"obs-" not in r.content
    assert httpx.get(f"http://127.0.0.1:{METRICS_PORT}/health").status_code == 404
    # unsigned stats are refused
    assert httpx.get(f"{server.endpoint}/v1/meta/stats").status_code == 403


def test_ready_follows_maintenance_and_the_writer(server: SeglakeServer) -> None:
    assert _ready(server.endpoint).status_code == 200
    out = cli(server.data_dir, "maintenance", "enable")
    assert out.returncode == 0, out.stderr
    r = _ready(server.endpoint)
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reason": "maintenance mode"}
    assert r.headers["retry-after"] == "5"
    assert stats(server)["maintenance_state"] == "quiesced"
    out = cli(server.data_dir, "maintenance", "disable")
    assert out.returncode == 0, out.stderr
    assert _ready(server.endpoint).status_code == 200

    # the writer killed: 503 until the supervisor has restarted it
    # The writer reports every INTERVAL_S: wait until its report has caught up
    # with the maintenance toggles above (two reads apart agree), or a report
    # made just before the kill would add them to "before" after the fact.
    before = wait_for(server, lambda d: d["writer"]["batches_total"] > 0)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        time.sleep(INTERVAL_S * 3)
        again = stats(server)
        if again["writer"]["mutations_total"] == before["writer"]["mutations_total"]:
            break
        before = again
    writer_pid = server.refresh_pids()["writer"][0]
    os.kill(writer_pid, signal.SIGKILL)
    seen_503 = None
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        r = _ready(server.endpoint)
        if r.status_code == 503:
            seen_503 = r
        elif seen_503 is not None:
            break
        time.sleep(0.01)
    assert seen_503 is not None, "ready never said 503 while the writer was down"
    assert seen_503.json() == {"status": "unavailable", "reason": "writer unavailable"}
    assert _ready(server.endpoint).status_code == 200
    new_pid = server.refresh_pids()["writer"][0]
    assert new_pid != writer_pid

    # the restarted writer's counters add to the old ones, never replace them
    s3 = server.s3()
    s3.put_object(Bucket="obs-photos", Key="after-restart", Body=b"x")
    after = wait_for(
        server,
        lambda d: d["writer"]["mutations_total"] > before["writer"]["mutations_total"],
    )
    assert after["writer"]["mutations_total"] == before["writer"]["mutations_total"] + 1
    assert after["writer"]["batches_total"] >= before["writer"]["batches_total"] + 1
    procs = {p["name"]: p for p in after["processes"]}
    assert procs["writer"]["restarts"] == 1 and procs["writer"]["pid"] == new_pid
    assert procs["writer"]["rss_bytes"] > 0 and procs["writer"]["uptime"] >= 0


def test_ready_follows_the_free_space_reserve(tmp_path: Path) -> None:
    """A reserve (``--min-free-bytes``) above the file system's free space:
    ready says 503 and writes are refused (507), the two from the same
    statvfs; restarted on the same data dir with a reserve the disk holds,
    ready is 200 again and writes succeed. The reserve is read at start, so
    a restart is how it changes."""
    data = tmp_path / "data"
    data.mkdir()
    st = os.statvfs(data)
    # Twice the file system's size: no other test can free that much.
    reserve = 2 * st.f_blocks * st.f_frsize
    with SeglakeServer(data, extra_args=["--min-free-bytes", str(reserve)]) as srv:
        r = _ready(srv.endpoint)
        assert r.status_code == 503, r.text
        assert r.json() == {"status": "unavailable", "reason": "free space below the reserve"}
        assert r.headers["retry-after"] == "5"
        s3 = srv.s3()
        s3.create_bucket(Bucket="reserve")  # no data appended: not refused
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket="reserve", Key="k", Body=b"refused")
        assert status_and_code(info) == (507, "InsufficientStorage")
        disk = stats(srv)["disk"]
        assert disk["reserve_bytes"] == reserve and disk["above_reserve"] is False
    with SeglakeServer(data, extra_args=["--min-free-bytes", str(MiB)]) as srv:
        r = _ready(srv.endpoint)
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        s3 = srv.s3()
        s3.put_object(Bucket="reserve", Key="k", Body=b"stored")
        assert s3.get_object(Bucket="reserve", Key="k")["Body"].read() == b"stored"
        assert stats(srv)["disk"]["above_reserve"] is True


def test_access_log_lines(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(Bucket="obs-logs", Key="dir/a key", Body=b"12345")
    deadline = time.monotonic() + WAIT_S
    line: dict[str, Any] | None = None
    while line is None and time.monotonic() < deadline:
        for text in server.log_path.read_text().splitlines():
            if '"access"' in text and '"dir/a key"' in text:
                line = json.loads(text)
        time.sleep(0.05)
    assert line is not None
    assert line["op"] == "PutObject" and line["bucket"] == "obs-logs"
    assert line["status"] == 200 and line["bytes_in"] == 5 and line["access_key"] == ACCESS_KEY
    assert line["client"].startswith("127.0.0.1:") and len(line["request_id"]) == 16
    assert line["duration_ms"] > 0
    log = server.log_path.read_text()
    assert "Signature=" not in log and "testsecret" not in log
