"""The conditional-header evaluator (seglake.protocol.conditions), table-driven.

One table of (headers, expected verdict) cases against one object, evaluated
for reads (304/412) and for copy sources (412 only); then the ETag-list and
date parsers on their own, and hypothesis for the precedence rules.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.protocol import conditions
from seglake.protocol.conditions import Conditions, Outcome, evaluate, parse_etag_list

ETAG = "9b2cf535f27731c974343645a3985328"
OTHER = "d41d8cd98f00b204e9800998ecf8427e"
# The object was last modified at 2024-05-06 07:08:09.750 UTC.
MODIFIED_NS = 1_714_979_289_750_000_000
AT = "Mon, 06 May 2024 07:08:09 GMT"  # the same second
BEFORE = "Mon, 06 May 2024 07:08:08 GMT"
AFTER = "Mon, 06 May 2024 07:08:10 GMT"
BAD_DATE = "yesterday, around noon"

P, NM, PF = Outcome.PROCEED, Outcome.NOT_MODIFIED, Outcome.PRECONDITION_FAILED

# (if-match, if-none-match, if-modified-since, if-unmodified-since) → (read, copy)
CASES: list[tuple[str, tuple[str | None, str | None, str | None, str | None], Outcome, Outcome]] = [
    ("nothing", (None, None, None, None), P, P),
    # If-Match
    ("match quoted", (f'"{ETAG}"', None, None, None), P, P),
    ("match bare", (ETAG, None, None, None), P, P),
    ("match star", ("*", None, None, None), P, P),
    ("match in list", (f'"{OTHER}", "{ETAG}"', None, None, None), P, P),
    ("match list no space", (f'"{OTHER}","{ETAG}"', None, None, None), P, P),
    ("match other", (f'"{OTHER}"', None, None, None), PF, PF),
    ("match weak never", (f'W/"{ETAG}"', None, None, None), PF, PF),
    ("match empty", ("", None, None, None), PF, PF),
    # If-None-Match
    ("none-match same", (None, f'"{ETAG}"', None, None), NM, PF),
    ("none-match bare", (None, ETAG, None, None), NM, PF),
    ("none-match weak", (None, f'W/"{ETAG}"', None, None), NM, PF),
    ("none-match star", (None, "*", None, None), NM, PF),
    ("none-match list", (None, f'"{OTHER}", W/"{ETAG}"', None, None), NM, PF),
    ("none-match other", (None, f'"{OTHER}"', None, None), P, P),
    # If-Modified-Since
    ("modified-since before", (None, None, BEFORE, None), P, P),
    ("modified-since same second", (None, None, AT, None), NM, PF),
    ("modified-since after", (None, None, AFTER, None), NM, PF),
    ("modified-since bad date", (None, None, BAD_DATE, None), P, P),
    # If-Unmodified-Since
    ("unmodified-since before", (None, None, None, BEFORE), PF, PF),
    ("unmodified-since same second", (None, None, None, AT), P, P),
    ("unmodified-since after", (None, None, None, AFTER), P, P),
    ("unmodified-since bad date", (None, None, None, BAD_DATE), P, P),
    # Precedence: If-Match wins over If-Unmodified-Since
    ("match true + unmodified false", (ETAG, None, None, BEFORE), P, P),
    ("match false + unmodified true", (OTHER, None, None, AFTER), PF, PF),
    # If-None-Match wins over If-Modified-Since
    ("none-match false + modified-since not modified", (None, OTHER, AFTER, None), P, P),
    ("none-match true + modified-since modified", (None, ETAG, BEFORE, None), NM, PF),
    # 412 beats 304
    ("match false + none-match true", (OTHER, ETAG, None, None), PF, PF),
    ("unmodified false + modified-since not modified", (None, None, AFTER, BEFORE), PF, PF),
    ("all true", (ETAG, OTHER, BEFORE, AFTER), P, P),
    ("match true + none-match true", (ETAG, ETAG, None, None), NM, PF),
    # Other date forms RFC 7231 requires recipients to accept
    ("rfc850 date", (None, None, "Monday, 06-May-24 07:08:10 GMT", None), NM, PF),
    ("asctime date", (None, None, "Mon May  6 07:08:08 2024", None), P, P),
]


@pytest.mark.parametrize(("case", "headers", "read", "copy"), CASES, ids=[c[0] for c in CASES])
def test_table(
    case: str,
    headers: tuple[str | None, str | None, str | None, str | None],
    read: Outcome,
    copy: Outcome,
) -> None:
    cond = Conditions(*headers)
    assert evaluate(cond, ETAG, MODIFIED_NS).outcome is read, case
    assert evaluate(cond, ETAG, MODIFIED_NS, copy=True).outcome is copy, case


@pytest.mark.parametrize(
    ("headers", "condition"),
    [
        ((OTHER, None, None, None), "If-Match"),
        ((None, None, None, BEFORE), "If-Unmodified-Since"),
        ((None, ETAG, None, None), "If-None-Match"),
        ((None, None, AT, None), "If-Modified-Since"),
    ],
)
def test_verdict_names_the_deciding_header(
    headers: tuple[str | None, str | None, str | None, str | None], condition: str
) -> None:
    assert evaluate(Conditions(*headers), ETAG, MODIFIED_NS).condition == condition
    copied = evaluate(Conditions(*headers), ETAG, MODIFIED_NS, copy=True).condition
    assert copied == "x-amz-copy-source-" + condition


def test_from_headers_picks_the_right_family() -> None:
    headers = {
        "if-match": "a", "if-none-match": "b", "if-modified-since": "c",
        "if-unmodified-since": "d", "x-amz-copy-source-if-match": "e",
        "x-amz-copy-source-if-none-match": "f", "x-amz-copy-source-if-modified-since": "g",
        "x-amz-copy-source-if-unmodified-since": "h",
    }  # fmt: skip
    assert conditions.from_headers(headers) == Conditions("a", "b", "c", "d")
    assert conditions.from_headers(headers, copy_source=True) == Conditions("e", "f", "g", "h")
    assert not conditions.from_headers({}).any
    assert conditions.from_headers({"if-none-match": "*"}).any


@pytest.mark.parametrize(
    ("value", "tags"),
    [
        ("*", None),
        (" * ", None),
        ('"a"', [(False, "a")]),
        ("a", [(False, "a")]),
        ('W/"a"', [(True, "a")]),
        ('w/"a"', [(True, "a")]),
        ('"a", W/"b",c', [(False, "a"), (True, "b"), (False, "c")]),
        ('"a,b", "c"', [(False, "a,b"), (False, "c")]),  # a comma inside quotes
        (" , ,", []),
        ("", []),
        ('"unterminated', [(False, "unterminated")]),
        ('"a"junk, "b"', [(False, "a"), (False, "b")]),
    ],
)
def test_parse_etag_list(value: str, tags: list[tuple[bool, str]] | None) -> None:
    assert parse_etag_list(value) == tags


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (AT, 1_714_979_289),
        ("Monday, 06-May-24 07:08:09 GMT", 1_714_979_289),
        ("Mon May  6 07:08:09 2024", 1_714_979_289),
        ("Mon, 06 May 2024 07:08:09 +0000", 1_714_979_289),
        ("", None),
        ("garbage", None),
        ("Mon, 99 May 2024 07:08:09 GMT", None),
        ("Mon, 06 Foo 2024 07:08:09 GMT", None),
    ],
)
def test_parse_http_date(value: str, seconds: int | None) -> None:
    assert conditions.parse_http_date(value) == seconds


@given(
    match=st.sampled_from([None, ETAG, OTHER, "*"]),
    none_match=st.sampled_from([None, ETAG, OTHER, "*"]),
    ims=st.sampled_from([None, BEFORE, AT, AFTER, BAD_DATE]),
    ius=st.sampled_from([None, BEFORE, AT, AFTER, BAD_DATE]),
)
def test_precedence_properties(
    match: str | None, none_match: str | None, ims: str | None, ius: str | None
) -> None:
    read = evaluate(Conditions(match, none_match, ims, ius), ETAG, MODIFIED_NS)
    copy = evaluate(Conditions(match, none_match, ims, ius), ETAG, MODIFIED_NS, copy=True)
    # A copy never answers 304, and fails exactly when a read would not proceed.
    assert copy.outcome is not Outcome.NOT_MODIFIED
    assert copy.ok == read.ok
    # If-Match decides alone when present: If-Unmodified-Since cannot fail it.
    if match is not None:
        with_ius = evaluate(Conditions(match, none_match, ims, BEFORE), ETAG, MODIFIED_NS)
        assert with_ius == evaluate(Conditions(match, none_match, ims, None), ETAG, MODIFIED_NS)
    # If-None-Match decides alone when present: If-Modified-Since is ignored.
    if none_match is not None:
        with_ims = evaluate(Conditions(match, none_match, AFTER, ius), ETAG, MODIFIED_NS)
        assert with_ims == evaluate(Conditions(match, none_match, None, ius), ETAG, MODIFIED_NS)
    # A failed precondition (412) is never downgraded to 304.
    if match == OTHER:
        assert read.outcome is Outcome.PRECONDITION_FAILED


@given(st.text(max_size=60))
def test_etag_list_parser_never_raises(value: str) -> None:
    conditions.etag_matches(value, ETAG, weak=True)
    conditions.parse_http_date(value)
