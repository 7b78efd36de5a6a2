"""Access policies: parsing and evaluation (pure, sans-IO).

Rules this module keeps:

* Two document formats are accepted, and nothing else:
  - Seglake v1: ``{"version": "v1", "statements": [{"effect", "actions",
    "resources": [{"bucket", "prefix"}], "conditions", "principals"}]}``;
  - the AWS-style subset: ``Version``/``Id``/``Statement`` with ``Sid``,
    ``Effect``, ``Action``, ``Resource``, ``Principal`` (bucket policies
    only) and ``Condition``.
  Key policies may also be the shorthands ``rw`` and ``ro`` (``read-only``).
* Anything this module does not understand — an unknown action, field,
  condition operator or key, principal form or resource form, a duplicated
  JSON key — is a ``PolicyError`` at parse time (``MalformedPolicy`` when
  stored). Nothing is ever silently ignored, because an ignored ``Deny`` or
  an ignored condition widens access.
* Evaluation follows AWS's same-account logic: an explicit deny in any
  applicable policy wins; otherwise one allow in any of them is enough;
  otherwise the request is denied. A condition whose key the request does
  not carry is false, so an allow never applies by accident (and a deny on
  such a condition does not apply either — as in AWS).
* Every limit is explicit so that a hostile document cannot make parsing or
  evaluation expensive (``MAX_POLICY_BYTES``, ``MAX_STATEMENTS``,
  ``MAX_LIST_ITEMS``; wildcards are matched without backtracking blow-up).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from seglake.protocol.endpoints import BUCKET, ENDPOINTS, OWN_OPERATIONS, SERVICE

# AWS caps a bucket policy at 20 KiB; a key policy gets the same bound.
MAX_POLICY_BYTES: Final = 20 * 1024
# Bounds on the parts of one document, far above any hand-written policy.
MAX_STATEMENTS: Final = 100
MAX_LIST_ITEMS: Final = 100

# What each operation means to a policy, read from the one endpoint table
# (``protocol/endpoints.py``, which says why each fact is so).
# Policy action names (without the ``s3:`` prefix) each operation needs; a
# statement applies when one of its action patterns matches any of them.
OPERATION_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    **{e.name: e.actions for e in ENDPOINTS},
    **{name: (name,) for name in OWN_OPERATIONS},
}
# Operations that name no bucket: only a resource of "*" (or the v1
# wildcard bucket) covers them.
SERVICE_OPERATIONS: Final = frozenset(
    {e.name for e in ENDPOINTS if e.target == SERVICE} | set(OWN_OPERATIONS)
)
# Operations whose resource is the bucket, not an object in it.
BUCKET_OPERATIONS: Final = frozenset(e.name for e in ENDPOINTS if e.target == BUCKET)
# Operations whose request has the listing keys s3:prefix and s3:delimiter.
LISTING_OPERATIONS: Final = frozenset(e.name for e in ENDPOINTS if e.listing)
# A request naming a version (``versionId``) also is AWS's version action, so
# an allow of either grants and a deny of either refuses it. (AWS asks for
# the version action alone; accepting the plain one too keeps v1 policies,
# which have no version actions, working on versioned buckets.)
VERSION_ACTIONS: Final[dict[str, str]] = {
    e.name: e.version_action for e in ENDPOINTS if e.version_action is not None
}
KNOWN_ACTIONS: Final = frozenset(
    {name for names in OPERATION_ACTIONS.values() for name in names} | set(VERSION_ACTIONS.values())
)
# The ``ro`` shorthand: every action that only reads.
READ_ONLY_ACTIONS: Final = frozenset(
    {a for e in ENDPOINTS if e.granted_by_ro for a in (*e.actions, e.version_action) if a}
    | {name for name, read_only in OWN_OPERATIONS.items() if read_only}
)
# Not part of the ``rw`` shorthand: actions that change who may do what.
RW_EXCLUDED: Final = ("PutBucketPolicy", "DeleteBucketPolicy")
# Action prefixes of the AWS-style format; Seglake's own endpoints may also
# be named in their own namespace.
_ACTION_PREFIXES: Final = ("s3:", "seglake:")
_ARN_PREFIX: Final = "arn:aws:s3:::"
_AWS_VERSIONS: Final = ("2012-10-17", "2008-10-17")

# Condition operators and the keys each may test (SPEC §6, plus the negated
# IP form, which deny statements need to say "from anywhere but ...").
_CONDITION_KEYS: Final[dict[str, frozenset[str]]] = {
    "IpAddress": frozenset({"aws:sourceip"}),
    "NotIpAddress": frozenset({"aws:sourceip"}),
    "DateGreaterThan": frozenset({"aws:currenttime"}),
    "DateLessThan": frozenset({"aws:currenttime"}),
    "StringEquals": frozenset({"s3:prefix", "s3:delimiter"}),
    "StringLike": frozenset({"s3:prefix"}),
    "Bool": frozenset({"aws:securetransport"}),
}
# Exact request-header match in the AWS-style format (the v1 ``headers``
# condition): ``StringEquals {"seglake:RequestHeader/x-tenant": "alpha"}``.
_HEADER_KEY_PREFIX: Final = "seglake:requestheader/"


class PolicyError(ValueError):
    """The document is not a policy Seglake can enforce exactly."""


# ---- the request being decided --------------------------------------------


@dataclass(frozen=True)
class RequestContext:
    """What a decision may look at. ``principal`` is the access key id, or
    None for an anonymous request; ``prefix``/``delimiter`` are the listing
    parameters (None when the request has none); ``headers`` lowercased;
    ``version_id`` the object version the request names, if any."""

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

    @property
    def actions(self) -> tuple[str, ...]:
        names = OPERATION_ACTIONS.get(self.operation, ())
        if self.version_id is not None and self.operation in VERSION_ACTIONS:
            return (*names, VERSION_ACTIONS[self.operation])
        return names


# ---- compiled policy -------------------------------------------------------


@dataclass(frozen=True)
class Glob:
    """An AWS wildcard pattern: ``*`` any run of characters, ``?`` one.

    Matched by the greedy two-pointer walk (back to the last ``*`` on a
    mismatch), which is O(len(pattern) * len(text)) at worst. A regex of
    ``.*`` runs would backtrack exponentially on a hostile object key.
    """

    pattern: str
    ignore_case: bool = False

    def fullmatch(self, text: str) -> bool:
        p = self.pattern
        s = text.lower() if self.ignore_case else text
        i = j = 0
        star, mark = -1, 0
        while i < len(s):
            if j < len(p) and (p[j] == "?" or p[j] == s[i]):
                i += 1
                j += 1
            elif j < len(p) and p[j] == "*":
                star, mark = j, i
                j += 1
            elif star >= 0:
                j = star + 1
                mark += 1
                i = mark
            else:
                return False
        while j < len(p) and p[j] == "*":
            j += 1
        return j == len(p)


def _glob(pattern: str, *, ignore_case: bool = False) -> Glob:
    return Glob(pattern.lower() if ignore_case else pattern, ignore_case)


@dataclass(frozen=True)
class Resource:
    """Either a v1 ``{"bucket", "prefix"}`` or an AWS ARN glob.

    ``arn`` matches ``bucket`` for bucket operations and ``bucket/key`` for
    object operations; ``"*"`` (or the v1 bucket ``"*"``) also covers the
    service operations. A v1 prefix limits object keys and, for listings,
    the listed prefix.
    """

    arn: Glob | None = None
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
            return self.arn.fullmatch(target)
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


@dataclass(frozen=True)
class Condition:
    operator: str
    key: str  # lowercased
    values: tuple[str, ...]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    times: tuple[datetime, ...] = ()
    globs: tuple[Glob, ...] = ()

    def holds(self, ctx: RequestContext) -> bool:
        op = self.operator
        if op in ("IpAddress", "NotIpAddress"):
            if ctx.source_ip is None:
                return False
            inside = any(ctx.source_ip in net for net in self.networks)
            return inside if op == "IpAddress" else not inside
        if op == "DateGreaterThan":
            return any(ctx.now > t for t in self.times)
        if op == "DateLessThan":
            return any(ctx.now < t for t in self.times)
        if op == "Bool":
            return ("true" if ctx.secure_transport else "false") in self.values
        value = self._request_value(ctx)
        if value is None:
            return False
        if op == "StringLike":
            return any(g.fullmatch(value) for g in self.globs)
        return value in self.values  # StringEquals

    def _request_value(self, ctx: RequestContext) -> str | None:
        if self.key.startswith(_HEADER_KEY_PREFIX):
            return ctx.headers.get(self.key[len(_HEADER_KEY_PREFIX) :])
        if ctx.operation not in LISTING_OPERATIONS:
            return None
        if self.key == "s3:prefix":
            return ctx.prefix if ctx.prefix is not None else ""
        if self.key == "s3:delimiter":
            return ctx.delimiter
        return None


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[Glob, ...]
    resources: tuple[Resource, ...]
    # None: an identity policy statement (applies to the key holding it);
    # otherwise the access keys it applies to, "*" meaning everyone,
    # anonymous requests included.
    principals: tuple[str, ...] | None
    conditions: tuple[Condition, ...]

    def applies(self, ctx: RequestContext) -> bool:
        if (
            self.principals is not None
            and "*" not in self.principals
            and (ctx.principal is None or ctx.principal not in self.principals)
        ):
            return False
        if not any(p.fullmatch(a) for p in self.actions for a in ctx.actions):
            return False
        if not any(r.matches(ctx) for r in self.resources):
            return False
        return all(c.holds(ctx) for c in self.conditions)


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
            if s.principals is None:
                if principal is None:
                    continue  # a key's own policy never speaks for anonymous
            elif "*" not in s.principals and principal not in s.principals:
                continue
            if any(p.fullmatch(action) for p in s.actions):
                return True
        return False

    def grants_everyone(self) -> bool:
        """Does any allow statement name ``Principal: "*"``?"""
        return any(
            s.allow and s.principals is not None and "*" in s.principals for s in self.statements
        )

    def allows_anonymous(self, ctx: RequestContext) -> bool:
        """An allow that names everyone (``Principal: "*"``)."""
        return any(
            s.allow and s.principals is not None and "*" in s.principals and s.applies(ctx)
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


def _timestamp(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PolicyError(f"{text!r} is not an ISO 8601 time") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _condition(operator: str, key: str, values: list[str]) -> Condition:
    lkey = key.lower()
    if operator == "StringEquals" and lkey.startswith(_HEADER_KEY_PREFIX):
        name = lkey[len(_HEADER_KEY_PREFIX) :]
        if not name:
            raise PolicyError("seglake:RequestHeader/ needs a header name")
        return Condition(operator, lkey, tuple(values))
    if operator not in _CONDITION_KEYS:
        raise PolicyError(f"unsupported condition operator {operator!r}")
    if lkey not in _CONDITION_KEYS[operator]:
        raise PolicyError(f"condition key {key!r} is not supported with {operator}")
    if operator in ("IpAddress", "NotIpAddress"):
        try:
            nets = tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)
        except ValueError:
            raise PolicyError("aws:SourceIp needs CIDR blocks") from None
        return Condition(operator, lkey, tuple(values), networks=nets)
    if operator in ("DateGreaterThan", "DateLessThan"):
        return Condition(operator, lkey, tuple(values), times=tuple(map(_timestamp, values)))
    if operator == "Bool":
        lowered = tuple(v.lower() for v in values)
        if not set(lowered) <= {"true", "false"}:
            raise PolicyError("Bool conditions take true or false")
        return Condition(operator, lkey, lowered)
    if operator == "StringLike":
        return Condition(operator, lkey, tuple(values), globs=tuple(_glob(v) for v in values))
    return Condition(operator, lkey, tuple(values))


def _aws_conditions(block: Any) -> tuple[Condition, ...]:
    if not isinstance(block, dict) or not block:
        raise PolicyError("Condition must be a non-empty object")
    out = []
    for operator, tests in block.items():
        if not isinstance(tests, dict) or not tests:
            raise PolicyError(f"Condition {operator!r} must map keys to values")
        for key, value in tests.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            out.append(_condition(operator, key, _strings(value, f"Condition {operator} {key}")))
    if len(out) > MAX_LIST_ITEMS:
        raise PolicyError("too many conditions")
    return tuple(out)


def _aws_principal(value: Any) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if isinstance(value, dict) and set(value) == {"AWS"}:
        names = _strings(value["AWS"], "Principal AWS")
        for n in names:
            # An access key id: what a Seglake identity is called.
            if n != "*" and not re.fullmatch(r"[A-Za-z0-9._@+=-]{1,128}", n):
                raise PolicyError(f"unsupported principal {n!r}: use an access key id or *")
        return tuple(names)
    raise PolicyError('Principal must be "*" or {"AWS": access key id(s)}')


def _aws_resource(text: str, bucket: str | None) -> Resource:
    if text == "*":
        if bucket is not None:
            raise PolicyError(f'a bucket policy resource must name bucket {bucket!r}, not "*"')
        return Resource(everything=True)
    if not text.startswith(_ARN_PREFIX) or len(text) == len(_ARN_PREFIX):
        raise PolicyError(f"unsupported resource {text!r}: use arn:aws:s3:::bucket[/key]")
    rest = text[len(_ARN_PREFIX) :]
    if bucket is not None and rest.split("/", 1)[0] != bucket:
        raise PolicyError(f"resource {text!r} is outside bucket {bucket!r}")
    if rest == "*":
        return Resource(everything=True)
    return Resource(arn=_glob(rest))


def _parse_aws(doc: Mapping[str, Any], bucket: str | None) -> tuple[Statement, ...]:
    _check_fields(doc, {"Version", "Id", "Statement"}, {"Version", "Statement"}, "policy")
    if doc["Version"] not in _AWS_VERSIONS:
        raise PolicyError(f"unsupported policy Version {doc['Version']!r}")
    raw = doc["Statement"]
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items or len(items) > MAX_STATEMENTS:
        raise PolicyError(f"Statement must be an object or a list of 1..{MAX_STATEMENTS}")
    out = []
    for st in items:
        if not isinstance(st, dict):
            raise PolicyError("each Statement must be an object")
        fields_ = {"Sid", "Effect", "Action", "Resource", "Condition", "Principal"}
        required = {"Effect", "Action", "Resource"} | ({"Principal"} if bucket else set())
        _check_fields(st, fields_, required, "Statement")
        if "Sid" in st and not isinstance(st["Sid"], str):
            raise PolicyError("Sid must be a string")
        if st["Effect"] not in ("Allow", "Deny"):
            raise PolicyError("Effect must be Allow or Deny")
        if bucket is None and "Principal" in st:
            raise PolicyError("a key's own policy cannot name a Principal")
        principals = _aws_principal(st["Principal"]) if bucket is not None else None
        actions = tuple(_action(a, prefixed=True) for a in _strings(st["Action"], "Action"))
        resources = tuple(_aws_resource(r, bucket) for r in _strings(st["Resource"], "Resource"))
        conds = _aws_conditions(st["Condition"]) if "Condition" in st else ()
        out.append(Statement(st["Effect"] == "Allow", actions, resources, principals, conds))
    return tuple(out)


def _v1_conditions(block: Any) -> tuple[Condition, ...]:
    if not isinstance(block, dict):
        raise PolicyError("conditions must be an object")
    allowed = {"source_ip", "before", "after", "headers", "prefix", "delimiter", "secure_transport"}
    _check_fields(block, allowed, set(), "conditions")
    out = []
    if "source_ip" in block:
        out.append(
            _condition("IpAddress", "aws:SourceIp", _strings(block["source_ip"], "source_ip"))
        )
    if "after" in block:
        after = _strings(block["after"], "after")
        out.append(_condition("DateGreaterThan", "aws:CurrentTime", after))
    if "before" in block:
        before = _strings(block["before"], "before")
        out.append(_condition("DateLessThan", "aws:CurrentTime", before))
    if "prefix" in block:
        out.append(_condition("StringLike", "s3:prefix", _strings(block["prefix"], "prefix")))
    if "delimiter" in block:
        out.append(_condition("StringEquals", "s3:delimiter", _strings(block["delimiter"], "d")))
    if "secure_transport" in block:
        value = block["secure_transport"]
        if not isinstance(value, bool):
            raise PolicyError("secure_transport must be true or false")
        out.append(_condition("Bool", "aws:SecureTransport", ["true" if value else "false"]))
    if "headers" in block:
        headers = block["headers"]
        if not isinstance(headers, dict) or not headers or len(headers) > MAX_LIST_ITEMS:
            raise PolicyError("headers must map header names to values")
        for name, value in headers.items():
            values = _strings(value, f"headers {name}")
            out.append(_condition("StringEquals", _HEADER_KEY_PREFIX + name.lower(), values))
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
        principals: tuple[str, ...] | None = None
        if bucket is not None:
            principals = _aws_principal({"AWS": st["principals"]}) if "principals" in st else ("*",)
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
    """A bucket policy: every statement names principals and stays inside
    ``bucket``."""
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
    return Policy((Statement(False, (_glob("*"),), (Resource(everything=True),), ("*",), ()),), "")
