"""Request/reply channels over Unix sockets, multiplexed and bounded.

Many concurrent calls share one connection; replies are matched by request
id. Both directions are bounded: a caller waits for a free slot before
sending (at most ``max_in_flight`` outstanding calls), and a server stops
reading new requests while ``max_in_flight`` are being handled, so a slow
writer pushes back through the socket buffers instead of growing memory.

Errors tell the caller what to do: ``ChannelClosed`` — we closed it on
purpose; ``ChannelBroken`` — the peer died or spoke nonsense (cause attached),
the in-flight calls may or may not have taken effect. S3 errors raised by the
remote handler are re-raised as ``S3Error`` on the calling side.

Messages to the writer are typed (``messages.py``): ``Channel.request``
sends one and decodes its reply as the declared type; a server given
``decode`` turns each request into its type before the handler runs, and
answers a malformed or unknown one with an error reply. ``call`` and a
server without ``decode`` carry plain msgpack values (admin, supervisor).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import trio

from seglake.errors import ERRORS, S3Error
from seglake.ipc.framing import (
    REPLY_ERROR,
    REPLY_OK,
    REQUEST,
    SMALL_BODY,
    Frame,
    FrameDecoder,
    FramingError,
    encode_frame,
)
from seglake.ipc.messages import MessageError, Request, decode_any, decode_reply

log = logging.getLogger(__name__)

RECV_SIZE = 1 << 20

# A peer that accepts no bytes for this long is considered dead. Far above
# any backpressure pause (a group commit waiting for a slow fsync), so it
# only ends a channel whose peer is wedged.
SEND_STALL_S = 60.0

# Handlers get the request body as a view of the received frame (no copy).
Handler = Callable[[str, Any, memoryview], Awaitable[tuple[Any, bytes]]]
# How a server turns a request's encoded args into what its handler takes.
Decode = Callable[[str, msgspec.Raw], Any]
R = TypeVar("R")


class ChannelClosed(Exception):
    """The channel was closed by this side; no new calls are possible."""


class ChannelBroken(Exception):
    """The peer went away or violated the protocol."""


class _Pending:
    __slots__ = ("event", "frame")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.frame: Frame | None = None


class Channel:
    """Client side of a connection: ``await call(name, args, body)``."""

    def __init__(self, stream: trio.SocketStream, max_in_flight: int = 64) -> None:
        self._stream = stream
        self._send_lock = trio.Lock()
        self._slots = trio.Semaphore(max_in_flight)
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._closed = False
        self._broken: BaseException | None = None
        self._outbox: list[bytes | bytearray | memoryview] = []
        self._flushing = False

    @property
    def usable(self) -> bool:
        return not self._closed and self._broken is None

    async def request(self, msg: Request[R], body: bytes | bytearray = b"") -> tuple[R, bytes]:
        """Send a typed request; its reply comes back as its declared type."""
        reply, data = await self.call(
            msg.name, msg, body, decode=lambda raw: decode_reply(msg, raw)
        )
        result: R = reply
        return result, data

    async def call(
        self,
        name: str,
        args: Any = None,
        body: bytes | bytearray = b"",
        *,
        decode: Callable[[msgspec.Raw], Any] = decode_any,
    ) -> tuple[Any, bytes]:
        async with self._slots:
            if self._closed:
                raise ChannelClosed(name)
            if self._broken is not None:
                raise ChannelBroken(name) from self._broken
            rid = self._next_id
            self._next_id += 1
            pending = _Pending()
            self._pending[rid] = pending
            try:
                await self._send(encode_frame(Frame(REQUEST, rid, name, args, body)), name)
                await pending.event.wait()
            finally:
                self._pending.pop(rid, None)
            frame = pending.frame
            if frame is None:
                if self._closed:
                    raise ChannelClosed(name)
                raise ChannelBroken(name) from self._broken
            try:
                if frame.kind == REPLY_ERROR:
                    raise _error_from_reply(decode_any(frame.args))
                return decode(frame.args), bytes(frame.body)
            except MessageError as exc:
                # The peer answered something other than it must: as broken
                # as a garbled frame, but only this call's answer is lost.
                raise ChannelBroken(name) from exc

    async def _send(self, buffers: list[bytes | bytearray | memoryview], name: str) -> None:
        """Send one frame. Small frames from calls made in the same scheduler
        tick share one send (each send wakes the peer); large ones are sent by
        their caller, so memory stays bounded by the socket, not an outbox."""
        try:
            if len(self._pending) <= 1 and not self._flushing and not self._send_lock.locked():
                # The only call in flight: nothing can join its send, so it
                # is written at once, without the scheduler round trips of a
                # trio send (each one an epoll wait on a 2-core machine).
                # The lock is taken before the write, so a remainder the
                # socket did not take is sent before any later frame.
                self._send_lock.acquire_nowait()
                try:
                    rest = write_nowait(self._stream.socket.fileno(), buffers)
                    if rest:
                        await self._write(rest)
                finally:
                    self._send_lock.release()
                return
            if sum(len(b) for b in buffers) > SMALL_BODY:
                async with self._send_lock:
                    await self._write(buffers)
                return
            self._outbox.extend(buffers)
            if self._flushing:
                return  # the flushing task sends it; our reply wait covers failure
            self._flushing = True
            try:
                # Frames of other callers ride on this send: it must happen
                # even if this caller is cancelled meanwhile.
                with trio.CancelScope(shield=True):
                    await trio.lowlevel.checkpoint()
                    async with self._send_lock:
                        while self._outbox:
                            data = b"".join(self._outbox)
                            self._outbox.clear()
                            await self._write([data])
            finally:
                self._flushing = False
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._outbox.clear()
            self._mark_broken(exc)
            raise ChannelBroken(name) from exc

    async def _write(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        """Send whole frames, immune to the caller's cancellation: a frame cut
        halfway would make the peer read the following frames as its body, so
        every later call on the channel would hang. Only a peer that stops
        reading for ``SEND_STALL_S`` ends the send, and then the channel."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(SEND_STALL_S) as stall:
                for buf in buffers:
                    await self._stream.send_all(buf)
            if stall.cancelled_caught:
                await trio.aclose_forcefully(self._stream)
                raise trio.BrokenResourceError(f"peer read nothing for {SEND_STALL_S:.0f} s")

    async def run_reader(self) -> None:
        """Dispatch replies until the stream ends; run this in a nursery."""
        decoder = FrameDecoder(raw_args=True)
        try:
            while True:
                data = await self._stream.receive_some(RECV_SIZE)
                if not data:
                    raise ChannelBroken("peer closed the connection")
                for frame in decoder.feed(data):
                    if frame.kind not in (REPLY_OK, REPLY_ERROR):
                        raise FramingError(f"unexpected frame kind {frame.kind}")
                    pending = self._pending.get(frame.request_id)
                    if pending is not None:
                        pending.frame = frame
                        pending.event.set()
        except (ChannelBroken, FramingError, trio.BrokenResourceError, OSError) as exc:
            self._mark_broken(exc)
        except trio.ClosedResourceError as exc:
            if not self._closed:
                self._mark_broken(exc)

    def _mark_broken(self, exc: BaseException) -> None:
        if self._broken is None and not self._closed:
            self._broken = exc
        for pending in self._pending.values():
            pending.event.set()

    async def aclose(self) -> None:
        self._closed = True
        for pending in self._pending.values():
            pending.event.set()
        await self._stream.aclose()


def write_nowait(
    fd: int, buffers: list[bytes | bytearray | memoryview]
) -> list[bytes | bytearray | memoryview]:
    """Write as much of ``buffers`` as the non-blocking socket ``fd`` takes
    now; returns what is left (empty when all of it was sent). A dead peer
    raises ``OSError`` (``BrokenPipeError``: Python ignores SIGPIPE).

    Callers pass ``socket.fileno()`` read at the time of the call, never a
    number kept from earlier: a closed socket's is -1 (``EBADF``), while a
    kept number may by then belong to a segment or database file."""
    try:
        sent = os.writev(fd, buffers)
    except BlockingIOError:
        sent = 0
    rest: list[bytes | bytearray | memoryview] = []
    for buf in buffers:
        if sent >= len(buf):
            sent -= len(buf)
        else:
            rest.append(memoryview(buf)[sent:])
            sent = 0
    return rest


def _error_from_reply(args: Any) -> Exception:
    if isinstance(args, list) and len(args) >= 2 and isinstance(args[0], str):
        code, message = args[0], args[1]
        if code in ERRORS:
            return S3Error(code, message=str(message) if message is not None else None)
        return RuntimeError(f"remote error {code}: {message}")
    return RuntimeError(f"malformed error reply {args!r}")


def error_reply(exc: BaseException) -> list[Any]:
    if isinstance(exc, S3Error):
        return [exc.code, exc.message]
    return ["InternalError", None]


def _decode_plain(name: str, raw: msgspec.Raw) -> Any:
    return decode_any(raw)


async def serve_channel(
    stream: trio.SocketStream,
    handler: Handler,
    *,
    max_in_flight: int = 64,
    decode: Decode = _decode_plain,
) -> None:
    """Serve requests from one connection until it closes.

    Each request runs in its own task; at most ``max_in_flight`` run at once,
    and reading pauses while that many are outstanding. ``decode`` turns a
    request's args into what ``handler`` takes; a ``MessageError`` from it
    is answered as an error reply (the connection stays usable).
    """
    slots = trio.Semaphore(max_in_flight)
    decoder = FrameDecoder(raw_args=True)
    # Replies that become ready together (a group commit finishes many
    # mutations at once) leave in one send: each send wakes the peer, which
    # costs more than joining a few small frames.
    outbox: list[bytes | bytearray | memoryview] = []
    flushing = False

    async def reply(frame: Frame) -> None:
        nonlocal flushing
        buffers = encode_frame(frame)
        if not flushing and not outbox and slots.value >= max_in_flight - 1:
            # The connection's only request: no reply can join this one, so
            # it is written at once (see Channel._send); a remainder the
            # socket did not take goes out first by the flushing path.
            try:
                buffers = write_nowait(stream.socket.fileno(), buffers)
            except OSError:
                return  # the caller went away; its outcome stands (it may retry)
            if not buffers:
                return
        outbox.extend(buffers)
        if flushing:
            return  # the task already flushing will send it
        flushing = True
        try:
            # Shielded like Channel._write: a reply cut halfway by a
            # cancelled handler would garble every later reply.
            with trio.CancelScope(shield=True):
                await trio.lowlevel.checkpoint()  # let replies woken this tick join
                with trio.move_on_after(SEND_STALL_S) as stall:
                    while outbox:
                        data = b"".join(outbox)
                        outbox.clear()
                        await stream.send_all(data)
                if stall.cancelled_caught:
                    outbox.clear()
                    await trio.aclose_forcefully(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            outbox.clear()  # the caller went away; its outcome stands (it may retry)
        finally:
            flushing = False

    async def handle(req: Frame) -> None:
        try:
            try:
                try:
                    args = decode(req.name, req.args)
                except MessageError as exc:
                    log.warning("refusing IPC request: %s", exc)
                    raise exc.as_s3() from None
                result, body = await handler(req.name, args, memoryview(req.body))
            except S3Error as exc:
                await reply(Frame(REPLY_ERROR, req.request_id, req.name, error_reply(exc)))
            except (trio.Cancelled, KeyboardInterrupt):
                raise
            except Exception as exc:
                log.exception("IPC handler %s failed", req.name)
                await reply(Frame(REPLY_ERROR, req.request_id, req.name, error_reply(exc)))
            else:
                await reply(Frame(REPLY_OK, req.request_id, req.name, result, body))
        finally:
            slots.release()

    # In-flight handlers are left to finish when the peer goes away: a write
    # that reached the commit queue must complete whether or not anyone
    # is still listening for the reply.
    async with trio.open_nursery() as nursery:
        while True:
            try:
                data = await stream.receive_some(RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                break
            if not data:
                break
            try:
                frames = decoder.feed(data)
            except FramingError as exc:
                log.warning("dropping IPC connection: %s", exc)
                break
            if any(frame.kind != REQUEST for frame in frames):
                log.warning("dropping IPC connection: unexpected frame kind")
                break
            for frame in frames:
                await slots.acquire()
                nursery.start_soon(handle, frame)
    await stream.aclose()


async def connect(path: str, max_in_flight: int = 64) -> tuple[Channel, trio.SocketStream]:
    stream = await trio.open_unix_socket(path)
    return Channel(stream, max_in_flight), stream


async def listen_unix(path: str, backlog: int) -> trio.socket.SocketType:
    """A listening Unix socket at ``path`` that only this user can connect to.

    A file already at ``path`` is replaced: callers run under the server's
    data-dir lock (held by them or their supervisor), so it was left by a
    dead process of this same server.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock
