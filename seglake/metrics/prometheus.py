"""The stats document (``view.build``) in the Prometheus text format 0.0.4,
pure.

Names carry the ``seglake_`` prefix and base units (seconds, bytes);
counters end in ``_total``; histograms are ``_bucket{le=...}`` (cumulative,
at every doubling of the internal log buckets: exact, since cumulative
counts can be read at any subset of bounds), ``_sum`` and ``_count``.

``prometheus_client`` is not used: its multi-process mode keeps one mmap
file per pid in a shared directory that must be wiped at start and told
about dead processes, supports only its own fixed buckets (our quantiles
need the log histogram anyway), and would give the JSON stats and the
dashboard a second source of truth. The supervisor already merges every
process's report over IPC; rendering that as text is this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from seglake.metrics.histogram import COUNT, SECONDS, Histogram, Scale

PER_DOUBLING = 4  # SECONDS has 4 buckets per doubling; expose one per doubling
STATES = ("off", "entering", "quiesced", "exiting")


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, Any], value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def metric(
        self,
        name: str,
        kind: str,
        help_text: str,
        rows: Iterable[tuple[dict[str, Any], float | None]],
    ) -> None:
        self.family(name, kind, help_text)
        for labels, value in rows:
            if value is not None:
                self.sample(name, labels, value)

    def histogram(
        self,
        name: str,
        help_text: str,
        hists: Iterable[tuple[dict[str, Any], Any]],
        scale: Scale,
        every: int,
        unit: float = 1.0,
    ) -> None:
        self.family(name, "histogram", help_text)
        for labels, wire in hists:
            h = Histogram.from_wire(wire, scale)
            for bound, count in h.cumulative(every):
                self.sample(f"{name}_bucket", {**labels, "le": _num(bound * unit)}, count)
            self.sample(f"{name}_sum", labels, h.total)
            self.sample(f"{name}_count", labels, h.n)


def render(doc: dict[str, Any]) -> str:
    out = _Out()
    out.metric(
        "seglake_build_info", "gauge", "Seglake version (value 1).",
        [({"version": doc.get("version", "")}, 1)],
    )  # fmt: skip
    out.metric(
        "seglake_requests_total", "counter", "S3 requests answered, by operation and status class.",
        [
            ({"op": op, "status_class": sc}, n)
            for op, classes in sorted((doc.get("requests_total") or {}).items())
            for sc, n in sorted(classes.items())
        ],
    )  # fmt: skip
    out.metric(
        "seglake_requests_inflight", "gauge", "S3 requests being served now, by operation.",
        [({"op": op}, n) for op, n in sorted((doc.get("inflight") or {}).items())],
    )  # fmt: skip
    out.metric(
        "seglake_received_bytes_total", "counter", "Request body bytes received, by operation.",
        [({"op": op}, n) for op, n in sorted((doc.get("bytes_in") or {}).items())],
    )  # fmt: skip
    out.metric(
        "seglake_sent_bytes_total", "counter", "Response body bytes sent, by operation.",
        [({"op": op}, n) for op, n in sorted((doc.get("bytes_out") or {}).items())],
    )  # fmt: skip
    out.histogram(
        "seglake_request_duration_seconds", "S3 request duration in the frontend, by operation.",
        [({"op": op}, w) for op, w in sorted((doc.get("latency_histograms") or {}).items())],
        SECONDS, PER_DOUBLING,
    )  # fmt: skip
    out.metric(
        "seglake_errors_total", "counter", "S3 error answers, by error code.",
        [({"code": c}, n) for c, n in sorted((doc.get("errors_by_code") or {}).items())],
    )  # fmt: skip
    out.metric(
        "seglake_replay_detected_total", "counter", "Replayed signed requests detected.",
        [({}, doc.get("replay_detected", 0))],
    )  # fmt: skip
    for label, key, what in (("bucket", "by_bucket", "bucket"), ("access_key", "by_key", "key")):
        table = doc.get(key) or {}
        for field, suffix, text in (
            ("requests", "requests_total", "requests"),
            ("errors", "errors_total", "error answers (status >= 400)"),
            ("bytes_in", "received_bytes_total", "request body bytes received"),
            ("bytes_out", "sent_bytes_total", "response body bytes sent"),
        ):
            out.metric(
                f"seglake_{what}_{suffix}", "counter",
                f"S3 {text} by {label} (top N, the rest as _other).",
                [({label: name}, row.get(field, 0)) for name, row in sorted(table.items())],
            )  # fmt: skip
    w = doc.get("writer") or {}
    hists = w.get("histograms") or {}
    out.metric("seglake_writer_queue_depth", "gauge", "Mutations queued for the next commit.",
               [({}, w.get("queue_depth"))])  # fmt: skip
    out.metric("seglake_writer_inflight_writes", "gauge", "Mutations submitted and not yet answered.",
               [({}, w.get("write_inflight"))])  # fmt: skip
    out.metric("seglake_writer_batches_total", "counter", "Commit batches.",
               [({}, w.get("batches_total", 0))])  # fmt: skip
    out.metric("seglake_writer_mutations_total", "counter", "Mutations committed or refused.",
               [({}, w.get("mutations_total", 0))])  # fmt: skip
    out.metric("seglake_writer_appended_bytes_total", "counter", "Chunk bytes appended to segments.",
               [({}, w.get("appended_bytes_total", 0))])  # fmt: skip
    out.histogram("seglake_writer_batch_size", "Mutations per commit batch.",
                  [({}, hists.get("batch_size") or {})], COUNT, 1)  # fmt: skip
    out.histogram("seglake_writer_commit_duration_seconds", "Commit batch duration.",
                  [({}, hists.get("commit_seconds") or {})], SECONDS, PER_DOUBLING)  # fmt: skip
    out.histogram("seglake_writer_fsync_duration_seconds", "Segment and manifest fsyncs of a batch.",
                  [({}, hists.get("fsync_seconds") or {})], SECONDS, PER_DOUBLING)  # fmt: skip
    for key, name, text in (
        ("objects", "seglake_objects", "Current objects (not delete markers)."),
        ("versions", "seglake_versions", "Stored versions."),
        ("segments", "seglake_segments", "Segment files."),
        ("bytes_live", "seglake_live_bytes", "Bytes of live versions."),
        ("segment_bytes", "seglake_segment_bytes", "Bytes in segment files."),
        ("dead_bytes", "seglake_dead_bytes", "Segment bytes not referenced by live versions."),
    ):
        out.metric(name, "gauge", text, [({}, doc.get(key))])
    state = doc.get("maintenance_state")
    out.metric(
        "seglake_maintenance_state", "gauge", "Maintenance state (1 for the current one).",
        [({"state": s}, int(s == state)) for s in STATES] if state else [],
    )  # fmt: skip
    procs = doc.get("processes") or []
    for name, kind, key, text in (
        ("seglake_process_up", "gauge", "alive", "Whether the process is running."),
        ("seglake_process_restarts_total", "counter", "restarts", "Restarts by the supervisor."),
        ("seglake_process_uptime_seconds", "gauge", "uptime", "Seconds since the process started."),
        ("seglake_process_resident_memory_bytes", "gauge", "rss_bytes", "Resident memory."),
        ("seglake_process_cpu_seconds_total", "counter", "cpu_seconds", "User + system CPU time."),
    ):
        out.metric(
            name, kind, text,
            [({"process": p.get("name")}, float(p[key])) for p in procs
             if p.get(key) is not None],
        )  # fmt: skip
    repl = doc.get("replication") or []
    for name, kind, key, text in (
        (
            "seglake_repl_backlog_entries",
            "gauge",
            "backlog_entries",
            "Oplog entries not yet replicated (remote head minus cursor).",
        ),
        (
            "seglake_repl_backlog_bytes",
            "gauge",
            "backlog_bytes",
            "Object bytes of the version entries not yet replicated (as of the last step).",
        ),
        (
            "seglake_repl_lag_seconds",
            "gauge",
            "lag_seconds",
            "Now minus the physical time of the last replicated stamp (0 when caught up).",
        ),
        ("seglake_repl_last_hlc", "gauge", "last_hlc", "Last pulled/pushed HLC stamp."),
        ("seglake_repl_entries_total", "counter", "entries", "Oplog entries replicated."),
        ("seglake_repl_conflicts_total", "counter", "conflicts", "Versions that became CONFLICT."),
        ("seglake_repl_bytes_in_total", "counter", "bytes_in", "Chunk bytes pulled."),
        ("seglake_repl_bytes_out_total", "counter", "bytes_out", "Chunk bytes pushed."),
        ("seglake_repl_failures", "gauge", "failures", "Consecutive failed steps."),
    ):
        out.metric(
            name, kind, text,
            [({"remote": r.get("remote"), "direction": r.get("direction")}, float(r[key]))
             for r in repl if isinstance(r, dict) and r.get(key) is not None],
        )  # fmt: skip
    oplog = doc.get("oplog") or {}
    for name, key, text in (
        ("seglake_oplog_rows", "rows", "Rows the oplog holds."),
        ("seglake_oplog_bytes", "bytes", "Oplog size: bodies plus a fixed per-row overhead."),
        ("seglake_oplog_floor", "floor", "Highest seq pruning may have removed."),
        ("seglake_oplog_head", "head", "Highest seq of the oplog."),
    ):
        if isinstance(oplog.get(key), int):
            out.metric(name, "gauge", text, [({}, float(oplog[key]))])
    disk = doc.get("disk") or {}
    out.metric("seglake_disk_free_bytes", "gauge", "Free bytes on the data dir's file system.",
               [({}, disk.get("free_bytes"))])  # fmt: skip
    out.metric("seglake_disk_reserve_bytes", "gauge", "Free space kept in reserve (--min-free-bytes).",
               [({}, disk.get("reserve_bytes"))])  # fmt: skip
    return "\n".join(out.lines) + "\n"
