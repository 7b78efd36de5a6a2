"""The admin socket's relay sets (seglake/ipc/admin.py) against the writer's
dispatch table."""

from __future__ import annotations

from unittest import mock

from seglake.ipc import admin
from seglake.ipc.messages import REQUESTS, GcDropSegments, GcRepoint
from seglake.writer import key_ops
from seglake.writer.gc_ops import SegmentGC
from seglake.writer.main import Writer


def _served() -> set[str]:
    """The names the writer's dispatch table serves (built without a data dir)."""
    fake = mock.Mock(spec=Writer, gc=mock.Mock(spec=SegmentGC))
    return {t.name for t in Writer._handler_table(fake)}


def test_every_relayed_name_is_a_request_the_writer_serves() -> None:
    assert set(REQUESTS) >= admin.RELAYED_MUTATIONS
    assert _served() >= admin.RELAYED_MUTATIONS


def test_key_mutations_are_relayed_and_gc_internals_are_not() -> None:
    assert admin.KEY_ADMIN_MUTATIONS == key_ops.ADMIN_MUTATIONS
    assert {"gc_delete_segments", "gc_rewrite_chunks"} == admin.GC_RELAYED
    assert not {GcDropSegments.name, GcRepoint.name} & admin.RELAYED_MUTATIONS
