"""Cutting oplog pages into bounded applies and chunk requests
(seglake/repl/plan.py), and the replication task loop (seglake/repl/runner.py)."""

from __future__ import annotations

import pytest
import trio

from seglake.errors import S3Error
from seglake.format.manifest import ChunkRef, Manifest, encode_manifest
from seglake.format.segment import MIN_DATA_OFFSET
from seglake.protocol.repl_wire import Entry
from seglake.repl import plan
from seglake.repl.backoff import Backoff
from seglake.repl.pull import StepReport, entry_values
from seglake.repl.runner import Failure, ReplStopped, TaskStatus, classify, run_task
from seglake.units import MiB


def _d(i: int) -> bytes:
    return bytes([i]) * 32


def _version(seq: int, chunks: list[tuple[int, int]]) -> Entry:
    refs = tuple(ChunkRef(1, MIN_DATA_OFFSET, n, _d(i)) for i, n in chunks)
    m = Manifest("b", f"k{seq}", "v1", sum(n for _, n in chunks), refs)
    return Entry(
        seq, seq << 16, "aa", "version", "b", f"k{seq}", f"u{seq}", b"\x80", encode_manifest(m)
    )


def _state(seq: int) -> Entry:
    return Entry(seq, seq << 16, "aa", "state", "b", "k", "u", b"\x80")


def test_entry_chunks_reads_the_manifest() -> None:
    assert plan.entry_chunks(_version(1, [(1, 10), (2, 20)]), "r") == [(_d(1), 10), (_d(2), 20)]
    assert plan.entry_chunks(_state(2), "r") == []


def test_bad_manifest_is_a_bad_batch() -> None:
    bad = Entry(1, 1, "aa", "version", "b", "k", "u", b"\x80", b"not a manifest")
    with pytest.raises(S3Error) as err:
        plan.entry_chunks(bad, "r")
    assert err.value.code == "ReplicationBadBatch"


def test_groups_bound_bytes_to_fetch() -> None:
    entries = [
        _version(1, [(1, 4 * MiB)]), _version(2, [(2, 4 * MiB)]), _state(3),
        _version(4, [(1, 4 * MiB)]), _version(5, [(3, 4 * MiB), (5, 4 * MiB), (6, 4 * MiB)]),
        _version(6, [(4, 1)]),
    ]  # fmt: skip
    chunks_of = {e.seq: plan.entry_chunks(e, "r") for e in entries}
    missing = {_d(i) for i in range(1, 7)}
    got = plan.groups(entries, chunks_of, missing, max_bytes=6 * MiB)
    # d1 fetched in the first group is not counted again for entry 4; the
    # 12 MiB entry is alone.
    assert [[e.seq for e in g] for g in got] == [[1], [2, 3, 4], [5], [6]]


def test_groups_ignore_held_chunks() -> None:
    entries = [_version(i, [(i, 4 * MiB)]) for i in range(1, 5)]
    chunks_of = {e.seq: plan.entry_chunks(e, "r") for e in entries}
    assert len(plan.groups(entries, chunks_of, set(), max_bytes=6 * MiB)) == 1


def test_fetch_batches_bound_count_and_bytes() -> None:
    needs = [(_d(i), 1 * MiB) for i in range(130)]
    got = plan.fetch_batches(needs, max_digests=64, max_bytes=64 * MiB)
    assert [len(b) for b in got] == [64, 64, 2]
    big = [(_d(1), 40 * MiB), (_d(2), 40 * MiB), (_d(3), 1)]
    assert plan.fetch_batches(big, max_bytes=64 * MiB) == [[_d(1)], [_d(2), _d(3)]]


def test_entry_values_keep_bytes() -> None:
    (arr,) = entry_values([_state(1)])
    assert arr == [1, 1 << 16, "aa", "state", "b", "k", "u", b"\x80", None]


def test_classify() -> None:
    f = classify(S3Error("ReplicationCursorMismatch"))
    assert f is not None and f.status == 409 and not f.permanent
    f = classify(S3Error("OplogTruncated"))
    assert f is not None and f.permanent
    f = classify(ConnectionRefusedError(111, "refused"))
    assert f is not None and f.status == 0 and not f.permanent
    assert classify(KeyError("bug")) is None


class Steps:
    """A scripted step: each item a report or an exception to raise."""

    def __init__(self, script: list[StepReport | Exception]) -> None:
        self.script = script
        self.calls = 0

    async def __call__(self) -> StepReport:
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        return item


async def test_one_shot_runs_until_caught_up() -> None:
    steps = Steps([StepReport(entries=5, more=True, head=10, cursor=5),
                   StepReport(entries=5, more=False, head=10, cursor=10)])  # fmt: skip
    status = TaskStatus("r", "pull")
    await run_task(steps, status, Backoff(1.0, 1.0), watch=False)
    assert steps.calls == 2 and status.entries == 10 and status.state == "done"
    assert status.backlog == 0 and status.lag_seconds(0.0) == 0.0


async def test_retryable_failure_is_retried_then_succeeds() -> None:
    steps = Steps([S3Error("ServiceUnavailable"), StepReport(entries=1)])
    status = TaskStatus("r", "pull")
    notes: list[str | None] = []

    async def note(r: StepReport | None, err: str | None) -> None:
        notes.append(err)

    with trio.fail_after(5):
        await run_task(steps, status, Backoff(0.0, 0.01, retry_timeout=5.0), watch=False,
                       note=note)  # fmt: skip
    assert steps.calls == 2 and status.last_error is None and status.state == "done"
    assert notes[0] is not None and "ServiceUnavailable" in notes[0] and notes[-1] == ""


async def test_permanent_failure_stops() -> None:
    steps = Steps([S3Error("OplogTruncated")])
    status = TaskStatus("r", "pull")
    with pytest.raises(ReplStopped) as err:
        await run_task(steps, status, Backoff(0.0, 0.01, retry_timeout=60.0), watch=True)
    assert steps.calls == 1 and status.state == "stopped"
    assert err.value.failure.code == "OplogTruncated"
    # The status says how to get back in step.
    action = status.as_dict(0.0)["action"]
    assert "-mode repl-bootstrap -repl-remote r " in action, action
    other = TaskStatus("r", "pull")
    with pytest.raises(ReplStopped):
        await run_task(Steps([S3Error("AccessDenied")]), other, Backoff(0.0, 0.01), watch=True)
    assert "action" not in other.as_dict(0.0)


async def test_one_shot_gives_up_after_retry_timeout() -> None:
    steps = Steps([ConnectionRefusedError(111, "refused")])
    status = TaskStatus("r", "pull")
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    with trio.fail_after(5), pytest.raises(ReplStopped) as err:
        await run_task(steps, status, Backoff(0.0, 0.001, retry_timeout=3.0), watch=False,
                       clock=clock)  # fmt: skip
    assert err.value.gave_up and status.state == "failed" and 2 <= steps.calls <= 4


async def test_paused_task_does_not_step() -> None:
    steps = Steps([StepReport()])
    status = TaskStatus("r", "pull")

    async def paused() -> bool:
        return True

    with trio.move_on_after(0.3):
        await run_task(steps, status, Backoff(0.0, 0.01), watch=True, paused=paused)
    assert steps.calls == 0 and status.state == "paused"


def test_lag_uses_the_physical_part_of_the_last_stamp() -> None:
    status = TaskStatus("r", "pull", head=10, cursor=4, last_hlc=(100_000 << 16) | 7)
    assert status.lag_seconds(130.0) == pytest.approx(30.0)
    assert TaskStatus("r", "pull", head=3).lag_seconds(1.0) is None
    assert str(Failure(0, "Timeout", "x")) == "Timeout: x"


def test_stats_and_prometheus_carry_the_tasks() -> None:
    from seglake.metrics import prometheus, view

    status = TaskStatus(
        "http://b:9000", "push", head=7, cursor=5, last_hlc=(1000 << 16), backlog_bytes=4096
    )
    row = status.as_dict(3.0)
    assert row["backlog_entries"] == 2 and row["lag_seconds"] == 2.0
    assert row["backlog_bytes"] == 4096
    # caught up: no bytes are left, whatever the last page said
    assert (
        TaskStatus("r", "pull", head=5, cursor=5, backlog_bytes=9).as_dict(1.0)["backlog_bytes"]
        == 0
    )
    doc = view.build(now=0.0, version="x", supervisor={}, store={}, runs=[], disk={},
                     replication=[row])  # fmt: skip
    assert doc["replication"] == [row]
    text = prometheus.render(doc)
    assert 'seglake_repl_backlog_entries{remote="http://b:9000",direction="push"} 2' in text
    assert 'seglake_repl_lag_seconds{remote="http://b:9000",direction="push"} 2' in text
    assert 'seglake_repl_backlog_bytes{remote="http://b:9000",direction="push"} 4096' in text
