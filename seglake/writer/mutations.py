"""Every metadata mutation the writer commits, by request type.

Each family of mutations lives in its own module with an ``APPLY`` table
(request type → ``apply(conn, ctx, msg)``, run inside the batch transaction
under a savepoint; see ``ops.py`` for the contract) and is merged here once.
Each ``apply`` takes its own request type (``seglake/ipc/messages.py``).
"""

from __future__ import annotations

from typing import Any, Final

from seglake.ipc.messages import Request
from seglake.writer import (
    admin_ops,
    cors_ops,
    gc_ops,
    key_ops,
    lifecycle_ops,
    maintenance_ops,
    multipart_ops,
    oplog_prune,
    ops,
    repl_cursor_ops,
    repl_ops,
    sse_ops,
    versioning_ops,
    vmeta_ops,
)  # fmt: skip
from seglake.writer.ops import Apply, Mutations


def _merge(*tables: Mutations) -> dict[type[Request[Any]], Apply]:
    merged: dict[type[Request[Any]], Apply] = {}
    for table in tables:
        for kind, fn in table.items():
            if kind in merged:
                raise RuntimeError(f"mutation {kind.name!r} defined twice")
            merged[kind] = fn
    return merged


APPLY: Final[dict[type[Request[Any]], Apply]] = _merge(
    ops.APPLY,
    versioning_ops.APPLY,
    multipart_ops.APPLY,
    maintenance_ops.APPLY,
    key_ops.APPLY,
    admin_ops.APPLY,
    gc_ops.APPLY,
    lifecycle_ops.APPLY,
    cors_ops.APPLY,
    sse_ops.APPLY,
    vmeta_ops.APPLY,
    repl_ops.APPLY,
    repl_cursor_ops.APPLY,
    oplog_prune.APPLY,
)
# The wire names of the mutations (the quiesce gate decides by name).
MUTATION_NAMES: Final = frozenset(kind.name for kind in APPLY)
