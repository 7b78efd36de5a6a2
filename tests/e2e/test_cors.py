"""CORS against the real server: preflight (unauthenticated), headers on
ordinary answers, refusals, and header-injection safety.

One server with ``--cors-origins`` for the module; the shared server (no
origins configured) shows the default: every preflight refused, no CORS
headers at all.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest

from tests.e2e._signing import signed_headers
from tests.harness import SeglakeServer, server_fixture

ORIGIN = "https://app.example.com"
READ_TIMEOUT_S = 5.0


cors_server = server_fixture(
    "--cors-origins", f"{ORIGIN},https://*.cdn.example.net",
    "--cors-methods", "GET,PUT,HEAD,DELETE",
    "--cors-headers", "authorization,content-type,content-md5,x-amz-*",
    "--cors-max-age", "10m",
    buckets=["corsb"],
)  # fmt: skip


def preflight(srv: SeglakeServer, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.request("OPTIONS", srv.endpoint + path, headers=headers, timeout=READ_TIMEOUT_S)


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, return everything until the server closes or goes quiet."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S) as s:
        s.sendall(data)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline and b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out


def test_preflight_allowed(cors_server: SeglakeServer) -> None:
    r = preflight(
        cors_server,
        "/corsb/some/key.txt",
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "Authorization, X-Amz-Date, Content-Type",
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-methods"] == "GET, PUT, HEAD, DELETE"
    assert r.headers["access-control-allow-headers"] == "authorization, x-amz-date, content-type"
    assert r.headers["access-control-max-age"] == "600"
    assert "ETag" in r.headers["access-control-expose-headers"]
    assert r.headers["vary"] == "Origin"
    assert r.headers["x-amz-request-id"]
    assert r.content == b""


def test_preflight_wildcard_subdomain(cors_server: SeglakeServer) -> None:
    origin = "https://eu.cdn.example.net"
    r = preflight(cors_server, "/corsb", {"Origin": origin, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize(
    "headers,status",
    [
        ({"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}, 403),
        ({"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}, 403),
        (
            {
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "x-not-allowed",
            },
            403,
        ),
        (
            {"Origin": "https://app.example.com.evil.org", "Access-Control-Request-Method": "GET"},
            403,
        ),
        ({"Access-Control-Request-Method": "GET"}, 400),
        ({"Origin": ORIGIN}, 400),
    ],
)
def test_preflight_refused(
    cors_server: SeglakeServer, headers: dict[str, str], status: int
) -> None:
    r = preflight(cors_server, "/corsb/k", headers)
    assert r.status_code == status, r.text
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["vary"] == "Origin"
    code = "AccessForbidden" if status == 403 else "InvalidRequest"
    assert f"<Code>{code}</Code>" in r.text
    if status == 403:
        assert "CORSResponse: This CORS request is not allowed" in r.text


def test_origin_with_control_characters_is_refused(cors_server: SeglakeServer) -> None:
    assert cors_server.port is not None
    for bad in (
        b"https://app.example.com\x01",
        b"https://app.example.com\tx",
        b"https://app.example.com\x7f",
    ):
        data = (
            b"OPTIONS /corsb/k HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: " + bad + b"\r\n"
            b"Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
        )
        head = raw_exchange(cors_server.port, data).split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 4"), head
        assert b"access-control-allow-origin" not in head
        assert b"\x01" not in head and b"\x7f" not in head


def test_preflight_needs_no_signature_and_ignores_path(cors_server: SeglakeServer) -> None:
    # Unknown bucket, odd path: the preflight never routes or authenticates.
    r = preflight(
        cors_server,
        "/no-such-bucket/a%20b",
        {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 200


def test_headers_on_signed_answers(cors_server: SeglakeServer) -> None:
    url = cors_server.endpoint + "/corsb/obj"
    body = b"cors body"
    put = httpx.put(
        url, content=body, headers={**signed_headers("PUT", url, body), "Origin": ORIGIN}
    )
    assert put.status_code == 200, put.text
    assert put.headers["access-control-allow-origin"] == ORIGIN
    assert put.headers["vary"] == "Origin"
    exposed = put.headers["access-control-expose-headers"]
    for name in (
        "ETag",
        "x-amz-version-id",
        "x-amz-request-id",
        "x-amz-delete-marker",
        "x-amz-checksum-crc32",
    ):
        assert name in exposed
    get = httpx.get(url, headers={**signed_headers("GET", url), "Origin": ORIGIN})
    assert get.status_code == 200 and get.content == body
    assert get.headers["access-control-allow-origin"] == ORIGIN
    # A method outside --cors-methods gets no Allow-Origin, but still Vary.
    post_url = cors_server.endpoint + "/corsb?delete"
    other = httpx.post(post_url, content=b"", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in other.headers
    assert other.headers["vary"] == "Origin"


def test_errors_carry_cors_headers_for_allowed_origin(cors_server: SeglakeServer) -> None:
    # Browsers can only read an error body when the answer allows the origin.
    r = httpx.get(cors_server.endpoint + "/corsb/obj", headers={"Origin": ORIGIN})
    assert r.status_code == 403
    assert r.headers["access-control-allow-origin"] == ORIGIN


def test_other_origin_gets_nothing(cors_server: SeglakeServer) -> None:
    url = cors_server.endpoint + "/corsb/obj"
    r = httpx.get(url, headers={**signed_headers("GET", url), "Origin": "https://evil.example"})
    assert r.status_code in (200, 404)
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-credentials" not in r.headers
    assert r.headers["vary"] == "Origin"


def test_default_server_refuses_every_preflight(server: SeglakeServer, s3: Any) -> None:
    r = preflight(server, "/", {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 403
    assert "<Code>AccessForbidden</Code>" in r.text
    assert "access-control-allow-origin" not in r.headers
    s3.list_buckets()  # ordinary requests unaffected
    url = server.endpoint + "/"
    listing = httpx.get(url, headers={**signed_headers("GET", url), "Origin": ORIGIN})
    assert listing.status_code == 200
    assert not any(k.startswith("access-control-") for k in listing.headers)
    assert "vary" not in listing.headers
