"""A frontend's connection to the writer, re-established after a restart.

All of a frontend's requests share one multiplexed channel. If the writer
dies, calls in flight fail with ``ChannelBroken`` (the request's outcome is
unknown to us; the S3 client gets 503 and retries) and the next call
reconnects, waiting up to ``RECONNECT_WAIT_S`` for the restarted writer.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import trio

from seglake.errors import S3Error
from seglake.ipc.channel import Channel, ChannelBroken, ChannelClosed
from seglake.ipc.messages import Append, Chunk, Request

R = TypeVar("R")

log = logging.getLogger(__name__)

# Long enough to ride out a writer restart with recovery of a typical open
# segment; short enough that a client is answered before its own timeout.
RECONNECT_WAIT_S = 10.0
MAX_IN_FLIGHT = 128


class WriterClient:
    def __init__(self, socket_path: str, nursery: trio.Nursery) -> None:
        self._path = socket_path
        self._nursery = nursery
        self._channel: Channel | None = None
        self._lock = trio.Lock()

    async def _get(self) -> Channel:
        ch = self._channel
        if ch is not None and ch.usable:
            return ch
        async with self._lock:
            ch = self._channel
            if ch is not None and ch.usable:
                return ch
            with trio.move_on_after(RECONNECT_WAIT_S):
                while True:
                    try:
                        stream = await trio.open_unix_socket(self._path)
                    except OSError:
                        await trio.sleep(0.05)
                        continue
                    ch = Channel(stream, MAX_IN_FLIGHT)
                    self._nursery.start_soon(ch.run_reader)
                    self._channel = ch
                    return ch
            raise S3Error("ServiceUnavailable", message="the storage writer is not available")

    async def call(self, msg: Request[R], body: bytes | bytearray = b"") -> R:
        """Send ``msg`` (with ``body`` as its bulk payload); its typed reply."""
        ch = await self._get()
        try:
            result, _ = await ch.request(msg, body)
        except (ChannelBroken, ChannelClosed) as exc:
            log.warning("writer connection lost during %s: %r", msg.name, exc)
            raise S3Error(
                "ServiceUnavailable", message="the storage writer restarted; please retry"
            ) from exc
        return result

    async def append(self, data: bytes | bytearray, digest: bytes) -> Chunk:
        """Store one chunk (a full one, before the mutation that lists it)."""
        where = await self.call(Append(digest=digest), data)
        return Chunk(where.segment_id, where.offset, where.length, digest)

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.aclose()
