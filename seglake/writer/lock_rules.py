"""Object Lock inside the writer: the lock clock, the checks, and the backstop triggers.

Rules this file keeps (``docs/design-version-metadata.md`` §3):

* A version with a legal hold, or with a retain-until date after the lock
  clock's now, is never marked ``DELETED`` and its row is never removed.
  GOVERNANCE yields only to a request that carried ``bypass_governance``
  (the frontend sets it only when the header is sent *and* the key holds
  ``s3:BypassGovernanceRetention``); COMPLIANCE yields to nothing.
* A live retention is never shortened, removed or weakened
  (COMPLIANCE → GOVERNANCE), with the same GOVERNANCE exception.
* The handlers check first (``check_delete``, ``check_lock_change``) so that S3
  gets AWS's answer; TEMP triggers on the writer's connection refuse the
  same changes whatever mutation makes them (GC, lifecycle, bucket purge,
  anything written later): a trigger's refusal becomes the same
  ``AccessDenied`` (``as_s3_error``). The triggers' WHEN clauses look only at
  the indexed lock columns, so rows without a lock never call into Python.
* The lock clock (``protocol/object_lock.py``: never backwards, forward
  jumps not believed while running) is read once per batch (``tick``); its
  high-water mark is written to ``settings['lock_clock_hwm']`` in every
  batch, so a clock set back across a restart cannot shorten a retention.
* Tests move the wall clock with ``failpoints.clock_offset_ms`` (a file named
  by ``SEGLAKE_TEST_CLOCK_OFFSET_FILE``); without that variable it is 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import apsw

from seglake import failpoints
from seglake.errors import S3Error
from seglake.meta.schema import get_setting, query, set_setting
from seglake.protocol import object_lock as ol

log = logging.getLogger(__name__)

HWM_SETTING: Final = "lock_clock_hwm"
# A wall clock this far ahead of the monotonic clock's account is not
# believed while the writer runs (the design's --lock-clock-max-jump).
MAX_JUMP_MS: Final = ol.DAY_MS
# The text the backstop triggers abort with; ``as_s3_error`` recognises it.
LOCKED_MARK: Final = "seglake: object locked"

_NOW_FN: Final = "seglake_lock_now"
_BYPASS_FN: Final = "seglake_lock_bypass"

# "Would this version be protected now?", as SQL over OLD's lock columns.
_PROTECTED: Final = (
    f"OLD.legal_hold = 1 OR (OLD.lock_until_ms > {_NOW_FN}() "
    f"AND (OLD.lock_mode = 'COMPLIANCE' OR NOT {_BYPASS_FN}()))"
)
_HAS_LOCK: Final = "(OLD.legal_hold = 1 OR OLD.lock_until_ms IS NOT NULL)"

_TRIGGERS: Final = f"""
CREATE TEMP TRIGGER IF NOT EXISTS lock_guard_state BEFORE UPDATE OF state ON main.versions
WHEN NEW.state = 'DELETED' AND OLD.state IS NOT 'DELETED' AND {_HAS_LOCK}
BEGIN SELECT RAISE(ABORT, '{LOCKED_MARK}') WHERE {_PROTECTED}; END;
CREATE TEMP TRIGGER IF NOT EXISTS lock_guard_delete BEFORE DELETE ON main.versions
WHEN {_HAS_LOCK}
BEGIN SELECT RAISE(ABORT, '{LOCKED_MARK}') WHERE {_PROTECTED}; END;
CREATE TEMP TRIGGER IF NOT EXISTS lock_guard_change
BEFORE UPDATE OF lock_until_ms, lock_mode ON main.versions
WHEN OLD.lock_until_ms IS NOT NULL
BEGIN SELECT RAISE(ABORT, '{LOCKED_MARK}')
WHERE OLD.lock_until_ms > {_NOW_FN}()
AND (NEW.lock_until_ms IS NULL OR NEW.lock_until_ms < OLD.lock_until_ms
     OR (OLD.lock_mode = 'COMPLIANCE' AND NEW.lock_mode IS NOT 'COMPLIANCE'))
AND (OLD.lock_mode = 'COMPLIANCE' OR NOT {_BYPASS_FN}()); END;
"""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000 + failpoints.clock_offset_ms()


def mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class LockGuard:
    """The writer's lock clock and the per-mutation bypass flag (one writer
    per process, one guard: ``GUARD``)."""

    def __init__(self) -> None:
        self.clock = ol.clock_start(wall_ms(), mono_ms(), 0)
        self.bypass = False

    @property
    def now_ms(self) -> int:
        return self.clock.hwm_ms

    def install(self, conn: apsw.Connection) -> None:
        """Functions and triggers on the writer's connection; the clock
        resumes from the stored high-water mark."""
        stored = get_setting(conn, HWM_SETTING)
        self.clock = ol.clock_start(wall_ms(), mono_ms(), int(stored or 0))
        conn.create_scalar_function(_NOW_FN, self._sql_now, 0, deterministic=False)
        conn.create_scalar_function(_BYPASS_FN, self._sql_bypass, 0, deterministic=False)
        conn.execute(_TRIGGERS)

    def _sql_now(self, *_args: apsw.SQLiteValue) -> int:
        return self.now_ms

    def _sql_bypass(self, *_args: apsw.SQLiteValue) -> int:
        return int(self.bypass)

    def tick(self) -> int:
        """Read the clock once for a batch; log a refused forward jump."""
        now, self.clock, jumped = ol.clock_tick(self.clock, wall_ms(), mono_ms(), MAX_JUMP_MS)
        if jumped:
            log.error(
                "wall clock jumped forward to %s, more than %d ms ahead of the monotonic "
                "clock: object-lock time advances by monotonic time only until the writer "
                "restarts",
                ol.format_date_ms(self.clock.refused_wall_ms or 0),
                MAX_JUMP_MS,
            )
        return now

    def persist(self, conn: apsw.Connection) -> None:
        """Inside the batch transaction: the high-water mark goes with it."""
        set_setting(conn, HWM_SETTING, self.clock.hwm_ms)

    @contextmanager
    def bypassing(self, flag: bool) -> Iterator[None]:
        """The triggers honour GOVERNANCE bypass only inside this block."""
        self.bypass = flag
        try:
            yield
        finally:
            self.bypass = False


GUARD: Final = LockGuard()


def locked_error(key: str, version_id: str | None = None) -> S3Error:
    fields = {"Key": key}
    if version_id is not None:
        fields["VersionId"] = version_id
    return S3Error("AccessDenied", message=ol.LOCKED_MSG, resource=key, fields=fields)


def as_s3_error(exc: BaseException) -> S3Error | None:
    """A backstop trigger's refusal as the S3 answer; None for anything else."""
    if isinstance(exc, apsw.ConstraintError) and LOCKED_MARK in str(exc):
        return S3Error("AccessDenied", message=ol.LOCKED_MSG)
    return None


def version_lock(conn: apsw.Connection, row_id: int) -> tuple[str | None, int | None, bool] | None:
    rows = query(
        conn, "SELECT lock_mode, lock_until_ms, legal_hold FROM versions WHERE id = ?", (row_id,)
    )
    if not rows:
        return None
    mode, until, hold = rows[0]
    return (
        None if mode is None else str(mode),
        None if until is None else int(until),
        bool(hold),
    )


def check_delete(
    conn: apsw.Connection, row_id: int, key: str, version_id: str, *, bypass: bool
) -> None:
    """DeleteObject with a version id (and DeleteObjects' such entries):
    refused as AWS refuses it while the version is protected."""
    lock = version_lock(conn, row_id)
    if lock is not None and ol.is_locked(*lock, GUARD.now_ms, bypass=bypass):
        raise locked_error(key, version_id)


def check_lock_change(
    old_mode: str | None,
    old_until_ms: int | None,
    new: ol.RetentionLike | None,
    *,
    bypass: bool,
    key: str = "",
) -> None:
    """PutObjectRetention: may the version's retention become ``new``?"""
    if not ol.retention_change_allowed(old_mode, old_until_ms, new, GUARD.now_ms, bypass=bypass):
        raise locked_error(key)


def bucket_lock_config(conn: apsw.Connection, bucket: str) -> ol.LockConfiguration | None:
    """The bucket's stored object-lock configuration (None: not lock-enabled)."""
    rows = query(conn, "SELECT object_lock FROM buckets WHERE name = ?", (bucket,))
    if not rows or rows[0][0] is None:
        return None
    return ol.parse_lock_configuration(str(rows[0][0]).encode())


def bucket_has_locked_versions(conn: apsw.Connection, bucket: str) -> bool:
    """Whether any version of the bucket is protected now (through the
    partial index ``versions_locked``)."""
    rows = query(
        conn,
        # The first OR is the partial index's own WHERE, which lets SQLite use it.
        "SELECT 1 FROM versions WHERE bucket = ? AND (lock_until_ms IS NOT NULL OR legal_hold = 1) "
        "AND (legal_hold = 1 OR lock_until_ms > ?) LIMIT 1",
        (bucket, GUARD.now_ms),
    )
    return bool(rows)


def check_bucket_lock_config(conn: apsw.Connection, bucket: str, value: str | None) -> None:
    """SetBucketConfig(field='object_lock'): the configuration may be
    replaced but never removed, and only a versioning-enabled bucket may
    get one (AWS: ``InvalidBucketState``)."""
    if value is None:
        raise S3Error("InvalidBucketState", message="Object Lock cannot be disabled on a bucket.")
    ol.parse_lock_configuration(value.encode())
    rows = query(conn, "SELECT versioning FROM buckets WHERE name = ?", (bucket,))
    if not rows:
        raise S3Error("NoSuchBucket", resource=bucket, fields={"BucketName": bucket})
    if str(rows[0][0]) != "enabled":
        raise S3Error("InvalidBucketState", message=ol.NEEDS_VERSIONING_MSG)
