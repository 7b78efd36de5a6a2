"""The load generator's HTTP reader and GET verifier, against a scripted server.

Run: ``.venv/bin/python -m pytest -q benchmarks/test_loadgen.py``
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.lowlevel

from benchmarks.loadgen import (
    TAG_BYTES,
    HttpConnection,
    Payload,
    ProtocolError,
    VerificationError,
    _Verifier,
    object_tag,
)

BODY = b"0123456789" * 50
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Thing: a:b\r\n\r\n" % len(BODY)) + BODY


async def listen() -> tuple[trio.socket.SocketType, int]:
    listener = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    return listener, listener.getsockname()[1]


async def serve_script(
    listener: trio.socket.SocketType, replies: list[bytes], piece_bytes: int
) -> None:
    """Answer each request on one connection with the next reply, in pieces."""
    conn, _ = await listener.accept()
    with conn, listener:
        for reply in replies:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await conn.recv(65536)
            for i in range(0, len(reply), piece_bytes):
                await conn.send(reply[i : i + piece_bytes])
                await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("piece_bytes", [1, 7, 4096])
async def test_reads_responses_split_anywhere(piece_bytes: int) -> None:
    listener, port = await listen()
    bodies: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_script, listener, [RESPONSE, RESPONSE], piece_bytes)
        conn = HttpConnection("127.0.0.1", port, buffer_bytes=64 * 1024 + 100)
        for _ in range(2):
            parts: list[bytes] = []

            def sink(offset: int, piece: memoryview, parts: list[bytes] = parts) -> None:
                assert offset == sum(len(p) for p in parts)
                parts.append(bytes(piece))

            response = await conn.request((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",), sink=sink)
            assert response.status == 200
            assert response.headers["x-thing"] == "a:b"
            bodies.append(b"".join(parts))
        conn.close()
    assert bodies == [BODY, BODY]
    assert conn.connects == 1


async def test_missing_content_length_is_a_protocol_error() -> None:
    listener, port = await listen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_script, listener, [b"HTTP/1.1 200 OK\r\n\r\n"], 4096)
        conn = HttpConnection("127.0.0.1", port)
        with pytest.raises(ProtocolError):
            await conn.request((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",))


def test_verifier_accepts_the_object_in_any_pieces() -> None:
    payload = Payload(1000)
    body = object_tag("/b/k") + payload.data[TAG_BYTES:]
    for step in (1, 5, 16, 17, 1000):
        verify = _Verifier("/b/k", payload)
        for off in range(0, len(body), step):
            verify(off, memoryview(body[off : off + step]))
        assert verify.seen == 1000


@pytest.mark.parametrize("where", [0, 15, 16, 999])
def test_verifier_rejects_a_changed_byte(where: int) -> None:
    payload = Payload(1000)
    body = bytearray(object_tag("/b/k") + payload.data[TAG_BYTES:])
    body[where] ^= 1
    with pytest.raises(VerificationError):
        _Verifier("/b/k", payload)(0, memoryview(body))


def test_verifier_rejects_another_objects_bytes() -> None:
    payload = Payload(1000)
    body = object_tag("/b/other") + payload.data[TAG_BYTES:]
    with pytest.raises(VerificationError):
        _Verifier("/b/k", payload)(0, memoryview(body))
