"""The pure parts of the replication client: URLs, queries, error
documents, and requests it signs that the server's verifier accepts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seglake.errors import S3Error
from seglake.protocol.sigv4 import RequestView, authenticate, sign_request
from seglake.protocol.xml import error_document
from seglake.repl.client import ReplHTTPError, Target, encode_query, parse_error, parse_url

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def _secret(key: str) -> str | None:
    return "sekrit" if key == "repl" else None


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://127.0.0.1:9000", Target(False, "127.0.0.1", 9000, "")),
        ("https://s3.example.org", Target(True, "s3.example.org", 443, "")),
        ("http://h/prefix/", Target(False, "h", 80, "/prefix")),
        ("http://[::1]:81", Target(False, "::1", 81, "")),
    ],
)
def test_parse_url(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    "url", ["ftp://h", "http://", "http://h?x=1", "http://u:p@h", "http://h:99999", "h:9000"]
)
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_host_header() -> None:
    assert parse_url("http://h:80").host_header == b"h"
    assert parse_url("http://h:81").host_header == b"h:81"
    assert parse_url("http://[::1]:81").host_header == b"[::1]:81"


def test_parse_error_document() -> None:
    doc = error_document("OplogTruncated", "gone", "/v1/replication/oplog", "RID", {})
    err = parse_error(410, doc)
    assert (err.status, err.code, err.message, err.retryable) == (410, "OplogTruncated", "gone",
                                                                    False)  # fmt: skip
    assert parse_error(503, b"").retryable
    assert parse_error(502, b"<html>bad gateway</html>").code == "HTTP502"
    assert parse_error(400, b"not xml at all").message == "not xml at all"
    # entity tricks are refused by defusedxml, never expanded
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Error><Code>&a;</Code></Error>'
    assert parse_error(400, bomb).code == "HTTP400"


def test_retryable_defaults() -> None:
    assert ReplHTTPError(0, "Timeout", "t").retryable
    assert ReplHTTPError(500, "InternalError", "x").retryable
    assert ReplHTTPError(429, "SlowDown", "x").retryable
    assert not ReplHTTPError(403, "AccessDenied", "x").retryable
    assert not ReplHTTPError(0, "X", "x", retryable=False).retryable


def test_encode_query_is_canonical() -> None:
    assert encode_query([("since", "ab:12"), ("uid", "a b/c~")]) == b"since=ab%3A12&uid=a%20b%2Fc~"


@pytest.mark.parametrize("payload", ["UNSIGNED-PAYLOAD", "a" * 64])
def test_signed_request_verifies(payload: str) -> None:
    headers = [(b"host", b"127.0.0.1:9000"), (b"x-seglake-nonce", b"n1"),
               (b"content-length", b"3")]  # fmt: skip
    query = encode_query([("digest", "00ff"), ("digest", "11aa")])
    added = sign_request("POST", b"/v1/replication/have", query, headers, access_key="repl",
                         secret="sekrit", region="us-east-1", payload_hash=payload,
                         now=NOW)  # fmt: skip
    view = RequestView("POST", b"/v1/replication/have", query, headers + added)
    ctx = authenticate(view, _secret, NOW)
    assert ctx is not None and ctx.access_key == "repl" and ctx.content_sha256 == payload
    # any signed part changed: refused
    tampered = RequestView("POST", b"/v1/replication/have", query,
                           [(b"host", b"127.0.0.1:9000"), (b"x-seglake-nonce", b"n2"),
                            (b"content-length", b"3"), *added])  # fmt: skip
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
        authenticate(tampered, _secret, NOW)
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
        authenticate(RequestView("POST", b"/v1/replication/oplog", query, headers + added),
                     _secret, NOW)  # fmt: skip


def test_sign_request_refuses_bad_payload_hash() -> None:
    with pytest.raises(S3Error):
        sign_request("GET", b"/", b"", [(b"host", b"h")], access_key="k", secret="s",
                     region="us-east-1", payload_hash="nope", now=NOW)  # fmt: skip
