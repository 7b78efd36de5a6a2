"""Replication bookkeeping through a real embedded writer
(seglake/writer/repl_cursor_ops.py): the push cursor moves only forward
within an epoch unless rewound; errors and byte counters are recorded; an
appended chunk lands in a segment (EmbeddedWriter.append)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import trio

from seglake.config import Config
from seglake.format import layout
from seglake.format.segment import digest, read_record
from seglake.ipc.messages import Appended, ReplNoteRemote, ReplSetPushCursor
from seglake.meta.repl_remote_reads import remote_row, remote_rows
from seglake.writer.embedded import EmbeddedWriter, run_embedded
from tests.unit._embedded import apply_all as _run

R = "http://127.0.0.1:9"


def _row(cfg: Config) -> Any:
    conn = apsw.Connection(str(cfg.db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return remote_row(conn, R), remote_rows(conn)
    finally:
        conn.close()


def test_push_cursor_moves_forward_only_unless_rewound(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    out = _run(cfg, [
        ReplSetPushCursor(remote=R, epoch="e1", cursor=5, last_push_hlc=7, bytes_out=10,
                          remote_site="ab"),
        ReplSetPushCursor(remote=R, epoch="e1", cursor=3),
        ReplSetPushCursor(remote=R, epoch="e1", cursor=9, last_push_hlc=3, bytes_out=1),
    ])  # fmt: skip
    assert out[1] == "ReplicationCursorMismatch"
    row, rows = _row(cfg)
    assert (row.push_epoch, row.push_cursor, row.last_push_hlc, row.bytes_out, row.site) == (
        "e1", 9, 7, 11, "ab")  # fmt: skip
    assert [r.remote for r in rows] == [R]
    _run(cfg, [ReplSetPushCursor(remote=R, epoch="e1", cursor=0, rewind=True),
               ReplSetPushCursor(remote=R, epoch="e2", cursor=2)])  # fmt: skip
    row, _ = _row(cfg)
    assert (row.push_epoch, row.push_cursor) == ("e2", 2)


def test_note_remote_records_and_clears_errors(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    _run(cfg, [ReplNoteRemote(remote=R, error="503 ServiceUnavailable: x" * 100, bytes_in=4)])
    row, _ = _row(cfg)
    assert row.last_error.startswith("503 ServiceUnavailable") and len(row.last_error) == 1000
    assert row.bytes_in == 4
    _run(cfg, [ReplNoteRemote(remote=R, error=None, bytes_in=6)])
    row, _ = _row(cfg)
    assert row.last_error is not None and row.bytes_in == 10
    out = _run(cfg, [ReplNoteRemote(remote=R, error=""), ReplNoteRemote(remote="", error="x")])
    row, _ = _row(cfg)
    assert row.last_error is None and out[1] == "InvalidArgument"


def test_embedded_append_stores_the_chunk(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    data = b"chunk bytes" * 1000
    d = digest(data)

    async def work(w: EmbeddedWriter) -> Appended:
        return await w.append(d, data)

    where: Appended = trio.run(run_embedded, cfg, "test", work)
    path = layout.segments_dir(cfg.root) / layout.segment_file_name(where.segment_id)
    with path.open("rb") as f:
        assert read_record(f.fileno(), where.offset, where.length, d, path=str(path)) == data
