"""``Expect: 100-continue`` on PUT, over a raw socket.

A client that asks for ``100 Continue`` holds its body back until it sees
one. A request the server refuses before reading the body (bad signature)
should get the final answer *without* a ``100 Continue`` first, so the client
never uploads bytes that will be thrown away; a good one gets ``100`` then
``200``.
"""

from __future__ import annotations

import hashlib
import socket
import time

from tests.e2e._signing import signed_headers
from tests.harness import SeglakeServer

TIMEOUT_S = 5.0
BODY = b"x" * 100_000


def request_head(port: int, bucket: str, key: str, body: bytes, *, break_signature: bool) -> bytes:
    url = f"http://127.0.0.1:{port}/{bucket}/{key}"
    headers = signed_headers("PUT", url, body)
    if break_signature:
        auth = headers["Authorization"]
        headers["Authorization"] = auth[:-8] + ("0" * 8 if not auth.endswith("0" * 8) else "1" * 8)
    lines = [f"PUT /{bucket}/{key} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Expect: 100-continue"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response_head(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """(one response head, what follows it) — bounded by TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no response head; got {buf!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; got {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def test_good_request_gets_100_then_200(server: SeglakeServer, s3: object, bucket: str) -> None:
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as s:
        s.sendall(request_head(server.port, bucket, "k", BODY, break_signature=False))
        head, rest = read_response_head(s, b"")
        # Reason phrases included: older botocore took "HTTP/1.1 100 " for
        # something else (docs/architecture.md, the Hypercorn and h11 patches).
        assert head.startswith(b"HTTP/1.1 100 Continue\r\n"), head
        s.sendall(BODY)
        head, rest = read_response_head(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        etag = hashlib.md5(BODY).hexdigest().encode()
        assert etag in head.lower()


def test_refused_request_gets_final_answer_without_100(server: SeglakeServer, bucket: str) -> None:
    """The 403 is the first thing the client reads (no 100 before it: the body
    is not invited), has its reason phrase, and closes the connection (the
    unread body must not be taken for the next request)."""
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as s:
        s.sendall(request_head(server.port, bucket, "k", BODY, break_signature=True))
        head, rest = read_response_head(s, b"")
        assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n"), head
        assert b"connection: close" in head.lower()
        assert b"SignatureDoesNotMatch" in rest or b"content-length" in head.lower()


def test_empty_body_still_gets_100_and_connection_stays_in_step(
    server: SeglakeServer, s3: object, bucket: str
) -> None:
    """An empty upload that asked for 100 gets it before its 200: botocore's
    expect handling (Debian awscli 2.9) otherwise takes that 200 as the status
    of the next request on the connection and then hangs on it."""
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as s:
        s.sendall(request_head(server.port, bucket, "empty", b"", break_signature=False))
        head, rest = read_response_head(s, b"")
        assert head.startswith(b"HTTP/1.1 100 Continue"), head
        head, rest = read_response_head(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        assert hashlib.md5(b"").hexdigest().encode() in head.lower()
        assert b"connection: close" not in head.lower()
        # The same connection carries the next upload in step: 100, then 200.
        s.sendall(request_head(server.port, bucket, "next", BODY, break_signature=False))
        head, rest = read_response_head(s, rest)
        assert head.startswith(b"HTTP/1.1 100"), head
        s.sendall(BODY)
        head, rest = read_response_head(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        assert hashlib.md5(BODY).hexdigest().encode() in head.lower()
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""  # type: ignore[attr-defined]
    assert s3.get_object(Bucket=bucket, Key="next")["Body"].read() == BODY  # type: ignore[attr-defined]
