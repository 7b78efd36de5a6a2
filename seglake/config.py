"""The one configuration object.

Built in layers, later ones winning: defaults → ``--secrets-file`` (KEY=VALUE
lines, never exported to the environment) → ``SEGLAKE_*`` environment
variables → command-line flags. Children of the supervisor receive the final
object serialised as JSON, so every process sees exactly the same settings.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import os
import re
import stat
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from seglake.format import layout
from seglake.protocol.cors import CorsPolicy
from seglake.protocol.limits import MIN_PART_SIZE
from seglake.units import GiB, KiB, MiB


@dataclass(frozen=True)
class Config:
    data_dir: str = "./data"
    addr: str = ":9000"
    access_key: str = ""
    secret_key: str = ""
    region: str = "us-east-1"
    frontends: int = 0  # 0 = one per CPU
    shutdown_timeout: float = 30.0
    # Segments rotate at ~1 GiB (large enough that a busy store keeps few open
    # files, small enough that gc-rewrite moves bounded amounts) or after
    # 10 minutes without appends, so an idle store has every byte sealed.
    segment_max_bytes: int = 1 * GiB
    segment_idle_seal: float = 600.0
    # Group commit: 0 = start a commit as soon as the previous one finished
    # (leader/follower). >0 additionally waits up to this long to gather more.
    sync_interval: float = 0.0
    # A batch stops growing at this many payload bytes so one commit never
    # makes the requests behind it wait for an unbounded fsync.
    sync_bytes: int = 128 * MiB
    # How a batch's manifests become durable: "auto" = one syncfs for a
    # batch of several where the kernel and file system make that a safe
    # barrier (writer/barrier.py), else an fsync each; "fsync" = always an
    # fsync each.
    sync_mode: str = "auto"
    max_object_size: int = 5 * GiB  # 0 = unlimited
    # Every part of a multipart upload but the last must be at least this
    # big. AWS's 5 MiB; lower it only for tests (a 10,000-part upload of
    # 5 MiB parts is 50 GB), since clients expect AWS's limit.
    min_part_size: int = MIN_PART_SIZE
    # Refuse writes (HTTP 507) while free space is below this reserve, so the
    # database and manifests always have room to record what was accepted.
    min_free_bytes: int = 64 * MiB
    # Virtual-hosted-style addressing (``<bucket>.<domain>``). The SPEC rule
    # "IPs, ``localhost`` and dot-less names are path-style" alone would read
    # ``myhost.lan:9000`` as bucket ``myhost``, so the bucket is taken from the
    # Host header only when the host is ``<bucket>.<d>`` for a base domain
    # ``d`` in ``domains`` (comma list, longest match wins; the bare domain is
    # path-style), or ``<bucket>.localhost`` (unambiguous: RFC 6761 reserves
    # ``localhost`` and its subdomains for loopback). Every other host — IPs,
    # ``localhost``, dot-less or unlisted names — is path-style.
    virtual_hosted: bool = True
    domains: str = ""
    allow_unsigned_payload: bool = True
    # Access control (seglake/frontend/authz.py). Unsigned requests are
    # served only for buckets listed here, and only for the actions their
    # bucket policy allows to Principal "*". X-Forwarded-For (the client
    # address policies see) is believed only from these proxy CIDRs. Each
    # key may have this many writes running at once, split over the
    # frontends, and 4x as many reads per frontend (AWS-style SlowDown
    # beyond; rule in frontend/authz.py); a key's own setting overrides it,
    # 0 = unlimited.
    public_buckets: str = ""
    trusted_proxies: str = ""
    key_inflight_limit: int = 32
    default_versioning: str = "enabled"
    # Header and URL caps: 32 KiB matches what nginx/Go allow by default and
    # is far above any S3 client's real request.
    max_header_bytes: int = 32 * KiB
    max_url_bytes: int = 32 * KiB
    # Abuse limits (seglake/frontend/protection.py). Failed signature
    # checks per client IP and per access key, per frontend: a burst of
    # 100, refilled at 2/s. No real client fails that often (a wrong secret
    # fails every request, and SDKs give up after a few retries), while a
    # guessing or flooding client is slowed to 2 attempts/s. 0 = off.
    auth_fail_burst: int = 100
    auth_fail_rate: float = 2.0
    # Replay cache: remember verified request signatures this long (0 = off).
    # 900 s covers the whole ±15 min clock-skew window of header signatures.
    # Without --replay-block a replay is only logged. Shared by the frontends
    # in DATA_DIR/.seglake-replay, 40 bytes per entry (4 MB by default).
    replay_ttl: float = 0.0
    replay_block: bool = False
    replay_cache_max: int = 100_000
    # Slow clients: a request body that delivers nothing for this long, or
    # under body_min_rate bytes/s over the time spent waiting for it once
    # that exceeds this, is cut off with 400 RequestTimeout (AWS cuts idle
    # uploads at ~20 s). 0 = off.
    body_idle_timeout: float = 30.0
    body_min_rate: int = 1 * KiB
    # An idle connection, and a request head still incomplete, are closed
    # after this long (Hypercorn's keep-alive timer runs until the head is
    # parsed): longer than common client pools' idle time.
    keep_alive_timeout: float = 75.0
    log_level: str = "info"
    # One access-log line per request: "text" (human) or "json" (one object).
    log_format: str = "text"
    # Request counters, latency histograms and the writer's commit figures
    # (/v1/meta/stats, /.seglake/metrics, the dashboard). Off: nothing is
    # counted or reported (the benchmark's baseline).
    metrics: bool = True
    # Each process reports its counters to the supervisor this often: the
    # freshness of stats, and what a crash can lose of its counts.
    stats_interval: float = 1.0
    # Prometheus text: "" = served at /.seglake/metrics on the S3 listener
    # to loopback clients; HOST:PORT = also a separate plain listener
    # (/metrics, /health/live, /health/ready) on that address.
    metrics_addr: str = ""
    # Require SigV4 (policy action GetMetaStats) for /.seglake/metrics from
    # any address instead of serving loopback clients unauthenticated.
    metrics_auth: bool = False
    # CORS (browser access), server-wide: for buckets without their own
    # rules (PutBucketCors, which take precedence). No origins = CORS off for
    # those: their preflights are refused (403 AccessForbidden) and no
    # Access-Control-* header is sent.
    # Origins are exact (``https://app.example.com``), ``*`` (any origin,
    # answered with ``*`` and never with credentials) or one wildcard label
    # (``https://*.example.com``). Headers are request header names a
    # preflight may ask for; ``*`` allows any, ``x-amz-*`` a prefix.
    cors_origins: str = ""
    cors_methods: str = "GET,PUT,POST,DELETE,HEAD"
    cors_headers: str = "*"
    # How long a browser may cache a preflight answer; 0 = no Max-Age header.
    cors_max_age: float = 3600.0
    # Integrity/overwrite guards on writes: PutObject/UploadPart without
    # ``Content-MD5`` are refused (400 InvalidRequest) when set; writes to the
    # listed buckets (comma list) must carry ``If-Match`` (overwrite guard) or
    # ``If-None-Match: *`` (create only), else 428 PreconditionRequired.
    require_content_md5: bool = False
    require_if_match_buckets: str = ""
    restart_backoff_max: float = 10.0
    # Native TLS (the seed's -tls -tls-cert FILE -tls-key FILE): TLS 1.2+ on
    # the listening socket. The frontends re-read the certificate and key
    # when either file changes, or on SIGHUP, without dropping connections;
    # a pair that does not load is refused and the old one kept.
    tls: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    # Ops toolbox schedules (run by the maintenance process). Multipart
    # uploads idle longer than a week are abandoned by every client we know
    # (SPEC §8 default); MPU-GC checks for them every hour. Scrub is off by
    # default (0) and, when on, reads at most scrub_bytes_per_sec so client
    # reads keep the disk: 32 MiB/s is a fraction of any SSD or RAID array.
    mpu_ttl: float = 7 * 86400.0
    mpu_gc_interval: float = 3600.0  # 0 = no scheduled MPU-GC
    scrub_interval: float = 0.0  # 0 = no scheduled scrub
    scrub_bytes_per_sec: int = 32 * MiB  # 0 = unthrottled
    # Bucket lifecycle rules (seglake/expiry/), carried out by the maintenance
    # process. AWS evaluates rules once a day; checking hourly acts within an
    # hour of a rule falling due without rescanning big buckets too often.
    # Actions are paced (each is one savepoint of a writer batch) so a large
    # backlog costs clients a bounded share of the writer. A lifecycle "day"
    # is 86,400 s; tests and operators' dry runs shorten it (test-only scale).
    lifecycle_interval: float = 3600.0  # 0 = no scheduled lifecycle runs
    lifecycle_actions_per_sec: int = 1000  # 0 = unthrottled
    lifecycle_day_seconds: float = 86400.0
    # Segment GC (seglake/ops/gc.py). Safety never depends on age
    # (the writer re-checks liveness in its own transaction), so by default
    # every dead sealed segment qualifies; a minimum age only keeps recent
    # garbage around for forensics. 0 limits = unlimited. gc-rewrite moves
    # segments whose live fraction is under gc_rewrite_max_live: at 0.5 each
    # byte copied frees at least one byte, so a rewrite never costs more
    # writes than it reclaims.
    gc_min_age: float = 0.0
    gc_max_segments: int = 0
    gc_max_bytes: int = 0
    gc_rewrite_max_live: float = 0.5
    gc_rewrite_bytes_per_sec: int = 0  # 0 = unthrottled
    gc_pause_file: str = ""  # "" = DATA_DIR/.seglake-gc-pause
    # Server-side encryption (seglake/sse/). The SSE master key wraps the
    # key-encryption keys; it may live on another device than the data so a
    # stolen disk alone decrypts nothing ("" = DATA_DIR/.seglake-sse.master).
    # SSE-C over plain HTTP would send the customer's key in clear, so it is
    # refused as AWS does; the flag exists for tests on loopback only.
    sse_master_key_file: str = ""
    sse_c_allow_http: bool = False
    # Replication (docs/design-replication.md). The site id names this store
    # in every stamp; "" = the random one chosen when the store was created.
    # It may be set only while the store holds no bucket and no version: a
    # site id changed after writes would send the same writes back under
    # another identity. The clock offset moves the replication clock
    # (HLC) only, for the skew tests; it is refused unless SEGLAKE_TEST_MODE=1.
    site_id: str = ""
    test_clock_offset_ms: int = 0
    # Replication (seglake/repl/, docs/replication.md). ``repl_remote``: the
    # other sites' S3 URLs (comma list; the flag may be repeated), pulled
    # from (and pushed to, with repl_push) by the maintenance process of
    # ``serve``, or by the one-shot modes repl-pull / repl-push /
    # repl-bootstrap. The key must be allowed ReplicationRead (pull) /
    # ReplicationWrite (push) on the remote. A step repeats every interval
    # when caught up; a failure backs off exponentially with full jitter up
    # to the backoff max; a one-shot run gives up after repl_retry_timeout
    # of failing. repl_limit / repl_push_limit: entries per oplog page.
    repl_remote: str = ""
    repl_access_key: str = ""
    repl_secret_key: str = ""
    repl_region: str = "us-east-1"
    repl_pull: bool = True
    repl_push: bool = False
    repl_interval: float = 5.0
    repl_backoff_max: float = 60.0
    repl_retry_timeout: float = 60.0
    repl_since: str = ""
    repl_limit: int = 1000
    repl_watch: bool = False
    repl_fetch_data: bool = True
    repl_push_since: str = ""
    repl_push_limit: int = 1000
    repl_push_watch: bool = False
    repl_push_interval: float = 5.0
    repl_push_backoff_max: float = 60.0
    repl_bootstrap_force: bool = False
    # PEM file of the CA(s) that signed the remotes' certificates, for
    # https:// remotes whose certificate the system store does not trust
    # ("" = the system store only). Read once per client; a remote whose
    # certificate fails verification stops its task (retrying cannot help).
    repl_ca_file: str = ""
    # Oplog retention (seglake/meta/oplog_horizon.py): the maintenance
    # process prunes oplog rows every prune interval (0 = never) once every
    # push remote acknowledged them and they are older than the retention;
    # the byte cap overrides the remotes (a remote behind it must
    # bootstrap). gc-run purges a DELETED row only below that horizon.
    repl_oplog_retention: float = 7 * 86400.0
    repl_oplog_max_bytes: int = GiB
    repl_oplog_prune_interval: float = 600.0
    # repl-validate (seglake/repl/validate.py): the other side to compare
    # with, a data dir or an S3 URL; the first side is --repl-remote if
    # given, else --data-dir.
    repl_other: str = ""

    @property
    def lifecycle_day_ns(self) -> int:
        """The length of a lifecycle day in nanoseconds (--lifecycle-day-seconds)."""
        return int(self.lifecycle_day_seconds * 1_000_000_000)

    # ---- derived paths -------------------------------------------------
    @functools.cached_property
    def root(self) -> Path:
        # Resolved once: resolve() walks the path with syscalls, and every
        # derived path below is used on hot paths.
        return Path(self.data_dir).resolve()

    # (names: seglake/format/layout.py)
    @property
    def db_path(self) -> Path:
        return self.root / layout.DB_FILE

    @property
    def segments_dir(self) -> Path:
        return layout.segments_dir(self.root)

    @property
    def manifests_dir(self) -> Path:
        return layout.manifests_dir(self.root)

    def needs_upgrade(self) -> str | None:
        """Why this data dir must go through ``seglake upgrade`` first (a
        version-1 store: manifest and record files), or None."""
        found = [p for p in layout.v1_dirs(self.root) if p.exists()]
        if not found:
            return None
        names = ", ".join(str(p.relative_to(self.root)) for p in found)
        return (
            f"{self.root} holds a version-1 store ({names}): stop any server on it and run "
            f"`seglake upgrade --data-dir {self.root}` (converts manifest and record files "
            f"into segment records; restartable)"
        )

    @property
    def repl_ca_path(self) -> str | None:
        # Resolved here: the maintenance process need not share the cwd of
        # the command line that named the file.
        return str(Path(self.repl_ca_file).resolve()) if self.repl_ca_file else None

    @property
    def sse_master_path(self) -> Path:
        if self.sse_master_key_file:
            return Path(self.sse_master_key_file).resolve()
        return self.root / layout.SSE_MASTER_FILE

    @property
    def writer_socket(self) -> Path:
        return self.root / layout.WRITER_SOCKET

    @property
    def supervisor_socket(self) -> Path:
        return self.root / layout.SUPERVISOR_SOCKET

    @property
    def admin_socket(self) -> Path:
        return self.root / layout.ADMIN_SOCKET

    @property
    def admin_token_path(self) -> Path:
        return self.root / layout.ADMIN_TOKEN_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / layout.LOCK_FILE

    @property
    def writer_lock_path(self) -> Path:
        return self.root / layout.WRITER_LOCK_FILE

    @property
    def listen_path(self) -> Path:
        """Where the supervisor records the address it actually bound."""
        return self.root / layout.LISTEN_FILE

    def frontend_count(self) -> int:
        return self.frontends if self.frontends > 0 else max(1, os.cpu_count() or 1)

    def listen_host_port(self, addr: str = "") -> tuple[str, int]:
        """HOST, PORT of ``addr`` (default: the S3 address)."""
        addr = addr or self.addr
        host, sep, port = addr.rpartition(":")
        if not sep:
            raise ValueError(f"address {addr!r} is not HOST:PORT")
        host = host.strip("[]")
        return host, int(port)

    # ---- parsed list settings ------------------------------------------
    @property
    def domain_list(self) -> tuple[str, ...]:
        """Base domains for virtual-hosted style, lowercase, no leading dot."""
        return tuple(d.lstrip(".").rstrip(".") for d in csv_list(self.domains.lower()))

    @property
    def repl_remotes(self) -> tuple[str, ...]:
        """The replication remotes (``--repl-remote``), each once, in order."""
        return tuple(dict.fromkeys(r.rstrip("/") for r in csv_list(self.repl_remote)))

    @property
    def if_match_bucket_set(self) -> frozenset[str]:
        return frozenset(csv_list(self.require_if_match_buckets))

    # ---- serialisation -------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls(**json.loads(text))


FIELD_TYPES: Final[dict[str, type]] = {
    f.name: type(f.default) for f in fields(Config) if f.default is not dataclasses.MISSING
}


def _coerce(name: str, raw: str | bool) -> Any:
    kind = FIELD_TYPES[name]
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        value = parse_bool(raw)
        if value is None:
            raise ValueError(f"{name}: expected a boolean, got {raw!r}")
        return value
    if isinstance(raw, bool):
        raise ValueError(f"{name}: needs a value")
    if kind is int:
        return parse_size(raw)
    if kind is float:
        return parse_duration(raw)
    return raw


def parse_bool(text: str) -> bool | None:
    """``1/true/yes/on`` → True, ``0/false/no/off`` → False (any case, spaces
    around ignored); None for anything else, which the caller refuses."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return None


def csv_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_size(text: str) -> int:
    """``1048576``, ``64KiB``, ``4MiB``, ``1GiB``, ``1G`` → bytes."""
    t = text.strip()
    units = {
        "kib": KiB, "k": KiB, "kb": 1000,
        "mib": MiB, "m": MiB, "mb": 1000**2,
        "gib": GiB, "g": GiB, "gb": 1000**3,
        "tib": 1024 * GiB, "t": 1024 * GiB,
    }  # fmt: skip
    lower = t.lower()
    for suffix in sorted(units, key=len, reverse=True):
        if lower.endswith(suffix) and lower[: -len(suffix)].strip():
            return int(float(lower[: -len(suffix)]) * units[suffix])
    return int(lower)


def parse_duration(text: str) -> float:
    """``1.5``, ``250ms``, ``10s``, ``10m``, ``2h`` → seconds."""
    t = text.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)):
        if t.endswith(suffix) and t[: -len(suffix)]:
            return float(t[: -len(suffix)]) * factor
    return float(t)


def env_name(field_name: str) -> str:
    return "SEGLAKE_" + field_name.upper()


def read_secrets_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines; keys may be ``SEGLAKE_X`` or the bare flag name.

    A file that its group or other users may read or write is refused: a
    secret anyone on the host can read is no secret, and saying so at start-up
    beats finding out later (systemd's credential copy is 0400, so the
    installed service always passes).
    """
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ValueError(
            f"secrets file {path} is open to its group or others (mode {mode:04o}); "
            f"make it private with: chmod 600 {path}"
        )
    out: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}:{lineno}: expected KEY=VALUE")
        key = key.strip()
        if key.startswith("SEGLAKE_"):
            key = key[len("SEGLAKE_") :]
        value = value.strip().strip('"').strip("'")
        out[key.lower().replace("-", "_")] = value
    return out


# The environment variable that enables test-only settings (the same one
# seglake/failpoints.py reads).
TEST_MODE_ENV: Final = "SEGLAKE_TEST_MODE"
_SITE_ID_RE: Final = re.compile(r"[0-9a-f]{16}")


def build_config(
    flags: dict[str, str | bool],
    env: dict[str, str] | None = None,
    secrets_file: str | None = None,
) -> Config:
    """Layer defaults → secrets file → environment → flags into a Config."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    secrets_path = secrets_file or env.get("SEGLAKE_SECRETS_FILE")
    if secrets_path:
        for key, text in read_secrets_file(secrets_path).items():
            if key in FIELD_TYPES:
                values[key] = _coerce(key, text)
    for name in FIELD_TYPES:
        raw_env = env.get(env_name(name))
        if raw_env is not None:
            values[name] = _coerce(name, raw_env)
    for name, flag_value in flags.items():
        if name not in FIELD_TYPES:
            raise ValueError(f"unknown setting {name!r}")
        values[name] = _coerce(name, flag_value)
    cfg = Config(**values)
    validate(cfg)
    if cfg.test_clock_offset_ms and env.get(TEST_MODE_ENV) != "1":
        raise ValueError(f"test-clock-offset-ms exists only with {TEST_MODE_ENV}=1 (tests)")
    return cfg


def validate(cfg: Config) -> None:
    cfg.listen_host_port()
    for name in ("mpu_ttl", "mpu_gc_interval", "scrub_interval", "scrub_bytes_per_sec",
                 "lifecycle_interval", "lifecycle_actions_per_sec"):  # fmt: skip
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name.replace('_', '-')} must not be negative")
    if cfg.lifecycle_day_seconds < 0.001:
        raise ValueError("lifecycle-day-seconds must be at least 0.001")
    if cfg.default_versioning not in ("enabled", "unversioned"):
        raise ValueError("default-versioning must be 'enabled' or 'unversioned'")
    # A segment may overshoot this by one record; small values are allowed so
    # tests can exercise rotation and GC on little data.
    if cfg.segment_max_bytes < 4096:
        raise ValueError("segment-max-bytes must be at least 4096")
    if not 1 <= cfg.min_part_size <= MIN_PART_SIZE:
        raise ValueError(f"min-part-size must be 1..{MIN_PART_SIZE} bytes")
    if cfg.sync_bytes <= 0:
        raise ValueError("sync-bytes must be positive")
    if cfg.log_format not in ("text", "json"):
        raise ValueError("log-format must be 'text' or 'json'")
    if cfg.stats_interval <= 0:
        raise ValueError("stats-interval must be positive")
    if cfg.metrics_addr:
        cfg.listen_host_port(cfg.metrics_addr)
    if cfg.sync_mode not in ("auto", "fsync"):
        raise ValueError("sync-mode must be 'auto' or 'fsync'")
    for domain in cfg.domain_list:
        if not _DOMAIN_RE.fullmatch(domain):
            raise ValueError(f"domains: {domain!r} is not a host name")
    if cfg.cors_max_age < 0:
        raise ValueError("cors-max-age must not be negative")
    if cfg.auth_fail_burst < 0 or (cfg.auth_fail_burst > 0 and cfg.auth_fail_rate <= 0):
        raise ValueError("auth-fail-burst must be >= 0, and auth-fail-rate > 0 when it is set")
    if cfg.replay_ttl < 0 or cfg.replay_cache_max < 1:
        raise ValueError("replay-ttl must not be negative and replay-cache-max must be >= 1")
    if cfg.body_idle_timeout < 0 or cfg.body_min_rate < 0:
        raise ValueError("body-idle-timeout and body-min-rate must not be negative")
    if cfg.keep_alive_timeout <= 0:
        raise ValueError("keep-alive-timeout must be positive")
    if cfg.key_inflight_limit < 0:
        raise ValueError("key-inflight-limit must not be negative")
    if cfg.tls and not (cfg.tls_cert and cfg.tls_key):
        raise ValueError("tls needs tls-cert and tls-key (PEM files)")
    for cidr in csv_list(cfg.trusted_proxies):
        ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad entry
    CorsPolicy.from_config(cfg)  # raises ValueError on a bad origin/method/header
    if cfg.site_id and not _SITE_ID_RE.fullmatch(cfg.site_id):
        raise ValueError("site-id must be 16 lowercase hex characters")
    validate_repl(cfg)


def validate_repl(cfg: Config) -> None:
    for url in cfg.repl_remotes:
        if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
            raise ValueError(f"repl-remote: {url!r} is not an http:// or https:// URL")
    for name in ("repl_interval", "repl_backoff_max", "repl_retry_timeout",
                 "repl_push_interval", "repl_push_backoff_max", "repl_oplog_retention",
                 "repl_oplog_prune_interval"):  # fmt: skip
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name.replace('_', '-')} must not be negative")
    for name in ("repl_limit", "repl_push_limit"):
        if not 1 <= getattr(cfg, name) <= 10_000:
            raise ValueError(f"{name.replace('_', '-')} must be 1..10000")
    if cfg.repl_ca_file and not Path(cfg.repl_ca_file).is_file():
        raise ValueError(f"repl-ca-file: {cfg.repl_ca_file} is not a file")
    if cfg.repl_oplog_max_bytes < 1:
        raise ValueError("repl-oplog-max-bytes must be at least 1")


_DOMAIN_RE: Final = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
