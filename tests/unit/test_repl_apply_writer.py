"""ReplApply through a real writer (writer/embedded.py): the committer's
batch, barrier and records, on a store in a temporary data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.manifest import decode_manifest
from seglake.ipc.messages import ReplApplied, ReplApply
from seglake.meta.schema import query
from seglake.protocol import repl_entries as re_
from seglake.writer.embedded import EmbeddedWriter, run_embedded
from seglake.writer.quiesce import gated
from tests.unit.test_repl_apply import T0, A, B, Origin


def _apply_all(cfg: Config, batches: list[ReplApply]) -> list[ReplApplied | S3Error]:
    async def work(w: EmbeddedWriter) -> list[ReplApplied | S3Error]:
        out: list[ReplApplied | S3Error] = []
        for b in batches:
            try:
                out.append(await w.apply(b))
            except S3Error as exc:
                out.append(exc)
        return out

    result: list[ReplApplied | S3Error] = trio.run(run_embedded, cfg, "test", work)
    return result


def _rows(cfg: Config, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = apsw.Connection(str(cfg.db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return query(conn, sql, params)
    finally:
        conn.close()


def test_embedded_writer_applies_batches_and_refuses_bad_ones(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    a, b = Origin(A), Origin(B)
    first = a.pull(a.bucket("b"))
    base, ubase, _ = a.version("b", "k", [])
    prev = re_.Stamp(T0 + 3, A)
    va, ua, _ = a.version("b", "k", [], prev=prev, hlc=T0 + 10)
    second = a.pull([base, va], from_seq=2)
    vb, ub, _ = b.version("b", "k", [], prev=prev, marker=True, hlc=T0 + 11)
    from_b = b.pull([vb], direction="push")
    missing, _, _ = a.version("b", "k2", [b"data"])
    bad = a.pull([missing], from_seq=4)
    out = _apply_all(cfg, [first, second, from_b, from_b, bad])
    assert out[:4] == [
        ReplApplied(applied=2, skipped=0, conflicts=0, cursor=2),
        ReplApplied(applied=2, skipped=0, conflicts=0, cursor=4),
        ReplApplied(applied=1, skipped=0, conflicts=1, cursor=1),
        ReplApplied(applied=0, skipped=1, conflicts=0, cursor=1),
    ]
    assert isinstance(out[4], S3Error) and out[4].code == "ReplicationMissingChunk"
    assert dict(_rows(cfg, "SELECT uid, state FROM versions")) == {
        ubase: "ACTIVE", ua: "CONFLICT", ub: "ACTIVE",
    }  # fmt: skip
    cur = _rows(
        cfg, "SELECT v.uid, v.delete_marker FROM current c JOIN versions v ON v.id = c.version"
    )
    assert cur == [(ub, 1)]
    # The manifest the writer stored for the remote version is its own.
    (raw,) = _rows(cfg, "SELECT manifest FROM versions WHERE uid = ?", (ub,))[0]
    assert decode_manifest(raw, path="x").version_id == ub
    assert _rows(cfg, "SELECT pull_cursor FROM repl_remotes") == [(4,)]
    assert _rows(cfg, "SELECT site, cursor FROM repl_inbound") == [(B, 1)]
    assert _rows(cfg, "SELECT count(*) FROM oplog") == [(5,)]


def test_repl_apply_is_a_data_mutation_the_quiesce_gate_refuses() -> None:
    assert gated(ReplApply.name)


def test_writer_restart_keeps_applied_state(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    a = Origin(A)
    _apply_all(cfg, [a.pull(a.bucket("b"))])
    v, uid, _ = a.version("b", "k", [])
    (reply,) = _apply_all(cfg, [a.pull([v], from_seq=2)])
    assert isinstance(reply, ReplApplied) and reply.applied == 1
    assert _rows(cfg, "SELECT uid, hlc, site FROM versions") == [(uid, T0 + 3, A)]


@pytest.mark.parametrize("direction", ["pull", "bootstrap"])
def test_empty_batches(tmp_path: Path, direction: str) -> None:
    cfg = Config(data_dir=str(tmp_path))
    a = Origin(A)
    (reply,) = _apply_all(cfg, [a.pull([], to_seq=0, direction=direction)])
    assert reply == ReplApplied(applied=0, skipped=0, conflicts=0, cursor=0)
