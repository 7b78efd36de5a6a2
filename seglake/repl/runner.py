"""How a replication task runs: steps, waits, retries and what it reports
(docs/design-replication.md §6; the policy itself is ``backoff.py``).

A task repeats one *step* (a pull page, a push page): at once while the
step says more is waiting, else after ``interval`` in watch mode, or it
ends (one-shot). A failed step is classified: a permanent failure stops the
task (``ReplStopped``; in watch mode the task ends with its status showing
the error), a retryable one is retried after a full-jitter backoff — a
one-shot run gives up after its retry timeout. While maintenance is
quiesced a task waits without stepping.

``TaskStatus`` is what ``seglake status`` and the stats show per remote and
direction.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import apsw
import trio

from seglake.errors import S3Error
from seglake.ipc.channel import ChannelBroken, ChannelClosed
from seglake.protocol.repl_wire import WireError
from seglake.repl.backoff import Backoff, is_permanent
from seglake.repl.pull import StepReport

log = logging.getLogger("seglake.repl")

# What a task stopped by 410 OplogTruncated tells the operator to do.
BOOTSTRAP_HINT: Final = (
    "bootstrap: the remote pruned its oplog past our cursor; stop this server and run "
    "`seglake -mode repl-bootstrap -repl-remote {remote} -repl-bootstrap-force` "
    "(docs/replication.md), then start it again"
)
# How often a paused task looks again whether maintenance mode is off.
PAUSE_POLL_S: Final = 1.0


@dataclass(frozen=True)
class Failure:
    status: int  # HTTP status; 0 = no answer (connection, timeout)
    code: str
    message: str

    @property
    def permanent(self) -> bool:
        return is_permanent(self.status, self.code)

    def __str__(self) -> str:
        head = f"{self.status} {self.code}" if self.status else self.code
        return f"{head}: {self.message}"


class ReplStopped(Exception):
    """A task stopped on a failure retrying cannot fix, or gave up."""

    def __init__(self, failure: Failure, *, gave_up: bool = False) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.gave_up = gave_up


def classify(exc: BaseException) -> Failure | None:
    """The failure ``exc`` stands for; None for an exception that is not a
    replication failure (a bug: it propagates)."""
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    if isinstance(code, str) and isinstance(status, int):
        # ReplHTTPError (an answer from the remote) or S3Error (a refusal by
        # our writer); a retryable flag from the client wins over the table.
        message = str(getattr(exc, "message", None) or exc)
        if getattr(exc, "retryable", False) and is_permanent(status, code):
            return Failure(503 if status < 500 else status, code, message)
        return Failure(status, code, message)
    if isinstance(exc, WireError):
        return Failure(400, "ReplicationBadBatch", str(exc))
    if isinstance(exc, trio.TooSlowError):
        return Failure(0, "Timeout", "no answer in time")
    if isinstance(exc, OSError | ChannelBroken | ChannelClosed | ConnectionError):
        return Failure(0, "ConnectionError", str(exc) or type(exc).__name__)
    if isinstance(exc, apsw.Error | RuntimeError):
        # meta.db could not be read (busy, not created or migrated yet):
        # local and passing, like a writer restart.
        return Failure(0, "LocalError", str(exc) or type(exc).__name__)
    return None


def physical_seconds(hlc: int) -> float:
    """Wall-clock seconds of an HLC value (its physical milliseconds)."""
    return (hlc >> 16) / 1000.0


@dataclass
class TaskStatus:
    remote: str
    direction: str  # "pull" | "push"
    state: str = "starting"  # running | idle | backoff | paused | stopped | done | failed
    steps: int = 0
    entries: int = 0
    applied: int = 0
    skipped: int = 0
    conflicts: int = 0
    chunks: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_hlc: int = 0
    epoch: str = ""
    cursor: int = 0
    head: int = 0
    head_hlc: int = 0
    backlog_bytes: int = 0
    remote_site: str = ""
    last_ok: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def backlog(self) -> int:
        return max(0, self.head - self.cursor)

    def lag_seconds(self, now: float) -> float | None:
        """0 when caught up; else how far behind the newest stamp this task
        moved is (None: nothing moved yet)."""
        if self.backlog == 0:
            return 0.0
        if not self.last_hlc:
            return None
        return max(0.0, now - physical_seconds(self.last_hlc))

    def record(self, r: StepReport, now: float) -> None:
        self.steps += 1
        self.entries += r.entries
        self.applied += r.applied
        self.skipped += r.skipped
        self.conflicts += r.conflicts
        self.chunks += r.chunks
        self.bytes_in += r.bytes_in
        self.bytes_out += r.bytes_out
        self.last_hlc = max(self.last_hlc, r.last_hlc)
        self.epoch, self.cursor, self.head, self.head_hlc = r.epoch, r.cursor, r.head, r.head_hlc
        self.backlog_bytes = r.backlog_bytes
        self.remote_site = r.remote_site or self.remote_site
        self.last_ok = now
        self.failures = 0

    def fail(self, f: Failure, now: float) -> None:
        self.failures += 1
        self.last_error = str(f)
        self.last_error_at = now

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "remote": self.remote, "direction": self.direction, "state": self.state,
            "steps": self.steps, "entries": self.entries, "applied": self.applied,
            "skipped": self.skipped, "conflicts": self.conflicts, "chunks": self.chunks,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "last_hlc": self.last_hlc, "epoch": self.epoch, "cursor": self.cursor,
            "head": self.head, "backlog_entries": self.backlog,
            "backlog_bytes": self.backlog_bytes if self.backlog else 0,
            "lag_seconds": self.lag_seconds(now), "remote_site": self.remote_site,
            "last_ok": self.last_ok, "last_error": self.last_error,
            "last_error_at": self.last_error_at, "failures": self.failures, **self.extra,
        }  # fmt: skip


Step = Callable[[], Awaitable[StepReport]]
Note = Callable[[StepReport | None, str | None], Awaitable[None]]


async def run_task(
    step: Step,
    status: TaskStatus,
    policy: Backoff,
    *,
    watch: bool,
    paused: Callable[[], Awaitable[bool]] | None = None,
    note: Note | None = None,
    on_failure: Callable[[Failure], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    draw: Callable[[], float] = random.random,
) -> None:
    """Run ``step`` as the module docstring says. ``note(report, error)``
    persists a step's outcome (``error`` "" clears a recorded one);
    ``on_failure`` may repair state before the retry (push: rewind on a
    gap)."""
    while True:
        if paused is not None and await _is_paused(paused):
            status.state = "paused"
            await trio.sleep(PAUSE_POLL_S)
            continue
        status.state = "running"
        try:
            report = await step()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            status.fail(failure, wall())
            log.warning("replication %s %s: %s", status.direction, status.remote, failure)
            await _note(note, None, str(failure))
            if failure.permanent:
                status.state = "stopped"
                if failure.code == "OplogTruncated":
                    # Only a snapshot brings this site back in step: say how.
                    status.extra["action"] = BOOTSTRAP_HINT.format(remote=status.remote)
                raise ReplStopped(failure) from None
            if on_failure is not None:
                try:
                    await on_failure(failure)
                except (S3Error, OSError, ChannelBroken, ChannelClosed, trio.TooSlowError) as exc:
                    log.warning("replication %s %s: repair failed: %s", status.direction,
                                status.remote, exc)  # fmt: skip
            delay = policy.failed(clock(), draw())
            if not watch and policy.gave_up(clock()):
                status.state = "failed"
                raise ReplStopped(failure, gave_up=True) from None
            status.state = "backoff"
            await trio.sleep(delay)
            continue
        had_error = status.last_error is not None
        status.record(report, wall())
        status.last_error = None
        if report.bytes_in or had_error:
            await _note(note, report, "" if had_error else None)
        if report.more:
            policy.succeeded()
            continue
        if not watch:
            status.state = "done"
            return
        status.state = "idle"
        await trio.sleep(policy.succeeded())


async def _is_paused(paused: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await paused()
    except (S3Error, OSError, ChannelBroken, ChannelClosed, trio.TooSlowError):
        # The writer is restarting: the step itself will find out and back off.
        return False


async def _note(note: Note | None, report: StepReport | None, error: str | None) -> None:
    if note is None:
        return
    try:
        await note(report, error)
    except (S3Error, OSError, ChannelBroken, ChannelClosed, trio.TooSlowError) as exc:
        log.warning("could not record replication status: %s", exc)
