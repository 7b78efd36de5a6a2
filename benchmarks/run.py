"""``make bench``: Seglake's throughput, latency and memory against its targets.

Runs the trivial-app ceiling (Hypercorn with Seglake's exact settings) and then
a real multi-process Seglake in a temporary data dir on the same disk as the
work tree, drives both with ``benchmarks.loadgen``, and prints one table with
the target and PASS/MISS per line.

The load generator shares the machine's cores with the server, so every line
also reports where the CPU went: the server's process tree, the generator, and
everything else on the machine ("other" — e.g. a test run in another shell).
Figures taken while "other" is large are not the server's own.

Exit status: 0 when every request succeeded (targets missed or not), 1 when
requests failed, 2 when a GET returned bytes other than those PUT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from tests.harness import SeglakeServer

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import disk_ceiling, procstat  # noqa: E402
from benchmarks.ceiling import CeilingServer  # noqa: E402
from benchmarks.loadgen import (  # noqa: E402
    KiB,
    MiB,
    Payload,
    PhaseResult,
    Signer,
    Target,
    VerificationError,
    create_bucket,
    object_path,
    run_phase,
)

BUCKET: Final = "bench"
# Temporary data dirs live beside the work tree so they are on the same disk.
TMP_PARENT: Final = REPO_ROOT / ".bench-tmp"
# When the last run removed its data dir. On ext4 without a journal (this
# VM's root file system) a new inode is not taken from those freed in the
# last minute: every create scans past them, and a run started right after
# another one's clean-up paid ~0.6 ms of kernel time per manifest for it.
CLEANED_STAMP: Final = REPO_ROOT / ".bench-tmp.cleaned"
FREED_INODES_SETTLE_S: Final = 65.0
RSS_SAMPLE_INTERVAL_S: Final = 0.1
# The process tree is re-walked this often; VmRSS is read every sample.
PID_REFRESH_INTERVAL_S: Final = 1.0
# A single Python process cannot use more than one core; above this share the
# generator, not the server, may be what limits the figure.
LOADGEN_SATURATED_FRACTION: Final = 0.85
# More than this many cores used by processes that are neither the server nor
# the generator makes the line unrepresentative.
OTHER_CPU_WARN_CORES: Final = 0.15
# Foreign processes below this share are not named in warnings.
FOREIGN_PROCESS_SHOW_CORES: Final = 0.05
# --wait-idle: the machine counts as idle when everything on it together uses
# less than this over one probe window (the idle server itself uses ~0).
IDLE_BUSY_CORES: Final = 0.3
IDLE_PROBE_S: Final = 0.5


@dataclass(frozen=True)
class Goal:
    metric: str  # "p50_ms", "ops_per_s", "mb_per_s" or "peak_rss_mib"
    op: str  # "<=", ">=" or "<"
    value: float

    def met(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        if self.op == "<=":
            return measured <= self.value
        if self.op == "<":
            return measured < self.value
        return measured >= self.value

    def label(self) -> str:
        unit = {"p50_ms": " ms p50", "ops_per_s": " ops/s", "mb_per_s": " MB/s"}
        unit["peak_rss_mib"] = " MiB RSS"
        return f"{self.op} {self.value:,.0f}{unit[self.metric]}"


@dataclass(frozen=True)
class Scenario:
    name: str
    # "seglake" (per-key limits off: throughput), "seglake-limits" (default
    # settings, per-key in-flight limits on: error counts) or "ceiling"
    server: str
    op: str
    size: int
    concurrency: int
    goals: tuple[Goal, ...] = ()


SCENARIOS: Final = (
    Scenario("ceiling-put-4k-c32", "ceiling", "put", 4 * KiB, 32),
    Scenario("ceiling-get-4k-c32", "ceiling", "get", 4 * KiB, 32),
    Scenario("put-4k-c1", "seglake", "put", 4 * KiB, 1, (Goal("p50_ms", "<=", 3.0),)),
    Scenario("put-4k-c32", "seglake", "put", 4 * KiB, 32, (Goal("ops_per_s", ">=", 1500),)),
    Scenario("get-4k-c32", "seglake", "get", 4 * KiB, 32, (Goal("ops_per_s", ">=", 2000),)),
    Scenario("put-1m-c8", "seglake", "put", 1 * MiB, 8),
    Scenario("get-1m-c8", "seglake", "get", 1 * MiB, 8),
    Scenario(
        "put-64m-c4",
        "seglake",
        "put",
        64 * MiB,
        4,
        (Goal("mb_per_s", ">=", 300), Goal("peak_rss_mib", "<", 400)),
    ),
    Scenario("get-64m-c4", "seglake", "get", 64 * MiB, 4, (Goal("mb_per_s", ">=", 1000),)),
    # One key's GETs against default settings: any SlowDown shows as errors.
    Scenario("get-4k-c32-limits", "seglake-limits", "get", 4 * KiB, 32),
    Scenario("get-4k-c128-limits", "seglake-limits", "get", 4 * KiB, 128),
)
SEGLAKE_SERVERS: Final = ("seglake", "seglake-limits")
# Objects for a GET scenario run alone are written on this many connections,
# under the default per-key write limit.
PREP_CONNECTIONS: Final = 8
CEILING_OF: Final = {"put-4k-c32": "ceiling-put-4k-c32", "get-4k-c32": "ceiling-get-4k-c32"}


@dataclass
class Outcome:
    scenario: Scenario
    phase: PhaseResult
    server_cpu_cores: float
    other_cpu_cores: float
    machine_busy_cores: float
    peak_rss_bytes: int
    rss_samples: int
    top_foreign: list[str]
    idle_wait_s: float | None  # None: the machine never became idle
    cpu_by_role: dict[str, float]  # server process role -> cores

    def metric(self, name: str) -> float:
        if name == "peak_rss_mib":
            return self.peak_rss_bytes / MiB if self.rss_samples else float("nan")
        if name == "p50_ms":
            return self.phase.percentile_ms(0.5)
        return float(getattr(self.phase, name))

    def verdict(self) -> str:
        if self.phase.errors:
            return "ERRORS"
        if not self.scenario.goals:
            return "-"
        # One verdict per goal, in the order of the target column.
        return "; ".join(
            "PASS" if g.met(self.metric(g.metric)) else "MISS" for g in self.scenario.goals
        )

    def warnings(self) -> list[str]:
        notes = []
        if self.phase.loadgen_cpu_fraction >= LOADGEN_SATURATED_FRACTION:
            notes.append(
                f"load generator used {self.phase.loadgen_cpu_fraction:.0%} of a core: "
                "it may be the bottleneck, not the server"
            )
        if self.other_cpu_cores >= OTHER_CPU_WARN_CORES:
            notes.append(
                f"other processes used {self.other_cpu_cores:.2f} cores meanwhile: "
                "figure disturbed by foreign load"
                + (f" (top: {'; '.join(self.top_foreign)})" if self.top_foreign else "")
            )
        if self.idle_wait_s is None:
            notes.append("the machine was not idle before this scenario (see --wait-idle)")
        if self.phase.errors:
            notes.append(
                f"{self.phase.errors} failed requests, e.g. {self.phase.error_samples[:2]}"
            )
        return notes

    def to_json(self) -> dict[str, Any]:
        p = self.phase
        return {
            "name": self.scenario.name,
            "server": self.scenario.server,
            "op": p.op,
            "size_bytes": p.size,
            "concurrency": p.concurrency,
            "ops": p.ops,
            "elapsed_s": round(p.elapsed_s, 4),
            "ops_per_s": round(p.ops_per_s, 1),
            "mb_per_s": round(p.mb_per_s, 2),
            "p50_ms": round(p.percentile_ms(0.5), 3),
            "p99_ms": round(p.percentile_ms(0.99), 3),
            "errors": p.errors,
            "error_samples": p.error_samples,
            "verified_gets": p.verified,
            "reconnects": p.connects,
            "loadgen_cpu_fraction": round(p.loadgen_cpu_fraction, 3),
            "loadgen_cpu_us_per_op": round(p.loadgen_cpu_us_per_op, 1),
            "server_cpu_cores": round(self.server_cpu_cores, 3),
            "server_cpu_cores_by_role": {k: round(v, 3) for k, v in self.cpu_by_role.items()},
            "other_cpu_cores": round(self.other_cpu_cores, 3),
            "machine_busy_cores": round(self.machine_busy_cores, 3),
            "peak_rss_bytes": self.peak_rss_bytes if self.rss_samples else None,
            "top_foreign_processes": self.top_foreign,
            "waited_for_idle_s": self.idle_wait_s,
            "goals": [
                {
                    "goal": g.label(),
                    "measured": self.metric(g.metric),
                    "met": g.met(self.metric(g.metric)),
                }
                for g in self.scenario.goals
            ],
            "verdict": self.verdict(),
            "warnings": self.warnings(),
        }


SERVER_ROLES: Final = ("frontend", "writer", "maintenance", "supervisor")


def role_of(pid: int) -> str:
    command = procstat.command_line(pid, limit=1000)
    for role in SERVER_ROLES:
        if f"seglake.{role}.main" in command:
            return role
    if "seglake.cli serve" in command:
        return "supervisor"
    if "benchmarks.ceiling" in command:
        return "ceiling app"
    return "other"


class ServerTree:
    """The server's processes: a fixed pid list, or a root and its descendants."""

    def __init__(self, root: int | None = None, pids: Sequence[int] = ()):
        self.root = root
        self._fixed = list(pids)

    def pids(self) -> set[int]:
        if self.root is not None:
            return procstat.descendants(self.root)
        return set(self._fixed)


class RssSampler:
    def __init__(self, tree: ServerTree):
        self.tree = tree
        self.peak = 0
        self.samples = 0

    async def run(self) -> None:
        pids = self.tree.pids()
        refreshed = time.monotonic()
        # Bounded: the caller cancels it when the phase ends, and it never
        # outlives a phase's own deadline by more than a day of samples.
        for _ in range(int(86400 / RSS_SAMPLE_INTERVAL_S)):
            now = time.monotonic()
            if now - refreshed >= PID_REFRESH_INTERVAL_S:
                pids = self.tree.pids()
                refreshed = now
            self.peak = max(self.peak, procstat.rss_bytes(pids))
            self.samples += 1
            await trio.sleep(RSS_SAMPLE_INTERVAL_S)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.payloads: dict[int, Payload] = {}
        self.paths: dict[tuple[str, int], list[str]] = {}
        self.outcomes: dict[str, Outcome] = {}
        # The disk alone, measured beside the server's data: the lone-PUT
        # barrier once, the bulk write right before each large PUT scenario.
        self.lone_commit_ms: tuple[float, float] | None = None
        self.bulk_mb_per_s: dict[str, float] = {}

    def payload(self, size: int) -> Payload:
        if size not in self.payloads:
            self.payloads[size] = Payload(size)
        return self.payloads[size]

    async def measure(self, target: Target, tree: ServerTree, sc: Scenario) -> Outcome:
        args = self.args
        payload = self.payload(sc.size)
        conns = target.connections(sc.concurrency)
        try:
            for conn in conns:
                await conn.connect()
            paths = await self._paths_for(target, sc, payload)
            common: dict[str, Any] = {
                "bucket": BUCKET,
                "paths": paths,
                "verify_every": args.verify_every if sc.server in SEGLAKE_SERVERS else 0,
                "expect_payload": sc.server in SEGLAKE_SERVERS,
            }
            if args.warmup > 0:
                warm = await run_phase(
                    target, conns, sc.op, payload, seconds=args.warmup,
                    key_prefix=f"{sc.name}-warm", **common,
                )  # fmt: skip
                self._keep_paths(sc, warm)
            waited = await wait_idle(args.wait_idle)
            sampler = RssSampler(tree)
            pids = tree.pids()
            procs0 = procstat.all_cpu_seconds()
            server0, machine0 = procstat.cpu_seconds(pids), procstat.machine_cpu()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sampler.run)
                phase = await run_phase(
                    target, conns, sc.op, payload, seconds=args.seconds,
                    key_prefix=f"{sc.name}-run", **common,
                )  # fmt: skip
                nursery.cancel_scope.cancel()
            # Children that exited during the phase drop out of this sum; the
            # server's tree is stable while it is healthy.
            server_cpu = procstat.cpu_seconds(tree.pids() | pids) - server0
            machine1 = procstat.machine_cpu()
            procs1 = procstat.all_cpu_seconds()
        finally:
            for conn in conns:
                conn.close()
        self._keep_paths(sc, phase)
        elapsed = phase.elapsed_s
        machine_busy = (machine1.busy_s - machine0.busy_s) / elapsed
        server_cores = server_cpu / elapsed
        other = max(0.0, machine_busy - server_cores - phase.loadgen_cpu_fraction)
        ours = tree.pids() | pids | {os.getpid()}
        by_role: dict[str, float] = {}
        for pid in tree.pids() | pids:
            if pid in procs1:
                role = role_of(pid)
                used = (procs1[pid] - procs0.get(pid, 0.0)) / elapsed
                by_role[role] = by_role.get(role, 0.0) + used
        foreign = sorted(
            ((procs1[pid] - procs0.get(pid, 0.0), pid) for pid in procs1 if pid not in ours),
            reverse=True,
        )
        top = [
            f"{cpu / elapsed:.2f} {procstat.command_line(pid)}"
            for cpu, pid in foreign[:3]
            if cpu / elapsed >= FOREIGN_PROCESS_SHOW_CORES
        ]
        return Outcome(
            sc, phase, server_cores, other, machine_busy, sampler.peak, sampler.samples,
            top, waited, by_role,
        )  # fmt: skip

    def _keep_paths(self, sc: Scenario, phase: PhaseResult) -> None:
        if sc.op == "put" and sc.server in SEGLAKE_SERVERS:
            self.paths.setdefault((sc.server, sc.size), []).extend(phase.paths)

    async def _paths_for(self, target: Target, sc: Scenario, payload: Payload) -> list[str]:
        if sc.op != "get":
            return []
        if sc.server == "ceiling":
            return [object_path(BUCKET, "ceiling")]  # the trivial app ignores the key
        paths = self.paths.get((sc.server, sc.size), [])
        if len(paths) < sc.concurrency:
            # Run alone (--only): write a few objects first.
            conns = target.connections(min(sc.concurrency, PREP_CONNECTIONS))
            try:
                prep = await run_phase(
                    target, conns, "put", payload, seconds=60.0, bucket=BUCKET,
                    key_prefix=f"{sc.name}-prep", max_ops=max(2 * sc.concurrency, 32 if sc.size <= MiB else 0),
                )  # fmt: skip
            finally:
                for conn in conns:
                    conn.close()
            if prep.errors:
                raise RuntimeError(
                    f"{sc.name}: writing objects to read failed: {prep.error_samples}"
                )
            paths = paths + prep.paths
            self.paths[(sc.server, sc.size)] = paths
        return paths


async def wait_idle(limit_s: float) -> float | None:
    """Wait up to ``limit_s`` for a quiet machine; seconds waited, None if never."""
    if limit_s <= 0:
        return 0.0
    start = time.monotonic()
    for _ in range(int(limit_s / IDLE_PROBE_S) + 1):
        before = procstat.machine_cpu()
        await trio.sleep(IDLE_PROBE_S)
        after = procstat.machine_cpu()
        if (after.busy_s - before.busy_s) / IDLE_PROBE_S < IDLE_BUSY_CORES:
            return time.monotonic() - start
    return None


# ---- servers ---------------------------------------------------------------


async def run_ceiling(bench: Bench, scenarios: list[Scenario], signer: Signer) -> None:
    server = CeilingServer(bench.args.frontends).start()
    try:
        target = Target("127.0.0.1", server.port or 0, signer)
        tree = ServerTree(pids=server.pids)
        for sc in scenarios:
            bench.outcomes[sc.name] = await bench.measure(target, tree, sc)
            progress(bench.outcomes[sc.name])
    finally:
        server.stop()


async def settle_after_cleanup() -> None:
    """Wait until the last run's deleted files no longer slow file creation."""
    try:
        age = time.time() - CLEANED_STAMP.stat().st_mtime
    except FileNotFoundError:
        return
    if 0 <= age < FREED_INODES_SETTLE_S:
        wait = FREED_INODES_SETTLE_S - age
        print(f"waiting {wait:.0f} s: files the last run deleted slow down new ones until then")
        await trio.sleep(wait)


@contextlib.contextmanager
def scratch_server(prefix: str, *, keep: bool = False) -> Iterator[tuple[Path, SeglakeServer]]:
    """A one-frontend Seglake in a new dir under ``.bench-tmp/`` for the
    single-part benchmarks (``writer_load``, ``app_only``): started once
    the last clean-up has settled, stopped and (unless ``keep``) removed
    afterwards, with the clean-up stamped."""
    from tests.harness import SeglakeServer

    trio.run(settle_after_cleanup)
    TMP_PARENT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=TMP_PARENT))
    server = SeglakeServer(tmp / "data", frontends=1, log_path=tmp / "server.log")
    server.start()
    try:
        yield tmp / "data", server
    finally:
        server.close()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
            CLEANED_STAMP.touch()


async def run_seglake(
    bench: Bench, scenarios: list[Scenario], signer: Signer, *, limits: bool = False
) -> None:
    from tests.harness import SeglakeServer

    await settle_after_cleanup()
    TMP_PARENT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=TMP_PARENT))
    # The throughput scenarios run without the per-key in-flight limits: the
    # write pool (32 per key, split across frontends) would answer SlowDown
    # to c=32 PUTs whose connections land unevenly, and they measure
    # throughput, not request protection. The "-limits" scenarios keep the
    # defaults and count what they refuse.
    server = SeglakeServer(
        tmp / "data",
        frontends=bench.args.frontends,
        log_path=tmp / "server.log",
        extra_args=[] if limits else ["--key-inflight-limit", "0"],
    )
    try:
        server.start()
        assert server.proc is not None and server.port is not None
        target = Target("127.0.0.1", server.port, signer)
        await create_bucket(target, BUCKET)
        tree = ServerTree(root=server.proc.pid)
        if any(sc.op == "put" for sc in scenarios):
            bench.lone_commit_ms = await trio.to_thread.run_sync(disk_ceiling.lone_commit, tmp)
        for sc in scenarios:
            if sc.op == "put" and sc.size >= disk_ceiling.OBJECT:
                bench.bulk_mb_per_s[sc.name] = await trio.to_thread.run_sync(
                    disk_ceiling.bulk_write, tmp
                )
            bench.outcomes[sc.name] = await bench.measure(target, tree, sc)
            progress(bench.outcomes[sc.name])
    except BaseException:
        print(
            f"--- server log tail ({tmp / 'server.log'}) ---\n{server.log_tail()}", file=sys.stderr
        )
        raise
    finally:
        try:
            server.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            CLEANED_STAMP.touch()
            with contextlib.suppress(OSError):
                TMP_PARENT.rmdir()  # only if no other run is using it


# ---- reporting -------------------------------------------------------------


def progress(o: Outcome) -> None:
    p = o.phase
    print(
        f"  {o.scenario.name:<20} {p.ops_per_s:9.1f} ops/s {p.mb_per_s:9.1f} MB/s "
        f"p50 {p.percentile_ms(0.5):7.2f} ms  p99 {p.percentile_ms(0.99):7.2f} ms",
        file=sys.stderr,
        flush=True,
    )


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def ceiling_fractions(outcomes: dict[str, Outcome]) -> dict[str, float]:
    out = {}
    for name, ceiling in CEILING_OF.items():
        if name in outcomes and ceiling in outcomes and outcomes[ceiling].phase.ops_per_s > 0:
            out[name] = outcomes[name].phase.ops_per_s / outcomes[ceiling].phase.ops_per_s
    return out


def fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def print_report(bench: Bench, order: list[Scenario], info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    table = Table(
        title=(
            f"Seglake benchmark — {info['cpus']} CPUs, kernel {info['kernel']}, Python {info['python']}, "
            f"{bench.args.frontends} frontends, {bench.args.seconds:g} s per scenario"
        )
    )
    for col, justify in (
        ("scenario", "left"), ("ops/s", "right"), ("MB/s", "right"), ("p50 ms", "right"),
        ("p99 ms", "right"), ("err", "right"), ("server CPU", "right"), ("loadgen CPU", "right"),
        ("other CPU", "right"), ("peak RSS", "right"), ("target", "left"), ("result", "left"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    colour = {"PASS": "green", "MISS": "yellow", "ERRORS": "red"}
    for sc in order:
        o = bench.outcomes.get(sc.name)
        if o is None:
            continue
        p = o.phase
        verdict = o.verdict()
        rss = f"{o.peak_rss_bytes / MiB:,.0f} MiB" if o.rss_samples else "-"
        table.add_row(
            sc.name,
            f"{p.ops_per_s:,.0f}",
            f"{p.mb_per_s:,.1f}",
            fmt(p.percentile_ms(0.5), ".2f"),
            fmt(p.percentile_ms(0.99), ".2f"),
            str(p.errors),
            f"{o.server_cpu_cores:.2f} cores",
            f"{p.loadgen_cpu_fraction:.0%}",
            f"{o.other_cpu_cores:.2f} cores",
            rss,
            "; ".join(g.label() for g in sc.goals) or "-",
            "; ".join(f"[{colour.get(v, 'white')}]{v}[/]" for v in verdict.split("; ")),
        )
    console.print(table)
    for name, frac in ceiling_fractions(bench.outcomes).items():
        console.print(
            f"{name}: {bench.outcomes[name].phase.ops_per_s:,.0f} ops/s = {frac:.0%} of the "
            f"ceiling app's {bench.outcomes[CEILING_OF[name]].phase.ops_per_s:,.0f} ops/s"
        )
    if bench.lone_commit_ms is not None:
        p50, p99 = bench.lone_commit_ms
        console.print(
            f"disk alone, one lone PUT's serial barrier (segment fsync, manifest create + fsync, "
            f"directory fsync, WAL fdatasync): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )
    for name, mbps in bench.bulk_mb_per_s.items():
        if name in bench.outcomes:
            got = bench.outcomes[name].phase.mb_per_s
            console.print(
                f"{name}: {got:,.1f} MB/s = {got / mbps:.0%} of the disk alone just before it "
                f"(fresh data, 4 MiB pwrites, fsync per 64 MiB: {mbps:,.0f} MB/s)"
            )
    console.print("server CPU by process role (cores; all processes of a role summed):")
    for sc in order:
        o = bench.outcomes.get(sc.name)
        if o is not None:
            roles = ", ".join(
                f"{role} {cores:.2f}"
                for role, cores in sorted(o.cpu_by_role.items())
                if cores >= 0.005
            )
            per_op = o.server_cpu_cores / o.phase.ops_per_s * 1000 if o.phase.ops_per_s else 0.0
            console.print(f"  {sc.name:<20} {roles}  ({per_op:.2f} ms server CPU per op)")
    verified = sum(o.phase.verified for o in bench.outcomes.values())
    console.print(
        f"GETs verified byte for byte: {verified} (1 in {bench.args.verify_every}), all matched"
    )
    for sc in order:
        o = bench.outcomes.get(sc.name)
        for note in o.warnings() if o else ():
            console.print(f"[yellow]warning[/] {sc.name}: {note}")
    console.print(
        "server CPU = the server's process tree; loadgen CPU = share of one core used by this "
        "generator; other CPU = everything else on the machine meanwhile."
    )


# ---- main --------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [sc.name for sc in SCENARIOS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each")
    parser.add_argument(
        "--only", action="append", default=[], metavar="SCENARIO",
        help=f"run only these (repeat or comma-separate): {', '.join(names)}",
    )  # fmt: skip
    parser.add_argument("--frontends", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--wait-idle", type=float, default=0.0, metavar="S",
        help="before each scenario wait up to S seconds for the machine to go idle",
    )  # fmt: skip
    parser.add_argument("--verify-every", type=int, default=50, metavar="N",
                        help="check every Nth GET byte for byte (0 = never)")  # fmt: skip
    args = parser.parse_args(argv)
    only = {n.strip() for item in args.only for n in item.split(",") if n.strip()}
    unknown = only - set(names)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {names}")
    args.selected = [sc for sc in SCENARIOS if not only or sc.name in only]
    if args.seconds <= 0 or args.frontends < 1 or args.verify_every < 0:
        parser.error("--seconds and --frontends must be positive, --verify-every >= 0")
    return args


async def amain(bench: Bench) -> None:
    from tests.harness import ACCESS_KEY, REGION, SECRET_KEY

    signer = Signer(ACCESS_KEY, SECRET_KEY, REGION)
    ceiling = [sc for sc in bench.args.selected if sc.server == "ceiling"]
    seglake = [sc for sc in bench.args.selected if sc.server == "seglake"]
    limited = [sc for sc in bench.args.selected if sc.server == "seglake-limits"]
    if ceiling:
        print("ceiling app (Hypercorn, Seglake's settings, trivial ASGI app):", file=sys.stderr)
        await run_ceiling(bench, ceiling, signer)
    if seglake:
        print("Seglake:", file=sys.stderr)
        await run_seglake(bench, seglake, signer)
    if limited:
        print("Seglake, default per-key in-flight limits:", file=sys.stderr)
        await run_seglake(bench, limited, signer, limits=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    info = machine_info()
    started = time.monotonic()
    mismatches: list[BaseException] = []
    try:
        trio.run(amain, bench)
    except* VerificationError as group:
        mismatches.extend(group.exceptions)
    if mismatches:
        for exc in mismatches:
            print(f"\n!!! DATA MISMATCH: {exc}\n", file=sys.stderr)
        return 2
    print_report(bench, args.selected, info)
    print(f"total run time {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json:
        doc = {
            "machine": info,
            "settings": {
                "seconds": args.seconds, "warmup": args.warmup, "frontends": args.frontends,
                "verify_every": args.verify_every, "wait_idle": args.wait_idle,
            },
            "results": [bench.outcomes[sc.name].to_json() for sc in args.selected if sc.name in bench.outcomes],
            "fraction_of_ceiling": ceiling_fractions(bench.outcomes),
            "disk_alone": {
                "lone_commit_ms": bench.lone_commit_ms, "bulk_mb_per_s": bench.bulk_mb_per_s,
            },
        }  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if any(o.phase.errors for o in bench.outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
