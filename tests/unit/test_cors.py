"""CORS policy (pure): origin matching, preflight answers, header safety."""

from __future__ import annotations

import pytest

from seglake.config import Config, build_config
from seglake.protocol.cors import EXPOSE_HEADERS, CorsPolicy

POLICY = CorsPolicy.parse(
    "https://app.example.com, http://localhost:3000, https://*.cdn.example.net",
    "GET,PUT,HEAD",
    "authorization,content-type,x-amz-*",
    600,
)

# (origin as sent, Access-Control-Allow-Origin expected or None)
ORIGINS = [
    ("https://app.example.com", "https://app.example.com"),
    ("HTTPS://APP.EXAMPLE.COM", "HTTPS://APP.EXAMPLE.COM"),  # echoed as sent
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://localhost:3001", None),
    ("http://app.example.com", None),  # scheme differs
    ("https://app.example.com.evil.org", None),
    ("https://evilapp.example.com", None),
    ("https://a.cdn.example.net", "https://a.cdn.example.net"),
    ("https://a.b.cdn.example.net", "https://a.b.cdn.example.net"),
    ("https://cdn.example.net", None),  # the wildcard needs a label
    ("https://a.cdn.example.net:8443", None),  # port must match too
    ("https://x.cdn.example.net.evil.org", None),
    ("https://app.example.com/", None),  # not a serialised origin
    ("https://app.example.com\r\nSet-Cookie: x=1", None),
    ("https://app.example.com\n", None),
    ("https://app.example.com\x00", None),
    ("https://app.example.com ", None),
    ("https://app.example.com,https://app.example.com", None),  # two Origin headers
    ("null", None),
    ("", None),
    ("*", None),
]


@pytest.mark.parametrize("origin,expected", ORIGINS)
def test_match_origin(origin: str, expected: str | None) -> None:
    assert POLICY.match_origin(origin) == expected


@pytest.mark.parametrize(
    "origin,expected",
    [
        ("https://anything.example", "*"),
        ("http://127.0.0.1:8080", "*"),
        ("https://bad\r\n.example", None),  # malformed is refused even under "*"
        ("null", "*"),
    ],
)
def test_star_origin_never_reflects(origin: str, expected: str | None) -> None:
    policy = CorsPolicy.parse("*", "GET", "*", 0)
    assert policy.match_origin(origin) == expected
    headers = dict(policy.response_headers(origin, "GET"))
    if expected is None:
        assert headers == {}
    else:
        assert headers[b"access-control-allow-origin"] == b"*"
        assert b"access-control-allow-credentials" not in headers


# (origin, method, requested headers, allowed?)
PREFLIGHTS = [
    ("https://app.example.com", "PUT", None, True),
    ("https://app.example.com", "PUT", "Content-Type, X-Amz-Date, Authorization", True),
    ("https://app.example.com", "GET", "x-amz-checksum-crc32", True),
    ("https://app.example.com", "DELETE", None, False),  # method not listed
    ("https://app.example.com", "put", None, False),  # methods are case-sensitive
    ("https://app.example.com", "PUT", "x-custom", False),
    ("https://app.example.com", "PUT", "content-type, x-custom", False),
    ("https://app.example.com", "PUT", "bad header", False),
    ("https://app.example.com", "PUT", "x-amz-a\r\nx: y", False),
    ("https://other.example.com", "PUT", None, False),
    ("https://app.example.com\r\n", "PUT", None, False),
    (None, "PUT", None, False),
    ("https://app.example.com", None, None, False),
]


@pytest.mark.parametrize("origin,method,asked,allowed", PREFLIGHTS)
def test_preflight(
    origin: str | None, method: str | None, asked: str | None, allowed: bool
) -> None:
    answer = POLICY.preflight(origin, method, asked)
    assert answer.allowed is allowed
    if not allowed:
        assert answer.headers == []
        return
    h = dict(answer.headers)
    assert h[b"access-control-allow-origin"] == origin.encode()  # type: ignore[union-attr]
    assert h[b"access-control-allow-credentials"] == b"true"
    assert h[b"access-control-allow-methods"] == b"GET, PUT, HEAD"
    assert h[b"access-control-max-age"] == b"600"
    if asked:
        expected = ", ".join(x.strip().lower() for x in asked.split(","))
        assert h[b"access-control-allow-headers"] == expected.encode()
    else:
        assert b"access-control-allow-headers" not in h
    for _, value in answer.headers:
        assert b"\r" not in value and b"\n" not in value


def test_response_headers_expose_and_vary() -> None:
    h = dict(POLICY.response_headers("https://app.example.com", "GET"))
    exposed = h[b"access-control-expose-headers"].decode().split(", ")
    for name in ("ETag", "x-amz-version-id", "x-amz-request-id", "x-amz-delete-marker"):
        assert name in exposed
    assert {"x-amz-checksum-crc32", "x-amz-checksum-sha256"} <= set(EXPOSE_HEADERS)
    assert POLICY.response_headers("https://app.example.com", "DELETE") == []
    assert POLICY.response_headers("https://evil.example", "GET") == []
    assert POLICY.response_headers(None, "GET") == []
    assert POLICY.vary() == [(b"vary", b"Origin")]


def test_disabled_by_default() -> None:
    policy = CorsPolicy.from_config(Config())
    assert not policy.enabled
    assert policy.vary() == []
    assert policy.match_origin("https://app.example.com") is None
    assert not policy.preflight("https://app.example.com", "GET", None).allowed
    assert policy.response_headers("https://app.example.com", "GET") == []


def test_max_age_zero_omits_header() -> None:
    policy = CorsPolicy.parse("https://a.example", "GET", "*", 0)
    h = dict(policy.preflight("https://a.example", "GET", "anything-at-all").headers)
    assert b"access-control-max-age" not in h
    assert h[b"access-control-allow-headers"] == b"anything-at-all"


@pytest.mark.parametrize(
    "flags",
    [
        {"cors_origins": "app.example.com"},  # no scheme
        {"cors_origins": "https://app.example.com/path"},
        {"cors_origins": "https://*"},
        {"cors_origins": "https://a.*.example.com"},
        {"cors_origins": "https://app.example.com\r\nX: y"},
        {"cors_methods": "get"},
        {"cors_methods": "GET PUT"},
        {"cors_headers": "bad header"},
        {"cors_headers": "x-*-y"},
        {"cors_max_age": "-1"},
        {"domains": "bad domain"},
        {"domains": "-x.example"},
    ],
)
def test_config_refuses_bad_settings(flags: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        build_config(flags, env={})


def test_config_lists() -> None:
    cfg = build_config(
        {
            "cors_origins": "https://a.example, http://localhost:3000",
            "cors_max_age": "1h",
            "domains": ".S3.Example.com, localhost",
            "require_if_match_buckets": "b1, b2,,",
            "require_content_md5": True,
        },
        env={},
    )
    assert cfg.cors_max_age == 3600.0
    assert cfg.domain_list == ("s3.example.com", "localhost")
    assert cfg.if_match_bucket_set == frozenset({"b1", "b2"})
    assert cfg.require_content_md5 is True
    assert CorsPolicy.from_config(cfg).origins == ("https://a.example", "http://localhost:3000")
