"""POST policy documents: parsing, conditions, and the form signature
(checked against botocore's own POST signer)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from botocore.auth import S3SigV4PostAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.postpolicy import (
    check_conditions,
    check_length,
    parse_policy,
    verify_signature,
)

SECRETS = {"AKIDPOST": "post-secret"}
FUTURE = "2099-01-01T00:00:00Z"


def encode(doc: Any) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def policy(*conditions: Any, expiration: str = FUTURE) -> str:
    return encode({"expiration": expiration, "conditions": list(conditions)})


def botocore_form(conditions: list[Any], fields: dict[str, str]) -> dict[str, str]:
    """Fields as botocore's SigV4 POST signer produces them."""
    signer = S3SigV4PostAuth(Credentials("AKIDPOST", "post-secret"), "s3", "us-east-1")
    request = AWSRequest(method="POST", url="http://127.0.0.1/b")
    request.context["s3-presign-post-fields"] = dict(fields)
    request.context["s3-presign-post-policy"] = {
        "expiration": FUTURE,
        "conditions": list(conditions),
    }
    signer.add_auth(request)
    out: dict[str, str] = request.context["s3-presign-post-fields"]
    return {k.lower(): v for k, v in out.items()}


def now() -> dt.datetime:
    """The clock at verification time: the forms are signed by botocore with
    the current time, and a module-level constant goes stale when the whole
    suite runs longer than the allowed skew before these tests."""
    return dt.datetime.now(dt.UTC)


def test_botocore_signed_form_verifies_and_conditions_hold() -> None:
    fields = botocore_form(
        [{"bucket": "b"}, ["starts-with", "$key", "up/"], ["content-length-range", 1, 10]],
        {"key": "up/x"},
    )
    post = verify_signature(fields, SECRETS.get, now(), region="us-east-1")
    assert post.auth.access_key == "AKIDPOST"
    assert post.auth.content_sha256 == "UNSIGNED-PAYLOAD"
    assert (post.policy.min_length, post.policy.max_length) == (1, 10)
    check_conditions(post.policy, fields, "b")
    with pytest.raises(S3Error) as info:
        check_conditions(post.policy, fields, "other-bucket")
    assert info.value.code == "AccessDenied"


@pytest.mark.parametrize(
    "field",
    ["policy", "x-amz-signature", "x-amz-credential", "x-amz-date", "x-amz-algorithm"],
)
def test_any_changed_signed_field_fails(field: str) -> None:
    fields = botocore_form([{"bucket": "b"}, {"key": "k"}], {"key": "k"})
    mutated = dict(fields)
    if field == "policy":
        mutated["policy"] = policy({"bucket": "b"})
    elif field == "x-amz-signature":
        mutated[field] = "0" * 64
    elif field == "x-amz-credential":
        mutated[field] = fields[field].replace("us-east-1", "eu-west-1")
    elif field == "x-amz-date":
        day = fields[field][:8]
        mutated[field] = day + "T000000Z"
    else:
        mutated[field] = "AWS4-HMAC-SHA512"
    with pytest.raises(S3Error) as info:
        post = verify_signature(mutated, SECRETS.get, now(), region="us-east-1")
        check_conditions(post.policy, mutated, "b")
    assert info.value.code in (
        "SignatureDoesNotMatch",
        "InvalidArgument",
        "AccessDenied",
    )
    assert fields["x-amz-signature"] not in info.value.text


def test_unknown_key_and_sigv2() -> None:
    fields = botocore_form([], {})
    with pytest.raises(S3Error) as info:
        verify_signature(fields, lambda _key: None, now(), region="us-east-1")
    assert info.value.code == "InvalidAccessKeyId"
    with pytest.raises(S3Error) as info:
        verify_signature(
            {"awsaccesskeyid": "A", "signature": "x", "policy": "e30="},
            SECRETS.get,
            now(),
            region="us-east-1",
        )
    assert info.value.code == "AccessDenied"
    assert "Version 2" in info.value.text


def test_expired_policy_refused_after_signature() -> None:
    fields = botocore_form([], {})
    later = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(S3Error) as info:
        verify_signature(fields, SECRETS.get, later, region="us-east-1")
    assert info.value.code == "AccessDenied"
    assert "expired" in info.value.text


@pytest.mark.parametrize(
    ("conditions", "fields", "ok"),
    [
        ([{"key": "a"}], {"key": "a"}, True),
        ([{"key": "a"}], {"key": "b"}, False),
        ([["eq", "$key", "a"]], {"key": "a"}, True),
        ([["eq", "$Key", "a"]], {"key": "a"}, True),  # field names ignore case
        ([["eq", "$key", "A"]], {"key": "a"}, False),  # values do not
        ([["starts-with", "$key", "up/"]], {"key": "up/x"}, True),
        ([["starts-with", "$key", "up/"]], {"key": "down/x"}, False),
        ([["starts-with", "$key", ""]], {"key": "anything"}, True),
        (
            [["starts-with", "$content-type", "image/"]],
            {"content-type": "image/png, image/gif"},
            True,
        ),
        (
            [["starts-with", "$content-type", "image/"]],
            {"content-type": "image/png, text/x"},
            False,
        ),
        ([{"bucket": "b"}], {"bucket": "b"}, True),
        ([{"bucket": "other"}], {}, False),
        ([], {"key": "k"}, False),  # a field no condition covers
        ([], {"x-ignore-note": "hi", "policy": "p", "x-amz-signature": "s"}, True),
        ([{"x-amz-meta-a": "1"}], {"x-amz-meta-a": "1"}, True),
        ([{"x-amz-meta-a": "1"}], {}, False),
    ],
)
def test_conditions(conditions: list[Any], fields: dict[str, str], ok: bool) -> None:
    parsed = parse_policy(policy(*conditions))
    if ok:
        check_conditions(parsed, fields, "b")
    else:
        with pytest.raises(S3Error) as info:
            check_conditions(parsed, fields, "b")
        assert info.value.code == "AccessDenied"


def test_bucket_field_naming_another_bucket_refused() -> None:
    parsed = parse_policy(policy({"bucket": "evil"}))
    with pytest.raises(S3Error) as info:
        check_conditions(parsed, {"bucket": "evil"}, "good")
    assert info.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    "encoded",
    [
        "not base64!",
        base64.b64encode(b"\xff\xfe").decode(),
        encode([]),
        encode({"conditions": []}),
        encode({"expiration": FUTURE}),
        encode({"expiration": "tomorrow", "conditions": []}),
        encode({"expiration": FUTURE, "conditions": [], "extra": 1}),
        policy(["eq", "$key"]),
        policy(["eq", "key", "a"]),
        policy(["eq", "$key", 5]),
        policy(["regex", "$key", ".*"]),
        policy({"a": "1", "b": "2"}),
        policy({"a": 1}),
        policy(["content-length-range", 10, 1]),
        policy(["content-length-range", -1, 5]),
        policy(["content-length-range", "x", 5]),
        policy(["content-length-range", True, 5]),
        policy(["content-length-range", 1, 5], ["content-length-range", 6, 9]),
        policy(*([{"key": "a"}] * 200)),
        encode({"expiration": FUTURE, "conditions": [[[[[[]]]]]]}),
        "A" * 40_000,
    ],
)
def test_invalid_policies_refused(encoded: str) -> None:
    with pytest.raises(S3Error) as info:
        parse_policy(encoded)
    assert info.value.code == "InvalidPolicyDocument"


def test_length_ranges_intersect() -> None:
    parsed = parse_policy(
        policy(["content-length-range", 1, 100], ["content-length-range", "10", "50"])
    )
    assert (parsed.min_length, parsed.max_length) == (10, 50)
    check_length(parsed, 10)
    check_length(parsed, 50)
    for size, code in ((9, "EntityTooSmall"), (51, "EntityTooLarge")):
        with pytest.raises(S3Error) as info:
            check_length(parsed, size)
        assert info.value.code == code


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_arbitrary_policy_text_never_crashes(text: str) -> None:
    for encoded in (text, base64.b64encode(text.encode()).decode()):
        try:
            parse_policy(encoded)
        except S3Error as exc:
            assert exc.code == "InvalidPolicyDocument"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.lists(json_values, max_size=5))
def test_arbitrary_conditions_parse_or_refuse(conditions: list[Any]) -> None:
    try:
        parsed = parse_policy(policy(*conditions))
    except S3Error as exc:
        assert exc.code == "InvalidPolicyDocument"
        return
    try:
        check_conditions(parsed, {"key": "k"}, "b")
    except S3Error as exc:
        assert exc.code == "AccessDenied"
