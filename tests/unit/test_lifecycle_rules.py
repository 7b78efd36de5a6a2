"""Lifecycle rules (seglake/protocol/lifecycle.py): the AWS schema's accepted
and refused shapes, round trips, and evaluation against a key's versions."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.protocol.lifecycle import (
    NS_PER_DAY,
    Action,
    Configuration,
    Version,
    configuration_xml,
    due_ns,
    expiration_header,
    parse_configuration,
    plan_key,
    plan_upload,
)

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
DAY = 10 * 1_000_000_000  # a 10-second lifecycle day, as the time scale gives tests


def doc(*rules: str, ns: bool = True) -> bytes:
    attr = f' xmlns="{NS}"' if ns else ""
    return f"<LifecycleConfiguration{attr}>{''.join(rules)}</LifecycleConfiguration>".encode()


def rule(body: str, status: str = "Enabled", rid: str = "r") -> str:
    ident = f"<ID>{rid}</ID>" if rid else ""
    return f"<Rule>{ident}<Status>{status}</Status>{body}</Rule>"


EXP = "<Expiration><Days>3</Days></Expiration>"

VALID = [
    rule("<Filter><Prefix>logs/</Prefix></Filter>" + EXP),
    rule("<Filter></Filter>" + EXP),
    rule("<Prefix>old/</Prefix>" + EXP),  # the pre-Filter form
    rule("<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>" + EXP),
    rule("<Filter><ObjectSizeGreaterThan>100</ObjectSizeGreaterThan></Filter>" + EXP),
    rule(
        "<Filter><And><Prefix>a/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
        "<ObjectSizeLessThan>9</ObjectSizeLessThan></And></Filter>" + EXP
    ),
    rule("<Filter/><Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration>"),
    rule(
        "<Filter/><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
    ),
    rule(
        "<Filter/><NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays>"
        "<NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
    ),
    rule(
        "<Filter><Prefix>up/</Prefix></Filter><AbortIncompleteMultipartUpload>"
        "<DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
        status="Disabled",
    ),
    rule("<Filter/>" + EXP, rid=""),  # ID is optional
]


@pytest.mark.parametrize("body", VALID)
def test_valid_rules_parse_and_round_trip(body: str) -> None:
    for ns in (True, False):  # SDKs send S3's namespace, hand-written clients none
        cfg = parse_configuration(doc(body, ns=ns))
        assert len(cfg.rules) == 1
        assert parse_configuration(configuration_xml(cfg)) == cfg


INVALID = [
    (b"", "MalformedXML"),
    (b"<LifecycleConfiguration>", "MalformedXML"),
    (b"<Other/>", "MalformedXML"),
    (doc(), "MalformedXML"),  # no rule
    (doc(rule(EXP)), "MalformedXML"),  # no Filter, no Prefix
    (doc(rule("<Prefix>a</Prefix><Filter/>" + EXP)), "MalformedXML"),
    (doc(rule("<Filter/>" + EXP, status="On")), "MalformedXML"),
    (doc(rule("<Filter/><Bogus/>" + EXP)), "MalformedXML"),
    (doc(rule("<Filter><Prefix>a</Prefix><ObjectSizeLessThan>3</ObjectSizeLessThan></Filter>" + EXP)), "MalformedXML"),
    (doc(rule("<Filter><And><Prefix>a</Prefix></And></Filter>" + EXP)), "MalformedXML"),
    (doc(rule("<Filter/>")), "InvalidRequest"),  # no action
    (doc(rule("<Filter/><Expiration><Days>0</Days></Expiration>")), "InvalidArgument"),
    (doc(rule("<Filter/><Expiration><Days>-1</Days></Expiration>")), "InvalidArgument"),
    (doc(rule("<Filter/><Expiration><Days>2</Days><Date>2030-01-01</Date></Expiration>")), "MalformedXML"),
    (doc(rule("<Filter/><Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>")), "InvalidArgument"),
    (doc(rule("<Filter/><Expiration><Date>2030-02-30</Date></Expiration>")), "InvalidArgument"),
    (doc(rule("<Filter/><Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")), "MalformedXML"),
    (doc(rule("<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")), "InvalidRequest"),
    (doc(rule("<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>")), "InvalidRequest"),
    (doc(rule("<Filter/><NoncurrentVersionExpiration><NewerNoncurrentVersions>1</NewerNoncurrentVersions></NoncurrentVersionExpiration>")), "MalformedXML"),
    (doc(rule("<Filter/><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>101</NewerNoncurrentVersions></NoncurrentVersionExpiration>")), "InvalidArgument"),
    (doc(rule("<Filter><And><ObjectSizeGreaterThan>9</ObjectSizeGreaterThan><ObjectSizeLessThan>9</ObjectSizeLessThan></And></Filter>" + EXP)), "InvalidRequest"),
    (doc(rule("<Filter/>" + EXP, rid="x" * 256)), "InvalidArgument"),
    (doc(rule("<Filter/>" + EXP, rid="same"), rule("<Filter/>" + EXP, rid="same")), "InvalidArgument"),
    (doc(rule("<Filter/><Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition>")), "NotImplemented"),
    (doc(*[rule("<Filter/>" + EXP, rid=f"r{i}") for i in range(1001)]), "InvalidArgument"),
    (b'<!DOCTYPE x [<!ENTITY e "boom">]><LifecycleConfiguration>&e;</LifecycleConfiguration>', "MalformedXML"),
    (b"<LifecycleConfiguration>" + b"x" * (1024 * 1024) + b"</LifecycleConfiguration>", "MaxMessageLengthExceeded"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "code"), INVALID)
def test_invalid_configurations_get_the_aws_error(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_configuration(body)
    assert exc.value.code == code


def test_due_rounds_up_to_a_day_boundary() -> None:
    assert due_ns(0, 1, DAY) == DAY
    assert due_ns(1, 1, DAY) == 2 * DAY  # AWS: the next midnight after creation + days
    assert due_ns(DAY, 2, DAY) == 3 * DAY
    assert due_ns(5, 1) == 2 * NS_PER_DAY


def cfg_of(*rules: str) -> Configuration:
    return parse_configuration(doc(*rules))


def v(
    vid: str,
    day: float,
    *,
    marker: bool = False,
    size: int = 10,
    tags: dict[str, str] | None = None,
) -> Version:
    return Version(vid, int(day * DAY), size, marker, tags or {})


def test_current_version_expires_after_days_and_by_filters() -> None:
    cfg = cfg_of(
        rule(
            "<Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>2</Days></Expiration>",
            rid="tmp",
        ),
        rule(
            "<Filter><And><Tag><Key>class</Key><Value>junk</Value></Tag>"
            "<ObjectSizeGreaterThan>100</ObjectSizeGreaterThan></And></Filter>"
            "<Expiration><Days>1</Days></Expiration>",
            rid="junk",
        ),
    )
    made = [v("a", 0.5)]
    assert plan_key(cfg, "tmp/x", made, int(2.9 * DAY), DAY) == []
    assert plan_key(cfg, "tmp/x", made, 3 * DAY, DAY) == [Action("expire-current", "a", "tmp")]
    assert plan_key(cfg, "keep/x", made, 99 * DAY, DAY) == []
    junk = [v("j", 0, size=101, tags={"class": "junk"})]
    assert plan_key(cfg, "k", junk, 1 * DAY, DAY) == [Action("expire-current", "j", "junk")]
    small = [v("j", 0, size=100, tags={"class": "junk"})]  # sizes are strict bounds
    assert plan_key(cfg, "k", small, 9 * DAY, DAY) == []


def test_noncurrent_versions_by_age_and_count_kept() -> None:
    cfg = cfg_of(
        rule(
            "<Filter/><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
            "<NewerNoncurrentVersions>1</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
        )
    )
    # newest first: current c (day 5), then n1 (replaced on day 5), n2 (day 3), n3 (day 1)
    versions = [v("c", 5), v("n1", 3), v("n2", 1), v("n3", 0)]
    # n2 became noncurrent on day 3, n3 on day 1; n1 is kept (the one newer allowed).
    assert plan_key(cfg, "k", versions, int(4.5 * DAY), DAY) == [
        Action("delete-version", "n2", "r"),
        Action("delete-version", "n3", "r"),
    ]
    assert plan_key(cfg, "k", versions, int(1.5 * DAY), DAY) == []  # n3 due on day 2


def test_expired_delete_markers_and_disabled_rules() -> None:
    markers = cfg_of(
        rule(
            "<Filter/><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
        )
    )
    assert plan_key(markers, "k", [v("m", 0, marker=True)], 0, DAY) == [
        Action("remove-marker", "m", "r")
    ]
    # A marker with versions under it is not expired: it hides them.
    assert plan_key(markers, "k", [v("m", 0, marker=True), v("o", 0)], 9 * DAY, DAY) == []
    off = cfg_of(rule("<Filter/>" + EXP, status="Disabled"))
    assert plan_key(off, "k", [v("a", 0)], 99 * DAY, DAY) == []


def test_date_expiration_and_uploads() -> None:
    cfg = cfg_of(
        rule("<Filter/><Expiration><Date>2030-01-02T00:00:00Z</Date></Expiration>", rid="date"),
        rule(
            "<Filter><Prefix>up/</Prefix></Filter><AbortIncompleteMultipartUpload>"
            "<DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
            rid="mpu",
        ),
    )
    jan2 = 1_893_542_400 * 1_000_000_000  # 2030-01-02T00:00:00Z
    assert plan_key(cfg, "k", [v("a", 0)], jan2 - 1) == []
    assert plan_key(cfg, "k", [v("a", 0)], jan2) == [Action("expire-current", "a", "date")]
    assert plan_upload(cfg, "up/big", 0, 2 * DAY, DAY) == "mpu"
    assert plan_upload(cfg, "up/big", 1, 2 * DAY, DAY) is None
    assert plan_upload(cfg, "elsewhere", 0, 9 * DAY, DAY) is None


def test_expiration_header_names_the_earliest_rule() -> None:
    cfg = cfg_of(
        rule("<Filter/><Expiration><Days>30</Days></Expiration>", rid="month"),
        rule(
            "<Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>1</Days></Expiration>",
            rid="day",
        ),
    )
    created = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z
    assert expiration_header(cfg, "tmp/x", 5, {}, created) == (
        'expiry-date="Thu, 16 Nov 2023 00:00:00 GMT", rule-id="day"'
    )
    assert expiration_header(cfg, "x", 5, {}, created) == (
        'expiry-date="Fri, 15 Dec 2023 00:00:00 GMT", rule-id="month"'
    )
    assert expiration_header(Configuration(), "x", 5, {}, created) is None
