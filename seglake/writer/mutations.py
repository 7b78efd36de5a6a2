"""Every metadata mutation the writer commits, by IPC name.

Each family of mutations lives in its own module with an ``APPLY`` table
(name → ``apply(conn, ctx, args)``, run inside the batch transaction under a
savepoint; see ``ops.py`` for the contract) and is merged here once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import apsw

from seglake.writer import (
    admin_ops,
    gc_ops,
    key_ops,
    maintenance_ops,
    multipart_ops,
    ops,
    versioning_ops,
)  # fmt: skip
from seglake.writer.ops import BatchContext

Apply = Callable[[apsw.Connection, BatchContext, dict[str, Any]], Any]


def _merge(*tables: Mapping[str, Apply]) -> dict[str, Apply]:
    merged: dict[str, Apply] = {}
    for table in tables:
        for name, fn in table.items():
            if name in merged:
                raise RuntimeError(f"mutation {name!r} defined twice")
            merged[name] = fn
    return merged


APPLY: Final[dict[str, Apply]] = _merge(
    ops.APPLY,
    versioning_ops.APPLY,
    multipart_ops.APPLY,
    maintenance_ops.APPLY,
    key_ops.APPLY,
    admin_ops.APPLY,
    gc_ops.APPLY,
)
