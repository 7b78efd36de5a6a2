"""The CLI's ``keys`` and ``bucket-policy`` modes.

Rules this module keeps:

* Every change is a writer mutation (``seglake/writer/key_ops.py``). While a
  server runs it goes through the admin socket (token-checked) and the
  maintenance process to the writer. With no server, key changes (not
  bucket policies, which the writer also mirrors into record files) are
  applied by the writer embedded in this process
  (``seglake/writer/embedded.py``): it takes the data-dir lock and the
  writer lock, so nothing else can write, and commits the very same
  mutation as the live writer.
* Secrets are sealed here (``seglake/auth/keystore.py``) before they leave
  this process; the writer, the admin socket and ``meta.db`` only ever see
  ciphertext. A generated secret is printed once, at creation.
* Reads (``list``, ``list-buckets``, ``get``) use a read-only connection and
  work whether or not a server runs.
* Policies are checked here for a readable error, and again by the writer.
"""

from __future__ import annotations

import json
import secrets
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from seglake.auth.canonical import canonical_id
from seglake.auth.keystore import encrypt_secret, ensure_master_key
from seglake.config import Config, parse_bool
from seglake.errors import S3Error
from seglake.ipc.messages import (
    KeyAllowBucket,
    KeyCreate,
    KeyDelete,
    KeyDisallowBucket,
    KeyUpdate,
    Request,
    SetBucketPolicy,
)
from seglake.meta.schema import open_read, query
from seglake.ops.admin_client import AdminRefused, AdminUnavailable, admin_mutation
from seglake.protocol.policy import PolicyError, parse_bucket_policy, parse_key_policy
from seglake.writer.embedded import apply_offline

KEY_ACTIONS: Final = (
    "create", "list", "enable", "disable", "delete", "set-policy",
    "allow-bucket", "disallow-bucket", "list-buckets",
)  # fmt: skip
BUCKET_POLICY_ACTIONS: Final = ("get", "set", "put", "delete")
# Generated credentials: 20 upper-case letters/digits like an AWS key id, and
# 40 characters (~238 bits) of secret.
GENERATED_KEY_LEN: Final = 20
GENERATED_SECRET_LEN: Final = 40


class CommandError(Exception):
    """A usage or input problem, reported with exit code 2."""


# ---- mutations: live server or the embedded writer -------------------------------


R = TypeVar("R")


# Mutations this process may apply itself when no server runs. Bucket
# policies change only through a running server, as they always have: the
# embedded writer would keep their record files too, but allowing it is a
# change of the CLI's contract, not of its layout.
OFFLINE_MUTATIONS: Final = frozenset(
    {KeyCreate, KeyUpdate, KeyDelete, KeyAllowBucket, KeyDisallowBucket}
)


def mutate(cfg: Config, msg: Request[R]) -> R:
    try:
        return trio.run(admin_mutation, cfg, msg)
    except AdminRefused as exc:
        raise exc.error from None
    except AdminUnavailable as exc:
        if type(msg) not in OFFLINE_MUTATIONS:
            raise S3Error(
                "ServiceUnavailable",
                message=f"{exc}; bucket policies change only through a running server",
            ) from None
        # A fresh data dir: keys may be created before the first server start.
        cfg.root.mkdir(parents=True, exist_ok=True)
        return apply_offline(cfg, f"keys {msg.name}", msg)


# ---- helpers -----------------------------------------------------------------


def _policy_text(value: str) -> str:
    """``@path`` reads the value (a policy, a secret) from a file, ``@-`` from stdin."""
    if value.startswith("@"):
        source = value[1:]
        return sys.stdin.read() if source == "-" else Path(source).read_text()
    return value


def _bool(value: str | None, what: str) -> bool:
    if value is None:
        return True
    parsed = parse_bool(value)
    if parsed is None:
        raise CommandError(f"{what} must be true or false")
    return parsed


def _need(value: str | None, flag: str) -> str:
    if not value:
        raise CommandError(f"{flag} is required")
    return value


def _read_conn(cfg: Config) -> Any:
    if not cfg.db_path.exists():
        raise CommandError(f"no database at {cfg.db_path}")
    return open_read(str(cfg.db_path))


def _print(doc: Any, as_json: bool, text: str) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True) if as_json else text)


# ---- keys ------------------------------------------------------------------------


def _reported(run: Callable[[], int]) -> int:
    """``run()``'s exit code, or its error on stderr: 2 for a refused command
    line (``CommandError``), 1 for a failure."""
    try:
        return run()
    except CommandError as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 2
    except (S3Error, PolicyError, OSError, RuntimeError, ValueError) as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 1


def keys_cmd(cfg: Config, action: str, opts: dict[str, str | None], *, as_json: bool) -> int:
    if action not in KEY_ACTIONS:
        print(f"seglake: keys action must be one of {', '.join(KEY_ACTIONS)}", file=sys.stderr)
        return 2
    return _reported(lambda: _keys(cfg, action, opts, as_json))


def _keys(cfg: Config, action: str, opts: dict[str, str | None], as_json: bool) -> int:
    if action == "list":
        return _list_keys(cfg, as_json)
    access = opts.get("key_access")
    if action == "create":
        alphabet = string.ascii_uppercase + string.digits
        access = access or "".join(secrets.choice(alphabet) for _ in range(GENERATED_KEY_LEN))
        if cfg.access_key and access == cfg.access_key:
            raise CommandError("that access key is the bootstrap admin key")
        # ``@file``/``@-`` keeps the secret out of the process list.
        raw_secret = opts.get("key_secret")
        given = _policy_text(raw_secret).strip() if raw_secret else None
        secret = given or secrets.token_urlsafe(GENERATED_SECRET_LEN)[:GENERATED_SECRET_LEN]
        policy = _policy_text(opts.get("key_policy") or "rw")
        parse_key_policy(policy)
        inflight = int(opts.get("key_inflight") or 0)
        cfg.root.mkdir(parents=True, exist_ok=True)
        sealed = encrypt_secret(ensure_master_key(cfg.root), access, secret)
        create = KeyCreate(
            access_key=access, secret_enc=sealed, policy=policy,
            enabled=_bool(opts.get("key_enabled"), "--key-enabled"), inflight=inflight,
        )  # fmt: skip
        mutate(cfg, create)
        # The id ACL grants and bucket policies name the key by (id="...").
        doc = {"access_key": access, "created": True, "canonical_id": canonical_id(access)}
        if not given:
            doc["secret_key"] = secret  # shown once; only the sealed form is stored
        lines = [f"created key {access} (canonical id {canonical_id(access)})"]
        if not given:
            lines.append(f"secret (shown only now): {secret}")
        _print(doc, as_json, "\n".join(lines))
        return 0
    access = _need(access, "--key-access")
    if action == "list-buckets":
        conn = _read_conn(cfg)
        try:
            if not query(conn, "SELECT 1 FROM api_keys WHERE access_key = ?", (access,)):
                raise CommandError(f"no such key {access!r}")
            rows = query(
                conn, "SELECT bucket FROM api_key_buckets WHERE access_key = ? ORDER BY bucket",
                (access,),
            )  # fmt: skip
        finally:
            conn.close()
        buckets = [str(r[0]) for r in rows]
        text = "\n".join(buckets) if buckets else "(no allow-list: every bucket)"
        _print({"access_key": access, "buckets": buckets}, as_json, text)
        return 0
    if action in ("enable", "disable"):
        mutate(cfg, KeyUpdate(access_key=access, enabled=action == "enable"))
        _print(
            {"access_key": access, "enabled": action == "enable"}, as_json, f"{action}d {access}"
        )
        return 0
    if action == "delete":
        mutate(cfg, KeyDelete(access_key=access))
        _print({"access_key": access, "deleted": True}, as_json, f"deleted {access}")
        return 0
    if action == "set-policy":
        policy = _policy_text(_need(opts.get("key_policy"), "--key-policy"))
        parse_key_policy(policy)
        update = KeyUpdate(access_key=access, policy=policy)
        if opts.get("key_inflight") is not None:
            update = KeyUpdate(
                access_key=access, policy=policy, inflight=int(opts["key_inflight"] or 0)
            )
        mutate(cfg, update)
        _print({"access_key": access, "policy": policy}, as_json, f"policy of {access} set")
        return 0
    bucket = _need(opts.get("key_bucket"), "--key-bucket")
    kind = KeyAllowBucket if action == "allow-bucket" else KeyDisallowBucket
    mutate(cfg, kind(access_key=access, bucket=bucket))
    verb = "allowed" if action == "allow-bucket" else "disallowed"
    _print({"access_key": access, "bucket": bucket, verb: True}, as_json, f"{verb} {bucket}")
    return 0


def _list_keys(cfg: Config, as_json: bool) -> int:
    conn = _read_conn(cfg)
    try:
        rows = query(
            conn,
            "SELECT access_key, enabled, policy, inflight, created_ns FROM api_keys "
            "ORDER BY access_key",
        )
        allowed: dict[str, list[str]] = {}
        for key, bucket in query(
            conn, "SELECT access_key, bucket FROM api_key_buckets ORDER BY bucket"
        ):
            allowed.setdefault(str(key), []).append(str(bucket))
    finally:
        conn.close()
    keys: list[dict[str, Any]] = [
        {
            "access_key": str(r[0]),
            "canonical_id": canonical_id(str(r[0])),
            "enabled": bool(r[1]),
            "policy": str(r[2]),
            "inflight": int(r[3]),
            "created_ns": int(r[4]),
            "buckets": allowed.get(str(r[0]), []),
        }
        for r in rows
    ]
    if as_json:
        _print(keys, True, "")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("access key", "enabled", "policy", "in-flight", "buckets", title="API keys")
    for k in keys:
        policy = k["policy"] if k["policy"] in ("rw", "ro", "read-only") else "custom JSON"
        table.add_row(
            k["access_key"], "yes" if k["enabled"] else "no", policy,
            str(k["inflight"] or "default"), ", ".join(k["buckets"]) or "(all)",
        )  # fmt: skip
    Console().print(table)
    return 0


# ---- bucket policies -------------------------------------------------------------


def bucket_policy_cmd(
    cfg: Config, action: str, bucket: str | None, policy: str | None, *, as_json: bool
) -> int:
    if action not in BUCKET_POLICY_ACTIONS:
        print(
            f"seglake: bucket-policy action must be one of {', '.join(BUCKET_POLICY_ACTIONS)}",
            file=sys.stderr,
        )
        return 2
    return _reported(lambda: _bucket_policy(cfg, action, bucket, policy, as_json))


def _bucket_policy(
    cfg: Config, action: str, bucket: str | None, policy: str | None, as_json: bool
) -> int:
    name = _need(bucket, "--bucket-policy-bucket")
    if action == "get":
        conn = _read_conn(cfg)
        try:
            rows = query(conn, "SELECT policy FROM buckets WHERE name = ?", (name,))
        finally:
            conn.close()
        if not rows:
            raise S3Error("NoSuchBucket", resource=name)
        if rows[0][0] is None:
            raise S3Error("NoSuchBucketPolicy", resource=name)
        text = str(rows[0][0])
        _print({"bucket": name, "policy": json.loads(text)}, as_json, text)
        return 0
    if action == "delete":
        mutate(cfg, SetBucketPolicy(bucket=name, policy=None))
        _print({"bucket": name, "deleted": True}, as_json, f"policy of {name} deleted")
        return 0
    text = _policy_text(_need(policy, "--bucket-policy"))
    parse_bucket_policy(text, name)
    mutate(cfg, SetBucketPolicy(bucket=name, policy=text))
    _print({"bucket": name, "set": True}, as_json, f"policy of {name} set")
    return 0


# ---- command line --------------------------------------------------------------

# The seed's spellings (``-mode keys -keys-action create -key-access=...``).
KEY_FLAGS: Final = ("key_access", "key_secret", "key_policy", "key_enabled", "key_inflight")


def add_keys_flags(p: Any) -> None:
    """The ``keys`` and ``bucket-policy`` flags, on the CLI's parser."""
    p.add_argument("--keys-action", help="keys: " + " | ".join(KEY_ACTIONS))
    p.add_argument("--key-access", help="keys: the access key id")
    p.add_argument(
        "--key-secret", help="keys create: the secret, or @file / @- (generated when omitted)"
    )
    p.add_argument("--key-policy", help="keys: rw | ro | JSON policy | @file")
    p.add_argument("--key-enabled", help="keys create: true | false (default true)")
    p.add_argument("--key-inflight", help="keys: in-flight request limit (0 = server default)")
    p.add_argument("--key-bucket", help="keys allow-bucket/disallow-bucket: the bucket")
    p.add_argument("--bucket-policy-action", help="bucket-policy: get | set | delete")
    p.add_argument("--bucket-policy-bucket", help="bucket-policy: the bucket")
    p.add_argument("--bucket-policy", help="bucket-policy set: JSON policy | @file")


def run_keys_mode(cfg: Config, mode: str, args: Any, words: list[str]) -> int:
    """``words``: positional words after the mode (``keys create`` form)."""
    if mode == "keys":
        action = args.keys_action or (words[0] if words else "list")
        opts = {name: getattr(args, name) for name in (*KEY_FLAGS, "key_bucket")}
        return keys_cmd(cfg, action, opts, as_json=args.json)
    action = args.bucket_policy_action or (words[0] if words else "get")
    bucket = args.bucket_policy_bucket or (words[1] if len(words) > 1 else None)
    return bucket_policy_cmd(cfg, action, bucket, args.bucket_policy, as_json=args.json)
