"""What each setting means, and where the value in force came from.

``seglake --help`` shows each flag with its line here, its default and its
environment variable; ``seglake config show`` prints the effective
configuration with each value's source (default, file, env or flag), secrets
redacted. A unit test fails when a setting has no line here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from seglake.config import FIELD_TYPES, Config, env_name, read_secrets_file

# Settings whose value is never printed.
SECRET_FIELDS: Final = frozenset({"secret_key", "repl_secret_key"})
REDACTED: Final = "<redacted>"

HELP: Final[dict[str, str]] = {
    "data_dir": "directory of the store: meta.db, segments, manifests, locks",
    "addr": "HOST:PORT to listen on (':9000' = every address, port 9000)",
    "access_key": "bootstrap admin access key id",
    "secret_key": "bootstrap admin secret key (put it in --secrets-file, not on a command line)",
    "region": "the region this store answers for and signs with",
    "frontends": "number of frontend processes (0 = one per CPU)",
    "shutdown_timeout": "seconds in-flight requests may take to finish on SIGTERM",
    "segment_max_bytes": "a segment file is sealed and a new one started at this size",
    "segment_idle_seal": "seconds without appends after which the open segment is sealed",
    "sync_interval": "extra seconds a group commit waits to gather writes (0 = none)",
    "sync_bytes": "payload bytes at which a group commit stops growing",
    "sync_mode": "accepted for old command lines; no effect since segment format 2 (no manifest files)",
    "max_object_size": "largest object a single PUT may store (0 = unlimited)",
    "min_part_size": "smallest part but the last of a multipart upload (lower only for tests)",
    "min_free_bytes": "writes are refused (507) while free disk space is below this",
    "virtual_hosted": "take the bucket from the Host header (<bucket>.<domain>)",
    "domains": "base domains for virtual-hosted style, comma separated",
    "allow_unsigned_payload": "accept UNSIGNED-PAYLOAD bodies (signature covers headers only)",
    "public_buckets": "buckets that unsigned requests may use, as their policy allows",
    "trusted_proxies": "CIDRs whose X-Forwarded-For / -Proto headers are believed",
    "key_inflight_limit": "writes per access key at once, split over frontends; reads: 4x per frontend (0 = off)",
    "default_versioning": "versioning of new buckets: enabled or unversioned",
    "max_header_bytes": "largest request header section accepted",
    "max_url_bytes": "longest request URL accepted",
    "auth_fail_burst": "failed signatures per client IP / key before slowing it (0 = off)",
    "auth_fail_rate": "failed signatures per second allowed after the burst",
    "replay_ttl": "seconds a verified signature is remembered to detect replays (0 = off)",
    "replay_block": "refuse replayed requests instead of only logging them",
    "replay_cache_max": "most signatures the replay cache remembers",
    "body_idle_timeout": "seconds a request body may deliver nothing before 400 (0 = off)",
    "body_min_rate": "bytes/s a slow request body must keep up once past the idle timeout",
    "keep_alive_timeout": "seconds an idle connection or an incomplete request head may last",
    "log_level": "debug, info, warning or error",
    "log_format": "access log lines as text or json (one object per request)",
    "metrics": "count requests and commits for stats, /metrics and the dashboard",
    "stats_interval": "seconds between each process's counter reports to the supervisor",
    "metrics_addr": "HOST:PORT of a separate listener for /metrics and /health/* ('' = none)",
    "metrics_auth": "require SigV4 (GetMetaStats) for /.seglake/metrics, from any address",
    "cors_origins": "origins browsers may call from (comma separated) where a bucket has no CORS rules",
    "cors_methods": "methods a CORS preflight may ask for",
    "cors_headers": "request headers a CORS preflight may ask for ('*' = any)",
    "cors_max_age": "seconds a browser may cache a preflight answer",
    "site_id": "this store's replication site id, 16 hex (only while the store is empty)",
    "test_clock_offset_ms": "tests only (SEGLAKE_TEST_MODE=1): shift the replication clock by ms",
    "require_content_md5": "refuse PutObject/UploadPart without Content-MD5",
    "require_if_match_buckets": "buckets whose writes must carry If-Match or If-None-Match: *",
    "restart_backoff_max": "longest wait in seconds before a crashed child is restarted",
    "tls": "serve TLS on the listening socket (needs --tls-cert and --tls-key)",
    "tls_cert": "PEM certificate chain; re-read when it changes or on SIGHUP",
    "tls_key": "PEM private key of the certificate",
    "mpu_ttl": "seconds after which an idle multipart upload is aborted by MPU-GC",
    "mpu_gc_interval": "seconds between scheduled MPU-GC runs (0 = none)",
    "scrub_interval": "seconds between scheduled scrubs (0 = none)",
    "scrub_bytes_per_sec": "read rate limit of scrub (0 = unthrottled)",
    "lifecycle_interval": "seconds between scheduled bucket lifecycle runs (0 = none)",
    "lifecycle_actions_per_sec": "lifecycle actions applied per second at most (0 = unthrottled)",
    "lifecycle_day_seconds": "length of a lifecycle day in seconds (test-only time scale)",
    "gc_min_age": "seconds a dead segment must have been sealed before GC removes it",
    "gc_max_segments": "most segments one GC run removes (0 = unlimited)",
    "gc_max_bytes": "most bytes one GC run reclaims (0 = unlimited)",
    "gc_rewrite_max_live": "gc-rewrite moves segments whose live fraction is below this",
    "gc_rewrite_bytes_per_sec": "copy rate limit of gc-rewrite (0 = unthrottled)",
    "gc_pause_file": "while this file exists GC pauses ('' = DATA_DIR/.seglake-gc-pause)",
    "sse_master_key_file": "the SSE master key file; back it up ('' = DATA_DIR/.seglake-sse.master)",
    "sse_c_allow_http": "accept SSE-C customer keys over plain HTTP (tests only; AWS refuses)",
    "repl_remote": "replication remotes: S3 URLs of other sites (comma list; flag repeatable)",
    "repl_access_key": "access key this site signs replication requests with",
    "repl_secret_key": "its secret key (put it in --secrets-file, not on a command line)",
    "repl_region": "SigV4 region of the replication remotes",
    "repl_other": "repl-validate: the other data dir or S3 URL to compare with",
    "repl_pull": "serve: pull from every repl-remote continuously",
    "repl_push": "serve: push to every repl-remote continuously",
    "repl_interval": "seconds between pull steps once caught up",
    "repl_backoff_max": "longest wait between retries of a failing pull",
    "repl_retry_timeout": "one-shot modes give up after failing this long",
    "repl_since": "repl-pull: start at this cursor (EPOCH:SEQ) when none is stored",
    "repl_limit": "oplog entries per pulled page (1..10000)",
    "repl_watch": "repl-pull: keep pulling every repl-interval instead of exiting",
    "repl_fetch_data": "fetch object data with the metadata (false is refused: see docs)",
    "repl_push_since": "repl-push: start at this seq of our oplog when none is stored",
    "repl_push_limit": "oplog entries per pushed page (1..10000)",
    "repl_push_watch": "repl-push: keep pushing every repl-push-interval instead of exiting",
    "repl_push_interval": "seconds between push steps once caught up",
    "repl_push_backoff_max": "longest wait between retries of a failing push",
    "repl_bootstrap_force": "repl-bootstrap: apply the snapshot even if the store is not empty",
    "repl_ca_file": "PEM CA file trusted for https:// remotes, beside the system store",
    "repl_oplog_retention": "keep oplog rows (and DELETED rows for gc-run) at least this long",
    "repl_oplog_max_bytes": "prune the oplog above this size even if a push remote is behind",
    "repl_oplog_prune_interval": "seconds between scheduled oplog prunes (0 = never)",
}


def flag_help(name: str) -> str:
    """The --help line of a setting: meaning, default and environment variable."""
    default = next(f.default for f in dataclasses.fields(Config) if f.name == name)
    shown = (
        "''" if default == "" else str(default).lower() if isinstance(default, bool) else default
    )
    return f"{HELP[name]} (default {shown}; env {env_name(name)})"


def sources(
    flags: Mapping[str, Any], env: Mapping[str, str], secrets_file: str | None
) -> dict[str, str]:
    """Where each setting's value comes from, by the same layering as
    ``build_config``: default, then the secrets file, then env, then flags."""
    out = dict.fromkeys(FIELD_TYPES, "default")
    path = secrets_file or env.get("SEGLAKE_SECRETS_FILE")
    if path:
        for key in read_secrets_file(path):
            if key in out:
                out[key] = f"file {path}"
    for name in FIELD_TYPES:
        if env_name(name) in env:
            out[name] = f"env {env_name(name)}"
    for name in flags:
        if name in out:
            out[name] = "flag"
    return out


def effective(cfg: Config, where: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every setting with its value (secrets redacted unless empty) and source."""
    rows = []
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if f.name in SECRET_FIELDS and value:
            value = REDACTED
        rows.append({"name": f.name, "value": value, "source": where[f.name]})
    return rows
