"""Browser form uploads (POST Object): the signed policy document (pure).

A presigned POST carries its authority in form fields, not headers: a
base64 JSON ``policy`` stating an expiration and conditions on every other
field, signed with SigV4 (``x-amz-algorithm``, ``x-amz-credential``,
``x-amz-date``, ``x-amz-signature``; the string to sign is the base64 policy
itself). Rules this module keeps:

* The signature is checked before the policy is trusted, in constant time,
  and errors never contain the expected signature.
* Every form field the client sent (except ``policy``, ``x-amz-signature``,
  ``file`` and ``x-ignore-*``) must be covered by a condition, so nothing the
  signer did not approve reaches storage. Field names compare without regard
  to case, values exactly.
* The bucket is the one in the URL. A ``bucket`` condition is checked
  against it, and a ``bucket`` form field that names another bucket is
  refused, so form fields can never redirect an upload.
* Anything the policy says that this module does not understand (an unknown
  operator, a non-string value, a malformed range) makes the document invalid:
  a condition is never ignored.
* ``content-length-range`` cannot be checked before the file arrives; it is
  returned as bounds for the streaming upload to enforce.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from seglake.errors import S3Error
from seglake.protocol import sigv4

# A policy is a few hundred bytes; AWS caps the whole non-file part of a form
# at 20 KB, so a bigger document is refused before base64 or JSON decoding.
MAX_POLICY_BYTES: Final = 20 * 1024
MAX_CONDITIONS: Final = 128
# Form fields that are not themselves subject to conditions (AWS's rule).
EXEMPT_FIELDS: Final = frozenset({"policy", "x-amz-signature", "file"})
IGNORE_PREFIX: Final = "x-ignore-"
# starts-with on these fields applies to each comma-separated value (AWS's rule
# for Content-Type, which a form may send as a list).
_STARTS_WITH_LISTS: Final = frozenset({"content-type"})


@dataclass(frozen=True)
class Condition:
    op: str  # "eq" or "starts-with"
    field: str  # lowercase, without the "$"
    value: str

    def describe(self) -> str:
        return json.dumps([self.op, "$" + self.field, self.value])


@dataclass(frozen=True)
class PostPolicy:
    expiration: float  # seconds since the epoch
    conditions: tuple[Condition, ...]
    min_length: int
    max_length: int | None  # None: no content-length-range condition


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", message=f"Invalid Policy: {message}")


def _denied(message: str) -> S3Error:
    return S3Error("AccessDenied", message=f"Invalid according to Policy: {message}")


def parse_expiration(value: str) -> float:
    """``2030-01-01T00:00:00Z`` or ``2030-01-01T00:00:00.000Z`` → epoch seconds."""
    text = value.strip()
    if not text.endswith("Z") or "T" not in text:
        raise _invalid("expiration must be an ISO 8601 UTC time such as 2030-01-01T00:00:00Z")
    body = text[:-1]
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in body else "%Y-%m-%dT%H:%M:%S"
    try:
        when = datetime.strptime(body, fmt).replace(tzinfo=UTC)
    except ValueError:
        raise _invalid("expiration is not a valid ISO 8601 UTC time") from None
    return when.timestamp()


def _length(value: Any) -> int:
    # JSON numbers and numeric strings are both seen in the wild.
    if isinstance(value, bool):
        raise _invalid("content-length-range bounds must be integers")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise _invalid("content-length-range bounds must be integers")
    if number < 0 or number > 1 << 62:
        raise _invalid("content-length-range bounds are out of range")
    return number


def parse_policy(encoded: str) -> PostPolicy:
    """Decode and validate the base64 JSON policy of a POST form."""
    if len(encoded) > MAX_POLICY_BYTES * 4 // 3 + 4:
        raise _invalid("the policy document is too large")
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("the policy is not valid base64") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid("the policy is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("the policy must be a JSON object")
    unknown = set(doc) - {"expiration", "conditions"}
    if unknown:
        raise _invalid(f"unexpected policy element {sorted(unknown)[0]!r}")
    expiration = doc.get("expiration")
    if not isinstance(expiration, str):
        raise _invalid("the policy needs an expiration")
    conditions_doc = doc.get("conditions")
    if not isinstance(conditions_doc, list):
        raise _invalid("the policy needs a conditions list")
    if len(conditions_doc) > MAX_CONDITIONS:
        raise _invalid("the policy has too many conditions")
    conditions: list[Condition] = []
    min_length, max_length = 0, None
    for item in conditions_doc:
        if isinstance(item, dict):
            # {"field": "value"} is an exact match, one pair per object.
            if len(item) != 1:
                raise _invalid("an exact-match condition must name exactly one field")
            ((name, value),) = item.items()
            if not isinstance(name, str) or not isinstance(value, str):
                raise _invalid("an exact-match condition must map a field name to a string")
            field = name.lower().removeprefix("$")
            if not field:
                raise _invalid("a condition names an empty field")
            conditions.append(Condition("eq", field, value))
            continue
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            raise _invalid("each condition must be an object or a list")
        op = item[0].lower()
        if op == "content-length-range":
            if len(item) != 3:
                raise _invalid("content-length-range takes a minimum and a maximum")
            low, high = _length(item[1]), _length(item[2])
            if low > high:
                raise _invalid("content-length-range minimum is above its maximum")
            # Several ranges must all hold: their intersection.
            min_length = max(min_length, low)
            max_length = high if max_length is None else min(max_length, high)
            continue
        if op not in ("eq", "starts-with"):
            raise _invalid(f"unsupported condition operator {item[0]!r}")
        if len(item) != 3 or not isinstance(item[1], str) or not isinstance(item[2], str):
            raise _invalid(f"{op} takes a $field and a string value")
        if not item[1].startswith("$") or len(item[1]) < 2:
            raise _invalid(f"{op} must name a field as $name")
        conditions.append(Condition(op, item[1][1:].lower(), item[2]))
    if max_length is not None and min_length > max_length:
        raise _invalid("the content-length-range conditions cannot all hold")
    return PostPolicy(parse_expiration(expiration), tuple(conditions), min_length, max_length)


@dataclass(frozen=True)
class PostAuth:
    """A verified form signature and the policy it covers."""

    auth: sigv4.AuthContext
    policy: PostPolicy


def verify_signature(
    fields: Mapping[str, str],
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    *,
    region: str,
) -> PostAuth:
    """Check the SigV4 form signature over ``policy``, then parse the policy.

    ``fields`` are the form's non-file fields with lowercase names.
    """
    algorithm = fields.get("x-amz-algorithm")
    if algorithm is None:
        if "awsaccesskeyid" in fields or "signature" in fields:
            raise S3Error(
                "AccessDenied",
                message="Signature Version 2 POST forms are not supported by this server; "
                "sign them with AWS Signature Version 4 (AWS4-HMAC-SHA256).",
            )
        raise S3Error(
            "InvalidArgument",
            message="Bucket POST must contain a field named 'x-amz-algorithm'.",
            fields={"ArgumentName": "x-amz-algorithm"},
        )
    if algorithm != sigv4.ALGORITHM:
        raise S3Error(
            "InvalidArgument",
            message='x-amz-algorithm only supports "AWS4-HMAC-SHA256"',
            fields={"ArgumentName": "x-amz-algorithm", "ArgumentValue": algorithm[:64]},
        )
    for name in ("x-amz-credential", "x-amz-date", "x-amz-signature", "policy"):
        if name not in fields:
            raise S3Error(
                "InvalidArgument",
                message=f"Bucket POST must contain a field named '{name}'.",
                fields={"ArgumentName": name},
            )
    bad = "InvalidArgument"
    cred = sigv4._parse_credential(fields["x-amz-credential"], bad, "x-amz-credential")
    sigv4._check_region(cred, region, bad, "Error parsing the x-amz-credential field")
    amz_date = fields["x-amz-date"]
    epoch = sigv4._amz_date_epoch(amz_date)
    if epoch is None:
        raise S3Error(bad, message="x-amz-date must be in the form YYYYMMDDTHHMMSSZ")
    if cred.date != amz_date[:8]:
        raise S3Error(bad, message="Invalid credential date. Date is not the same as x-amz-date.")
    server_epoch = now.timestamp()
    if epoch - server_epoch > sigv4.MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed", message="x-amz-date is too far in the future.")
    signature = fields["x-amz-signature"]
    if not sigv4._is_signature(signature):
        raise S3Error(bad, message="x-amz-signature must be 64 lowercase hex characters.")
    secret = sigv4._lookup(lookup_secret, cred.access_key)
    key = sigv4.derive_signing_key(secret, cred.date, cred.region)
    expected = sigv4.sign(key, fields["policy"])
    if not hmac.compare_digest(expected, signature):
        raise S3Error("SignatureDoesNotMatch")
    policy = parse_policy(fields["policy"])
    if server_epoch > policy.expiration:
        raise _denied("Policy expired.")
    # The file is covered by no signature: it is as unsigned as a PUT with
    # UNSIGNED-PAYLOAD, and the server's switch for those applies.
    ctx = cred.context(amz_date, key, signature, sigv4.UNSIGNED_PAYLOAD, presigned=True)
    return PostAuth(ctx, policy)


def check_conditions(policy: PostPolicy, fields: Mapping[str, str], bucket: str) -> None:
    """Every condition holds and every sent field is covered by one.

    ``fields``: lowercase names → values as sent; ``bucket``: from the URL.
    Raises ``AccessDenied`` naming the first condition that fails.
    """
    sent_bucket = fields.get("bucket")
    if sent_bucket is not None and sent_bucket != bucket:
        raise S3Error(
            "InvalidArgument",
            message="The bucket form field does not match the bucket in the URL.",
            fields={"ArgumentName": "bucket"},
        )
    values = {**fields, "bucket": bucket}
    covered = {"bucket"}
    for cond in policy.conditions:
        covered.add(cond.field)
        actual = values.get(cond.field, "")
        if cond.op == "eq":
            ok = actual == cond.value
        elif cond.field in _STARTS_WITH_LISTS:
            # Content-Type may list several types, each of which must match.
            ok = all(p.strip().startswith(cond.value) for p in actual.split(","))
        else:
            ok = actual.startswith(cond.value)
        if not ok:
            raise _denied(f"Policy Condition failed: {cond.describe()}")
    for name in fields:
        if name in EXEMPT_FIELDS or name.startswith(IGNORE_PREFIX) or name in covered:
            continue
        raise _denied(f'Extra input fields: ["{name}"]')


def check_length(policy: PostPolicy, size: int) -> None:
    """The ``content-length-range`` conditions, once the file's size is known."""
    if size < policy.min_length:
        raise S3Error(
            "EntityTooSmall",
            fields={"ProposedSize": str(size), "MinSizeAllowed": str(policy.min_length)},
        )
    if policy.max_length is not None and size > policy.max_length:
        raise S3Error(
            "EntityTooLarge",
            fields={"ProposedSize": str(size), "MaxSizeAllowed": str(policy.max_length)},
        )
