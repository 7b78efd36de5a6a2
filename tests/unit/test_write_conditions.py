"""The write and delete conditions the writer decides in its transaction
(``seglake.protocol.conditions``: ``decide_write``, ``decide_delete``, and
their header/XML parsers), table-driven, then hypothesis for the invariants
that make racing writers safe."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.conditions import (
    MTIME_HEADER,
    SIZE_HEADER,
    DeleteConditions,
    KeyState,
    WriteConditions,
    WriteOutcome,
    decide_delete,
    decide_write,
    delete_conditions_from_headers,
    parse_timestamp,
    write_conditions_from_headers,
)

ETAG = "9b2cf535f27731c974343645a3985328"
OTHER = "d41d8cd98f00b204e9800998ecf8427e"
MODIFIED_NS = 1_714_979_289_750_000_000  # 2024-05-06 07:08:09.750 UTC
MODIFIED_S = MODIFIED_NS // 1_000_000_000
LIVE = KeyState("uid-live", ETAG, 16, MODIFIED_NS)
MARKER = KeyState("uid-marker", "", 0, MODIFIED_NS, delete_marker=True)

P, PF, NSK, C = (
    WriteOutcome.PROCEED, WriteOutcome.PRECONDITION_FAILED, WriteOutcome.NO_SUCH_KEY,
    WriteOutcome.CONFLICT,
)  # fmt: skip

# (name, conditions, current, seen uid, outcome, failed condition)
WRITE_CASES: list[
    tuple[str, WriteConditions, KeyState | None, str | None, WriteOutcome, str | None]
] = [
    ("unconditional, absent", WriteConditions(), None, None, P, None),
    ("unconditional, live", WriteConditions(), LIVE, None, P, None),
    ("unconditional ignores seen", WriteConditions(), LIVE, "other", P, None),
    # If-None-Match: * (create only)
    ("create, absent", WriteConditions(if_none_match=True), None, None, P, None),
    ("create, live", WriteConditions(if_none_match=True), LIVE, None, PF, "If-None-Match"),
    ("create, marker", WriteConditions(if_none_match=True), MARKER, None, P, None),
    ("create, absent as seen", WriteConditions(if_none_match=True), None, "", P, None),
    # ... created and deleted meanwhile (versioned: a marker now)
    ("create, marker since", WriteConditions(if_none_match=True), MARKER, "", C, None),
    # ... deleted during the upload (unversioned: no row now)
    ("create, deleted since", WriteConditions(if_none_match=True), None, "uid-live", C, None),
    # ... a failed condition wins over a conflict
    ("create, live, changed", WriteConditions(if_none_match=True), LIVE, "", PF, "If-None-Match"),
    # If-Match (overwrite only that version)
    ("match, absent", WriteConditions(if_match=ETAG), None, None, NSK, None),
    ("match, marker", WriteConditions(if_match=ETAG), MARKER, None, NSK, None),
    ("match star, absent", WriteConditions(if_match="*"), None, None, NSK, None),
    ("match, live", WriteConditions(if_match=f'"{ETAG}"'), LIVE, None, P, None),
    ("match bare", WriteConditions(if_match=ETAG), LIVE, "uid-live", P, None),
    ("match star, live", WriteConditions(if_match="*"), LIVE, None, P, None),
    ("match list", WriteConditions(if_match=f'"{OTHER}", "{ETAG}"'), LIVE, None, P, None),
    ("match other", WriteConditions(if_match=f'"{OTHER}"'), LIVE, None, PF, "If-Match"),
    ("match weak", WriteConditions(if_match=f'W/"{ETAG}"'), LIVE, None, PF, "If-Match"),
    # ... overwritten by identical bytes meanwhile: the ETag matches, the version is not
    ("match, overwritten same", WriteConditions(if_match=ETAG), LIVE, "uid-older", C, None),
    ("match, deleted since", WriteConditions(if_match=ETAG), None, "uid-live", NSK, None),
    # Both at once: If-None-Match first
    ("both, live", WriteConditions(ETAG, True), LIVE, None, PF, "If-None-Match"),
    ("both, absent", WriteConditions(ETAG, True), None, None, NSK, None),
]


@pytest.mark.parametrize(
    ("cond", "current", "seen", "outcome", "failed"),
    [case[1:] for case in WRITE_CASES],
    ids=[case[0] for case in WRITE_CASES],
)
def test_decide_write(
    cond: WriteConditions,
    current: KeyState | None,
    seen: str | None,
    outcome: WriteOutcome,
    failed: str | None,
) -> None:
    verdict = decide_write(cond, current, seen)
    assert (verdict.outcome, verdict.condition) == (outcome, failed)


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        (PF, 412, "PreconditionFailed"),
        (NSK, 404, "NoSuchKey"),
        (C, 409, "ConditionalRequestConflict"),
    ],
)
def test_verdicts_raise_their_s3_errors(outcome: WriteOutcome, status: int, code: str) -> None:
    cond = {PF: WriteConditions(if_match=OTHER), NSK: WriteConditions(if_match="*")}
    if outcome is C:
        verdict = decide_write(WriteConditions(if_none_match=True), None, "gone")
    else:
        verdict = decide_write(cond[outcome], LIVE if outcome is PF else None, None)
    assert verdict.outcome is outcome
    with pytest.raises(S3Error) as exc:
        verdict.raise_for("k")
    assert (exc.value.status, exc.value.code) == (status, code)
    if outcome is PF:
        assert exc.value.fields == {"Condition": "If-Match"}
    decide_write(WriteConditions(), LIVE, None).raise_for("k")  # passes: nothing raised


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, WriteConditions()),
        ({"if-none-match": "*"}, WriteConditions(if_none_match=True)),
        ({"if-none-match": " * "}, WriteConditions(if_none_match=True)),
        ({"if-match": f'"{ETAG}"'}, WriteConditions(if_match=f'"{ETAG}"')),
        ({"if-match": ETAG, "if-none-match": "*"}, WriteConditions(ETAG, True)),
    ],
)
def test_write_conditions_from_headers(headers: dict[str, str], expected: WriteConditions) -> None:
    assert write_conditions_from_headers(headers) == expected


@pytest.mark.parametrize("value", [f'"{ETAG}"', ETAG, "", 'W/"x"', "*, x"])
def test_if_none_match_takes_only_star_on_writes(value: str) -> None:
    with pytest.raises(S3Error) as exc:
        write_conditions_from_headers({"if-none-match": value})
    assert (exc.value.status, exc.value.code) == (501, "NotImplemented")
    assert exc.value.fields == {"Header": "If-None-Match"}


# ---- deletes ---------------------------------------------------------------------

# (name, conditions, current, outcome, failed condition)
DELETE_CASES: list[tuple[str, DeleteConditions, KeyState | None, WriteOutcome, str | None]] = [
    ("none, absent", DeleteConditions(), None, P, None),
    ("none, live", DeleteConditions(), LIVE, P, None),
    ("etag match", DeleteConditions(if_match=f'"{ETAG}"'), LIVE, P, None),
    ("etag bare", DeleteConditions(if_match=ETAG), LIVE, P, None),
    ("etag star", DeleteConditions(if_match="*"), LIVE, P, None),
    ("etag other", DeleteConditions(if_match=OTHER), LIVE, PF, "If-Match"),
    ("etag, absent", DeleteConditions(if_match=ETAG), None, NSK, None),
    ("etag star, absent", DeleteConditions(if_match="*"), None, NSK, None),
    ("etag, marker", DeleteConditions(if_match=ETAG), MARKER, NSK, None),
    ("time match", DeleteConditions(last_modified_s=MODIFIED_S), LIVE, P, None),
    ("time other", DeleteConditions(last_modified_s=MODIFIED_S - 1), LIVE, PF, MTIME_HEADER),
    ("time, absent", DeleteConditions(last_modified_s=MODIFIED_S), None, P, None),
    ("time, marker", DeleteConditions(last_modified_s=1), MARKER, P, None),
    ("size match", DeleteConditions(size=16), LIVE, P, None),
    ("size other", DeleteConditions(size=17), LIVE, PF, SIZE_HEADER),
    ("size, absent", DeleteConditions(size=16), None, P, None),
    ("all match", DeleteConditions(ETAG, MODIFIED_S, 16), LIVE, P, None),
    ("all, etag wrong", DeleteConditions(OTHER, MODIFIED_S, 16), LIVE, PF, "If-Match"),
    ("all, time wrong", DeleteConditions(ETAG, 0, 16), LIVE, PF, MTIME_HEADER),
    ("all, size wrong", DeleteConditions(ETAG, MODIFIED_S, 0), LIVE, PF, SIZE_HEADER),
    ("all, absent", DeleteConditions(ETAG, MODIFIED_S, 16), None, NSK, None),
]


@pytest.mark.parametrize(
    ("cond", "current", "outcome", "failed"),
    [case[1:] for case in DELETE_CASES],
    ids=[case[0] for case in DELETE_CASES],
)
def test_decide_delete(
    cond: DeleteConditions, current: KeyState | None, outcome: WriteOutcome, failed: str | None
) -> None:
    verdict = decide_delete(cond, current)
    assert (verdict.outcome, verdict.condition) == (outcome, failed)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("Mon, 06 May 2024 07:08:09 GMT", MODIFIED_S),
        ("2024-05-06T07:08:09Z", MODIFIED_S),
        ("2024-05-06T07:08:09.750Z", MODIFIED_S),
        ("2024-05-06T07:08:09.750000+00:00", MODIFIED_S),
        ("2024-05-06T09:08:09+02:00", MODIFIED_S),
        ("2024-05-06T07:08:09", MODIFIED_S),  # no zone: UTC
        ("yesterday", None),
        ("", None),
        ("1714979289", None),
    ],
)
def test_parse_timestamp(value: str, seconds: int | None) -> None:
    assert parse_timestamp(value) == seconds


def test_delete_conditions_from_headers() -> None:
    assert delete_conditions_from_headers({}) == DeleteConditions()
    got = delete_conditions_from_headers(
        {"if-match": ETAG, MTIME_HEADER: "Mon, 06 May 2024 07:08:09 GMT", SIZE_HEADER: " 16 "}
    )
    assert got == DeleteConditions(ETAG, MODIFIED_S, 16)


@pytest.mark.parametrize(
    "headers",
    [
        {MTIME_HEADER: "not a date"},
        {SIZE_HEADER: "-1"},
        {SIZE_HEADER: "1.5"},
        {SIZE_HEADER: ""},
        {SIZE_HEADER: "9" * 20},
        {SIZE_HEADER: "１２"},  # full-width digits are digits to str.isdigit, not to us
    ],
)
def test_bad_delete_condition_values_are_400_never_ignored(headers: dict[str, str]) -> None:
    with pytest.raises(S3Error) as exc:
        delete_conditions_from_headers(headers)
    assert (exc.value.status, exc.value.code) == (400, "InvalidArgument")


# ---- invariants --------------------------------------------------------------------

states = st.one_of(
    st.none(),
    st.builds(
        KeyState,
        uid=st.sampled_from(["u1", "u2"]),
        etag=st.sampled_from([ETAG, OTHER]),
        size=st.integers(0, 3),
        created_ns=st.sampled_from([MODIFIED_NS, MODIFIED_NS + 10**9]),
        delete_marker=st.booleans(),
    ),
)
write_conds = st.builds(
    WriteConditions,
    if_match=st.one_of(st.none(), st.sampled_from([ETAG, OTHER, "*"])),
    if_none_match=st.booleans(),
)


@given(write_conds, states, st.one_of(st.none(), st.sampled_from(["", "u1", "u2"])))
def test_create_only_never_passes_over_a_live_object(
    c: WriteConditions, current: KeyState | None, seen: str | None
) -> None:
    verdict = decide_write(c, current, seen)
    live = current is not None and not current.delete_marker
    if c.if_none_match and live:
        assert verdict.outcome is PF
    if c.if_match is not None and verdict.ok:
        assert live and current is not None and (c.if_match in ("*", current.etag))
    if verdict.ok and c.any and seen is not None:
        assert seen == (current.uid if current is not None else "")


@given(write_conds, states)
def test_a_write_that_won_makes_every_racer_with_the_same_view_lose(
    c: WriteConditions, before: KeyState | None
) -> None:
    """Racers that saw the same key state and carry the same create-only or
    If-Match condition: once one committed (a new live version with a new
    ETag), the next one decided against it never passes."""
    seen = before.uid if before is not None else ""
    first = decide_write(c, before, seen)
    if not first.ok or not c.any:
        return
    after = KeyState("u-new", "0" * 32, 5, MODIFIED_NS + 2 * 10**9)
    if c.if_match == "*" and not c.if_none_match:
        # If-Match: * only asks that an object exist; it still conflicts.
        assert decide_write(c, after, seen).outcome is C
        return
    assert not decide_write(c, after, seen).ok
