"""The IPC channel over a real Unix socket: multiplexing, coalesced sends,
errors and peer death."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from seglake.errors import S3Error
from seglake.format.segment import CHUNK_SIZE
from seglake.ipc.channel import (
    Channel,
    ChannelBroken,
    ChannelClosed,
    connect,
    serve_channel,
    write_nowait,
)

Handler = Any


async def _serve(
    path: str, handler: Handler, nursery: trio.Nursery, max_in_flight: int = 64
) -> trio.SocketListener:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(8)
    listener = trio.SocketListener(sock)

    async def conn(stream: trio.SocketStream) -> None:
        await serve_channel(stream, handler, max_in_flight=max_in_flight)

    nursery.start_soon(trio.serve_listeners, conn, [listener])
    return listener


@pytest.fixture
async def sock_path(tmp_path: Path) -> AsyncIterator[str]:
    yield str(tmp_path / "ipc.sock")


async def echo(name: str, args: Any, body: memoryview) -> tuple[Any, bytes]:
    if name == "fail":
        raise S3Error("NoSuchBucket", message="gone")
    if name == "crash":
        raise ValueError("boom")
    await trio.sleep(random.random() / 200)
    return {"name": name, "args": args, "len": len(body)}, bytes(body[:16])


async def test_concurrent_calls_match_replies(sock_path: str) -> None:
    async with trio.open_nursery() as n:
        await _serve(sock_path, echo, n)
        ch, _ = await connect(sock_path)
        n.start_soon(ch.run_reader)
        big = os.urandom(CHUNK_SIZE)
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            body = big if i % 17 == 0 else os.urandom(i % 100)
            reply, head = await ch.call("echo", {"i": i}, body)
            assert reply == {"name": "echo", "args": {"i": i}, "len": len(body)}
            assert head == body[:16]
            results[i] = reply

        async with trio.open_nursery() as calls:
            for i in range(300):
                calls.start_soon(one, i)
        assert len(results) == 300
        await ch.aclose()
        n.cancel_scope.cancel()


async def test_errors_cross_the_channel(sock_path: str) -> None:
    async with trio.open_nursery() as n:
        await _serve(sock_path, echo, n)
        ch, _ = await connect(sock_path)
        n.start_soon(ch.run_reader)
        with pytest.raises(S3Error) as e:
            await ch.call("fail")
        assert e.value.code == "NoSuchBucket" and e.value.text == "gone"
        with pytest.raises(S3Error) as e:
            await ch.call("crash")
        assert e.value.code == "InternalError" and "boom" not in e.value.text
        assert (await ch.call("echo", 1))[0]["args"] == 1  # still usable
        await ch.aclose()
        with pytest.raises(ChannelClosed):
            await ch.call("echo")
        n.cancel_scope.cancel()


async def test_peer_death_breaks_pending_calls(sock_path: str) -> None:
    release = trio.Event()

    async def slow(name: str, args: Any, body: memoryview) -> tuple[Any, bytes]:
        await release.wait()
        return None, b""

    async with trio.open_nursery() as n:
        server = trio.CancelScope()

        async def run_server() -> None:
            with server:
                async with trio.open_nursery() as sn:
                    await _serve(sock_path, slow, sn)
                    await trio.sleep_forever()

        n.start_soon(run_server)
        await trio.sleep(0.05)
        stream = await trio.open_unix_socket(sock_path)
        ch = Channel(stream)
        n.start_soon(ch.run_reader)
        broken: list[BaseException] = []

        async def call() -> None:
            try:
                await ch.call("slow")
            except ChannelBroken as exc:
                broken.append(exc)

        async with trio.open_nursery() as calls:
            for _ in range(5):
                calls.start_soon(call)
            await trio.sleep(0.05)
            server.cancel()  # the peer goes away with calls outstanding
        assert len(broken) == 5
        assert not ch.usable
        with pytest.raises(ChannelBroken):
            await ch.call("slow")
        await ch.aclose()
        n.cancel_scope.cancel()


async def test_server_bounds_in_flight(sock_path: str) -> None:
    running = 0
    peak = 0

    async def count(name: str, args: Any, body: memoryview) -> tuple[Any, bytes]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(0.01)
        running -= 1
        return None, b""

    async with trio.open_nursery() as n:
        await _serve(sock_path, count, n, max_in_flight=4)
        ch, _ = await connect(sock_path, max_in_flight=64)
        n.start_soon(ch.run_reader)
        async with trio.open_nursery() as calls:
            for _ in range(40):
                calls.start_soon(ch.call, "count")
        assert peak == 4
        await ch.aclose()
        n.cancel_scope.cancel()


async def _late_channel(
    path: str, handler: Handler, reading: trio.Event, nursery: trio.Nursery
) -> Channel:
    """A channel to a server that reads nothing until ``reading`` is set, as a
    writer busy with a commit does: the client's sends block in the socket."""

    async def late_reader(stream: trio.SocketStream) -> None:
        await reading.wait()
        await serve_channel(stream, handler)

    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(1)
    nursery.start_soon(trio.serve_listeners, late_reader, [trio.SocketListener(sock)])
    ch, _ = await connect(path)
    nursery.start_soon(ch.run_reader)
    return ch


async def test_caller_cancelled_mid_frame_leaves_channel_usable(sock_path: str) -> None:
    # A busy writer reads nothing for a while, so a large frame's send blocks
    # partway; the frontend then cancels that call (its request failed). The
    # next frame must still arrive whole once the writer reads again.
    reading = trio.Event()
    seen: list[tuple[str, int]] = []

    async def handler(name: str, args: Any, body: memoryview) -> tuple[Any, bytes]:
        seen.append((name, len(body)))
        return {"name": name, "len": len(body)}, b""

    async with trio.open_nursery() as n:
        ch = await _late_channel(sock_path, handler, reading, n)
        big = os.urandom(CHUNK_SIZE)  # far more than the socket buffers hold
        cut = trio.CancelScope()

        async def doomed() -> None:
            with cut:
                await ch.call("big", None, big)

        n.start_soon(doomed)
        await trio.sleep(0.2)
        cut.cancel()
        await trio.sleep(0.05)
        reading.set()
        with trio.fail_after(10):
            reply, _ = await ch.call("after", None, b"x" * 100)
        assert reply == {"name": "after", "len": 100}
        assert seen == [("big", len(big)), ("after", 100)]
        assert ch.usable
        await ch.aclose()
        n.cancel_scope.cancel()


async def test_cancelled_flusher_still_sends_the_others_frames(sock_path: str) -> None:
    # Small frames queued together leave in the first caller's send; if that
    # caller is cancelled while it waits its turn (a large frame is still
    # going out), the frames of the rest must not be stranded.
    reading = trio.Event()

    async with trio.open_nursery() as n:
        ch = await _late_channel(sock_path, echo, reading, n)
        replies: list[int] = []

        async def one(i: int) -> None:
            reply, _ = await ch.call("echo", i, b"x" * (CHUNK_SIZE if i < 0 else 1))
            replies.append(reply["args"])

        flusher = trio.CancelScope()

        async def first() -> None:
            with flusher:
                await ch.call("echo", None, b"")

        with trio.fail_after(10):
            async with trio.open_nursery() as calls:
                calls.start_soon(one, -1)  # blocks in its send: nobody reads yet
                await trio.sleep(0.1)
                calls.start_soon(first)
                await trio.sleep(0.05)
                for i in range(10):
                    calls.start_soon(one, i)
                await trio.sleep(0.05)
                flusher.cancel()
                await trio.sleep(0.05)
                reading.set()
        assert sorted(replies) == list(range(-1, 10))
        await ch.aclose()
        n.cancel_scope.cancel()


def test_write_nowait_returns_what_the_socket_did_not_take() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        a.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        parts = [os.urandom(3000), b"", os.urandom(5000), os.urandom(1 << 20)]
        rest = write_nowait(a.fileno(), parts)
        taken = sum(map(len, parts)) - sum(map(len, rest))
        assert 0 < taken < sum(map(len, parts)), "the small buffer should take only part"
        got = b""
        while len(got) < taken:
            got += b.recv(1 << 20)
        # What went out is a prefix of the frame; what is left is the rest.
        whole = b"".join(parts)
        assert got == whole[:taken]
        assert b"".join(bytes(r) for r in rest) == whole[taken:]
        assert write_nowait(a.fileno(), [b""]) == []
    finally:
        a.close()
        b.close()
    # A closed socket's fileno() is -1: the write fails, it never lands elsewhere.
    with pytest.raises(OSError):
        write_nowait(a.fileno(), [b"x"])


async def test_lone_call_larger_than_the_socket_buffer_keeps_frame_order(sock_path: str) -> None:
    """A lone call whose frame the socket takes only in part finishes its
    frame before any later call's frame goes out."""
    async with trio.open_nursery() as n:
        await _serve(sock_path, echo, n)
        ch, stream = await connect(sock_path)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        n.start_soon(ch.run_reader)
        big = os.urandom(CHUNK_SIZE)
        results: dict[int, Any] = {}

        async def one(i: int, body: bytes) -> None:
            results[i] = await ch.call(f"c{i}", {"i": i}, body)

        async with trio.open_nursery() as calls:
            calls.start_soon(one, 0, big)  # alone: takes the direct write
            await trio.lowlevel.checkpoint()
            for i in range(1, 6):
                calls.start_soon(one, i, bytes([i]) * 10)
        assert results[0] == ({"name": "c0", "args": {"i": 0}, "len": CHUNK_SIZE}, big[:16])
        for i in range(1, 6):
            assert results[i] == ({"name": f"c{i}", "args": {"i": i}, "len": 10}, bytes([i]) * 10)
        await ch.aclose()
        n.cancel_scope.cancel()
