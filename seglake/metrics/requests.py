"""What a frontend counts about the requests it serves (pure).

Per operation: requests by status class (``2xx`` .. ``5xx``), in flight,
bytes in and out, and a latency histogram. Per bucket and per access key:
requests, errors (status >= 400), bytes in and out. Per S3 error code:
answers. Replays the replay cache detected.

Cardinality is bounded: the first ``max_labels`` distinct buckets (and,
separately, access keys) a process sees get their own entry; every later
one is counted under ``OTHER``. Operation names and error codes come from
fixed tables, so they are bounded already. Renderings show the top N of
the merged entries by requests and fold the rest into ``OTHER``
(``top_n``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Final

from seglake.metrics.histogram import Histogram

OTHER: Final = "_other"
ANONYMOUS: Final = "_anonymous"
NO_BUCKET: Final = "_none"
MAX_LABELS: Final = 64  # buckets (and keys) with their own entry, per process

# Per-label vector fields, in wire order.
LABEL_FIELDS: Final = ("requests", "errors", "bytes_in", "bytes_out")


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


@dataclass
class RequestCounters:
    max_labels: int = MAX_LABELS
    requests: defaultdict[str, defaultdict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    inflight: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_in: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_out: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    latency: dict[str, Histogram] = field(default_factory=dict)
    buckets: dict[str, list[int]] = field(default_factory=dict)
    keys: dict[str, list[int]] = field(default_factory=dict)
    errors: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    replays: int = 0

    def begin(self, op: str) -> None:
        self.inflight[op] += 1

    def end(self, op: str) -> None:
        self.inflight[op] -= 1

    def done(
        self,
        op: str,
        status: int,
        seconds: float,
        *,
        bucket: str = "",
        key_id: str | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
        error_code: str = "",
    ) -> None:
        """One finished request."""
        self.requests[op][status_class(status)] += 1
        self.bytes_in[op] += bytes_in
        self.bytes_out[op] += bytes_out
        hist = self.latency.get(op)
        if hist is None:
            hist = self.latency[op] = Histogram()
        hist.observe(seconds)
        failed = int(status >= 400)
        vec = (1, failed, bytes_in, bytes_out)
        self._add(self.buckets, bucket or NO_BUCKET, vec)
        self._add(self.keys, key_id or ANONYMOUS, vec)
        if error_code:
            self.errors[error_code] += 1

    def _add(self, table: dict[str, list[int]], label: str, vec: tuple[int, ...]) -> None:
        row = table.get(label)
        if row is None:
            if len(table) >= self.max_labels:
                label = OTHER
                row = table.get(OTHER)
            if row is None:
                row = table[label] = [0] * len(LABEL_FIELDS)
        for i, v in enumerate(vec):
            row[i] += v

    def counters(self) -> dict[str, Any]:
        def labelled(table: dict[str, list[int]]) -> dict[str, Any]:
            return {k: dict(zip(LABEL_FIELDS, v, strict=True)) for k, v in table.items()}

        return {
            "requests": {op: dict(c) for op, c in self.requests.items()},
            "bytes_in": dict(self.bytes_in),
            "bytes_out": dict(self.bytes_out),
            "latency": {op: h.wire() for op, h in self.latency.items()},
            "buckets": labelled(self.buckets),
            "keys": labelled(self.keys),
            "errors": dict(self.errors),
            "replay_detected": self.replays,
        }

    def gauges(self) -> dict[str, Any]:
        return {"inflight": {op: n for op, n in self.inflight.items() if n}}


def top_n(table: dict[str, dict[str, int]], n: int) -> dict[str, dict[str, int]]:
    """The ``n`` entries with most requests; the rest added up under ``OTHER``."""
    ranked = sorted(
        ((k, v) for k, v in table.items() if k != OTHER),
        key=lambda kv: (-int(kv[1].get("requests", 0)), kv[0]),
    )
    out = dict(ranked[:n])
    rest = [v for _, v in ranked[n:]]
    if OTHER in table:
        rest.append(table[OTHER])
    if rest:
        folded: dict[str, int] = {}
        for v in rest:
            for f, x in v.items():
                folded[f] = folded.get(f, 0) + int(x)
        out[OTHER] = folded
    return out
