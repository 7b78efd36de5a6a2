"""Access policies: parsing and evaluation (pure, sans-IO).

Rules this module keeps:

* Two document formats are accepted, and nothing else:
  - Seglake v1: ``{"version": "v1", "statements": [{"effect", "actions",
    "resources": [{"bucket", "prefix"}], "conditions", "principals"}]}``;
  - the AWS policy grammar: ``Version``/``Id``/``Statement`` with ``Sid``,
    ``Effect``, ``Principal``/``NotPrincipal`` (bucket policies only),
    ``Action``/``NotAction``, ``Resource``/``NotResource`` and ``Condition``
    with every AWS condition operator, the ``…IfExists`` forms and the
    ``ForAnyValue:``/``ForAllValues:`` set operators.
  Key policies may also be the shorthands ``rw`` and ``ro`` (``read-only``).
* What cannot be enforced exactly is a ``PolicyError`` at parse time
  (``MalformedPolicy`` when stored): bad JSON, a duplicated JSON key, an
  unknown element, action, condition operator or principal type, a value an
  operator cannot compare (a number that is no number, a CIDR that is no
  CIDR). An ignored ``Deny`` would widen access, so nothing that changes a
  decision is ever skipped silently.
* Two things are accepted and simply never match, as in AWS: a condition
  on a key nobody defines (``UnknownKey``: the condition is false, whatever
  its operator), and a resource of another bucket in a bucket policy (a
  bucket's policy is only consulted for requests on that bucket).
* A key AWS defines but a Seglake request does not carry (object tags,
  Object Lock, VPCs, MFA, …) is absent, and absent keys follow AWS's rules:
  a condition on an absent key is false, except that negated operators
  (``StringNotEquals``, ``NotIpAddress``, …) are true, ``…IfExists`` is true,
  ``Null: true`` is true, ``ForAllValues:`` is true and ``ForAnyValue:`` is
  false. Several operators, or several keys under one operator, must all
  hold (AND); several values of one key are alternatives (OR), and for a
  negated operator none may match (NOR).
* Evaluation: an explicit deny in any applicable policy wins; otherwise the
  key's own policy must allow (``decide``: it is the ceiling, SPEC §5); an
  anonymous request needs a bucket-policy allow whose principal is
  ``"*"`` or ``{"AWS": "*"}``. ``NotPrincipal`` is for Deny only (as AWS).
* Identity: Seglake is one account, ``ACCOUNT_ID``. A key is named in a
  ``Principal`` by its access key id, by ``arn:aws:iam::<account>:user/<access
  key id>`` or by ``{"CanonicalUser": "<its canonical id or access key id>"}``
  (the canonical id GetBucketAcl shows, ``auth/canonical.py``); the account by its
  id or ``arn:aws:iam::<account>:root`` (every key, not anonymous). The
  account part of an ARN is not compared (there is only one account), so a
  policy copied from AWS works once its user names are Seglake keys. Roles,
  services and federated principals are accepted and match no request.
* Every limit is explicit so that a hostile document cannot make parsing or
  evaluation expensive (``MAX_POLICY_BYTES``, ``MAX_STATEMENTS``,
  ``MAX_LIST_ITEMS``; wildcards are matched without backtracking blow-up).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from seglake.protocol.endpoints import (
    BUCKET,
    BYPASS_GOVERNANCE,
    ENDPOINTS,
    OWN_ENDPOINTS,
    OWN_OPERATIONS,
    SERVICE,
)

# AWS caps a bucket policy at 20 KiB; a key policy gets the same bound.
MAX_POLICY_BYTES: Final = 20 * 1024
# Bounds on the parts of one document, far above any hand-written policy.
MAX_STATEMENTS: Final = 100
MAX_LIST_ITEMS: Final = 100

# Seglake's one account, as ARNs and aws:PrincipalAccount name it. Twelve
# digits like any AWS account id; all zeros so it never is a real one.
ACCOUNT_ID: Final = "000000000000"

# What each operation means to a policy, read from the one endpoint table
# (``protocol/endpoints.py``, which says why each fact is so).
# Policy action names (without the ``s3:`` prefix) each operation needs; a
# statement applies when one of its action patterns matches any of them.
OPERATION_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    **{e.name: e.actions for e in ENDPOINTS},
    **{name: (name,) for name in OWN_OPERATIONS},
    # Own endpoints named apart from their action (the replication ones).
    **{e.name: e.actions for e in OWN_ENDPOINTS},
    # A permission checked on an object, not an operation (endpoints.py).
    BYPASS_GOVERNANCE: (BYPASS_GOVERNANCE,),
}
# Operations that name no bucket: only a resource of "*" (or the v1
# wildcard bucket) covers them.
SERVICE_OPERATIONS: Final = frozenset(
    {e.name for e in (*ENDPOINTS, *OWN_ENDPOINTS) if e.target == SERVICE} | set(OWN_OPERATIONS)
)
# Operations whose resource is the bucket, not an object in it.
BUCKET_OPERATIONS: Final = frozenset(e.name for e in ENDPOINTS if e.target == BUCKET)
# Operations whose request has the listing keys s3:prefix, s3:delimiter and
# s3:max-keys.
LISTING_OPERATIONS: Final = frozenset(e.name for e in ENDPOINTS if e.listing)
# A request naming a version (``versionId``) also is AWS's version action, so
# an allow of either grants and a deny of either refuses it. (AWS asks for
# the version action alone; accepting the plain one too keeps v1 policies,
# which have no version actions, working on versioned buckets.)
VERSION_ACTIONS: Final[dict[str, str]] = {
    e.name: e.version_action for e in ENDPOINTS if e.version_action is not None
}
# S3 actions AWS defines that no Seglake operation performs (access points,
# batch jobs, replication, per-version ACLs, …). A policy copied from AWS
# may name them; they are accepted and never match a request.
OTHER_AWS_ACTIONS: Final = frozenset(
    {
        "CreateAccessPoint", "CreateJob", "DeleteAccessPoint",
        "DeleteAccessPointPolicy", "DeleteJobTagging", "DeleteStorageLensConfiguration",
        "DescribeJob", "GetAccessPoint", "GetAccessPointPolicy", "GetAccessPointPolicyStatus",
        "GetAccountPublicAccessBlock", "GetJobTagging", "GetObjectVersionForReplication",
        "GetObjectVersionTorrent", "GetStorageLensConfiguration",
        "ListAccessPoints", "ListJobs", "ListStorageLensConfigurations",
        "ObjectOwnerOverrideToBucketOwner", "PutAccessPointPolicy", "PutAccountPublicAccessBlock",
        "PutAnalyticsConfiguration", "PutIntelligentTieringConfiguration",
        "PutInventoryConfiguration", "PutJobTagging", "PutMetricsConfiguration",
        "PutStorageLensConfiguration", "ReplicateDelete", "ReplicateObject",
        "ReplicateTags", "UpdateJobPriority", "UpdateJobStatus",
    }
)  # fmt: skip
KNOWN_ACTIONS: Final = frozenset(
    {name for names in OPERATION_ACTIONS.values() for name in names}
    | set(VERSION_ACTIONS.values())
    | OTHER_AWS_ACTIONS
)
# The ``ro`` shorthand: every action that only reads.
READ_ONLY_ACTIONS: Final = frozenset(
    {a for e in ENDPOINTS if e.granted_by_ro for a in (*e.actions, e.version_action) if a}
    | {name for name, read_only in OWN_OPERATIONS.items() if read_only}
)
# Not part of the ``rw`` shorthand: actions that change who may do what.
# Nor bypassing GOVERNANCE retention: a leaked everyday key must not be
# able to delete what Object Lock protects (AWS's s3:* would include it).
# Nor replication: a ReplicationWrite key overwrites any object of any
# bucket (last writer wins, no per-object check) and a ReplicationRead key
# reads every bucket's oplog and chunks, so only a policy naming them
# grants them (``seglake:ReplicationRead``), never an everyday ``rw`` key.
RW_EXCLUDED: Final = (
    "PutBucketPolicy", "DeleteBucketPolicy", BYPASS_GOVERNANCE, "ReplicationRead",
    "ReplicationWrite",
)  # fmt: skip
# Action prefixes of the AWS-style format; Seglake's own endpoints may also
# be named in their own namespace.
_ACTION_PREFIXES: Final = ("s3:", "seglake:")
_ARN_PREFIX: Final = "arn:aws:s3:::"
# 2008-10-17 has no policy variables: ``${...}`` is literal text there.
_VERSION_WITH_VARIABLES: Final = "2012-10-17"
_AWS_VERSIONS: Final = (_VERSION_WITH_VARIABLES, "2008-10-17")
# Exact request-header match in the AWS-style format (the v1 ``headers``
# condition): ``StringEquals {"seglake:RequestHeader/x-tenant": "alpha"}``.
_HEADER_KEY_PREFIX: Final = "seglake:requestheader/"
_SIGV4: Final = "AWS4-HMAC-SHA256"

# s3:authType values (AWS): how a signed request carried its signature.
AUTH_HEADER: Final = "REST-HEADER"
AUTH_QUERY: Final = "REST-QUERY-STRING"
AUTH_POST: Final = "POST"


class PolicyError(ValueError):
    """The document is not a policy Seglake can enforce exactly."""


# ---- the request being decided --------------------------------------------


@dataclass(frozen=True)
class RequestContext:
    """What a decision may look at. ``principal`` is the access key id, or
    None for an anonymous request (``admin``: it is the bootstrap admin key,
    the account itself); ``prefix``/``delimiter``/``max_keys`` are the
    listing parameters (None when the request has none); ``headers``
    lowercased; ``version_id`` the object version the request names, if any;
    ``auth_type`` how a signed request was signed (``AUTH_*``, None when
    unsigned)."""

    operation: str
    bucket: str
    key: str
    principal: str | None
    source_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    now: datetime
    secure_transport: bool
    headers: Mapping[str, str] = field(default_factory=dict)
    prefix: str | None = None
    delimiter: str | None = None
    version_id: str | None = None
    admin: bool = False
    max_keys: str | None = None
    auth_type: str | None = None
    region: str = "us-east-1"
    # The key's canonical user id (``auth/canonical.py``), for a bucket
    # policy's ``{"CanonicalUser": ...}``; None when unsigned.
    canonical_id: str | None = None
    # Tags the request asks for (x-amz-tagging, a PutObjectTagging body):
    # s3:RequestObjectTag/<key>, s3:RequestObjectTagKeys. None: it gives none.
    request_tags: tuple[tuple[str, str], ...] | None = None
    # The addressed object's current tags, read only when a condition asks
    # (s3:ExistingObjectTag/<key>); None: the request addresses no object.
    existing_tags: Callable[[], Sequence[tuple[str, str]]] | None = None

    @property
    def actions(self) -> tuple[str, ...]:
        names = OPERATION_ACTIONS.get(self.operation, ())
        if self.version_id is not None and self.operation in VERSION_ACTIONS:
            return (*names, VERSION_ACTIONS[self.operation])
        return names


def principal_arn(access_key: str) -> str:
    """The ARN that names a Seglake key (aws:PrincipalArn)."""
    return f"arn:aws:iam::{ACCOUNT_ID}:user/{access_key}"


# ---- condition keys ----------------------------------------------------------

Fact = Callable[[RequestContext], str | None]


def _header(name: str) -> Fact:
    return lambda c: c.headers.get(name)


def _listing(get: Fact) -> Fact:
    return lambda c: get(c) if c.operation in LISTING_OPERATIONS else None


def _signed(get: Fact) -> Fact:
    return lambda c: get(c) if c.principal is not None else None


def _principal_type(c: RequestContext) -> str:
    if c.principal is None:
        return "Anonymous"
    return "Account" if c.admin else "User"


def _userid(c: RequestContext) -> str:
    if c.principal is None:
        return "anonymous"
    return ACCOUNT_ID if c.admin else c.principal


def _principal_arn(c: RequestContext) -> str | None:
    if c.principal is None:
        return None
    return f"arn:aws:iam::{ACCOUNT_ID}:root" if c.admin else principal_arn(c.principal)


# Every condition key a Seglake request can carry, lowercased (AWS compares
# key names case-insensitively), and where its one value comes from.
# Request headers become keys only where AWS defines an ``s3:`` key for
# them; AWS sets some only on the operations that take the header, Seglake
# whenever the request carries it.
def _remaining_days(c: RequestContext) -> str | None:
    """Whole days from now to the requested retain-until date (rounded up,
    as a retention of "30 days" is 30 whatever the hour)."""
    raw = c.headers.get("x-amz-object-lock-retain-until-date")
    if raw is None:
        return None
    try:
        until = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    seconds = (until - c.now).total_seconds()
    return str(max(0, math.ceil(seconds / 86_400)))


KEY_FACTS: Final[Mapping[str, Fact]] = {
    "aws:sourceip": lambda c: str(c.source_ip) if c.source_ip is not None else None,
    "aws:securetransport": lambda c: "true" if c.secure_transport else "false",
    "aws:currenttime": lambda c: c.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "aws:epochtime": lambda c: str(int(c.now.timestamp())),
    "aws:useragent": _header("user-agent"),
    "aws:referer": _header("referer"),
    "aws:principaltype": _principal_type,
    # AWS has no user name for the account root, only for users.
    "aws:username": lambda c: c.principal if c.principal is not None and not c.admin else None,
    "aws:userid": _userid,
    "aws:principalarn": _principal_arn,
    "aws:principalaccount": _signed(lambda c: ACCOUNT_ID),
    "aws:resourceaccount": lambda c: ACCOUNT_ID,
    "aws:requestedregion": lambda c: c.region,
    "s3:resourceaccount": lambda c: ACCOUNT_ID,
    # A listing without ``prefix`` lists from the start: s3:prefix is "".
    "s3:prefix": _listing(lambda c: c.prefix if c.prefix is not None else ""),
    "s3:delimiter": _listing(lambda c: c.delimiter),
    "s3:max-keys": _listing(lambda c: c.max_keys),
    "s3:versionid": lambda c: c.version_id,
    "s3:signatureversion": _signed(lambda c: _SIGV4 if c.auth_type else None),
    "s3:authtype": _signed(lambda c: c.auth_type),
    **{
        f"s3:{h}": _header(h)
        for h in (
            "x-amz-acl", "x-amz-content-sha256", "x-amz-server-side-encryption",
            "x-amz-server-side-encryption-aws-kms-key-id",
            "x-amz-server-side-encryption-customer-algorithm", "x-amz-copy-source",
            "x-amz-metadata-directive", "x-amz-storage-class", "x-amz-website-redirect-location",
            "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
            "x-amz-grant-write-acp", "x-amz-grant-full-control", "x-amz-object-ownership",
            "if-match", "if-none-match", "x-amz-object-lock-mode",
            "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
        )
    },
    # Object Lock keys, from the request's x-amz-object-lock-* headers
    # (PutObject, CopyObject, CreateMultipartUpload). PutObjectRetention's
    # and PutObjectLegalHold's bodies are read after authorisation, so
    # there these keys are absent.
    "s3:object-lock-mode": _header("x-amz-object-lock-mode"),
    "s3:object-lock-retain-until-date": _header("x-amz-object-lock-retain-until-date"),
    "s3:object-lock-legal-hold": _header("x-amz-object-lock-legal-hold"),
    "s3:object-lock-remaining-retention-days": _remaining_days,
}  # fmt: skip
# Keys AWS defines that a request to Seglake never carries (no VPCs,
# organisations, MFA, sessions, services calling on a user's behalf). They
# are absent, with AWS's absent-key semantics.
ABSENT_KEYS: Final = frozenset(
    {
        "aws:sourcevpc", "aws:sourcevpce", "aws:vpcsourceip", "aws:sourcearn",
        "aws:sourceaccount", "aws:sourceowner", "aws:sourceorgid", "aws:sourceorgpaths",
        "aws:principalorgid", "aws:principalorgpaths", "aws:principalisawsservice",
        "aws:principalservicename", "aws:principalservicenameslist", "aws:multifactorauthpresent",
        "aws:multifactorauthage", "aws:tokenissuetime", "aws:viaawsservice", "aws:calledvia",
        "aws:calledviafirst", "aws:calledvialast", "aws:federatedprovider", "aws:sourceidentity",
        "aws:tagkeys", "aws:resourceorgid", "aws:resourceorgpaths", "aws:ec2instancesourcevpc",
        "aws:ec2instancesourceprivateipv4",
        "s3:locationconstraint", "s3:dataaccesspointarn",
        "s3:dataaccesspointaccount", "s3:accesspointnetworkorigin", "s3:tlsversion",
        "s3:signatureage", "s3:x-amz-expected-bucket-owner", "s3:objectcreationoperation",
    }
)  # fmt: skip
ABSENT_KEY_PREFIXES: Final = ("aws:principaltag/", "aws:resourcetag/", "aws:requesttag/")
# Object tags. The key's tag name arrives lowercased (key names compare
# without regard to case), so tag keys are matched without regard to case.
EXISTING_TAG_PREFIX: Final = "s3:existingobjecttag/"
REQUEST_TAG_PREFIX: Final = "s3:requestobjecttag/"
REQUEST_TAG_KEYS: Final = "s3:requestobjecttagkeys"


def _tag_values(tags: Sequence[tuple[str, str]] | None, name: str) -> tuple[str, ...]:
    if tags is None:
        return ()
    return tuple(v for k, v in tags if k.lower() == name)


def is_known_key(key: str) -> bool:
    """Does ``key`` (lowercased) name a condition key AWS or Seglake defines?"""
    if key in KEY_FACTS or key in ABSENT_KEYS or key.startswith(ABSENT_KEY_PREFIXES):
        return True
    if key == REQUEST_TAG_KEYS:
        return True
    if key.startswith((EXISTING_TAG_PREFIX, REQUEST_TAG_PREFIX)):
        return True
    return key.startswith(_HEADER_KEY_PREFIX) and len(key) > len(_HEADER_KEY_PREFIX)


def key_values(ctx: RequestContext, key: str) -> tuple[str, ...]:
    """The values of condition key ``key`` (lowercased) for ``ctx``: empty
    when the request does not carry it."""
    if key.startswith(EXISTING_TAG_PREFIX):
        getter = ctx.existing_tags
        return _tag_values(None if getter is None else getter(), key[len(EXISTING_TAG_PREFIX) :])
    if key.startswith(REQUEST_TAG_PREFIX):
        return _tag_values(ctx.request_tags, key[len(REQUEST_TAG_PREFIX) :])
    if key == REQUEST_TAG_KEYS:
        return () if ctx.request_tags is None else tuple(k for k, _v in ctx.request_tags)
    fact = KEY_FACTS.get(key)
    if fact is not None:
        value = fact(ctx)
    elif key.startswith(_HEADER_KEY_PREFIX):
        value = ctx.headers.get(key[len(_HEADER_KEY_PREFIX) :])
    else:
        value = None
    return () if value is None else (value,)


# ---- compiled policy -------------------------------------------------------


@dataclass(frozen=True)
class Glob:
    """An AWS wildcard pattern: ``*`` any run of characters, ``?`` one —
    except at the positions in ``literal`` (characters a policy variable
    such as ``${*}`` produced, which match only themselves).

    Matched by the greedy two-pointer walk (back to the last ``*`` on a
    mismatch), which is O(len(pattern) * len(text)) at worst. A regex of
    ``.*`` runs would backtrack exponentially on a hostile object key.
    """

    pattern: str
    ignore_case: bool = False
    literal: frozenset[int] = frozenset()

    def fullmatch(self, text: str) -> bool:
        p, lit = self.pattern, self.literal
        s = text.lower() if self.ignore_case else text
        i = j = 0
        star, mark = -1, 0
        while i < len(s):
            if j < len(p):
                c, wild = p[j], j not in lit
                if wild and c == "*":
                    star, mark = j, i
                    j += 1
                    continue
                if (wild and c == "?") or c == s[i]:
                    i += 1
                    j += 1
                    continue
            if star < 0:
                return False
            j = star + 1
            mark += 1
            i = mark
        while j < len(p) and p[j] == "*" and j not in lit:
            j += 1
        return j == len(p)

    @property
    def has_wildcards(self) -> bool:
        return any(c in "*?" and i not in self.literal for i, c in enumerate(self.pattern))


def _glob(pattern: str, *, ignore_case: bool = False) -> Glob:
    return Glob(pattern.lower() if ignore_case else pattern, ignore_case)


# Policy variables (2012-10-17): ``${aws:username}``, with an optional
# default ``${aws:username, 'nobody'}``, and the escapes ``${*}``, ``${?}``,
# ``${$}`` for the literal characters.
_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")
_DEFAULT: Final = re.compile(r"\s*([^,\s]+)\s*,\s*'([^']*)'\s*")
_ESCAPES: Final = {"*": "*", "?": "?", "$": "$"}


@dataclass(frozen=True)
class Template:
    """A policy string that may hold policy variables: a tuple of parts,
    each literal text or a (key, default) to substitute per request."""

    parts: tuple[str | tuple[str, str | None], ...]

    @property
    def variable(self) -> bool:
        return any(not isinstance(p, str) for p in self.parts)

    def resolve(self, ctx: RequestContext | None) -> tuple[str, frozenset[int]] | None:
        """The text for ``ctx`` and the positions a variable produced (to be
        matched literally); None when a variable's key is absent and it has
        no default (the value then matches nothing, as in AWS)."""
        out: list[str] = []
        literal: set[int] = set()
        size = 0
        for part in self.parts:
            if isinstance(part, str):
                text = part
            else:
                key, default = part
                if key in _ESCAPES:
                    text = _ESCAPES[key]
                else:
                    values = key_values(ctx, key) if ctx is not None else ()
                    if values:
                        text = values[0]
                    elif default is not None:
                        text = default
                    else:
                        return None
                literal.update(range(size, size + len(text)))
            out.append(text)
            size += len(text)
        return "".join(out), frozenset(literal)


def _template(text: str, variables: bool) -> Template:
    if not variables or "${" not in text:
        return Template((text,))
    parts: list[str | tuple[str, str | None]] = []
    last = 0
    for m in _VARIABLE.finditer(text):
        if m.start() > last:
            parts.append(text[last : m.start()])
        body = m.group(1)
        if body in _ESCAPES:
            parts.append((body, None))
        else:
            d = _DEFAULT.fullmatch(body)
            name, default = (d.group(1), d.group(2)) if d else (body.strip(), None)
            if not name or any(c.isspace() for c in name):
                raise PolicyError(f"bad policy variable ${{{body}}}")
            parts.append((name.lower(), default))
        last = m.end()
    if last < len(text):
        parts.append(text[last:])
    return Template(tuple(parts))


@dataclass(frozen=True)
class Pattern:
    """A wildcard pattern that may hold policy variables."""

    template: Template
    ignore_case: bool = False

    def glob(self, ctx: RequestContext) -> Glob | None:
        resolved = self.template.resolve(ctx)
        if resolved is None:
            return None
        text, literal = resolved
        return Glob(text.lower() if self.ignore_case else text, self.ignore_case, literal)

    def fullmatch(self, ctx: RequestContext, text: str) -> bool:
        g = self.glob(ctx)
        return g is not None and g.fullmatch(text)


@dataclass(frozen=True)
class Resource:
    """Either a v1 ``{"bucket", "prefix"}`` or an AWS ARN pattern.

    ``arn`` matches ``bucket`` for bucket operations and ``bucket/key`` for
    object operations; ``"*"`` (or the v1 bucket ``"*"``) also covers the
    service operations. A v1 prefix limits object keys and, for listings,
    the listed prefix.
    """

    arn: Pattern | None = None
    everything: bool = False
    bucket: str | None = None
    prefix: str = ""

    def matches(self, ctx: RequestContext) -> bool:
        if self.everything:
            return True
        if ctx.operation in SERVICE_OPERATIONS:
            return False
        if self.arn is not None:
            target = ctx.bucket if ctx.operation in BUCKET_OPERATIONS else f"{ctx.bucket}/{ctx.key}"
            return self.arn.fullmatch(ctx, target)
        if self.bucket != "*" and self.bucket != ctx.bucket:
            return False
        if not self.prefix:
            return True
        if ctx.operation in BUCKET_OPERATIONS:
            # A prefixed resource grants a listing only inside the prefix.
            return ctx.operation in LISTING_OPERATIONS and (ctx.prefix or "").startswith(
                self.prefix
            )
        return ctx.key.startswith(self.prefix)


# ---- conditions ----------------------------------------------------------------

# The base operators: family, comparison, negated. ``…IfExists`` and the
# set qualifiers are parsed around these.
_STR, _STR_IC, _LIKE, _NUM, _DATE, _BOOL, _BIN, _IP, _ARN, _NULL = (
    "string", "string-ic", "like", "numeric", "date", "bool", "binary", "ip", "arn", "null",
)  # fmt: skip
_EQ, _LT, _LE, _GT, _GE = "eq", "lt", "le", "gt", "ge"
OPERATORS: Final[Mapping[str, tuple[str, str, bool]]] = {
    "StringEquals": (_STR, _EQ, False),
    "StringNotEquals": (_STR, _EQ, True),
    "StringEqualsIgnoreCase": (_STR_IC, _EQ, False),
    "StringNotEqualsIgnoreCase": (_STR_IC, _EQ, True),
    "StringLike": (_LIKE, _EQ, False),
    "StringNotLike": (_LIKE, _EQ, True),
    **{
        f"{family.capitalize()}{name}": (family, cmp, negated)
        for family in (_NUM, _DATE)
        for name, cmp, negated in (
            ("Equals", _EQ, False), ("NotEquals", _EQ, True), ("LessThan", _LT, False),
            ("LessThanEquals", _LE, False), ("GreaterThan", _GT, False),
            ("GreaterThanEquals", _GE, False),
        )
    },
    "Bool": (_BOOL, _EQ, False),
    "BinaryEquals": (_BIN, _EQ, False),
    "IpAddress": (_IP, _EQ, False),
    "NotIpAddress": (_IP, _EQ, True),
    # AWS: ArnEquals and ArnLike both compare the six ARN fields with wildcards.
    "ArnEquals": (_ARN, _EQ, False),
    "ArnLike": (_ARN, _EQ, False),
    "ArnNotEquals": (_ARN, _EQ, True),
    "ArnNotLike": (_ARN, _EQ, True),
    "Null": (_NULL, _EQ, False),
}  # fmt: skip
_ANY, _ALL = "ForAnyValue:", "ForAllValues:"
_IF_EXISTS: Final = "IfExists"

_COMPARE: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    _EQ: lambda a, b: a == b,
    _LT: lambda a, b: a < b,
    _LE: lambda a, b: a <= b,
    _GT: lambda a, b: a > b,
    _GE: lambda a, b: a >= b,
}
# Keys whose fixed value limits a grant to known callers, so an allow to
# everyone that tests one of them does not make a bucket public (AWS's
# "meaning of public").
_NON_PUBLIC_KEYS: Final = frozenset(
    {
        "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceowner",
        "aws:sourceaccount", "aws:principalarn", "aws:principalaccount", "aws:principalorgid",
        "aws:userid", "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:dataaccesspointarn", "s3:dataaccesspointaccount",
    }
)  # fmt: skip


def _number(text: str) -> Decimal | None:
    try:
        n = Decimal(text.strip())
    except InvalidOperation:
        return None
    return n if n.is_finite() else None


def _instant(text: str) -> datetime | None:
    """A W3C/ISO 8601 time or epoch seconds (AWS accepts both for dates)."""
    text = text.strip()
    n = _number(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None
    if n is not None:
        try:
            return datetime.fromtimestamp(float(n), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _arn_fields(text: str) -> list[str] | None:
    parts = text.split(":", 5)
    return parts if len(parts) == 6 and parts[0] == "arn" else None


@dataclass(frozen=True)
class Condition:
    """One (operator, key) pair of a ``Condition`` block with its values,
    compiled for its family: ``patterns`` (string, like and ARN families,
    which may hold policy variables) or ``operands`` (numbers, times,
    networks, bytes, booleans)."""

    operator: str  # as written
    key: str  # lowercased
    family: str
    compare: str
    negated: bool
    if_exists: bool
    qualifier: str  # "", _ANY or _ALL
    known_key: bool
    patterns: tuple[Template, ...] = ()
    operands: tuple[Any, ...] = ()

    def holds(self, ctx: RequestContext) -> bool:
        if not self.known_key:
            return False  # AWS: a key nobody defines never matches
        values = key_values(ctx, self.key)
        if self.family == _NULL:
            return (not values) in self.operands
        if not values:
            if self.if_exists or self.qualifier == _ALL:
                return True
            if self.qualifier == _ANY:
                return False
            return self.negated
        if self.qualifier == _ALL or (not self.qualifier and self.negated):
            return all(self._one(v, ctx) != self.negated for v in values)
        return any(self._one(v, ctx) != self.negated for v in values)

    def _one(self, value: str, ctx: RequestContext) -> bool:
        """Does the request's ``value`` match any of the policy's values
        (the positive form of the operator)?"""
        family = self.family
        if family in (_STR, _STR_IC, _LIKE):
            folded = value.casefold() if family == _STR_IC else value
            for t in self.patterns:
                resolved = t.resolve(ctx)
                if resolved is None:
                    continue
                text, literal = resolved
                if family == _LIKE:
                    if Glob(text, False, literal).fullmatch(value):
                        return True
                elif (text.casefold() if family == _STR_IC else text) == folded:
                    return True
            return False
        if family == _ARN:
            fields_ = _arn_fields(value)
            if fields_ is None:
                return False
            for t in self.patterns:
                resolved = t.resolve(ctx)
                if resolved is None:
                    continue
                text, literal = resolved
                want = _arn_fields(text)
                if want is not None and all(
                    Glob(w, False, frozenset(i - _offset(want, n) for i in literal)).fullmatch(f)
                    for n, (w, f) in enumerate(zip(want, fields_, strict=True))
                ):
                    return True
            return False
        if family == _NUM:
            n = _number(value)
            cmp = _COMPARE[self.compare]
            return n is not None and any(cmp(n, o) for o in self.operands)
        if family == _DATE:
            when = _instant(value)
            cmp = _COMPARE[self.compare]
            return when is not None and any(cmp(when, o) for o in self.operands)
        if family == _BOOL:
            return value.lower() in self.operands
        if family == _BIN:
            return value.encode("utf-8") in self.operands
        # _IP
        addr = _ip(value)
        return addr is not None and any(addr in net for net in self.operands)

    def restricts_public(self) -> bool:
        """Does this condition limit an allow to fixed, known callers?"""
        if self.negated or self.if_exists or self.qualifier == _ALL or not self.known_key:
            return False
        if self.key == "aws:sourceip":
            return self.family == _IP and all(net.prefixlen > 0 for net in self.operands)
        if self.key not in _NON_PUBLIC_KEYS or self.family not in (_STR, _LIKE, _ARN):
            return False
        for t in self.patterns:
            resolved = t.resolve(None)
            if resolved is None or Glob(resolved[0], False, resolved[1]).has_wildcards:
                return False
        return True


def _offset(fields_: list[str], n: int) -> int:
    """Where ARN field ``n`` starts in the joined text."""
    return sum(len(f) + 1 for f in fields_[:n])


@dataclass(frozen=True)
class Principals:
    """Who a ``Principal``/``NotPrincipal`` names: everyone (anonymous
    included), every key of the account, or these access keys."""

    everyone: bool = False
    account: bool = False
    keys: frozenset[str] = frozenset()
    canonical_ids: frozenset[str] = frozenset()

    def covers(self, principal: str | None, canonical: str | None = None) -> bool:
        if self.everyone:
            return True
        if principal is None:
            return False
        return self.account or principal in self.keys or canonical in self.canonical_ids


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[Glob, ...]
    resources: tuple[Resource, ...]
    # None: an identity policy statement (applies to the key holding it);
    # otherwise whom it names (``not_principal``: everyone but them).
    principals: Principals | None
    conditions: tuple[Condition, ...]
    not_action: bool = False
    not_resource: bool = False
    not_principal: bool = False

    def covers_principal(
        self, principal: str | None, admin: bool = False, canonical: str | None = None
    ) -> bool:
        p = self.principals
        if p is None:
            return True
        if not self.not_principal:
            return p.covers(principal, canonical)
        # NotPrincipal (Deny only) exempts exactly whom it names. AWS asks
        # to name the account next to its user ("check the account, then the
        # user"); naming the account there exempts the account root (the
        # admin), never every key of it.
        exempt = p.everyone or (
            principal is not None
            and (principal in p.keys or canonical in p.canonical_ids or (p.account and admin))
        )
        return not exempt

    def covers_action(self, actions: tuple[str, ...]) -> bool:
        hit = any(p.fullmatch(a) for p in self.actions for a in actions)
        return hit != self.not_action

    def applies(self, ctx: RequestContext) -> bool:
        if not self.covers_principal(ctx.principal, ctx.admin, ctx.canonical_id):
            return False
        if not self.covers_action(ctx.actions):
            return False
        if any(r.matches(ctx) for r in self.resources) == self.not_resource:
            return False
        return all(c.holds(ctx) for c in self.conditions)

    def is_public(self) -> bool:
        """An allow that reaches anonymous callers and that no condition
        limits to fixed, known callers (AWS's "meaning of public")."""
        if not self.allow or self.principals is None or not self.covers_principal(None):
            return False
        return not any(c.restricts_public() for c in self.conditions)


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    source: str  # the document as given, to store and hand back

    def explicit_deny(self, ctx: RequestContext) -> bool:
        return any(not s.allow and s.applies(ctx) for s in self.statements)

    def allows(self, ctx: RequestContext) -> bool:
        return any(s.allow and s.applies(ctx) for s in self.statements)

    def may_allow(self, action: str, principal: str | None) -> bool:
        """Could any allow statement grant ``action`` to ``principal``
        (ignoring resources and conditions)? For operations authorised per
        object later, so hopeless requests are refused before their body."""
        for s in self.statements:
            if not s.allow:
                continue
            if s.principals is None and principal is None:
                continue  # a key's own policy never speaks for anonymous
            if s.covers_principal(principal) and s.covers_action((action,)):
                return True
        return False

    def is_public(self) -> bool:
        """Does the policy grant anything to anonymous callers that no
        condition limits to fixed, known callers? (GetBucketPolicyStatus)"""
        return any(s.is_public() for s in self.statements)

    def allows_anonymous(self, ctx: RequestContext) -> bool:
        """An allow of a bucket policy that covers anonymous callers."""
        return any(
            s.allow and s.principals is not None and s.covers_principal(None) and s.applies(ctx)
            for s in self.statements
        )


ALLOW = "allow"
DENY = "deny"  # explicit
IMPLICIT_DENY = "implicit-deny"


def decide(ctx: RequestContext, key_policy: Policy, bucket_policy: Policy | None) -> str:
    """A signed request by a (non-admin) key: deny beats allow, and the
    key's own policy is the ceiling (SPEC §5 "access").

    Unlike AWS's same-account rule, an allow in the bucket policy does not
    widen a key beyond its own policy: otherwise a key allowed to write a
    bucket's policy could grant writes to a key created ``ro``. A bucket
    policy can only narrow what keys may do, or open a bucket to anonymous
    readers (``Policy.allows_anonymous``)."""
    if key_policy.explicit_deny(ctx) or (
        bucket_policy is not None and bucket_policy.explicit_deny(ctx)
    ):
        return DENY
    return ALLOW if key_policy.allows(ctx) else IMPLICIT_DENY


def decide_with_acl(
    ctx: RequestContext,
    key_policy: Policy | None,
    bucket_policy: Policy | None,
    acl_grants: bool,
) -> str:
    """Policies and ACLs together (``acl_grants``: the bucket's or object's
    ACL gives the requester the permission the operation needs,
    ``protocol/acl.py``), for a key (``key_policy``) or an anonymous
    request (``ctx.principal`` None, ``key_policy`` None).

    As AWS: an explicit deny in any policy wins over every allow and every
    ACL grant. Otherwise an anonymous request is allowed by a bucket-policy
    allow to ``"*"`` or by an ACL grant; a key is allowed exactly as
    ``decide`` says — its own policy is the ceiling, so an ACL grant, like a
    bucket-policy allow, never widens it (SPEC §5; AWS would let the grant
    alone suffice)."""
    if ctx.principal is not None:
        assert key_policy is not None
        return decide(ctx, key_policy, bucket_policy)
    if bucket_policy is not None and bucket_policy.explicit_deny(ctx):
        return DENY
    if acl_grants or (bucket_policy is not None and bucket_policy.allows_anonymous(ctx)):
        return ALLOW
    return IMPLICIT_DENY


# ---- parsing ---------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise PolicyError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _load(text: str | bytes) -> tuple[dict[str, Any], str]:
    raw = text.encode() if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError("policy is not UTF-8") from None
    try:
        doc = json.loads(decoded, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except PolicyError:
        raise
    except (ValueError, RecursionError):
        raise PolicyError("policy is not valid JSON") from None
    if not isinstance(doc, dict):
        raise PolicyError("policy must be a JSON object")
    return doc, decoded


def _refuse_constant(name: str) -> Any:
    raise PolicyError(f"{name} is not allowed in a policy")


def _strings(value: Any, what: str, *, allow_single: bool = True) -> list[str]:
    items = [value] if allow_single and isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise PolicyError(f"{what} must be a string or a non-empty list of strings")
    if len(items) > MAX_LIST_ITEMS:
        raise PolicyError(f"{what} has more than {MAX_LIST_ITEMS} entries")
    if not all(isinstance(v, str) and v for v in items):
        raise PolicyError(f"{what} must contain only non-empty strings")
    return list(items)


def _check_fields(obj: Mapping[str, Any], allowed: set[str], required: set[str], what: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise PolicyError(f"{what}: unsupported field(s) {', '.join(sorted(unknown))}")
    missing = required - set(obj)
    if missing:
        raise PolicyError(f"{what}: missing {', '.join(sorted(missing))}")


def _one_of(st: Mapping[str, Any], a: str, b: str, *, required: bool) -> tuple[Any, bool]:
    """The value of element ``a`` or its negation ``b`` (exactly one)."""
    if a in st and b in st:
        raise PolicyError(f"a Statement cannot have both {a} and {b}")
    if b in st:
        return st[b], True
    if a not in st:
        if required:
            raise PolicyError(f"Statement: missing {a} (or {b})")
        return None, False
    return st[a], False


def _action(name: str, *, prefixed: bool) -> Glob:
    if prefixed:
        if name == "*":
            return _glob("*")
        lower = name.lower()
        prefix = next((p for p in _ACTION_PREFIXES if lower.startswith(p)), None)
        if prefix is None:
            raise PolicyError(f"action {name!r}: only s3: actions are supported")
        name = name[len(prefix) :]
    pattern = _glob(name, ignore_case=True)
    if not any(pattern.fullmatch(a) for a in KNOWN_ACTIONS):
        raise PolicyError(f"unknown action {name!r}")
    return pattern


def _condition_values(value: Any, what: str) -> list[str]:
    """Condition values: a string, number or boolean, or a list of them
    (AWS writes booleans and numbers both quoted and bare)."""
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_LIST_ITEMS:
        raise PolicyError(f"{what} must have 1..{MAX_LIST_ITEMS} values")
    out = []
    for v in items:
        if isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, int | float):
            out.append(str(v))
        elif isinstance(v, str):
            out.append(v)
        else:
            raise PolicyError(f"{what}: values must be strings, numbers or booleans")
    return out


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise PolicyError(f"{text!r} is not an IP address or CIDR block") from None


def _operand(family: str, text: str, operator: str) -> Any:
    if family == _NUM:
        n = _number(text)
        if n is None:
            raise PolicyError(f"{operator}: {text!r} is not a number")
        return n
    if family == _DATE:
        t = _instant(text)
        if t is None:
            raise PolicyError(f"{operator}: {text!r} is not an ISO 8601 time or epoch seconds")
        return t
    if family in (_BOOL, _NULL):
        if text.lower() not in ("true", "false"):
            raise PolicyError(f"{operator} takes true or false, not {text!r}")
        return text.lower() if family == _BOOL else text.lower() == "true"
    if family == _BIN:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise PolicyError(f"{operator}: {text!r} is not base64") from None
    return _network(text)  # _IP


def _condition(operator: str, key: str, values: list[str], *, variables: bool = True) -> Condition:
    """Compile one (operator, key) of a Condition block. Unknown operators
    are refused; unknown keys are accepted and never match (as AWS)."""
    base, qualifier = operator, ""
    for q in (_ANY, _ALL):
        if base.startswith(q):
            base, qualifier = base[len(q) :], q
    if_exists = base.endswith(_IF_EXISTS) and base != _IF_EXISTS
    if if_exists:
        base = base[: -len(_IF_EXISTS)]
    if base not in OPERATORS or (base == "Null" and (if_exists or qualifier)):
        raise PolicyError(f"unknown condition operator {operator!r}")
    if not isinstance(key, str) or not key:
        raise PolicyError(f"{operator}: condition keys must be non-empty strings")
    lkey = key.lower()
    family, compare, negated = OPERATORS[base]
    known = is_known_key(lkey)

    def make(patterns: tuple[Template, ...] = (), operands: tuple[Any, ...] = ()) -> Condition:
        return Condition(
            operator, lkey, family, compare, negated, if_exists, qualifier, known,
            patterns, operands,
        )  # fmt: skip

    if family in (_STR, _STR_IC, _LIKE, _ARN):
        patterns = tuple(_template(v, variables) for v in values)
        if family == _ARN:
            for t, v in zip(patterns, values, strict=True):
                if not t.variable and _arn_fields(v) is None and v != "*":
                    raise PolicyError(f"{operator}: {v!r} is not an ARN")
            # A lone "*" matches any ARN: every field a wildcard.
            patterns = tuple(
                Template(("arn:*:*:*:*:*",)) if v == "*" else t
                for t, v in zip(patterns, values, strict=True)
            )
        return make(patterns=patterns)
    operands = tuple(_operand(family, v, operator) for v in values)
    return make(operands=operands)


def _aws_conditions(block: Any, variables: bool) -> tuple[Condition, ...]:
    if not isinstance(block, dict):
        raise PolicyError("Condition must be an object")
    out = []
    for operator, tests in block.items():
        if not isinstance(tests, dict) or not tests:
            raise PolicyError(f"Condition {operator!r} must map keys to values")
        for key, value in tests.items():
            values = _condition_values(value, f"Condition {operator} {key}")
            out.append(_condition(operator, key, values, variables=variables))
    if len(out) > MAX_LIST_ITEMS:
        raise PolicyError("too many conditions")
    return tuple(out)


_ACCESS_KEY: Final = re.compile(r"[A-Za-z0-9._@+=-]{1,128}")
_ACCOUNT: Final = re.compile(r"\d{12}")
_CANONICAL_ID: Final = re.compile(r"[0-9a-f]{64}")
_IAM_ARN: Final = re.compile(r"arn:aws:(iam|sts)::(\d{12}|\*):(.+)")
# Principal types AWS defines; only "AWS" and "CanonicalUser" can name a
# Seglake caller.
_PRINCIPAL_TYPES: Final = ("AWS", "CanonicalUser", "Service", "Federated")


def _aws_principal(value: Any) -> Principals:
    if value == "*":
        return Principals(everyone=True)
    if not isinstance(value, dict) or not value or not set(value) <= set(_PRINCIPAL_TYPES):
        raise PolicyError(
            'Principal must be "*" or an object of AWS, CanonicalUser, Service or Federated'
        )
    everyone = account = False
    keys: set[str] = set()
    canonical: set[str] = set()
    for kind, raw in value.items():
        for name in _strings(raw, f"Principal {kind}"):
            if kind in ("Service", "Federated"):
                continue  # no Seglake request comes from one
            if kind == "CanonicalUser":
                # A key's canonical id (64 hex digits, as GetBucketAcl shows
                # it); an access key id is accepted too, as before keys had
                # canonical ids of their own.
                (canonical if _CANONICAL_ID.fullmatch(name) else keys).add(name)
                continue
            if name == "*":
                everyone = True
            elif _ACCOUNT.fullmatch(name):
                account = True
            elif m := _IAM_ARN.fullmatch(name):
                service, _, rest = m.groups()
                if service == "iam" and rest == "root":
                    account = True
                elif service == "iam" and rest.startswith("user/"):
                    # arn:aws:iam::<account>:user/[path/]<access key id>
                    keys.add(rest.rsplit("/", 1)[1])
                # roles, assumed-role sessions, groups: nothing Seglake has
            elif _ACCESS_KEY.fullmatch(name):
                keys.add(name)
            else:
                raise PolicyError(
                    f"unsupported principal {name!r}: use an access key id, an IAM ARN or *"
                )
    return Principals(
        everyone=everyone, account=account, keys=frozenset(keys), canonical_ids=frozenset(canonical)
    )


def _aws_resource(text: str, bucket: str | None, variables: bool) -> Resource:
    """``*`` or an S3 ARN. In a bucket policy, one naming another bucket is
    kept: it can never match, since that policy is only ever consulted for
    requests on its own bucket."""
    if text == "*":
        return Resource(everything=True)
    if not text.startswith(_ARN_PREFIX) or len(text) == len(_ARN_PREFIX):
        raise PolicyError(f"unsupported resource {text!r}: use arn:aws:s3:::bucket[/key]")
    rest = text[len(_ARN_PREFIX) :]
    if rest == "*":
        return Resource(everything=True)
    return Resource(arn=Pattern(_template(rest, variables)))


def _parse_aws(doc: Mapping[str, Any], bucket: str | None) -> tuple[Statement, ...]:
    _check_fields(doc, {"Version", "Id", "Statement"}, {"Statement"}, "policy")
    # A document without Version is 2008-10-17, as in AWS.
    version = doc.get("Version", "2008-10-17")
    if version not in _AWS_VERSIONS:
        raise PolicyError(f"unsupported policy Version {version!r}")
    if "Id" in doc and not isinstance(doc["Id"], str):
        raise PolicyError("Id must be a string")
    variables = version == _VERSION_WITH_VARIABLES
    raw = doc["Statement"]
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items or len(items) > MAX_STATEMENTS:
        raise PolicyError(f"Statement must be an object or a list of 1..{MAX_STATEMENTS}")
    out = []
    for st in items:
        if not isinstance(st, dict):
            raise PolicyError("each Statement must be an object")
        fields_ = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                   "Condition", "Principal", "NotPrincipal"}  # fmt: skip
        _check_fields(st, fields_, {"Effect"}, "Statement")
        if "Sid" in st and not isinstance(st["Sid"], str):
            raise PolicyError("Sid must be a string")
        if st["Effect"] not in ("Allow", "Deny"):
            raise PolicyError("Effect must be Allow or Deny")
        principals: Principals | None = None
        not_principal = False
        if bucket is None:
            if "Principal" in st or "NotPrincipal" in st:
                raise PolicyError("a key's own policy cannot name a Principal")
        else:
            value, not_principal = _one_of(st, "Principal", "NotPrincipal", required=True)
            if not_principal and st["Effect"] != "Deny":
                # AWS: NotPrincipal is for Deny only; an Allow of "everyone
                # but" would also grant anonymous callers.
                raise PolicyError("NotPrincipal can only be used with Effect Deny")
            principals = _aws_principal(value)
        value, not_action = _one_of(st, "Action", "NotAction", required=True)
        actions = tuple(_action(a, prefixed=True) for a in _strings(value, "Action"))
        value, not_resource = _one_of(st, "Resource", "NotResource", required=True)
        resources = tuple(_aws_resource(r, bucket, variables) for r in _strings(value, "Resource"))
        conds = _aws_conditions(st["Condition"], variables) if "Condition" in st else ()
        out.append(
            Statement(
                st["Effect"] == "Allow", actions, resources, principals, conds,
                not_action=not_action, not_resource=not_resource, not_principal=not_principal,
            )
        )  # fmt: skip
    return tuple(out)


def _v1_conditions(block: Any) -> tuple[Condition, ...]:
    if not isinstance(block, dict):
        raise PolicyError("conditions must be an object")
    allowed = {"source_ip", "before", "after", "headers", "prefix", "delimiter", "secure_transport"}
    _check_fields(block, allowed, set(), "conditions")
    out = []

    def add(operator: str, key: str, values: list[str]) -> None:
        out.append(_condition(operator, key, values, variables=False))

    if "source_ip" in block:
        add("IpAddress", "aws:SourceIp", _strings(block["source_ip"], "source_ip"))
    if "after" in block:
        add("DateGreaterThan", "aws:CurrentTime", _strings(block["after"], "after"))
    if "before" in block:
        add("DateLessThan", "aws:CurrentTime", _strings(block["before"], "before"))
    if "prefix" in block:
        add("StringLike", "s3:prefix", _strings(block["prefix"], "prefix"))
    if "delimiter" in block:
        add("StringEquals", "s3:delimiter", _strings(block["delimiter"], "delimiter"))
    if "secure_transport" in block:
        value = block["secure_transport"]
        if not isinstance(value, bool):
            raise PolicyError("secure_transport must be true or false")
        add("Bool", "aws:SecureTransport", ["true" if value else "false"])
    if "headers" in block:
        headers = block["headers"]
        if not isinstance(headers, dict) or not headers or len(headers) > MAX_LIST_ITEMS:
            raise PolicyError("headers must map header names to values")
        for name, value in headers.items():
            if not name:
                raise PolicyError("headers need a header name")
            values = _strings(value, f"headers {name}")
            add("StringEquals", _HEADER_KEY_PREFIX + name.lower(), values)
    return tuple(out)


def _v1_resource(obj: Any, bucket: str | None) -> Resource:
    if not isinstance(obj, dict):
        raise PolicyError("each resource must be an object")
    _check_fields(obj, {"bucket", "prefix"}, {"bucket"}, "resource")
    name, prefix = obj["bucket"], obj.get("prefix", "")
    if not isinstance(name, str) or not name or not isinstance(prefix, str):
        raise PolicyError("resource bucket and prefix must be strings")
    if name != "*" and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name):
        raise PolicyError(f"resource bucket {name!r} is not a bucket name or *")
    if bucket is not None and name != bucket:
        raise PolicyError(f"resource bucket {name!r} is not {bucket!r}")
    if name == "*" and not prefix:
        return Resource(everything=True)
    return Resource(bucket=name, prefix=prefix)


def _parse_v1(doc: Mapping[str, Any], bucket: str | None) -> tuple[Statement, ...]:
    _check_fields(doc, {"version", "statements"}, {"version", "statements"}, "policy")
    items = doc["statements"]
    if not isinstance(items, list) or not items or len(items) > MAX_STATEMENTS:
        raise PolicyError(f"statements must be a list of 1..{MAX_STATEMENTS}")
    out = []
    for st in items:
        if not isinstance(st, dict):
            raise PolicyError("each statement must be an object")
        fields_ = {"effect", "actions", "resources", "conditions", "principals"}
        _check_fields(st, fields_, {"effect", "actions"}, "statement")
        effect = st["effect"]
        if not isinstance(effect, str) or effect.lower() not in ("allow", "deny"):
            raise PolicyError("effect must be allow or deny")
        actions = tuple(
            _action(a, prefixed=False)
            for a in _strings(st["actions"], "actions", allow_single=False)
        )
        if "resources" in st:
            raw = st["resources"]
            if not isinstance(raw, list) or not raw or len(raw) > MAX_LIST_ITEMS:
                raise PolicyError("resources must be a non-empty list")
            resources = tuple(_v1_resource(r, bucket) for r in raw)
        elif bucket is not None:
            resources = (Resource(bucket=bucket),)
        else:
            resources = (Resource(everything=True),)
        principals: Principals | None = None
        if bucket is not None:
            principals = (
                _aws_principal({"AWS": st["principals"]})
                if "principals" in st
                else Principals(everyone=True)
            )
        elif "principals" in st:
            raise PolicyError("a key's own policy cannot name principals")
        conds = _v1_conditions(st["conditions"]) if "conditions" in st else ()
        out.append(Statement(effect.lower() == "allow", actions, resources, principals, conds))
    return tuple(out)


def _shorthand(name: str) -> Policy | None:
    everything = (Resource(everything=True),)
    if name == "rw":
        # Every action but changing who may do what: a bucket policy is the
        # admin's (or a key's whose policy names the action explicitly).
        return Policy(
            (
                Statement(True, (_glob("*"),), everything, None, ()),
                Statement(False, tuple(_glob(a) for a in RW_EXCLUDED), everything, None, ()),
            ),
            "rw",
        )
    if name in ("ro", "read-only"):
        actions = tuple(_glob(a) for a in sorted(READ_ONLY_ACTIONS))
        return Policy((Statement(True, actions, everything, None, ()),), "ro")
    return None


def parse_key_policy(text: str | bytes) -> Policy:
    """A key's own (identity) policy: ``rw``, ``ro``, or a JSON document."""
    if isinstance(text, str | bytes) and len(text) <= 16:
        short = _shorthand(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
        if short is not None:
            return short
    return _parse(text, None)


def parse_bucket_policy(text: str | bytes, bucket: str) -> Policy:
    """A bucket policy: every statement names its principals; resources of
    other buckets are accepted and never match."""
    return _parse(text, bucket)


def _parse(text: str | bytes, bucket: str | None) -> Policy:
    doc, decoded = _load(text)
    if "Statement" in doc or "Version" in doc:
        statements = _parse_aws(doc, bucket)
    elif doc.get("version") == "v1":
        statements = _parse_v1(doc, bucket)
    else:
        raise PolicyError('unknown policy format: expected "version": "v1" or AWS "Version"')
    # Stored and handed back as the client wrote it (GetBucketPolicy).
    return Policy(statements, decoded)


def deny_everything() -> Policy:
    """A policy that explicitly denies every request from everyone: what a
    damaged stored policy is replaced with, so damage only narrows access."""
    return Policy(
        (
            Statement(
                False, (_glob("*"),), (Resource(everything=True),), Principals(everyone=True), ()
            ),
        ),
        "",
    )
