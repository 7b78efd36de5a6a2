"""Replication under faults (issue #12): skewed clocks, a partitioned site
that comes back, a kill -9 of the puller's writer in the middle of a pull,
copies, multipart uploads and object-lock state replicated
(docs/design-replication.md §8)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from seglake.format import layout
from tests.e2e.test_replication import (
    CONVERGE_S,
    MIB,
    converge,
    multipart,
    node,
    restart,
    running,
    url,
    validate,
)
from tests.e2e.test_replication import free_port as port
from tests.harness import SeglakeServer

TEST_MODE = {"SEGLAKE_TEST_MODE": "1"}


def db(srv: SeglakeServer) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{srv.data_dir / layout.DB_FILE}?mode=ro", uri=True, timeout=10)


def current_stamps(srv: SeglakeServer, bucket: str) -> dict[str, tuple[int, str, str]]:
    """key → (hlc, site, uid) of its current version, read from meta.db."""
    with contextlib.closing(db(srv)) as conn:
        rows = conn.execute(
            "SELECT v.key, v.hlc, v.site, v.uid FROM current c JOIN versions v ON v.id = c.version "
            "WHERE c.bucket = ?", (bucket,),
        ).fetchall()  # fmt: skip
    return {k: (h, s, u) for k, h, s, u in rows}


def site_of(srv: SeglakeServer) -> str:
    with contextlib.closing(db(srv)) as conn:
        (site,) = conn.execute("SELECT value FROM settings WHERE name = 'site_id'").fetchone()
    return str(site)


def pulled_bytes(srv: SeglakeServer) -> int:
    with contextlib.closing(db(srv)) as conn:
        (n,) = conn.execute("SELECT COALESCE(SUM(bytes_in), 0) FROM repl_remotes").fetchone()
    return int(n)


def body(srv: SeglakeServer, bucket: str, key: str) -> bytes | None:
    s3 = srv.s3(max_attempts=3)
    try:
        data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return data


def test_skewed_clocks_keep_each_sites_order(tmp_path: Path) -> None:
    """A's clock runs 10 minutes ahead, B's 10 minutes behind. Each site's
    own later write stays current, deletes stay deleted, and where the two
    wrote one key the larger (hlc, site) wins on both."""
    pa, pb = port(), port()
    a = node(tmp_path, "a", pa, "--repl-remote", url(pb), "--test-clock-offset-ms", "600000",
             env=TEST_MODE)  # fmt: skip
    b = node(tmp_path, "b", pb, "--repl-remote", url(pa), "--test-clock-offset-ms=-600000",
             env=TEST_MODE)  # fmt: skip
    with running(a, b):
        sa, sb = a.s3(), b.s3()
        sa.create_bucket(Bucket="skew")
        converge(a, b)
        for i in range(5):
            # Both sides at once, each in a known order of its own.
            sa.put_object(Bucket="skew", Key=f"a{i}", Body=b"a first")
            sb.put_object(Bucket="skew", Key=f"b{i}", Body=b"b first")
            sa.put_object(Bucket="skew", Key=f"a{i}", Body=f"a last {i}".encode())
            sb.put_object(Bucket="skew", Key=f"b{i}", Body=f"b last {i}".encode())
            sa.put_object(Bucket="skew", Key=f"a-del{i}", Body=b"deleted by a")
            sb.put_object(Bucket="skew", Key=f"b-del{i}", Body=b"deleted by b")
            sa.delete_object(Bucket="skew", Key=f"a-del{i}")
            sb.delete_object(Bucket="skew", Key=f"b-del{i}")
            # One key written on both sides, without waiting.
            sb.put_object(Bucket="skew", Key=f"both{i}", Body=b"from b")
            sa.put_object(Bucket="skew", Key=f"both{i}", Body=b"from a")
        # B (slow clock) writes over A's key once it has seen A's write:
        # the clock that took A's stamp in orders B's write after it.
        sa.put_object(Bucket="skew", Key="seen", Body=b"a, ten minutes ahead")
        sa.put_object(Bucket="skew", Key="seen-then-deleted", Body=b"a")
        converge(a, b)
        sb.put_object(Bucket="skew", Key="seen", Body=b"b, after seeing a's")
        sb.delete_object(Bucket="skew", Key="seen-then-deleted")
        final = converge(a, b)
        assert final["skew"]
        for srv in (a, b):
            for i in range(5):
                assert body(srv, "skew", f"a{i}") == f"a last {i}".encode()
                assert body(srv, "skew", f"b{i}") == f"b last {i}".encode()
                assert body(srv, "skew", f"a-del{i}") is None
                assert body(srv, "skew", f"b-del{i}") is None
            assert body(srv, "skew", "seen") == b"b, after seeing a's"
            assert body(srv, "skew", "seen-then-deleted") is None
        # Where both wrote, the current version is the one with the larger
        # stamp, the same on both.
        stamps_a, stamps_b = current_stamps(a, "skew"), current_stamps(b, "skew")
        assert stamps_a == stamps_b
        site_a = site_of(a)
        with contextlib.closing(db(a)) as conn:
            for i in range(5):
                hlc, site, _ = stamps_a[f"both{i}"]
                expect = b"from a" if site == site_a else b"from b"
                assert body(a, "skew", f"both{i}") == body(b, "skew", f"both{i}") == expect
                rows = conn.execute(
                    "SELECT hlc, site FROM versions WHERE bucket = 'skew' AND key = ? "
                    "AND delete_marker = 0", (f"both{i}",),
                ).fetchall()  # fmt: skip
                assert len(rows) == 2 and (hlc, site) == max(rows)
        validate(a, b)


def test_partitioned_site_comes_back_and_all_converge(tmp_path: Path) -> None:
    """Three sites, each pulling from the other two. One is killed (-9) while
    the other two take writes, then restarted; everyone writes; all three
    end identical."""
    pa, pb, pc = port(), port(), port()
    a = node(tmp_path, "a", pa, "--repl-remote", f"{url(pb)},{url(pc)}")
    b = node(tmp_path, "b", pb, "--repl-remote", f"{url(pa)},{url(pc)}")
    c = node(tmp_path, "c", pc, "--repl-remote", f"{url(pa)},{url(pb)}")
    handles = [a, b, c]
    with running(a, b, c), contextlib.ExitStack() as later:
        later.callback(lambda: [h.close() for h in handles])
        a.s3().create_bucket(Bucket="mesh")
        converge(a, b, c)
        stop = threading.Event()
        written: list[str] = []

        def writer(srv: SeglakeServer, name: str) -> None:
            s3 = srv.s3(max_attempts=3)
            for i in range(400):
                if stop.is_set():
                    return
                key = f"{name}-{i:03d}"
                s3.put_object(Bucket="mesh", Key=key, Body=key.encode() * 3000)
                written.append(key)
                time.sleep(0.02)

        threads = [threading.Thread(target=writer, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            c.kill()  # mid-stream: its pulls and the others' pulls from it cut
            time.sleep(2.0)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert written
        c = restart(c)
        handles.append(c)
        for name, srv in (("a", a), ("b", b), ("c", c)):
            s3 = srv.s3()
            s3.put_object(Bucket="mesh", Key=f"after-{name}", Body=name.encode() * 70_000)
            s3.put_object(Bucket="mesh", Key="all", Body=f"last from {name}".encode())
        final = converge(a, b, c, timeout=60)
        keys = {r[0] for r in final["mesh"]}
        assert set(written) | {"after-a", "after-b", "after-c", "all"} <= keys
        validate(a, b)
        validate(a, c)


def test_copy_multipart_tags_and_locks_replicate(tmp_path: Path) -> None:
    """A copy of a 64 MiB object reaches B without its chunks crossing
    twice; a multipart upload, tags, ACL, retention and legal hold arrive,
    and B enforces the lock."""
    pa, pb = port(), port()
    a = node(tmp_path, "a", pa)
    b = node(tmp_path, "b", pb, "--repl-remote", url(pa))
    with running(a, b):
        sa, sb = a.s3(), b.s3()
        sa.create_bucket(Bucket="objs", ObjectLockEnabledForBucket=True)
        big = os.urandom(64 * MIB)  # no repeats: its chunks do not dedupe
        sa.put_object(Bucket="objs", Key="big", Body=big)
        converge(a, b)
        before = pulled_bytes(b)
        assert before >= 64 * MIB
        sa.copy_object(Bucket="objs", Key="big-copy", CopySource={"Bucket": "objs", "Key": "big"})
        parts = [b"p" * (5 * MIB), b"q" * (5 * MIB), b"r" * 1000]
        multipart(sa, "objs", "mp", parts)
        sa.put_object_tagging(Bucket="objs", Key="mp",
                              Tagging={"TagSet": [{"Key": "colour", "Value": "blue"}]})  # fmt: skip
        sa.put_object_acl(Bucket="objs", Key="mp", ACL="authenticated-read")
        until = time.time() + 3600
        locked = sa.put_object(Bucket="objs", Key="locked", Body=b"keep me",
                               ObjectLockMode="GOVERNANCE",
                               ObjectLockRetainUntilDate=until)["VersionId"]  # fmt: skip
        held = sa.put_object(Bucket="objs", Key="held", Body=b"hold me")["VersionId"]
        sa.put_object_legal_hold(Bucket="objs", Key="held", VersionId=held,
                                 LegalHold={"Status": "ON"})  # fmt: skip
        deadline = time.monotonic() + CONVERGE_S
        while True:
            converge(a, b)
            try:
                hold = sb.get_object_legal_hold(Bucket="objs", Key="held", VersionId=held)
                if hold["LegalHold"]["Status"] == "ON":
                    break
            except sb.exceptions.ClientError:
                pass
            assert time.monotonic() < deadline, "legal hold did not arrive"
            time.sleep(0.3)
        after = pulled_bytes(b)
        # The copy shares the original's chunks: only the multipart parts and
        # the small objects crossed (not 64 MiB more).
        assert after - before < 11 * MIB, (before, after)
        assert sb.get_object(Bucket="objs", Key="big-copy")["Body"].read() == big
        assert sb.get_object(Bucket="objs", Key="mp")["Body"].read() == b"".join(parts)
        assert sb.get_object_tagging(Bucket="objs", Key="mp")["TagSet"] == [
            {"Key": "colour", "Value": "blue"}
        ]
        grants = sb.get_object_acl(Bucket="objs", Key="mp")["Grants"]
        assert any(g["Grantee"].get("URI", "").endswith("/AuthenticatedUsers") and g["Permission"] == "READ"
                   for g in grants)  # fmt: skip
        ret = sb.get_object_retention(Bucket="objs", Key="locked", VersionId=locked)["Retention"]
        assert ret["Mode"] == "GOVERNANCE" and abs(ret["RetainUntilDate"].timestamp() - until) < 2
        for key, vid in (("locked", locked), ("held", held)):
            try:
                sb.delete_object(Bucket="objs", Key=key, VersionId=vid)
            except sb.exceptions.ClientError as e:
                assert e.response["Error"]["Code"] == "AccessDenied", e.response
            else:
                raise AssertionError(f"delete of locked {key} allowed on B")
        validate(a, b)


@pytest.mark.parametrize("point", [
    "repl_apply.before_commit",  # the puller's writer: segments flushed, rows not committed
    "repl_apply.after_commit",  # the puller's writer: committed, no reply sent
])  # fmt: skip
def test_kill_9_of_the_pullers_writer_mid_pull(tmp_path: Path, point: str) -> None:
    """B pulls from A while A takes writes; B's writer is killed (-9) in the
    commit of a ReplApply batch. After its restart the pull resumes: one
    version row per uid, one oplog row per origin stamp, and every object A
    acknowledged reads back byte for byte on B."""
    pa, pb = port(), port()
    a = node(tmp_path, "a", pa)
    marker = tmp_path / "fired"
    b = node(tmp_path, "b", pb, "--repl-remote", url(pa), "--repl-limit", "5",
             env={"SEGLAKE_FAILPOINTS": f"{point}=kill@3:{marker}"})  # fmt: skip
    with running(a, b):
        sa = a.s3(max_attempts=3)
        sa.create_bucket(Bucket="killw")
        acked: dict[str, bytes] = {}
        for i in range(24):
            data = os.urandom(200_000 + i)
            sa.put_object(Bucket="killw", Key=f"k{i:02d}", Body=data)
            acked[f"k{i:02d}"] = data
            if i % 6 == 5:
                time.sleep(0.5)  # let B pull between bursts: the kill falls mid-stream
        final = converge(a, b)
        assert marker.exists()
        assert sorted(r[0] for r in final["killw"]) == sorted(acked)
        for key, data in acked.items():
            assert body(b, "killw", key) == data
        with contextlib.closing(db(b)) as conn:
            dup = conn.execute(
                "SELECT uid, count(*) FROM versions GROUP BY uid HAVING count(*) > 1"
            ).fetchall()
            assert dup == []
            site_a = site_of(a)
            relayed = conn.execute(
                "SELECT hlc, op, bucket, key, uid FROM oplog WHERE site = ? ORDER BY seq", (site_a,)
            ).fetchall()
        with contextlib.closing(db(a)) as conn:
            origin = conn.execute(
                "SELECT hlc, op, bucket, key, uid FROM oplog WHERE site = ? ORDER BY seq", (site_a,)
            ).fetchall()
        # Every entry of A's exactly once on B, in A's order.
        assert relayed == origin
        with contextlib.closing(db(b)) as conn:
            (n,) = conn.execute("SELECT count(*) FROM versions WHERE bucket = 'killw'").fetchone()
            assert n == len(acked)
        validate(a, b)


def _push_state(srv: SeglakeServer) -> tuple[object, ...]:
    """What a refused push must leave unchanged."""
    with contextlib.closing(db(srv)) as conn:
        return (
            conn.execute("SELECT count(*), ifnull(max(seq), 0) FROM oplog").fetchone(),
            conn.execute("SELECT count(*) FROM versions").fetchone(),
            conn.execute("SELECT * FROM repl_inbound ORDER BY 1").fetchall(),
            conn.execute("SELECT count(*) FROM chunk_index").fetchone(),
        )


@pytest.mark.parametrize(("lie", "refusal"), [
    ("unknown-digest", (409, "ReplicationMissingChunk")),  # neither held nor sent
    ("wrong-length", (409, "ReplicationMissingChunk")),  # held and sent at another length
])  # fmt: skip
def test_push_of_a_manifest_naming_absent_data_is_refused(
    tmp_path: Path, lie: str, refusal: tuple[int, str]
) -> None:
    """A pushed version whose manifest names a chunk neither held by the
    receiver nor sent with the batch (a digest nobody has, in a segment that
    does not exist), or a held chunk with another length: refused with its
    code, nothing applied; the honest batch then applies."""
    import dataclasses

    import msgspec
    import trio

    from seglake.format.manifest import decode_manifest, encode_manifest
    from seglake.protocol import repl_entries
    from seglake.protocol.repl_wire import PushBatch
    from seglake.repl.client import ReplClient, ReplHTTPError
    from tests.harness import ACCESS_KEY, SECRET_KEY

    a = node(tmp_path, "a", port())
    b = node(tmp_path, "b", port())
    with running(a, b):
        sa = a.s3()
        sa.create_bucket(Bucket="lies")
        for i in range(3):
            sa.put_object(Bucket="lies", Key=f"k{i}", Body=os.urandom(100_000 + i))

        async def main() -> tuple[str, int]:
            ca = ReplClient(a.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
            cb = ReplClient(b.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
            try:
                page = await ca.oplog("0", 1000)
                entries = list(page.entries)
                i, e = next((i, e) for i, e in enumerate(entries) if e.op == "version")
                assert e.manifest is not None
                m = decode_manifest(e.manifest, path="test")
                digests = [c.digest for x in entries if x.op == "version" and x.manifest
                           for c in decode_manifest(x.manifest, path="t").chunks]  # fmt: skip
                chunks = await ca.chunks(digests)
                first = m.chunks[0]
                if lie == "unknown-digest":
                    forged = dataclasses.replace(first, digest=os.urandom(32), segment_id=987654)
                else:
                    forged = dataclasses.replace(first, length=first.length + 1)
                grow = forged.length - first.length  # the manifest stays self-consistent
                crafted = encode_manifest(
                    dataclasses.replace(m, size=m.size + grow, chunks=(forged, *m.chunks[1:]))
                )
                vbody = repl_entries.decode_body("version", e.body)
                assert isinstance(vbody, repl_entries.VersionBody)
                # The entry agrees with its manifest: only the chunk lies.
                fixed = repl_entries.encode_body(
                    msgspec.structs.replace(vbody, size=vbody.size + grow)
                )
                entries[i] = msgspec.structs.replace(e, manifest=crafted, body=fixed)
                batch = PushBatch(site=page.site, epoch=page.epoch, from_seq=0, to_seq=page.next,
                                  entries=entries)  # fmt: skip
                frames = [(d, chunks[d]) for d in digests]
                before = _push_state(b)
                try:
                    await cb.push(batch, frames)
                except ReplHTTPError as exc:
                    refused = (exc.code, exc.status)
                    assert ("not held here" if lie == "unknown-digest" else "another length") in (
                        exc.message
                    )
                else:
                    raise AssertionError("a manifest naming absent data was applied")
                assert _push_state(b) == before
                honest = PushBatch(site=page.site, epoch=page.epoch, from_seq=0,
                                   to_seq=page.next, entries=page.entries)  # fmt: skip
                done = await cb.push(honest, frames)
                assert done.applied == len(page.entries)
                return refused
            finally:
                await ca.aclose()
                await cb.aclose()

        code, status = trio.run(main)
        assert (status, code) == refusal
        converge(a, b)


def test_replayed_one_shot_pull_applies_nothing_twice(tmp_path: Path) -> None:
    """A one-shot pull from seq 0, then the same range asked again with
    -repl-since (refused: the cursor moves only with the entries) and without
    (nothing applied): one version row per source version."""
    from tests.e2e.test_replication import repl_once, seglake
    from tests.harness import ACCESS_KEY, SECRET_KEY

    pa = port()
    a = node(tmp_path, "a", pa)
    with running(a):
        sa = a.s3()
        sa.create_bucket(Bucket="replay")
        for i in range(10):
            sa.put_object(Bucket="replay", Key=f"k{i}", Body=os.urandom(50_000))
        sa.delete_object(Bucket="replay", Key="k3")
        d = tmp_path / "d"
        first = repl_once("repl-pull", d, url(pa), "-repl-since", "0")
        assert first["remotes"][0]["applied"] >= 12
        before = _push_state_dir(d)
        with contextlib.closing(db(a)) as conn:
            (epoch,) = conn.execute(
                "SELECT value FROM settings WHERE name = 'oplog_epoch'"
            ).fetchone()
        again = seglake("-mode", "repl-pull", "-data-dir", str(d), "-repl-remote", url(pa),
                        "-repl-since", f"{epoch}:0", "-repl-access-key", ACCESS_KEY,
                        "-repl-secret-key", SECRET_KEY)  # fmt: skip
        assert again.returncode == 2 and "it moves only with the entries" in again.stderr
        third = repl_once("repl-pull", d, url(pa))
        assert third["remotes"][0]["applied"] == 0
        assert _push_state_dir(d) == before
        with contextlib.closing(db(a)) as conn:
            src = sorted(conn.execute("SELECT uid FROM versions").fetchall())
        with contextlib.closing(sqlite3.connect(d / layout.DB_FILE)) as conn:
            dst = sorted(conn.execute("SELECT uid FROM versions").fetchall())
        assert src == dst and len(dst) == len(set(dst)) == 11


def _push_state_dir(d: Path) -> tuple[object, ...]:
    with contextlib.closing(sqlite3.connect(d / layout.DB_FILE)) as conn:
        return (
            conn.execute("SELECT count(*), ifnull(max(seq), 0) FROM oplog").fetchone(),
            conn.execute("SELECT count(*) FROM versions").fetchone(),
            conn.execute("SELECT remote, site, epoch, pull_cursor FROM repl_remotes").fetchall(),
        )
