"""API-key and bucket-policy mutations, applied inside the committer's batch
transaction (the contract of ``ops.py`` holds: each ``apply_*`` runs under its
own SAVEPOINT, raising ``S3Error`` rolls back only that mutation, nothing here
touches files).

Rules this file keeps:
- Secrets arrive already encrypted (``seglake/auth/keystore.py``); the writer
  stores the opaque bytes and never sees a secret in clear.
- Every policy is parsed again here before it is stored, whoever sent it, so
  ``meta.db`` only ever holds policies the frontends can enforce exactly.
- Every change bumps ``settings['auth_generation']``; frontends watch it to
  drop their cached keys, so a disabled or deleted key stops working within
  their polling interval.
"""

from __future__ import annotations

import re
from typing import Final

import apsw
import msgspec

from seglake.errors import S3Error
from seglake.ipc.messages import (
    BucketPolicySet,
    KeyAllowBucket,
    KeyChanged,
    KeyCreate,
    KeyDelete,
    KeyDisallowBucket,
    KeyUpdate,
    SetBucketPolicy,
)
from seglake.meta.schema import query, scalar, set_setting
from seglake.protocol.policy import PolicyError, parse_bucket_policy, parse_key_policy
from seglake.writer.ops import BatchContext, Mutations, bucket_versioning

AUTH_GENERATION_SETTING: Final = "auth_generation"
# Access key ids: what AWS SDKs and tools accept without escaping.
ACCESS_KEY_RE: Final = re.compile(r"[A-Za-z0-9._@+=-]{3,128}")
# Bounds on what a row may hold: a sealed secret (magic, nonce, tag and up
# to 256 bytes of secret) and a per-key in-flight limit.
MAX_SECRET_BLOB: Final = 512
MAX_INFLIGHT: Final = 1_000_000


def _bump(conn: apsw.Connection) -> None:
    current = scalar(conn, "SELECT value FROM settings WHERE name = ?", (AUTH_GENERATION_SETTING,))
    set_setting(conn, AUTH_GENERATION_SETTING, int(current or 0) + 1)


def _access_key(key: str) -> str:
    if not ACCESS_KEY_RE.fullmatch(key):
        raise S3Error("InvalidArgument", message="access key ids are 3..128 of [A-Za-z0-9._@+=-]")
    return key


def _existing(conn: apsw.Connection, key: str) -> None:
    if not query(conn, "SELECT 1 FROM api_keys WHERE access_key = ?", (key,)):
        raise S3Error("InvalidArgument", message=f"no such key {key!r}")


def _policy(value: str) -> str:
    try:
        parse_key_policy(value)
    except PolicyError as exc:
        raise S3Error("MalformedPolicy", message=str(exc)) from None
    return value


def _inflight(value: int) -> int:
    if not 0 <= value <= MAX_INFLIGHT:
        raise S3Error("InvalidArgument", message=f"inflight must be 0..{MAX_INFLIGHT}")
    return value


def apply_key_create(conn: apsw.Connection, ctx: BatchContext, a: KeyCreate) -> KeyChanged:
    key = _access_key(a.access_key)
    blob = a.secret_enc
    if not 0 < len(blob) <= MAX_SECRET_BLOB:
        raise S3Error("InvalidArgument", message="key_create needs the sealed secret")
    if query(conn, "SELECT 1 FROM api_keys WHERE access_key = ?", (key,)):
        raise S3Error("InvalidArgument", message=f"key {key!r} already exists")
    conn.execute(
        "INSERT INTO api_keys(access_key, secret_enc, policy, enabled, inflight, created_ns) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (key, blob, _policy(a.policy), int(a.enabled), _inflight(a.inflight), ctx.clock.tick()),
    )
    _bump(conn)
    return KeyChanged(access_key=key)


def apply_key_update(conn: apsw.Connection, ctx: BatchContext, a: KeyUpdate) -> KeyChanged:
    """Any of ``enabled``, ``policy``, ``inflight`` for an existing key."""
    key = _access_key(a.access_key)
    _existing(conn, key)
    if not isinstance(a.enabled, msgspec.UnsetType):
        conn.execute("UPDATE api_keys SET enabled = ? WHERE access_key = ?", (int(a.enabled), key))
    if not isinstance(a.policy, msgspec.UnsetType):
        conn.execute(
            "UPDATE api_keys SET policy = ? WHERE access_key = ?", (_policy(a.policy), key)
        )
    if not isinstance(a.inflight, msgspec.UnsetType):
        conn.execute(
            "UPDATE api_keys SET inflight = ? WHERE access_key = ?", (_inflight(a.inflight), key)
        )
    _bump(conn)
    return KeyChanged(access_key=key)


def apply_key_delete(conn: apsw.Connection, ctx: BatchContext, a: KeyDelete) -> KeyChanged:
    key = _access_key(a.access_key)
    _existing(conn, key)
    conn.execute("DELETE FROM api_key_buckets WHERE access_key = ?", (key,))
    conn.execute("DELETE FROM api_keys WHERE access_key = ?", (key,))
    _bump(conn)
    return KeyChanged(access_key=key)


def _bucket_arg(bucket: str) -> str:
    if not 3 <= len(bucket) <= 63:
        raise S3Error("InvalidBucketName")
    return bucket


def apply_key_allow_bucket(
    conn: apsw.Connection, ctx: BatchContext, a: KeyAllowBucket
) -> KeyChanged:
    key, bucket = _access_key(a.access_key), _bucket_arg(a.bucket)
    _existing(conn, key)
    conn.execute(
        "INSERT OR IGNORE INTO api_key_buckets(access_key, bucket) VALUES (?, ?)", (key, bucket)
    )
    _bump(conn)
    return KeyChanged(access_key=key, bucket=bucket)


def apply_key_disallow_bucket(
    conn: apsw.Connection, ctx: BatchContext, a: KeyDisallowBucket
) -> KeyChanged:
    key, bucket = _access_key(a.access_key), _bucket_arg(a.bucket)
    _existing(conn, key)
    conn.execute("DELETE FROM api_key_buckets WHERE access_key = ? AND bucket = ?", (key, bucket))
    _bump(conn)
    return KeyChanged(access_key=key, bucket=bucket, removed=conn.changes() > 0)


def apply_set_bucket_policy(
    conn: apsw.Connection, ctx: BatchContext, a: SetBucketPolicy
) -> BucketPolicySet:
    """``policy`` None deletes it."""
    bucket = _bucket_arg(a.bucket)
    bucket_versioning(conn, bucket)  # NoSuchBucket
    text = a.policy
    if text is not None:
        try:
            parse_bucket_policy(text, bucket)
        except PolicyError as exc:
            raise S3Error("MalformedPolicy", message=str(exc)) from None
    conn.execute("UPDATE buckets SET policy = ? WHERE name = ?", (text, bucket))
    _bump(conn)
    return BucketPolicySet(bucket=bucket)


APPLY: Final[Mutations] = {
    KeyCreate: apply_key_create,
    KeyUpdate: apply_key_update,
    KeyDelete: apply_key_delete,
    KeyAllowBucket: apply_key_allow_bucket,
    KeyDisallowBucket: apply_key_disallow_bucket,
    SetBucketPolicy: apply_set_bucket_policy,
}
# Everything here may be relayed from the CLI through the admin socket.
ADMIN_MUTATIONS: Final = frozenset(t.name for t in APPLY)
# Mutations that change who may do what, not object data: the quiesce gate
# lets them through (revoking a key must work during maintenance too).
KEY_MUTATIONS: Final = ADMIN_MUTATIONS - {SetBucketPolicy.name}
