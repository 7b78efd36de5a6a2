"""The local side of replication (docs/design-replication.md §1, §2, §4, §5):
after S3 operations through boto3 on the real server, ``meta.db`` (opened
read-only) holds HLC stamps on every version, one oplog row per replicated
mutation with the body its op defines, bucket registers and the chunk
index; the clock never goes back across kill -9 and a clock set back;
``--site-id`` is refused on a store with data; rebuild-index restores the
stamps; a store from before the oplog gets one, in its old order.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import apsw
import blake3
import pytest

from seglake.format.manifest import decode_manifest
from seglake.meta import repl_reads
from seglake.meta.schema import open_read
from seglake.protocol import repl_entries, repl_wire
from seglake.protocol.hlc import physical_ms
from tests.e2e._helpers import cli, cli_json, db_rows
from tests.e2e.test_gc import body_for, quiesced_gc
from tests.harness import SeglakeServer, ServerError

SITE = "0123456789abcdef"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "v2-store.tar.gz"
TEST_MODE = {"SEGLAKE_TEST_MODE": "1"}


def oplog(data: Path) -> list[tuple[Any, ...]]:
    return db_rows(
        data, "SELECT seq, hlc, site, op, bucket, key, uid, body FROM oplog ORDER BY seq"
    )


def bodies(rows: list[tuple[Any, ...]]) -> list[tuple[str, str, Any, Any]]:
    return [(r[3], r[4], r[5], repl_entries.decode_body(r[3], r[7])) for r in rows]


def stamps_per_key(data: Path) -> dict[tuple[str, str], list[tuple[int, str]]]:
    out: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for bucket, key, hlc, site in db_rows(
        data, "SELECT bucket, key, hlc, site FROM versions ORDER BY created_ns"
    ):
        out.setdefault((bucket, key), []).append((hlc, site))
    return out


def assert_stamps_increase(data: Path) -> None:
    """Per key, in write order, stamps strictly increase; each version's
    prev is the stamp of the version written before it (when it was current)."""
    for (bucket, key), stamps in stamps_per_key(data).items():
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), (bucket, key, stamps)


def test_oplog_of_s3_operations(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=["--site-id", SITE]) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="ver")
        v1 = s3.put_object(Bucket="ver", Key="k", Body=b"one")["VersionId"]
        v2 = s3.put_object(Bucket="ver", Key="k", Body=b"two" * 1000)["VersionId"]
        marker = s3.delete_object(Bucket="ver", Key="k")["VersionId"]
        s3.delete_object(Bucket="ver", Key="k", VersionId=v1)
        s3.put_object_tagging(
            Bucket="ver", Key="k", VersionId=v2, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
        )
        s3.put_bucket_tagging(Bucket="ver", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
        s3.copy_object(
            Bucket="ver", Key="copy", CopySource={"Bucket": "ver", "Key": "k", "VersionId": v2}
        )
        srv.stop()
    assert db_rows(data, "SELECT value FROM settings WHERE name = 'site_id'") == [(SITE,)]
    rows = oplog(data)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert {r[2] for r in rows} == {SITE}
    # identity: unique (site, hlc, op, bucket, uid)
    assert len({(r[2], r[1], r[3], r[4], r[6]) for r in rows}) == len(rows)
    got = bodies(rows)
    ops = [g[0] for g in got]
    bucket_fields = [g[3].field for g in got if g[0] == "bucket"]
    assert {"created_ns", "versioning", "tags"} <= set(bucket_fields), bucket_fields
    assert bucket_fields.count("tags") == 1 and bucket_fields.count("versioning") == 1
    versions = [g for g in got if g[0] == "version"]
    assert [(v[2], v[3].version_id, v[3].delete_marker) for v in versions] == [
        ("k", v1, False), ("k", v2, False), ("k", marker, True), ("copy", versions[3][3].version_id, False),
    ]  # fmt: skip
    assert versions[0][3].prev is None
    # each version's prev is the stamp of the one it replaced
    by_uid = {r[6]: (r[1], r[2]) for r in rows if r[3] == "version"}
    uid_of = {vid: uid for uid, vid in db_rows(data, "SELECT uid, version_id FROM versions")}
    assert versions[1][3].prev == repl_entries.Stamp(*by_uid[uid_of[v1]])
    assert versions[2][3].prev == repl_entries.Stamp(*by_uid[uid_of[v2]])
    assert versions[3][3].prev is None
    states = [r for r in rows if r[3] == "state"]
    assert [s[6] for s in states] == [uid_of[v1]]
    vm = [g for g in got if g[0] == "vmeta"]
    assert len(vm) == 1 and vm[0][3].vmeta is not None
    assert ops.index("state") > ops.index("version")
    # rows hold what the oplog says
    prev_of = {g[3].version_id: g[3].prev for g in versions}
    for uid, vid, hlc, site, prev_hlc, prev_site in db_rows(
        data, "SELECT uid, version_id, hlc, site, prev_hlc, prev_site FROM versions"
    ):
        assert by_uid[uid] == (hlc, site)
        want = None if prev_hlc is None else repl_entries.Stamp(prev_hlc, prev_site)
        assert prev_of[vid] == want
    assert_stamps_increase(data)
    # bucket registers: one per field set, value as the row holds it
    regs = {
        (b, f): (h, s, v)
        for b, f, h, s, v in db_rows(
            data, "SELECT bucket, field, hlc, site, value FROM bucket_stamps"
        )
    }
    assert regs[("ver", "versioning")][2] == "enabled"
    assert regs[("ver", "tags")][2] is not None
    # the settings the clock and the pages need
    hlc_setting = int(db_rows(data, "SELECT value FROM settings WHERE name = 'hlc'")[0][0])
    assert hlc_setting >= max(r[1] for r in rows)
    # the chunk index knows every chunk of every kept version
    for uid, manifest in db_rows(
        data, "SELECT uid, manifest FROM versions WHERE state != 'DELETED' AND delete_marker = 0"
    ):
        for c in decode_manifest(manifest, path=uid, with_meta=False).chunks:
            assert db_rows(
                data,
                "SELECT segment, offset, length FROM chunk_index WHERE digest = ?",
                (c.digest,),
            ) == [(c.segment_id, c.offset, c.length)]
    # and the reads replication serves
    conn = open_read(str(data / "meta.db"))
    try:
        page = repl_reads.oplog_page(conn, 0, 1000)
        assert [e.seq for e in page.entries] == [r[0] for r in rows] and not page.more
        assert repl_wire.decode_page(repl_wire.encode(page)) == page
        two = next(e for e in page.entries if e.uid == uid_of[v2] and e.op == "version")
        assert decode_manifest(two.manifest or b"", path="x").size == 3000
        digest = blake3.blake3(b"two" * 1000).digest()
        assert repl_reads.missing_digests(conn, [digest, b"\0" * 32]) == [b"\0" * 32]
        assert repl_reads.oplog_page(conn, 0, 1000, exclude_site=SITE).entries == []
    finally:
        conn.close()


def test_unversioned_and_bucket_gone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(
        data, frontends=1, extra_args=["--default-versioning", "unversioned"]
    ) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="plain")
        s3.put_object(Bucket="plain", Key="n", Body=b"1")
        s3.put_object(Bucket="plain", Key="n", Body=b"2")
        s3.delete_object(Bucket="plain", Key="n")
        s3.delete_bucket(Bucket="plain")
        srv.stop()
    got = bodies(oplog(data))
    ops = [(g[0], g[2]) for g in got if g[0] != "bucket"]
    assert ops == [
        ("version", "n"),
        ("state", "n"),
        ("version", "n"),
        ("state", "n"),
        ("version", "n"),  # the unversioned DELETE's hidden tombstone
        ("bucket_gone", None),
    ]
    tomb = [g[3] for g in got if g[0] == "version"]
    assert [t.tombstone for t in tomb] == [False, False, True]
    assert tomb[2].delete_marker and tomb[2].version_id == "null" and tomb[2].size == 0
    assert got[-1][0] == "bucket_gone"
    assert db_rows(data, "SELECT field FROM bucket_stamps WHERE bucket = 'plain'") == [("_gone",)]
    assert_stamps_increase(data)


def test_clock_never_goes_back_across_kill_and_skew(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = SeglakeServer(
        data, frontends=1, env=TEST_MODE, extra_args=["--test-clock-offset-ms", "600000"]
    ).start()
    try:
        s3 = srv.s3()
        s3.create_bucket(Bucket="bkt")
        for i in range(3):
            s3.put_object(Bucket="bkt", Key="k", Body=b"x%d" % i)
        ahead = max(r[1] for r in oplog(data))
        srv.kill()  # kill -9 right after the acknowledgements
    finally:
        srv.close()
    # The clock is now 10 minutes behind what was stamped.
    with SeglakeServer(data, frontends=1, env=TEST_MODE) as srv2:
        s3 = srv2.s3()
        s3.put_object(Bucket="bkt", Key="k", Body=b"after")
        s3.put_object(Bucket="bkt", Key="other", Body=b"after")
        srv2.stop()
    rows = oplog(data)
    after = [r for r in rows if r[1] > ahead]
    assert len(after) == 2 and all(r[3] == "version" for r in after)
    assert physical_ms(after[0][1]) == physical_ms(ahead)  # logical counting on
    assert_stamps_increase(data)
    # the test offset is refused outside test mode
    out = cli(data, "config", "show", "--test-clock-offset-ms", "5")
    assert out.returncode != 0 and "SEGLAKE_TEST_MODE" in out.stderr


def test_site_id_only_on_an_empty_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        srv.s3().create_bucket(Bucket="bkt")
        srv.stop()
    old = db_rows(data, "SELECT value FROM settings WHERE name = 'site_id'")[0][0]
    refused = SeglakeServer(data, frontends=1, extra_args=["--site-id", SITE])
    try:
        with pytest.raises(ServerError, match="exited with 2"):
            refused.start(timeout=30)
    finally:
        refused.close()
    assert "a site id can be set only on an empty store" in (tmp_path / "data.log").read_text()
    # the same id again is fine, and nothing changed
    with SeglakeServer(data, frontends=1, extra_args=["-site-id", old]) as srv:
        srv.stop()
    assert db_rows(data, "SELECT value FROM settings WHERE name = 'site_id'") == [(old,)]
    out = cli(data, "config", "show", "--site-id", "XYZ")
    assert out.returncode != 0 and "16 lowercase hex" in out.stderr


def _replication_state(data: Path) -> dict[str, Any]:
    return {
        "versions": sorted(
            db_rows(
                data,
                "SELECT uid, hlc, site, prev_hlc, prev_site, state, state_hlc, state_site "
                "FROM versions",
            )
        ),
        "bucket_stamps": sorted(db_rows(data, "SELECT * FROM bucket_stamps")),
        "chunk_index": sorted(db_rows(data, "SELECT * FROM chunk_index")),
        "site": db_rows(data, "SELECT value FROM settings WHERE name = 'site_id'"),
    }


def test_rebuild_index_restores_stamps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=["--site-id", SITE]) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="ver")
        for i in range(3):
            s3.put_object(Bucket="ver", Key="k", Body=b"v%d" % i * 5000)
        vid = s3.put_object(Bucket="ver", Key="gone", Body=b"bye")["VersionId"]
        s3.delete_object(Bucket="ver", Key="gone", VersionId=vid)
        s3.put_bucket_tagging(Bucket="ver", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
        s3.create_bucket(Bucket="tmp")
        s3.delete_bucket(Bucket="tmp")
        srv.stop()
    before = _replication_state(data)
    before_index = list(before["chunk_index"])
    old_epoch = db_rows(data, "SELECT value FROM settings WHERE name = 'oplog_epoch'")
    old_ops = [(r[1], r[2], r[3], r[4], r[6]) for r in oplog(data)]
    assert any(v[6] is not None for v in before["versions"])  # a DELETED state's stamp
    assert any(f == "_gone" for _b, f, *_ in before["bucket_stamps"])
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, check
    out = cli(data, "rebuild-index", "--force")
    assert out.returncode == 0, out.stderr
    after = _replication_state(data)
    # The index is rebuilt from the kept versions: the deleted one's chunk
    # (still in its segment until GC) is no longer listed.
    missing = set(before.pop("chunk_index")) - set(after["chunk_index"])
    assert [m[0] for m in missing] == [blake3.blake3(b"bye").digest()]
    assert set(after.pop("chunk_index")) < set(before_index)
    assert after == before
    assert db_rows(data, "SELECT value FROM settings WHERE name = 'oplog_epoch'") != old_epoch
    # the regenerated oplog: one entry per row, HLC order, the same identities
    new = oplog(data)
    assert [r[1] for r in new] == sorted(r[1] for r in new)
    new_ops = {(r[1], r[2], r[3], r[4], r[6]) for r in new}
    live_versions = {o for o in old_ops if o[2] == "version"}
    assert {o for o in new_ops if o[2] == "version"} == live_versions
    assert {o for o in new_ops if o[2] == "state"} == {o for o in old_ops if o[2] == "state"}
    hlc_setting = int(db_rows(data, "SELECT value FROM settings WHERE name = 'hlc'")[0][0])
    assert hlc_setting >= max(r[1] for r in new)
    with SeglakeServer(data, frontends=1) as srv:
        srv.s3().put_object(Bucket="ver", Key="k", Body=b"after rebuild")
        srv.stop()
    assert_stamps_increase(data)
    assert max(r[1] for r in oplog(data)) > hlc_setting


def test_a_store_from_before_the_oplog_gets_one_in_its_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(data, filter="data")
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.put_object(Bucket="versioned", Key="k0", Body=b"third version of k0")
        srv.stop()
    site = db_rows(data, "SELECT value FROM settings WHERE name = 'site_id'")[0][0]
    assert len(db_rows(data, "SELECT value FROM settings WHERE name = 'oplog_epoch'")[0][0]) == 16
    # creation order and stamp order agree for every migrated version
    rows = db_rows(data, "SELECT created_ns, hlc, site FROM versions ORDER BY created_ns")
    assert [r[1] for r in rows] == sorted(r[1] for r in rows) and {r[2] for r in rows} == {site}
    assert len({r[1] for r in rows}) == len(rows)
    ops = oplog(data)
    versions = db_rows(data, "SELECT uid FROM versions")
    assert {r[6] for r in ops if r[3] == "version"} == {v[0] for v in versions}
    deleted = db_rows(data, "SELECT uid FROM versions WHERE state = 'DELETED'")
    assert {r[6] for r in ops if r[3] == "state"} == {d[0] for d in deleted}
    # the old rows' entries come first, in HLC order, then the new put
    assert ops[-1][3] == "version" and ops[-1][5] == "k0"
    assert [r[1] for r in ops[:-1]] == sorted(r[1] for r in ops[:-1])
    fields = {(r[4], r[6]) for r in ops if r[3] == "bucket"}
    assert {("versioned", "versioning"), ("plain", "versioning"), ("versioned", "policy")} <= fields
    # every kept chunk was indexed by the one-time backfill
    assert db_rows(data, "SELECT value FROM settings WHERE name = 'chunk_index_ready'") == [("1",)]
    assert db_rows(data, "SELECT count(*) FROM chunk_index")[0][0] > 0
    assert_stamps_increase(data)
    code, fsck = cli_json(data, "fsck")
    assert code == 0 and fsck["clean"], fsck["errors"]


def _index_matches_manifests(data: Path) -> None:
    """Every chunk of every kept version is indexed, at a place holding it."""
    index = {bytes(d): (s, o, n) for d, s, o, n in db_rows(data, "SELECT * FROM chunk_index")}
    for uid, manifest in db_rows(
        data, "SELECT uid, manifest FROM versions WHERE state != 'DELETED' AND delete_marker = 0"
    ):
        for c in decode_manifest(manifest, path=uid, with_meta=False).chunks:
            assert c.digest in index, uid
            assert index[c.digest][2] == c.length
    segments = {int(r[0]) for r in db_rows(data, "SELECT id FROM segments")}
    assert {s for s, _o, _n in index.values()} <= segments


def test_gc_keeps_the_chunk_index_true_and_fsck_checks_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=["--segment-max-bytes", "256KiB"]) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="gcb")
        s3.put_bucket_versioning(Bucket="gcb", VersioningConfiguration={"Status": "Suspended"})
        keep = body_for("keep", 30 * 1024)
        s3.put_object(Bucket="gcb", Key="keep", Body=keep)
        for i in range(12):  # fill and then empty a few segments
            s3.put_object(Bucket="gcb", Key=f"junk{i}", Body=body_for(f"j{i}", 60 * 1024))
        for i in range(12):
            s3.delete_object(Bucket="gcb", Key=f"junk{i}")
        before = db_rows(data, "SELECT segment, offset FROM chunk_index WHERE digest = ?",
                         (blake3.blake3(keep).digest(),))  # fmt: skip
        quiesced_gc(data)
        after = db_rows(data, "SELECT segment, offset FROM chunk_index WHERE digest = ?",
                        (blake3.blake3(keep).digest(),))  # fmt: skip
        assert len(after) == 1 and after != before  # moved by gc-rewrite, re-pointed
        assert s3.get_object(Bucket="gcb", Key="keep")["Body"].read() == keep
        assert srv.stop() == 0
    _index_matches_manifests(data)
    code, fsck = cli_json(data, "fsck")
    assert code == 0 and fsck["clean"], fsck["errors"]
    # an entry pointing where its chunk is not: fsck says so
    conn = apsw.Connection(str(data / "meta.db"))
    try:
        seg, off = after[0]
        conn.execute("INSERT INTO chunk_index VALUES (?, ?, ?, 7)", (b"\x01" * 32, seg, off))
    finally:
        conn.close()
    code, fsck = cli_json(data, "fsck")
    assert code != 0 and [e["kind"] for e in fsck["errors"]] == ["chunk-index-wrong"], fsck
