"""``seglake dashboard`` (``seglake top``) and ``seglake stats``.

Both read the one stats document (``seglake/metrics/view.py``) through the
admin socket, so they need no S3 credentials, only the data dir's admin
token. The dashboard is a full-screen rich ``Live`` view refreshed about
once a second: processes, request rate and latency per operation with
sparklines, bytes in/out, the writer's queue and commit latency, disk
against the reserve, the store's counts, maintenance state and last runs.
Keys: ``m`` asks to switch maintenance mode (``y`` confirms, anything else
cancels), ``q`` quits. Not on a terminal (or with ``--once``) it prints one
frame; ``--json`` prints the document.

``render`` is pure (document and history in, renderable out) so that the
layout is tested at 80×24 and 200×50 with a recording console.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import sys
import termios
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.table import Table
from rich.text import Text

from seglake.config import Config
from seglake.ipc.messages import AdminStats
from seglake.ops.admin_client import AdminUnavailable, admin_call, admin_request

REFRESH_S: Final = 1.0
HISTORY: Final = 60  # samples kept for rates and sparklines
SPARK: Final = " ▁▂▃▄▅▆▇█"
SPARK_WIDTH: Final = 16


def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    vals = values[-width:]
    top = max(vals, default=0.0)
    if top <= 0:
        return SPARK[1] * len(vals)
    return "".join(SPARK[min(8, 1 + round(v / top * 7))] for v in vals)


def human_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def compact_bytes(n: Any) -> str:
    """``52M``: a size in at most five characters."""
    if not isinstance(n, int | float):
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1000 or unit == "T":
            return f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.0f}T"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _ago(ts: Any, now: float) -> str:
    if not ts:
        return "never"
    s = max(0.0, now - float(ts))
    return (
        f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"
    )


@dataclass
class History:
    """Request totals per operation over time: rates and sparklines."""

    samples: deque[tuple[float, dict[str, int], int, int]] = field(
        default_factory=lambda: deque(maxlen=HISTORY)
    )

    def add(self, doc: dict[str, Any]) -> None:
        totals = {op: sum(c.values()) for op, c in (doc.get("requests_total") or {}).items()}
        self.samples.append(
            (float(doc.get("time", time.time())), totals,
             int(doc.get("bytes_in_total", 0)), int(doc.get("bytes_out_total", 0)))
        )  # fmt: skip

    def rates(self, op: str) -> list[float]:
        out: list[float] = []
        for (t0, a, _, _), (t1, b, _, _) in itertools.pairwise(self.samples):
            dt = max(t1 - t0, 1e-3)
            out.append(max(0, b.get(op, 0) - a.get(op, 0)) / dt)
        return out

    def byte_rates(self) -> tuple[float, float]:
        if len(self.samples) < 2:
            return 0.0, 0.0
        (t0, _, i0, o0), (t1, _, i1, o1) = self.samples[-2], self.samples[-1]
        dt = max(t1 - t0, 1e-3)
        return max(0, i1 - i0) / dt, max(0, o1 - o0) / dt


def _processes(doc: dict[str, Any], now: float) -> Table:
    t = Table(title="processes", box=None, title_justify="left", expand=True, padding=(0, 1))
    t.add_column("process", no_wrap=True, min_width=11)
    for name in ("pid", "up", "rst", "rss", "cpu"):
        t.add_column(name, no_wrap=True)
    for p in doc.get("processes") or []:
        alive = bool(p.get("alive"))
        up = float(p.get("uptime") or 0)
        t.add_row(
            Text(str(p.get("name")), style="" if alive else "bold red"),
            str(p.get("pid") or "-"),
            f"{up:.0f}s" if up < 3600 else f"{up / 3600:.1f}h" if alive else "DOWN",
            str(p.get("restarts", 0)),
            compact_bytes(p.get("rss_bytes")),
            f"{p['cpu_seconds']:.1f}s" if p.get("cpu_seconds") is not None else "-",
        )
    return t


def _store(doc: dict[str, Any], hist: History, now: float) -> RenderableType:
    disk = doc.get("disk") or {}
    w = doc.get("writer") or {}
    bin_s, bout_s = hist.byte_rates()
    free, reserve = disk.get("free_bytes"), disk.get("reserve_bytes")
    disk_style = "bold red" if disk.get("above_reserve") is False else ""
    state = doc.get("maintenance_state") or "?"
    runs = doc.get("last_runs") or {}
    lines = [
        Text.assemble("maintenance ", (state, "bold yellow" if state != "off" else "green"),
                      f" since {_ago(doc.get('maintenance_updated_at'), now)}"),
        Text("  " + ("  ".join(
            f"{t.get('to')} {_ago(t.get('at'), now)}"
            for t in reversed((doc.get("maintenance_transitions") or [])[-3:])
        ) or "no transitions yet"), style="dim"),
        Text(f"objects {doc.get('objects', '-')}  versions {doc.get('versions', '-')}  "
             f"segments {doc.get('segments', '-')}"),
        Text(f"live {human_bytes(doc.get('bytes_live'))}  dead {human_bytes(doc.get('dead_bytes'))}"),
        Text(f"disk free {human_bytes(free)} / reserve {human_bytes(reserve)}", style=disk_style),
        Text(f"in {human_bytes(bin_s)}/s  out {human_bytes(bout_s)}/s"),
        Text(f"writer queue {w.get('queue_depth', '-')}  in flight {w.get('write_inflight', '-')}"),
        Text(f"commit p50 {_ms((w.get('commit_ms') or {}).get('p50'))} "
             f"p99 {_ms((w.get('commit_ms') or {}).get('p99'))} ms  "
             f"fsync p99 {_ms((w.get('fsync_ms') or {}).get('p99'))} ms"),
        Text("last " + "  ".join(
            f"{m} {_ago(runs[m].get('at'), now)}" for m in ("scrub", "gc-run", "mpu-gc")
            if m in runs) if runs else "last runs: none"),
    ]  # fmt: skip
    return Group(*lines)


def _operations(doc: dict[str, Any], hist: History, rows: int) -> Table:
    t = Table("operation", "req/s", "rate", "p50 ms", "p99 ms", "4xx", "5xx", box=None,
              expand=True, padding=(0, 1), title="requests", title_justify="left")  # fmt: skip
    req = doc.get("requests_total") or {}
    lat = doc.get("latency_ms") or {}
    ranked = sorted(req, key=lambda op: -sum(req[op].values()))
    for op in ranked[: max(0, rows)]:
        rates = hist.rates(op)
        t.add_row(
            op, f"{rates[-1]:.1f}" if rates else "-", sparkline(rates),
            _ms((lat.get(op) or {}).get("p50")), _ms((lat.get(op) or {}).get("p99")),
            str(req[op].get("4xx", 0)), str(req[op].get("5xx", 0)),
        )  # fmt: skip
    return t


def render(
    doc: dict[str, Any], hist: History, *, height: int, prompt: str = "", now: float | None = None
) -> Layout:
    """One frame of the dashboard for a terminal ``height`` lines tall."""
    now = time.time() if now is None else now
    nprocs = len(doc.get("processes") or [])
    top = max(10, min(nprocs + 2, height // 2))
    root = Layout()
    head = Text.assemble(
        ("Seglake ", "bold"), f"{doc.get('version', '')}  ",
        time.strftime("%H:%M:%S", time.localtime(now)),
        ("  " + "; ".join(doc.get("errors") or []), "red"),
    )  # fmt: skip
    keys = Text(prompt or "m maintenance on/off   q quit", style="reverse" if prompt else "dim")
    root.split_column(
        Layout(head, name="header", size=1),
        Layout(name="top", size=top),
        Layout(_operations(doc, hist, height - top - 4), name="ops"),
        Layout(keys, name="footer", size=1),
    )
    root["top"].split_row(
        Layout(_processes(doc, now), name="processes", ratio=1),
        Layout(_store(doc, hist, now), name="store", ratio=1),
    )
    return root


def fetch(cfg: Config) -> dict[str, Any]:
    doc: dict[str, Any] = trio.run(admin_request, cfg, AdminStats())
    return doc


def stats_cmd(cfg: Config, *, as_json: bool) -> int:
    """``seglake stats``: the document as JSON, or as tables."""
    try:
        doc = fetch(cfg)
    except AdminUnavailable as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 1
    if as_json or not sys.stdout.isatty():
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    console = Console()
    hist = History()
    hist.add(doc)
    console.print(_processes(doc, time.time()))
    console.print(_store(doc, hist, time.time()))
    console.print(_operations(doc, hist, 100))
    return 0


class _Keys:
    """Single key presses from a terminal (cbreak mode), restored on exit."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)

    def __enter__(self) -> _Keys:
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> str:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 1).decode(errors="replace") if ready else ""


@dataclass
class Confirm:
    """The maintenance switch's question: ``m`` asks, the next key press
    answers (``y`` runs it, any other key cancels). Only a key press
    answers: a refresh that finds no key (``""``) leaves the question open,
    however soon it comes (a slow stats fetch leaves almost no time)."""

    pending: str = ""  # "enable" or "disable" while asked
    text: str = ""  # the bottom line; "" shows the key help

    def key(self, key: str, state: str | None) -> str:
        """React to ``key``; the action to run now ("" for none)."""
        if not key:
            return ""
        if self.pending:
            action, self.pending = self.pending, ""
            if key in ("y", "Y"):
                return action
            self.text = "cancelled"
            return ""
        if key in ("m", "M"):
            self.pending = "disable" if state not in ("off", None) else "enable"
            self.text = f"{self.pending} maintenance mode? y to confirm, any other key cancels"
        return ""


def dashboard_cmd(cfg: Config, *, once: bool, as_json: bool) -> int:
    try:
        doc = fetch(cfg)
    except AdminUnavailable as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    hist = History()
    hist.add(doc)
    console = Console()
    if once or not (sys.stdout.isatty() and sys.stdin.isatty()):
        console.print(render(doc, hist, height=max(24, console.height)), height=console.height)
        return 0
    confirm = Confirm()
    with _Keys() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
        next_fetch = time.monotonic() + REFRESH_S
        while True:
            live.update(render(doc, hist, height=console.height, prompt=confirm.text), refresh=True)
            key = keys.read(max(0.0, next_fetch - time.monotonic()))
            if key in ("q", "Q") and not confirm.pending:
                return 0
            action = confirm.key(key, doc.get("maintenance_state"))
            if action:
                try:
                    result = trio.run(admin_call, cfg, "maintenance", {"action": action})
                    confirm.text = f"maintenance {action}: now {result.get('state')}"
                except AdminUnavailable as exc:
                    confirm.text = f"maintenance {action} failed: {exc}"
            if time.monotonic() >= next_fetch:
                next_fetch = time.monotonic() + REFRESH_S
                with contextlib.suppress(AdminUnavailable):
                    doc = fetch(cfg)
                    hist.add(doc)
