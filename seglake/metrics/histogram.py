"""A fixed-size log-bucket histogram (HDR-style), pure.

Rules this module keeps:

* The bucket bounds are fixed for a given ``Scale``: bucket ``i`` holds
  values in ``(low * g**(i-1), low * g**i]`` with ``g = 2 ** (1/sub)``;
  bucket 0 holds everything ``<= low``, the last bucket everything above the
  largest bound (overflow). So two histograms of one scale merge by adding
  counts, in any order, across processes.
* A quantile is answered with the upper bound of the bucket the ranked
  observation falls in: the true value lies in ``(lower, upper]`` of that
  bucket, i.e. within a factor ``g`` (about 19 % for ``sub=4``).
* On the wire a histogram is a plain dict of numbers
  (``{"n": count, "sum": total, "b": {"<index>": count}}``, sparse), so that
  merging snapshots is a deep add of nested dicts (``merge.deep_add``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final


@dataclass(frozen=True)
class Scale:
    low: float  # upper bound of bucket 0
    sub: int  # buckets per doubling
    octaves: int  # doublings covered before the overflow bucket

    @property
    def size(self) -> int:
        """Finite buckets plus the overflow bucket."""
        return self.sub * self.octaves + 2

    def upper(self, index: int) -> float:
        """Upper bound of bucket ``index`` (``inf`` for the overflow bucket)."""
        if index >= self.size - 1:
            return math.inf
        return float(self.low * 2.0 ** (index / self.sub))

    def lower(self, index: int) -> float:
        return 0.0 if index <= 0 else self.upper(index - 1)

    def index(self, value: float) -> int:
        if value <= self.low:
            return 0
        i = math.ceil(math.log2(value / self.low) * self.sub - 1e-9)
        # Floating point may put a value a hair above a bound into the bucket
        # below it; the bounds themselves decide.
        if value > self.upper(i):
            i += 1
        return min(i, self.size - 1)


# Request and commit latencies: 10 µs to ~168 s (24 doublings), 4 buckets a
# doubling (each bound 19 % above the last) — finer than a client can tell
# apart, and 98 counters a histogram.
SECONDS: Final = Scale(low=10e-6, sub=4, octaves=24)
# Batch sizes (mutations per commit): 1 to 65,536, one bucket per doubling.
COUNT: Final = Scale(low=1.0, sub=1, octaves=16)


@dataclass
class Histogram:
    scale: Scale = SECONDS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * self.scale.size

    def observe(self, value: float) -> None:
        self.counts[self.scale.index(value)] += 1
        self.total += value
        self.n += 1

    def wire(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "sum": self.total,
            "b": {str(i): c for i, c in enumerate(self.counts) if c},
        }

    @classmethod
    def from_wire(cls, doc: Any, scale: Scale = SECONDS) -> Histogram:
        h = cls(scale)
        if not isinstance(doc, dict):
            return h
        for k, c in (doc.get("b") or {}).items():
            i = int(k)
            if 0 <= i < scale.size:
                h.counts[i] += int(c)
        h.n = int(doc.get("n", 0))
        h.total = float(doc.get("sum", 0.0))
        return h

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q``-quantile
        observation (nearest rank), or None when empty."""
        if self.n == 0:
            return None
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return self.scale.upper(i)
        return self.scale.upper(self.scale.size - 1)

    def cumulative(self, every: int = 1) -> list[tuple[float, int]]:
        """(upper bound, count <= bound) at every ``every``-th bound, then
        ``+Inf``: Prometheus ``_bucket`` lines. Cumulative counts stay exact
        at any subset of the bounds."""
        out: list[tuple[float, int]] = []
        seen = 0
        last = self.scale.size - 1
        for i, c in enumerate(self.counts):
            seen += c
            if i < last and i % every == 0:
                out.append((self.scale.upper(i), seen))
        out.append((math.inf, seen))
        return out
