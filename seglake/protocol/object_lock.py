"""S3 Object Lock, the pure parts: request documents and headers, and the lock clock.

Rules this module keeps:

* Every body goes through ``xml_requests.document_root`` (size limit, no DTD,
  one well-formed document). A wrong root, an unknown or repeated element, a
  missing required field or a value outside its enum is ``MalformedXML``, as
  AWS answers for these documents; values that are well-formed but out of
  range get AWS's ``InvalidArgument``.
* Times are integer milliseconds since the epoch (UTC), the unit of
  ``versions.lock_until_ms``. A retain-until date is parsed as ISO 8601 and
  kept to the millisecond; it is rendered back the same way
  (``2030-01-02T03:04:05.000Z``).
* "Is it in the future" is decided against a ``now_ms`` the caller passes.
  The frontend passes its wall clock for the syntax answer; the writer's
  lock clock (``LockClock`` below) is what enforcement uses.
* The lock clock never goes backwards and never takes a large forward jump
  of the wall clock on trust (``docs/design-version-metadata.md`` §3; the
  stance is stated in ``docs/compatibility.md``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal, Protocol
from xml.etree.ElementTree import Element

from seglake.errors import S3Error
from seglake.protocol.xml import document, el
from seglake.protocol.xml_requests import children_by_name, document_root

Mode = Literal["GOVERNANCE", "COMPLIANCE"]
MODES: Final[tuple[Mode, ...]] = ("GOVERNANCE", "COMPLIANCE")

# Request and response headers.
MODE_HEADER: Final = "x-amz-object-lock-mode"
UNTIL_HEADER: Final = "x-amz-object-lock-retain-until-date"
LEGAL_HOLD_HEADER: Final = "x-amz-object-lock-legal-hold"
BYPASS_HEADER: Final = "x-amz-bypass-governance-retention"
BUCKET_ENABLED_HEADER: Final = "x-amz-bucket-object-lock-enabled"

# Each of these documents is a handful of short elements; AWS caps such
# bodies too, and 16 KiB bounds what a hostile one makes us parse.
MAX_LOCK_BODY_BYTES: Final = 16 * 1024

DAY_MS: Final = 86_400_000
# AWS's own upper bounds for a default retention (100 years); beyond them a
# date overflows nothing of ours but is certainly a mistake.
MAX_DEFAULT_DAYS: Final = 36_500
MAX_DEFAULT_YEARS: Final = 100
# Python's datetime stops at year 9999; a later date is refused as malformed.
_MAX_MS: Final = 253_402_300_799_999

# AWS's answers, word for word where its wording is known.
BOTH_HEADERS_MSG: Final = (
    "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
)
UNKNOWN_MODE_MSG: Final = "Unknown wormMode directive."
PAST_DATE_MSG: Final = "The retain until date must be in the future!"
BAD_DATE_MSG: Final = "The retain until date must be provided in ISO 8601 format"
LEGAL_HOLD_MSG: Final = "Legal Hold must be either of 'ON' or 'OFF'"
PERIOD_MSG: Final = "Default retention period must be a positive integer value."
MISSING_CONFIG_MSG: Final = "Bucket is missing Object Lock Configuration"
CHECKSUM_REQUIRED_MSG: Final = (
    "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests "
    "with Object Lock parameters"
)
LOCKED_MSG: Final = "Access Denied because object protected by object lock."
SUSPEND_MSG: Final = (
    "An Object Lock configuration is present on this bucket, so the versioning state "
    "cannot be changed."
)
NEEDS_VERSIONING_MSG: Final = (
    "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
)


# ---- dates -------------------------------------------------------------------------


def parse_date_ms(text: str) -> int | None:
    """An ISO 8601 date-time (``2030-01-02T03:04:05Z``, fraction and offset
    allowed) → epoch ms; None when it is not one. A time without a zone is
    taken as UTC, as AWS does."""
    value = text.strip()
    if not value or len(value) > 64 or "T" not in value.upper():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    ms = int(parsed.timestamp() * 1000) if parsed.year >= 1970 else -1
    return ms if 0 <= ms <= _MAX_MS else None


def format_date_ms(ms: int) -> str:
    """Epoch ms → ``2030-01-02T03:04:05.000Z`` (headers and XML bodies alike)."""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def add_years_ms(start_ms: int, years: int) -> int:
    """``start_ms`` plus calendar years (29 February → 28 February)."""
    t = dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.UTC)
    try:
        later = t.replace(year=t.year + years)
    except ValueError:
        later = t.replace(year=t.year + years, day=28)
    return int(later.timestamp() * 1000)


# ---- ObjectLockConfiguration (bucket) ---------------------------------------------------


@dataclass(frozen=True)
class DefaultRetention:
    mode: Mode
    days: int | None = None
    years: int | None = None

    def until_ms(self, now_ms: int) -> int:
        """The retain-until date a version written at ``now_ms`` gets."""
        if self.days is not None:
            return now_ms + self.days * DAY_MS
        assert self.years is not None
        return add_years_ms(now_ms, self.years)


@dataclass(frozen=True)
class LockConfiguration:
    """A bucket's object-lock configuration (``ObjectLockEnabled`` is always
    ``Enabled`` once stored: it cannot be turned off)."""

    rule: DefaultRetention | None = None

    def to_xml(self) -> bytes:
        parts = [el("ObjectLockEnabled", "Enabled")]
        if self.rule is not None:
            period = (
                el("Days", self.rule.days)
                if self.rule.days is not None
                else el("Years", self.rule.years)
            )
            parts.append(
                "<Rule><DefaultRetention>"
                + el("Mode", self.rule.mode)
                + period
                + "</DefaultRetention></Rule>"
            )
        return document("ObjectLockConfiguration", parts)


def _only(found: Mapping[str, list[Element]], name: str, *, required: bool) -> Element | None:
    items = found.get(name, [])
    if len(items) > 1 or (required and not items):
        raise S3Error("MalformedXML")
    return items[0] if items else None


def _text(element: Element | None) -> str:
    return "" if element is None else (element.text or "").strip()


def _mode(text: str) -> Mode:
    for mode in MODES:
        if text == mode:
            return mode
    raise S3Error("MalformedXML")


def _period(text: str | None) -> int | None:
    if text is None:
        return None
    value = text.strip()
    # Digits only (with a sign AWS answers InvalidArgument, not MalformedXML).
    body = value[1:] if value[:1] in "+-" else value
    if not body.isascii() or not body.isdigit() or len(body) > 10:
        raise S3Error("MalformedXML")
    number = int(value)
    if number <= 0:
        raise S3Error("InvalidArgument", message=PERIOD_MSG)
    return number


def parse_lock_configuration(body: bytes) -> LockConfiguration:
    """PutObjectLockConfiguration's body. ``ObjectLockEnabled`` must be
    ``Enabled``; a ``Rule`` holds one ``DefaultRetention`` with a ``Mode`` and
    exactly one of ``Days`` and ``Years``."""
    root = document_root(body, "ObjectLockConfiguration", MAX_LOCK_BODY_BYTES)
    found = children_by_name(root, ("ObjectLockEnabled", "Rule"))
    if _text(_only(found, "ObjectLockEnabled", required=True)) != "Enabled":
        raise S3Error("MalformedXML")
    rule_el = _only(found, "Rule", required=False)
    if rule_el is None:
        return LockConfiguration()
    rule = children_by_name(rule_el, ("DefaultRetention",))
    default = _only(rule, "DefaultRetention", required=True)
    assert default is not None
    fields = children_by_name(default, ("Mode", "Days", "Years"))
    mode_el = _only(fields, "Mode", required=True)
    days_el = _only(fields, "Days", required=False)
    years_el = _only(fields, "Years", required=False)
    if (days_el is None) == (years_el is None):
        raise S3Error("MalformedXML")
    mode = _mode(_text(mode_el))
    days = _period(_text(days_el) if days_el is not None else None)
    years = _period(_text(years_el) if years_el is not None else None)
    if (days is not None and days > MAX_DEFAULT_DAYS) or (
        years is not None and years > MAX_DEFAULT_YEARS
    ):
        raise S3Error("InvalidArgument", message=PERIOD_MSG)
    return LockConfiguration(DefaultRetention(mode, days, years))


# ---- Retention and LegalHold (version) -------------------------------------------------


class RetentionLike(Protocol):
    """A retention as any caller holds it (this module's, or the IPC one)."""

    @property
    def mode(self) -> str: ...

    @property
    def until_ms(self) -> int: ...


@dataclass(frozen=True)
class Retention:
    mode: Mode
    until_ms: int


def retention_xml(retention: RetentionLike) -> bytes:
    return document(
        "Retention",
        [el("Mode", retention.mode), el("RetainUntilDate", format_date_ms(retention.until_ms))],
    )


def parse_retention(body: bytes, now_ms: int) -> Retention | None:
    """PutObjectRetention's body. An empty ``<Retention/>`` removes the
    retention (None: allowed by the writer only for an expired lock or a
    GOVERNANCE one with bypass)."""
    root = document_root(body, "Retention", MAX_LOCK_BODY_BYTES)
    found = children_by_name(root, ("Mode", "RetainUntilDate"))
    mode_el = _only(found, "Mode", required=False)
    date_el = _only(found, "RetainUntilDate", required=False)
    if mode_el is None and date_el is None:
        return None
    if mode_el is None or date_el is None:
        raise S3Error("MalformedXML")
    mode = _mode(_text(mode_el))
    until = parse_date_ms(_text(date_el))
    if until is None:
        raise S3Error("MalformedXML")
    if until <= now_ms:
        raise S3Error("InvalidArgument", message=PAST_DATE_MSG)
    return Retention(mode, until)


def legal_hold_xml(on: bool) -> bytes:
    return document("LegalHold", [el("Status", "ON" if on else "OFF")])


def parse_legal_hold(body: bytes) -> bool:
    """PutObjectLegalHold's body → True for ``ON``, False for ``OFF``."""
    root = document_root(body, "LegalHold", MAX_LOCK_BODY_BYTES)
    found = children_by_name(root, ("Status",))
    status = _text(_only(found, "Status", required=True))
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML")
    return status == "ON"


# ---- request headers ----------------------------------------------------------------


@dataclass(frozen=True)
class LockHeaders:
    """What PutObject, CopyObject or CreateMultipartUpload asked for."""

    retention: Retention | None = None
    legal_hold: bool | None = None  # None: header absent

    @property
    def any(self) -> bool:
        return self.retention is not None or self.legal_hold is not None


def parse_lock_headers(headers: Mapping[str, str], now_ms: int) -> LockHeaders:
    """The ``x-amz-object-lock-*`` headers (names lower-case). Mode and date
    come together or not at all; whether the bucket allows them is the
    caller's check (``MISSING_CONFIG_MSG``)."""
    mode_text = headers.get(MODE_HEADER)
    date_text = headers.get(UNTIL_HEADER)
    hold_text = headers.get(LEGAL_HOLD_HEADER)
    retention = None
    if (mode_text is None) != (date_text is None):
        raise S3Error("InvalidArgument", message=BOTH_HEADERS_MSG)
    if mode_text is not None and date_text is not None:
        if mode_text not in MODES:
            raise S3Error(
                "InvalidArgument",
                message=UNKNOWN_MODE_MSG,
                fields={"ArgumentName": MODE_HEADER, "ArgumentValue": mode_text[:256]},
            )
        until = parse_date_ms(date_text)
        if until is None:
            raise S3Error("InvalidArgument", message=BAD_DATE_MSG)
        if until <= now_ms:
            raise S3Error("InvalidArgument", message=PAST_DATE_MSG)
        retention = Retention(_mode(mode_text), until)
    hold = None
    if hold_text is not None:
        if hold_text not in ("ON", "OFF"):
            raise S3Error("InvalidArgument", message=LEGAL_HOLD_MSG)
        hold = hold_text == "ON"
    return LockHeaders(retention, hold)


def parse_bypass_header(headers: Mapping[str, str]) -> bool:
    """``x-amz-bypass-governance-retention: true`` (case-insensitive, as the
    SDKs send ``True`` or ``true``); anything else is no bypass."""
    return headers.get(BYPASS_HEADER, "").strip().lower() == "true"


def parse_bucket_lock_enabled(headers: Mapping[str, str]) -> bool:
    """CreateBucket's ``x-amz-bucket-object-lock-enabled``: ``true`` or
    ``false`` (any case); anything else is InvalidArgument."""
    raw = headers.get(BUCKET_ENABLED_HEADER)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise S3Error(
            "InvalidArgument",
            message="x-amz-bucket-object-lock-enabled must be true or false",
            fields={"ArgumentName": BUCKET_ENABLED_HEADER, "ArgumentValue": raw[:256]},
        )
    return value == "true"


def response_headers(
    mode: str | None, until_ms: int | None, legal_hold: bool, *, lock_bucket: bool
) -> dict[str, str]:
    """The ``x-amz-object-lock-*`` fields of a GET/HEAD answer. AWS sends the
    legal-hold status only for versions in a lock-enabled bucket."""
    out: dict[str, str] = {}
    if mode is not None and until_ms is not None:
        out[MODE_HEADER] = mode
        out[UNTIL_HEADER] = format_date_ms(until_ms)
    if lock_bucket or legal_hold:
        out[LEGAL_HOLD_HEADER] = "ON" if legal_hold else "OFF"
    return out


# ---- the rule a change of lock state must keep ---------------------------------------


def is_locked(
    mode: str | None, until_ms: int | None, legal_hold: bool, now_ms: int, *, bypass: bool
) -> bool:
    """Whether a version may not be deleted now: a legal hold always
    protects; a retention date in the future protects unless it is
    GOVERNANCE and the request may bypass it. COMPLIANCE is never bypassed."""
    if legal_hold:
        return True
    if until_ms is None or until_ms <= now_ms:
        return False
    return mode == "COMPLIANCE" or not bypass


def retention_change_allowed(
    old_mode: str | None,
    old_until_ms: int | None,
    new: RetentionLike | None,
    now_ms: int,
    *,
    bypass: bool,
) -> bool:
    """Whether a version's retention may go from (old_mode, old_until_ms) to
    ``new``. An expired or absent retention may be set to anything; a live
    one may only be extended, or GOVERNANCE made COMPLIANCE. Shortening,
    removing or weakening (COMPLIANCE → GOVERNANCE) a live GOVERNANCE lock
    needs bypass; a live COMPLIANCE lock, never."""
    if old_until_ms is None or old_until_ms <= now_ms:
        return True
    if new is not None and new.until_ms >= old_until_ms:
        if old_mode == "COMPLIANCE" and new.mode != "COMPLIANCE":
            return False
        if old_mode == "GOVERNANCE" or new.mode == old_mode:
            return True
    if old_mode == "COMPLIANCE":
        return False
    return bypass


# ---- the lock clock -------------------------------------------------------------------


@dataclass(frozen=True)
class LockClock:
    """The lock clock's state in the writer.

    ``now = max(wall, hwm)``, so a wall clock set back cannot shorten a
    retention: ``hwm`` (``settings['lock_clock_hwm']``) is written each batch
    and restored by ``rebuild-index``. Between ticks the clock is also
    compared with the monotonic clock: a wall clock more than ``max_jump_ms``
    ahead of ``anchor_lock_ms + monotonic elapsed`` is not believed; the lock
    clock then advances by monotonic time only (``held``) until an operator
    accepts the wall clock (``accept``). Across a restart the monotonic clock
    says nothing, so a restarted writer accepts a wall clock ahead of
    ``hwm``: the documented limit.
    """

    hwm_ms: int
    anchor_lock_ms: int
    anchor_mono_ms: int
    held: bool = False
    # The wall-clock reading that was refused, for the log and for status.
    refused_wall_ms: int | None = None


def clock_start(wall_ms: int, mono_ms: int, stored_hwm_ms: int) -> LockClock:
    now = max(wall_ms, stored_hwm_ms)
    return LockClock(hwm_ms=now, anchor_lock_ms=now, anchor_mono_ms=mono_ms)


def clock_tick(
    state: LockClock, wall_ms: int, mono_ms: int, max_jump_ms: int
) -> tuple[int, LockClock, bool]:
    """(lock now, new state, whether this tick detected a forward jump)."""
    expected = state.anchor_lock_ms + max(0, mono_ms - state.anchor_mono_ms)
    if state.held:
        now = max(state.hwm_ms, expected)
        return now, replace(state, hwm_ms=now, refused_wall_ms=wall_ms), False
    if wall_ms > max(expected, state.hwm_ms) + max_jump_ms:
        now = max(state.hwm_ms, expected)
        return now, replace(state, hwm_ms=now, held=True, refused_wall_ms=wall_ms), True
    now = max(wall_ms, state.hwm_ms)
    # Re-anchored on every believed reading, so the check measures the jump
    # since the last tick, not the drift since start-up.
    return now, LockClock(hwm_ms=now, anchor_lock_ms=now, anchor_mono_ms=mono_ms), False


def clock_accept(state: LockClock, wall_ms: int, mono_ms: int) -> LockClock:
    """The operator says the wall clock is right (``maintenance accept-clock``)."""
    return clock_start(wall_ms, mono_ms, state.hwm_ms)
