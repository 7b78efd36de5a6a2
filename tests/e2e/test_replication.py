"""Replication between real servers (issue #12): one-shot and continuous
pull and push, bootstrap, and a kill -9 of the pulling process in the
middle of a step (docs/design-replication.md §8)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer

MIB = 1024 * 1024
CONVERGE_S = 40.0
COMMON = ["--min-part-size", "65536", "--repl-interval", "0.2", "--repl-push-interval", "0.2",
          "--repl-backoff-max", "0.5", "--repl-push-backoff-max", "0.5",
          "--repl-access-key", ACCESS_KEY, "--repl-secret-key", SECRET_KEY]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def node(root: Path, name: str, port: int, *extra: str, env: dict[str, str] | None = None
         ) -> SeglakeServer:  # fmt: skip
    args = ["--addr", f"127.0.0.1:{port}", *COMMON, *extra]
    return SeglakeServer(root / name, frontends=1, extra_args=args, env=env)


def seglake(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args], capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def repl_once(mode: str, data_dir: Path, remote: str, *extra: str) -> dict[str, Any]:
    out = seglake(
        "-mode", mode, "-data-dir", str(data_dir), "-repl-remote", remote,
        "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY,
        "-repl-retry-timeout", "5s", "--json", *extra,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def state(srv: SeglakeServer) -> dict[str, Any]:
    """Every bucket's versions (key, id, latest, delete marker, etag, size,
    sha256 of the bytes), as a client sees them."""
    s3 = srv.s3(max_attempts=3)
    out: dict[str, Any] = {}
    for b in sorted(x["Name"] for x in s3.list_buckets()["Buckets"]):
        rows = []
        resp = s3.list_object_versions(Bucket=b)
        for v in resp.get("Versions", []):
            body = s3.get_object(Bucket=b, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
            rows.append((v["Key"], v["VersionId"], v["IsLatest"], False, v["ETag"], v["Size"],
                         hashlib.sha256(body).hexdigest()))  # fmt: skip
        for m in resp.get("DeleteMarkers", []):
            rows.append((m["Key"], m["VersionId"], m["IsLatest"], True, "", 0, ""))
        out[b] = sorted(rows)
    return out


def converge(*nodes: SeglakeServer, timeout: float = CONVERGE_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        states = [state(n) for n in nodes]
        if all(s == states[0] for s in states[1:]):
            return states[0]
        if time.monotonic() > deadline:
            lines = []
            for b in sorted(set().union(*states)):
                rows = [set(s.get(b, [])) for s in states]
                for i, r in enumerate(rows):
                    lines += [
                        f"only on node {i}: {b} {x}" for x in sorted(r - rows[0] | rows[0] - r)
                    ]
            raise AssertionError(f"did not converge in {timeout}s:\n" + "\n".join(lines))
        time.sleep(0.3)


def validate(a: SeglakeServer, b: SeglakeServer) -> None:
    """repl-validate --deep over the two data dirs: buckets, fields, versions,
    states, stamps and chunk digests identical."""
    deadline = time.monotonic() + CONVERGE_S
    while True:
        out = seglake("-mode", "repl-validate", "-data-dir", str(a.data_dir), "-repl-other",
                      str(b.data_dir), "--deep")  # fmt: skip
        if out.returncode == 0:
            return
        # A bucket field or state may still be on its way after listings agree.
        assert out.returncode == 1 and time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(0.3)


def multipart(s3: Any, bucket: str, key: str, parts: list[bytes]) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for i, data in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i, Body=data)["ETag"]
        done.append({"ETag": etag, "PartNumber": i})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": done})  # fmt: skip


@contextlib.contextmanager
def running(*servers: SeglakeServer) -> Iterator[None]:
    try:
        for s in servers:
            s.start()
        yield
    finally:
        for s in servers:
            s.close()


def restart(srv: SeglakeServer) -> SeglakeServer:
    """The same node (data dir, port, flags) started again by a new handle
    (a handle owns one log file and one process tree)."""
    srv.close()
    new = SeglakeServer(srv.data_dir, frontends=srv.frontends, extra_args=srv.extra_args,
                        env=srv.env)  # fmt: skip
    return new.start()


def test_two_sites_converge_one_shot_then_continuous(tmp_path: Path) -> None:
    pa, pb = free_port(), free_port()
    a = node(tmp_path, "a", pa, "--repl-remote", url(pb))  # A pulls from B continuously
    b = node(tmp_path, "b", pb)
    handles = [a, b]
    with running(a, b), contextlib.ExitStack() as later:
        later.callback(lambda: [h.close() for h in handles])
        sa, sb = a.s3(), b.s3()
        sa.create_bucket(Bucket="shared")
        sa.put_object(Bucket="shared", Key="k1", Body=b"one")
        sa.put_object(Bucket="shared", Key="k1", Body=b"one, overwritten")
        sa.put_object(Bucket="shared", Key="k2", Body=b"two")
        sa.delete_object(Bucket="shared", Key="k2")  # a delete marker
        sa.put_object(Bucket="shared", Key="big", Body=bytes(range(256)) * (6 * MIB // 256))
        multipart(sa, "shared", "mp", [b"x" * 65536, b"y" * 65536, b"z" * 100])
        sa.put_bucket_tagging(Bucket="shared", Tagging={"TagSet": [{"Key": "t", "Value": "a"}]})
        sb.create_bucket(Bucket="bonly")
        sb.create_bucket(Bucket="short-lived")
        sb.delete_bucket(Bucket="short-lived")
        sb.put_object(Bucket="bonly", Key="kb", Body=b"from b")
        v = sb.put_object(Bucket="bonly", Key="gone", Body=b"deleted soon")["VersionId"]
        sb.delete_object(Bucket="bonly", Key="gone", VersionId=v)

        # One-shot pull into B (its server stopped), then B comes back.
        b.close()
        doc = repl_once("repl-pull", b.data_dir, url(pa))
        (remote,) = doc["remotes"]
        assert remote["applied"] > 0 and remote["backlog_entries"] == 0
        assert remote["backlog_bytes"] == 0
        assert remote["state"] == "done" and remote["bytes_in"] >= 6 * MIB
        again = repl_once("repl-pull", b.data_dir, url(pa))
        assert again["remotes"][0]["applied"] == 0  # caught up: nothing twice
        b = restart(b)
        handles.append(b)
        sb = b.s3()

        # A has been pulling from B all along (retrying while B was down).
        sb.put_object(Bucket="shared", Key="k1", Body=b"newest, from b")
        sb.delete_bucket_cors(Bucket="shared")
        final = converge(a, b)
        assert next(r for r in final["shared"] if r[0] == "k1" and r[2])[5] == len(
            b"newest, from b"
        )
        assert "bonly" in final and "shared" in final and "short-lived" not in final
        assert b.s3().get_bucket_tagging(Bucket="shared")["TagSet"] == [{"Key": "t", "Value": "a"}]

        # Push from A (one-shot is refused while A runs; use B's view of A).
        refused = seglake("-mode", "repl-push", "-data-dir", str(a.data_dir), "-repl-remote",
                          url(pb), "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY)  # fmt: skip
        assert refused.returncode == 1 and "serve --repl-remote" in refused.stderr
        a.close()
        sb.put_object(Bucket="bonly", Key="late", Body=b"written while a is down")
        pushed = repl_once("repl-push", a.data_dir, url(pb))
        assert pushed["remotes"][0]["state"] == "done"
        a = restart(a)
        handles.append(a)
        converge(a, b)
        validate(a, b)
        status = a.status()
        (pull_task,) = status["replication"]
        assert pull_task["direction"] == "pull" and pull_task["remote"] == url(pb)
        assert pull_task["backlog_entries"] == 0 and pull_task["lag_seconds"] == 0.0


def test_bootstrap_then_push_both_ways(tmp_path: Path) -> None:
    pa, pc = free_port(), free_port()
    a = node(tmp_path, "a", pa, "--repl-remote", url(pc), "--repl-push")
    with running(a):
        sa = a.s3()
        sa.create_bucket(Bucket="src")
        for i in range(30):
            sa.put_object(Bucket="src", Key=f"k{i:02d}", Body=f"value {i}".encode() * 100)
        sa.delete_object(Bucket="src", Key="k03")
        cdir = tmp_path / "c"
        doc = repl_once("repl-bootstrap", cdir, url(pa))
        (report,) = doc["remotes"]
        assert report["snapshot"]["entries"] > 30 and report["cursor"].endswith(
            str(report["cursor"].split(":")[1])
        )
        # A second bootstrap into a store that is no longer empty is refused.
        again = seglake("-mode", "repl-bootstrap", "-data-dir", str(cdir), "-repl-remote", url(pa),
                        "-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY)  # fmt: skip
        assert again.returncode == 1 and "repl-bootstrap-force" in again.stderr
        # The pull cursor is stored now: -repl-since may not move it.
        epoch = report["cursor"].split(":")[0]
        moved = seglake("-mode", "repl-pull", "-data-dir", str(cdir), "-repl-remote", url(pa),
                        "-repl-since", f"{epoch}:0", "-repl-access-key", ACCESS_KEY,
                        "-repl-secret-key", SECRET_KEY)  # fmt: skip
        assert moved.returncode == 2 and "it moves only with the entries" in moved.stderr
        # A new store may name where its first pull starts (a bare seq: the
        # remote's epoch); from 0 it is the whole oplog.
        fresh = repl_once("repl-pull", tmp_path / "d", url(pa), "-repl-since", "0")
        assert fresh["remotes"][0]["applied"] > 30 and fresh["remotes"][0]["backlog_entries"] == 0
        c = node(tmp_path, "c", pc, "--repl-remote", url(pa))
        with running(c):
            sc = c.s3()
            sc.put_object(Bucket="src", Key="from-c", Body=b"c wrote this")
            sa.put_object(Bucket="src", Key="from-a", Body=b"a wrote this")
            final = converge(a, c)
            keys = {r[0] for r in final["src"]}
            assert {"from-a", "from-c", "k03", "k29"} <= keys
            validate(a, c)


@pytest.mark.parametrize("point", [
    "repl.after_chunks_before_apply",  # the maintenance process, chunks appended, not applied
    "repl.after_commit_before_reply",  # the maintenance process, applied, before it goes on
    "applied.repl_apply",  # the writer, in the batch of a ReplApply before its COMMIT
])  # fmt: skip
def test_kill_9_of_the_puller_mid_step_resumes(tmp_path: Path, point: str) -> None:
    pa, pb = free_port(), free_port()
    a = node(tmp_path, "a", pa)
    marker = tmp_path / "fired"
    b = node(tmp_path, "b", pb, "--repl-remote", url(pa), "--repl-limit", "5",
             env={"SEGLAKE_FAILPOINTS": f"{point}=kill@2:{marker}"})  # fmt: skip
    # Both start before A has anything to pull: the harness's start-up
    # checks ask B's maintenance process, which the failpoint kills later.
    with running(a, b):
        sa = a.s3()
        sa.create_bucket(Bucket="killb")
        for i in range(20):
            sa.put_object(Bucket="killb", Key=f"k{i}", Body=bytes([i]) * (300_000 + i))
        final = converge(a, b)
        assert marker.exists()  # the process was killed once
        ids = [r[1] for r in final["killb"]]
        assert len(ids) == len(set(ids)) == 20
        validate(a, b)


def test_continuous_pull_pauses_while_quiesced(tmp_path: Path) -> None:
    pa, pb = free_port(), free_port()
    a = node(tmp_path, "a", pa)
    b = node(tmp_path, "b", pb, "--repl-remote", url(pa))
    with running(a, b):
        sa = a.s3()
        sa.create_bucket(Bucket="quiet")
        converge(a, b)
        out = seglake("maintenance", "enable", "--data-dir", str(b.data_dir))
        assert out.returncode == 0, out.stderr
        sa.put_object(Bucket="quiet", Key="while-quiesced", Body=b"waits")
        deadline = time.monotonic() + 10
        while True:
            (task,) = b.status()["replication"]
            if task["state"] == "paused":
                break
            assert time.monotonic() < deadline, task
            time.sleep(0.2)
        assert "quiet" not in state(b) or not state(b)["quiet"]
        shown = seglake("status", "--data-dir", str(b.data_dir))
        assert shown.returncode == 0 and "replication" in shown.stdout and "paused" in shown.stdout
        out = seglake("maintenance", "disable", "--data-dir", str(b.data_dir))
        assert out.returncode == 0, out.stderr
        final = converge(a, b)
        assert [r[0] for r in final["quiet"]] == ["while-quiesced"]
        stats = seglake("stats", "--json", "--data-dir", str(b.data_dir))
        assert stats.returncode == 0, stats.stderr
        (row,) = json.loads(stats.stdout)["replication"]
        assert row["remote"] == url(pa) and row["direction"] == "pull" and row["entries"] >= 2
        import urllib.request

        with urllib.request.urlopen(f"{url(pb)}/.seglake/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert f'seglake_repl_entries_total{{remote="{url(pa)}",direction="pull"}}' in text


def test_usage_refusals(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    keys = ["-repl-access-key", ACCESS_KEY, "-repl-secret-key", SECRET_KEY]
    out = seglake("-mode", "repl-pull", "-data-dir", data, *keys)
    assert out.returncode == 2 and "needs -repl-remote URL" in out.stderr
    out = seglake("-mode", "repl-pull", "-data-dir", data, "-repl-remote", "http://127.0.0.1:1")
    assert out.returncode == 2 and "-repl-access-key" in out.stderr
    out = seglake("-mode", "repl-pull", "-data-dir", data, "-repl-remote", "http://127.0.0.1:1",
                  "-repl-fetch-data=false", *keys)  # fmt: skip
    assert out.returncode == 2 and "-repl-fetch-data=false is not supported" in out.stderr
    out = seglake("-mode", "repl-pull", "-data-dir", data, "-repl-remote", "ftp://x", *keys)
    assert out.returncode == 2 and "not an http:// or https:// URL" in out.stderr
    # Nothing listens there: retried until -repl-retry-timeout, then exit 1.
    started = time.monotonic()
    out = seglake("-mode", "repl-pull", "-data-dir", data, "-repl-remote",
                  f"http://127.0.0.1:{free_port()}", "-repl-retry-timeout", "1s",
                  "-repl-backoff-max", "0.2", *keys)  # fmt: skip
    assert out.returncode == 1 and "gave up" in out.stdout + out.stderr, out.stderr
    assert time.monotonic() - started < 30


def test_bootstrap_while_the_source_takes_writes(tmp_path: Path) -> None:
    import threading

    pa, pc = free_port(), free_port()
    a = node(tmp_path, "a", pa)
    with running(a):
        sa = a.s3(max_attempts=3)
        sa.create_bucket(Bucket="busy")
        for i in range(40):
            sa.put_object(Bucket="busy", Key=f"before-{i:03d}", Body=bytes([i % 256]) * 20_000)
        stop = threading.Event()
        written: list[str] = []

        def writer() -> None:
            s3 = a.s3(max_attempts=3)
            for i in range(2000):
                if stop.is_set():
                    return
                key = f"during-{i:04d}"
                s3.put_object(Bucket="busy", Key=key, Body=key.encode() * 500)
                written.append(key)
                time.sleep(0.01)

        t = threading.Thread(target=writer)
        t.start()
        try:
            time.sleep(0.3)
            doc = repl_once("repl-bootstrap", tmp_path / "c", url(pa), "-repl-limit", "20")
        finally:
            stop.set()
            t.join(30)
        assert written and doc["remotes"][0]["snapshot"]["entries"] >= 40
        c = node(tmp_path, "c", pc, "--repl-remote", url(pa))
        with running(c):
            converge(a, c)
            validate(a, c)
            deadline = time.monotonic() + CONVERGE_S
            while True:
                (task,) = c.status()["replication"]
                if task["backlog_entries"] == 0 and task["lag_seconds"] == 0.0:
                    break
                assert time.monotonic() < deadline, task
                time.sleep(0.2)


def test_three_sites_in_a_ring_converge(tmp_path: Path) -> None:
    """A pulls from C, B from A, C from B: every write reaches every site by
    relaying (entries keep their origin stamp), with concurrent writes to
    one key on all three."""
    pa, pb, pc = free_port(), free_port(), free_port()
    a = node(tmp_path, "a", pa, "--repl-remote", url(pc))
    b = node(tmp_path, "b", pb, "--repl-remote", url(pa))
    c = node(tmp_path, "c", pc, "--repl-remote", url(pb))
    with running(a, b, c):
        a.s3().create_bucket(Bucket="ring")
        converge(a, b, c)
        for name, srv in (("a", a), ("b", b), ("c", c)):
            s3 = srv.s3()
            s3.put_object(Bucket="ring", Key="same", Body=f"written at {name}".encode())
            s3.put_object(Bucket="ring", Key=f"only-{name}", Body=name.encode() * 1000)
        a.s3().delete_object(Bucket="ring", Key="only-b")  # may race b's put: LWW decides
        final = converge(a, b, c)
        assert {"same", "only-a", "only-b", "only-c"} <= {r[0] for r in final["ring"]}
        assert sum(1 for r in final["ring"] if r[0] == "same" and r[2]) == 1
        validate(a, b)
        validate(b, c)


def test_continuous_push_resends_to_a_site_that_lost_its_cursor(tmp_path: Path) -> None:
    """A pushes to B (B pulls nothing). B is then replaced by an empty store
    at the same address: A's next batch is a gap there (409), A rewinds to
    the start of its oplog and B gets everything."""
    import shutil

    pa, pb = free_port(), free_port()
    a = node(tmp_path, "a", pa, "--repl-remote", url(pb), "--repl-push", "--repl-pull", "false")
    b = node(tmp_path, "b", pb)
    handles = [a, b]
    with running(a, b), contextlib.ExitStack() as later:
        later.callback(lambda: [h.close() for h in handles])
        sa = a.s3()
        sa.create_bucket(Bucket="pushed")
        for i in range(5):
            sa.put_object(Bucket="pushed", Key=f"k{i}", Body=bytes([i]) * 70_000)
        converge(a, b)
        (task,) = a.status()["replication"]
        assert task["direction"] == "push" and task["backlog_entries"] == 0
        b.close()
        shutil.rmtree(b.data_dir)
        b = restart(b)
        handles.append(b)
        sa.put_object(Bucket="pushed", Key="after", Body=b"after the loss")
        final = converge(a, b)
        assert len(final["pushed"]) == 6
        validate(a, b)


def test_a_page_is_applied_in_bounded_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With groups of at most 2 MiB of chunks to fetch, one page of large
    objects is applied as several ReplApply, each moving the cursor to its
    last entry, and a push does the same (pull/push run in this process
    against a live remote, into an offline store through the embedded
    writer)."""
    import trio

    from seglake.config import Config
    from seglake.ipc.messages import ReplApply
    from seglake.repl import plan
    from seglake.repl.client import ReplClient
    from seglake.repl.pull import pull_step
    from seglake.repl.push import push_step
    from seglake.writer.embedded import EmbeddedWriter, run_embedded

    monkeypatch.setattr(plan, "MAX_GROUP_BYTES", 2 * MIB)
    monkeypatch.setattr(plan, "MAX_FETCH_BYTES", 1 * MIB)
    pa = free_port()
    a = node(tmp_path, "a", pa)
    with running(a):
        sa = a.s3()
        sa.create_bucket(Bucket="groups")
        for i in range(6):
            sa.put_object(Bucket="groups", Key=f"k{i}", Body=bytes([i + 1]) * (MIB + MIB // 2))
        (tmp_path / "b").mkdir()
        cfg = Config(data_dir=str(tmp_path / "b"))
        remote = url(pa)
        applies: list[tuple[int, int, int]] = []

        class Counting:
            """The embedded writer, noting each ReplApply's range and size."""

            def __init__(self, w: EmbeddedWriter) -> None:
                self.w = w

            async def append(self, digest: bytes, data: bytes) -> Any:
                return await self.w.append(digest, data)

            async def apply(self, msg: Any) -> Any:
                if isinstance(msg, ReplApply):
                    applies.append((msg.from_seq, msg.to_seq, len(msg.chunks)))
                return await self.w.apply(msg)

        async def pull_all(w: EmbeddedWriter) -> list[Any]:
            client = ReplClient(remote, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
            try:
                steps = []
                for _ in range(10):
                    r = await pull_step(client, Counting(w), cfg.db_path, remote, limit=1000)
                    steps.append(r)
                    if not r.more:
                        break
                return steps
            finally:
                await client.aclose()

        (step,) = trio.run(run_embedded, cfg, "test", pull_all)
        # bucket entry(ies) + 6 versions; 1.5 MiB each in groups of <= 2 MiB.
        assert step.applied == step.entries >= 7 and step.backlog == 0
        assert step.chunks == 6 and step.bytes_in == 6 * (MIB + MIB // 2)
        # One object's chunks per group (two would pass 2 MiB), the ranges
        # adjoining from 0 to the head.
        assert len(applies) == 6 and [n for _, _, n in applies] == [1] * 6
        assert applies[0][0] == 0 and applies[-1][1] == step.head
        assert all(x[1] == y[0] for x, y in itertools.pairwise(applies))

        async def push_all(w: EmbeddedWriter) -> Any:
            client = ReplClient(remote, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
            try:
                site = (await client.oplog("0", 1)).site
                return await push_step(client, w, cfg.root, cfg.db_path, remote, limit=1000,
                                       remote_site=site)  # fmt: skip
            finally:
                await client.aclose()

        sb_dir = tmp_path / "b"
        offline = SeglakeServer(sb_dir, frontends=1, extra_args=["--addr", "127.0.0.1:0"])
        with offline:
            s3 = offline.s3()
            for i in range(3):
                s3.put_object(Bucket="groups", Key=f"from-b-{i}", Body=bytes([9 + i]) * (MIB + 7))
        pushed = trio.run(run_embedded, cfg, "test", push_all)
        # Only B's own writes go back (A's entries are left out), with their data.
        assert pushed.entries == 3 and pushed.chunks == 3 and pushed.backlog == 0
        assert pushed.bytes_out == 3 * (MIB + 7)
        b = node(tmp_path, "b", free_port())
        with running(b):
            converge(a, b)
            validate(a, b)
