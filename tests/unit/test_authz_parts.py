"""Pure parts of access control: client address behind proxies, the per-key
in-flight limiter, and the secret sealing of the keystore."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

import pytest

from seglake.auth.directory import KeyRecord
from seglake.auth.keystore import (
    KeystoreError,
    decrypt_secret,
    encrypt_secret,
    ensure_master_key,
    load_master_key,
)
from seglake.errors import S3Error
from seglake.frontend.authz import InflightLimiter, client_address, parse_networks

TRUSTED = parse_networks("127.0.0.1/32, 198.51.100.0/24")


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("192.0.2.1", None, "192.0.2.1"),
        ("192.0.2.1", "198.51.100.9", "192.0.2.1"),  # untrusted peer: XFF ignored
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # rightmost untrusted
        ("127.0.0.1", "203.0.113.7, 198.51.100.11", "203.0.113.7"),  # skip trusted hops
        ("127.0.0.1", "198.51.100.11", "198.51.100.11"),  # all trusted: the leftmost seen
        ("127.0.0.1", "garbage, 203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7, garbage", "127.0.0.1"),  # unreadable hop ends trust
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        ("not-an-ip", None, None),
        (None, "203.0.113.7", None),
    ],
)
def test_client_address(peer: str | None, xff: str | None, expected: str | None) -> None:
    got = client_address(peer, xff, TRUSTED)
    assert got == (ipaddress.ip_address(expected) if expected else None)


def test_client_address_bounds_hops() -> None:
    xff = ", ".join(["198.51.100.1"] * 100_000)
    assert client_address("127.0.0.1", xff, TRUSTED) == ipaddress.ip_address("198.51.100.1")


def _key(name: str, inflight: int = 0) -> KeyRecord:
    return KeyRecord(name, "s", True, False, None, inflight, frozenset())


def test_inflight_limiter() -> None:
    limiter = InflightLimiter(default_limit=4, processes=2)  # 2 per process
    a, b = _key("a"), _key("b", inflight=1)
    with limiter.slot(a), limiter.slot(a):
        with pytest.raises(S3Error) as e, limiter.slot(a):
            pass
        assert e.value.code == "SlowDown" and e.value.status == 503
        # Another key has its own count.
        with limiter.slot(b), pytest.raises(S3Error), limiter.slot(b):
            pass
    with limiter.slot(a), limiter.slot(a):  # released, even after errors
        pass
    assert limiter.limit_for(_key("c", inflight=7)) == 4
    unlimited = InflightLimiter(default_limit=0, processes=3)
    with unlimited.slot(a), unlimited.slot(a), unlimited.slot(a):
        pass


def test_inflight_limiter_reads_apart() -> None:
    """Reads have their own pool, 4x the key's limit per frontend and not
    divided over the frontends; they neither take nor need a write slot."""
    limiter = InflightLimiter(default_limit=32, processes=2)
    a = _key("a")
    assert limiter.limit_for(a) == 16 and limiter.limit_for(a, read=True) == 128
    assert limiter.limit_for(_key("b", inflight=1), read=True) == 4
    with contextlib.ExitStack() as stack:
        for _ in range(128):  # c=128 from one key, all on this frontend
            stack.enter_context(limiter.slot(a, read=True))
        with pytest.raises(S3Error) as e, limiter.slot(a, read=True):
            pass
        assert e.value.code == "SlowDown" and "reads" in e.value.text
        for _ in range(16):  # the writes' pool is untouched by the reads
            stack.enter_context(limiter.slot(a))
        with pytest.raises(S3Error) as e, limiter.slot(a):
            pass
        assert "writes" in e.value.text
    with limiter.slot(a, read=True), limiter.slot(a):  # all released
        pass
    unlimited = InflightLimiter(default_limit=0, processes=2)
    assert unlimited.limit_for(a, read=True) == 0


def test_keystore_roundtrip_and_binding(tmp_path: Path) -> None:
    master = ensure_master_key(tmp_path)
    assert ensure_master_key(tmp_path) == master == load_master_key(tmp_path)
    assert (tmp_path / ".seglake-keys.master").stat().st_mode & 0o777 == 0o600
    sealed = encrypt_secret(master, "alice", "s3cr3t-value")
    assert b"s3cr3t-value" not in sealed
    assert decrypt_secret(master, "alice", sealed) == "s3cr3t-value"
    assert encrypt_secret(master, "alice", "s3cr3t-value") != sealed  # fresh nonce
    with pytest.raises(KeystoreError):
        decrypt_secret(master, "bob", sealed)  # bound to its access key
    with pytest.raises(KeystoreError):
        decrypt_secret(os.urandom(32), "alice", sealed)
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(KeystoreError):
        decrypt_secret(master, "alice", bytes(flipped))
    for junk in (b"", b"SGK1", b"XXXX" + sealed[4:]):
        with pytest.raises(KeystoreError):
            decrypt_secret(master, "alice", junk)


def test_master_key_damaged(tmp_path: Path) -> None:
    (tmp_path / ".seglake-keys.master").write_bytes(b"short")
    with pytest.raises(KeystoreError):
        load_master_key(tmp_path)
    with pytest.raises(KeystoreError):
        load_master_key(tmp_path / "missing")
