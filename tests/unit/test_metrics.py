"""The pure metrics cores: the log histogram, request counters with bounded
labels, merging reports across restarts, and the Prometheus rendering."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest

from seglake.metrics import prometheus, view
from seglake.metrics.histogram import COUNT, SECONDS, Histogram
from seglake.metrics.merge import Aggregate, deep_add
from seglake.metrics.requests import OTHER, RequestCounters, status_class, top_n


@pytest.mark.parametrize(
    ("value", "index"),
    [(0.0, 0), (10e-6, 0), (10.0001e-6, 1), (20e-6, 4), (20.0001e-6, 5), (1e9, SECONDS.size - 1)],
)
def test_bucket_bounds(value: float, index: int) -> None:
    assert SECONDS.index(value) == index
    assert SECONDS.lower(index) < value <= SECONDS.upper(index) or index == 0


def test_every_value_lies_in_its_bucket() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        v = 10 ** rng.uniform(-6, 2.2)
        i = SECONDS.index(v)
        assert SECONDS.lower(i) < v <= SECONDS.upper(i) or i == 0
        assert SECONDS.upper(i) / max(SECONDS.lower(i), 1e-12) <= 2**0.25 + 1e-9 or i == 0


def test_quantiles_are_within_one_bucket_of_the_exact_ones() -> None:
    rng = random.Random(11)
    values = [rng.lognormvariate(-6, 1.0) for _ in range(2001)]
    h = Histogram()
    for v in values:
        h.observe(v)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        got = h.quantile(q)
        assert got is not None
        assert SECONDS.index(got) == SECONDS.index(exact)
        assert exact <= got < exact * 2**0.25 + 1e-12
    assert h.n == 2001
    assert h.total == pytest.approx(sum(values))
    assert Histogram().quantile(0.5) is None


def test_wire_round_trip_and_merge_by_deep_add() -> None:
    a, b = Histogram(), Histogram()
    for v in (0.001, 0.002, 0.5):
        a.observe(v)
    for v in (0.001, 3.0):
        b.observe(v)
    merged = Histogram.from_wire(deep_add(deep_add({}, a.wire()), b.wire()))
    both = Histogram()
    for v in (0.001, 0.002, 0.5, 0.001, 3.0):
        both.observe(v)
    assert merged.counts == both.counts
    assert merged.n == 5
    assert merged.total == pytest.approx(both.total)


def test_cumulative_buckets_at_each_doubling() -> None:
    h = Histogram()
    for v in (5e-6, 15e-6, 30e-6, 1.0):
        h.observe(v)
    cum = h.cumulative(4)
    assert cum[0] == (10e-6, 1)
    assert cum[1] == (20e-6, 2)
    assert cum[2] == (40e-6, 3)
    assert cum[-1] == (math.inf, 4)
    assert all(x[1] <= y[1] for x, y in itertools.pairwise(cum))
    sizes = Histogram(COUNT)
    sizes.observe(1)
    sizes.observe(3)
    assert sizes.cumulative(1)[:3] == [(1.0, 1), (2.0, 1), (4.0, 2)]


@pytest.mark.parametrize(
    ("status", "cls"), [(200, "2xx"), (304, "3xx"), (404, "4xx"), (503, "5xx")]
)
def test_status_class(status: int, cls: str) -> None:
    assert status_class(status) == cls


def test_request_counters_bound_their_labels() -> None:
    rc = RequestCounters(max_labels=3)
    for i in range(6):
        rc.done("PutObject", 200, 0.01, bucket=f"b{i}", key_id="k", bytes_in=10)
    rc.done("GetObject", 404, 0.01, bucket="b0", key_id=None, bytes_out=5, error_code="NoSuchKey")
    c = rc.counters()
    assert set(c["buckets"]) == {"b0", "b1", "b2", OTHER}
    assert c["buckets"][OTHER] == {"requests": 3, "errors": 0, "bytes_in": 30, "bytes_out": 0}
    assert c["buckets"]["b0"] == {"requests": 2, "errors": 1, "bytes_in": 10, "bytes_out": 5}
    assert c["keys"]["k"]["requests"] == 6 and c["keys"]["_anonymous"]["errors"] == 1
    assert c["requests"] == {"PutObject": {"2xx": 6}, "GetObject": {"4xx": 1}}
    assert c["errors"] == {"NoSuchKey": 1}
    assert c["bytes_in"]["PutObject"] == 60
    rc.begin("GetObject")
    assert rc.gauges() == {"inflight": {"GetObject": 1}}
    rc.end("GetObject")
    assert rc.gauges() == {"inflight": {}}


def test_top_n_folds_the_rest_into_other() -> None:
    table = {f"b{i}": {"requests": i, "errors": 0} for i in range(5)}
    table[OTHER] = {"requests": 100, "errors": 1}
    top = top_n(table, 2)
    assert list(top) == ["b4", "b3", OTHER]
    assert top[OTHER] == {"requests": 100 + 0 + 1 + 2, "errors": 1}


def _report(name: str, pid: int, n: int, inflight: int) -> dict[str, object]:
    return {
        "name": name, "role": name.split("-")[0], "pid": pid, "started": float(pid),
        "counters": {"requests": {"GetObject": {"2xx": n}}},
        "gauges": {"inflight": {"GetObject": inflight}},
    }  # fmt: skip


def test_aggregate_keeps_totals_across_restarts() -> None:
    agg = Aggregate()
    agg.report(_report("frontend-0", 100, 5, 2))
    agg.report(_report("frontend-1", 200, 7, 1))
    agg.report(_report("frontend-0", 100, 9, 0))  # same start: replaces
    assert agg.totals("frontend")["counters"]["requests"]["GetObject"]["2xx"] == 16
    agg.report(_report("frontend-0", 101, 1, 3))  # restarted: old counters retire
    t = agg.totals("frontend")
    assert t["counters"]["requests"]["GetObject"]["2xx"] == 9 + 7 + 1
    assert t["gauges"]["inflight"]["GetObject"] == 3 + 1
    agg.retire("frontend-1")  # died: counters stay, gauges go
    t = agg.totals("frontend")
    assert t["counters"]["requests"]["GetObject"]["2xx"] == 17
    assert t["gauges"]["inflight"]["GetObject"] == 3
    assert agg.totals("writer") == {"counters": {}, "gauges": {}}


def _doc() -> dict[str, object]:
    rc = RequestCounters()
    rc.done("PutObject", 200, 0.003, bucket="photos", key_id="AK1", bytes_in=4096)
    rc.done("GetObject", 200, 0.001, bucket="photos", key_id="AK1", bytes_out=4096)
    rc.done("GetObject", 404, 0.0005, bucket="photos", key_id="AK1", error_code="NoSuchKey")
    sup = {
        "processes": [{"name": "writer", "alive": True, "restarts": 1, "uptime": 3.5,
                       "rss_bytes": 1000, "cpu_seconds": 0.25}],
        "frontends": {"counters": rc.counters(), "gauges": rc.gauges()},
        "writer": {"counters": {"batches": 2, "commit_seconds": Histogram().wire()},
                   "gauges": {"queue_depth": 0}},
    }  # fmt: skip
    store = {"objects": 1, "versions": 1, "segments": 1, "bytes_live": 4096,
             "segment_bytes": 5000, "maintenance": {"state": "off", "since": 1.0}}  # fmt: skip
    disk = {"free_bytes": 10**9, "reserve_bytes": 64 << 20}
    return view.build(now=0.0, version="0.1", supervisor=sup, store=store, runs=[], disk=disk)


def test_view_document() -> None:
    doc = _doc()
    assert doc["requests_total"] == {"PutObject": {"2xx": 1}, "GetObject": {"2xx": 1, "4xx": 1}}
    assert doc["bytes_in_total"] == 4096 and doc["bytes_out_total"] == 4096
    assert doc["dead_bytes"] == 904
    assert doc["latency_ms"]["PutObject"]["count"] == 1
    assert 3.0 <= doc["latency_ms"]["PutObject"]["p99"] < 3.0 * 2**0.25
    assert doc["by_bucket"]["photos"]["requests"] == 3
    assert doc["maintenance_state"] == "off"
    assert doc["errors"] == []


_SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? [0-9.e+-]+$|^[a-z_]+(\{.*\})? \+Inf$')


def test_prometheus_text() -> None:
    text = prometheus.render(_doc())
    lines = text.splitlines()
    for line in lines:
        if not line.startswith("#"):
            assert line.startswith("seglake_"), line
            assert _SAMPLE.match(line), line
    assert 'seglake_build_info{version="0.1"} 1' in lines
    assert 'seglake_requests_total{op="GetObject",status_class="4xx"} 1' in lines
    assert 'seglake_bucket_requests_total{bucket="photos"} 3' in lines
    assert 'seglake_access_key_requests_total{access_key="AK1"} 3' not in lines
    assert 'seglake_key_requests_total{access_key="AK1"} 3' in lines
    assert 'seglake_request_duration_seconds_count{op="GetObject"} 2' in lines
    assert 'seglake_request_duration_seconds_bucket{op="GetObject",le="+Inf"} 2' in lines
    assert 'seglake_request_duration_seconds_bucket{op="GetObject",le="0.00064"} 1' in lines
    assert 'seglake_received_bytes_total{op="PutObject"} 4096' in lines
    assert 'seglake_process_restarts_total{process="writer"} 1' in lines
    assert 'seglake_maintenance_state{state="off"} 1' in lines
    assert "# TYPE seglake_request_duration_seconds histogram" in lines
    # every family declared once
    types = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
