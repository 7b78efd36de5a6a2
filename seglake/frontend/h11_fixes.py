"""Four changes to Hypercorn's HTTP/1.1 responses: three fixes for S3 clients, one for speed.

1. ``Expect: 100-continue`` is answered by the app, after authentication.

Hypercorn's HTTP/1.1 protocol sends ``100`` as soon as it has parsed a
request head, before the application has looked at it: a client uploading
to a bucket it may not write to is invited to send its whole body first.
It also sends the 100 without a reason phrase, which some botocore versions
(e.g. the one in Debian's awscli 2.9) do not accept.

``install()`` wraps two methods of Hypercorn's ``H11Protocol``:
- the automatic 100 is dropped;
- while a request's stream (and so its application task) is created, a
  callable that sends ``100 Continue`` for that connection is put in a
  context variable, which the application task inherits.

``Request.recv()`` calls it before its first read of the body, i.e. only
once the request has been routed and authenticated. A request refused
before that gets its error without a 100 (and ``Connection: close``).

2. Every response carries its reason phrase (``HTTP/1.1 200 OK``), as AWS
sends it. h11 leaves it empty, and botocore's expect-continue handling,
which reads the status line itself when the server answers without a 100,
only accepts a three-part status line: with ``HTTP/1.1 200 `` it then parses
the first header as the status line.

3. A request with ``Expect: 100-continue`` and an empty body still gets its
``100`` once authenticated. h11 considers such a client no longer waiting,
but botocore's expect handling (in Debian's awscli 2.9 at least) takes a
final answer that comes without a 100 as the answer to its *next* request on
that connection too: the next upload's real status line is then parsed as a
header, the response has no length, and the client waits for EOF forever.
An extra 100 is harmless to every HTTP/1.1 client, which must skip it.

4. The response head and the first body bytes leave in one send. Hypercorn
sends each h11 event on its own (head, body, and an empty write for the end
of a Content-Length body), and every send costs a lock, a cancel scope and
a system call: a small GET paid for three sends where one carries it all.
The head is held on the connection until the next event of that response
(its body, or its end), which always follows: h11 allows nothing else after
a head. Should the application fail in between, the connection is closed
anyway, and the client sees it closed without the head instead of with a
head and a cut body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any

import h11
from hypercorn.events import RawData

from seglake.frontend import patched_versions

SendContinue = Callable[[], Awaitable[None]]

send_continue: ContextVar[SendContinue | None] = ContextVar("seglake_send_continue", default=None)

_installed = False
# Fix 4: the response head waits on the connection for the first body bytes
# (or the end of the message) and leaves with them in one send.
_HEAD_ATTR = "_seglake_pending_head"
# A first body piece up to this size is joined to the head (one copy of it);
# a bigger one goes in its own send.
MAX_JOINED_BODY = 64 * 1024


_REASONS: dict[int, bytes] = {}


def _reason(status: int) -> bytes:
    reason = _REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b"Unknown"
        _REASONS[status] = reason
    return reason


def install() -> None:
    global _installed
    if _installed:
        return
    # The methods replaced below are private: only a tested version is patched
    # (and the class is imported only then, so an unknown version's layout
    # cannot fail before the check has named it).
    patched_versions.check()
    from hypercorn.protocol.h11 import H11Protocol

    _installed = True
    original_send: Any = H11Protocol._send_h11_event
    original_create: Any = H11Protocol._create_stream

    async def _send_h11_event(self: H11Protocol, event: Any) -> None:
        if isinstance(event, h11.InformationalResponse) and event.status_code == 100:
            return  # sent by the application once it has authenticated the request
        if isinstance(event, h11.Response) and not event.reason:
            # Passing h11's own (already validated) Headers object skips a
            # second validation of every header: ~5% of a small GET's CPU.
            event = h11.Response(
                status_code=event.status_code,
                headers=event.headers,
                reason=_reason(event.status_code),
            )
        # What follows is Hypercorn's own _send_h11_event, except that the
        # bytes are sent only once there is a body to go with them (fix 4).
        try:
            data = self.connection.send(event) or b""
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            data = b""
        head: bytes = getattr(self, _HEAD_ATTR, b"")
        if isinstance(event, h11.Response):
            setattr(self, _HEAD_ATTR, head + data)
            return
        if head:
            setattr(self, _HEAD_ATTR, b"")
            if len(data) <= MAX_JOINED_BODY:
                data = head + data
            else:
                await self.send(RawData(data=head))
        if data:  # the end of a Content-Length body is no bytes at all
            await self.send(RawData(data=data))

    async def _create_stream(self: H11Protocol, request: h11.Request) -> None:
        expects = any(
            name == b"expect" and value.lower() == b"100-continue"
            for name, value in request.headers
        )

        async def continue_() -> None:
            # h11 stops "waiting" as soon as the body has ended, which for
            # Content-Length: 0 is at once; the 100 is still owed (fix 3).
            if self.connection.they_are_waiting_for_100_continue or expects:
                await original_send(
                    self,
                    h11.InformationalResponse(
                        status_code=100,
                        headers=self.config.response_headers("h11"),
                        reason=b"Continue",
                    ),
                )

        token = send_continue.set(continue_)
        try:
            await original_create(self, request)
        finally:
            send_continue.reset(token)

    H11Protocol._send_h11_event = _send_h11_event  # type: ignore[method-assign]
    H11Protocol._create_stream = _create_stream  # type: ignore[method-assign]
