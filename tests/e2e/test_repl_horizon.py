"""Oplog retention and the tombstone horizon on real servers
(docs/design-replication.md §2): a scheduled prune moves the floor, a pull
below it is stopped with 410 OplogTruncated and a bootstrap brings the site
back; gc-run keeps a DELETED row inside the horizon, so a late put of that
version does not bring it back, and purges it once the oplog is pruned past
it and the retention is over."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio
from botocore.exceptions import ClientError

from seglake.ipc.call import call_writer
from seglake.ipc.messages import ReplApplied, ReplPruned, ReplPruneOplog, Request
from tests.e2e._helpers import cli, cli_json, db_rows
from tests.e2e.test_replication import converge, free_port, node, repl_once, restart, url
from tests.harness import SeglakeServer
from tests.unit.test_repl_apply import Origin

B = "2" * 16


def writer(srv: SeglakeServer, msg: Request[Any]) -> Any:
    return trio.run(call_writer, str(srv.data_dir / ".seglake-writer.sock"), msg)


def oplog_of(srv: SeglakeServer) -> dict[str, Any]:
    doc: dict[str, Any] = srv.status()["oplog"]
    return doc


def gc_run(srv: SeglakeServer, *flags: str) -> dict[str, Any]:
    """gc-run on the live server, inside maintenance mode as an operator runs it."""
    assert cli(srv.data_dir, "maintenance", "enable").returncode == 0
    try:
        code, doc = cli_json(srv.data_dir, "gc-run", *flags)
        assert code == 0, doc
        return doc
    finally:
        assert cli(srv.data_dir, "maintenance", "disable").returncode == 0


def test_pruned_oplog_stops_the_pull_until_a_bootstrap(tmp_path: Path) -> None:
    pa, pb = free_port(), free_port()
    prune = ["--repl-oplog-prune-interval", "0.3", "--repl-oplog-retention", "0"]
    a = node(tmp_path, "a", pa, *prune)
    b = node(tmp_path, "b", pb, "--repl-remote", url(pa))
    handles = [a]
    try:
        a.start()
        sa = a.s3()
        sa.create_bucket(Bucket="pruned")
        for i in range(5):
            sa.put_object(Bucket="pruned", Key=f"k{i}", Body=b"v" * i)
        deadline = time.monotonic() + 20
        while True:
            op = oplog_of(a)
            if op["head"] > 0 and op["floor"] == op["head"] - 1:
                break
            assert time.monotonic() < deadline, op
            time.sleep(0.2)
        # Every row went (no push remote holds them, no retention) but the
        # newest, which numbers the next.
        assert op["rows"] == 1, op
        shown = cli(a.data_dir, "status")
        assert f"oplog: 1 rows, {op['bytes']} bytes, floor {op['floor']}" in shown.stdout, (
            shown.stdout
        )
        stats = cli_json(a.data_dir, "stats")[1]
        assert stats["oplog"]["floor"] == op["floor"]

        # B has never pulled: its cursor (0) is below the floor.
        handles.append(b)
        b.start()
        deadline = time.monotonic() + 20
        while True:
            (task,) = b.status()["replication"]
            if task["state"] == "stopped":
                break
            assert time.monotonic() < deadline, task
            time.sleep(0.2)
        assert task["last_error"].startswith("410 OplogTruncated"), task
        assert "-mode repl-bootstrap" in task["action"] and url(pa) in task["action"], task
        assert "pruned" not in {x["Name"] for x in b.s3().list_buckets()["Buckets"]}

        # The operator's way back: bootstrap, then the pull continues.
        b.close()
        boot = repl_once("repl-bootstrap", b.data_dir, url(pa))
        (report,) = boot["remotes"]
        assert report["snapshot"]["entries"] > 5, report
        # The snapshot's cursor is the head, above the floor.
        assert int(report["cursor"].split(":")[1]) == op["head"], report
        b = restart(b)
        handles.append(b)
        converge(a, b)
        (task,) = b.status()["replication"]
        assert task["state"] in ("idle", "running") and task["last_error"] is None, task
    finally:
        for h in handles:
            h.close()


def test_gc_keeps_a_deleted_row_inside_the_horizon(tmp_path: Path) -> None:
    srv = SeglakeServer(tmp_path / "a", frontends=1).start()
    try:
        s3 = srv.s3()
        s3.create_bucket(Bucket="tomb")
        s3.put_bucket_versioning(Bucket="tomb", VersioningConfiguration={"Status": "Enabled"})
        # A version written on site B, pulled here, then deleted here.
        origin = Origin(B)
        # Stamped a day ago (tests.unit's T0 lies in the future, and a
        # future stamp would drag this site's clock past the retention).
        day_ago = (time.time_ns() // 1_000_000 - 86_400_000) << 16
        entry, uid, _ = origin.version("tomb", "k", [], hlc=day_ago)
        applied: ReplApplied = writer(srv, origin.pull([entry], direction="bootstrap", to_seq=0))
        assert applied.applied == 1
        s3.delete_object(Bucket="tomb", Key="k", VersionId=uid)
        deleted = "SELECT count(*) FROM versions WHERE uid = ? AND state = 'DELETED'"
        assert db_rows(srv.data_dir, deleted, (uid,))[0][0] == 1

        # Nothing pruned yet: the oplog may still owe a remote the deletion.
        code, plan = cli_json(srv.data_dir, "gc-plan", "-repl-oplog-retention", "0")
        assert code == 0 and plan["deleted_versions_held"] == 1, plan
        assert plan["deleted_versions_to_purge"] == 0
        assert gc_run(srv, "-repl-oplog-retention", "0")["purged_versions"] == 0
        assert db_rows(srv.data_dir, deleted, (uid,))[0][0] == 1

        # Pruned past it (a later write is the newest row, which stays), but
        # the deletion is younger than the retention.
        s3.put_object(Bucket="tomb", Key="later", Body=b"x")
        head = oplog_of(srv)["head"]
        pruned: ReplPruned = writer(srv, ReplPruneOplog(below=head + 1))
        assert pruned.floor == head - 1 and not pruned.more
        assert (
            gc_run(
                srv,
            )["purged_versions"]
            == 0
        )
        assert db_rows(srv.data_dir, deleted, (uid,))[0][0] == 1

        # A late put of that version (its oplog identity is pruned here, so
        # only the kept row stops it): it stays deleted.
        writer(srv, origin.pull([entry], direction="bootstrap", to_seq=0))
        assert db_rows(srv.data_dir, deleted, (uid,))[0][0] == 1
        with pytest.raises(ClientError) as err:
            s3.head_object(Bucket="tomb", Key="k", VersionId=uid)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        listed = s3.list_object_versions(Bucket="tomb", Prefix="k").get("Versions", [])
        assert listed == []

        # The late entry is in the oplog again, with its old stamp: until it
        # is pruned too, remotes may still be sent it, and the row stays.
        assert gc_run(srv, "-repl-oplog-retention", "0")["purged_versions"] == 0
        s3.put_object(Bucket="tomb", Key="later", Body=b"y")
        writer(srv, ReplPruneOplog(below=oplog_of(srv)["head"] + 1))
        # Below the floor and past the retention: purged.
        assert gc_run(srv, "-repl-oplog-retention", "0")["purged_versions"] == 1
        assert db_rows(srv.data_dir, "SELECT count(*) FROM versions WHERE uid = ?", (uid,)) == [
            (0,)
        ]
    finally:
        srv.close()


def test_gc_purges_a_hidden_tombstone_only_below_the_horizon(tmp_path: Path) -> None:
    srv = SeglakeServer(
        tmp_path / "a", frontends=1, extra_args=["--default-versioning", "unversioned"]
    ).start()
    try:
        s3 = srv.s3()
        s3.create_bucket(Bucket="plain")  # unversioned: a DELETE leaves a hidden tombstone
        s3.put_object(Bucket="plain", Key="k", Body=b"gone soon")
        s3.delete_object(Bucket="plain", Key="k")
        tomb = (
            "SELECT count(*) FROM versions WHERE key = 'k' AND tombstone = 1 AND state = 'ACTIVE'"
        )
        assert db_rows(srv.data_dir, tomb) == [(1,)]

        # Inside the horizon (nothing pruned): a remote may still send an
        # older put of k, which only the tombstone can beat; gc-plan says so.
        code, plan = cli_json(srv.data_dir, "gc-plan", "-repl-oplog-retention", "0")
        assert code == 0 and plan["deleted_versions_to_purge"] == 0, plan
        assert plan["deleted_versions_held"] == 2  # the old null version and the tombstone
        gc_run(srv, "-repl-oplog-retention", "0")
        assert db_rows(srv.data_dir, tomb) == [(1,)]

        # Pruned past both rows and out of retention: both are purged, and
        # the key is what it was: absent, and free to be written again.
        s3.put_object(Bucket="plain", Key="later", Body=b"x")
        writer(srv, ReplPruneOplog(below=oplog_of(srv)["head"] + 1))
        assert gc_run(srv, "-repl-oplog-retention", "0")["purged_versions"] == 2
        assert db_rows(srv.data_dir, "SELECT count(*) FROM versions WHERE key = 'k'") == [(0,)]
        with pytest.raises(ClientError) as err:
            s3.head_object(Bucket="plain", Key="k")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert s3.list_objects_v2(Bucket="plain").get("KeyCount") == 1
        s3.put_object(Bucket="plain", Key="k", Body=b"again")
        assert s3.get_object(Bucket="plain", Key="k")["Body"].read() == b"again"
    finally:
        srv.close()
