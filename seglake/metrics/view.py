"""The ``/v1/meta/stats`` document, built from what the processes report
(pure). ``seglake stats``, ``seglake dashboard`` and ``/metrics`` all render
this one document, so they cannot disagree.

Inputs: the supervisor's ``stats`` answer (processes, and the merged
frontend and writer reports, see ``merge.py``), the writer's ``status``
(store counts, maintenance state), the last ``ops_runs`` rows and the data
dir's free space. Any of them may be missing (``{"error": ...}``): the
document then says so in ``errors`` instead of inventing figures.
"""

from __future__ import annotations

import json
from typing import Any, Final

from seglake.metrics.histogram import COUNT, SECONDS, Histogram
from seglake.metrics.requests import top_n

SCHEMA: Final = 1
TOP_LABELS: Final = 20  # buckets / keys listed by name; the rest under "_other"
QUANTILES: Final = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
RUN_MODES: Final = ("fsck", "scrub", "gc-run", "gc-rewrite", "mpu-gc", "mpu-gc-run")


def summary(hist: Histogram, unit: float = 1000.0) -> dict[str, Any]:
    """Count, sum and p50/p95/p99 (upper bucket bounds), scaled by ``unit``."""
    out: dict[str, Any] = {"count": hist.n, "sum": round(hist.total * unit, 3)}
    for name, q in QUANTILES:
        v = hist.quantile(q)
        out[name] = None if v is None else v * unit  # a bucket bound: kept exact
    return out


def _runs(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    last: dict[str, Any] = {}
    gc: list[dict[str, Any]] = []
    for r in runs:  # newest first
        if "mode" not in r:
            continue
        try:
            report = json.loads(r.get("report") or "{}")
        except (TypeError, ValueError):
            report = {}
        if not isinstance(report, dict):
            report = {}
        entry = {
            "at": (r.get("finished_ns") or r.get("started_ns") or 0) / 1e9,
            "status": r.get("status"),
            "errors": report.get("errors", len(report.get("findings", []) or [])),
            "reclaimed_bytes": report.get("reclaimed_bytes", report.get("bytes_reclaimed")),
            "rewritten_bytes": report.get("rewritten_bytes", report.get("bytes_rewritten")),
        }
        last.setdefault(str(r["mode"]), entry)
        if str(r["mode"]).startswith("gc"):
            gc.append({"mode": r["mode"], **entry})
    return last, gc


def build(
    *,
    now: float,
    version: str,
    supervisor: dict[str, Any],
    store: dict[str, Any],
    runs: list[dict[str, Any]],
    disk: dict[str, Any],
    replication: list[dict[str, Any]] | None = None,
    oplog: dict[str, Any] | None = None,
) -> dict[str, Any]:
    errors: list[str] = []
    for name, part in (("supervisor", supervisor), ("writer", store)):
        if "error" in part:
            errors.append(f"{name}: {part['error']}")
    fe = (supervisor.get("frontends") or {}).get("counters") or {}
    fe_g = (supervisor.get("frontends") or {}).get("gauges") or {}
    wr = (supervisor.get("writer") or {}).get("counters") or {}
    wr_g = (supervisor.get("writer") or {}).get("gauges") or {}
    latency = {op: Histogram.from_wire(w) for op, w in (fe.get("latency") or {}).items()}
    commit = Histogram.from_wire(wr.get("commit_seconds"))
    fsync = Histogram.from_wire(wr.get("fsync_seconds"))
    batch = Histogram.from_wire(wr.get("batch_size"), COUNT)
    maint = store.get("maintenance") or {}
    last_runs, gc_trends = _runs(runs)
    bytes_live = int(store.get("bytes_live", 0) or 0)
    segment_bytes = int(store.get("segment_bytes", 0) or 0)
    return {
        "schema": SCHEMA,
        "time": now,
        "version": version,
        "errors": errors,
        # the store (writer status: meta.db counts)
        "objects": store.get("objects"),
        "versions": store.get("versions"),
        "buckets": store.get("buckets"),
        "segments": store.get("segments"),
        "segments_sealed": store.get("segments_sealed"),
        "bytes_live": store.get("bytes_live"),
        "segment_bytes": store.get("segment_bytes"),
        "dead_bytes": max(0, segment_bytes - bytes_live) if "segment_bytes" in store else None,
        "live_manifests": store.get("versions"),
        "manifests_total": store.get("manifests_total", store.get("versions")),
        # operations
        "last_runs": last_runs,
        "gc_trends": gc_trends[:20],
        # requests (every frontend, every start)
        "requests_total": fe.get("requests") or {},
        "inflight": fe_g.get("inflight") or {},
        "bytes_in_total": sum((fe.get("bytes_in") or {}).values()),
        "bytes_out_total": sum((fe.get("bytes_out") or {}).values()),
        "bytes_in": fe.get("bytes_in") or {},
        "bytes_out": fe.get("bytes_out") or {},
        "errors_by_code": fe.get("errors") or {},
        "replay_detected": fe.get("replay_detected", 0),
        "latency_ms": {op: summary(h) for op, h in sorted(latency.items())},
        "latency_histograms": {op: w for op, w in sorted((fe.get("latency") or {}).items())},
        "by_bucket": top_n(fe.get("buckets") or {}, TOP_LABELS),
        "by_key": top_n(fe.get("keys") or {}, TOP_LABELS),
        # the writer
        "writer": {
            "queue_depth": wr_g.get("queue_depth"),
            "write_inflight": wr_g.get("write_inflight"),
            "batches_total": wr.get("batches", 0),
            "mutations_total": wr.get("mutations", 0),
            "appended_bytes_total": wr.get("appended_bytes", 0),
            "batch_size": summary(batch, 1.0),
            "commit_ms": summary(commit),
            "fsync_ms": summary(fsync),
            "histograms": {
                "batch_size": wr.get("batch_size") or {},
                "commit_seconds": wr.get("commit_seconds") or {},
                "fsync_seconds": wr.get("fsync_seconds") or {},
            },
        },
        # replication tasks of the maintenance process, one per remote and
        # direction (seglake/repl/runner.py TaskStatus)
        "replication": replication or [],
        # rows, bytes (bodies + per-row overhead), floor and head seq of the
        # oplog (meta/oplog_horizon.py)
        "oplog": oplog or {},
        "maintenance_state": maint.get("state"),
        "maintenance_updated_at": maint.get("since"),
        "write_inflight": maint.get("write_in_flight", store.get("write_in_flight")),
        "maintenance_transitions": maint.get("history", []),
        "processes": supervisor.get("processes", []),
        "disk": disk,
    }


__all__ = ["SECONDS", "build", "summary"]
