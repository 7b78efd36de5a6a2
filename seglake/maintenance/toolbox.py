"""How the operator's toolbox reaches the writer, live or offline.

Quiesce protocol (see ``gate.py`` and ``seglake/maintenance/main.py``):
- With a live server, every change is a writer mutation relayed by the
  admin socket (``TOOLBOX_MUTATIONS``): the writer owns the only SQLite
  write connection, applies it in a batch like any PUT, and its quiesce gate
  decides (bucket changes are refused while quiesced; MPU-GC and reindex are
  maintenance work and pass).
- With no server, the command takes the data-dir and writer locks
  (``gate.offline_lock``) and applies the *same* mutation function to
  ``meta.db`` itself, in one transaction with the metadata records written
  before COMMIT, exactly as the writer's committer would.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from seglake.config import Config

# Writer mutations the admin socket relays for the toolbox CLI modes.
TOOLBOX_MUTATIONS: Final = frozenset(
    {"create_bucket", "delete_bucket", "mpu_gc_abort", "db_reindex"}
)


class NoDatabase(RuntimeError):
    pass


def offline_apply(cfg: Config, mutation: str, args: dict[str, Any]) -> Any:
    """Apply one writer mutation to ``meta.db`` with no server running.

    The caller holds ``offline_lock``. Mutations that would write manifests
    are refused: no toolbox mutation creates object versions.
    """
    import apsw

    from seglake.errors import S3Error
    from seglake.format.manifest import manifest_path
    from seglake.meta.schema import get_setting, open_write, set_setting
    from seglake.writer.mutations import APPLY
    from seglake.writer.ops import BatchContext, VersionClock
    from seglake.writer.record_journal import RecordJournal
    from seglake.writer.segments import WriterFatal

    if not cfg.db_path.exists():
        raise NoDatabase(f"no database at {cfg.db_path}")
    conn = open_write(str(cfg.db_path))
    try:
        journal = RecordJournal(cfg.manifests_dir.parent)
        journal.install(conn)
        journal.backfill(conn)
        ctx = BatchContext(VersionClock(int(get_setting(conn, "clock_ns") or 0)))
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = APPLY[mutation](conn, ctx, args)
            if ctx.manifests:
                raise S3Error("InternalError", message=f"{mutation} cannot run offline")
            set_setting(conn, "clock_ns", ctx.clock.last_ns)
            journal.flush(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        journal.committed()
        for uid in ctx.unlink_after_commit:
            manifest_path(cfg.manifests_dir, uid).unlink(missing_ok=True)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except (apsw.Error, OSError, WriterFatal) as exc:
        raise S3Error("InternalError", message=f"{cfg.db_path}: {exc}") from None
    finally:
        conn.close()
    return result


def writer_apply(cfg: Config, mode: str, mutation: str, args: dict[str, Any]) -> tuple[Any, str]:
    """Run ``mutation`` through the live writer, or offline under the lock.

    Returns ``(result, "server" | "offline")``. Raises ``AdminRefused`` (the
    server refused, e.g. maintenance mode), ``GateRefused`` (the data dir is
    locked by a server that does not answer), ``S3Error`` (offline refusal)
    or ``NoDatabase``.
    """
    import trio

    from seglake.maintenance.admin_client import AdminRefused, AdminUnavailable, admin_call
    from seglake.maintenance.gate import offline_lock

    try:
        result = trio.run(admin_call, cfg, "writer_mutation", {"mutation": mutation, "args": args})
        return result, "server"
    except AdminRefused:
        raise
    except AdminUnavailable:
        pass
    with offline_lock(cfg, mode):
        return offline_apply(cfg, mutation, args), "offline"


def record(
    cfg: Config, mode: str, started_ns: int, status: str, report: dict[str, Any]
) -> tuple[bool, str]:
    """Record a finished run in ``ops_runs``: through the writer when a server
    is live (``commands.record_run``), else directly under the offline lock."""
    from seglake.errors import S3Error
    from seglake.maintenance.commands import record_run
    from seglake.maintenance.gate import GateRefused, live_state, offline_lock

    try:
        if live_state(cfg) is not None:
            return record_run(cfg, mode, started_ns, status, report)
    except GateRefused as exc:
        return False, f"not recorded in ops_runs: {exc}"
    args = {
        "mode": mode, "started_ns": started_ns, "finished_ns": time.time_ns(),
        "status": status, "report": json.dumps(report, sort_keys=True, default=str),
    }  # fmt: skip
    try:
        with offline_lock(cfg, mode):
            offline_apply(cfg, "record_op_run", args)
    except (GateRefused, NoDatabase, S3Error, OSError) as exc:
        return False, f"not recorded in ops_runs: {exc}"
    return True, "recorded in ops_runs (offline)"
