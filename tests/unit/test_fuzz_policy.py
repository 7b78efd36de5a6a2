"""Hypothesis fuzz target for the policy parser and evaluator.

Rules this file keeps (as ``test_fuzz_protocol.py``):

* ``SEGLAKE_FUZZ_EXAMPLES`` sets the examples per target (small by default
  for ``make test``; ``make fuzz`` runs many more).
* Hostile input may only ever produce ``PolicyError`` (``MalformedPolicy``
  for the client), never another exception and never a hang.
* Whatever a parsed policy says, evaluating it never fails, and a matching
  ``Deny`` statement added anywhere always wins.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from seglake.protocol.policy import (
    DENY,
    OPERATION_ACTIONS,
    PolicyError,
    RequestContext,
    decide,
    parse_bucket_policy,
    parse_key_policy,
)
from tests.unit.fuzzing import FUZZ

# Vocabulary close to real policies, so generated documents often parse and
# the evaluator gets exercised, plus arbitrary text for everything else.
WORDS = st.sampled_from(
    [
        "Version", "2012-10-17", "Statement", "Effect", "Allow", "Deny", "Action", "Resource",
        "Principal", "Condition", "Sid", "AWS", "*", "s3:*", "s3:GetObject", "s3:Put*",
        "s3:ListBucket", "arn:aws:s3:::demo", "arn:aws:s3:::demo/*", "arn:aws:s3:::demo/a?",
        "IpAddress", "NotIpAddress", "aws:SourceIp", "198.51.100.0/24", "::1/128", "DateLessThan",
        "DateGreaterThan", "aws:CurrentTime", "2026-01-01T00:00:00Z", "StringEquals",
        "StringLike", "s3:prefix", "s3:delimiter", "Bool", "aws:SecureTransport", "true",
        "version", "v1", "statements", "effect", "actions", "resources", "bucket", "prefix",
        "conditions", "source_ip", "before", "after", "headers", "GetObject", "demo", "alice",
        "seglake:RequestHeader/x-t", "NotAction", "NotResource", "NotPrincipal",
        "StringNotEquals", "ForAllValues:StringLike", "ForAnyValue:StringEquals", "Null",
        "NullIfExists", "NumericLessThan", "s3:max-keys", "BoolIfExists", "ArnLike",
        "aws:PrincipalArn", "arn:aws:iam::*:user/*", "home/${aws:username}/*", "${",
        "aws:username", "acme:Unknown",
    ]
)  # fmt: skip
KEYS = WORDS | st.text(max_size=12)
SCALARS = WORDS | st.text(max_size=20) | st.integers() | st.booleans() | st.none()
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)
STATEMENT = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Action": st.sampled_from(["s3:*", "s3:GetObject", "s3:Get*", "s3:ListBucket"])
        | st.lists(st.sampled_from(["s3:PutObject", "s3:DeleteObject", "s3:GetObject"]),
                   min_size=1, max_size=3),
        "Resource": st.sampled_from(["*", "arn:aws:s3:::demo", "arn:aws:s3:::demo/*",
                                     "arn:aws:s3:::demo/a*", "arn:aws:s3:::*"]),
    },
    optional={
        "Condition": st.sampled_from([
            {"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}},
            {"Bool": {"aws:SecureTransport": "false"}},
            {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
            {"StringLike": {"s3:prefix": ["a*", "b"]}},
            {"StringNotEquals": {"aws:username": "alice"}},
            {"ForAllValues:StringLike": {"s3:RequestObjectTagKeys": "t*"}},
            {"NumericLessThanIfExists": {"s3:max-keys": 5}},
            {"StringLike": {"s3:prefix": "home/${aws:username}/*"}},
            {"Null": {"aws:SourceIp": "false"}},
        ]),
        "Sid": st.text(max_size=8),
    },
)  # fmt: skip
CONTEXT = st.builds(
    RequestContext,
    operation=st.sampled_from(sorted(OPERATION_ACTIONS)),
    bucket=st.sampled_from(["demo", "other", ""]),
    key=st.text(max_size=10),
    principal=st.sampled_from(["alice", "bob", None]),
    source_ip=st.sampled_from(["198.51.100.1", "203.0.113.2", "::1"]).map(ipaddress.ip_address),
    now=st.just(datetime(2026, 6, 1, tzinfo=UTC)),
    secure_transport=st.booleans(),
    headers=st.dictionaries(st.sampled_from(["x-t", "host"]), st.text(max_size=4), max_size=2),
    prefix=st.none() | st.text(max_size=4),
    delimiter=st.none() | st.just("/"),
)


def _parse_any(text: str | bytes) -> None:
    for parse in (parse_key_policy, lambda t: parse_bucket_policy(t, "demo")):
        with contextlib.suppress(PolicyError):
            parse(text)


@FUZZ
@given(st.binary(max_size=512) | st.text(max_size=512))
def test_parser_never_crashes_on_bytes(raw: str | bytes) -> None:
    _parse_any(raw)


@FUZZ
@given(JSON)
def test_parser_never_crashes_on_json(doc: Any) -> None:
    _parse_any(json.dumps(doc))
    # Wrapped as a document too, so the statement-level code sees it.
    _parse_any(json.dumps({"Version": "2012-10-17", "Statement": doc}))
    _parse_any(json.dumps({"version": "v1", "statements": doc}))


@FUZZ
@given(st.lists(STATEMENT, min_size=1, max_size=5), st.lists(CONTEXT, min_size=1, max_size=5))
def test_evaluation_total_and_deny_wins(statements: list[dict[str, Any]], ctxs: list[Any]) -> None:
    policy = parse_key_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    for c in ctxs:
        decide(c, policy, None)  # must not raise
    deny_all = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    for position in (0, len(statements)):
        with_deny = [*statements[:position], deny_all, *statements[position:]]
        denied = parse_key_policy(json.dumps({"Version": "2012-10-17", "Statement": with_deny}))
        for c in ctxs:
            assert decide(c, denied, None) == DENY
