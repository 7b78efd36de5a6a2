"""GET /v1/replication/snapshot against the real server: a store with
buckets, versions, delete markers, deleted versions, tags/ACL/lock and an
SSE object; the stream decoded and checked item by item against meta.db
and the oplog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

from seglake.auth.canonical import canonical_id
from seglake.format.manifest import decode_manifest
from seglake.format.vmeta import decode_vmeta
from seglake.protocol import repl_entries as re_
from seglake.protocol.repl_snapshot import SnapshotDecoder, SnapshotEnd
from seglake.protocol.repl_wire import Entry
from seglake.repl.client import ReplClient
from tests.e2e._helpers import db_rows
from tests.e2e._signing import signed_request
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer

VB = "snap-versioned"
LB = "snap-locked"
UB = "snap-plain"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeglakeServer]:
    root = tmp_path_factory.mktemp("snapshot")
    with SeglakeServer(root / "data", frontends=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def store(server: SeglakeServer) -> dict[str, Any]:
    """Writes the store once; what each test checks against."""
    s3 = server.s3()
    s3.create_bucket(Bucket=VB)
    s3.put_bucket_versioning(Bucket=VB, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket=VB, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    v1 = s3.put_object(Bucket=VB, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=VB, Key="k", Body=b"two!", Tagging="color=blue")["VersionId"]
    s3.put_object_acl(Bucket=VB, Key="k", VersionId=v2, GrantRead=f"id={canonical_id(ACCESS_KEY)}")
    gone = s3.put_object(Bucket=VB, Key="gone", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket=VB, Key="gone")["VersionId"]
    s3.delete_object(Bucket=VB, Key="k", VersionId=v1)  # the row stays, DELETED
    sse = s3.put_object(Bucket=VB, Key="secret", Body=b"s" * 100, ServerSideEncryption="AES256")
    s3.create_bucket(Bucket=LB, ObjectLockEnabledForBucket=True)
    locked = s3.put_object(Bucket=LB, Key="held", Body=b"h", ObjectLockLegalHoldStatus="ON")[
        "VersionId"
    ]
    s3.create_bucket(Bucket=UB)
    s3.put_object(Bucket=UB, Key="p", Body=b"p1")
    s3.put_object(Bucket=UB, Key="p", Body=b"p2")
    return {"v1": v1, "v2": v2, "gone": gone, "marker": marker,
            "sse": sse["VersionId"], "locked": locked}  # fmt: skip


def _snapshot(server: SeglakeServer) -> tuple[list[Entry], SnapshotEnd, int]:
    """Every item of the snapshot and the oplog head read right after."""

    async def main() -> tuple[list[Entry], SnapshotEnd, int]:
        client = ReplClient(server.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        dec = SnapshotDecoder()
        items: list[Entry] = []
        try:
            with trio.fail_after(60):
                async with client.snapshot() as body:
                    async for piece in body:
                        items += [i for i in dec.feed(piece) if isinstance(i, Entry)]
                end = dec.close()
                page = await client.oplog("0", 1)
        finally:
            await client.aclose()
        return items, end, page.head

    return trio.run(main)


def test_snapshot_holds_the_store(server: SeglakeServer, store: dict[str, Any]) -> None:
    items, end, head = _snapshot(server)
    site = db_rows(server.data_dir, "SELECT value FROM settings WHERE name = 'site_id'")[0][0]
    epoch = db_rows(server.data_dir, "SELECT value FROM settings WHERE name = 'oplog_epoch'")[0][0]
    top = db_rows(server.data_dir, "SELECT max(seq), max(hlc) FROM oplog")[0]
    assert end == SnapshotEnd(epoch=epoch, seq=top[0], site=site, hlc=top[1])
    assert end.seq == head > 0

    # Every bucket entry precedes every version entry (the applier needs it).
    ops = [e.op for e in items]
    assert max(i for i, op in enumerate(ops) if op == "bucket") < ops.index("version")

    fields = {
        (e.bucket, e.uid): re_.decode_body("bucket", e.body)
        for e in items if e.op == "bucket"
    }  # fmt: skip
    assert fields[(VB, "versioning")] == re_.BucketBody("versioning", "enabled")
    tags = fields[(VB, "tags")]
    assert isinstance(tags, re_.BucketBody) and "team" in str(tags.value)
    assert (LB, "object_lock") in fields and (UB, "created_ns") in fields
    assert (UB, "policy") not in fields  # never set: nothing to say
    # Bucket stamps are the registers' (bucket_stamps), field by field.
    for bucket, field, hlc, origin in db_rows(
        server.data_dir, "SELECT bucket, field, hlc, site FROM bucket_stamps"
    ):
        if field in re_.BUCKET_FIELDS:
            (e,) = [x for x in items if x.op == "bucket" and (x.bucket, x.uid) == (bucket, field)]
            assert (e.hlc, e.site) == (hlc, origin)

    versions = {e.uid: e for e in items if e.op == "version"}
    rows = db_rows(
        server.data_dir,
        "SELECT uid, bucket, key, hlc, site, state, manifest, vmeta FROM versions",
    )
    assert {r[0] for r in rows} == set(versions)
    for uid, bucket, key, hlc, origin, _state, manifest, vmeta in rows:
        e = versions[uid]
        assert (e.bucket, e.key, e.hlc, e.site, e.manifest) == (bucket, key, hlc, origin, manifest)
        body = re_.decode_body("version", e.body)
        assert isinstance(body, re_.VersionBody) and body.vmeta == vmeta
        assert decode_manifest(e.manifest or b"", path="t").key == key

    states = {e.uid: e for e in items if e.op == "state"}
    deleted = {r[0] for r in rows if r[5] == "DELETED"}
    assert store["v1"] in deleted
    assert set(states) == deleted
    # A state entry carries the stamp of the oplog's own state entry.
    for uid, e in states.items():
        (stamp,) = db_rows(
            server.data_dir, "SELECT hlc, site FROM oplog WHERE op = 'state' AND uid = ?", (uid,)
        )
        assert (e.hlc, e.site) == tuple(stamp)

    marker = re_.decode_body("version", versions[store["marker"]].body)
    assert isinstance(marker, re_.VersionBody) and marker.delete_marker

    v2 = re_.decode_body("version", versions[store["v2"]].body)
    assert isinstance(v2, re_.VersionBody)
    meta = decode_vmeta(v2.vmeta)
    assert meta.tags == (("color", "blue"),) and meta.acl is not None
    # The ACL change came after the put: a vmeta entry at its oplog stamp.
    (vm,) = [e for e in items if e.op == "vmeta" and e.uid == store["v2"]]
    (newest,) = db_rows(
        server.data_dir,
        "SELECT hlc, site FROM oplog WHERE op = 'vmeta' AND uid = ? ORDER BY hlc DESC LIMIT 1",
        (store["v2"],),
    )
    assert (vm.hlc, vm.site) == tuple(newest)

    held = re_.decode_body("version", versions[store["locked"]].body)
    assert isinstance(held, re_.VersionBody) and decode_vmeta(held.vmeta).legal_hold

    sse_manifest = decode_manifest(versions[store["sse"]].manifest or b"", path="t")
    assert "sse" in sse_manifest.meta
    keks = [re_.decode_body("kek", e.body) for e in items if e.op == "kek"]
    kek_ids = {r[0] for r in db_rows(server.data_dir, "SELECT id FROM sse_keks")}
    assert kek_ids and {k.id for k in keks if isinstance(k, re_.KekBody)} == kek_ids


def test_snapshot_ends_at_the_oplog_head_while_writes_go_on(
    server: SeglakeServer, store: dict[str, Any]
) -> None:
    server.s3().put_object(Bucket=VB, Key="later", Body=b"l")
    items, end, head = _snapshot(server)
    assert end.seq == head
    assert any(e.op == "version" and e.key == "later" for e in items)


def test_unsigned_and_wrong_method_are_refused(server: SeglakeServer) -> None:
    import httpx

    r = httpx.get(server.endpoint + "/v1/replication/snapshot")
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    r = signed_request(server, "POST", "/v1/replication/snapshot")
    assert r.status_code in (400, 405) and b"<Code>" in r.content


def test_keyset_batches_do_not_change_the_snapshot(
    server: SeglakeServer, store: dict[str, Any]
) -> None:
    """Batches of one row walk every keyset boundary (gone stamps, buckets,
    KEKs, versions merged with the oplog's stamps) and give the same items."""
    from seglake.meta.schema import open_read
    from seglake.meta.snapshot_reads import snapshot_items

    s3 = server.s3()
    s3.create_bucket(Bucket="snap-gone")
    s3.delete_bucket(Bucket="snap-gone")
    s3.create_bucket(Bucket="snap-again")
    s3.delete_bucket(Bucket="snap-again")
    s3.create_bucket(Bucket="snap-again")  # recreated: its gone stamp and its fields
    conn = open_read(str(server.data_dir / "meta.db"))
    try:
        whole = list(snapshot_items(conn))
        one_by_one = list(snapshot_items(conn, batch=1))
        # Abandoned half way: the read transaction ends, the connection is reusable.
        it = snapshot_items(conn, batch=1)
        next(it), next(it)
        it.close()
        assert list(snapshot_items(conn, batch=3)) == whole
    finally:
        conn.close()
    assert one_by_one == whole
    assert isinstance(whole[-1], SnapshotEnd)
    entries = [e for e in whole if isinstance(e, Entry)]
    gone = [e.bucket for e in entries if e.op == "bucket_gone"]
    assert gone == ["snap-again", "snap-gone"]
    again = [e for e in entries if e.bucket == "snap-again"]
    assert again[0].op == "bucket_gone" and all(e.hlc > again[0].hlc for e in again[1:])


def test_only_a_whole_store_replication_key_may_read_it(server: SeglakeServer) -> None:
    import json
    import subprocess
    import sys

    from seglake.repl.client import ReplHTTPError

    read_policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "seglake:ReplicationRead", "Resource": "*"}]})  # fmt: skip
    keys = {"snaprw": "rw", "snapread": read_policy, "snapbound": read_policy}

    def cli(*args: str) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "seglake.cli", *args, "-data-dir", str(server.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr

    for key, policy in keys.items():
        cli("-mode", "keys", "-keys-action", "create", f"-key-access={key}",
            f"-key-secret={key}-secret-1", f"-key-policy={policy}")  # fmt: skip
    cli("-mode", "keys", "-keys-action", "allow-bucket", "-key-access=snapbound",
        f"-key-bucket={VB}")  # fmt: skip

    async def fetch(key: str) -> tuple[int, str] | int:
        client = ReplClient(server.endpoint, access_key=key, secret_key=f"{key}-secret-1")
        try:
            with trio.fail_after(30):
                async with client.snapshot() as body:
                    n = 0
                    async for piece in body:
                        n += len(piece)
                    return n
        except ReplHTTPError as exc:
            return exc.status, exc.code
        finally:
            await client.aclose()

    assert trio.run(fetch, "snaprw") == (403, "AccessDenied")
    assert trio.run(fetch, "snapbound") == (403, "AccessDenied")
    got = trio.run(fetch, "snapread")
    assert isinstance(got, int) and got > 0
