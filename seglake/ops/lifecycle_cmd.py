"""``seglake lifecycle-plan BUCKET`` and ``seglake lifecycle-run [BUCKET]``.

Quiesce protocol: lifecycle work is ordinary data mutation, not a
destructive operator mode. ``lifecycle-plan`` only reads ``meta.db``.
``lifecycle-run`` makes one pass now, the same pass the maintenance process
schedules (``seglake/expiry/run.py``): against a live server its batches are
relayed by the admin socket to the writer (which refuses them while
maintenance mode is on: the pass stops, "paused"); with no server they run in
the writer embedded in this process, under the data-dir lock, and a store
left in maintenance mode is not touched either. Every action is re-checked
by the writer, so a run beside the scheduled one never does anything twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.expiry.plan import action_doc, lifecycle_buckets, plan_bucket
from seglake.expiry.run import PassReport, run_pass
from seglake.ipc.messages import LifecycleApplied, LifecycleExpire
from seglake.meta.maintenance_state import OFF, read_state
from seglake.meta.schema import open_read


def _err(msg: str) -> None:
    print(f"seglake: {msg}", file=sys.stderr)


def day_ns(cfg: Config) -> int:
    """The length of a lifecycle day: the live server's (its
    ``--lifecycle-day-seconds``, so a plan or run from the CLI sees the rules
    as the server's schedule does), else this command's own setting."""
    from seglake.ops.admin_client import AdminUnavailable, admin_call

    try:
        status = trio.run(admin_call, cfg, "status", {})
        seconds = float(status["schedules"]["lifecycle_day_seconds"])
    except (AdminUnavailable, KeyError, TypeError, ValueError):
        return cfg.lifecycle_day_ns
    return int(seconds * 1_000_000_000)


def plan_doc(cfg: Config, bucket: str) -> dict[str, Any]:
    """What the next run would do to ``bucket`` now."""
    day = day_ns(cfg)
    now = time.time_ns()
    rules = lifecycle_buckets(cfg.db_path, bucket)
    actions: list[dict[str, str]] = []
    for r in rules:
        for step in plan_bucket(cfg.db_path, r, now, day):
            actions.extend(action_doc(r.bucket, a) for a in step)
    return {
        "bucket": bucket,
        "configured": bool(rules),
        "now_ns": now,
        "day_seconds": day / 1e9,
        "actions": actions,
        "counts": dict(Counter(a["action"] for a in actions)),
        "errors": [r.error for r in rules if r.error],
    }


def lifecycle_plan_cmd(cfg: Config, bucket: str | None, *, as_json: bool) -> int:
    if not bucket:
        _err("lifecycle-plan needs a bucket: seglake lifecycle-plan BUCKET")
        return 2
    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path}")
        return 2
    doc = plan_doc(cfg, bucket)
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    if not doc["configured"]:
        print(f"lifecycle-plan: bucket {bucket!r} has no lifecycle configuration")
        return 0
    from rich.console import Console
    from rich.table import Table

    if doc["actions"]:
        table = Table(
            "key", "action", "version / upload", "rule", title=f"lifecycle plan: {bucket}"
        )
        for a in doc["actions"]:
            table.add_row(
                a["key"], a["action"], a.get("version_id") or a.get("upload_id"), a["rule_id"]
            )
        Console().print(table)
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(doc["counts"].items())) or "nothing"
    print(f"lifecycle-plan: the next run would do {counts} in {bucket}")
    return 0


async def _live_pass(cfg: Config, bucket: str | None, day: int) -> PassReport:
    from seglake.ops.admin_client import admin_call, admin_mutation

    async def apply(msg: LifecycleExpire) -> LifecycleApplied:
        from seglake.ops.admin_client import AdminRefused

        try:
            return await admin_mutation(cfg, msg)
        except AdminRefused as exc:
            raise exc.error from None

    async def paused() -> bool:
        doc = await admin_call(cfg, "maintenance", {"action": "status"})
        return not isinstance(doc, dict) or doc.get("state") != OFF

    return await run_pass(
        cfg.db_path, apply, paused, day_ns=day,
        actions_per_sec=cfg.lifecycle_actions_per_sec, only_bucket=bucket,
    )  # fmt: skip


def _offline_pass(cfg: Config, bucket: str | None) -> PassReport:
    from seglake.writer.embedded import EmbeddedWriter, run_embedded

    def stored_state() -> str:
        conn = open_read(str(cfg.db_path))
        try:
            return str(read_state(conn).get("state", OFF))
        finally:
            conn.close()

    async def work(writer: EmbeddedWriter) -> PassReport:
        async def paused() -> bool:
            return stored_state() != OFF

        return await run_pass(
            cfg.db_path, writer.apply, paused, day_ns=cfg.lifecycle_day_ns,
            actions_per_sec=cfg.lifecycle_actions_per_sec, only_bucket=bucket,
        )  # fmt: skip

    return trio.run(run_embedded, cfg, "lifecycle-run", work)


def lifecycle_run_cmd(cfg: Config, bucket: str | None, *, as_json: bool) -> int:
    from seglake.ops.gate import GateRefused, live_state
    from seglake.ops.toolbox import record

    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path}")
        return 2
    started = time.time_ns()
    try:
        live = live_state(cfg) is not None
        if live:
            report = trio.run(_live_pass, cfg, bucket, day_ns(cfg))
        else:
            report = _offline_pass(cfg, bucket)
    except (GateRefused, S3Error, OSError) as exc:
        _err(f"lifecycle-run: {exc}")
        return 1
    doc = {"via": "server" if live else "offline", **report.as_dict()}
    recorded, note = record(cfg, "lifecycle-run", started, report.status, doc)
    doc["recorded"], doc["record_note"] = recorded, note
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        applied = ", ".join(f"{n} {k}" for k, n in sorted(report.applied.items())) or "nothing"
        print(
            f"lifecycle-run: {applied} applied over {len(report.buckets)} bucket(s); "
            f"{sum(report.skipped.values())} skipped"
            + (" ; PAUSED (maintenance mode)" if report.paused else "")
            + (f"; errors: {report.errors}" if report.errors else "")
            + f"; {note}"
        )
    return 1 if report.errors else 0
