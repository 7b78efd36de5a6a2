"""Applying oplog entries from other sites (``ReplApply``,
docs/design-replication.md §3): the last-writer-wins rule of
``seglake/protocol/lww.py`` against this store's rows, in the writer's batch."""

from __future__ import annotations

from typing import Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import ReplApplied, ReplApply
from seglake.writer.ops import BatchContext, Mutations


def apply_repl(conn: apsw.Connection, ctx: BatchContext, a: ReplApply) -> ReplApplied:
    # Being built on branch repl-apply; until it lands the writer refuses.
    raise S3Error("NotImplemented", message="replication apply is not built yet")


APPLY: Final[Mutations] = {ReplApply: apply_repl}
