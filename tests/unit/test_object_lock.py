"""seglake/protocol/object_lock.py: documents, headers, the lock rules and the lock clock."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.protocol import object_lock as ol

NOW = ol.parse_date_ms("2026-01-01T00:00:00Z") or 0
FUTURE = "2030-06-01T12:00:00.000Z"
FUTURE_MS = ol.parse_date_ms(FUTURE) or 0
NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def _err(fn: object, *args: object) -> tuple[str, str]:
    with pytest.raises(S3Error) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.code, info.value.text


# ---- dates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2030-06-01T12:00:00Z", FUTURE_MS),
        ("2030-06-01T12:00:00.000Z", FUTURE_MS),
        ("2030-06-01T14:00:00+02:00", FUTURE_MS),
        ("2030-06-01T12:00:00", FUTURE_MS),  # no zone: UTC
        ("1970-01-01T00:00:00Z", 0),
        (" 2030-06-01T12:00:00Z ", FUTURE_MS),
    ],
)
def test_dates_parse(text: str, ms: int) -> None:
    assert ol.parse_date_ms(text) == ms


@pytest.mark.parametrize(
    "text",
    ["", "2030-06-01", "tomorrow", "2030-13-01T00:00:00Z", "1969-12-31T23:59:59Z", "x" * 100,
     "2030-06-01T25:00:00Z", "Sat, 01 Jun 2030 12:00:00 GMT"],
)  # fmt: skip
def test_dates_refused(text: str) -> None:
    assert ol.parse_date_ms(text) is None


def test_date_round_trip() -> None:
    assert ol.format_date_ms(FUTURE_MS) == FUTURE
    assert ol.format_date_ms(FUTURE_MS + 7) == "2030-06-01T12:00:00.007Z"


def test_years_are_calendar_years() -> None:
    leap = ol.parse_date_ms("2028-02-29T10:00:00Z") or 0
    assert ol.format_date_ms(ol.add_years_ms(leap, 1)) == "2029-02-28T10:00:00.000Z"
    assert ol.format_date_ms(ol.add_years_ms(NOW, 3)) == "2029-01-01T00:00:00.000Z"


# ---- ObjectLockConfiguration ---------------------------------------------------------


def _config(inner: str, enabled: str = "<ObjectLockEnabled>Enabled</ObjectLockEnabled>") -> bytes:
    return f"<ObjectLockConfiguration{NS}>{enabled}{inner}</ObjectLockConfiguration>".encode()


def _rule(fields: str) -> str:
    return f"<Rule><DefaultRetention>{fields}</DefaultRetention></Rule>"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_config(""), ol.LockConfiguration()),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Days>1</Days>")),
         ol.LockConfiguration(ol.DefaultRetention("GOVERNANCE", days=1))),
        (_config(_rule("<Mode>COMPLIANCE</Mode><Years>7</Years>")),
         ol.LockConfiguration(ol.DefaultRetention("COMPLIANCE", years=7))),
        (b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
         b"</ObjectLockConfiguration>", ol.LockConfiguration()),
    ],
)  # fmt: skip
def test_lock_configuration_parses(body: bytes, expected: ol.LockConfiguration) -> None:
    assert ol.parse_lock_configuration(body) == expected
    # What we store and answer is parsed back to the same value.
    assert ol.parse_lock_configuration(expected.to_xml()) == expected


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "MalformedXML"),
        (b"<ObjectLockConfiguration>", "MalformedXML"),
        (b"<Other/>", "MalformedXML"),
        (_config("", enabled=""), "MalformedXML"),
        (_config("", enabled="<ObjectLockEnabled>Disabled</ObjectLockEnabled>"), "MalformedXML"),
        (_config(_rule("<Mode>GOVERNANCE</Mode>")), "MalformedXML"),
        (_config(_rule("<Days>1</Days>")), "MalformedXML"),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>")), "MalformedXML"),
        (_config(_rule("<Mode>governance</Mode><Days>1</Days>")), "MalformedXML"),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Days>x</Days>")), "MalformedXML"),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Days>0</Days>")), "InvalidArgument"),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Days>-3</Days>")), "InvalidArgument"),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Years>101</Years>")), "InvalidArgument"),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Days>1</Days><Extra/>")), "MalformedXML"),
        (_config("<Rule></Rule>"), "MalformedXML"),
        (_config(_rule("<Mode>GOVERNANCE</Mode><Days>1</Days>") * 2), "MalformedXML"),
        (b"<!DOCTYPE x []>" + _config(""), "MalformedXML"),
        (b"<ObjectLockConfiguration>" + b" " * ol.MAX_LOCK_BODY_BYTES, "MaxMessageLengthExceeded"),
    ],
)  # fmt: skip
def test_lock_configuration_refused(body: bytes, code: str) -> None:
    assert _err(ol.parse_lock_configuration, body)[0] == code


def test_default_retention_dates() -> None:
    assert ol.DefaultRetention("GOVERNANCE", days=2).until_ms(NOW) == NOW + 2 * ol.DAY_MS
    years = ol.DefaultRetention("COMPLIANCE", years=1).until_ms(NOW)
    assert ol.format_date_ms(years) == "2027-01-01T00:00:00.000Z"


# ---- Retention and LegalHold ---------------------------------------------------------------


def test_retention_parses_and_renders() -> None:
    body = f"<Retention{NS}><Mode>COMPLIANCE</Mode><RetainUntilDate>{FUTURE}</RetainUntilDate></Retention>"
    parsed = ol.parse_retention(body.encode(), NOW)
    assert parsed == ol.Retention("COMPLIANCE", FUTURE_MS)
    assert ol.parse_retention(ol.retention_xml(parsed), NOW) == parsed
    assert ol.parse_retention(b"<Retention/>", NOW) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<Retention><Mode>GOVERNANCE</Mode></Retention>", "MalformedXML"),
        (b"<Retention><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate></Retention>",
         "MalformedXML"),
        (b"<Retention><Mode>WEAK</Mode><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate>"
         b"</Retention>", "MalformedXML"),
        (b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>soon</RetainUntilDate></Retention>",
         "MalformedXML"),
        (b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2020-01-01T00:00:00Z"
         b"</RetainUntilDate></Retention>", "InvalidArgument"),
        (b"<LegalHold/>", "MalformedXML"),
    ],
)  # fmt: skip
def test_retention_refused(body: bytes, code: str) -> None:
    assert _err(ol.parse_retention, body, NOW)[0] == code


def test_legal_hold() -> None:
    assert ol.parse_legal_hold(b"<LegalHold><Status>ON</Status></LegalHold>") is True
    assert ol.parse_legal_hold(ol.legal_hold_xml(False)) is False
    for bad in (b"<LegalHold/>", b"<LegalHold><Status>on</Status></LegalHold>",
                b"<LegalHold><Status>ON</Status><Status>ON</Status></LegalHold>"):  # fmt: skip
        assert _err(ol.parse_legal_hold, bad)[0] == "MalformedXML"


# ---- headers --------------------------------------------------------------------------------


def test_headers_parse() -> None:
    assert ol.parse_lock_headers({}, NOW) == ol.LockHeaders()
    assert not ol.LockHeaders().any
    got = ol.parse_lock_headers(
        {ol.MODE_HEADER: "GOVERNANCE", ol.UNTIL_HEADER: FUTURE, ol.LEGAL_HOLD_HEADER: "ON"}, NOW
    )
    assert got == ol.LockHeaders(ol.Retention("GOVERNANCE", FUTURE_MS), True)
    assert got.any
    assert ol.parse_lock_headers({ol.LEGAL_HOLD_HEADER: "OFF"}, NOW).legal_hold is False


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({ol.MODE_HEADER: "GOVERNANCE"}, ol.BOTH_HEADERS_MSG),
        ({ol.UNTIL_HEADER: FUTURE}, ol.BOTH_HEADERS_MSG),
        ({ol.MODE_HEADER: "STRICT", ol.UNTIL_HEADER: FUTURE}, ol.UNKNOWN_MODE_MSG),
        ({ol.MODE_HEADER: "COMPLIANCE", ol.UNTIL_HEADER: "06/06/2030"}, ol.BAD_DATE_MSG),
        ({ol.MODE_HEADER: "COMPLIANCE", ol.UNTIL_HEADER: "2020-01-01T00:00:00Z"},
         ol.PAST_DATE_MSG),
        ({ol.LEGAL_HOLD_HEADER: "yes"}, ol.LEGAL_HOLD_MSG),
    ],
)  # fmt: skip
def test_headers_refused(headers: dict[str, str], message: str) -> None:
    assert _err(ol.parse_lock_headers, headers, NOW) == ("InvalidArgument", message)


def test_bypass_and_bucket_headers() -> None:
    assert ol.parse_bypass_header({ol.BYPASS_HEADER: "True"})
    assert not ol.parse_bypass_header({ol.BYPASS_HEADER: "1"})
    assert not ol.parse_bypass_header({})
    assert ol.parse_bucket_lock_enabled({ol.BUCKET_ENABLED_HEADER: "TRUE"})
    assert not ol.parse_bucket_lock_enabled({ol.BUCKET_ENABLED_HEADER: "false"})
    assert not ol.parse_bucket_lock_enabled({})
    assert _err(ol.parse_bucket_lock_enabled, {ol.BUCKET_ENABLED_HEADER: "yes"})[0] == (
        "InvalidArgument"
    )


def test_response_headers() -> None:
    assert ol.response_headers(None, None, False, lock_bucket=False) == {}
    assert ol.response_headers(None, None, False, lock_bucket=True) == {ol.LEGAL_HOLD_HEADER: "OFF"}
    assert ol.response_headers("COMPLIANCE", FUTURE_MS, True, lock_bucket=True) == {
        ol.MODE_HEADER: "COMPLIANCE",
        ol.UNTIL_HEADER: FUTURE,
        ol.LEGAL_HOLD_HEADER: "ON",
    }


# ---- the lock rules ---------------------------------------------------------------------------

G, C = "GOVERNANCE", "COMPLIANCE"
LATER = FUTURE_MS + ol.DAY_MS
SOONER = FUTURE_MS - ol.DAY_MS


@pytest.mark.parametrize(
    ("mode", "until", "hold", "bypass", "locked"),
    [
        (None, None, False, False, False),
        (None, None, True, True, True),
        (G, FUTURE_MS, False, False, True),
        (G, FUTURE_MS, False, True, False),
        (C, FUTURE_MS, False, True, True),
        (C, NOW, False, False, False),  # expired at this very millisecond
        (G, FUTURE_MS, True, True, True),
    ],
)
def test_is_locked(
    mode: str | None, until: int | None, hold: bool, bypass: bool, locked: bool
) -> None:
    assert ol.is_locked(mode, until, hold, NOW, bypass=bypass) is locked


@pytest.mark.parametrize(
    ("old_mode", "old_until", "new", "bypass", "allowed"),
    [
        (None, None, ol.Retention(C, FUTURE_MS), False, True),
        (G, NOW - 1, None, False, True),  # expired: anything goes
        (C, NOW - 1, ol.Retention(G, SOONER), False, True),
        (G, FUTURE_MS, ol.Retention(G, LATER), False, True),
        (G, FUTURE_MS, ol.Retention(C, FUTURE_MS), False, True),
        (G, FUTURE_MS, ol.Retention(G, SOONER), False, False),
        (G, FUTURE_MS, ol.Retention(G, SOONER), True, True),
        (G, FUTURE_MS, None, False, False),
        (G, FUTURE_MS, None, True, True),
        (C, FUTURE_MS, ol.Retention(C, LATER), False, True),
        (C, FUTURE_MS, ol.Retention(C, FUTURE_MS), False, True),
        (C, FUTURE_MS, ol.Retention(C, SOONER), True, False),
        (C, FUTURE_MS, ol.Retention(G, LATER), True, False),
        (C, FUTURE_MS, None, True, False),
    ],
)  # fmt: skip
def test_retention_change(
    old_mode: str | None, old_until: int | None, new: ol.Retention | None, bypass: bool,
    allowed: bool,
) -> None:  # fmt: skip
    got = ol.retention_change_allowed(old_mode, old_until, new, NOW, bypass=bypass)
    assert got is allowed


# ---- the lock clock ---------------------------------------------------------------------------

JUMP = ol.DAY_MS


def test_clock_never_goes_back() -> None:
    clock = ol.clock_start(wall_ms=NOW, mono_ms=0, stored_hwm_ms=NOW + 5000)
    assert clock.hwm_ms == NOW + 5000
    now, clock, jumped = ol.clock_tick(clock, NOW + 1000, 1000, JUMP)
    assert (now, jumped) == (NOW + 5000, False)
    # The wall clock set back a year: the lock clock stays where it was.
    now, clock, _ = ol.clock_tick(clock, NOW - 365 * ol.DAY_MS, 2000, JUMP)
    assert now == NOW + 5000
    now, clock, _ = ol.clock_tick(clock, NOW + 9000, 9000, JUMP)
    assert now == NOW + 9000 and clock.hwm_ms == NOW + 9000


def test_clock_refuses_forward_jump_until_accepted() -> None:
    clock = ol.clock_start(NOW, 0, 0)
    # Within the allowance: believed (NTP corrections, a slow tick).
    now, clock, jumped = ol.clock_tick(clock, NOW + JUMP, 10, JUMP)
    assert (now, jumped) == (NOW + JUMP, False)
    base = now
    # Ten years ahead in 1 s of monotonic time: refused, advances by monotonic time.
    now, clock, jumped = ol.clock_tick(clock, base + 3650 * ol.DAY_MS, 1010, JUMP)
    assert jumped and clock.held and now == base + 1000
    now, clock, jumped = ol.clock_tick(clock, base + 3650 * ol.DAY_MS, 3010, JUMP)
    assert not jumped and now == base + 3000
    for step in range(3):  # still held, however often it is read
        now, clock, _ = ol.clock_tick(clock, base + 3650 * ol.DAY_MS, 4010 + step, JUMP)
        assert now == base + 4000 + step
    clock = ol.clock_accept(clock, base + 3650 * ol.DAY_MS, 5010)
    now, clock, jumped = ol.clock_tick(clock, base + 3650 * ol.DAY_MS + 5, 5015, JUMP)
    assert now == base + 3650 * ol.DAY_MS + 5 and not clock.held and not jumped


def test_clock_restart_accepts_wall_clock() -> None:
    # The documented limit: after a restart the downtime is unknown.
    clock = ol.clock_start(NOW + 3650 * ol.DAY_MS, 0, NOW)
    assert ol.clock_tick(clock, NOW + 3650 * ol.DAY_MS, 1, JUMP)[0] == NOW + 3650 * ol.DAY_MS


# ---- policy: the bypass permission and the object-lock condition keys -------------------


def test_policy_bypass_permission_and_condition_keys() -> None:
    import datetime as dt
    import ipaddress
    import json

    from seglake.protocol.policy import ALLOW, RequestContext, decide, key_values, parse_key_policy

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def ctx(op: str, headers: dict[str, str] | None = None) -> RequestContext:
        return RequestContext(
            operation=op, bucket="b", key="k", principal="alice",
            source_ip=ipaddress.ip_address("198.51.100.1"), now=now, secure_transport=False,
            headers=headers or {},
        )  # fmt: skip

    # The rw shorthand grants writes but not the bypass; a JSON grant does.
    rw = parse_key_policy("rw")
    assert decide(ctx("DeleteObject"), rw, None) == ALLOW
    assert decide(ctx("BypassGovernanceRetention"), rw, None) != ALLOW
    grant = parse_key_policy(
        json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:BypassGovernanceRetention",
             "Resource": "arn:aws:s3:::b/*"}]})
    )  # fmt: skip
    assert decide(ctx("BypassGovernanceRetention"), grant, None) == ALLOW
    headers = {
        ol.MODE_HEADER: "COMPLIANCE",
        ol.UNTIL_HEADER: "2026-01-31T12:00:00Z",
        ol.LEGAL_HOLD_HEADER: "ON",
    }
    put = ctx("PutObject", headers)
    assert key_values(put, "s3:object-lock-mode") == ("COMPLIANCE",)
    assert key_values(put, "s3:object-lock-legal-hold") == ("ON",)
    assert key_values(put, "s3:object-lock-retain-until-date") == ("2026-01-31T12:00:00Z",)
    assert key_values(put, "s3:object-lock-remaining-retention-days") == ("31",)
    assert key_values(ctx("PutObject"), "s3:object-lock-remaining-retention-days") == ()
    # A policy can cap retention periods, as on AWS.
    capped = parse_key_policy(
        json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
             "Condition": {"NumericLessThanEquals":
                           {"s3:object-lock-remaining-retention-days": "30"}}}]})
    )  # fmt: skip
    assert decide(put, capped, None) != ALLOW
    short = {**headers, ol.UNTIL_HEADER: "2026-01-10T00:00:00Z"}
    assert decide(ctx("PutObject", short), capped, None) == ALLOW
