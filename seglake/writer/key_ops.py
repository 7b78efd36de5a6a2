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
from typing import Any, Final

import apsw

from seglake.errors import S3Error
from seglake.meta.schema import query, scalar, set_setting
from seglake.protocol.policy import PolicyError, parse_bucket_policy, parse_key_policy
from seglake.writer.ops import BatchContext, bucket_versioning

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


def _access_key(a: dict[str, Any]) -> str:
    key = a.get("access_key")
    if not isinstance(key, str) or not ACCESS_KEY_RE.fullmatch(key):
        raise S3Error("InvalidArgument", message="access key ids are 3..128 of [A-Za-z0-9._@+=-]")
    return key


def _existing(conn: apsw.Connection, key: str) -> None:
    if not query(conn, "SELECT 1 FROM api_keys WHERE access_key = ?", (key,)):
        raise S3Error("InvalidArgument", message=f"no such key {key!r}")


def _policy(value: Any) -> str:
    if not isinstance(value, str):
        raise S3Error("MalformedPolicy", message="the policy must be text")
    try:
        parse_key_policy(value)
    except PolicyError as exc:
        raise S3Error("MalformedPolicy", message=str(exc)) from None
    return value


def _inflight(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INFLIGHT:
        raise S3Error("InvalidArgument", message=f"inflight must be 0..{MAX_INFLIGHT}")
    return value


def apply_key_create(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    key = _access_key(a)
    blob = a.get("secret_enc")
    if not isinstance(blob, bytes) or not 0 < len(blob) <= MAX_SECRET_BLOB:
        raise S3Error("InvalidArgument", message="key_create needs the sealed secret")
    if query(conn, "SELECT 1 FROM api_keys WHERE access_key = ?", (key,)):
        raise S3Error("InvalidArgument", message=f"key {key!r} already exists")
    enabled = a.get("enabled", True)
    if not isinstance(enabled, bool):
        raise S3Error("InvalidArgument", message="enabled must be true or false")
    conn.execute(
        "INSERT INTO api_keys(access_key, secret_enc, policy, enabled, inflight, created_ns) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (key, blob, _policy(a.get("policy", "rw")), int(enabled),
         _inflight(a.get("inflight", 0)), ctx.clock.tick()),
    )  # fmt: skip
    _bump(conn)
    return {"access_key": key}


def apply_key_update(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    """Any of ``enabled``, ``policy``, ``inflight`` for an existing key."""
    key = _access_key(a)
    _existing(conn, key)
    if "enabled" in a:
        if not isinstance(a["enabled"], bool):
            raise S3Error("InvalidArgument", message="enabled must be true or false")
        conn.execute(
            "UPDATE api_keys SET enabled = ? WHERE access_key = ?", (int(a["enabled"]), key)
        )
    if "policy" in a:
        conn.execute(
            "UPDATE api_keys SET policy = ? WHERE access_key = ?", (_policy(a["policy"]), key)
        )
    if "inflight" in a:
        conn.execute(
            "UPDATE api_keys SET inflight = ? WHERE access_key = ?", (_inflight(a["inflight"]), key)
        )
    _bump(conn)
    return {"access_key": key}


def apply_key_delete(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    key = _access_key(a)
    _existing(conn, key)
    conn.execute("DELETE FROM api_key_buckets WHERE access_key = ?", (key,))
    conn.execute("DELETE FROM api_keys WHERE access_key = ?", (key,))
    _bump(conn)
    return {"access_key": key}


def _bucket_arg(a: dict[str, Any]) -> str:
    bucket = a.get("bucket")
    if not isinstance(bucket, str) or not 3 <= len(bucket) <= 63:
        raise S3Error("InvalidBucketName")
    return bucket


def apply_key_allow_bucket(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    key, bucket = _access_key(a), _bucket_arg(a)
    _existing(conn, key)
    conn.execute(
        "INSERT OR IGNORE INTO api_key_buckets(access_key, bucket) VALUES (?, ?)", (key, bucket)
    )
    _bump(conn)
    return {"access_key": key, "bucket": bucket}


def apply_key_disallow_bucket(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    key, bucket = _access_key(a), _bucket_arg(a)
    _existing(conn, key)
    conn.execute("DELETE FROM api_key_buckets WHERE access_key = ? AND bucket = ?", (key, bucket))
    _bump(conn)
    return {"access_key": key, "bucket": bucket, "removed": conn.changes() > 0}


def apply_set_bucket_policy(conn: apsw.Connection, ctx: BatchContext, a: dict[str, Any]) -> Any:
    """``{"bucket", "policy"}``; ``policy`` None deletes it."""
    bucket = _bucket_arg(a)
    bucket_versioning(conn, bucket)  # NoSuchBucket
    text = a.get("policy")
    if text is not None:
        if not isinstance(text, str):
            raise S3Error("MalformedPolicy")
        try:
            parse_bucket_policy(text, bucket)
        except PolicyError as exc:
            raise S3Error("MalformedPolicy", message=str(exc)) from None
    conn.execute("UPDATE buckets SET policy = ? WHERE name = ?", (text, bucket))
    _bump(conn)
    return {"bucket": bucket}


APPLY: Final = {
    "key_create": apply_key_create,
    "key_update": apply_key_update,
    "key_delete": apply_key_delete,
    "key_allow_bucket": apply_key_allow_bucket,
    "key_disallow_bucket": apply_key_disallow_bucket,
    "set_bucket_policy": apply_set_bucket_policy,
}
# Mutations that change who may do what, not object data: the quiesce gate
# lets them through (revoking a key must work during maintenance too).
KEY_MUTATIONS: Final = frozenset(APPLY) - {"set_bucket_policy"}
# Everything here may be relayed from the CLI through the admin socket.
ADMIN_MUTATIONS: Final = frozenset(APPLY)
