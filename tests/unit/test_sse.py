"""seglake/sse/: key wrapping, master files, chunk sealing, SSE headers."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from seglake.errors import S3Error
from seglake.format.manifest import ChunkRef, Manifest, decode_manifest, encode_manifest
from seglake.redaction import redact
from seglake.sse import chunks, headers, keys


def test_kek_wrap_round_trip_and_aad() -> None:
    master, kek = keys.new_key(), keys.new_key()
    wrapped = keys.wrap_kek(master, "aa" * 8, kek)
    assert len(wrapped) == keys.WRAPPED_BYTES
    assert keys.unwrap_kek(master, "aa" * 8, wrapped) == kek
    with pytest.raises(keys.SseKeyError):
        keys.unwrap_kek(master, "bb" * 8, wrapped)  # copied under another id
    with pytest.raises(keys.SseKeyError):
        keys.unwrap_kek(keys.new_key(), "aa" * 8, wrapped)
    with pytest.raises(keys.SseKeyError):
        keys.unwrap_kek(master, "aa" * 8, wrapped[:-1])


def test_dek_wrap_round_trip() -> None:
    kek, dek = keys.new_key(), keys.new_key()
    assert keys.unwrap_dek(kek, keys.wrap_dek(kek, dek)) == dek
    with pytest.raises(keys.SseKeyError):
        keys.unwrap_dek(keys.new_key(), keys.wrap_dek(kek, dek))


def test_master_files(tmp_path: Path) -> None:
    path = tmp_path / ".seglake-sse.master"
    assert keys.load_all(path) == {}
    first = keys.ensure_master(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.ensure_master(path) == first  # never replaced once there
    assert keys.load_all(path) == {keys.master_id(first): first}
    kept = keys.keep_retired(path, first)
    assert kept.name == f".seglake-sse.master.{keys.master_id(first)}"
    second = keys.new_key()
    keys.install_master(path, second)
    assert keys.load_current(path) == second
    assert keys.load_all(path) == {keys.master_id(first): first, keys.master_id(second): second}
    # A file whose name does not match its key's id is not a master.
    (tmp_path / ".seglake-sse.master.00000000000000ff").write_bytes(keys.new_key())
    assert len(keys.load_all(path)) == 2
    (tmp_path / ".seglake-sse.master").write_bytes(b"short")
    with pytest.raises(keys.SseKeyError):
        keys.load_all(path)


def test_master_id_is_keyed() -> None:
    a = keys.new_key()
    assert keys.master_id(a) == keys.master_id(a)
    assert keys.master_id(a) != keys.master_id(keys.new_key())
    assert len(keys.master_id(a)) == 16
    assert hashlib.sha256(a).hexdigest()[:16] != keys.master_id(a)


def test_customer_key_check() -> None:
    key, salt = os.urandom(32), os.urandom(16)
    check = keys.key_check(salt, key)
    assert keys.key_matches(salt, check, key)
    assert not keys.key_matches(salt, check, os.urandom(32))
    assert key not in check


def test_chunk_seal_open_and_swaps() -> None:
    dek = keys.new_key()
    a = chunks.ChunkCipher(dek, b"\x01" * 8)
    sealed0 = a.seal(0, b"zero" * 10)
    sealed1 = a.seal(1, b"one!" * 10)
    assert len(sealed0) == 40 + chunks.TAG_BYTES
    assert a.open(0, sealed0) == b"zero" * 10
    with pytest.raises(chunks.ChunkOpenError):
        a.open(0, sealed1)  # swapped within the object
    with pytest.raises(chunks.ChunkOpenError):
        chunks.ChunkCipher(dek, b"\x02" * 8).open(0, sealed0)  # another part
    with pytest.raises(chunks.ChunkOpenError):
        chunks.ChunkCipher(keys.new_key(), b"\x01" * 8).open(0, sealed0)  # another DEK
    with pytest.raises(ValueError):
        a.seal(0, b"")
    with pytest.raises(ValueError):
        a.seal(0, b"x" * (chunks.PLAIN_CHUNK + 1))
    assert len(a.seal(2, b"x" * chunks.PLAIN_CHUNK)) == 4 * 1024 * 1024


def test_sse_info_meta_round_trip_and_hostile() -> None:
    info = chunks.SseInfo(kek="ab" * 8, wrapped_dek=b"w" * 60, nonces=(b"n" * 8,))
    assert chunks.SseInfo.from_meta({"sse": info.to_meta()}) == info
    assert chunks.SseInfo.from_meta({}) is None
    c = chunks.SseInfo(
        kek=chunks.CUSTOMER, wrapped_dek=b"w" * 60, nonces=(b"n" * 8,), salt=b"s", check=b"c"
    )
    assert chunks.SseInfo.from_meta({"sse": c.to_meta()}) == c
    for bad in (
        {"alg": "AES128"},
        {**info.to_meta(), "chunk": 0},
        {**info.to_meta(), "nonces": [b"short"]},
        {**info.to_meta(), "kek": 5},
        {**info.to_meta(), "kek": chunks.CUSTOMER},
        "not a map",
    ):
        with pytest.raises(ValueError):
            chunks.SseInfo.from_meta({"sse": bad})


@pytest.mark.parametrize(
    ("size", "parts", "expected"),
    [
        (0, None, []),
        (1, None, [(0, 0)]),
        (chunks.PLAIN_CHUNK, None, [(0, 0)]),
        (chunks.PLAIN_CHUNK + 1, None, [(0, 0), (0, 1)]),
        (10, [4, 0, 6], [(0, 0), (2, 0)]),
        (chunks.PLAIN_CHUNK + 3, [chunks.PLAIN_CHUNK + 1, 2], [(0, 0), (0, 1), (1, 0)]),
    ],
)
def test_chunk_keys(size: int, parts: list[int] | None, expected: list[tuple[int, int]]) -> None:
    n = len(parts) if parts else 1
    info = chunks.SseInfo(kek="k", wrapped_dek=b"", nonces=tuple(bytes(8) for _ in range(n)))
    assert chunks.chunk_keys(info, size, parts) == expected


def test_chunk_keys_nonce_mismatch() -> None:
    info = chunks.SseInfo(kek="k", wrapped_dek=b"", nonces=(bytes(8),))
    with pytest.raises(ValueError):
        chunks.chunk_keys(info, 3, [1, 2])


def test_sealed_manifest_version_2() -> None:
    ref = ChunkRef(1, 4096, 116, b"d" * 32)
    meta = {"etag": "x", "sse": {"alg": "AES256"}}
    raw = encode_manifest(Manifest("b", "k", "v1", 100, (ref,), meta))
    assert raw[8:10] == b"\x00\x02"
    back = decode_manifest(raw, path="t")
    assert back.size == 100 and back.chunks == (ref,)
    with pytest.raises(ValueError):  # stored lengths must carry the tag
        encode_manifest(Manifest("b", "k", "v1", 116, (ref,), meta))
    plain = encode_manifest(Manifest("b", "k", "v1", 116, (ref,), {"etag": "x"}))
    assert plain[8:10] == b"\x00\x01"


# ---- request headers ---------------------------------------------------------

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
KEY_MD5 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
C = "x-amz-server-side-encryption-customer-"


def good(prefix: str = C) -> dict[str, str]:
    return {prefix + "algorithm": "AES256", prefix + "key": KEY_B64, prefix + "key-md5": KEY_MD5}


def test_requested_sse() -> None:
    assert headers.requested_sse({}) is None
    assert headers.requested_sse({"x-amz-server-side-encryption": "AES256"}) == "AES256"
    for kms in ("aws:kms", "aws:kms:dsse"):
        with pytest.raises(S3Error) as e:
            headers.requested_sse({"x-amz-server-side-encryption": kms})
        assert e.value.code == "NotImplemented"
    with pytest.raises(S3Error) as e:
        headers.requested_sse({"x-amz-server-side-encryption": "AES128"})
    assert e.value.code == "InvalidArgument"


def test_customer_key_good() -> None:
    assert headers.customer_key({}) is None
    ck = headers.customer_key(good())
    assert ck is not None and ck.key == KEY and ck.key_md5 == KEY_MD5
    assert KEY_B64 not in repr(ck)
    src = headers.customer_key(
        good("x-amz-copy-source-server-side-encryption-customer-"), source=True
    )
    assert src is not None and src.key == KEY
    assert headers.customer_key(good(), source=True) is None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({C + "algorithm": None}, "InvalidArgument"),
        ({C + "algorithm": "AES128"}, "InvalidEncryptionAlgorithmError"),
        ({C + "key": None}, "InvalidArgument"),
        ({C + "key": base64.b64encode(b"short").decode()}, "InvalidArgument"),
        ({C + "key": "not base64!!"}, "InvalidArgument"),
        ({C + "key-md5": None}, "InvalidArgument"),
        (
            {C + "key-md5": base64.b64encode(hashlib.md5(b"other").digest()).decode()},
            "InvalidArgument",
        ),
    ],
)
def test_customer_key_errors(change: dict[str, str | None], code: str) -> None:
    h: dict[str, str] = good()
    for name, value in change.items():
        if value is None:
            h.pop(name)
        else:
            h[name] = value
    with pytest.raises(S3Error) as e:
        headers.customer_key(h)
    assert e.value.code == code
    assert KEY_B64 not in str(e.value) and KEY_B64 not in str(e.value.fields)


def test_customer_key_over_http_and_both_kinds() -> None:
    with pytest.raises(S3Error) as e:
        headers.customer_key(good(), secure=False)
    assert e.value.code == "InvalidRequest"
    with pytest.raises(S3Error) as e:
        headers.new_object_encryption(
            {**good(), "x-amz-server-side-encryption": "AES256"}, secure=True
        )
    assert e.value.code == "InvalidArgument"
    assert headers.new_object_encryption({}, secure=False) == (None, None)


def test_customer_key_redacted_in_logs() -> None:
    line = f"headers: {{'x-amz-server-side-encryption-customer-key': '{KEY_B64}'}}"
    assert KEY_B64 not in redact(line)
    line = f"x-amz-copy-source-server-side-encryption-customer-key-MD5: {KEY_MD5}"
    assert KEY_MD5 not in redact(line)
