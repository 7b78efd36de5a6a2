"""Mutations that maintenance sends to the writer (not S3 data mutations).

Like every other mutation they are applied inside the committer's batch
transaction (see ``ops.py`` for the contract), so they are as durable as a
PUT. None of them stores or changes object data, which is why the quiesce
gate lets them through while maintenance mode is on (``INTERNAL``).
"""

from __future__ import annotations

from typing import Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import Done, RecordOpRun, RunRecorded, SetMaintenance
from seglake.meta.maintenance_state import MAINTENANCE_SETTING
from seglake.meta.schema import set_setting
from seglake.writer import admin_ops, oplog_prune, repl_cursor_ops
from seglake.writer.key_ops import KEY_MUTATIONS
from seglake.writer.ops import BatchContext, Mutations

# "paused": a lifecycle run that stopped for maintenance mode (the next one resumes).
OP_RUN_STATUSES: Final = ("ok", "errors", "failed", "paused")
# A report is a summary, not a dump: bounded so one run cannot bloat meta.db.
MAX_REPORT_BYTES: Final = 256 * 1024


def apply_record_op_run(conn: apsw.Connection, ctx: BatchContext, a: RecordOpRun) -> RunRecorded:
    """One finished maintenance run (fsck, scrub, ...) into ``ops_runs``."""
    mode, status, report = a.mode, a.status, a.report
    if not mode or status not in OP_RUN_STATUSES:
        raise S3Error("InvalidArgument", message="record_op_run needs mode and a known status")
    if len(report.encode()) > MAX_REPORT_BYTES:
        report = report.encode()[:MAX_REPORT_BYTES].decode(errors="ignore")
    conn.execute(
        "INSERT INTO ops_runs(mode, started_ns, finished_ns, status, report) VALUES (?, ?, ?, ?, ?)",
        (mode, a.started_ns, a.finished_ns, status, report),
    )
    return RunRecorded(id=conn.last_insert_rowid())


def apply_set_maintenance(conn: apsw.Connection, ctx: BatchContext, a: SetMaintenance) -> Done:
    """Persist the quiesce state (a JSON document built by ``quiesce.py``)."""
    set_setting(conn, MAINTENANCE_SETTING, a.doc)
    return Done()


APPLY: Final[Mutations] = {
    RecordOpRun: apply_record_op_run,
    SetMaintenance: apply_set_maintenance,
}

# Mutations the quiesce gate never refuses: they change no object data
# (replication's cursor/status bookkeeping included).
INTERNAL: Final = frozenset(
    {"mark_damaged", *(t.name for t in APPLY), *KEY_MUTATIONS, *admin_ops.INTERNAL,
     *(t.name for t in repl_cursor_ops.APPLY), *(t.name for t in oplog_prune.APPLY)}
)  # fmt: skip
