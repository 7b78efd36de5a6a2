"""CORS policy (pure): which browser origins may call Seglake, and the
``Access-Control-*`` headers that say so.

The policy comes from ``--cors-origins/-methods/-headers/-max-age`` and is the
same for every bucket. It only ever *echoes* an origin that is on the list:
an unknown origin gets no ``Access-Control-Allow-Origin`` at all, the ``*``
origin is answered with a literal ``*`` and never with credentials, and an
``Origin`` that is not a well-formed serialised origin (control characters,
spaces, paths, anything that could split a header) is refused outright.
Answers that depend on ``Origin`` carry ``Vary: Origin`` so caches keep them
apart.

Preflights (``OPTIONS``) are unauthenticated by design — a browser sends them
without credentials — and are answered here, before routing and SigV4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Protocol

# Response headers a browser script may read besides the CORS-safelisted ones
# (Content-Type, Content-Length, Last-Modified, Cache-Control, Expires,
# Content-Language). Listed by name: ``*`` is not honoured with credentials.
EXPOSE_HEADERS: Final = (
    "ETag", "x-amz-version-id", "x-amz-request-id", "x-amz-id-2", "x-amz-delete-marker",
    "x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1", "x-amz-checksum-sha256", "x-amz-checksum-type",
    "Content-Range", "Accept-Ranges", "Content-Disposition", "Content-Encoding",
)  # fmt: skip

# A serialised origin: scheme "://" host [":" port], nothing else (RFC 6454).
# IPv6 literals are bracketed. ``null`` (opaque origins) only matches a
# configured literal ``null``.
_ORIGIN_RE: Final = re.compile(
    r"[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9-]*[a-z0-9])?"
    r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)(:[0-9]{1,5})?",
    re.IGNORECASE,
)
# A configured origin may replace the first host label by ``*``.
_WILDCARD_ORIGIN_RE: Final = re.compile(
    r"([a-z][a-z0-9+.-]*://)\*(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]{1,5})?"
)
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-zA-Z-]+")  # RFC 9110 token
_HEADER_PATTERN_RE: Final = re.compile(r"[!#$%&'+.^_`|~0-9a-z-]*\*?")
_LABELS_RE: Final = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")

Headers = list[tuple[bytes, bytes]]


class CorsSettings(Protocol):
    @property
    def cors_origins(self) -> str: ...
    @property
    def cors_methods(self) -> str: ...
    @property
    def cors_headers(self) -> str: ...
    @property
    def cors_max_age(self) -> float: ...


@dataclass(frozen=True)
class Preflight:
    """The answer to an OPTIONS preflight: ``allowed`` or not, and headers."""

    allowed: bool
    headers: Headers
    reason: str = ""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class CorsPolicy:
    origins: tuple[str, ...] = ()  # lowercase; exact, "*", "null" or "scheme://*.domain[:port]"
    methods: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()  # lowercase names or patterns ending in "*"
    max_age: int = 0

    @classmethod
    def parse(cls, origins: str, methods: str, headers: str, max_age: float) -> CorsPolicy:
        """Validate operator settings; ValueError names the bad entry."""
        out_origins: list[str] = []
        for origin in _csv(origins):
            o = origin.lower().rstrip("/")
            if not (
                o in ("*", "null") or _ORIGIN_RE.fullmatch(o) or _WILDCARD_ORIGIN_RE.fullmatch(o)
            ):
                raise ValueError(
                    f"cors-origins: {origin!r} is not an origin (scheme://host[:port])"
                )
            out_origins.append(o)
        out_methods: list[str] = []
        for method in _csv(methods):
            if not _TOKEN_RE.fullmatch(method) or method != method.upper():
                raise ValueError(f"cors-methods: {method!r} is not an upper-case HTTP method")
            out_methods.append(method)
        out_headers: list[str] = []
        for header in _csv(headers):
            h = header.lower()
            if not h or not _HEADER_PATTERN_RE.fullmatch(h):
                raise ValueError(f"cors-headers: {header!r} is not a header name or prefix*")
            out_headers.append(h)
        if max_age < 0:
            raise ValueError("cors-max-age must not be negative")
        return cls(tuple(out_origins), tuple(out_methods), tuple(out_headers), int(max_age))

    @classmethod
    def from_config(cls, cfg: CorsSettings) -> CorsPolicy:
        return cls.parse(cfg.cors_origins, cfg.cors_methods, cfg.cors_headers, cfg.cors_max_age)

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    # ---- matching --------------------------------------------------------
    def match_origin(self, origin: str) -> str | None:
        """The value for ``Access-Control-Allow-Origin``, or None if not allowed.

        Only a well-formed origin on the list is echoed (as sent); ``*`` in
        the list answers ``*``.
        """
        if not self.origins or not origin or len(origin) > 2048:
            return None
        o = origin.lower()
        if o != "null" and not _ORIGIN_RE.fullmatch(o):
            return None  # malformed: never echoed, whatever the list says
        if "*" in self.origins:
            return "*"
        for allowed in self.origins:
            if o == allowed or ("*" in allowed and _wildcard_match(allowed, o)):
                return origin
        return None

    def header_allowed(self, name: str) -> bool:
        n = name.lower()
        return any(
            n == pattern or (pattern.endswith("*") and n.startswith(pattern[:-1]))
            for pattern in self.headers
        )

    # ---- answers ---------------------------------------------------------
    def vary(self) -> Headers:
        """``Vary: Origin`` on every answer while CORS is on."""
        return [(b"vary", b"Origin")] if self.enabled else []

    def _origin_headers(self, allow: str) -> Headers:
        out: Headers = [(b"access-control-allow-origin", allow.encode("ascii"))]
        if allow != "*":
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    def response_headers(self, origin: str | None, method: str) -> Headers:
        """Headers for an ordinary (non-preflight) response."""
        if not origin or method not in self.methods:
            return []
        allow = self.match_origin(origin)
        if allow is None:
            return []
        return [
            *self._origin_headers(allow),
            (b"access-control-expose-headers", ", ".join(EXPOSE_HEADERS).encode()),
        ]

    def preflight(
        self, origin: str | None, request_method: str | None, request_headers: str | None
    ) -> Preflight:
        """Answer an OPTIONS preflight."""
        if not origin:
            return Preflight(False, [], "missing Origin")
        if not request_method:
            return Preflight(False, [], "missing Access-Control-Request-Method")
        allow = self.match_origin(origin)
        if allow is None:
            return Preflight(False, [], "origin not allowed")
        if request_method not in self.methods:
            return Preflight(False, [], "method not allowed")
        asked = [h.strip().lower() for h in (request_headers or "").split(",") if h.strip()]
        for name in asked:
            if not _TOKEN_RE.fullmatch(name) or not self.header_allowed(name):
                return Preflight(False, [], f"header {name!r} not allowed")
        headers = [
            *self._origin_headers(allow),
            (b"access-control-allow-methods", ", ".join(self.methods).encode()),
            (b"access-control-expose-headers", ", ".join(EXPOSE_HEADERS).encode()),
        ]
        if asked:
            # Echo the (validated) names: a literal "*" is not honoured by
            # browsers when credentials are allowed.
            headers.append((b"access-control-allow-headers", ", ".join(asked).encode()))
        if self.max_age > 0:
            headers.append((b"access-control-max-age", str(self.max_age).encode()))
        return Preflight(True, headers)


def _wildcard_match(pattern: str, origin: str) -> bool:
    """``https://*.example.com`` matches ``https://a.example.com`` and
    ``https://a.b.example.com`` (same scheme and port), not ``https://example.com``."""
    scheme_end = pattern.index("*")
    prefix, suffix = pattern[:scheme_end], pattern[scheme_end + 1 :]
    if not origin.startswith(prefix) or not origin.endswith(suffix):
        return False
    label = origin[len(prefix) : len(origin) - len(suffix)]
    return bool(label) and _LABELS_RE.fullmatch(label) is not None
