"""The writer's multipart mutations against an in-memory database.

Each call runs the mutation as the committer would (inside a transaction),
so refusals are seen exactly as clients see them, with nothing half-applied.
"""

from __future__ import annotations

import hashlib
import os
import typing
from typing import Any

import apsw
import msgpack
import msgspec
import pytest

from seglake.errors import S3Error
from seglake.format.manifest import decode_manifest
from seglake.meta import multipart_reads
from seglake.meta.schema import migrate, query
from seglake.units import MiB
from seglake.writer import multipart_ops, ops
from seglake.writer.ops import BatchContext, VersionClock

PART = 5 * MiB


@pytest.fixture
def conn() -> apsw.Connection:
    c = apsw.Connection(":memory:")
    migrate(c)
    run(c, ops.apply_create_bucket, {"bucket": "b", "versioning": "enabled"})
    return c


def run(
    conn: apsw.Connection, fn: Any, args: dict[str, Any], ctx: BatchContext | None = None
) -> Any:
    """``args`` as a peer sends them: validated into the mutation's request
    type; the reply as the peer reads it (a map)."""
    ctx = ctx or BatchContext(VersionClock())
    msg = msgspec.convert(args, typing.get_type_hints(fn)["a"])
    with conn:
        return msgspec.to_builtins(fn(conn, ctx, msg))


def chunks_for(size: int, segment: int = 1, offset: int = 100) -> list[list[Any]]:
    """Fake chunk references adding up to ``size`` (4 MiB each, the last shorter)."""
    out = []
    while size > 0:
        n = min(size, 4 * MiB)
        out.append([segment, offset, n, os.urandom(32)])
        offset += n + 36
        size -= n
    return out


def create(conn: apsw.Connection, key: str = "k", **extra: Any) -> str:
    args = {"bucket": "b", "key": key, "meta": {"content_type": "text/x"}, **extra}
    result = run(conn, multipart_ops.apply_create_upload, args)
    upload_id: str = result["upload_id"]
    return upload_id


def put_part(
    conn: apsw.Connection, upload_id: str, number: int, size: int, ctx: BatchContext | None = None,
    key: str = "k", **extra: Any,
) -> str:  # fmt: skip
    etag = hashlib.md5(os.urandom(8)).hexdigest()
    args = {
        "bucket": "b", "key": key, "upload_id": upload_id, "part_number": number, "size": size,
        "etag": etag, "chunks": chunks_for(size, segment=number), "checksums": {}, **extra,
    }  # fmt: skip
    run(conn, multipart_ops.apply_upload_part, args, ctx)
    return etag


def complete(
    conn: apsw.Connection, upload_id: str, parts: list[Any], ctx: BatchContext | None = None
) -> Any:
    args = {"bucket": "b", "key": "k", "upload_id": upload_id, "parts": parts}
    return run(conn, multipart_ops.apply_complete_upload, args, ctx)


def test_create_needs_bucket(conn: apsw.Connection) -> None:
    with pytest.raises(S3Error) as exc:
        run(conn, multipart_ops.apply_create_upload, {"bucket": "nope", "key": "k", "meta": {}})
    assert exc.value.code == "NoSuchBucket"


def test_upload_ids_sort_by_creation() -> None:
    ids = [multipart_ops.new_upload_id(ns) for ns in (5, 50, 500, 2**62)]
    assert ids == sorted(ids)
    assert all(len(i) == 48 for i in ids)
    assert multipart_ops.new_upload_id(5) != multipart_ops.new_upload_id(5)


def test_part_commit_references_its_chunks(conn: apsw.Connection) -> None:
    upload_id = create(conn)
    ctx = BatchContext(VersionClock())
    put_part(conn, upload_id, 1, PART + 3, ctx)
    # recovery must never cut the segment below the part's last byte
    off = chunks_for(1, segment=1)[0][1]
    assert ctx.committed_ends[1] == off + 4 * MiB + 36 + (PART + 3 - 4 * MiB)


def test_reupload_replaces(conn: apsw.Connection) -> None:
    upload_id = create(conn)
    put_part(conn, upload_id, 1, 10)
    second = put_part(conn, upload_id, 1, 20)
    [p] = multipart_reads.parts(conn, upload_id, 0, 10)
    assert (p.part_number, p.size, p.etag) == (1, 20, second)


def test_complete_composes_manifest(conn: apsw.Connection) -> None:
    upload_id = create(conn)
    etags = [put_part(conn, upload_id, n, size) for n, size in ((1, PART), (2, PART + 1), (3, 7))]
    ctx = BatchContext(VersionClock())
    result = complete(
        conn, upload_id, [[n, f'"{e}"', {}] for n, e in enumerate(etags, start=1)], ctx
    )
    assert result["etag"] == multipart_ops.multipart_etag(etags)
    assert result["size"] == 2 * PART + 8
    [(uid, manifest)] = ctx.manifests
    m = decode_manifest(manifest, path="test")
    assert m.size == 2 * PART + 8
    # 5 MiB = 4 MiB + 1 MiB; 5 MiB + 1 = 4 MiB + 1 MiB + 1; 7: short chunks mid-object
    assert [c.length for c in m.chunks] == [4 * MiB, MiB, 4 * MiB, MiB + 1, 7]
    assert m.meta["parts"] == [PART, PART + 1, 7]
    assert m.meta["content_type"] == "text/x"
    assert m.meta["etag"] == result["etag"]
    assert query(conn, "SELECT count(*) FROM uploads")[0][0] == 0
    assert query(conn, "SELECT count(*) FROM parts")[0][0] == 0
    [(etag, meta)] = query(conn, "SELECT etag, meta FROM versions WHERE uid = ?", (uid,))
    assert etag == result["etag"]
    assert msgpack.unpackb(meta)["parts"] == [PART, PART + 1, 7]
    with pytest.raises(S3Error) as exc:
        complete(conn, upload_id, [[1, etags[0], {}]])
    assert exc.value.code == "NoSuchUpload"


@pytest.mark.parametrize(
    ("listed", "code"),
    [
        ([[2, "E2"], [1, "E1"]], "InvalidPartOrder"),
        ([[1, "E1"], [1, "E1"]], "InvalidPartOrder"),
        ([[1, "E1"], [2, "0" * 32]], "InvalidPart"),
        ([[1, "E1"], [3, "E2"]], "InvalidPart"),
        ([[1, "E1"], [5, "E1"]], "InvalidPart"),
        ([[4, "E4"], [5, "E1"]], "EntityTooSmall"),
        ([[4, "E4"], [1, "E1"]], "InvalidPartOrder"),
        ([], "MalformedXML"),
    ],
)
def test_complete_refusals_leave_upload_open(
    conn: apsw.Connection, listed: list[Any], code: str
) -> None:
    upload_id = create(conn)
    etags = {
        f"E{n}": put_part(conn, upload_id, n, size) for n, size in ((1, PART), (2, 10), (4, 1))
    }
    parts = [[n, etags.get(e, e), {}] for n, e in listed]
    with pytest.raises(S3Error) as exc:
        complete(conn, upload_id, parts)
    assert exc.value.code == code
    assert len(multipart_reads.parts(conn, upload_id, 0, 10)) == 3


def test_small_part_before_last_is_too_small(conn: apsw.Connection) -> None:
    upload_id = create(conn)
    e1 = put_part(conn, upload_id, 1, PART - 1)
    e2 = put_part(conn, upload_id, 2, PART)
    with pytest.raises(S3Error) as exc:
        complete(conn, upload_id, [[1, e1, {}], [2, e2, {}]])
    assert exc.value.code == "EntityTooSmall"
    # The same small part is fine last.
    complete(conn, upload_id, [[2, e2, {}]])


def test_upload_of_another_key_or_bucket(conn: apsw.Connection) -> None:
    upload_id = create(conn)
    for bucket, key in (("b", "other"), ("c", "k")):
        args = {
            "bucket": bucket, "key": key, "upload_id": upload_id, "part_number": 1, "size": 1,
            "etag": "x", "chunks": chunks_for(1),
        }  # fmt: skip
        with pytest.raises(S3Error) as exc:
            run(conn, multipart_ops.apply_upload_part, args)
        assert exc.value.code == "NoSuchUpload"


def test_composite_checksum_and_expected_values(conn: apsw.Connection) -> None:
    import base64

    upload_id = create(conn, checksum_algorithm="SHA256")
    sums = [base64.b64encode(hashlib.sha256(bytes([n])).digest()).decode() for n in (1, 2)]
    e1 = put_part(conn, upload_id, 1, PART, checksums={"SHA256": sums[0]})
    e2 = put_part(conn, upload_id, 2, 3, checksums={"SHA256": sums[1]})
    want = multipart_ops.composite_checksum("SHA256", sums)
    args = {
        "bucket": "b", "key": "k", "upload_id": upload_id,
        "parts": [[1, e1, {"SHA256": sums[0]}], [2, e2, {"SHA256": sums[1]}]],
        "expect_checksums": {"SHA256": "AAAA"},
    }  # fmt: skip
    with pytest.raises(S3Error) as exc:
        run(conn, multipart_ops.apply_complete_upload, args)
    assert exc.value.code == "BadDigest"
    args["parts"] = [[1, e1, {"SHA256": sums[1]}], [2, e2, {}]]
    args["expect_checksums"] = {}
    with pytest.raises(S3Error) as exc:
        run(conn, multipart_ops.apply_complete_upload, args)
    assert exc.value.code == "InvalidPart"
    args["parts"] = [[1, e1, {}], [2, e2, {}]]
    args["expect_checksums"] = {"SHA256": want}
    args["expect_size"] = PART + 3
    result = run(conn, multipart_ops.apply_complete_upload, args)
    assert result["checksums"] == {"SHA256": want}
    assert want.endswith("-2")


def test_max_size_and_expected_size(conn: apsw.Connection) -> None:
    upload_id = create(conn)
    e1 = put_part(conn, upload_id, 1, PART)
    base = {"bucket": "b", "key": "k", "upload_id": upload_id, "parts": [[1, e1, {}]]}
    for extra, code in (
        ({"max_size": PART - 1}, "EntityTooLarge"),
        ({"expect_size": 1}, "InvalidRequest"),
    ):
        with pytest.raises(S3Error) as exc:
            run(conn, multipart_ops.apply_complete_upload, {**base, **extra})
        assert exc.value.code == code


def test_abort(conn: apsw.Connection) -> None:
    upload_id = create(conn)
    put_part(conn, upload_id, 1, 10)
    args = {"bucket": "b", "key": "k", "upload_id": upload_id}
    run(conn, multipart_ops.apply_abort_upload, args)
    assert multipart_reads.upload(conn, upload_id) is None
    assert multipart_reads.parts(conn, upload_id, 0, 10) == []
    with pytest.raises(S3Error) as exc:
        run(conn, multipart_ops.apply_abort_upload, args)
    assert exc.value.code == "NoSuchUpload"


def test_uploads_listing_order(conn: apsw.Connection) -> None:
    ids = [create(conn, key) for key in ("b", "a", "b", "c")]
    rows = list(multipart_reads.uploads_after(conn, "b", "", "", None, 2))
    assert [(r.key, r.upload_id) for r in rows] == [
        ("a", ids[1]), ("b", ids[0]), ("b", ids[2]), ("c", ids[3]),
    ]  # fmt: skip
    rows = list(multipart_reads.uploads_after(conn, "b", "", "b", ids[0], 2))
    assert [r.upload_id for r in rows] == [ids[2], ids[3]]
    rows = list(multipart_reads.uploads_after(conn, "b", "b", "", None, 2))
    assert [r.upload_id for r in rows] == [ids[0], ids[2]]
