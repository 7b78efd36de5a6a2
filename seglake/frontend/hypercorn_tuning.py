"""Two per-connection costs of Hypercorn's trio TCP server, made cheaper.

Both patches keep what Hypercorn does and change only how much it costs.

1. Read size. Hypercorn reads every connection 64 KiB at a time, and each
read travels through h11, Hypercorn's stream and the ASGI ``receive`` queue
into the application: a 64 MiB upload is ~1,000 trips through that Python
machinery. Asking for more on every read is no answer: ``recv(n)``
allocates ``n`` bytes before it shrinks the result, and for a 1 MiB buffer
that allocation is an ``mmap`` (~25 µs per small request instead of ~3 µs,
measured). So a connection reads 64 KiB as before, and only after a read
came back full (a body is streaming in) asks for ``BULK_READ``, until a read
brings less than 64 KiB.

2. The keep-alive timer. Between two requests a connection is "idle", and
Hypercorn closes it after ``keep_alive_timeout`` (which also bounds how long
a request head may take to arrive). It does so by starting a task at the end
of every request and cancelling it when the next request head is parsed:
spawning and cancelling that task was ~10% of a small request's CPU in the
frontend. ``IdleTimer`` keeps one watcher task per connection instead, and
arming or disarming it is a couple of attribute writes.
"""

from __future__ import annotations

from math import inf
from typing import Any

import trio
from hypercorn.events import Closed, RawData

from seglake.frontend import patched_versions

# Hypercorn's own read size (``hypercorn.trio.tcp_server.MAX_RECV``, 64 KiB),
# taken from it by ``install()`` once its version has been checked.
_max_recv = 64 * 1024

# 512 KiB: 1 MiB reads cut the 64 MiB PUT's CPU a little further but raised
# the frontends' peak RSS by ~60 MiB (allocator fragmentation), close to the
# 400 MiB bound.
BULK_READ = 1 << 19

_installed = False


class IdleTimer:
    """Stands in for Hypercorn's ``TrioSingleTask`` as ``TCPServer.idle_task``.

    Same behaviour: while armed (``restart``: the connection went idle), the
    connection is closed when ``keep_alive_timeout`` passes or as soon as the
    server is shutting down; while disarmed (``stop``: a request is being
    handled) nothing closes it, and a shutdown closes it once it is idle.
    """

    def __init__(self, server: Any) -> None:
        self._server = server
        self._armed = False
        self._finished = False
        self._deadline = inf
        self._scope: trio.CancelScope | None = None
        self._wake = trio.Event()
        self._watching = False

    async def restart(self, task_group: Any, action: Any) -> None:
        self._armed = True
        self._deadline = trio.current_time() + self._server.config.keep_alive_timeout
        if self._scope is not None:
            self._scope.deadline = self._deadline
        if not self._watching:
            self._watching = True
            task_group._nursery.start_soon(self._watch)
        self._wake.set()

    async def stop(self) -> None:
        # The watcher notices at its deadline (or at shutdown) and then waits
        # to be armed again: nothing to reschedule per request.
        self._armed = False

    def finish(self) -> None:
        """The connection is gone: let the watcher end (its task group waits)."""
        self._finished = True
        self._armed = False
        if self._scope is not None:
            self._scope.cancel()
        self._wake.set()

    async def _watch(self) -> None:
        server = self._server
        while not self._finished:
            if not self._armed:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            with trio.CancelScope(deadline=self._deadline) as scope:
                self._scope = scope
                await server.context.terminated.wait()
            self._scope = None
            if not self._armed or self._finished:
                continue
            if scope.cancelled_caught and trio.current_time() < self._deadline:
                continue  # re-armed with a later deadline meanwhile
            # Idle past the timeout, or the server is shutting down.
            with trio.CancelScope(shield=True):
                await server._initiate_server_close()
            return


async def _read_data(self: Any) -> None:
    """Hypercorn's ``TCPServer._read_data`` (timeouts, end of stream, errors,
    the ``Closed`` event), with the adaptive read size; and the idle watcher
    is told when the connection is gone."""
    max_recv = _max_recv
    size = max_recv
    try:
        while True:
            try:
                with trio.fail_after(self.config.read_timeout or inf):
                    data = await self.stream.receive_some(size)
            except (
                trio.ClosedResourceError,
                trio.BrokenResourceError,
                trio.TooSlowError,
            ):
                break
            else:
                await self.protocol.handle(RawData(bytes(data)))
                if data == b"":
                    break
                size = BULK_READ if len(data) >= max_recv else max_recv
        await self.protocol.handle(Closed())
    finally:
        if isinstance(self.idle_task, IdleTimer):
            self.idle_task.finish()


def install() -> None:
    global _installed, _max_recv
    if _installed:
        return
    # The methods replaced below are private: only a tested version is patched
    # (and imported only then, so an unknown version's layout cannot fail
    # before the check has named it).
    patched_versions.check()
    from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

    _max_recv = MAX_RECV
    _installed = True
    original_init: Any = TCPServer.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.idle_task = IdleTimer(self)

    TCPServer.__init__ = __init__  # type: ignore[method-assign]
    TCPServer._read_data = _read_data  # type: ignore[method-assign]
