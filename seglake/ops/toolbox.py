"""How the operator's toolbox reaches the writer, live or offline.

Quiesce protocol (see ``gate.py`` and ``seglake/maintenance/main.py``):
- With a live server, every change is a writer mutation relayed by the
  admin socket (``seglake/ipc/admin.py``): the writer owns the only SQLite
  write connection, applies it in a batch like any PUT, and its quiesce gate
  decides (bucket changes are refused while quiesced; MPU-GC and reindex are
  maintenance work and pass).
- With no server, the command runs the *same* mutation in the writer
  embedded in this process (``seglake/writer/embedded.py``), under the
  data-dir and writer locks, committed exactly as the live writer would.
"""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

from seglake.config import Config
from seglake.ipc.messages import RecordOpRun, Request

R = TypeVar("R")


class NoDatabase(RuntimeError):
    pass


def offline_apply(cfg: Config, mode: str, msg: Request[R]) -> R:
    """Apply one writer mutation to an existing store with no server running.

    Raises ``NoDatabase`` when the data dir has no ``meta.db`` (a toolbox
    command never creates a store), ``GateRefused`` when a server or writer
    holds the data dir, ``S3Error`` when the writer refuses.
    """
    from seglake.writer.embedded import apply_offline

    if not cfg.db_path.exists():
        raise NoDatabase(f"no database at {cfg.db_path}")
    return apply_offline(cfg, mode, msg)


def writer_apply(cfg: Config, mode: str, msg: Request[R]) -> tuple[R, str]:
    """Run ``msg`` through the live writer, or offline under the lock.

    Returns ``(result, "server" | "offline")``. Raises ``AdminRefused`` (the
    server refused, e.g. maintenance mode), ``GateRefused`` (the data dir is
    locked by a server that does not answer), ``S3Error`` (offline refusal)
    or ``NoDatabase``.
    """
    import trio

    from seglake.ops.admin_client import AdminRefused, AdminUnavailable, admin_mutation

    try:
        return trio.run(admin_mutation, cfg, msg), "server"
    except AdminRefused:
        raise
    except AdminUnavailable:
        pass
    return offline_apply(cfg, mode, msg), "offline"


def record(
    cfg: Config, mode: str, started_ns: int, status: str, report: dict[str, Any]
) -> tuple[bool, str]:
    """Record a finished run in ``ops_runs``: through the writer when a server
    is live (``commands.record_run``), else in the embedded writer."""
    from seglake.errors import S3Error
    from seglake.ops.commands import record_run
    from seglake.ops.gate import GateRefused, live_state

    try:
        if live_state(cfg) is not None:
            return record_run(cfg, mode, started_ns, status, report)
    except GateRefused as exc:
        return False, f"not recorded in ops_runs: {exc}"
    run = RecordOpRun(
        mode=mode, started_ns=started_ns, finished_ns=time.time_ns(), status=status,
        report=json.dumps(report, sort_keys=True, default=str),
    )  # fmt: skip
    try:
        offline_apply(cfg, mode, run)
    except (GateRefused, NoDatabase, S3Error, OSError) as exc:
        return False, f"not recorded in ops_runs: {exc}"
    return True, "recorded in ops_runs (offline)"
