"""Per-bucket CORS (pure): parsing with AWS's errors, writing back, and
AWS's first-match-wins matching of preflights and actual requests.

Expected answers follow AWS's documentation ("How does Amazon S3 evaluate
the CORS configuration on a bucket?") and recorded AWS responses: the
first rule whose origin, method and (preflight) requested headers all
match wins; a specific origin is echoed with ``Allow-Credentials: true``,
``*`` is answered ``*`` without it; ``Allow-Methods`` lists the rule's
methods, ``Allow-Headers`` the requested names lower-cased.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.bucket_cors import (
    MAX_RULES,
    VARY,
    CorsConfiguration,
    CorsRule,
    cors_xml,
    parse_cors,
    preflight,
    response_headers,
)

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def doc(*rules: str, ns: str = NS) -> bytes:
    return f"<CORSConfiguration {ns}>{''.join(rules)}</CORSConfiguration>".encode()


def rule(body: str) -> str:
    return f"<CORSRule>{body}</CORSRule>"


MINIMAL = rule("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>")
FULL = rule(
    "<ID>web</ID><AllowedOrigin>https://app.example.com</AllowedOrigin>"
    "<AllowedOrigin>http://*.example.net</AllowedOrigin>"
    "<AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod>"
    "<AllowedHeader>Content-Type</AllowedHeader><AllowedHeader>x-amz-*</AllowedHeader>"
    "<ExposeHeader>ETag</ExposeHeader><ExposeHeader>x-amz-version-id</ExposeHeader>"
    "<MaxAgeSeconds>3000</MaxAgeSeconds>"
)

# ---- parsing ---------------------------------------------------------------------------


def test_parse_full_rule_keeps_values_as_written() -> None:
    cfg = parse_cors(doc(FULL, MINIMAL))
    assert cfg.rules[0] == CorsRule(
        allowed_origins=("https://app.example.com", "http://*.example.net"),
        allowed_methods=("PUT", "GET"),
        allowed_headers=("Content-Type", "x-amz-*"),
        expose_headers=("ETag", "x-amz-version-id"),
        max_age_seconds=3000,
        id="web",
    )
    assert cfg.rules[1] == CorsRule(("*",), ("GET",))


def test_without_namespace_and_elements_in_any_order() -> None:
    body = doc(
        rule("<AllowedMethod>HEAD</AllowedMethod><ID>x</ID><AllowedOrigin>*</AllowedOrigin>"),
        ns="",
    )
    assert parse_cors(body).rules == (CorsRule(("*",), ("HEAD",), id="x"),)


def test_round_trip_through_xml() -> None:
    cfg = parse_cors(doc(FULL, MINIMAL))
    text = cors_xml(cfg)
    assert text.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<CORSConfiguration xmlns=')
    assert parse_cors(text) == cfg
    assert cors_xml(parse_cors(text)) == text


def test_empty_origin_is_accepted_and_kept() -> None:
    # AWS stores AllowedOrigin "" (and then matches nothing with it).
    cfg = parse_cors(doc(rule("<AllowedOrigin></AllowedOrigin><AllowedMethod>GET</AllowedMethod>")))
    assert cfg.rules[0].allowed_origins == ("",)
    assert preflight(cfg, "https://a.example", "GET", None) is None


def _rules(n: int) -> bytes:
    return doc(*[MINIMAL] * n)


BAD = [
    # (name, body, code, message fragment)
    ("not xml", b"<CORSConfiguration>", "MalformedXML", ""),
    ("empty body", b"", "MalformedXML", ""),
    ("wrong root", b"<LifecycleConfiguration/>", "MalformedXML", ""),
    ("no rules", doc(), "MalformedXML", "one or more CORSRule"),
    ("unknown rule element", doc(rule("<AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod><Foo/>")), "MalformedXML", "Foo"),
    ("unknown top element", doc(MINIMAL, "<Bar/>"), "MalformedXML", "Bar"),
    ("no origin", doc(rule("<AllowedMethod>GET</AllowedMethod>")), "MalformedXML", ""),
    ("no method", doc(rule("<AllowedOrigin>*</AllowedOrigin>")), "MalformedXML", ""),
    ("two max ages", doc(rule("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
     "<MaxAgeSeconds>1</MaxAgeSeconds><MaxAgeSeconds>2</MaxAgeSeconds>")), "MalformedXML", ""),
    ("max age not a number", doc(rule("<AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>ten</MaxAgeSeconds>")), "MalformedXML", ""),
    ("nested element", doc(rule("<AllowedOrigin><x/></AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod>")), "MalformedXML", ""),
    ("lower-case method", doc(rule("<AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>get</AllowedMethod>")), "InvalidRequest",
     "Found unsupported HTTP method in CORS config. Unsupported method is get"),
    ("PATCH", doc(rule("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>")),
     "InvalidRequest", "Unsupported method is PATCH"),
    ("two wildcards in origin", doc(rule("<AllowedOrigin>https://*.*.example.com</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod>")), "InvalidRequest",
     'AllowedOrigin "https://*.*.example.com" can not have more than one wildcard.'),
    ("two wildcards in header", doc(rule("<AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod><AllowedHeader>x-*-*</AllowedHeader>")),
     "InvalidRequest", 'AllowedHeader "x-*-*" can not have more than one wildcard.'),
    ("wildcard expose header", doc(rule("<AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod><ExposeHeader>*</ExposeHeader>")),
     "InvalidRequest", "wildcard for ExposeHeader"),
    ("expose header with a space", doc(rule("<AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod><ExposeHeader>a b</ExposeHeader>")),
     "InvalidRequest", "invalid character"),
    ("id too long", doc(rule(f"<ID>{'i' * 256}</ID><AllowedOrigin>*</AllowedOrigin>"
     "<AllowedMethod>GET</AllowedMethod>")), "InvalidArgument", ""),
    ("101 rules", _rules(MAX_RULES + 1), "InvalidRequest", "at most 100 rules"),
    ("too big", b"<CORSConfiguration>" + b" " * 70_000 + b"</CORSConfiguration>",
     "MaxMessageLengthExceeded", ""),
    ("dtd", b'<!DOCTYPE x [<!ENTITY a "b">]><CORSConfiguration/>', "MalformedXML", ""),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "code", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_refused_as_aws(name: str, body: bytes, code: str, fragment: str) -> None:
    with pytest.raises(S3Error) as err:
        parse_cors(body)
    assert err.value.code == code
    assert fragment in err.value.text


def test_exactly_100_rules_are_accepted() -> None:
    assert len(parse_cors(_rules(MAX_RULES)).rules) == MAX_RULES


# ---- matching --------------------------------------------------------------------------

CFG = CorsConfiguration(
    (
        CorsRule(("https://app.example.com",), ("PUT", "POST"), ("Content-Type", "x-amz-*"),
                 ("ETag",), 600, "writer"),
        CorsRule(("http://*.example.net", "https://app.example.com"), ("GET",), ("*",),
                 ("ETag", "x-amz-request-id")),
        CorsRule(("*",), ("GET", "HEAD"), ("Authorization",), (), 3000, "anyone"),
    )
)  # fmt: skip


def h(headers: list[tuple[bytes, bytes]] | None) -> dict[str, str] | None:
    return None if headers is None else {k.decode(): v.decode() for k, v in headers}


PREFLIGHTS = [
    # (origin, method, requested headers, expected headers or None = refused)
    ("https://app.example.com", "PUT", "Content-Type, X-Amz-Date", {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "PUT, POST",
        "access-control-allow-headers": "content-type, x-amz-date",
        "access-control-expose-headers": "ETag",
        "access-control-max-age": "600",
        "vary": VARY.decode(),
    }),
    # first rule fails on a header, second on the method, third on the header
    ("https://app.example.com", "PUT", "x-other", None),
    # first rule fails on the method; the second matches (its headers are "*")
    ("https://app.example.com", "GET", "x-other", {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "x-other",
        "access-control-expose-headers": "ETag, x-amz-request-id",
        "vary": VARY.decode(),
    }),
    # wildcard origin pattern, case-insensitive
    ("http://eu.cdn.EXAMPLE.net", "GET", None, {
        "access-control-allow-origin": "http://eu.cdn.EXAMPLE.net",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET",
        "access-control-expose-headers": "ETag, x-amz-request-id",
        "vary": VARY.decode(),
    }),
    # the wildcard needs its prefix and suffix: https is another scheme
    ("https://eu.example.net", "HEAD", "authorization", {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET, HEAD",
        "access-control-allow-headers": "authorization",
        "access-control-max-age": "3000",
        "vary": VARY.decode(),
    }),
    ("https://eu.example.net", "HEAD", "content-type", None),
    ("https://other.example", "DELETE", None, None),
    ("https://other.example", "GET", "", {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET, HEAD",
        "access-control-max-age": "3000",
        "vary": VARY.decode(),
    }),
    ("https://other.example", "get", None, None),  # methods compare exactly
    # never matched, whatever the rules: not a serialised origin
    ("https://app.example.com/path", "GET", None, None),
    ("https://app.example.com\r\nx: y", "GET", None, None),
    ("https://app.example.com,https://other.example", "GET", None, None),
    ("", "GET", None, None),
    ("https://other.example", "GET", "bad header", None),
]  # fmt: skip


@pytest.mark.parametrize(("origin", "method", "asked", "expected"), PREFLIGHTS)
def test_preflight(origin: str, method: str, asked: str | None, expected: object) -> None:
    assert h(preflight(CFG, origin, method, asked)) == expected


def test_preflight_null_origin_only_by_wildcard() -> None:
    only = CorsConfiguration((CorsRule(("https://a.example",), ("GET",)),))
    assert preflight(only, "null", "GET", None) is None
    star = h(preflight(CFG, "null", "GET", None))
    assert star is not None and star["access-control-allow-origin"] == "*"


def test_actual_requests_ignore_headers_and_match_method() -> None:
    got = h(response_headers(CFG, "https://app.example.com", "POST"))
    assert got == {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "PUT, POST",
        "access-control-expose-headers": "ETag",
        "access-control-max-age": "600",
        "vary": VARY.decode(),
    }
    assert response_headers(CFG, "https://app.example.com", "DELETE") == []
    assert response_headers(CFG, None, "GET") == []
    assert response_headers(CFG, "https://x.example", "OPTIONS") == []


def test_first_match_wins_even_when_a_later_rule_says_more() -> None:
    cfg = CorsConfiguration(
        (
            CorsRule(("*",), ("GET",)),
            CorsRule(("https://a.example",), ("GET",), ("*",), ("ETag",), 10),
        )
    )
    assert h(response_headers(cfg, "https://a.example", "GET")) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET",
        "vary": VARY.decode(),
    }


def test_wildcard_in_the_middle_and_at_the_end() -> None:
    cfg = CorsConfiguration((CorsRule(("http://localhost:*", "https://*-app.example"), ("GET",)),))
    for origin in ("http://localhost:3000", "https://my-app.example"):
        assert preflight(cfg, origin, "GET", None) is not None, origin
    for origin in ("http://localhost", "https://app.example", "https://my-app.example.evil"):
        assert preflight(cfg, origin, "GET", None) is None, origin


@given(st.text(max_size=40))
def test_any_origin_value_never_breaks_a_header(origin: str) -> None:
    for headers in (preflight(CFG, origin, "GET", None), response_headers(CFG, origin, "GET")):
        for _, value in headers or []:
            assert b"\r" not in value and b"\n" not in value and b"\x00" not in value
            value.decode("ascii")


@given(st.lists(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]), min_size=1),
       st.lists(st.text("abcxyz-*.:/", min_size=1, max_size=12), min_size=1, max_size=3))  # fmt: skip
def test_parse_render_round_trip(methods: list[str], origins: list[str]) -> None:
    origins = [o for o in origins if o.count("*") <= 1] or ["*"]
    body = doc(
        rule(
            "".join(f"<AllowedOrigin>{o}</AllowedOrigin>" for o in origins)
            + "".join(f"<AllowedMethod>{m}</AllowedMethod>" for m in methods)
        )
    )
    cfg = parse_cors(body)
    assert parse_cors(cors_xml(cfg)) == cfg
