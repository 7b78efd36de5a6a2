"""Mutations that maintenance sends to the writer (not S3 data mutations).

Like every other mutation they are applied inside the committer's batch
transaction (see ``ops.py`` for the contract), so they are as durable as a
PUT. None of them stores or changes object data, which is why the quiesce
gate lets them through while maintenance mode is on (``INTERNAL``).
"""

from __future__ import annotations

import json
from typing import Any, Final

import apsw

from seglake.errors import S3Error
from seglake.meta.maintenance_state import MAINTENANCE_SETTING
from seglake.meta.schema import set_setting
from seglake.writer import admin_ops
from seglake.writer.key_ops import KEY_MUTATIONS
from seglake.writer.ops import BatchContext

OP_RUN_STATUSES: Final = ("ok", "errors", "failed")
# A report is a summary, not a dump: bounded so one run cannot bloat meta.db.
MAX_REPORT_BYTES: Final = 256 * 1024


def apply_record_op_run(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    """One finished maintenance run (fsck, scrub, ...) into ``ops_runs``."""
    mode, status, report = a.get("mode"), a.get("status"), a.get("report", "")
    if not isinstance(mode, str) or not mode or status not in OP_RUN_STATUSES:
        raise S3Error("InvalidArgument", message="record_op_run needs mode and a known status")
    if not isinstance(report, str):
        report = json.dumps(report, sort_keys=True)
    if len(report.encode()) > MAX_REPORT_BYTES:
        report = report.encode()[:MAX_REPORT_BYTES].decode(errors="ignore")
    conn.execute(
        "INSERT INTO ops_runs(mode, started_ns, finished_ns, status, report) VALUES (?, ?, ?, ?, ?)",
        (mode, int(a.get("started_ns", 0)), int(a.get("finished_ns", 0)), status, report),
    )
    return {"id": conn.last_insert_rowid()}


def apply_set_maintenance(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    """Persist the quiesce state (a JSON document built by ``quiesce.py``)."""
    doc = a.get("doc")
    if not isinstance(doc, str):
        raise S3Error("InternalError", message="set_maintenance needs a JSON document")
    set_setting(conn, MAINTENANCE_SETTING, doc)
    return {}


APPLY: Final = {
    "record_op_run": apply_record_op_run,
    "set_maintenance": apply_set_maintenance,
}

# Mutations the quiesce gate never refuses: they change no object data.
INTERNAL: Final = frozenset({"mark_damaged", *APPLY, *KEY_MUTATIONS, *admin_ops.INTERNAL})
