"""One lifecycle pass: plan (``plan.py``) and apply, in bounded, paced batches.

Quiesce protocol: lifecycle work is ordinary data mutation. Before every
batch the pass asks whether maintenance mode is on (``paused``) and stops if
it is; the writer's quiesce gate refuses the batch anyway if the mode was
switched on in between (``MaintenanceMode``), and the pass stops the same
way. A stopped or crashed pass leaves nothing to undo: every batch is one
writer transaction, and the next pass plans from the state it finds.

Throttle: at most ``actions_per_sec`` actions are sent per second (0 = as
fast as the writer takes them), each batch at most ``BATCH_ACTIONS``, so a
large backlog never holds the writer for long.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from seglake.errors import S3Error
from seglake.expiry.plan import lifecycle_buckets, plan_bucket
from seglake.ipc.messages import LifecycleAction, LifecycleApplied, LifecycleExpire

# Actions per writer call: one short transaction each (the writer's own bound
# is 500 per call).
BATCH_ACTIONS: Final = 100

Apply = Callable[[LifecycleExpire], Awaitable[LifecycleApplied]]
Paused = Callable[[], Awaitable[bool]]


@dataclass
class PassReport:
    now_ns: int
    day_seconds: float
    buckets: list[str] = field(default_factory=list)
    planned: int = 0
    applied: Counter[str] = field(default_factory=Counter)  # by action kind
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    errors: list[str] = field(default_factory=list)
    paused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "now_ns": self.now_ns,
            "day_seconds": self.day_seconds,
            "buckets": self.buckets,
            "planned": self.planned,
            "applied": dict(self.applied),
            "applied_total": sum(self.applied.values()),
            "skipped": dict(self.skipped),
            "errors": self.errors,
            "paused": self.paused,
        }

    @property
    def status(self) -> str:
        return "errors" if self.errors else "paused" if self.paused else "ok"


class _Pacer:
    def __init__(self, per_sec: int) -> None:
        self.per_sec = per_sec
        self.started = time.monotonic()
        self.sent = 0

    async def wait(self, n: int) -> None:
        self.sent += n
        if self.per_sec > 0:
            ahead = self.sent / self.per_sec - (time.monotonic() - self.started)
            if ahead > 0:
                await trio.sleep(ahead)


async def run_pass(
    db_path: Path,
    apply: Apply,
    paused: Paused,
    *,
    day_ns: int,
    actions_per_sec: int,
    only_bucket: str | None = None,
    now_ns: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PassReport:
    """Plan every bucket with a configuration (or ``only_bucket``) and apply
    the plan through ``apply``; never raises for a refused batch, it reports."""
    now = time.time_ns() if now_ns is None else now_ns
    report = PassReport(now_ns=now, day_seconds=day_ns / 1e9)
    pacer = _Pacer(actions_per_sec)
    rules = await trio.to_thread.run_sync(lifecycle_buckets, db_path, only_bucket)
    for bucket_rules in rules:
        report.buckets.append(bucket_rules.bucket)
        if bucket_rules.error:
            report.errors.append(f"{bucket_rules.bucket}: {bucket_rules.error}")
            continue
        steps = plan_bucket(db_path, bucket_rules, now, day_ns)
        while True:
            actions = await trio.to_thread.run_sync(next, steps, None)
            if actions is None:
                break
            report.planned += len(actions)
            for i in range(0, len(actions), BATCH_ACTIONS):
                if await paused():
                    report.paused = True
                    return report
                batch = actions[i : i + BATCH_ACTIONS]
                if not await _apply(apply, bucket_rules.bucket, batch, now, day_ns, report):
                    return report
                if on_batch is not None:
                    on_batch(len(batch))
                await pacer.wait(len(batch))
    return report


async def _apply(
    apply: Apply, bucket: str, batch: list[LifecycleAction], now_ns: int, day_ns: int,
    report: PassReport,
) -> bool:  # fmt: skip
    """One batch; False when the pass must stop (paused, or the writer failed)."""
    msg = LifecycleExpire(bucket=bucket, actions=batch, now_ns=now_ns, day_ns=day_ns)
    try:
        result = await apply(msg)
    except S3Error as exc:
        if exc.code == "MaintenanceMode":
            report.paused = True
        else:
            report.errors.append(f"{bucket}: {exc.code}: {exc.text}")
        return False
    for act, outcome in zip(batch, result.results, strict=False):
        if outcome == "applied":
            report.applied[act.action] += 1
        else:
            report.skipped[outcome.removeprefix("skipped: ")] += 1
    return True
