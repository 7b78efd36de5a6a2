"""Object-tag condition keys in policies (seglake/protocol/policy.py):
s3:ExistingObjectTag/<key>, s3:RequestObjectTag/<key>,
s3:RequestObjectTagKeys, with AWS's operators, set operators and absent-key
rules; and the tagging actions with and without a version id."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from seglake.protocol.policy import ALLOW, IMPLICIT_DENY, RequestContext, decide, key_values
from seglake.protocol.policy import parse_key_policy as parse

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ctx(
    op: str = "GetObject",
    *,
    existing: Sequence[tuple[str, str]] | None = None,
    request: Sequence[tuple[str, str]] | None = None,
    version_id: str | None = None,
) -> RequestContext:
    def existing_tags() -> Sequence[tuple[str, str]]:
        return existing or ()

    return RequestContext(
        operation=op, bucket="demo", key="k", principal="alice",
        source_ip=ipaddress.ip_address("198.51.100.23"), now=NOW, secure_transport=False,
        version_id=version_id, request_tags=None if request is None else tuple(request),
        existing_tags=existing_tags if existing is not None else None,
    )  # fmt: skip


def allow_if(condition: dict[str, Any], action: str = "s3:*") -> Any:
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": action, "Resource": "arn:aws:s3:::demo/*",
             "Condition": condition},
        ],
    }  # fmt: skip
    return parse(json.dumps(doc))


# Each case: condition, request context, does it allow? (AWS's rules: a key
# the request does not carry is absent; negated operators and ...IfExists
# match an absent key; ForAnyValue over no values is false, ForAllValues true.)
# fmt: off
CASES = [
    ({"StringEquals": {"s3:ExistingObjectTag/env": "prod"}}, ctx(existing=[("env", "prod")]), True),
    ({"StringEquals": {"s3:ExistingObjectTag/env": "prod"}}, ctx(existing=[("env", "dev")]), False),
    ({"StringEquals": {"s3:ExistingObjectTag/env": "prod"}}, ctx(existing=[]), False),
    ({"StringEquals": {"s3:ExistingObjectTag/env": "prod"}}, ctx(), False),  # no object
    ({"StringNotEquals": {"s3:ExistingObjectTag/env": "prod"}}, ctx(existing=[]), True),
    ({"StringEqualsIfExists": {"s3:ExistingObjectTag/env": "prod"}}, ctx(existing=[]), True),
    (
        {"StringLike": {"s3:ExistingObjectTag/team": "blue-*"}},
        ctx(existing=[("team", "blue-7")]),
        True,
    ),
    ({"Null": {"s3:ExistingObjectTag/env": "true"}}, ctx(existing=[("x", "1")]), True),
    ({"Null": {"s3:ExistingObjectTag/env": "false"}}, ctx(existing=[("env", "")]), True),
    # Condition key names (and so the tag key in them) compare without case.
    ({"StringEquals": {"s3:existingobjecttag/ENV": "prod"}}, ctx(existing=[("Env", "prod")]), True),
    ({"StringEquals": {"s3:RequestObjectTag/env": "prod"}}, ctx(request=[("env", "prod")]), True),
    ({"StringEquals": {"s3:RequestObjectTag/env": "prod"}}, ctx(request=[]), False),
    ({"StringEquals": {"s3:RequestObjectTag/env": "prod"}}, ctx(), False),
    ({"StringNotEquals": {"s3:RequestObjectTag/env": "prod"}}, ctx(), True),
    (
        {"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}},
        ctx(request=[("b", "1"), ("c", "2")]),
        True,
    ),
    (
        {"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}},
        ctx(request=[("c", "2")]),
        False,
    ),
    (
        {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}},
        ctx(request=[("a", "1"), ("b", "2")]),
        True,
    ),
    (
        {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}},
        ctx(request=[("a", "1"), ("z", "2")]),
        False,
    ),
    ({"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a"]}}, ctx(), True),
    ({"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["a"]}}, ctx(), False),
    ({"Null": {"s3:RequestObjectTagKeys": "true"}}, ctx(), True),
    ({"NumericLessThanEquals": {"s3:RequestObjectTag/n": "5"}}, ctx(request=[("n", "3")]), True),
]
# fmt: on


@pytest.mark.parametrize(("condition", "c", "allows"), CASES)
def test_tag_condition_keys(condition: dict[str, Any], c: RequestContext, allows: bool) -> None:
    assert decide(c, allow_if(condition), None) == (ALLOW if allows else IMPLICIT_DENY)


def test_existing_tags_are_read_only_when_a_condition_asks() -> None:
    calls: list[int] = []

    def existing() -> Sequence[tuple[str, str]]:
        calls.append(1)
        return (("a", "1"),)

    c = dataclasses.replace(ctx(), existing_tags=existing)
    assert decide(c, parse("rw"), None) == ALLOW
    assert calls == []
    assert key_values(c, "s3:existingobjecttag/a") == ("1",)
    assert calls == [1]


@pytest.mark.parametrize(
    ("op", "version_id", "action", "allows"),
    [
        ("GetObjectTagging", None, "s3:GetObjectTagging", True),
        ("GetObjectTagging", "v1", "s3:GetObjectTagging", True),
        ("GetObjectTagging", "v1", "s3:GetObjectVersionTagging", True),
        ("GetObjectTagging", None, "s3:GetObjectVersionTagging", False),
        ("PutObjectTagging", "v1", "s3:PutObjectVersionTagging", True),
        ("DeleteObjectTagging", "v1", "s3:DeleteObjectVersionTagging", True),
        ("DeleteObjectTagging", None, "s3:DeleteObjectTagging", True),
        ("PutObjectTagging", None, "s3:GetObjectTagging", False),
    ],
)
def test_tagging_actions(op: str, version_id: str | None, action: str, allows: bool) -> None:
    policy = allow_if({"Bool": {"aws:SecureTransport": "false"}}, action)
    c = ctx(op, version_id=version_id)
    assert decide(c, policy, None) == (ALLOW if allows else IMPLICIT_DENY)
