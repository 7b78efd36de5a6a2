"""The SSE key levels: master key file → KEKs → one DEK per object or upload.

Rules this module keeps:

* The master key is 32 random bytes in ``.seglake-sse.master`` (0600), or
  wherever ``--sse-master-key-file`` points, created the way the API-key
  master is (temporary file, fsync, hard link into place so two creators
  never end up with different keys, directory fsync). A master is named by
  its id, the first 16 hex digits of a keyed BLAKE3 of the key, which says
  which master wrapped a KEK without revealing anything about the key.
* ``rotate-master`` keeps the old key as ``<file>.<master id>`` until the
  re-wrapped KEKs are durable; readers load every master file present, so a
  crash at any point leaves every KEK unwrappable.
* KEKs (32 B) are wrapped by a master with AES-256-GCM, AAD = the KEK's id,
  so a wrapped KEK copied under another id does not unwrap. DEKs (32 B) are
  wrapped by a KEK (or, for SSE-C, by the customer's key) the same way with a
  fixed AAD; a DEK is unique per version or upload, so (DEK, nonce) pairs are
  never reused.
* An SSE-C key is never stored: only ``HMAC-SHA256(salt, key)`` with a
  random 16-byte salt, to tell a wrong key from damaged data.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
from hashlib import sha256
from pathlib import Path
from typing import Final

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seglake.private_files import create_private_file, fsync_dir

KEY_BYTES: Final = 32  # AES-256 for every level
WRAP_NONCE_BYTES: Final = 12  # GCM's standard nonce, random per wrap
TAG_BYTES: Final = 16
WRAPPED_BYTES: Final = WRAP_NONCE_BYTES + KEY_BYTES + TAG_BYTES
MASTER_ID_HEX: Final = 16
SALT_BYTES: Final = 16
_DEK_AAD: Final = b"SGLKDEK1"
_MASTER_ID_CONTEXT: Final = b"seglake-sse-master-id"
_ROTATED_RE: Final = re.compile(r"^\.([0-9a-f]{16})$")


class SseKeyError(Exception):
    """A master file is missing or malformed, or a wrapped key does not unwrap."""


def master_id(master: bytes) -> str:
    """The public name of a master key (keyed hash: reveals nothing of the key)."""
    return blake3.blake3(_MASTER_ID_CONTEXT, key=master).hexdigest()[:MASTER_ID_HEX]


def _read_key(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SseKeyError(f"cannot read the SSE master key file {path}: {exc}") from None
    if len(raw) != KEY_BYTES:
        raise SseKeyError(f"{path} is not a {KEY_BYTES}-byte SSE master key")
    return raw


def load_current(path: Path) -> bytes:
    """The current master key (the one new KEKs are wrapped under)."""
    return _read_key(path)


def load_all(path: Path) -> dict[str, bytes]:
    """Every master key present: the current file and any ``<file>.<id>``
    kept by a rotation, by master id. Empty if there is none at all."""
    found: dict[str, bytes] = {}
    if path.exists():
        key = _read_key(path)
        found[master_id(key)] = key
    with contextlib.suppress(FileNotFoundError):
        for entry in path.parent.iterdir():
            if not entry.name.startswith(path.name):
                continue
            m = _ROTATED_RE.match(entry.name[len(path.name) :])
            if m is None:
                continue
            key = _read_key(entry)
            if master_id(key) == m.group(1):
                found[m.group(1)] = key
    return found


def ensure_master(path: Path) -> bytes:
    """The current master key, created durably if there is none yet."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process was first: use theirs
            create_private_file(path, os.urandom(KEY_BYTES))
    return _read_key(path)


def retired_path(path: Path, old_id: str) -> Path:
    return path.with_name(f"{path.name}.{old_id}")


def keep_retired(path: Path, old: bytes) -> Path:
    """Keep ``old`` as ``<file>.<id>`` (durably) before the current file changes."""
    kept = retired_path(path, master_id(old))
    with contextlib.suppress(FileExistsError):
        create_private_file(kept, old)
    return kept


def install_master(path: Path, new: bytes) -> None:
    """Make ``new`` the current master: written beside, fsynced, renamed over."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, new)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _wrap(wrapping: bytes, key: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(WRAP_NONCE_BYTES)
    return nonce + AESGCM(wrapping).encrypt(nonce, key, aad)


def _unwrap(wrapping: bytes, wrapped: bytes, aad: bytes, what: str) -> bytes:
    if len(wrapped) != WRAPPED_BYTES:
        raise SseKeyError(f"a wrapped {what} is {len(wrapped)} bytes, expected {WRAPPED_BYTES}")
    try:
        return AESGCM(wrapping).decrypt(wrapped[:WRAP_NONCE_BYTES], wrapped[WRAP_NONCE_BYTES:], aad)
    except InvalidTag:
        raise SseKeyError(f"the {what} does not unwrap with this key") from None


def wrap_kek(master: bytes, kek_id: str, kek: bytes) -> bytes:
    return _wrap(master, kek, kek_id.encode("ascii"))


def unwrap_kek(master: bytes, kek_id: str, wrapped: bytes) -> bytes:
    return _unwrap(master, wrapped, kek_id.encode("ascii"), f"KEK {kek_id}")


def wrap_dek(kek: bytes, dek: bytes) -> bytes:
    return _wrap(kek, dek, _DEK_AAD)


def unwrap_dek(kek: bytes, wrapped: bytes) -> bytes:
    return _unwrap(kek, wrapped, _DEK_AAD, "data key")


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def new_kek_id() -> str:
    return os.urandom(8).hex()


def key_check(salt: bytes, customer_key: bytes) -> bytes:
    """What an SSE-C object stores to recognise its key: a salted HMAC."""
    return hmac.new(salt, customer_key, sha256).digest()


def key_matches(salt: bytes, check: bytes, customer_key: bytes) -> bool:
    return hmac.compare_digest(key_check(salt, customer_key), check)
