"""The AWS policy grammar, as a table of evaluations (seglake/protocol/policy.py).

Every row states its expected answer and the AWS rule it comes from (the IAM
User Guide's condition operators, multi-value conditions, policy evaluation
logic and S3's "meaning of public"), so a reader can check the row against
the rule rather than against the code:

* missing key: a condition is false, except negated operators (true),
  ``…IfExists`` (true), ``Null`` (tests presence), ``ForAllValues:`` (true)
  and ``ForAnyValue:`` (false);
* several values of one key: OR; for negated operators: NOR; several keys or
  operators in one block: AND;
* an explicit Deny in any policy wins; Seglake's own rule on top: the key's
  policy is the ceiling, a bucket policy never widens a key (SPEC §5).

Condition rows are checked twice: on an Allow (allowed exactly when the
condition holds) and on a Deny next to an allow-all (denied exactly when it
holds).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from seglake.auth.canonical import canonical_id
from seglake.protocol.acl import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    FULL_CONTROL,
    GROUP,
    READ,
    READ_ACP,
    USER,
    WRITE_ACP,
    Acl,
    Grant,
    grants_permission,
    needed_permission,
)
from seglake.protocol.endpoints import ENDPOINT_BY_NAME
from seglake.protocol.policy import (
    ACCOUNT_ID,
    ALLOW,
    AUTH_HEADER,
    AUTH_POST,
    AUTH_QUERY,
    DENY,
    IMPLICIT_DENY,
    Policy,
    PolicyError,
    RequestContext,
    decide,
    decide_with_acl,
    parse_bucket_policy,
    parse_key_policy,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
EPOCH_NOW = int(NOW.timestamp())  # 1780315200
HEADERS = {
    "user-agent": "aws-cli/2.15 Python/3.12",
    "referer": "https://www.example.com/page",
    "x-amz-acl": "public-read",
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
}


def ctx(
    op: str = "GetObject",
    bucket: str = "demo",
    key: str = "photos/cat.jpg",
    **kw: Any,
) -> RequestContext:
    base: dict[str, Any] = {
        "principal": "alice", "source_ip": "198.51.100.23", "now": NOW,
        "secure_transport": False, "headers": HEADERS, "auth_type": AUTH_HEADER,
    }  # fmt: skip
    base.update(kw)
    ip = base.pop("source_ip")
    return RequestContext(
        operation=op, bucket=bucket, key=key,
        source_ip=ipaddress.ip_address(ip) if ip else None, **base,
    )  # fmt: skip


def listing(prefix: str | None = None, delimiter: str | None = None,
            max_keys: str | None = None, **kw: Any) -> RequestContext:  # fmt: skip
    return ctx("ListObjectsV2", key="", prefix=prefix, delimiter=delimiter, max_keys=max_keys, **kw)


def anon(**kw: Any) -> RequestContext:
    return ctx(principal=None, auth_type=None, **kw)


def aws(*statements: dict[str, Any], version: str = "2012-10-17") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


C = ctx()
ARN_ALICE = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"

# (condition block, request, does the condition hold, the rule)
CONDITIONS: list[tuple[dict[str, Any], RequestContext, bool, str]] = [
    # ---- StringEquals / StringNotEquals --------------------------------------
    ({"StringEquals": {"aws:UserAgent": "aws-cli/2.15 Python/3.12"}}, C, True, "exact match"),
    ({"StringEquals": {"aws:UserAgent": "AWS-CLI/2.15 Python/3.12"}}, C, False, "case-sensitive"),
    ({"StringEquals": {"aws:UserAgent": "aws-cli/2.15"}}, C, False, "no partial match"),
    ({"StringEquals": {"aws:UserAgent": ["curl/8", "aws-cli/2.15 Python/3.12"]}}, C, True,
     "values are OR"),
    ({"StringEquals": {"aws:UserAgent": "aws-cli/*"}}, C, False, "no wildcards in Equals"),
    ({"StringEquals": {"aws:Referer": "https://www.example.com/page"}}, C, True, "referer"),
    ({"StringEquals": {"aws:Referer": "https://evil.example/"}}, C, False, "referer differs"),
    ({"StringEquals": {"aws:Referer": "x"}}, ctx(headers={}), False, "missing key: false"),
    ({"StringEquals": {"aws:username": "alice"}}, C, True, "username of an IAM user"),
    ({"StringEquals": {"aws:username": "bob"}}, C, False, "other user"),
    ({"StringEquals": {"aws:username": "alice"}}, anon(), False, "anonymous: no username"),
    ({"StringEquals": {"aws:username": "test"}}, ctx(principal="test", admin=True), False,
     "account root has no username"),
    ({"StringEquals": {"aws:userid": "alice"}}, C, True, "userid of a key"),
    ({"StringEquals": {"aws:userid": "anonymous"}}, anon(), True, "anonymous userid"),
    ({"StringEquals": {"aws:userid": ACCOUNT_ID}}, ctx(principal="test", admin=True), True,
     "root userid is the account"),
    ({"StringEquals": {"aws:PrincipalType": "User"}}, C, True, "a key is a User"),
    ({"StringEquals": {"aws:PrincipalType": "Anonymous"}}, anon(), True, "anonymous type"),
    ({"StringEquals": {"aws:PrincipalType": "Account"}}, ctx(principal="test", admin=True),
     True, "the admin is the account"),
    ({"StringEquals": {"aws:PrincipalType": "User"}}, anon(), False, "anonymous is no User"),
    ({"StringEquals": {"aws:PrincipalAccount": ACCOUNT_ID}}, C, True, "principal account"),
    ({"StringEquals": {"aws:PrincipalAccount": ACCOUNT_ID}}, anon(), False,
     "anonymous: no account"),
    ({"StringEquals": {"s3:x-amz-acl": "public-read"}}, C, True, "x-amz-acl header"),
    ({"StringEquals": {"s3:x-amz-acl": "private"}}, C, False, "other acl"),
    ({"StringEquals": {"s3:x-amz-acl": "private"}}, ctx(headers={}), False, "no acl header"),
    ({"StringEquals": {"s3:x-amz-content-sha256": "UNSIGNED-PAYLOAD"}}, C, True,
     "payload hash header"),
    ({"StringEquals": {"s3:x-amz-server-side-encryption": "AES256"}}, C, False,
     "sse header absent: false"),
    ({"StringEquals": {"s3:x-amz-server-side-encryption": "AES256"}},
     ctx(headers={"x-amz-server-side-encryption": "AES256"}), True, "sse header present"),
    ({"StringEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}}, C, True, "SigV4"),
    ({"StringEquals": {"s3:signatureversion": "AWS"}}, C, False, "not SigV2"),
    ({"StringEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}}, anon(), False,
     "unsigned: no signature version"),
    ({"StringEquals": {"s3:authType": "REST-HEADER"}}, C, True, "header auth"),
    ({"StringEquals": {"s3:authType": "REST-QUERY-STRING"}}, ctx(auth_type=AUTH_QUERY), True,
     "presigned URL auth"),
    ({"StringEquals": {"s3:authType": "POST"}}, ctx(auth_type=AUTH_POST), True, "form auth"),
    ({"StringEquals": {"s3:authType": "REST-HEADER"}}, ctx(auth_type=AUTH_QUERY), False,
     "presigned is not header auth"),
    ({"StringEquals": {"s3:VersionId": "v42"}}, ctx(version_id="v42"), True, "version id"),
    ({"StringEquals": {"s3:VersionId": "v42"}}, C, False, "no version id: false"),
    ({"StringEquals": {"s3:prefix": "home/"}}, listing("home/"), True, "listing prefix"),
    ({"StringEquals": {"s3:prefix": ["", "home/"]}}, listing(), True,
     "no prefix parameter is the empty prefix"),
    ({"StringEquals": {"s3:prefix": "home/"}}, C, False, "prefix only on listings"),
    ({"StringEquals": {"s3:delimiter": "/"}}, listing(delimiter="/"), True, "delimiter"),
    ({"StringEquals": {"s3:delimiter": "/"}}, listing(), False, "no delimiter: false"),
    ({"StringEquals": {"aws:RequestedRegion": "us-east-1"}}, C, True, "region"),
    ({"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}, C, False,
     "no VPC endpoint: missing key"),
    ({"StringNotEquals": {"aws:UserAgent": "curl/8"}}, C, True, "negated: differs"),
    ({"StringNotEquals": {"aws:UserAgent": "aws-cli/2.15 Python/3.12"}}, C, False,
     "negated: equals"),
    ({"StringNotEquals": {"aws:UserAgent": ["curl/8", "aws-cli/2.15 Python/3.12"]}}, C, False,
     "negated values are NOR"),
    ({"StringNotEquals": {"aws:UserAgent": ["curl/8", "wget/1"]}}, C, True,
     "NOR: none matches"),
    ({"StringNotEquals": {"aws:Referer": "x"}}, ctx(headers={}), True,
     "negated on a missing key: true"),
    ({"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}, C, True,
     "AWS's VPC-endpoint deny: missing key matches"),
    ({"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}, C, True,
     "require-encryption deny: missing header matches"),
    ({"StringNotEquals": {"s3:x-amz-acl": "public-read"}}, C, False, "negated: same acl"),
    ({"StringNotEquals": {"aws:username": "alice"}}, anon(), True,
     "anonymous has no username: negated true"),
    # ---- IgnoreCase -----------------------------------------------------------
    ({"StringEqualsIgnoreCase": {"aws:UserAgent": "AWS-CLI/2.15 PYTHON/3.12"}}, C, True,
     "case ignored"),
    ({"StringEqualsIgnoreCase": {"aws:UserAgent": "aws-cli/2.16 python/3.12"}}, C, False,
     "still exact"),
    ({"StringEqualsIgnoreCase": {"s3:x-amz-acl": "PUBLIC-READ"}}, C, True, "acl any case"),
    ({"StringEqualsIgnoreCase": {"aws:Referer": "x"}}, ctx(headers={}), False, "missing: false"),
    ({"StringNotEqualsIgnoreCase": {"s3:x-amz-acl": "Public-Read"}}, C, False,
     "negated, case ignored"),
    ({"StringNotEqualsIgnoreCase": {"s3:x-amz-acl": "private"}}, C, True, "negated differs"),
    ({"StringNotEqualsIgnoreCase": {"aws:Referer": "x"}}, ctx(headers={}), True,
     "negated missing: true"),
    # ---- StringLike / StringNotLike --------------------------------------------
    ({"StringLike": {"aws:UserAgent": "aws-cli/*"}}, C, True, "* any run"),
    ({"StringLike": {"aws:UserAgent": "*Python*"}}, C, True, "* on both sides"),
    ({"StringLike": {"aws:UserAgent": "aws-cli/2.1?*"}}, C, True, "? one character"),
    ({"StringLike": {"aws:UserAgent": "aws-cli/2.1?"}}, C, False, "? exactly one"),
    ({"StringLike": {"aws:UserAgent": "AWS-CLI/*"}}, C, False, "Like is case-sensitive"),
    ({"StringLike": {"aws:Referer": ["https://www.example.com/*", "https://example.com/*"]}},
     C, True, "AWS referer example: OR of patterns"),
    ({"StringLike": {"aws:Referer": "https://example.com/*"}}, C, False, "other site"),
    ({"StringLike": {"aws:Referer": "*"}}, ctx(headers={}), False, "* needs the key present"),
    ({"StringLike": {"s3:prefix": "home/*"}}, listing("home/alice/"), True, "prefix pattern"),
    ({"StringLike": {"s3:prefix": "home/*"}}, listing("photos/"), False, "prefix outside"),
    ({"StringLike": {"s3:prefix": "home/*"}}, listing(), False, "empty prefix outside"),
    ({"StringLike": {"s3:prefix": "*"}}, C, False, "no prefix key on GetObject"),
    ({"StringNotLike": {"aws:UserAgent": "curl/*"}}, C, True, "negated pattern differs"),
    ({"StringNotLike": {"aws:UserAgent": "aws-cli/*"}}, C, False, "negated pattern matches"),
    ({"StringNotLike": {"aws:UserAgent": ["curl/*", "aws-*"]}}, C, False, "negated NOR"),
    ({"StringNotLike": {"s3:prefix": "home/*"}}, C, True, "negated on a missing key: true"),
    ({"StringNotLike": {"s3:prefix": "home/*"}}, listing("photos/"), True, "negated outside"),
    # ---- Numeric ----------------------------------------------------------------
    ({"NumericEquals": {"s3:max-keys": "100"}}, listing(max_keys="100"), True, "equal"),
    ({"NumericEquals": {"s3:max-keys": "100.0"}}, listing(max_keys="100"), True,
     "compared as numbers"),
    ({"NumericEquals": {"s3:max-keys": 100}}, listing(max_keys="100"), True,
     "an unquoted JSON number"),
    ({"NumericEquals": {"s3:max-keys": "10"}}, listing(max_keys="100"), False, "not equal"),
    ({"NumericEquals": {"s3:max-keys": ["10", "100"]}}, listing(max_keys="100"), True, "OR"),
    ({"NumericEquals": {"s3:max-keys": "100"}}, listing(), False, "missing: false"),
    ({"NumericNotEquals": {"s3:max-keys": "10"}}, listing(max_keys="100"), True, "differs"),
    ({"NumericNotEquals": {"s3:max-keys": "100"}}, listing(max_keys="100"), False, "same"),
    ({"NumericNotEquals": {"s3:max-keys": ["10", "100"]}}, listing(max_keys="100"), False,
     "negated NOR"),
    ({"NumericNotEquals": {"s3:max-keys": "10"}}, listing(), True, "negated missing: true"),
    ({"NumericLessThan": {"s3:max-keys": "1000"}}, listing(max_keys="100"), True, "100 < 1000"),
    ({"NumericLessThan": {"s3:max-keys": "100"}}, listing(max_keys="100"), False,
     "strictly less"),
    ({"NumericLessThan": {"s3:max-keys": "1000"}}, listing(), False, "missing: false"),
    ({"NumericLessThanEquals": {"s3:max-keys": "100"}}, listing(max_keys="100"), True, "<="),
    ({"NumericLessThanEquals": {"s3:max-keys": "99"}}, listing(max_keys="100"), False, "> 99"),
    ({"NumericGreaterThan": {"s3:max-keys": "10"}}, listing(max_keys="100"), True, "100 > 10"),
    ({"NumericGreaterThan": {"s3:max-keys": "100"}}, listing(max_keys="100"), False,
     "strictly greater"),
    ({"NumericGreaterThanEquals": {"s3:max-keys": "100"}}, listing(max_keys="100"), True, ">="),
    ({"NumericGreaterThanEquals": {"s3:max-keys": "101"}}, listing(max_keys="100"), False,
     "< 101"),
    ({"NumericGreaterThan": {"aws:EpochTime": EPOCH_NOW - 60}}, C, True,
     "epoch time is a number"),
    ({"NumericLessThan": {"aws:EpochTime": EPOCH_NOW - 60}}, C, False, "epoch later"),
    ({"NumericLessThan": {"s3:max-keys": "1000"}}, C, False, "no max-keys on GetObject"),
    # ---- Date -------------------------------------------------------------------
    ({"DateEquals": {"aws:CurrentTime": "2026-06-01T12:00:00Z"}}, C, True, "same instant"),
    ({"DateEquals": {"aws:CurrentTime": "2026-06-01T14:00:00+02:00"}}, C, True,
     "same instant, other zone"),
    ({"DateEquals": {"aws:CurrentTime": "2026-06-01T12:00:01Z"}}, C, False, "a second later"),
    ({"DateNotEquals": {"aws:CurrentTime": "2026-06-01T12:00:01Z"}}, C, True, "differs"),
    ({"DateNotEquals": {"aws:CurrentTime": "2026-06-01T12:00:00Z"}}, C, False, "same"),
    ({"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}, C, True, "before 2027"),
    ({"DateLessThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, C, False, "after 2026"),
    ({"DateLessThan": {"aws:CurrentTime": "2026-06-01T12:00:00Z"}}, C, False, "strictly"),
    ({"DateLessThanEquals": {"aws:CurrentTime": "2026-06-01T12:00:00Z"}}, C, True, "<="),
    ({"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, C, True, "after"),
    ({"DateGreaterThan": {"aws:CurrentTime": "2026-06-01T12:00:00Z"}}, C, False, "strictly"),
    ({"DateGreaterThanEquals": {"aws:CurrentTime": "2026-06-01T12:00:00Z"}}, C, True, ">="),
    ({"DateGreaterThan": {"aws:CurrentTime": "2026-05-31"}}, C, True, "a bare date"),
    ({"DateLessThan": {"aws:CurrentTime": str(EPOCH_NOW + 1)}}, C, True,
     "policy value in epoch seconds"),
    ({"DateGreaterThan": {"aws:EpochTime": "2026-01-01T00:00:00Z"}}, C, True,
     "epoch key against an ISO value"),
    ({"DateLessThan": {"aws:EpochTime": EPOCH_NOW}}, C, False, "epoch vs epoch, equal"),
    ({"DateEquals": {"aws:EpochTime": EPOCH_NOW}}, C, True, "epoch equal"),
    ({"DateLessThan": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}}, C, False,
     "no session token: missing key"),
    ({"DateNotEquals": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}}, C, True,
     "negated on a missing key"),
    ({"DateGreaterThan": {"s3:object-lock-retain-until-date": "2026-01-01T00:00:00Z"}}, C,
     False, "no Object Lock yet: missing key"),
    # ---- Bool -------------------------------------------------------------------
    ({"Bool": {"aws:SecureTransport": "true"}}, ctx(secure_transport=True), True, "https"),
    ({"Bool": {"aws:SecureTransport": "true"}}, C, False, "plain http"),
    ({"Bool": {"aws:SecureTransport": "false"}}, C, True, "AWS's deny-http example"),
    ({"Bool": {"aws:SecureTransport": False}}, C, True, "an unquoted JSON boolean"),
    ({"Bool": {"aws:SecureTransport": "TRUE"}}, ctx(secure_transport=True), True,
     "boolean values in any case"),
    ({"Bool": {"aws:MultiFactorAuthPresent": "true"}}, C, False, "no MFA: missing key"),
    ({"Bool": {"aws:MultiFactorAuthPresent": "false"}}, C, False,
     "missing key is not false either"),
    ({"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}, C, True,
     "AWS's MFA deny: IfExists on a missing key"),
    ({"BoolIfExists": {"aws:SecureTransport": "true"}}, C, False,
     "IfExists on a present key compares"),
    # ---- Binary -----------------------------------------------------------------
    ({"BinaryEquals": {"aws:UserAgent": b64("aws-cli/2.15 Python/3.12")}}, C, True,
     "byte for byte against base64"),
    ({"BinaryEquals": {"aws:UserAgent": b64("aws-cli/2.15")}}, C, False, "bytes differ"),
    ({"BinaryEquals": {"aws:Referer": b64("x")}}, ctx(headers={}), False, "missing: false"),
    ({"BinaryEqualsIfExists": {"aws:Referer": b64("x")}}, ctx(headers={}), True,
     "IfExists missing: true"),
    # ---- IP address ---------------------------------------------------------------
    ({"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}, C, True, "inside the CIDR"),
    ({"IpAddress": {"aws:SourceIp": "198.51.100.23/32"}}, C, True, "a /32"),
    ({"IpAddress": {"aws:SourceIp": "198.51.100.23"}}, C, True, "a bare address"),
    ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, C, False, "outside"),
    ({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "198.51.0.0/16"]}}, C, True, "OR"),
    ({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, ctx(source_ip="2001:db8::5"), True,
     "IPv6 CIDR"),
    ({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, C, False, "IPv4 not in an IPv6 block"),
    ({"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}, ctx(source_ip=None), False,
     "unknown client address: missing key"),
    ({"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}}, C, False, "negated inside"),
    ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, C, True, "negated outside"),
    ({"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24", "198.51.100.0/24"]}}, C, False,
     "negated NOR"),
    ({"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}}, ctx(source_ip=None), True,
     "negated missing: true"),
    ({"IpAddress": {"aws:SourceIp": "198.51.100.0/24"},
      "NotIpAddress": {"aws:SourceIp": "198.51.100.23/32"}}, C, False,
     "AWS's IP example: allow a range but one address (AND)"),
    ({"IpAddress": {"aws:SourceIp": "198.51.100.0/24"},
      "NotIpAddress": {"aws:SourceIp": "198.51.100.188/32"}}, C, True,
     "AWS's IP example, another address"),
    ({"IpAddressIfExists": {"aws:SourceIp": "203.0.113.0/24"}}, ctx(source_ip=None), True,
     "IfExists missing"),
    ({"IpAddress": {"aws:VpcSourceIp": "203.0.113.0/24"}}, C, False, "no VPC: missing key"),
    # ---- ARN ----------------------------------------------------------------------
    ({"ArnEquals": {"aws:PrincipalArn": ARN_ALICE}}, C, True, "a key's ARN"),
    ({"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT_ID}:user/bob"}}, C, False,
     "another key"),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}}, C, True, "wildcard fields"),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/al?ce"}}, C, True, "? in a field"),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}, C, False, "not a role"),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:s3:::*:user/alice"}}, C, False,
     "fields compared one by one"),
    ({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::*:user/alice"}}, C, True,
     "ArnEquals takes wildcards too"),
    ({"ArnLike": {"aws:PrincipalArn": "*"}}, C, True, "* is any ARN"),
    ({"ArnLike": {"aws:PrincipalArn": "*"}}, anon(), False, "anonymous: no ARN"),
    ({"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT_ID}:root"}},
     ctx(principal="test", admin=True), True, "the admin is the account root"),
    ({"ArnNotEquals": {"aws:PrincipalArn": ARN_ALICE}}, C, False, "negated same"),
    ({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/b*"}}, C, True, "negated other"),
    ({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}}, anon(), True,
     "negated missing: true"),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:cloudfront::*:distribution/*"}}, C, False,
     "no service caller: missing key"),
    ({"ArnNotLike": {"aws:SourceArn": "arn:aws:cloudfront::*:distribution/*"}}, C, True,
     "negated missing"),
    # ---- Null -------------------------------------------------------------------
    ({"Null": {"s3:x-amz-server-side-encryption": "true"}}, C, True, "header absent"),
    ({"Null": {"s3:x-amz-server-side-encryption": "false"}}, C, False, "absent is not present"),
    ({"Null": {"s3:x-amz-acl": "false"}}, C, True, "header present"),
    ({"Null": {"s3:x-amz-acl": "true"}}, C, False, "present is not absent"),
    ({"Null": {"s3:x-amz-acl": True}}, C, False, "unquoted boolean"),
    ({"Null": {"aws:MultiFactorAuthAge": "true"}}, C, True, "long-term keys: no MFA age"),
    ({"Null": {"aws:username": "true"}}, anon(), True, "anonymous: no username"),
    ({"Null": {"aws:username": "false"}}, C, True, "a key has a username"),
    ({"Null": {"s3:ExistingObjectTag/team": "true"}}, C, True, "no tags yet: absent"),
    ({"Null": {"s3:prefix": "false"}}, listing(), True, "listing always has s3:prefix"),
    # ---- …IfExists ------------------------------------------------------------------
    ({"StringEqualsIfExists": {"s3:x-amz-server-side-encryption": "AES256"}}, C, True,
     "missing: IfExists true"),
    ({"StringEqualsIfExists": {"s3:x-amz-acl": "private"}}, C, False, "present: compares"),
    ({"StringEqualsIfExists": {"s3:x-amz-acl": "public-read"}}, C, True, "present, equal"),
    ({"StringNotEqualsIfExists": {"s3:x-amz-acl": "public-read"}}, C, False,
     "present, negated same"),
    ({"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "AES256"}}, C, True,
     "missing, negated IfExists"),
    ({"StringLikeIfExists": {"aws:Referer": "https://example.com/*"}}, ctx(headers={}), True,
     "missing"),
    ({"StringLikeIfExists": {"aws:Referer": "https://example.com/*"}}, C, False,
     "present, no match"),
    ({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, listing(), True, "missing"),
    ({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, listing(max_keys="100"), False,
     "present, 100 >= 10"),
    ({"DateLessThanIfExists": {"aws:TokenIssueTime": "2020-01-01T00:00:00Z"}}, C, True,
     "missing"),
    ({"DateGreaterThanIfExists": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}, C, False,
     "present, compares"),
    ({"ArnLikeIfExists": {"aws:SourceArn": "arn:aws:sns:*:*:*"}}, C, True, "missing"),
    ({"ArnEqualsIfExists": {"aws:PrincipalArn": "arn:aws:iam::*:user/bob"}}, C, False,
     "present, other ARN"),
    ({"IpAddressIfExists": {"aws:SourceIp": "203.0.113.0/24"}}, C, False, "present, outside"),
    # ---- set operators ------------------------------------------------------------
    ({"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "env"]}}, C, True,
     "ForAllValues: no tag keys (missing set) is true"),
    ({"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["team", "env"]}}, C, False,
     "ForAnyValue: missing set is false"),
    ({"ForAnyValue:StringNotEquals": {"s3:RequestObjectTagKeys": ["team"]}}, C, False,
     "ForAnyValue, negated: missing set still false"),
    ({"ForAllValues:StringNotEquals": {"s3:RequestObjectTagKeys": ["team"]}}, C, True,
     "ForAllValues, negated: missing set true"),
    ({"ForAllValues:StringLike": {"s3:RequestObjectTagKeys": "*"}}, C, True, "missing set"),
    ({"ForAnyValue:StringEqualsIfExists": {"s3:RequestObjectTagKeys": ["team"]}}, C, True,
     "IfExists wins over ForAnyValue's missing-is-false"),
    ({"ForAnyValue:StringEquals": {"aws:UserAgent": ["x", "aws-cli/2.15 Python/3.12"]}}, C,
     True, "a single value is a set of one: any matches"),
    ({"ForAnyValue:StringEquals": {"aws:UserAgent": ["x", "y"]}}, C, False, "none matches"),
    ({"ForAllValues:StringEquals": {"aws:UserAgent": ["x", "aws-cli/2.15 Python/3.12"]}}, C,
     True, "the one value is in the set"),
    ({"ForAllValues:StringEquals": {"aws:UserAgent": ["x", "y"]}}, C, False,
     "the one value is not in the set"),
    ({"ForAllValues:StringLike": {"aws:UserAgent": "aws-*"}}, C, True, "all match the pattern"),
    ({"ForAnyValue:StringLike": {"aws:UserAgent": "curl*"}}, C, False, "none matches"),
    ({"ForAnyValue:StringNotEquals": {"aws:UserAgent": "curl/8"}}, C, True,
     "some value differs from all listed"),
    ({"ForAnyValue:IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}, C, True, "IP in a set"),
    ({"ForAllValues:NumericLessThan": {"s3:max-keys": "1000"}}, listing(max_keys="5"), True,
     "numeric, every value"),
    ({"ForAllValues:NumericLessThan": {"s3:max-keys": "1000"}}, listing(), True,
     "ForAllValues: missing true"),
    ({"ForAnyValue:NumericLessThan": {"s3:max-keys": "1000"}}, listing(), False,
     "ForAnyValue: missing false"),
    ({"ForAllValues:StringEquals": {"aws:Referer": "x"}}, ctx(headers={}), True,
     "ForAllValues on a missing single-valued key"),
    # ---- unknown keys never match ----------------------------------------------------
    ({"StringEquals": {"s3:NoSuchKey": "x"}}, C, False, "unknown key: not a match"),
    ({"StringNotEquals": {"s3:NoSuchKey": "x"}}, C, False, "unknown key, even negated"),
    ({"StringEqualsIfExists": {"acme:Thing": "x"}}, C, False, "unknown key, even IfExists"),
    ({"Null": {"acme:Thing": "true"}}, C, False, "unknown key, even Null"),
    ({"ForAllValues:StringEquals": {"acme:Thing": "x"}}, C, False,
     "unknown key, even ForAllValues"),
    # ---- several keys and operators: AND --------------------------------------------
    ({"StringEquals": {"s3:x-amz-acl": "public-read", "aws:UserAgent": "aws-cli/2.15 Python/3.12"}},
     C, True, "two keys, both hold"),
    ({"StringEquals": {"s3:x-amz-acl": "public-read", "aws:UserAgent": "curl/8"}}, C, False,
     "two keys: AND"),
    ({"StringEquals": {"s3:x-amz-acl": "public-read"}, "Bool": {"aws:SecureTransport": "true"}},
     C, False, "two operators: AND"),
    ({"StringEquals": {"s3:x-amz-acl": "public-read"}, "Bool": {"aws:SecureTransport": "true"}},
     ctx(secure_transport=True), True, "two operators, both hold"),
    ({"StringLike": {"s3:prefix": "home/*"}, "StringEquals": {"s3:delimiter": "/"},
      "NumericLessThanEquals": {"s3:max-keys": "1000"}},
     listing("home/a/", "/", "100"), True, "three operators on a listing"),
    ({"StringLike": {"s3:prefix": "home/*"}, "StringEquals": {"s3:delimiter": "/"}},
     listing("home/a/"), False, "the delimiter is missing"),
    # ---- policy variables (2012-10-17) ----------------------------------------------------
    ({"StringLike": {"s3:prefix": "home/${aws:username}/*"}}, listing("home/alice/docs/"), True,
     "${aws:username} substituted"),
    ({"StringLike": {"s3:prefix": "home/${aws:username}/*"}}, listing("home/bob/"), False,
     "another user's home"),
    ({"StringLike": {"s3:prefix": "home/${aws:username}/*"}},
     listing("home/alice/", principal=None, auth_type=None), False,
     "variable of a missing key: no match"),
    ({"StringLike": {"s3:prefix": "home/${aws:username, 'guest'}/*"}},
     listing("home/guest/", principal=None, auth_type=None), True, "variable default"),
    ({"StringEquals": {"aws:UserAgent": "${aws:userid}"}}, ctx(headers={"user-agent": "alice"}),
     True, "variable in StringEquals"),
    ({"StringLike": {"s3:prefix": "a${*}b"}}, listing("a*b"), True, "${*} is a literal *"),
    ({"StringLike": {"s3:prefix": "a${*}b"}}, listing("axyb"), False, "${*} is no wildcard"),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/${aws:username}"}}, C, True,
     "variable in an ARN"),
    # ---- Seglake's own header key ----------------------------------------------------
    ({"StringEquals": {"seglake:RequestHeader/X-Tenant": "alpha"}},
     ctx(headers={"x-tenant": "alpha"}), True, "header present"),
    ({"StringNotEquals": {"seglake:RequestHeader/X-Tenant": "alpha"}}, C, True,
     "header missing, negated"),
]  # fmt: skip


def _allow(condition: dict[str, Any]) -> Policy:
    return parse_key_policy(
        aws({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": condition})
    )


def _deny(condition: dict[str, Any]) -> Policy:
    return parse_key_policy(
        aws(
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": condition},
        )
    )


@pytest.mark.parametrize(
    ("condition", "c", "holds", "rule"), CONDITIONS, ids=[r[3] for r in CONDITIONS]
)
def test_condition_on_allow(
    condition: dict[str, Any], c: RequestContext, holds: bool, rule: str
) -> None:
    assert decide(c, _allow(condition), None) == (ALLOW if holds else IMPLICIT_DENY), rule


@pytest.mark.parametrize(
    ("condition", "c", "holds", "rule"), CONDITIONS, ids=[r[3] for r in CONDITIONS]
)
def test_condition_on_deny(
    condition: dict[str, Any], c: RequestContext, holds: bool, rule: str
) -> None:
    assert decide(c, _deny(condition), None) == (DENY if holds else ALLOW), rule


def test_version_2008_has_no_policy_variables() -> None:
    """Policy variables exist only in Version 2012-10-17: in 2008-10-17
    ``${aws:username}`` is literal text."""
    stmt = {"Effect": "Allow", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::demo/home/${aws:username}/*"}  # fmt: skip
    old = parse_key_policy(aws(stmt, version="2008-10-17"))
    assert decide(ctx(key="home/alice/x"), old, None) == IMPLICIT_DENY
    assert decide(ctx(key="home/${aws:username}/x"), old, None) == ALLOW
    new = parse_key_policy(aws(stmt))
    assert decide(ctx(key="home/alice/x"), new, None) == ALLOW
    assert decide(ctx(key="home/bob/x", principal="bob"), new, None) == ALLOW
    assert decide(ctx(key="home/alice/x", principal="bob"), new, None) == IMPLICIT_DENY


# ---- statements: Not*, principals, resources, deny precedence, ceiling -------------

EVERYTHING = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}


def _key(*statements: dict[str, Any]) -> Policy:
    return parse_key_policy(aws(*statements))


def _bucket(*statements: dict[str, Any], bucket: str = "demo") -> Policy:
    return parse_bucket_policy(aws(*statements), bucket)


# (key policy statements, request, expected, rule)
KEY_CASES: list[tuple[list[dict[str, Any]], RequestContext, str, str]] = [
    # NotAction
    ([{"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"}], C, ALLOW,
     "NotAction: every action but those listed"),
    ([{"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"}], ctx("DeleteObject"),
     IMPLICIT_DENY, "NotAction: the listed action is not granted"),
    ([{"Effect": "Allow", "NotAction": ["s3:Delete*", "s3:Put*"], "Resource": "*"}],
     ctx("PutObject"), IMPLICIT_DENY, "NotAction with wildcards"),
    ([{"Effect": "Allow", "NotAction": ["s3:Delete*", "s3:Put*"], "Resource": "*"}],
     listing(), ALLOW, "NotAction: listing is not excluded"),
    ([EVERYTHING, {"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"}], C, ALLOW,
     "Deny NotAction: the excluded action stays allowed"),
    ([EVERYTHING, {"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"}],
     ctx("PutObject"), DENY, "Deny NotAction: every other action denied"),
    ([EVERYTHING, {"Effect": "Deny", "NotAction": "s3:Get*", "Resource": "*"}],
     ctx("HeadObject"), ALLOW, "HeadObject is s3:GetObject"),
    # NotResource
    ([{"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::demo/secret/*"}],
     C, ALLOW, "NotResource: every resource but those"),
    ([{"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::demo/secret/*"}],
     ctx(key="secret/x"), IMPLICIT_DENY, "NotResource: the listed one is not granted"),
    ([EVERYTHING, {"Effect": "Deny", "Action": "s3:*",
                   "NotResource": ["arn:aws:s3:::demo", "arn:aws:s3:::demo/*"]}],
     ctx(bucket="other"), DENY, "Deny NotResource: confine a key to one bucket"),
    ([EVERYTHING, {"Effect": "Deny", "Action": "s3:*",
                   "NotResource": ["arn:aws:s3:::demo", "arn:aws:s3:::demo/*"]}],
     C, ALLOW, "inside the bucket: not denied"),
    ([EVERYTHING, {"Effect": "Deny", "Action": "s3:*",
                   "NotResource": ["arn:aws:s3:::demo", "arn:aws:s3:::demo/*"]}],
     ctx("ListBuckets", bucket="", key=""), DENY, "the service is outside the bucket too"),
    ([{"Effect": "Allow", "NotAction": "s3:PutObject", "NotResource": "arn:aws:s3:::demo/x"}],
     ctx(key="y"), ALLOW, "NotAction and NotResource together"),
    # Resources
    ([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}], C, ALLOW,
     "arn:aws:s3:::* is every bucket and object"),
    ([{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::demo"}], C, IMPLICIT_DENY,
     "the bucket ARN is not its objects"),
    ([{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::demo"}], listing(), ALLOW,
     "the bucket ARN covers listing"),
    ([{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::demo/*"}], listing(),
     IMPLICIT_DENY, "objects are not the bucket"),
    ([{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::d?mo/photos/*.jpg"}], C,
     ALLOW, "wildcards in a resource"),
    ([{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::other/*"}], C,
     IMPLICIT_DENY, "another bucket's objects"),
    # Actions
    ([{"Effect": "Allow", "Action": "s3:get*", "Resource": "*"}], C, ALLOW,
     "action names are case-insensitive"),
    ([{"Effect": "Allow", "Action": "s3:*Object", "Resource": "*"}], ctx("PutObject"), ALLOW,
     "wildcard in the middle"),
    ([{"Effect": "Allow", "Action": "s3:Get?bject", "Resource": "*"}], C, ALLOW, "? in action"),
    ([{"Effect": "Allow", "Action": "*", "Resource": "*"}], ctx("DeleteBucket", key=""), ALLOW,
     "* is every action"),
    ([{"Effect": "Allow", "Action": "s3:GetObjectVersionTorrent", "Resource": "*"}], C,
     IMPLICIT_DENY, "an AWS action Seglake never performs is accepted, never matches"),
    # Deny precedence
    ([EVERYTHING, {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}], C, DENY,
     "explicit deny beats allow"),
    ([{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}, EVERYTHING], C, DENY,
     "whatever the order"),
    ([{"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"}], C, IMPLICIT_DENY,
     "no allow: implicit deny"),
    ([], C, IMPLICIT_DENY, "nothing allowed by default"),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "c", "expected", "rule"), KEY_CASES,
                         ids=[r[3] for r in KEY_CASES])  # fmt: skip
def test_key_policy_statements(
    statements: list[dict[str, Any]], c: RequestContext, expected: str, rule: str
) -> None:
    policy = _key(*statements) if statements else Policy((), "")
    assert decide(c, policy, None) == expected, rule


DEMO_OBJECTS = "arn:aws:s3:::demo/*"
RW = parse_key_policy("rw")
RO = parse_key_policy("ro")

# (bucket policy statements, key policy, request, expected, rule)
BUCKET_CASES: list[tuple[list[dict[str, Any]], Policy, RequestContext, str, str]] = [
    # the ceiling: a bucket policy never widens a key
    ([{"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:PutObject",
       "Resource": DEMO_OBJECTS}], RO, ctx("PutObject", principal="bob"), IMPLICIT_DENY,
     "ceiling: bucket allow does not lift an ro key"),
    ([{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": DEMO_OBJECTS}], RO,
     ctx("DeleteObject"), IMPLICIT_DENY, "ceiling: not even Principal *"),
    ([{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": DEMO_OBJECTS}],
     _key({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}), C, IMPLICIT_DENY,
     "ceiling: the key's own policy must allow the action"),
    ([], RO, C, ALLOW, "no bucket policy: the key's policy decides"),
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": DEMO_OBJECTS}],
     RW, C, DENY, "bucket deny narrows an rw key"),
    ([{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
       "Resource": DEMO_OBJECTS}], RW, C, DENY, '{"AWS": "*"} is everyone'),
    # principals
    ([{"Effect": "Deny", "Principal": {"AWS": "alice"}, "Action": "s3:*",
       "Resource": DEMO_OBJECTS}], RW, C, DENY, "bare access key id"),
    ([{"Effect": "Deny", "Principal": {"AWS": "bob"}, "Action": "s3:*",
       "Resource": DEMO_OBJECTS}], RW, C, ALLOW, "another key is not alice"),
    ([{"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/alice"},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, C, DENY, "a key's user ARN"),
    ([{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, C, DENY,
     "one account: an ARN's account is not compared"),
    ([{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:user/team/alice"},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, C, DENY, "a user path"),
    ([{"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, C, DENY,
     "the account root names every key"),
    ([{"Effect": "Deny", "Principal": {"AWS": ACCOUNT_ID}, "Action": "s3:*",
       "Resource": DEMO_OBJECTS}], RW, C, DENY, "a bare account id too"),
    ([{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:role/r"},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, C, ALLOW, "roles name no key"),
    ([{"Effect": "Deny", "Principal": {"Service": "cloudfront.amazonaws.com"},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, C, ALLOW, "services name no key"),
    ([{"Effect": "Deny", "Principal": {"CanonicalUser": "alice"}, "Action": "s3:*",
       "Resource": DEMO_OBJECTS}], RW, C, DENY, "canonical id of a key"),
    # NotPrincipal
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": "alice"}, "Action": "s3:*",
       "Resource": DEMO_OBJECTS}], RW, C, ALLOW, "NotPrincipal: the named key is exempt"),
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": "alice"}, "Action": "s3:*",
       "Resource": DEMO_OBJECTS}], RW, ctx(principal="bob"), DENY,
     "NotPrincipal: every other key denied"),
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": ["alice", f"arn:aws:iam::{ACCOUNT_ID}:user/carol"]},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, ctx(principal="carol"), ALLOW,
     "NotPrincipal list, ARN form"),
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": ["alice", f"arn:aws:iam::{ACCOUNT_ID}:root"]},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, ctx(principal="bob"), DENY,
     "NotPrincipal: naming the account exempts its root, not every key"),
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": ["alice", f"arn:aws:iam::{ACCOUNT_ID}:root"]},
       "Action": "s3:*", "Resource": DEMO_OBJECTS}], RW, ctx(principal="alice"), ALLOW,
     "NotPrincipal: user and account named, the user is exempt"),
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": "alice"}, "Action": "s3:*",
       "Resource": DEMO_OBJECTS}], RW, ctx(principal="test", admin=True), DENY,
     "NotPrincipal: the unnamed account root is denied"),
    # resources of other buckets are ignored, not refused
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
       "Resource": ["arn:aws:s3:::other/*", DEMO_OBJECTS]}], RW, C, DENY,
     "its own bucket's resource applies"),
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
       "Resource": "arn:aws:s3:::other/*"}], RW, C, ALLOW, "another bucket's never matches"),
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
       "Resource": "arn:aws:s3:::*"}], RW, C, DENY, "arn:aws:s3:::* covers this bucket"),
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}], RW, C,
     DENY, "* covers this bucket"),
    # conditions in bucket policies
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": DEMO_OBJECTS,
       "Condition": {"Bool": {"aws:SecureTransport": "false"}}}], RW, C, DENY,
     "AWS's deny-insecure-transport example"),
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": DEMO_OBJECTS,
       "Condition": {"Bool": {"aws:SecureTransport": "false"}}}], RW,
     ctx(secure_transport=True), ALLOW, "https passes"),
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": DEMO_OBJECTS,
       "Condition": {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}}], RW, C, DENY,
     "IP allow-list as a deny"),
    ([{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": DEMO_OBJECTS,
       "Condition": {"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}}}], RW, C, ALLOW,
     "inside the allowed range"),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "key_policy", "c", "expected", "rule"), BUCKET_CASES,
                         ids=[r[4] for r in BUCKET_CASES])  # fmt: skip
def test_bucket_policy_statements(
    statements: list[dict[str, Any]], key_policy: Policy, c: RequestContext, expected: str,
    rule: str,
) -> None:  # fmt: skip
    bucket = _bucket(*statements) if statements else None
    assert decide(c, key_policy, bucket) == expected, rule


PUBLIC_READ = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
               "Resource": DEMO_OBJECTS}  # fmt: skip

# (bucket policy statements, anonymous request, allowed, rule)
ANONYMOUS_CASES: list[tuple[list[dict[str, Any]], RequestContext, bool, str]] = [
    ([PUBLIC_READ], anon(), True, "Principal * reaches anonymous"),
    ([{**PUBLIC_READ, "Principal": {"AWS": "*"}}], anon(), True, '{"AWS": "*"} does too'),
    ([PUBLIC_READ], anon(op="PutObject"), False, "only the allowed action"),
    ([PUBLIC_READ], anon(op="ListObjectsV2", key=""), False, "objects, not the bucket"),
    ([{**PUBLIC_READ, "Principal": {"AWS": "alice"}}], anon(), False, "a key is not anonymous"),
    ([{**PUBLIC_READ, "Principal": {"AWS": ACCOUNT_ID}}], anon(), False,
     "the account is not anonymous"),
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": "bob"}, "Action": "s3:GetObject",
       "Resource": DEMO_OBJECTS}, PUBLIC_READ], anon(), False,
     "NotPrincipal deny reaches anonymous"),
    ([PUBLIC_READ, {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::demo/photos/*"}], anon(), False,
     "deny beats the public allow"),
    ([{**PUBLIC_READ, "Condition": {"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}}],
     anon(), True, "public read from a range: inside"),
    ([{**PUBLIC_READ, "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}}],
     anon(), False, "public read from a range: outside"),
    ([{**PUBLIC_READ, "Condition": {"StringLike": {"aws:Referer": "https://www.example.com/*"}}}],
     anon(), True, "AWS's referer example"),
    ([{**PUBLIC_READ, "Condition": {"StringLike": {"aws:Referer": "https://www.example.com/*"}}}],
     anon(headers={}), False, "no referer"),
    ([{**PUBLIC_READ, "Resource": "arn:aws:s3:::other/*"}], anon(), False,
     "another bucket's resource"),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "c", "allowed", "rule"), ANONYMOUS_CASES,
                         ids=[r[3] for r in ANONYMOUS_CASES])  # fmt: skip
def test_anonymous(
    statements: list[dict[str, Any]], c: RequestContext, allowed: bool, rule: str
) -> None:
    policy = _bucket(*statements)
    assert (policy.allows_anonymous(c) and not policy.explicit_deny(c)) is allowed, rule


# (bucket policy statements, is public, rule) — AWS's "meaning of public"
PUBLIC_CASES: list[tuple[list[dict[str, Any]], bool, str]] = [
    ([PUBLIC_READ], True, "an allow to *"),
    ([{**PUBLIC_READ, "Principal": {"AWS": "*"}}], True, '{"AWS": "*"}'),
    ([{**PUBLIC_READ, "Effect": "Deny"}], False, "a deny grants nothing"),
    ([{**PUBLIC_READ, "Principal": {"AWS": "alice"}}], False, "a fixed principal"),
    ([{**PUBLIC_READ, "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}], False,
     "the account"),
    ([{**PUBLIC_READ, "Effect": "Deny", "Principal": None, "NotPrincipal": {"AWS": "bob"}}],
     False, "NotPrincipal deny grants nothing"),
    ([{**PUBLIC_READ, "Condition": {"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}}], False,
     "limited to a CIDR"),
    ([{**PUBLIC_READ, "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}], True,
     "a CIDR of everything limits nothing"),
    ([{**PUBLIC_READ, "Condition": {"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}}}],
     True, "a negated CIDR limits nothing"),
    ([{**PUBLIC_READ, "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}], False,
     "a fixed VPC endpoint"),
    ([{**PUBLIC_READ, "Condition": {"StringLike": {"aws:SourceVpce": "vpce-*"}}}], True,
     "a wildcard is not fixed"),
    ([{**PUBLIC_READ, "Condition": {"StringEquals": {"aws:SourceAccount": "111122223333"}}}],
     False, "a fixed source account"),
    ([{**PUBLIC_READ, "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:1:t"}}}],
     False, "a fixed source ARN"),
    ([{**PUBLIC_READ, "Condition": {"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}}}],
     True, "IfExists does not limit"),
    ([{**PUBLIC_READ, "Condition": {"StringLike": {"aws:Referer": "https://example.com/*"}}}],
     True, "a referer is no limit (forgeable)"),
    ([{**PUBLIC_READ, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}], True,
     "https only is still public"),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "public", "rule"), PUBLIC_CASES,
                         ids=[r[2] for r in PUBLIC_CASES])  # fmt: skip
def test_is_public(statements: list[dict[str, Any]], public: bool, rule: str) -> None:
    cleaned = [{k: v for k, v in s.items() if v is not None} for s in statements]
    assert _bucket(*cleaned).is_public() is public, rule


# ---- what is refused (MalformedPolicy) and what is accepted ----------------------

MALFORMED = [
    ("not json", "malformed JSON"),
    (aws({**EVERYTHING, "Condition": {"StringEqualz": {"aws:UserAgent": "x"}}}),
     "unknown operator"),
    (aws({**EVERYTHING, "Condition": {"ForSomeValues:StringEquals": {"aws:UserAgent": "x"}}}),
     "unknown set qualifier"),
    (aws({**EVERYTHING, "Condition": {"NullIfExists": {"aws:UserAgent": "true"}}}),
     "Null has no IfExists form"),
    (aws({**EVERYTHING, "Condition": {"NumericEquals": {"s3:max-keys": "ten"}}}), "not a number"),
    (aws({**EVERYTHING, "Condition": {"DateEquals": {"aws:CurrentTime": "soon"}}}),
     "not a date"),
    (aws({**EVERYTHING, "Condition": {"Bool": {"aws:SecureTransport": "yes"}}}), "not a bool"),
    (aws({**EVERYTHING, "Condition": {"Null": {"aws:UserAgent": "maybe"}}}), "Null not a bool"),
    (aws({**EVERYTHING, "Condition": {"BinaryEquals": {"aws:UserAgent": "!!"}}}), "not base64"),
    (aws({**EVERYTHING, "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/33"}}}),
     "not a CIDR"),
    (aws({**EVERYTHING, "Condition": {"ArnLike": {"aws:SourceArn": "not-an-arn"}}}),
     "not an ARN"),
    (aws({**EVERYTHING, "Condition": {"StringEquals": {"aws:UserAgent": {"a": 1}}}}),
     "a value that is an object"),
    (aws({**EVERYTHING, "Condition": {"StringEquals": {"aws:UserAgent": []}}}), "no values"),
    (aws({**EVERYTHING, "Condition": {"StringEquals": {}}}), "an operator with no keys"),
    (aws({**EVERYTHING, "Condition": {"StringLike": {"s3:prefix": "${aws:user name}"}}}),
     "a bad policy variable"),
    (aws({"Effect": "Allow", "Action": "s3:GetObject", "NotAction": "s3:PutObject",
          "Resource": "*"}), "Action and NotAction"),
    (aws({"Effect": "Allow", "Action": "s3:GetObject"}), "no Resource"),
    (aws({**EVERYTHING, "Principal": "*"}), "Principal in a key policy"),
    (aws({**EVERYTHING, "NotPrincipal": {"AWS": "bob"}}), "NotPrincipal in a key policy"),
    (aws({**EVERYTHING, "Effect": "Permit"}), "unknown Effect"),
    (aws({**EVERYTHING, "Resource": "arn:aws:ec2:::instance/x"}), "not an S3 resource"),
    (json.dumps({"Version": "2012-10-17", "Id": 5, "Statement": [EVERYTHING]}), "Id not text"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "rule"), MALFORMED, ids=[r[1] for r in MALFORMED])
def test_malformed_key_policies(text: str, rule: str) -> None:
    with pytest.raises(PolicyError):
        parse_key_policy(text)


BUCKET_MALFORMED = [
    (aws(PUBLIC_READ | {"Principal": {"Group": "x"}}), "unknown principal type"),
    (aws({k: v for k, v in PUBLIC_READ.items() if k != "Principal"}), "no Principal"),
    (aws({**PUBLIC_READ, "NotPrincipal": {"AWS": "bob"}}), "Principal and NotPrincipal"),
    (aws({k: v for k, v in PUBLIC_READ.items() if k != "Principal"}
         | {"NotPrincipal": {"AWS": "bob"}}), "NotPrincipal with Allow"),
    (aws({**PUBLIC_READ, "Principal": {"AWS": "arn:aws:iam::123:root"}}), "not an account id"),
    (aws({**PUBLIC_READ, "Principal": {"AWS": "has space"}}), "not a key id"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "rule"), BUCKET_MALFORMED, ids=[r[1] for r in BUCKET_MALFORMED])
def test_malformed_bucket_policies(text: str, rule: str) -> None:
    with pytest.raises(PolicyError):
        parse_bucket_policy(text, "demo")


def test_aws_documentation_shapes_are_accepted() -> None:
    """Documents in the shape of AWS's examples parse: Id and Sid, a single
    Statement object, no Version, unquoted booleans and numbers, a resource
    of another bucket, Service and CanonicalUser principals, every operator."""
    parse_bucket_policy(
        json.dumps({
            "Version": "2012-10-17", "Id": "S3PolicyId1",
            "Statement": {"Sid": "IPAllow", "Effect": "Allow", "Principal": "*",
                          "Action": "s3:*", "Resource": ["arn:aws:s3:::demo/*",
                                                         "arn:aws:s3:::other-bucket/*"],
                          "Condition": {"IpAddress": {"aws:SourceIp": "54.240.143.0/24"},
                                        "NotIpAddress": {"aws:SourceIp": "54.240.143.188/32"}}},
        }),
        "demo",
    )  # fmt: skip
    parse_bucket_policy(
        json.dumps({"Statement": [{"Effect": "Allow",
                                   "Principal": {"Service": "logging.s3.amazonaws.com",
                                                 "CanonicalUser": "abc"},
                                   "Action": "s3:PutObject", "Resource": "arn:aws:s3:::demo/*",
                                   "Condition": {"NumericLessThan": {"s3:max-keys": 10},
                                                 "Bool": {"aws:SecureTransport": True}}}]}),
        "demo",
    )  # fmt: skip
    operators = [
        "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
        "StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
    ]  # fmt: skip
    for op in operators:
        for form in (op, op + "IfExists", "ForAnyValue:" + op, "ForAllValues:" + op):
            value = "arn:aws:iam::*:user/x" if op.startswith("Arn") else "x"
            _allow({form: {"aws:PrincipalArn": value}})


# ---- ACLs and policies together (protocol/acl.py, policy.decide_with_acl) ----------
#
# AWS's rules these rows follow (S3 User Guide, "Access control list (ACL)
# overview" and "How Amazon S3 authorizes a request"): FULL_CONTROL implies
# every permission; AllUsers is everyone, anonymous included;
# AuthenticatedUsers every signed caller; READ on a bucket lists it, WRITE
# creates and deletes its objects, READ on an object reads it, READ_ACP and
# WRITE_ACP read and write the ACL; an explicit Deny in a policy beats every
# allow and every grant; an anonymous request is allowed by a bucket-policy
# allow to "*" or by a grant. Seglake's rule on top (SPEC §5): a key's own
# policy is its ceiling, so a grant never widens a key, as a bucket-policy
# allow never does.

ALICE_ID = canonical_id("alice")
BOB_ID = canonical_id("bob")
LIST_ONLY = parse_key_policy(aws({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}))
GET_ONLY = parse_key_policy(aws({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))
RW_BUT_NO_ACL = parse_key_policy(
    aws(EVERYTHING, {"Effect": "Deny", "Action": "s3:PutObjectAcl", "Resource": "*"})
)
RW_NO_PUBLIC_UPLOADS = parse_key_policy(
    aws(EVERYTHING, {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*",
                     "Condition": {"StringEquals": {"s3:x-amz-acl": "public-read"}}})
)  # fmt: skip


def canned(name: str) -> Acl:
    return Acl(canned=name)


def granting(*grants: tuple[str, str, str]) -> Acl:
    return Acl(grants=tuple(Grant(*g) for g in grants))


ALL_READ = (GROUP, ALL_USERS, READ)


def anon_op(op: str, **kw: Any) -> RequestContext:
    key = "" if ENDPOINT_BY_NAME[op].target != "object" else "photos/cat.jpg"
    return ctx(op, key=key, principal=None, auth_type=None, **kw)


def deny(action: str, principal: Any = "*", resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": principal, "Action": action, "Resource": resource,
            **extra}  # fmt: skip


def allow(action: str, principal: Any = "*", resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {**deny(action, principal, resource, **extra), "Effect": "Allow"}


# (bucket policy statements, key policy (None: anonymous), request, the ACL the
# operation consults (the object's for object reads and ACL calls, else the
# bucket's), its owner, expected, rule)
ACL_CASES: list[tuple[list[dict[str, Any]], Policy | None, RequestContext, Acl, str, str, str]] = [
    # ---- anonymous callers and canned ACLs ----------------------------------------------
    ([], None, anon_op("GetObject"), canned("private"), ALICE_ID, IMPLICIT_DENY,
     "private: the owner alone, never anonymous"),
    ([], None, anon_op("GetObject"), canned("public-read"), ALICE_ID, ALLOW,
     "public-read grants AllUsers READ"),
    ([], None, anon_op("HeadObject"), canned("public-read"), ALICE_ID, ALLOW,
     "HEAD needs READ, as GET"),
    ([], None, anon_op("GetObject", version_id="v1"), canned("public-read"), ALICE_ID, ALLOW,
     "a version is read under its own ACL"),
    ([], None, anon_op("PutObject"), canned("public-read"), ALICE_ID, IMPLICIT_DENY,
     "public-read grants no WRITE"),
    ([], None, anon_op("PutObject"), canned("public-read-write"), ALICE_ID, ALLOW,
     "public-read-write grants AllUsers WRITE on the bucket"),
    ([], None, anon_op("DeleteObject"), canned("public-read-write"), ALICE_ID, ALLOW,
     "bucket WRITE covers deleting objects"),
    ([], None, anon_op("DeleteObject", version_id="v1"), canned("public-read-write"), ALICE_ID,
     IMPLICIT_DENY, "bucket WRITE deletes versions only for the bucket owner"),
    ([], None, anon_op("CreateMultipartUpload"), canned("public-read-write"), ALICE_ID, ALLOW,
     "bucket WRITE covers multipart uploads"),
    ([], None, anon_op("ListObjectsV2"), canned("public-read"), ALICE_ID, ALLOW,
     "bucket READ lists objects"),
    ([], None, anon_op("ListObjects"), canned("public-read"), ALICE_ID, ALLOW,
     "bucket READ lists objects (V1)"),
    ([], None, anon_op("ListObjectVersions"), canned("public-read"), ALICE_ID, ALLOW,
     "bucket READ lists versions"),
    ([], None, anon_op("ListMultipartUploads"), canned("public-read"), ALICE_ID, ALLOW,
     "bucket READ lists uploads"),
    ([], None, anon_op("HeadBucket"), canned("public-read"), ALICE_ID, ALLOW,
     "bucket READ answers HeadBucket"),
    ([], None, anon_op("HeadBucket"), canned("private"), ALICE_ID, IMPLICIT_DENY,
     "a private bucket: HeadBucket refused"),
    ([], None, anon_op("ListObjectsV2"), canned("private"), ALICE_ID, IMPLICIT_DENY,
     "a private bucket is not listed"),
    ([], None, anon_op("GetObjectAcl"), canned("public-read"), ALICE_ID, IMPLICIT_DENY,
     "READ is not READ_ACP"),
    ([], None, anon_op("PutObjectAcl"), canned("public-read-write"), ALICE_ID, IMPLICIT_DENY,
     "WRITE is not WRITE_ACP"),
    ([], None, anon_op("GetBucketAcl"), canned("public-read"), ALICE_ID, IMPLICIT_DENY,
     "bucket READ is not READ_ACP"),
    ([], None, anon_op("DeleteBucket"), canned("public-read-write"), ALICE_ID, IMPLICIT_DENY,
     "no ACL permission deletes a bucket"),
    ([], None, anon_op("PutBucketPolicy"), canned("public-read-write"), ALICE_ID, IMPLICIT_DENY,
     "no ACL permission writes a policy"),
    ([], None, anon_op("GetObject"), canned("authenticated-read"), ALICE_ID, IMPLICIT_DENY,
     "AuthenticatedUsers excludes anonymous callers"),
    ([], None, anon_op("ListObjectsV2"), canned("authenticated-read"), ALICE_ID, IMPLICIT_DENY,
     "authenticated-read bucket: not for anonymous"),
    ([], None, anon_op("GetObject"), canned("bucket-owner-read"), BOB_ID, IMPLICIT_DENY,
     "bucket-owner-read: owner and bucket owner only"),
    ([], None, anon_op("GetObject"), canned("bucket-owner-full-control"), BOB_ID, IMPLICIT_DENY,
     "bucket-owner-full-control: not anonymous"),
    ([], None, anon_op("PutObject"), canned("log-delivery-write"), ALICE_ID, IMPLICIT_DENY,
     "LogDelivery is nobody anonymous"),
    # ---- anonymous callers and explicit grants -------------------------------------------
    ([], None, anon_op("GetObject"), granting(ALL_READ), ALICE_ID, ALLOW,
     "an explicit AllUsers READ grant"),
    ([], None, anon_op("PutObjectAcl"), granting((GROUP, ALL_USERS, FULL_CONTROL)), ALICE_ID,
     ALLOW, "FULL_CONTROL implies WRITE_ACP"),
    ([], None, anon_op("GetObject"), granting((GROUP, ALL_USERS, FULL_CONTROL)), ALICE_ID,
     ALLOW, "FULL_CONTROL implies READ"),
    ([], None, anon_op("GetObjectAcl"), granting((GROUP, ALL_USERS, READ_ACP)), ALICE_ID, ALLOW,
     "READ_ACP reads the ACL"),
    ([], None, anon_op("GetObject"), granting((GROUP, ALL_USERS, READ_ACP)), ALICE_ID,
     IMPLICIT_DENY, "READ_ACP does not read the object"),
    ([], None, anon_op("GetBucketAcl"), granting((GROUP, ALL_USERS, WRITE_ACP)), ALICE_ID,
     IMPLICIT_DENY, "WRITE_ACP does not read the ACL"),
    ([], None, anon_op("PutBucketAcl"), granting((GROUP, ALL_USERS, WRITE_ACP)), ALICE_ID,
     ALLOW, "WRITE_ACP writes the bucket ACL"),
    ([], None, anon_op("GetObject"), granting((USER, ALICE_ID, READ)), ALICE_ID, IMPLICIT_DENY,
     "a grant to a user is not anonymous"),
    ([], None, anon_op("GetObject"), granting(), ALICE_ID, IMPLICIT_DENY,
     "an empty grant list grants nothing"),
    ([], None, anon_op("GetObject"), granting((GROUP, AUTHENTICATED_USERS, FULL_CONTROL)),
     ALICE_ID, IMPLICIT_DENY, "AuthenticatedUsers FULL_CONTROL: still not anonymous"),
    # ---- anonymous callers: bucket policy and ACL together --------------------------------
    ([deny("s3:GetObject")], None, anon_op("GetObject"), canned("public-read"), ALICE_ID, DENY,
     "an explicit deny beats the ACL grant"),
    ([deny("s3:GetObject", resource="arn:aws:s3:::demo/secret/*")], None, anon_op("GetObject"),
     canned("public-read"), ALICE_ID, ALLOW, "a deny of other objects leaves the grant"),
    ([deny("s3:*", Condition={"Bool": {"aws:SecureTransport": "false"}})], None,
     anon_op("GetObject"), canned("public-read"), ALICE_ID, DENY,
     "deny-insecure-transport binds ACL readers"),
    ([deny("s3:*", Condition={"Bool": {"aws:SecureTransport": "false"}})], None,
     anon_op("GetObject", secure_transport=True), canned("public-read"), ALICE_ID, ALLOW,
     "over https the grant applies"),
    ([deny("s3:*", Condition={"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}})], None,
     anon_op("GetObject"), canned("public-read"), ALICE_ID, ALLOW,
     "inside the allowed range, the grant applies"),
    ([deny("s3:*", Condition={"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}})], None,
     anon_op("GetObject"), canned("public-read"), ALICE_ID, DENY,
     "outside the range: denied whatever the ACL"),
    ([deny("s3:GetObject", Condition={"StringNotLike": {"aws:Referer": "https://www.example.com/*"}})],
     None, anon_op("GetObject"), canned("public-read"), ALICE_ID, ALLOW,
     "AWS's referer guard: the right referer passes"),
    ([deny("s3:GetObject", Condition={"StringNotLike": {"aws:Referer": "https://www.example.com/*"}})],
     None, anon_op("GetObject", headers={}), canned("public-read"), ALICE_ID, DENY,
     "no referer: the negated condition holds, denied"),
    ([allow("s3:GetObject")], None, anon_op("GetObject"), canned("private"), ALICE_ID, ALLOW,
     "a policy allow to * suffices without a grant"),
    ([allow("s3:GetObject", principal={"AWS": "alice"})], None, anon_op("GetObject"),
     canned("private"), ALICE_ID, IMPLICIT_DENY, "an allow to a key does not reach anonymous"),
    ([allow("s3:PutObject")], None, anon_op("PutObject"), canned("public-read"), ALICE_ID, ALLOW,
     "policy and ACL are alternatives: either suffices"),
    ([deny("s3:GetObject", principal={"AWS": "alice"})], None, anon_op("GetObject"),
     canned("public-read"), ALICE_ID, ALLOW, "a deny naming a key does not bind anonymous"),
    ([{"Effect": "Deny", "NotPrincipal": {"AWS": "bob"}, "Action": "s3:GetObject",
       "Resource": "*"}], None, anon_op("GetObject"), canned("public-read"), ALICE_ID, DENY,
     "a NotPrincipal deny reaches anonymous"),
    ([deny("s3:DeleteObject")], None, anon_op("DeleteObject"), canned("public-read-write"),
     ALICE_ID, DENY, "public-read-write, deletes denied by policy"),
    ([deny("s3:DeleteObject")], None, anon_op("PutObject"), canned("public-read-write"),
     ALICE_ID, ALLOW, "... writes still granted"),
    ([deny("s3:GetObjectVersion")], None, anon_op("GetObject", version_id="v1"),
     canned("public-read"), ALICE_ID, DENY, "a version read is also GetObjectVersion"),
    ([deny("s3:GetObjectVersion")], None, anon_op("GetObject"), canned("public-read"), ALICE_ID,
     ALLOW, "a plain GET is not GetObjectVersion"),
    ([deny("s3:ListBucket", Condition={"StringNotLike": {"s3:prefix": "public/*"}})], None,
     anon_op("ListObjectsV2", prefix="public/a"), canned("public-read"), ALICE_ID, ALLOW,
     "listing limited to a prefix: inside"),
    ([deny("s3:ListBucket", Condition={"StringNotLike": {"s3:prefix": "public/*"}})], None,
     anon_op("ListObjectsV2", prefix="secret/"), canned("public-read"), ALICE_ID, DENY,
     "listing limited to a prefix: outside"),
    ([deny("s3:PutObject", Condition={"StringEquals": {"s3:x-amz-acl": "public-read"}})], None,
     anon_op("PutObject"), canned("public-read-write"), ALICE_ID, DENY,
     "a condition on s3:x-amz-acl binds anonymous writers"),
    # ---- keys: the key policy is the ceiling --------------------------------------------
    ([], RW, C, canned("private"), BOB_ID, ALLOW,
     "one account: the key policy allows, the ACL does not narrow it"),
    ([], RO, ctx("PutObject"), canned("public-read-write"), ALICE_ID, IMPLICIT_DENY,
     "a grant never widens a key beyond its policy"),
    ([], GET_ONLY, ctx("PutObjectAcl"), granting((USER, ALICE_ID, FULL_CONTROL)), ALICE_ID,
     IMPLICIT_DENY, "a grant to the key itself does not widen it"),
    ([], RO, C, canned("authenticated-read"), BOB_ID, ALLOW, "ro reads, grant or not"),
    ([], LIST_ONLY, C, canned("authenticated-read"), BOB_ID, IMPLICIT_DENY,
     "AuthenticatedUsers READ does not widen a list-only key"),
    ([], LIST_ONLY, C, canned("public-read"), BOB_ID, IMPLICIT_DENY,
     "nor does AllUsers READ"),
    ([deny("s3:GetObject", principal={"AWS": "alice"})], RW, C, canned("public-read"), ALICE_ID,
     DENY, "a deny naming the key beats its policy and the grant"),
    ([deny("s3:GetObject")], RW, C, canned("public-read"), ALICE_ID, DENY,
     "a deny to * binds keys too"),
    ([deny("s3:GetObject", principal={"CanonicalUser": ALICE_ID})], RW,
     ctx(canonical_id=ALICE_ID), canned("public-read"), ALICE_ID, DENY,
     "a deny naming the key's canonical id (as GetBucketAcl shows it)"),
    ([deny("s3:GetObject", principal={"CanonicalUser": BOB_ID})], RW,
     ctx(canonical_id=ALICE_ID), canned("private"), ALICE_ID, ALLOW,
     "another key's canonical id"),
    ([], RO, ctx("GetObjectAcl"), canned("private"), BOB_ID, ALLOW, "ro reads ACLs"),
    ([], RO, ctx("GetBucketAcl", key=""), canned("private"), BOB_ID, ALLOW,
     "ro reads bucket ACLs"),
    ([], RO, ctx("PutObjectAcl"), canned("private"), ALICE_ID, IMPLICIT_DENY,
     "ro cannot change ACLs"),
    ([], RW, ctx("PutObjectAcl"), canned("private"), ALICE_ID, ALLOW, "rw changes ACLs"),
    ([], RW, ctx("PutBucketAcl", key=""), canned("private"), ALICE_ID, ALLOW,
     "rw changes bucket ACLs"),
    ([deny("s3:PutBucketAcl")], RW, ctx("PutBucketAcl", key=""), canned("private"), ALICE_ID,
     DENY, "a bucket policy can forbid ACL changes"),
    ([], RW_BUT_NO_ACL, ctx("PutObjectAcl"), canned("public-read-write"), ALICE_ID, DENY,
     "the key's own deny wins over any grant"),
    ([], RW_NO_PUBLIC_UPLOADS, ctx("PutObject"), canned("private"), ALICE_ID, DENY,
     "a key forbidden public uploads by condition (x-amz-acl: public-read)"),
    ([], RW_NO_PUBLIC_UPLOADS, ctx("PutObject", headers={"x-amz-acl": "private"}),
     canned("private"), ALICE_ID, ALLOW, "... a private upload passes"),
    ([deny("s3:PutObject", Condition={
        "StringNotEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}})], RW,
     ctx("PutObject", headers={"x-amz-acl": "bucket-owner-full-control"}), canned("private"),
     ALICE_ID, ALLOW, "AWS's require-bucket-owner-full-control example: sent"),
    ([deny("s3:PutObject", Condition={
        "StringNotEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}})], RW,
     ctx("PutObject"), canned("private"), ALICE_ID, DENY, "... another ACL: denied"),
    ([deny("s3:PutObject", Condition={
        "StringNotEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}})], RW,
     ctx("PutObject", headers={}), canned("private"), ALICE_ID, DENY,
     "... no ACL header: the negated condition holds"),
    ([allow("s3:GetObject", principal={"AWS": "bob"})], GET_ONLY, ctx("PutObject"),
     canned("public-read-write"), ALICE_ID, IMPLICIT_DENY,
     "neither another key's allow nor a grant widens a key"),
]  # fmt: skip


def _acl_grants(c: RequestContext, acl: Acl, owner: str) -> bool:
    needed = needed_permission(c.operation, c.version_id)
    if needed is None:
        return False
    requester = None if c.principal is None else canonical_id(c.principal)
    return grants_permission(acl.expand(owner, ALICE_ID), owner, requester, needed[1])


@pytest.mark.parametrize(("statements", "key_policy", "c", "acl", "owner", "expected", "rule"),
                         ACL_CASES, ids=[r[6] for r in ACL_CASES])  # fmt: skip
def test_acl_and_policy(
    statements: list[dict[str, Any]], key_policy: Policy | None, c: RequestContext, acl: Acl,
    owner: str, expected: str, rule: str,
) -> None:  # fmt: skip
    bucket = _bucket(*statements) if statements else None
    assert decide_with_acl(c, key_policy, bucket, _acl_grants(c, acl, owner)) == expected, rule


def test_acl_and_policy_table_size() -> None:
    """The issue asks for at least 60 ACL + policy rows."""
    assert len(ACL_CASES) >= 60
