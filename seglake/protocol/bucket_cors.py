"""Per-bucket CORS (pure): the AWS CORSConfiguration schema, parsed,
validated, written back, and matched against browser requests.

Rules this file keeps:
- Parsing refuses what AWS refuses, with AWS's codes: a body that is not a
  CORSConfiguration of one or more CORSRule, each with at least one
  AllowedMethod and one AllowedOrigin and nothing but AWS's elements, is
  ``MalformedXML``; an AllowedMethod other than GET, PUT, POST, DELETE,
  HEAD, an AllowedOrigin or AllowedHeader with more than one ``*``, an
  ExposeHeader with any ``*``, or more than ``MAX_RULES`` rules is
  ``InvalidRequest``. Values are kept as written (GetBucketCors answers
  them back, case included).
- Matching is AWS's: the first rule whose AllowedOrigin matches the
  request's ``Origin``, whose AllowedMethod holds the request's method (for a
  preflight: ``Access-Control-Request-Method``) and, for a preflight only,
  whose AllowedHeader patterns cover every name in
  ``Access-Control-Request-Headers`` wins; later rules are never looked at.
  Methods compare exactly; header names and origins without regard to case
  (origins are case-insensitive, RFC 6454). One ``*`` in a pattern matches
  any run of characters, dots included.
- An ``Origin`` that is not a serialised origin (``scheme://host[:port]``)
  or ``null`` never matches, whatever the rules say: nothing that could split
  a header is ever echoed.
- The answer of a matching rule is exactly what AWS sends:
  ``Access-Control-Allow-Origin`` (``*`` when the rule's pattern that matched
  is ``*``, else the request's Origin with
  ``Access-Control-Allow-Credentials: true``), ``-Allow-Methods`` (the
  rule's methods), ``-Allow-Headers`` (a preflight's requested names,
  lower-cased), ``-Expose-Headers`` and ``-Max-Age`` (when the rule has
  them) and ``Vary: Origin, Access-Control-Request-Headers,
  Access-Control-Request-Method``. No match: no CORS header at all (a
  preflight is then refused by the caller with ``403 AccessForbidden``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from xml.etree.ElementTree import Element

from seglake.errors import S3Error
from seglake.protocol.xml import document, el
from seglake.protocol.xml_requests import children_by_name, document_root

MAX_RULES: Final = 100  # AWS's limit per configuration
MAX_ID_CHARS: Final = 255  # AWS's limit on a rule's ID
# AWS limits a CORS configuration to 64 KB.
MAX_BODY_BYTES: Final = 64 * 1024
METHODS: Final = ("GET", "PUT", "POST", "DELETE", "HEAD")
VARY: Final = b"Origin, Access-Control-Request-Headers, Access-Control-Request-Method"

_RULE_ELEMENTS: Final = (
    "ID", "AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader", "MaxAgeSeconds",
)  # fmt: skip
# A serialised origin (RFC 6454): scheme "://" host [":" port]; IPv6 bracketed.
_ORIGIN_RE: Final = re.compile(
    r"[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9_-]*[a-z0-9])?"
    r"(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*)(:[0-9]{1,5})?",
    re.IGNORECASE,
)
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-zA-Z-]+")  # RFC 9110 token

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class CorsRule:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str = ""

    def origin_answer(self, origin: str) -> str | None:
        """``Access-Control-Allow-Origin`` for ``origin`` under this rule, or None."""
        lowered = origin.lower()
        for pattern in self.allowed_origins:
            if pattern == "*":
                return "*"
            if _glob(pattern.lower(), lowered):
                return origin
        return None

    def headers_allowed(self, names: Iterable[str]) -> bool:
        patterns = [p.lower() for p in self.allowed_headers]
        return all(any(_glob(p, name) for p in patterns) for name in names)


@dataclass(frozen=True)
class CorsConfiguration:
    rules: tuple[CorsRule, ...]


# ---- parsing --------------------------------------------------------------------------


def _texts(found: dict[str, list[Element]], name: str) -> tuple[str, ...]:
    out = []
    for node in found.get(name, []):
        if len(node):
            raise S3Error("MalformedXML", message=f"{name} must hold text")
        out.append((node.text or "").strip())
    return tuple(out)


def _one(found: dict[str, list[Element]], name: str) -> str | None:
    values = _texts(found, name)
    if len(values) > 1:
        raise S3Error("MalformedXML", message=f"{name} given more than once")
    return values[0] if values else None


def _rule(node: Element) -> CorsRule:
    found = children_by_name(node, _RULE_ELEMENTS)
    origins = _texts(found, "AllowedOrigin")
    methods = _texts(found, "AllowedMethod")
    if not origins or not methods:
        raise S3Error(
            "MalformedXML", message="a CORSRule holds at least one AllowedOrigin and AllowedMethod"
        )
    for method in methods:
        if method not in METHODS:
            raise S3Error(
                "InvalidRequest",
                message="Found unsupported HTTP method in CORS config. "
                f"Unsupported method is {method}",
            )
    for origin in origins:
        if origin.count("*") > 1:
            raise S3Error(
                "InvalidRequest",
                message=f'AllowedOrigin "{origin}" can not have more than one wildcard.',
            )
    headers = _texts(found, "AllowedHeader")
    for header in headers:
        if header.count("*") > 1:
            raise S3Error(
                "InvalidRequest",
                message=f'AllowedHeader "{header}" can not have more than one wildcard.',
            )
    expose = _texts(found, "ExposeHeader")
    for header in expose:
        if "*" in header:
            raise S3Error(
                "InvalidRequest",
                message=f'ExposeHeader "{header}" contains wildcard. '
                "We currently do not support wildcard for ExposeHeader.",
            )
        if not _TOKEN_RE.fullmatch(header):
            raise S3Error(
                "InvalidRequest", message=f'ExposeHeader "{header}" contains invalid character.'
            )
    max_age_text = _one(found, "MaxAgeSeconds")
    max_age = None
    if max_age_text is not None:
        if not max_age_text.isdigit():
            raise S3Error("MalformedXML", message="MaxAgeSeconds must be a whole number")
        max_age = int(max_age_text)
    rule_id = _one(found, "ID") or ""
    if len(rule_id) > MAX_ID_CHARS:
        raise S3Error("InvalidArgument", message=f"ID is longer than {MAX_ID_CHARS} characters")
    return CorsRule(origins, methods, headers, expose, max_age, rule_id)


def parse_cors(body: bytes) -> CorsConfiguration:
    """``PutBucketCors``'s body → a validated configuration."""
    root = document_root(body, "CORSConfiguration", MAX_BODY_BYTES)
    nodes = children_by_name(root, ("CORSRule",)).get("CORSRule", [])
    if not nodes:
        raise S3Error("MalformedXML", message="a CORSConfiguration holds one or more CORSRule")
    if len(nodes) > MAX_RULES:
        raise S3Error(
            "InvalidRequest", message=f"A CORS configuration can have at most {MAX_RULES} rules"
        )
    return CorsConfiguration(tuple(_rule(n) for n in nodes))


@functools.lru_cache(maxsize=256)
def parse_stored(text: str) -> CorsConfiguration:
    """A stored configuration (the writer only stores what parses), cached
    by its text: frontends match many requests against few buckets."""
    return parse_cors(text.encode("utf-8"))


# ---- writing back (GetBucketCors) ---------------------------------------------------


def cors_xml(cfg: CorsConfiguration) -> bytes:
    out = []
    for r in cfg.rules:
        parts = [el("ID", r.id)] if r.id else []
        parts += [el("AllowedHeader", h) for h in r.allowed_headers]
        parts += [el("AllowedMethod", m) for m in r.allowed_methods]
        parts += [el("AllowedOrigin", o) for o in r.allowed_origins]
        parts += [el("ExposeHeader", h) for h in r.expose_headers]
        if r.max_age_seconds is not None:
            parts.append(el("MaxAgeSeconds", r.max_age_seconds))
        out.append("<CORSRule>" + "".join(parts) + "</CORSRule>")
    return document("CORSConfiguration", out)


# ---- matching -----------------------------------------------------------------------


def _glob(pattern: str, value: str) -> bool:
    """``pattern`` with at most one ``*`` (any run of characters) against ``value``."""
    star = pattern.find("*")
    if star < 0:
        return pattern == value
    prefix, suffix = pattern[:star], pattern[star + 1 :]
    return (
        len(value) >= len(prefix) + len(suffix)
        and value.startswith(prefix)
        and value.endswith(suffix)
    )


def well_formed_origin(origin: str) -> bool:
    return origin == "null" or (len(origin) <= 2048 and _ORIGIN_RE.fullmatch(origin) is not None)


def requested_headers(value: str | None) -> list[str] | None:
    """``Access-Control-Request-Headers`` → lower-cased names; None if a name
    is not an HTTP token (such a preflight matches nothing)."""
    names = [h.strip().lower() for h in (value or "").split(",") if h.strip()]
    if any(not _TOKEN_RE.fullmatch(n) for n in names):
        return None
    return names


def match(
    cfg: CorsConfiguration, origin: str, method: str, headers: Sequence[str] | None = None
) -> tuple[CorsRule, str] | None:
    """The first rule that allows this request, and the Allow-Origin value.

    ``headers``: a preflight's requested header names (lower-case); None for
    an actual request, whose headers AWS does not check."""
    if not origin or not well_formed_origin(origin):
        return None
    for rule in cfg.rules:
        if method not in rule.allowed_methods:
            continue
        allow = rule.origin_answer(origin)
        if allow is None:
            continue
        if headers is not None and not rule.headers_allowed(headers):
            continue
        return rule, allow
    return None


def _answer(rule: CorsRule, allow: str, asked: Sequence[str]) -> Headers:
    out: Headers = [(b"access-control-allow-origin", allow.encode("ascii"))]
    if allow != "*":
        out.append((b"access-control-allow-credentials", b"true"))
    out.append((b"access-control-allow-methods", ", ".join(rule.allowed_methods).encode()))
    if asked:
        out.append((b"access-control-allow-headers", ", ".join(asked).encode()))
    if rule.expose_headers:
        out.append((b"access-control-expose-headers", ", ".join(rule.expose_headers).encode()))
    if rule.max_age_seconds is not None:
        out.append((b"access-control-max-age", str(rule.max_age_seconds).encode()))
    out.append((b"vary", VARY))
    return out


def preflight(
    cfg: CorsConfiguration, origin: str, method: str, request_headers: str | None
) -> Headers | None:
    """An OPTIONS preflight's headers, or None when no rule allows it."""
    asked = requested_headers(request_headers)
    if asked is None:
        return None
    found = match(cfg, origin, method, asked)
    return None if found is None else _answer(found[0], found[1], asked)


def response_headers(cfg: CorsConfiguration, origin: str | None, method: str) -> Headers:
    """Headers for an actual (non-preflight) request; ``[]`` when no rule matches."""
    if not origin:
        return []
    found = match(cfg, origin, method)
    return [] if found is None else _answer(found[0], found[1], ())
