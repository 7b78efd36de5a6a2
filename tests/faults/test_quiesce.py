"""Maintenance mode under faults: a PUT cut by the quiesce gate mid-body, a
writer killed while quiesced, and the restart rule of the persisted state."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from seglake.meta.maintenance_state import read_state
from seglake.meta.schema import open_write
from seglake.writer.maintenance_ops import MAINTENANCE_SETTING
from seglake.writer.quiesce import Quiesce
from tests.faults.util import (
    MiB,
    RawPut,
    error_code,
    role_pids,
    sigkill,
    status_retry,
    wait_for,
    wait_restarted,
)
from tests.harness import SeglakeServer, server_fixture

CLI_TIMEOUT_S = 60


def maintenance(data_dir: Path, action: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "seglake.cli", "maintenance", action, "--json",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


qsrv = server_fixture(buckets=["quiesce-faults"])


def test_put_cut_mid_body_is_refused_and_invisible(qsrv: SeglakeServer) -> None:
    s3 = qsrv.s3()
    put = RawPut(qsrv, "quiesce-faults", "half", bytes(range(256)) * (48 * 1024))  # 12 MiB
    put.open()
    try:
        put.send_headers()
        put.send(6 * MiB)  # at least one full chunk reached the writer
        time.sleep(0.3)
        assert maintenance(qsrv.data_dir, "enable")["state"] == "quiesced"
        try:
            status, _headers, body = put.finish()
        except OSError:
            pass  # the server may answer early and close: the PUT failed either way
        else:
            assert status == 503 and b"MaintenanceMode" in body
    finally:
        put.close()
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket="quiesce-faults", Key="half")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert maintenance(qsrv.data_dir, "disable")["state"] == "off"
    s3.put_object(Bucket="quiesce-faults", Key="half", Body=b"now")


def test_writer_killed_while_quiesced_comes_back_quiesced(qsrv: SeglakeServer) -> None:
    s3 = qsrv.s3()
    assert maintenance(qsrv.data_dir, "enable")["state"] == "quiesced"
    writer = role_pids(qsrv)["writer"][0]
    sigkill(writer)
    wait_restarted(qsrv, "writer", writer)
    store = wait_for(
        lambda: status_retry(qsrv)["store"].get("maintenance"),
        timeout=20,
        what="the restarted writer to answer",
    )
    assert store["state"] == "quiesced"
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="quiesce-faults", Key="k", Body=b"x")
    assert error_code(info.value) == "MaintenanceMode/503"
    assert s3.get_object(Bucket="quiesce-faults", Key="half")["Body"].read() == b"now"
    assert maintenance(qsrv.data_dir, "disable")["state"] == "off"
    s3.put_object(Bucket="quiesce-faults", Key="k", Body=b"x")


@pytest.mark.parametrize(
    ("persisted", "after"),
    [("off", "off"), ("entering", "quiesced"), ("quiesced", "quiesced"), ("exiting", "off")],
)
def test_restart_rule(tmp_path: Path, persisted: str, after: str) -> None:
    conn = open_write(str(tmp_path / "meta.db"))
    try:
        doc = {"state": persisted, "since": 1.0, "history": []}
        with conn:
            conn.execute(
                "INSERT INTO settings(name, value) VALUES (?, ?)",
                (MAINTENANCE_SETTING, json.dumps(doc)),
            )
        q = Quiesce.load(conn)
        assert q.state == after
        assert read_state(conn)["state"] == after
        if after != persisted:
            assert q.history[-1]["reason"] == "writer restart"
    finally:
        conn.close()


def test_unreadable_state_fails_safe(tmp_path: Path) -> None:
    conn = open_write(str(tmp_path / "meta.db"))
    try:
        with conn:
            conn.execute(
                "INSERT INTO settings(name, value) VALUES (?, ?)", (MAINTENANCE_SETTING, "{oops")
            )
        assert Quiesce.load(conn).state == "quiesced"
    finally:
        conn.close()
