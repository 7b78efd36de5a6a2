"""Secrets of API keys at rest: AES-256-GCM under a master key outside meta.db.

Rules this module keeps:

* ``meta.db`` never holds a secret in clear. A row holds
  ``MAGIC | 12-byte random nonce | ciphertext+tag``, with the access key id
  as associated data, so a ciphertext copied onto another key's row does not
  decrypt.
* The master key is 32 random bytes in ``.seglake-keys.master`` (mode 0600)
  in the data dir, created on first use: written to a temporary file,
  fsynced, then hard-linked into place (which fails if another process got
  there first, so two creators can never end up with different keys) and the
  directory fsynced. A stolen ``meta.db`` alone therefore reveals nothing;
  backups must carry this file for the keys to keep working.
* Whoever encrypts (the CLI) and whoever decrypts (the frontends) read the
  same file; the writer only stores opaque bytes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seglake.format.layout import MASTER_KEY_FILE
from seglake.private_files import create_private_file

MASTER_KEY_BYTES: Final = 32  # AES-256
NONCE_BYTES: Final = 12  # GCM's standard nonce; random per secret, never reused in practice
MAGIC: Final = b"SGK1"


class KeystoreError(Exception):
    """The master key is missing/unreadable, or a stored secret does not decrypt."""


def master_key_path(data_dir: Path) -> Path:
    return data_dir / MASTER_KEY_FILE


def load_master_key(data_dir: Path) -> bytes:
    path = master_key_path(data_dir)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read the key master file {path}: {exc}") from None
    if len(raw) != MASTER_KEY_BYTES:
        raise KeystoreError(f"{path} is not a {MASTER_KEY_BYTES}-byte master key")
    return raw


def ensure_master_key(data_dir: Path) -> bytes:
    """The master key, created durably if this data dir has none yet."""
    path = master_key_path(data_dir)
    if path.exists():
        return load_master_key(data_dir)
    with contextlib.suppress(FileExistsError):  # another process was first: use theirs
        create_private_file(path, os.urandom(MASTER_KEY_BYTES))
    return load_master_key(data_dir)


def encrypt_secret(master: bytes, access_key: str, secret: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(master).encrypt(nonce, secret.encode("utf-8"), access_key.encode("utf-8"))
    return MAGIC + nonce + sealed


def decrypt_secret(master: bytes, access_key: str, blob: bytes) -> str:
    if len(blob) < len(MAGIC) + NONCE_BYTES + 16 or not blob.startswith(MAGIC):
        raise KeystoreError(f"the stored secret of {access_key!r} is not in a known format")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        plain = AESGCM(master).decrypt(
            nonce, blob[len(MAGIC) + NONCE_BYTES :], access_key.encode("utf-8")
        )
    except InvalidTag:
        raise KeystoreError(
            f"the stored secret of {access_key!r} does not decrypt with this master key"
        ) from None
    return plain.decode("utf-8")
