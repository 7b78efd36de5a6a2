"""Schedules the maintenance process runs on its own: MPU-GC, scrub and
bucket lifecycle rules.

Quiesce protocol: neither is destructive in the quiesce sense. MPU-GC only
aborts uploads older than ``--mpu-ttl`` (the writer's ``mpu_gc_abort``,
which re-checks the age inside its transaction); scrub only reads and marks
damaged versions (``mark_damaged``). Both go through the writer like any
mutation. Destructive GC (gc-run, gc-rewrite) is never scheduled: it needs
an operator and the quiesce lock.

Lifecycle runs (``seglake/expiry/run.py``) expire versions and abort
uploads as the buckets' rules say, through the writer's ``lifecycle_expire``
(which re-checks every action in its transaction). They are data mutations:
a run does not start, and a running one stops at its next batch, while
maintenance mode is on; the next run plans again from the current state, so
a run stopped or killed half-way is simply finished by the next one. Every
run over buckets with rules is recorded in ``ops_runs`` (``seglake status``).

Oplog pruning (``oplog_prune_once``) deletes oplog rows below the floor
``seglake/meta/oplog_horizon.py`` picks (push remotes' acknowledged
cursors, ``--repl-oplog-retention``, ``--repl-oplog-max-bytes``) through the
writer's ``repl_prune_oplog`` in bounded batches; it changes no object data
and runs in maintenance mode too.

Scrub is throttled to ``--scrub-bytes-per-sec`` by pacing its reads, so a
scheduled scrub costs clients a bounded share of the disk. Both schedules
wait one full interval before their first run (a restart loop must not
turn into a scrub loop), and a failed run is logged and retried at the next
interval, never sooner.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import apsw
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.messages import (
    MaintenanceStatus,
    MarkDamaged,
    MpuGcAbort,
    MpuGcAborted,
    RecordOpRun,
    ReplPruned,
    ReplPruneOplog,
    Request,
)

log = logging.getLogger("seglake.maintenance")

# Rows per writer call, and calls per run: a run never holds the writer
# long, and a backlog larger than one run's share waits for the next.
PRUNE_BATCH = 2000
PRUNE_CALLS_PER_RUN = 500

WriterCall = Callable[[Request[Any]], Awaitable[Any]]


class ScrubStopped(Exception):
    """The maintenance process is stopping; the scrub thread gives up."""


class Throttle:
    """Paces a reader to at most ``rate`` bytes/s (0 = unthrottled)."""

    def __init__(self, rate: int, stop: threading.Event) -> None:
        self.rate = rate
        self.stop = stop
        self.started = time.monotonic()
        self.done = 0

    def __call__(self, nbytes: int) -> None:
        if self.stop.is_set():
            raise ScrubStopped
        self.done += nbytes
        if self.rate <= 0:
            return
        ahead = self.done / self.rate - (time.monotonic() - self.started)
        # Sleep in the stop event so shutdown is not delayed by the pacing.
        if ahead > 0 and self.stop.wait(ahead):
            raise ScrubStopped


class Scheduler:
    def __init__(self, cfg: Config, writer_call: WriterCall) -> None:
        self.cfg = cfg
        self.writer_call = writer_call
        self.last: dict[str, dict[str, Any]] = {}

    def describe(self) -> dict[str, Any]:
        """Intervals and the last outcome of each schedule, for ``status``."""
        return {
            "mpu_gc_interval": self.cfg.mpu_gc_interval,
            "mpu_ttl": self.cfg.mpu_ttl,
            "scrub_interval": self.cfg.scrub_interval,
            "scrub_bytes_per_sec": self.cfg.scrub_bytes_per_sec,
            "lifecycle_interval": self.cfg.lifecycle_interval,
            "lifecycle_day_seconds": self.cfg.lifecycle_day_seconds,
            "lifecycle_actions_per_sec": self.cfg.lifecycle_actions_per_sec,
            "oplog_prune_interval": self.cfg.repl_oplog_prune_interval,
            "oplog_retention": self.cfg.repl_oplog_retention,
            "oplog_max_bytes": self.cfg.repl_oplog_max_bytes,
            "last": self.last,
        }

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            if self.cfg.mpu_gc_interval > 0:
                nursery.start_soon(
                    self._every, "mpu-gc", self.cfg.mpu_gc_interval, self.mpu_gc_once
                )
            if self.cfg.scrub_interval > 0:
                nursery.start_soon(self._every, "scrub", self.cfg.scrub_interval, self.scrub_once)
            if self.cfg.lifecycle_interval > 0:
                nursery.start_soon(
                    self._every, "lifecycle", self.cfg.lifecycle_interval, self.lifecycle_once
                )
            if self.cfg.repl_oplog_prune_interval > 0:
                nursery.start_soon(
                    self._every, "oplog-prune", self.cfg.repl_oplog_prune_interval,
                    self.oplog_prune_once,
                )  # fmt: skip

    async def _every(
        self, name: str, interval: float, job: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        while True:
            await trio.sleep(interval)
            started = time.time()
            try:
                summary = await job()
            except (OSError, S3Error, RuntimeError, trio.TooSlowError) as exc:
                log.warning("scheduled %s failed: %s", name, exc)
                summary = {"error": str(exc)}
            self.last[name] = {"at": started, **summary}

    async def _record(self, mode: str, started_ns: int, status: str, doc: dict[str, Any]) -> None:
        await self.writer_call(
            RecordOpRun(
                mode=mode, started_ns=started_ns, finished_ns=time.time_ns(), status=status,
                report=json.dumps(doc, sort_keys=True),
            )
        )  # fmt: skip

    async def mpu_gc_once(self) -> dict[str, Any]:
        from seglake.meta.maintenance_reads import ABORT_BATCH, expired_uploads

        if not self.cfg.db_path.exists():
            return {"skipped": "no database"}
        started = time.time_ns()
        cutoff = started - int(self.cfg.mpu_ttl * 1e9)
        uploads = await trio.to_thread.run_sync(expired_uploads, self.cfg.db_path, cutoff)
        aborted: list[str] = []
        parts = 0
        ids = [str(u["upload_id"]) for u in uploads]
        for i in range(0, len(ids), ABORT_BATCH):
            result: MpuGcAborted = await self.writer_call(
                MpuGcAbort(upload_ids=ids[i : i + ABORT_BATCH], cutoff_ns=cutoff)
            )
            aborted.extend(result.aborted)
            parts += result.parts
        doc = {
            "scheduled": True,
            "ttl_seconds": self.cfg.mpu_ttl,
            "aborted": aborted,
            "parts": parts,
        }
        # An hourly check that found nothing is not worth a history row.
        if aborted:
            await self._record("mpu-gc-run", started, "ok", doc)
            log.info("scheduled mpu-gc aborted %d upload(s)", len(aborted))
        return {"aborted": len(aborted)}

    async def oplog_prune_once(self) -> dict[str, Any]:
        from seglake.meta.oplog_horizon import plan_prune

        cfg = self.cfg
        if not cfg.db_path.exists():
            return {"skipped": "no database"}
        push = cfg.repl_remotes if cfg.repl_push else ()
        try:
            below, before = await trio.to_thread.run_sync(
                lambda: plan_prune(
                    str(cfg.db_path), now_ms=time.time_ns() // 1_000_000,
                    retention_s=cfg.repl_oplog_retention, max_bytes=cfg.repl_oplog_max_bytes,
                    push_remotes=push,
                )
            )  # fmt: skip
        except apsw.Error as exc:  # busy or not migrated yet: the next run tries again
            return {"error": f"meta.db: {exc}"}
        pruned = 0
        floor = before.floor
        more = below > floor + 1
        for _ in range(PRUNE_CALLS_PER_RUN):
            if not more:
                break
            r: ReplPruned = await self.writer_call(ReplPruneOplog(below=below, limit=PRUNE_BATCH))
            pruned += r.pruned
            floor, more = r.floor, r.more
        if pruned:
            log.info("oplog pruned: %d row(s), floor now %d", pruned, floor)
        return {"pruned": pruned, "floor": floor, "target": below, "rows_before": before.rows}

    async def _quiesced(self) -> bool:
        state = await self.writer_call(MaintenanceStatus())
        return bool(state.get("state") != "off")

    async def lifecycle_once(self) -> dict[str, Any]:
        from seglake.expiry.run import run_pass

        if not self.cfg.db_path.exists():
            return {"skipped": "no database"}
        started = time.time_ns()
        report = await run_pass(
            self.cfg.db_path, self.writer_call, self._quiesced,
            day_ns=self.cfg.lifecycle_day_ns,
            actions_per_sec=self.cfg.lifecycle_actions_per_sec,
        )  # fmt: skip
        doc = {"scheduled": True, **report.as_dict()}
        if report.buckets:
            await self._record("lifecycle-run", started, report.status, doc)
        applied = sum(report.applied.values())
        if applied or report.errors:
            log.info(
                "scheduled lifecycle run: %d action(s) applied, %d error(s)%s",
                applied, len(report.errors), " (paused: maintenance mode)" if report.paused else "",
            )  # fmt: skip
        return {"applied": applied, "paused": report.paused, "errors": len(report.errors)}

    async def scrub_once(self) -> dict[str, Any]:
        from seglake.audit.scrub import run_scrub

        if not self.cfg.db_path.exists():
            return {"skipped": "no database"}
        started = time.time_ns()
        stop = threading.Event()
        throttle = Throttle(self.cfg.scrub_bytes_per_sec, stop)
        try:
            report = await trio.to_thread.run_sync(
                run_scrub, self.cfg, throttle, abandon_on_cancel=True
            )
        except ScrubStopped:
            return {"stopped": True}
        finally:
            # On cancellation the thread sees this at its next chunk and ends.
            stop.set()
        for uid in report.damaged_uids:
            await self.writer_call(MarkDamaged(uid=uid))
        doc = {"scheduled": True, **report.as_dict(), "marked": report.damaged_uids}
        status = "ok" if not report.damaged else "errors"
        await self._record("scrub", started, status, doc)
        if report.damaged:
            log.warning("scheduled scrub: %d damaged version(s) marked", len(report.damaged_uids))
        return {"damaged": len(report.damaged_uids), "bytes": report.bytes}
