"""The policy parser and evaluator (seglake/protocol/policy.py), table-driven."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.protocol.policy import (
    ALLOW,
    BUCKET_OPERATIONS,
    DENY,
    IMPLICIT_DENY,
    KNOWN_ACTIONS,
    OPERATION_ACTIONS,
    SERVICE_OPERATIONS,
    Glob,
    Policy,
    PolicyError,
    RequestContext,
    decide,
    deny_everything,
    parse_bucket_policy,
    parse_key_policy,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ctx(
    op: str = "GetObject",
    bucket: str = "demo",
    key: str = "a/b.txt",
    *,
    principal: str | None = "alice",
    ip: str = "198.51.100.23",
    now: datetime = NOW,
    secure: bool = False,
    headers: dict[str, str] | None = None,
    prefix: str | None = None,
    delimiter: str | None = None,
) -> RequestContext:
    return RequestContext(
        operation=op, bucket=bucket, key=key, principal=principal,
        source_ip=ipaddress.ip_address(ip), now=now, secure_transport=secure,
        headers=headers or {}, prefix=prefix, delimiter=delimiter,
    )  # fmt: skip


def aws(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def v1(*statements: dict[str, Any]) -> str:
    return json.dumps({"version": "v1", "statements": list(statements)})


def verdict(policy: Policy, c: RequestContext) -> str:
    return decide(c, policy, None)


# ---- every router operation is a policy action ---------------------------------


def test_every_routed_operation_has_an_action() -> None:
    """Every endpoint the router can yield (implemented or 501) is a policy
    action, on the right kind of resource, so no request can slip past a
    policy for want of a mapping."""
    from seglake.protocol.endpoints import BUCKET, ENDPOINTS, SERVICE

    for e in ENDPOINTS:
        op, target = e.name, e.target
        assert OPERATION_ACTIONS.get(op), op
        assert set(OPERATION_ACTIONS[op]) <= KNOWN_ACTIONS
        assert (op in SERVICE_OPERATIONS) == (target == SERVICE), op
        assert (op in BUCKET_OPERATIONS) == (target == BUCKET), op
    for meta in ("GetMetaStats", "GetMetaConflicts", "ReplicationRead", "ReplicationWrite"):
        assert OPERATION_ACTIONS[meta] == (meta,)
        assert meta in SERVICE_OPERATIONS


# ---- shorthands ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "op", "expected"),
    [
        ("rw", "PutObject", ALLOW),
        ("rw", "DeleteBucket", ALLOW),
        ("rw", "ListBuckets", ALLOW),
        ("ro", "GetObject", ALLOW),
        ("ro", "HeadObject", ALLOW),
        ("ro", "ListObjectsV2", ALLOW),
        ("ro", "ListBuckets", ALLOW),
        ("ro", "PutObject", IMPLICIT_DENY),
        ("ro", "DeleteObject", IMPLICIT_DENY),
        ("ro", "CreateMultipartUpload", IMPLICIT_DENY),
        ("ro", "PutBucketPolicy", IMPLICIT_DENY),
        ("read-only", "CopyObject", IMPLICIT_DENY),
        ("read-only", "GetObject", ALLOW),
    ],
)
def test_shorthands(policy: str, op: str, expected: str) -> None:
    bucket = "" if op == "ListBuckets" else "demo"
    assert verdict(parse_key_policy(policy), ctx(op, bucket)) == expected


# ---- v1 format -------------------------------------------------------------------


V1_DENY_SECRET = v1(
    {"effect": "allow", "actions": ["GetObject"], "resources": [{"bucket": "demo"}]},
    {"effect": "deny", "actions": ["GetObject"],
     "resources": [{"bucket": "demo", "prefix": "secret/"}]},
)  # fmt: skip


@pytest.mark.parametrize(
    ("c", "expected"),
    [
        (ctx(key="public/x"), ALLOW),
        (ctx(key="secret/x"), DENY),
        (ctx(key="secret/x", op="HeadObject"), DENY),  # HeadObject needs GetObject too
        (ctx(bucket="other"), IMPLICIT_DENY),
        (ctx(op="PutObject"), IMPLICIT_DENY),
    ],
)
def test_v1_deny_overrides_allow(c: RequestContext, expected: str) -> None:
    assert verdict(parse_key_policy(V1_DENY_SECRET), c) == expected


def test_v1_conditions() -> None:
    policy = parse_key_policy(
        v1(
            {
                "effect": "allow", "actions": ["GetObject"],
                "resources": [{"bucket": "demo", "prefix": "public/"}],
                "conditions": {"source_ip": ["198.51.100.0/24"], "headers": {"x-tenant": "alpha"},
                               "after": "2026-01-01T00:00:00Z", "before": "2027-01-01T00:00:00Z"},
            }
        )
    )  # fmt: skip
    good = {"x-tenant": "alpha"}
    assert verdict(policy, ctx(key="public/a", headers=good)) == ALLOW
    assert verdict(policy, ctx(key="public/a", headers={"x-tenant": "beta"})) == IMPLICIT_DENY
    assert verdict(policy, ctx(key="public/a")) == IMPLICIT_DENY  # header missing
    assert verdict(policy, ctx(key="public/a", headers=good, ip="203.0.113.1")) == IMPLICIT_DENY
    late = datetime(2027, 2, 1, tzinfo=UTC)
    assert verdict(policy, ctx(key="public/a", headers=good, now=late)) == IMPLICIT_DENY
    assert verdict(policy, ctx(key="private/a", headers=good)) == IMPLICIT_DENY


def test_v1_prefixed_resource_limits_listing() -> None:
    policy = parse_key_policy(
        v1({"effect": "allow", "actions": ["ListBucket"],
            "resources": [{"bucket": "demo", "prefix": "public/"}]})
    )  # fmt: skip
    assert verdict(policy, ctx("ListObjectsV2", key="", prefix="public/x")) == ALLOW
    assert verdict(policy, ctx("ListObjectsV2", key="", prefix="")) == IMPLICIT_DENY
    assert verdict(policy, ctx("ListObjectsV2", key="", prefix="secret/")) == IMPLICIT_DENY


# ---- AWS-style format ------------------------------------------------------------


def test_aws_wildcards_and_resources() -> None:
    policy = parse_key_policy(
        aws(
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::demo/docs/*"},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::demo"},
        )
    )
    assert verdict(policy, ctx(key="docs/a")) == ALLOW
    assert verdict(policy, ctx(key="other/a")) == IMPLICIT_DENY
    assert verdict(policy, ctx("GetBucketLocation", key="")) == IMPLICIT_DENY  # needs demo ARN
    assert verdict(policy, ctx("ListObjects", key="")) == ALLOW
    assert verdict(policy, ctx("PutObject", key="docs/a")) == IMPLICIT_DENY


@pytest.mark.parametrize(
    ("condition", "c", "applies"),
    [
        ({"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}, ctx(ip="198.51.100.9"), True),
        ({"IpAddress": {"aws:SourceIp": ["198.51.100.0/24"]}}, ctx(ip="11.0.0.1"), False),
        ({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, ctx(ip="2001:db8::1"), True),
        ({"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}}, ctx(ip="11.0.0.1"), True),
        ({"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, ctx(), True),
        ({"DateLessThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, ctx(), False),
        ({"Bool": {"aws:SecureTransport": "true"}}, ctx(secure=True), True),
        ({"Bool": {"aws:SecureTransport": "true"}}, ctx(secure=False), False),
        ({"Bool": {"aws:SecureTransport": False}}, ctx(secure=False), True),
        ({"StringEquals": {"s3:prefix": "home/"}}, ctx("ListObjects", key="", prefix="home/"), True),
        ({"StringEquals": {"s3:prefix": "home/"}}, ctx("ListObjects", key="", prefix="x/"), False),
        ({"StringLike": {"s3:prefix": "home/*"}}, ctx("ListObjects", key="", prefix="home/a"), True),
        ({"StringLike": {"s3:prefix": "home/*"}}, ctx("ListObjects", key="", prefix="hom"), False),
        ({"StringEquals": {"s3:delimiter": "/"}}, ctx("ListObjects", key="", delimiter="/"), True),
        ({"StringEquals": {"s3:delimiter": "/"}}, ctx("ListObjects", key=""), False),
        ({"StringEquals": {"seglake:RequestHeader/X-Tenant": "a"}},
         ctx(headers={"x-tenant": "a"}), True),
    ],
)  # fmt: skip
def test_aws_conditions(condition: dict[str, Any], c: RequestContext, applies: bool) -> None:
    allow = parse_key_policy(
        aws({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": condition})
    )
    assert verdict(allow, c) == (ALLOW if applies else IMPLICIT_DENY)
    # The same condition on a Deny: applies exactly when the allow did.
    deny = parse_key_policy(
        aws(
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": condition},
        )
    )
    assert verdict(deny, c) == (DENY if applies else ALLOW)


def test_key_policy_is_the_ceiling() -> None:
    """A bucket policy narrows what a key may do, never widens it (SPEC §5)."""
    identity_ro = parse_key_policy("ro")
    identity_rw = parse_key_policy("rw")
    bucket = parse_bucket_policy(
        aws(
            {"Effect": "Allow", "Principal": {"AWS": ["alice"]}, "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::demo/in/*"},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::demo/secret/*"},
        ),
        "demo",
    )  # fmt: skip
    # The bucket policy's grant does not lift an ro key to writing.
    assert decide(ctx("PutObject", key="in/x"), identity_ro, bucket) == IMPLICIT_DENY
    assert decide(ctx("PutObject", key="in/x"), identity_rw, bucket) == ALLOW
    assert decide(ctx(key="secret/x"), identity_ro, bucket) == DENY  # the bucket's deny narrows
    assert decide(ctx(key="secret/x"), identity_rw, bucket) == DENY
    assert decide(ctx(key="open/x"), identity_ro, bucket) == ALLOW
    assert decide(ctx(key="open/x"), identity_ro, None) == ALLOW
    assert bucket.allows_anonymous(ctx("PutObject", key="in/x", principal=None)) is False


def test_rw_shorthand_cannot_change_policies() -> None:
    rw = parse_key_policy("rw")
    for op in ("PutBucketPolicy", "DeleteBucketPolicy"):
        assert decide(ctx(op, key=""), rw, None) == DENY
    assert decide(ctx("GetBucketPolicy", key=""), rw, None) == ALLOW
    explicit = parse_key_policy(
        aws({"Effect": "Allow", "Action": "s3:PutBucketPolicy", "Resource": "*"})
    )
    assert decide(ctx("PutBucketPolicy", key=""), explicit, None) == ALLOW


def test_anonymous_needs_star_principal() -> None:
    public = parse_bucket_policy(
        aws({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::demo/*"}),
        "demo",
    )  # fmt: skip
    assert public.allows_anonymous(ctx(principal=None))
    assert not public.allows_anonymous(ctx("PutObject", principal=None))
    assert not public.allows_anonymous(ctx("ListObjects", key="", principal=None))
    assert public.may_allow("GetObject", None)
    assert not public.may_allow("DeleteObject", None)


def test_deny_everything() -> None:
    policy = deny_everything()
    for op in OPERATION_ACTIONS:
        assert verdict(policy, ctx(op)) == DENY


def test_source_kept_verbatim() -> None:
    text = aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    assert parse_key_policy(text).source == text


# ---- rejected, never ignored -----------------------------------------------------


BAD_KEY_POLICIES = [
    "",
    "rwx",
    "[]",
    "null",
    '{"version": "v2", "statements": []}',
    aws({"Effect": "Allow", "Action": "s3:Frobnicate", "Resource": "*"}),
    aws({"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*"}),
    aws({"Effect": "Allow", "Action": "s3:Zz*", "Resource": "*"}),
    aws({"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "NotAction": "s3:PutObject",
         "Resource": "*"}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "NotResource": "*"}),
    aws({"Effect": "Allow", "Resource": "*"}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:iam::1:user/x"}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Principal": "*"}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"StringNotEqualsMaybe": {"s3:prefix": "a"}}}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"NullIfExists": {"aws:username": "true"}}}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"NumericLessThan": {"s3:max-keys": "ten"}}}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "not-an-ip"}}}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"DateLessThan": {"aws:CurrentTime": "tomorrow"}}}),
    aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "maybe"}}}),
    '{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}',
    json.dumps({"Version": "2001-01-01", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
    v1({"effect": "allow", "actions": ["Frobnicate"]}),
    v1({"effect": "allow", "actions": ["GetObject"], "conditions": {"referer": "x"}}),
    v1({"effect": "allow", "actions": ["GetObject"], "resources": [{"bucket": "x", "tag": "y"}]}),
    v1({"effect": "maybe", "actions": ["GetObject"]}),
    v1({"effect": "deny", "actions": "GetObject"}),
    '{"version": "v1", "statements": [{"effect": "allow", "actions": ["GetObject"]}], "x": 1}',
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", '
    '"Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": NaN}}}]}',
    "{" * 5000,
    "x" * 30000,
]  # fmt: skip


@pytest.mark.parametrize("text", BAD_KEY_POLICIES)
def test_unsupported_key_policies_are_rejected(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_key_policy(text)


@pytest.mark.parametrize(
    "text",
    [
        # no Principal
        aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::demo/*"}),
        # principal forms that are no principal
        aws({"Effect": "Allow", "Principal": {"Group": "x"}, "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::demo/*"}),
        aws({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123:root"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::demo/*"}),
        v1({"effect": "allow", "actions": ["GetObject"], "resources": [{"bucket": "other"}]}),
    ],
)  # fmt: skip
def test_unsupported_bucket_policies_are_rejected(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_bucket_policy(text, "demo")


def test_known_actions_include_v1_names() -> None:
    for name in ("ListBuckets", "ListBucket", "GetBucketLocation", "GetObject", "HeadObject",
                 "PutObject", "DeleteObject", "DeleteBucket", "CopyObject",
                 "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
                 "AbortMultipartUpload", "ListMultipartUploads", "ListMultipartParts",
                 "GetMetaStats"):  # fmt: skip
        assert name in KNOWN_ACTIONS
        parse_key_policy(v1({"effect": "allow", "actions": [name]}))


def test_deny_is_never_ignored_whatever_the_order() -> None:
    """Regression: an explicit Deny wins over any number of Allows, in
    either format and in either position."""
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::demo/*"}
    for statements in ([allow, deny], [deny, allow], [allow, allow, deny, allow]):
        assert verdict(parse_key_policy(aws(*statements)), ctx()) == DENY
    v1_allow = {"effect": "allow", "actions": ["*"]}
    v1_deny = {"effect": "DENY", "actions": ["GetObject"], "resources": [{"bucket": "demo"}]}
    for items in ([v1_allow, v1_deny], [v1_deny, v1_allow]):
        assert verdict(parse_key_policy(v1(*items)), ctx()) == DENY


def test_version_actions() -> None:
    deny_versions = parse_key_policy(
        aws(
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteObjectVersion", "Resource": "*"},
        )
    )
    assert verdict(deny_versions, ctx("DeleteObject")) == ALLOW  # a delete marker
    versioned = RequestContext(**{**ctx("DeleteObject").__dict__, "version_id": "v1"})
    assert verdict(deny_versions, versioned) == DENY
    only_versions = parse_key_policy(
        aws({"Effect": "Allow", "Action": "s3:GetObjectVersion", "Resource": "*"})
    )
    get_version = RequestContext(**{**ctx("HeadObject").__dict__, "version_id": "v1"})
    assert verdict(only_versions, get_version) == ALLOW
    assert verdict(only_versions, ctx("GetObject")) == IMPLICIT_DENY
    assert verdict(parse_key_policy("ro"), get_version) == ALLOW


@given(st.text(alphabet="ab*?", max_size=8), st.text(alphabet="ab", max_size=10))
def test_glob_agrees_with_a_regex(pattern: str, text: str) -> None:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    assert Glob(pattern).fullmatch(text) == (re.fullmatch(regex, text, re.DOTALL) is not None)


def test_glob_has_no_backtracking_blowup() -> None:
    """A hostile object key against a many-star pattern stays fast."""
    hostile = Glob("*a" * 40 + "b")
    started = time.perf_counter()
    assert not hostile.fullmatch("a" * 1024)
    assert time.perf_counter() - started < 2.0
    policy = parse_bucket_policy(
        aws({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::demo/" + "*a" * 40 + "b"}),
        "demo",
    )  # fmt: skip
    started = time.perf_counter()
    assert verdict(policy, ctx(key="a" * 1024)) == IMPLICIT_DENY
    assert time.perf_counter() - started < 2.0
