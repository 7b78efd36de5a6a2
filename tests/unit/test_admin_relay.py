"""The admin socket's relay list (seglake/ipc/admin.py) against the writer's tables."""

from __future__ import annotations

from seglake.ipc import admin
from seglake.writer import gc_ops, key_ops
from seglake.writer.mutations import APPLY


def test_every_relayed_name_is_served_by_the_writer() -> None:
    served = set(APPLY) | set(gc_ops.GC_REQUESTS) | {"mark_damaged"}
    assert served >= admin.RELAYED_MUTATIONS


def test_key_and_gc_names_match_the_writer() -> None:
    assert admin.KEY_ADMIN_MUTATIONS == key_ops.ADMIN_MUTATIONS
    assert admin.GC_RELAYED == gc_ops.GC_RELAYED
