"""Merging the figures several processes report, across their restarts (pure).

A report is ``{"name", "role", "pid", "started", "counters", "gauges"}``.
``counters`` and ``gauges`` are nested dicts whose leaves are numbers
(histograms included, see ``histogram.py``): merging is a deep add.

Rules:

* Counters are monotonic per process start. Each report carries the
  process's pid and start time; when a report arrives from a new start of a
  child (another pid), the previous start's last counters are folded into
  that child's ``retired`` totals. Totals are ``retired + live``: a restart
  never makes them go back, it only loses what the dead process counted
  after its last report (at most one report interval).
* Gauges (in-flight requests, queue depth) describe a living process: only
  the current reports of running processes count, never a retired one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


def deep_add(into: dict[str, Any], other: Any) -> dict[str, Any]:
    """Add ``other``'s numbers into ``into`` (in place), recursively."""
    if not isinstance(other, dict):
        return into
    for k, v in other.items():
        if isinstance(v, dict):
            cur = into.get(k)
            if not isinstance(cur, dict):
                cur = into[k] = {}
            deep_add(cur, v)
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int | float):
            cur_v = into.get(k, 0)
            into[k] = (cur_v if isinstance(cur_v, int | float) else 0) + v
    return into


@dataclass
class Aggregate:
    """What the supervisor keeps: each child's current report and the
    counters of its previous starts."""

    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    retired: dict[str, dict[str, Any]] = field(default_factory=dict)

    def report(self, doc: dict[str, Any]) -> None:
        name = str(doc.get("name", ""))
        if not name:
            return
        prev = self.live.get(name)
        if prev is not None and (prev.get("pid"), prev.get("started")) != (
            doc.get("pid"),
            doc.get("started"),
        ):
            self.retire(name)
        self.live[name] = doc

    def retire(self, name: str) -> None:
        """The process behind ``name`` ended: keep its counters, drop its gauges."""
        prev = self.live.pop(name, None)
        if prev is not None:
            deep_add(self.retired.setdefault(name, {}), prev.get("counters") or {})

    def totals(self, role: str) -> dict[str, Any]:
        """Counters summed over every start of every ``role`` process, and
        the gauges of the ones running now."""
        counters: dict[str, Any] = {}
        gauges: dict[str, Any] = {}
        for doc in self.live.values():
            if doc.get("role") == role:
                deep_add(counters, doc.get("counters") or {})
                deep_add(gauges, doc.get("gauges") or {})
        for name, old in self.retired.items():
            if name.split("-")[0] == role:
                deep_add(counters, copy.deepcopy(old))
        return {"counters": counters, "gauges": gauges}

    def reports(self) -> dict[str, dict[str, Any]]:
        """name → (pid, started, reported_at) of each current report."""
        return {n: {k: d.get(k) for k in ("pid", "started", "at")} for n, d in self.live.items()}
