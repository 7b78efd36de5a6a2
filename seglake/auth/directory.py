"""The frontend's view of API keys and bucket policies (read-only).

Rules this module keeps:

* The bootstrap key (``--access-key``/``--secret-key``) is the admin: it is
  not in the database, has no key policy and no allow-list. Every other key
  is a row of ``api_keys``; a database key can never shadow the bootstrap
  one.
* Keys are cached per process. Before a lookup the cache is validated
  against ``PRAGMA data_version`` (changes whenever another connection
  commits; costs no I/O) and, only when that moved, against
  ``settings['auth_generation']`` (bumped by every key or bucket-policy
  change). A disabled or deleted key therefore stops working on the very
  next request after the writer's commit.
* Bucket policies are read from ``buckets.policy`` on every decision (one
  primary-key lookup, always current); only their parsing is cached, by text.
* Stored data is treated as hostile too: a row that fails to decrypt or a
  stored policy that no longer parses makes that key unusable (logged),
  never more powerful.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import apsw

from seglake.auth.canonical import canonical_id
from seglake.auth.keystore import KeystoreError, decrypt_secret, load_master_key
from seglake.meta.schema import query, scalar
from seglake.protocol.policy import (
    Policy,
    PolicyError,
    deny_everything,
    parse_bucket_policy,
    parse_key_policy,
)

log = logging.getLogger("seglake.auth")

AUTH_GENERATION_SETTING: Final = "auth_generation"
# Parsed bucket policies kept per process; a policy is at most 20 KiB, so
# this bounds the cache to a few MiB even with hostile churn.
POLICY_CACHE_ENTRIES: Final = 256
# Looked-up keys kept per process, unknown ids included (a flood of made-up
# ids must not reach SQLite every time, nor grow memory without bound).
KEY_CACHE_ENTRIES: Final = 4096


@dataclass(frozen=True)
class KeyRecord:
    access_key: str
    secret: str
    enabled: bool
    admin: bool
    policy: Policy | None  # None for the admin (no identity restriction)
    inflight: int  # 0 = the server default
    buckets: frozenset[str]  # empty = every bucket

    def may_use_bucket(self, bucket: str) -> bool:
        return not self.buckets or bucket in self.buckets


class KeyDirectory:
    def __init__(self, conn: apsw.Connection, data_dir: Path, admin_key: str, admin_secret: str):
        self._conn = conn
        self._data_dir = data_dir
        self._admin = (
            KeyRecord(admin_key, admin_secret, True, True, None, 0, frozenset())
            if admin_key
            else None
        )
        self._master: bytes | None = None
        self._data_version: int | None = None
        self._generation: str | None = None
        self._keys: dict[str, KeyRecord | None] = {}
        self._policies: OrderedDict[tuple[str, str], Policy | None] = OrderedDict()

    # ---- cache validity ------------------------------------------------
    def _refresh(self) -> None:
        version = int(scalar(self._conn, "PRAGMA data_version"))
        if version == self._data_version:
            return
        self._data_version = version
        generation = scalar(
            self._conn, "SELECT value FROM settings WHERE name = ?", (AUTH_GENERATION_SETTING,)
        )
        generation = None if generation is None else str(generation)
        if generation != self._generation:
            self._generation = generation
            self._keys.clear()

    # ---- keys ----------------------------------------------------------
    def lookup(self, access_key: str) -> KeyRecord | None:
        """The key, enabled or not; None if it does not exist (or is unusable)."""
        if self._admin is not None and access_key == self._admin.access_key:
            return self._admin
        self._refresh()
        if access_key in self._keys:
            return self._keys[access_key]
        record = self._load(access_key)
        if len(self._keys) >= KEY_CACHE_ENTRIES:
            self._keys.clear()
        self._keys[access_key] = record
        return record

    def secret_for(self, access_key: str) -> str | None:
        """For the SigV4 verifier: the secret of a usable key."""
        record = self.lookup(access_key)
        return record.secret if record is not None else None

    def _load(self, access_key: str) -> KeyRecord | None:
        rows = query(
            self._conn,
            "SELECT secret_enc, policy, enabled, inflight FROM api_keys WHERE access_key = ?",
            (access_key,),
        )
        if not rows:
            return None
        blob, policy_text, enabled, inflight = rows[0]
        try:
            if self._master is None:
                self._master = load_master_key(self._data_dir)
            secret = decrypt_secret(self._master, access_key, bytes(blob))
            policy = parse_key_policy(str(policy_text))
        except (KeystoreError, PolicyError, UnicodeDecodeError) as exc:
            log.error("key %r is unusable: %s", access_key, exc)
            return None
        buckets = frozenset(
            str(r[0])
            for r in query(
                self._conn, "SELECT bucket FROM api_key_buckets WHERE access_key = ?", (access_key,)
            )
        )
        return KeyRecord(access_key, secret, bool(enabled), False, policy, int(inflight), buckets)

    # ---- bucket policies -------------------------------------------------
    def bucket_policy_text(self, bucket: str) -> str | None:
        value = scalar(self._conn, "SELECT policy FROM buckets WHERE name = ?", (bucket,))
        return None if value is None else str(value)

    def bucket_policy(self, bucket: str) -> Policy | None:
        text = self.bucket_policy_text(bucket)
        if text is None:
            return None
        cache_key = (bucket, text)
        if cache_key in self._policies:
            self._policies.move_to_end(cache_key)
            return self._policies[cache_key]
        try:
            policy: Policy | None = parse_bucket_policy(text, bucket)
        except PolicyError as exc:
            # Only the writer stores policies and it validates them; a row
            # that does not parse is damage. Refuse everything it governs
            # rather than ignore it (see ``UNREADABLE``).
            log.error("bucket %r has an unreadable policy: %s", bucket, exc)
            policy = UNREADABLE
        self._policies[cache_key] = policy
        if len(self._policies) > POLICY_CACHE_ENTRIES:
            self._policies.popitem(last=False)
        return policy


# A stored bucket policy that no longer parses denies everything, so damage
# can only ever narrow access.
UNREADABLE: Final = deny_everything()


class CanonicalIndex:
    """Canonical user ids (``auth/canonical.py``) of every key, for ACLs:
    which ids name a key (a grant to any other is ``InvalidArgument``) and
    each one's display name, the access key id (keys have no other name).
    Rebuilt when ``settings['auth_generation']`` moves, as the key cache."""

    def __init__(self, conn: apsw.Connection, admin_key: str) -> None:
        self._conn = conn
        self.admin_id = canonical_id(admin_key)
        self._admin_key = admin_key
        self._data_version: int | None = None
        self._generation: str | None = None
        self._names: dict[str, str] | None = None

    def _current(self) -> dict[str, str]:
        version = int(scalar(self._conn, "PRAGMA data_version"))
        if version != self._data_version or self._names is None:
            self._data_version = version
            generation = scalar(
                self._conn,
                "SELECT value FROM settings WHERE name = ?",
                (AUTH_GENERATION_SETTING,),
            )
            generation = None if generation is None else str(generation)
            if generation != self._generation or self._names is None:
                self._generation = generation
                names = {
                    canonical_id(str(r[0])): str(r[0])
                    for r in query(self._conn, "SELECT access_key FROM api_keys")
                }
                if self._admin_key:
                    names[self.admin_id] = self._admin_key
                self._names = names
        return self._names

    def display_name(self, ident: str) -> str | None:
        return self._current().get(ident)

    def known(self, ident: str) -> bool:
        return ident in self._current()
