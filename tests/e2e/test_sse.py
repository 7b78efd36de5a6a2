"""SSE-S3 (x-amz-server-side-encryption: AES256) end to end.

Objects bigger than one sealed chunk (4 MiB - 16 bytes of plaintext) are
used sparingly: three chunks cover every boundary case of a range read.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from seglake.auth.canonical import canonical_id
from tests.e2e._helpers import cli, cli_json, db_rows, status_and_code
from tests.e2e._signing import signed_request
from tests.harness import ACCESS_KEY, SeglakeServer

PLAIN_CHUNK = 4 * 1024 * 1024 - 16
MARKER = b"SSE-PLAINTEXT-MARKER-7f3a9c"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeglakeServer]:
    root = tmp_path_factory.mktemp("sse")
    # Small parts keep the multipart tests fast.
    with SeglakeServer(root / "data", frontends=2, extra_args=["--min-part-size", "1024"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    return server.s3()


def marked_body(size: int, seed: int) -> bytes:
    """``size`` random bytes with MARKER repeated through them."""
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(size))
    step = max(len(MARKER) * 2, size // 64)
    for at in range(0, size - len(MARKER), step):
        data[at : at + len(MARKER)] = MARKER
    return bytes(data)


def files_containing(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def test_put_get_head_round_trip(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="sse-basic")
    body = marked_body(3 * PLAIN_CHUNK + 12345, 1)
    put = s3.put_object(Bucket="sse-basic", Key="big", Body=body, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    small = b"small " + MARKER
    s3.put_object(Bucket="sse-basic", Key="small", Body=small, ServerSideEncryption="AES256")
    s3.put_object(Bucket="sse-basic", Key="empty", Body=b"", ServerSideEncryption="AES256")

    got = s3.get_object(Bucket="sse-basic", Key="big")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["ContentLength"] == len(body)
    assert got["Body"].read() == body
    assert s3.get_object(Bucket="sse-basic", Key="small")["Body"].read() == small
    empty = s3.get_object(Bucket="sse-basic", Key="empty")
    assert empty["Body"].read() == b"" and empty["ServerSideEncryption"] == "AES256"
    head = s3.head_object(Bucket="sse-basic", Key="big")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    listed = s3.list_objects_v2(Bucket="sse-basic")["Contents"]
    assert {o["Key"]: o["Size"] for o in listed} == {
        "big": len(body),
        "small": len(small),
        "empty": 0,
    }

    # Plain objects report no encryption.
    s3.put_object(Bucket="sse-basic", Key="plain", Body=b"x")
    assert "ServerSideEncryption" not in s3.head_object(Bucket="sse-basic", Key="plain")

    # The plaintext marker is nowhere on disk (segments, meta.db and WAL).
    assert files_containing(server.data_dir, MARKER) == []


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 0),
        (0, PLAIN_CHUNK - 1),
        (PLAIN_CHUNK - 1, PLAIN_CHUNK),  # across the first boundary
        (PLAIN_CHUNK, PLAIN_CHUNK),
        (PLAIN_CHUNK - 100, 2 * PLAIN_CHUNK + 100),  # three chunks
        (3 * PLAIN_CHUNK, 3 * PLAIN_CHUNK + 12344),  # the tail chunk only
        (2 * PLAIN_CHUNK + 5, 3 * PLAIN_CHUNK + 12344),
    ],
)
def test_ranges_across_chunks(s3: Any, start: int, end: int) -> None:
    body = marked_body(3 * PLAIN_CHUNK + 12345, 1)
    try:
        s3.head_object(Bucket="sse-basic", Key="big")
    except ClientError:
        pytest.skip("needs test_put_get_head_round_trip's object")
    got = s3.get_object(Bucket="sse-basic", Key="big", Range=f"bytes={start}-{end}")
    assert got["ContentRange"] == f"bytes {start}-{end}/{len(body)}"
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == body[start : end + 1]


def test_suffix_range(s3: Any) -> None:
    body = b"0123456789" * 1000
    s3.create_bucket(Bucket="sse-suffix")
    s3.put_object(Bucket="sse-suffix", Key="k", Body=body, ServerSideEncryption="AES256")
    got = s3.get_object(Bucket="sse-suffix", Key="k", Range="bytes=-17")
    assert got["Body"].read() == body[-17:]


@pytest.mark.parametrize("value", ["aws:kms", "aws:kms:dsse"])
def test_kms_is_not_implemented(s3: Any, value: str) -> None:
    s3.create_bucket(Bucket="sse-kms")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="sse-kms", Key="k", Body=b"x", ServerSideEncryption=value)
    assert e.value.response["Error"]["Code"] == "NotImplemented"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert "Contents" not in s3.list_objects_v2(Bucket="sse-kms")


def test_unknown_algorithm_is_invalid_argument(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="sse-bad-alg")
    r = signed_request(
        server, "PUT", "/sse-bad-alg/k", headers={"x-amz-server-side-encryption": "AES128"},
        body=b"x",
    )  # fmt: skip
    assert r.status_code == 400
    assert b"<Code>InvalidArgument</Code>" in r.content
    assert "Contents" not in s3.list_objects_v2(Bucket="sse-bad-alg")


# ---- scrub, GC and rebuild-index on encrypted data ---------------------------------


def test_scrub_gc_and_rebuild_without_plaintext(tmp_path: Path) -> None:
    data = tmp_path / "data"
    kib = 1024
    with SeglakeServer(data, frontends=1, extra_args=["--segment-max-bytes", "262144"]) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="enc")
        s3.put_bucket_versioning(Bucket="enc", VersioningConfiguration={"Status": "Suspended"})
        bodies = {f"k{i}": marked_body(40 * kib + i, 10 + i) for i in range(3)}
        big = marked_body(PLAIN_CHUNK + 100, 99)
        for i in range(12):  # garbage around the objects, for GC to reclaim
            s3.put_object(Bucket="enc", Key=f"junk{i}", Body=bytes(30 * kib))
            if i < 3:
                s3.put_object(
                    Bucket="enc", Key=f"k{i}", Body=bodies[f"k{i}"], ServerSideEncryption="AES256"
                )
        s3.put_object(Bucket="enc", Key="big", Body=big, ServerSideEncryption="AES256")
        s3.put_object(Bucket="enc", Key="seal", Body=bytes(300 * kib))
        for i in range(12):
            s3.delete_object(Bucket="enc", Key=f"junk{i}")

        code, doc = cli_json(data, "scrub")
        assert code == 0 and doc["damaged"] == [], doc
        cli(data, "maintenance", "enable")
        code, run = cli_json(data, "gc-run")
        assert code == 0, run
        code, rw = cli_json(data, "gc-rewrite-run")
        assert code == 0, rw
        cli(data, "maintenance", "disable")
        assert run["deleted_segments"] or rw["deleted_segments"], (run, rw)
        for key, body in bodies.items():
            assert s3.get_object(Bucket="enc", Key=key)["Body"].read() == body
        assert s3.get_object(Bucket="enc", Key="big")["Body"].read() == big
        code, fsck = cli_json(data, "fsck", "--all-manifests")
        assert code == 0 and fsck["clean"], fsck["errors"]
        code, check = cli_json(data, "rebuild-index", "--dry-run")
        assert code == 0 and check["differences"] == 0, check
        assert srv.stop() == 0
    assert db_rows(data, "SELECT count(*) FROM sse_keks") == [(1,)]
    assert files_containing(data, MARKER) == []

    moved = cli(data, "rebuild-index", "--force")
    assert moved.returncode == 0, moved.stderr
    assert db_rows(data, "SELECT count(*) FROM sse_keks") == [(1,)]
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        for key, body in bodies.items():
            got = s3.get_object(Bucket="enc", Key=key)
            assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket="enc", Key="big", Range="bytes=5-")["Body"].read() == big[5:]
        assert srv.stop() == 0


# ---- CopyObject ----------------------------------------------------------------------


def test_copy_keeps_or_changes_encryption(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="sse-copy")
    body = marked_body(PLAIN_CHUNK + 777, 5)
    s3.put_object(Bucket="sse-copy", Key="enc", Body=body, ServerSideEncryption="AES256")
    plain = b"plain body " * 100
    s3.put_object(Bucket="sse-copy", Key="plain", Body=plain)

    # Same settings: the copy lists the source's chunks (and stays encrypted).
    out = s3.copy_object(
        Bucket="sse-copy", Key="c1", CopySource={"Bucket": "sse-copy", "Key": "enc"}
    )
    assert out["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="sse-copy", Key="c1")
    assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
    assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    src_m = db_rows(
        server.data_dir,
        "SELECT manifest FROM versions v JOIN current c "
        "ON c.version = v.id WHERE c.bucket = 'sse-copy' AND c.key = 'enc'",
    )
    dst_m = db_rows(
        server.data_dir,
        "SELECT manifest FROM versions v JOIN current c "
        "ON c.version = v.id WHERE c.bucket = 'sse-copy' AND c.key = 'c1'",
    )
    from seglake.format.manifest import decode_manifest

    src_chunks = decode_manifest(src_m[0][0], path="s").chunks
    assert decode_manifest(dst_m[0][0], path="d").chunks == src_chunks

    # Plain source, encryption asked for: re-sealed into new chunks.
    out = s3.copy_object(
        Bucket="sse-copy", Key="c2", CopySource={"Bucket": "sse-copy", "Key": "plain"},
        ServerSideEncryption="AES256",
    )  # fmt: skip
    assert out["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="sse-copy", Key="c2")
    assert got["Body"].read() == plain and got["ServerSideEncryption"] == "AES256"
    assert got["ETag"] == f'"{hashlib.md5(plain).hexdigest()}"'
    # Onto itself with a change of encryption: allowed.
    s3.copy_object(
        Bucket="sse-copy", Key="plain", CopySource={"Bucket": "sse-copy", "Key": "plain"},
        ServerSideEncryption="AES256",
    )  # fmt: skip
    got = s3.get_object(Bucket="sse-copy", Key="plain")
    assert got["Body"].read() == plain and got["ServerSideEncryption"] == "AES256"


# ---- multipart -------------------------------------------------------------------------


def _complete(s3: Any, bucket: str, key: str, upload: str, etags: list[str], **kw: Any) -> Any:
    parts = [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}, **kw
    )


def test_multipart_sse_s3(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="sse-mpu")
    p1 = marked_body(PLAIN_CHUNK + 3, 21)
    p2 = marked_body(PLAIN_CHUNK + 10, 22)
    p3 = marked_body(1000, 23)
    up = s3.create_multipart_upload(Bucket="sse-mpu", Key="m", ServerSideEncryption="AES256")
    assert up["ServerSideEncryption"] == "AES256"
    uid = up["UploadId"]
    etags = []
    for n, body in enumerate((p1, p2, p3), start=1):
        r = s3.upload_part(Bucket="sse-mpu", Key="m", UploadId=uid, PartNumber=n, Body=body)
        assert r["ServerSideEncryption"] == "AES256"
        etags.append(r["ETag"])
    # A part uploaded again gets a new nonce base (and replaces the old one).
    r = s3.upload_part(Bucket="sse-mpu", Key="m", UploadId=uid, PartNumber=3, Body=p3)
    assert r["ETag"] == etags[2]
    done = _complete(s3, "sse-mpu", "m", uid, etags)
    assert done["ServerSideEncryption"] == "AES256"
    whole = p1 + p2 + p3
    got = s3.get_object(Bucket="sse-mpu", Key="m")
    assert got["Body"].read() == whole and got["ServerSideEncryption"] == "AES256"
    for start, end in ((len(p1) - 5, len(p1) + 5), (len(p1) + PLAIN_CHUNK - 1, len(whole) - 1)):
        rng = s3.get_object(Bucket="sse-mpu", Key="m", Range=f"bytes={start}-{end}")
        assert rng["Body"].read() == whole[start : end + 1]
    assert s3.get_object(Bucket="sse-mpu", Key="m", PartNumber=2)["Body"].read() == p2
    assert s3.head_object(Bucket="sse-mpu", Key="m")["ServerSideEncryption"] == "AES256"
    # Copy of an encrypted object uploaded in parts: re-sealed as one part.
    s3.copy_object(Bucket="sse-mpu", Key="m2", CopySource={"Bucket": "sse-mpu", "Key": "m"})
    got = s3.get_object(Bucket="sse-mpu", Key="m2")
    assert got["Body"].read() == whole and got["ServerSideEncryption"] == "AES256"
    assert got["ETag"] == f'"{hashlib.md5(whole).hexdigest()}"'
    assert files_containing(server.data_dir, MARKER) == []


def test_upload_part_copy_across_encryption(s3: Any) -> None:
    s3.create_bucket(Bucket="sse-upc")
    # No marker: a plain upload is made of this object's bytes on purpose.
    enc = os.urandom(PLAIN_CHUNK + 5000)
    plain = bytes(range(256)) * (PLAIN_CHUNK // 256 + 2)
    s3.put_object(Bucket="sse-upc", Key="enc", Body=enc, ServerSideEncryption="AES256")
    s3.put_object(Bucket="sse-upc", Key="plain", Body=plain)
    # Encrypted source into a plain upload, and plain source into an encrypted one.
    for key, sse, first_src, second_src in (
        ("to-plain", {}, "enc", "plain"),
        ("to-enc", {"ServerSideEncryption": "AES256"}, "plain", "enc"),
    ):
        uid = s3.create_multipart_upload(Bucket="sse-upc", Key=key, **sse)["UploadId"]
        r1 = s3.upload_part_copy(
            Bucket="sse-upc", Key=key, UploadId=uid, PartNumber=1,
            CopySource={"Bucket": "sse-upc", "Key": first_src},
        )  # fmt: skip
        r2 = s3.upload_part_copy(
            Bucket="sse-upc", Key=key, UploadId=uid, PartNumber=2,
            CopySource={"Bucket": "sse-upc", "Key": second_src},
            CopySourceRange=f"bytes=100-{PLAIN_CHUNK + 200}",
        )  # fmt: skip
        _complete(
            s3, "sse-upc", key, uid, [r1["CopyPartResult"]["ETag"], r2["CopyPartResult"]["ETag"]]
        )
        src = {"enc": enc, "plain": plain}
        expected = src[first_src] + src[second_src][100 : PLAIN_CHUNK + 201]
        got = s3.get_object(Bucket="sse-upc", Key=key)
        assert got["Body"].read() == expected
        assert ("ServerSideEncryption" in got) == bool(sse)


# ---- master key rotation ----------------------------------------------------------------


def _chunk_bytes(data: Path) -> dict[str, bytes]:
    """Every version's manifest and the bytes of its chunks, by uid."""
    from seglake.format.manifest import decode_manifest

    out = {}
    for uid, manifest in db_rows(data, "SELECT uid, manifest FROM versions"):
        m = decode_manifest(manifest, path=uid)
        raw = bytes(manifest)
        for c in m.chunks:
            seg = data / "objects" / "segments" / f"{c.segment_id:016x}.seg"
            with open(seg, "rb") as f:
                f.seek(c.offset)
                raw += f.read(c.length)
        out[uid] = raw
    return out


def test_rotate_master_live_and_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    body = marked_body(PLAIN_CHUNK + 99, 61)
    master = data / ".seglake-sse.master"
    with SeglakeServer(data, frontends=2) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="rot")
        s3.put_object(Bucket="rot", Key="a", Body=body, ServerSideEncryption="AES256")
        first = master.read_bytes()
        before = _chunk_bytes(data)
        out = cli(data, "sse", "rotate-master", "--json")
        assert out.returncode == 0, out.stderr
        assert '"keks": 1' in out.stdout
        assert master.read_bytes() != first
        assert sorted(p.name for p in data.iterdir() if p.name.startswith(".seglake-sse")) == [
            ".seglake-sse.master"
        ]
        assert _chunk_bytes(data) == before  # no object data, no manifest rewritten
        # Running frontends keep serving, and new objects use the same KEK.
        assert s3.get_object(Bucket="rot", Key="a")["Body"].read() == body
        s3.put_object(Bucket="rot", Key="b", Body=b"after " + MARKER, ServerSideEncryption="AES256")
        assert srv.stop() == 0
    # The old master is gone for good: nothing on disk holds it.
    assert files_containing(data, first) == []
    second = master.read_bytes()
    out = cli(data, "sse", "rotate-master")  # offline: the embedded writer
    assert out.returncode == 0, out.stderr
    assert master.read_bytes() != second
    status = cli(data, "sse", "status", "--json")
    assert status.returncode == 0 and '"missing_masters": []' in status.stdout
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, check
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        assert s3.get_object(Bucket="rot", Key="a")["Body"].read() == body
        assert s3.get_object(Bucket="rot", Key="b")["Body"].read() == b"after " + MARKER
        assert srv.stop() == 0
    # After a rebuild, the key records carry the latest wrapping.
    assert cli(data, "rebuild-index", "--force").returncode == 0
    with SeglakeServer(data, frontends=1) as srv:
        assert srv.s3().get_object(Bucket="rot", Key="a")["Body"].read() == body
        assert srv.stop() == 0
    # snapshot and doctor name the master as something to back up.
    code, snap = cli_json(data, "snapshot")
    assert code == 0 and snap["sse_keks"] == 1 and snap["sse_master_key_file"] == str(master)
    out = cli(data, "doctor")
    assert out.returncode == 0 and str(master) in out.stdout, out.stdout
    # Without the master, encrypted objects are a clear error, not garbage.
    master.unlink()
    status = cli(data, "sse", "status", "--json")
    assert status.returncode == 1
    code, doc = cli_json(data, "doctor")
    assert code == 1 and doc["sse"]["missing_masters"], doc
    with SeglakeServer(data, frontends=1) as srv:
        with pytest.raises(ClientError) as e:
            srv.s3().get_object(Bucket="rot", Key="a")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert srv.stop() == 0


# ---- bucket default encryption ---------------------------------------------------------


def test_bucket_default_encryption(s3: Any, server: SeglakeServer) -> None:
    s3.create_bucket(Bucket="sse-default")
    s3.create_bucket(Bucket="sse-default-src")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket="sse-default")
    assert status_and_code(e) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    for alg in ("aws:kms", "aws:kms:dsse"):
        with pytest.raises(ClientError) as e:
            s3.put_bucket_encryption(
                Bucket="sse-default",
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": alg}}]
                },
            )
        assert status_and_code(e) == (501, "NotImplemented")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket="sse-default")
    assert status_and_code(e)[0] == 404
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(
            Bucket="sse-default",
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "AES256", "KMSMasterKeyID": "arn:aws:kms:k"}}]
            },
        )  # fmt: skip
    assert status_and_code(e) == (400, "InvalidArgument")

    s3.put_bucket_encryption(
        Bucket="sse-default",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                       "BucketKeyEnabled": False}]
        },
    )  # fmt: skip
    rules = s3.get_bucket_encryption(Bucket="sse-default")["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert rules["Rules"][0]["BucketKeyEnabled"] is False

    body = marked_body(PLAIN_CHUNK + 10, 71)
    put = s3.put_object(Bucket="sse-default", Key="k", Body=body)
    assert put["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="sse-default", Key="k")
    assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
    # Multipart uploads and copies into the bucket follow the default too.
    uid = s3.create_multipart_upload(Bucket="sse-default", Key="m")["UploadId"]
    part = s3.upload_part(Bucket="sse-default", Key="m", UploadId=uid, PartNumber=1, Body=body)
    _complete(s3, "sse-default", "m", uid, [part["ETag"]])
    got = s3.get_object(Bucket="sse-default", Key="m")
    assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
    plain = os.urandom(1000)
    s3.put_object(Bucket="sse-default-src", Key="p", Body=plain)
    out = s3.copy_object(
        Bucket="sse-default", Key="c", CopySource={"Bucket": "sse-default-src", "Key": "p"}
    )
    assert out["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="sse-default", Key="c")
    assert got["Body"].read() == plain and got["ServerSideEncryption"] == "AES256"
    assert files_containing(server.data_dir, MARKER) == []

    s3.delete_bucket_encryption(Bucket="sse-default")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket="sse-default")
    assert status_and_code(e)[0] == 404
    put = s3.put_object(Bucket="sse-default", Key="after", Body=b"x")
    assert "ServerSideEncryption" not in put
    # Objects written under the default stay encrypted.
    assert s3.head_object(Bucket="sse-default", Key="k")["ServerSideEncryption"] == "AES256"


def test_post_upload_follows_bucket_default(server: SeglakeServer) -> None:
    import httpx

    s3 = server.s3(signature_version="s3v4")
    s3.create_bucket(Bucket="sse-post")
    s3.put_bucket_encryption(
        Bucket="sse-post",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    post = s3.generate_presigned_post("sse-post", "form.bin", ExpiresIn=300)
    data = b"posted " + MARKER
    resp = httpx.post(
        post["url"], data=post["fields"],
        files={"file": ("f.bin", data, "application/octet-stream")}, timeout=30.0,
    )  # fmt: skip
    assert resp.status_code == 204, resp.text
    assert resp.headers["x-amz-server-side-encryption"] == "AES256"
    got = s3.get_object(Bucket="sse-post", Key="form.bin")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
    assert files_containing(server.data_dir, MARKER) == []


# A grant by id to a key that exists (the test key itself: public ACLs are
# refused on buckets not in --public-buckets, unknown ids are InvalidArgument).
READER = canonical_id(ACCESS_KEY)
GRANT = f'id="{READER}"'


def _reader_granted(s3: Any, bucket: str, key: str) -> bool:
    grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(g["Grantee"].get("ID") == READER and g["Permission"] == "READ" for g in grants)


def test_encryption_acl_and_tags_on_one_write(s3: Any) -> None:
    """An encrypted PutObject, CopyObject (re-sealed) and multipart upload
    that also carry an ACL and tags keep all three."""
    s3.create_bucket(Bucket="sse-acl")
    body = marked_body(5000, seed=41)
    put = s3.put_object(Bucket="sse-acl", Key="put", Body=body, ServerSideEncryption="AES256",
                        GrantRead=GRANT, Tagging="team=blue")  # fmt: skip
    assert put["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="sse-acl", Key="put")
    assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
    assert got["TagCount"] == 1
    assert _reader_granted(s3, "sse-acl", "put")
    assert s3.get_object_tagging(Bucket="sse-acl", Key="put")["TagSet"] == [
        {"Key": "team", "Value": "blue"}
    ]

    s3.put_object(Bucket="sse-acl", Key="plain", Body=body)
    out = s3.copy_object(
        Bucket="sse-acl", Key="copied", CopySource={"Bucket": "sse-acl", "Key": "plain"},
        ServerSideEncryption="AES256", GrantRead=GRANT,
        TaggingDirective="REPLACE", Tagging="a=1",
    )  # fmt: skip
    assert out["ServerSideEncryption"] == "AES256"
    head = s3.head_object(Bucket="sse-acl", Key="copied")
    assert head["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket="sse-acl", Key="copied")["Body"].read() == body
    assert _reader_granted(s3, "sse-acl", "copied")
    assert not _reader_granted(s3, "sse-acl", "plain")
    assert s3.get_object_tagging(Bucket="sse-acl", Key="copied")["TagSet"] == [
        {"Key": "a", "Value": "1"}
    ]

    up = s3.create_multipart_upload(Bucket="sse-acl", Key="mpu", ServerSideEncryption="AES256",
                                    GrantRead=GRANT, Tagging="m=2")["UploadId"]  # fmt: skip
    part = marked_body(2048, seed=42)
    e1 = s3.upload_part(Bucket="sse-acl", Key="mpu", UploadId=up, PartNumber=1, Body=part)
    e2 = s3.upload_part(Bucket="sse-acl", Key="mpu", UploadId=up, PartNumber=2, Body=b"end")
    _complete(s3, "sse-acl", "mpu", up, [e1["ETag"], e2["ETag"]])
    got = s3.get_object(Bucket="sse-acl", Key="mpu")
    assert got["Body"].read() == part + b"end" and got["ServerSideEncryption"] == "AES256"
    assert _reader_granted(s3, "sse-acl", "mpu")
    assert s3.get_object_tagging(Bucket="sse-acl", Key="mpu")["TagSet"] == [
        {"Key": "m", "Value": "2"}
    ]
