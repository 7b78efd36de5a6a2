"""``seglake gc-plan | gc-run | gc-rewrite-plan | gc-rewrite-run | gc-rewrite``.

Quiesce protocol (the rule of ``seglake/maintenance/main.py``): planning only
reads (``meta.db`` read-only, segment file sizes) and runs any time, with or
without a server. Running deletes data, so it passes ``gate.py`` first: a
live server must be ``quiesced`` or the operator must pass ``--yes``. The
deleting itself is never done here: each step is a writer request relayed
by the admin socket (``gc_delete_segments``, ``gc_rewrite_chunks``), and
the writer re-checks liveness in its own transaction (``writer/gc_ops.py``),
so a plan that went stale can never delete a live chunk. With no server,
the same writer code runs embedded in this process, holding the data-dir
lock and the writer lock, exactly as ``seglake serve`` would.

Without ``--force`` (``-gc-force``) a run refuses when the plan has
warnings. Every run (refused, failed or done) is recorded in ``ops_runs``.
A run can be killed at any moment and simply started again: each step is
complete or absent in the database, and the writer finishes interrupted
manifest rewrites before its next step.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from seglake.audit.fsck import segment_files_on_disk
from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.layout import GC_PAUSE_FILE, segment_file_name
from seglake.ipc.messages import (
    GcDeleted,
    GcDeleteSegments,
    GcRewriteChunks,
    GcRewritten,
    GcStep,
    RecordOpRun,
)
from seglake.meta.live_chunks import collect_live_chunks
from seglake.meta.oplog_horizon import PURGEABLE, tombstone_horizon
from seglake.meta.schema import open_read, query
from seglake.writer.embedded import EmbeddedWriter, run_embedded

# Segments per delete request: one request stays far inside the relay's
# 10 s timeout, and a progress bar still moves.
DELETE_BATCH: Final = 32
# Bytes moved per rewrite request when unthrottled (the writer caps it too).
REWRITE_STEP_BYTES: Final = 32 * 1024 * 1024
# DELETED version rows purged per request: each also writes and fsyncs a
# metadata record, so this bounds one request to well under a second.
PURGE_BATCH: Final = 100
PAUSE_POLL_S: Final = 0.2


# ---- planning ----------------------------------------------------------------------


@dataclass
class SegmentUse:
    segment_id: int
    file_bytes: int
    live_bytes: int
    live_chunks: int
    sealed_ns: int

    @property
    def live_fraction(self) -> float:
        return self.live_bytes / self.file_bytes if self.file_bytes else 0.0

    @property
    def reclaim_bytes(self) -> int:
        return max(0, self.file_bytes - self.live_bytes)


@dataclass
class GcPlan:
    mode: str  # "gc" or "gc-rewrite"
    candidates: list[SegmentUse] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segments_total: int = 0
    segments_sealed: int = 0
    segment_bytes: int = 0
    live_bytes: int = 0
    deleted_versions: int = 0
    # DELETED rows the tombstone horizon keeps for now (meta/oplog_horizon.py).
    deleted_versions_held: int = 0
    retention_ms: int = 7 * 86_400_000
    skipped_young: int = 0
    skipped_limit: int = 0
    blocked: bool = False  # liveness unknown: the writer will refuse to delete

    @property
    def reclaim_bytes(self) -> int:
        return sum(c.reclaim_bytes for c in self.candidates)

    @property
    def copy_bytes(self) -> int:
        return sum(c.live_bytes for c in self.candidates)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "segments": [
                {**asdict(c), "live_fraction": round(c.live_fraction, 4)} for c in self.candidates
            ],
            "segment_count": len(self.candidates),
            "reclaim_bytes": self.reclaim_bytes,
            "copy_bytes": self.copy_bytes,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "segments_total": self.segments_total,
            "segments_sealed": self.segments_sealed,
            "segment_bytes_on_disk": self.segment_bytes,
            "live_bytes": self.live_bytes,
            "deleted_versions_to_purge": self.deleted_versions,
            "deleted_versions_held": self.deleted_versions_held,
            "skipped_young": self.skipped_young,
            "skipped_limit": self.skipped_limit,
            "blocked": self.blocked,
        }


@dataclass(frozen=True)
class Limits:
    min_age_s: float = 0.0
    max_segments: int = 0
    max_bytes: int = 0
    max_live: float = 0.5
    retention_ms: int = 7 * 86_400_000

    @classmethod
    def from_config(cls, cfg: Config) -> Limits:
        if cfg.gc_min_age < 0 or cfg.gc_max_segments < 0 or cfg.gc_max_bytes < 0:
            raise ValueError("gc-min-age, gc-max-segments and gc-max-bytes must not be negative")
        if not 0.0 < cfg.gc_rewrite_max_live <= 1.0:
            raise ValueError("gc-rewrite-max-live must be a fraction in (0, 1]")
        if cfg.gc_rewrite_bytes_per_sec < 0:
            raise ValueError("gc-rewrite-bytes-per-sec must not be negative")
        if cfg.repl_oplog_retention < 0:
            raise ValueError("repl-oplog-retention must not be negative")
        return cls(
            cfg.gc_min_age, cfg.gc_max_segments, cfg.gc_max_bytes, cfg.gc_rewrite_max_live,
            int(cfg.repl_oplog_retention * 1000),
        )  # fmt: skip


def segment_files(cfg: Config) -> dict[int, int]:
    """Segment id → file size, for every segment file on disk."""
    out: dict[int, int] = {}
    for entry, sid in segment_files_on_disk(cfg):
        with contextlib.suppress(FileNotFoundError):  # deleted by a GC step meanwhile
            if sid is not None:
                out[sid] = entry.stat().st_size
    return out


def make_plan(cfg: Config, limits: Limits, *, rewrite: bool, now_ns: int | None = None) -> GcPlan:
    """What a run would do now (read-only; the writer re-checks at run time)."""
    plan = GcPlan("gc-rewrite" if rewrite else "gc", retention_ms=limits.retention_ms)
    now_ns = time.time_ns() if now_ns is None else now_ns
    conn = open_read(str(cfg.db_path))
    try:
        conn.execute("BEGIN")  # one snapshot: rows and references agree
        try:
            rows = query(conn, "SELECT id, state, sealed_ns FROM segments ORDER BY id")
            live = collect_live_chunks(conn)
            horizon = tombstone_horizon(
                conn, now_ms=now_ns // 1_000_000, retention_ms=limits.retention_ms
            )
            ((below, held),) = query(
                conn,
                f"SELECT count(*) FILTER (WHERE {PURGEABLE}), "
                f"count(*) FILTER (WHERE NOT {PURGEABLE}) "
                "FROM versions WHERE state = 'DELETED' OR tombstone = 1",
                (horizon, horizon, horizon, horizon),
            )
            plan.deleted_versions, plan.deleted_versions_held = int(below), int(held)
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    files = segment_files(cfg)
    known = {int(r[0]) for r in rows}
    plan.segments_total = len(rows)
    plan.segment_bytes = sum(files.values())
    plan.live_bytes = sum(live.live_bytes(s) for s in live.by_segment)
    for problem in live.problems[:20]:
        plan.warnings.append(f"liveness unknown, nothing can be deleted: {problem}")
    if live.problems:
        plan.blocked = True
    for sid in sorted(set(live.by_segment) - known):
        plan.warnings.append(f"live chunks reference segment {sid}, which has no database row")
    for sid in sorted(s for s in known if s not in files):
        if sid in live.by_segment:
            plan.warnings.append(f"segment {sid} holds live chunks but its file is missing")
        else:
            plan.notes.append(f"segment {sid} has a row but no file")
    for sid in sorted(set(files) - known):
        plan.notes.append(
            f"segment file {segment_file_name(sid)} has no row yet (the open segment before "
            "its first commit, or a crash leftover that the writer's recovery will seal)"
        )
    newest = max(known | set(files), default=0)
    min_age_ns = int(limits.min_age_s * 1e9)
    eligible: list[SegmentUse] = []
    for sid_raw, state, sealed_ns in rows:
        sid = int(sid_raw)
        if state != "SEALED" or sid not in files:
            continue
        plan.segments_sealed += 1
        use = SegmentUse(
            sid,
            files[sid],
            live.live_bytes(sid),
            len(live.by_segment.get(sid, {})),
            int(sealed_ns or 0),
        )
        wanted = use.live_fraction < limits.max_live if rewrite else use.live_chunks == 0
        if not wanted:
            continue
        if sid == newest:
            plan.notes.append(f"segment {sid} is the newest: kept so its id is never reused")
            continue
        if min_age_ns and now_ns - use.sealed_ns < min_age_ns:
            plan.skipped_young += 1
            continue
        eligible.append(use)
    if plan.skipped_young:
        plan.warnings.append(
            f"{plan.skipped_young} segment(s) that qualify are younger than --gc-min-age "
            f"({limits.min_age_s:g}s) and are skipped"
        )
    if rewrite:
        # Most bytes freed per byte copied first.
        eligible.sort(key=lambda u: (u.live_fraction, u.segment_id))
    total = 0
    for use in eligible:
        over_count = limits.max_segments and len(plan.candidates) >= limits.max_segments
        over_bytes = limits.max_bytes and total + use.reclaim_bytes > limits.max_bytes
        if over_count or over_bytes:
            plan.skipped_limit += 1
            continue
        plan.candidates.append(use)
        total += use.reclaim_bytes
    if plan.skipped_limit:
        plan.notes.append(
            f"{plan.skipped_limit} more segment(s) left for a later run "
            "(--gc-max-segments / --gc-max-bytes)"
        )
    return plan


# ---- the writer, live or embedded ----------------------------------------------------


class Backend:
    """Where GC steps run: the live writer (through the admin socket) or a
    writer embedded in this process (no server)."""

    live: bool = True

    async def call(self, msg: GcStep) -> Any:
        raise NotImplementedError

    async def record(self, mode: str, started_ns: int, status: str, report: dict[str, Any]) -> str:
        raise NotImplementedError


class LiveBackend(Backend):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    async def call(self, msg: GcStep) -> Any:
        from seglake.ops.admin_client import admin_mutation

        return await admin_mutation(self.cfg, msg)

    async def record(self, mode: str, started_ns: int, status: str, report: dict[str, Any]) -> str:
        from seglake.ops.admin_client import AdminUnavailable, admin_mutation

        try:
            await admin_mutation(self.cfg, _run_row(mode, started_ns, status, report))
        except AdminUnavailable as exc:
            return f"not recorded in ops_runs: {exc}"
        return "recorded in ops_runs"


class EmbeddedBackend(Backend):
    """The writer embedded in this process (``seglake serve`` is not running)."""

    live = False

    def __init__(self, writer: EmbeddedWriter) -> None:
        self.writer = writer

    async def call(self, msg: GcStep) -> Any:
        return await self.writer.gc_step(msg)

    async def record(self, mode: str, started_ns: int, status: str, report: dict[str, Any]) -> str:
        await self.writer.apply(_run_row(mode, started_ns, status, report))
        return "recorded in ops_runs (offline)"


# ops_runs keeps a summary: ids beyond this many are counted, not listed, so
# the report stays valid JSON under the writer's report size cap.
MAX_IDS_RECORDED: Final = 1000


def _run_row(mode: str, started_ns: int, status: str, report: dict[str, Any]) -> RecordOpRun:
    summary = dict(report)
    plan = dict(summary.get("plan") or {})
    plan.pop("segments", None)
    plan["warnings"] = list(plan.get("warnings") or [])[:20]
    plan["notes"] = list(plan.get("notes") or [])[:20]
    summary["plan"] = plan
    ids = list(summary.get("deleted_segments") or [])
    summary["deleted_segments"] = ids[:MAX_IDS_RECORDED]
    summary["deleted_segment_count"] = len(ids)
    summary["skipped"] = dict(list((summary.get("skipped") or {}).items())[:100])
    summary["warnings"] = list(summary.get("warnings") or [])[:100]
    return RecordOpRun(
        mode=mode, started_ns=started_ns, finished_ns=time.time_ns(), status=status,
        report=json.dumps(summary, sort_keys=True, default=str),
    )  # fmt: skip


# ---- running -------------------------------------------------------------------------


Progress = Callable[[int, str], None]  # (bytes done, description)


@dataclass
class RunReport:
    deleted_segments: list[int] = field(default_factory=list)
    freed_bytes: int = 0
    moved_bytes: int = 0
    moved_chunks: int = 0
    versions_repointed: int = 0
    parts_repointed: int = 0
    purged_versions: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    paused_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_delete(
    backend: Backend, plan: GcPlan, limits: Limits, yes: bool, progress: Progress
) -> RunReport:
    report = RunReport()
    ids = [c.segment_id for c in plan.candidates]
    sizes = {c.segment_id: c.file_bytes for c in plan.candidates}
    sealed_before = time.time_ns() - int(limits.min_age_s * 1e9) if limits.min_age_s else 0
    for i in range(0, len(ids), DELETE_BATCH):
        batch = ids[i : i + DELETE_BATCH]
        r: GcDeleted = await backend.call(
            GcDeleteSegments(
                segments=batch,
                yes=yes,
                sealed_before_ns=sealed_before,
                retention_ms=limits.retention_ms,
            )
        )
        _merge_delete(report, r)
        progress(sum(sizes.get(s, 0) for s in batch), "deleting dead segments")
    await purge_deleted(backend, plan, yes, report, progress)
    return report


async def purge_deleted(
    backend: Backend, plan: GcPlan, yes: bool, report: RunReport, progress: Progress
) -> None:
    """Drop DELETED version rows (and their manifest files) in bounded steps."""
    if not plan.deleted_versions:
        return
    for _ in range(plan.deleted_versions // PURGE_BATCH + 3):
        r: GcDeleted = await backend.call(
            GcDeleteSegments(
                segments=[], yes=yes, purge_limit=PURGE_BATCH, retention_ms=plan.retention_ms
            )
        )
        _merge_delete(report, r)
        progress(0, f"purged {report.purged_versions} deleted version row(s)")
        if not r.purge_remaining or not r.purged_versions:
            return


def _merge_delete(report: RunReport, r: GcDeleted | GcRewritten) -> None:
    report.deleted_segments += r.deleted
    report.freed_bytes += r.freed_bytes
    if isinstance(r, GcDeleted):
        report.purged_versions += r.purged_versions
    report.skipped.update(r.skipped)


async def run_rewrite(
    backend: Backend,
    plan: GcPlan,
    yes: bool,
    progress: Progress,
    *,
    bytes_per_sec: int,
    pause_file: Path,
) -> RunReport:
    report = RunReport()
    started = time.monotonic()
    step = REWRITE_STEP_BYTES
    if bytes_per_sec:
        # A step of at most ~1/4 s of budget keeps the pace smooth.
        step = max(1, min(step, bytes_per_sec // 4))
    for use in plan.candidates:
        # Every step moves at least one chunk or ends the loop; the bound
        # only guards against a writer that keeps answering "not yet".
        for _attempt in range(use.live_chunks * 2 + 4):
            report.paused_s += await _wait_while_paused(pause_file, progress)
            r: GcRewritten = await backend.call(
                GcRewriteChunks(segment=use.segment_id, max_bytes=step, yes=yes)
            )
            moved = r.moved_bytes
            report.moved_bytes += moved
            report.moved_chunks += r.moved_chunks
            report.versions_repointed += r.versions_repointed
            report.parts_repointed += r.parts_repointed
            if r.remaining_chunks == 0:
                _merge_delete(report, r)
            progress(moved, f"rewriting segment {use.segment_id}")
            if bytes_per_sec:
                ahead = report.moved_bytes / bytes_per_sec - (
                    time.monotonic() - started - report.paused_s
                )
                if ahead > 0:
                    await trio.sleep(ahead)
            if r.deleted:
                progress(use.reclaim_bytes, f"deleted segment {use.segment_id}")
                break
            for d in r.damaged:
                report.warnings.append(f"segment {use.segment_id}: chunk not moved: {d}")
            if r.remaining_chunks == 0:
                reason = r.skipped.get(str(use.segment_id), "not deleted")
                report.warnings.append(f"segment {use.segment_id} kept: {reason}")
                break
            if r.moved_chunks == 0:
                break  # only unmovable (damaged) chunks are left
        else:
            report.warnings.append(f"segment {use.segment_id}: gave up after repeated steps")
    await purge_deleted(backend, plan, yes, report, progress)
    return report


async def _wait_while_paused(pause_file: Path, progress: Progress) -> float:
    """Wait while the operator's pause file exists; returns the seconds waited.

    Polled, not watched: the file is created and removed by hand or by a
    cron job, and a fraction of a second is fine for resuming.
    """
    path = trio.Path(pause_file)
    if not await path.exists():
        return 0.0
    t0 = time.monotonic()
    progress(0, f"paused: {pause_file} exists")
    while await path.exists():  # noqa: ASYNC110 - nothing to wait on but the file system
        await trio.sleep(PAUSE_POLL_S)
    return time.monotonic() - t0


# ---- commands ------------------------------------------------------------------------


def pause_file(cfg: Config) -> Path:
    return Path(cfg.gc_pause_file) if cfg.gc_pause_file else cfg.root / GC_PAUSE_FILE


def gc_plan_cmd(cfg: Config, *, rewrite: bool, as_json: bool) -> int:
    import apsw

    if not cfg.db_path.exists():
        print(f"seglake: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    try:
        limits = Limits.from_config(cfg)
        plan = make_plan(cfg, limits, rewrite=rewrite)
    except (ValueError, OSError, RuntimeError, apsw.Error) as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 2
    doc = plan.as_dict()
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        _render_plan(plan)
    return 0


def gc_run_cmd(
    cfg: Config, *, mode: str, rewrite: bool, force: bool, yes: bool, as_json: bool,
    show_plan: bool = False,
) -> int:  # fmt: skip
    from seglake.ops.gate import GateRefused, live_state, require_quiesced_or_yes

    started = time.time_ns()
    try:
        limits = Limits.from_config(cfg)
    except ValueError as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 2
    if not cfg.db_path.exists():
        print(f"seglake: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    try:
        require_quiesced_or_yes(cfg, yes, mode)
        live = live_state(cfg) is not None
    except GateRefused as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 1
    try:
        return trio.run(_run_async, cfg, live, mode, rewrite, force, yes, as_json, show_plan,
                        limits, started)  # fmt: skip
    except S3Error as exc:
        print(f"seglake: {mode} failed: {exc.text}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        # Offline: the data dir is held (DataDirBusy), or a file could not be read.
        print(f"seglake: {mode} failed: {exc}", file=sys.stderr)
        return 1


async def _run_async(
    cfg: Config, live: bool, mode: str, rewrite: bool, force: bool, yes: bool, as_json: bool,
    show_plan: bool, limits: Limits, started: int,
) -> int:  # fmt: skip
    if live:
        return await _run_with(LiveBackend(cfg), cfg, mode, rewrite, force, yes, as_json,
                               show_plan, limits, started)  # fmt: skip

    async def offline(writer: EmbeddedWriter) -> int:
        return await _run_with(EmbeddedBackend(writer), cfg, mode, rewrite, force, True, as_json,
                               show_plan, limits, started)  # fmt: skip

    return await run_embedded(cfg, mode, offline)


async def _run_with(
    backend: Backend, cfg: Config, mode: str, rewrite: bool, force: bool, yes: bool,
    as_json: bool, show_plan: bool, limits: Limits, started: int,
) -> int:  # fmt: skip
    from seglake.ops.admin_client import AdminUnavailable

    plan = await trio.to_thread.run_sync(lambda: make_plan(cfg, limits, rewrite=rewrite))
    before = sum(segment_files(cfg).values())
    doc: dict[str, Any] = {"mode": mode, "plan": plan.as_dict(), "server": backend.live}
    if show_plan and not as_json:
        _render_plan(plan)
    if plan.warnings and not force:
        doc["status"] = "refused"
        doc["reason"] = "the plan has warnings; re-run with --force (-gc-force) to proceed"
        doc["record_note"] = await backend.record(mode, started, "failed", doc)
        _finish(doc, as_json, plan)
        return 1
    total = plan.reclaim_bytes if not rewrite else plan.reclaim_bytes + plan.copy_bytes
    status = "ok"
    with _progress_bar(mode, total, enabled=not as_json and sys.stderr.isatty()) as progress:
        try:
            if rewrite:
                report = await run_rewrite(
                    backend, plan, yes, progress,
                    bytes_per_sec=cfg.gc_rewrite_bytes_per_sec, pause_file=pause_file(cfg),
                )  # fmt: skip
            else:
                report = await run_delete(backend, plan, limits, yes, progress)
        except (S3Error, AdminUnavailable) as exc:
            report = RunReport(warnings=[f"stopped: {exc}"])
            status = "failed"
    after = sum(segment_files(cfg).values())
    if status == "ok" and report.warnings:
        status = "errors"
    doc.update(report.as_dict())
    doc.update(status=status, segment_bytes_before=before, segment_bytes_after=after,
               reclaimed_on_disk=before - after)  # fmt: skip
    doc["record_note"] = await backend.record(mode, started, status, doc)
    _finish(doc, as_json, plan)
    return 0 if status == "ok" else 1


# ---- output --------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_bar(mode: str, total: int, *, enabled: bool) -> Any:
    if not enabled:
        yield lambda n, what: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(mode, total=max(total, 1))

        def advance(n: int, what: str) -> None:
            bar.update(task, advance=n, description=f"{mode}: {what}")

        yield advance


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


def _render_plan(plan: GcPlan) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if plan.candidates:
        table = Table("segment", "file", "live", "live %", "reclaim", title=f"{plan.mode} plan")
        for c in plan.candidates[:200]:
            table.add_row(
                segment_file_name(c.segment_id), _size(c.file_bytes), _size(c.live_bytes),
                f"{100 * c.live_fraction:.1f}", _size(c.reclaim_bytes),
            )  # fmt: skip
        console.print(table)
        if len(plan.candidates) > 200:
            console.print(f"... and {len(plan.candidates) - 200} more")
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    for n in plan.notes[:20]:
        console.print(f"note: {n}")
    extra = f", {_size(plan.copy_bytes)} to copy" if plan.mode == "gc-rewrite" else ""
    console.print(
        f"{plan.mode}: {len(plan.candidates)} segment(s), {_size(plan.reclaim_bytes)} "
        f"reclaimable{extra}; {plan.deleted_versions} deleted version row(s) to purge; "
        f"{plan.segments_sealed} sealed of {plan.segments_total} segment(s), "
        f"{_size(plan.segment_bytes)} on disk, {_size(plan.live_bytes)} live"
    )


def _finish(doc: dict[str, Any], as_json: bool, plan: GcPlan) -> None:
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
        return
    if doc.get("status") == "refused":
        _render_plan(plan)
        print(f"seglake: {doc['mode']} refused: {doc['reason']}; {doc['record_note']}",
              file=sys.stderr)  # fmt: skip
        return
    for w in doc.get("warnings") or []:
        print(f"warning: {w}")
    moved = ""
    if doc.get("moved_chunks"):
        moved = (
            f"; moved {doc['moved_chunks']} chunk(s), {_size(int(doc['moved_bytes']))}, "
            f"re-pointed {doc['versions_repointed']} version(s) and "
            f"{doc['parts_repointed']} part(s)"
        )
    print(
        f"{doc['mode']}: {doc['status']}; deleted {len(doc.get('deleted_segments') or [])} "
        f"segment(s), {_size(int(doc.get('reclaimed_on_disk') or 0))} reclaimed on disk "
        f"({_size(int(doc['segment_bytes_before']))} -> {_size(int(doc['segment_bytes_after']))})"
        f"{moved}; purged {doc.get('purged_versions', 0)} deleted version row(s); "
        f"{doc['record_note']}"
    )


# ---- command line ------------------------------------------------------------------------

GC_MODES: Final = ("gc-plan", "gc-run", "gc-rewrite-plan", "gc-rewrite-run", "gc-rewrite")


def add_gc_flags(p: Any) -> None:
    """GC's own flags (the limits are Config fields: ``--gc-min-age`` ...);
    a flag another mode already defined (``--force``) is shared."""
    import argparse

    def add(flag: str, **kw: Any) -> None:
        if flag not in p._option_string_actions:
            p.add_argument(flag, **kw)

    add("--force", action="store_true", help="confirm a destructive mode")
    add("--gc-force", action="store_true", help="gc-run/gc-rewrite: proceed despite warnings")
    # SPEC §8 spelling of --gc-max-bytes.
    add("--gc-max-reclaim-bytes", dest="gc_max_bytes", default=None, help=argparse.SUPPRESS)


def run_gc_mode(mode: str, args: Any, cfg: Config) -> int:
    as_json = bool(args.json)
    if mode in ("gc-plan", "gc-rewrite-plan"):
        return gc_plan_cmd(cfg, rewrite=mode == "gc-rewrite-plan", as_json=as_json)
    force = bool(getattr(args, "force", False) or getattr(args, "gc_force", False))
    yes = bool(getattr(args, "yes", False))
    return gc_run_cmd(
        cfg, mode=mode, rewrite=mode != "gc-run", force=force, yes=yes, as_json=as_json,
        show_plan=mode == "gc-rewrite",
    )  # fmt: skip
