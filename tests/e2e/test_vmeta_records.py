"""Per-version metadata in the writer (migration 8, segment format 3).

Driven through the writer's own socket (the S3 calls that use it are the
tagging/ACL/lock work's): ``SetVersionMeta`` changes survive a kill -9 of the
whole server and a ``rebuild-index`` from a deleted ``meta.db``, creation-time
metadata rides on Put/CopyObject/CreateUpload, bucket settings ride in bucket
records, ``rebuild-index --dry-run`` compares all of it, and GC copies
version-meta records forward as the database has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import msgpack
import pytest
import trio

from seglake.audit.replay import replay
from seglake.auth.canonical import canonical_id
from seglake.errors import S3Error
from seglake.format import segment as segfmt
from seglake.format.records import decode_record
from seglake.format.vmeta import decode_vmeta
from seglake.ipc.call import call_writer
from seglake.ipc.messages import (
    CopyObject,
    CreateUpload,
    Put,
    Request,
    Retention,
    SetBucketConfig,
    SetVersionMeta,
    VersionMetaInit,
)
from tests.e2e._helpers import cli, cli_json, db_rows
from tests.e2e.test_gc import body_for, maintenance
from tests.harness import ACCESS_KEY, SeglakeServer

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
COLS = "vmeta, tag_count, lock_mode, lock_until_ms, legal_hold"


def writer(data: Path, msg: Request[Any]) -> Any:
    return trio.run(call_writer, str(data / ".seglake-writer.sock"), msg)


def vmeta_of(data: Path, bucket: str, key: str, version_id: str | None = None) -> tuple[Any, ...]:
    """(decoded vmeta, tag_count, lock_mode, lock_until_ms, legal_hold)."""
    if version_id is None:
        rows = db_rows(
            data,
            f"SELECT {COLS} FROM current c JOIN versions v ON v.id = c.version "
            "WHERE c.bucket = ? AND c.key = ?",
            (bucket, key),
        )
    else:
        rows = db_rows(
            data,
            f"SELECT {COLS} FROM versions WHERE bucket = ? AND key = ? AND version_id = ?",
            (bucket, key, version_id),
        )
    assert len(rows) == 1, rows
    blob, *rest = rows[0]
    return (decode_vmeta(blob), *rest)


def all_vmeta(data: Path) -> list[tuple[Any, ...]]:
    return db_rows(data, f"SELECT uid, {COLS} FROM versions ORDER BY uid")


def rebuild_from_scratch(data: Path) -> None:
    """Delete meta.db (and its WAL) and rebuild it from the segments."""
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (data / name).unlink(missing_ok=True)
    out = cli(data, "rebuild-index")
    assert out.returncode == 0, out.stdout + out.stderr


def test_set_version_meta_survives_kill_and_rebuild(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = SeglakeServer(data, frontends=1).start()
    try:
        s3 = srv.s3()
        s3.create_bucket(Bucket="vbk")
        s3.put_bucket_versioning(Bucket="vbk", VersioningConfiguration={"Status": "Enabled"})
        s3.create_bucket(Bucket="plain")
        s3.put_bucket_versioning(Bucket="plain", VersioningConfiguration={"Status": "Suspended"})
        v1 = s3.put_object(Bucket="vbk", Key="k", Body=b"one")["VersionId"]
        v2 = s3.put_object(Bucket="vbk", Key="k", Body=b"two")["VersionId"]
        s3.put_object(Bucket="plain", Key="n", Body=b"null")
        s3.put_object(Bucket="vbk", Key="gone", Body=b"x")
        marker = s3.delete_object(Bucket="vbk", Key="dm")["VersionId"]

        # The current version by default; the reply names it.
        got = writer(data, SetVersionMeta(bucket="vbk", key="k", tags=[("a", "1"), ("b", "")]))
        assert got.version_id == v2
        got = writer(
            data,
            SetVersionMeta(
                bucket="vbk", key="k", version_id=v1, acl={"canned": "public-read"},
                retention=Retention("GOVERNANCE", 4_000_000_000_000), legal_hold=True,
            ),
        )  # fmt: skip
        assert got.version_id == v1
        writer(data, SetVersionMeta(bucket="plain", key="n", version_id="null", tags=[("t", "v")]))
        # Only the fields given change.
        writer(data, SetVersionMeta(bucket="vbk", key="k", version_id=v1, tags=[("x", "y")]))
        writer(data, SetVersionMeta(bucket="vbk", key="gone", tags=[("soon", "purged")]))
        s3.delete_object(Bucket="vbk", Key="gone", VersionId=db_rows(
            data, "SELECT version_id FROM versions WHERE key = 'gone'")[0][0])  # fmt: skip
        writer(data, SetBucketConfig(bucket="vbk", field="tags", value="<Tagging/>"))
        writer(data, SetBucketConfig(bucket="plain", field="encryption", value="{}"))

        # The errors the writer decides.
        with pytest.raises(S3Error) as err:
            writer(data, SetVersionMeta(bucket="vbk", key="nope", tags=[]))
        assert err.value.code == "NoSuchKey"
        with pytest.raises(S3Error) as err:
            writer(data, SetVersionMeta(bucket="vbk", key="k", version_id="0" * 32, tags=[]))
        assert err.value.code == "NoSuchVersion"
        with pytest.raises(S3Error) as err:
            writer(data, SetVersionMeta(bucket="vbk", key="dm", version_id=marker, tags=[]))
        assert err.value.code == "MethodNotAllowed"
        with pytest.raises(S3Error) as err:
            writer(data, SetVersionMeta(bucket="vbk", key="dm", tags=[]))
        assert err.value.code == "NoSuchKey"
        with pytest.raises(S3Error) as err:
            writer(data, SetVersionMeta(bucket="nobucket", key="k", tags=[]))
        assert err.value.code == "NoSuchBucket"

        before = all_vmeta(data)
        srv.kill()  # kill -9 of every process, right after the acknowledgements
    finally:
        srv.close()

    k2 = vmeta_of(data, "vbk", "k")
    assert k2[0].tags == (("a", "1"), ("b", "")) and k2[1:] == (2, None, None, 0)
    k1 = vmeta_of(data, "vbk", "k", v1)
    assert k1[0].tags == (("x", "y"),) and k1[0].acl == {"canned": "public-read"}
    assert k1[0].lock is not None and k1[0].lock.until_ms == 4_000_000_000_000
    assert k1[1:] == (1, "GOVERNANCE", 4_000_000_000_000, 1)
    assert k1[0].rev > k2[0].rev  # every change takes a new rev
    n = vmeta_of(data, "plain", "n")
    assert n[0].tags == (("t", "v"),) and n[1] == 1

    with SeglakeServer(data, frontends=1) as srv2:  # recovery after the kill
        assert srv2.s3().get_object(Bucket="vbk", Key="k")["Body"].read() == b"two"
        assert all_vmeta(data) == before
        assert srv2.stop() == 0
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, check
    code, fsck = cli_json(data, "fsck", "--all-manifests")
    assert code == 0 and fsck["clean"], fsck["errors"]

    rebuild_from_scratch(data)
    assert all_vmeta(data) == before
    assert db_rows(data, "SELECT name, tags, encryption FROM buckets ORDER BY name") == [
        ("plain", None, "{}"),
        ("vbk", "<Tagging/>", None),
    ]
    # The dry run notices a difference in any of the new columns.
    two = db_rows(data, "SELECT uid FROM versions WHERE tag_count = 2")
    assert len(two) == 1
    conn = apsw.Connection(str(data / "meta.db"))
    conn.execute("UPDATE versions SET tag_count = 3 WHERE uid = ?", (two[0][0],))
    conn.execute("UPDATE buckets SET tags = NULL WHERE name = 'vbk'")
    conn.execute("UPDATE versions SET vmeta = NULL WHERE uid = ?", (two[0][0],))
    conn.close()
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert check["differences"] == 2, check
    # fsck sees a version whose metadata no record backs.
    code, fsck = cli_json(data, "fsck")
    assert code == 1 and [e["kind"] for e in fsck["errors"]] == ["vmeta-record-mismatch"], fsck


def test_creation_time_metadata_and_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="bkt")
        s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
        owner = canonical_id(ACCESS_KEY)
        s3.put_object(Bucket="bkt", Key="s3put", Body=b"x")
        meta = msgpack.unpackb(
            db_rows(data, "SELECT meta FROM versions WHERE key = 's3put'")[0][0], raw=False
        )
        assert meta["owner"] == owner and len(owner) == 64

        init = VersionMetaInit(tags=[("k", "v")], acl={"canned": "private"}, legal_hold=True)
        writer(data, Put(bucket="bkt", key="p", size=0, etag=EMPTY_MD5, vmeta=init, owner="o1"))
        p = vmeta_of(data, "bkt", "p")
        assert p[0].tags == (("k", "v"),) and p[0].acl == {"canned": "private"}
        assert p[1:] == (1, None, None, 1)
        # All defaults: no blob (and no record).
        writer(data, Put(bucket="bkt", key="d", size=0, etag=EMPTY_MD5, vmeta=VersionMetaInit()))
        assert db_rows(data, f"SELECT {COLS} FROM versions WHERE key = 'd'") == [
            (None, None, None, None, 0)
        ]

        # CopyObject: tags per directive, ACL/lock only from the request.
        writer(data, CopyObject(bucket="bkt", key="c1", src_bucket="bkt", src_key="p", owner="o2"))
        c1 = vmeta_of(data, "bkt", "c1")
        assert c1[0].tags == (("k", "v"),) and c1[0].acl is None and c1[4] == 0
        writer(
            data,
            CopyObject(
                bucket="bkt", key="c2", src_bucket="bkt", src_key="p", tagging_directive="REPLACE",
                vmeta=VersionMetaInit(tags=[("new", "1")]),
            ),
        )  # fmt: skip
        assert vmeta_of(data, "bkt", "c2")[0].tags == (("new", "1"),)
        writer(
            data,
            CopyObject(
                bucket="bkt", key="c3", src_bucket="bkt", src_key="p", tagging_directive="REPLACE"
            ),
        )
        assert db_rows(data, "SELECT vmeta FROM versions WHERE key = 'c3'") == [(None,)]
        metas = {
            k: msgpack.unpackb(m, raw=False).get("owner")
            for k, m in db_rows(data, "SELECT key, meta FROM versions WHERE key LIKE 'c%'")
        }
        # A write sent without an owner keeps none (not the source's).
        assert metas == {"c1": "o2", "c2": None, "c3": None}

        # CreateUpload keeps vmeta and owner; the completed version gets them.
        up = writer(
            data,
            CreateUpload(
                bucket="bkt", key="mpu", vmeta=VersionMetaInit(tags=[("m", "p")]), owner="o3"
            ),
        )
        assert db_rows(data, "SELECT owner FROM uploads") == [("o3",)]
        part = s3.upload_part(
            Bucket="bkt", Key="mpu", UploadId=up.upload_id, PartNumber=1, Body=b"part"
        )
        s3.complete_multipart_upload(
            Bucket="bkt", Key="mpu", UploadId=up.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )  # fmt: skip
        mpu = vmeta_of(data, "bkt", "mpu")
        assert mpu[0].tags == (("m", "p"),) and mpu[1] == 1
        meta = msgpack.unpackb(
            db_rows(data, "SELECT meta FROM versions WHERE key = 'mpu'")[0][0], raw=False
        )
        assert meta["owner"] == "o3"
        before = all_vmeta(data)
        assert srv.stop() == 0
    rebuild_from_scratch(data)
    assert all_vmeta(data) == before


def test_gc_carries_version_meta_forward(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SeglakeServer(data, frontends=1, extra_args=["--segment-max-bytes", "256KiB"]) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="gcb")
        s3.put_bucket_versioning(Bucket="gcb", VersioningConfiguration={"Status": "Suspended"})
        keep = body_for("keep", 30 * 1024)
        s3.put_object(Bucket="gcb", Key="keep", Body=keep)
        writer(data, SetVersionMeta(bucket="gcb", key="keep", tags=[("color", "red")]))
        # A tagged version that dies: its record must not come back.
        s3.put_object(Bucket="gcb", Key="dies", Body=body_for("dies", 1024))
        writer(data, SetVersionMeta(bucket="gcb", key="dies", tags=[("x", "y")]))
        for i in range(12):  # fill and then empty a few segments
            s3.put_object(Bucket="gcb", Key=f"junk{i}", Body=body_for(f"j{i}", 60 * 1024))
        s3.delete_object(Bucket="gcb", Key="dies")
        for i in range(12):
            s3.delete_object(Bucket="gcb", Key=f"junk{i}")
        keep_uid = db_rows(data, "SELECT uid FROM versions WHERE key = 'keep'")[0][0]
        holding = _segments_with_vmeta(data, keep_uid)
        assert holding
        maintenance(data, "enable")
        code, run = cli_json(data, "gc-run")
        assert code == 0, run
        code, rw = cli_json(data, "gc-rewrite-run")
        assert code == 0, rw
        maintenance(data, "disable")
        left = {p.name for p in (data / "objects" / "segments").iterdir()}
        # The segments that held keep's record are gone; its record lives on.
        assert not holding & left, (holding, left)
        assert _segments_with_vmeta(data, keep_uid)
        assert s3.get_object(Bucket="gcb", Key="keep")["Body"].read() == keep
        before = all_vmeta(data)
        assert srv.stop() == 0
    log = replay(data / "objects" / "segments")
    assert log.vmeta[keep_uid]["tags"] == [["color", "red"]]
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, check
    rebuild_from_scratch(data)
    assert all_vmeta(data) == before
    assert vmeta_of(data, "gcb", "keep")[0].tags == (("color", "red"),)


def _segments_with_vmeta(data: Path, uid: str) -> set[str]:
    """The segment files holding a version-meta record of ``uid``."""
    out = set()
    for path in (data / "objects" / "segments").iterdir():
        with open(path, "rb") as f:
            fd = f.fileno()
            for rec in segfmt.scan_records(fd, path=str(path), verify=False).records:
                if rec.rtype != segfmt.TYPE_VERSION_META:
                    continue
                _kind, body = decode_record(
                    segfmt.read_record_data(fd, rec, path=str(path)), path="t"
                )
                if body["uid"] == uid:
                    out.add(path.name)
    return out
