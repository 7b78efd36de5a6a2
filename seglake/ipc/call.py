"""One request to one of our Unix-socket services, from a short-lived caller.

The CLI (``seglake/ops/admin_client.py``) calls the admin socket this way,
and the maintenance process calls the writer and the supervisor. Errors keep
the channel's meaning so callers can tell the cases apart: a service that is
not there raises ``OSError``, one that dies during the call
``ChannelBroken``, a refusal ``S3Error``, a call over ``CALL_TIMEOUT_S``
``trio.TooSlowError``. Calls are typed (``messages.py``): ``call_typed``
sends a request to any of our servers (writer, supervisor, admin socket) and
returns its reply decoded as the declared type; ``call_writer`` is its name
for the writer, and ``call_service`` the writer call of a server's own
handlers. ``call_socket`` alone carries plain msgpack values (the admin
socket's older commands).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec
import trio

from seglake.errors import S3Error
from seglake.ipc.channel import ChannelBroken, ChannelClosed, connect
from seglake.ipc.messages import Request, decode_any, decode_reply

R = TypeVar("R")

# Every admin and maintenance call is a bounded step (a GC step, a state
# change): one that takes longer is a service in trouble, not a slow answer.
CALL_TIMEOUT_S: Final = 10.0


async def call_socket(
    path: str,
    name: str,
    args: Any = None,
    *,
    decode: Callable[[msgspec.Raw], Any] = decode_any,
) -> Any:
    """Connect to ``path``, make one call, close; the reply's value, read by
    ``decode`` (plain msgpack values unless told otherwise)."""
    channel, _ = await connect(path)
    # The call's own error (an S3Error refusal, a timeout) is carried out of
    # the nursery by hand: raised inside it, trio would wrap it in an
    # ExceptionGroup and callers could no longer tell a refusal from a crash.
    failure: Exception | None = None
    result: Any = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.run_reader)
        try:
            with trio.fail_after(CALL_TIMEOUT_S):
                result, _ = await channel.call(name, args, decode=decode)
        except Exception as exc:
            failure = exc
        finally:
            await channel.aclose()
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def call_typed(path: str, msg: Request[R]) -> R:
    """``call_socket`` with a typed request; its reply as its declared type."""
    reply: R = await call_socket(path, msg.name, msg, decode=lambda raw: decode_reply(msg, raw))
    return reply


async def call_writer(path: str, msg: Request[R]) -> R:
    """``call_typed`` to the writer's socket."""
    return await call_typed(path, msg)


async def call_service(path: str, msg: Request[R]) -> R:
    """``call_writer`` for a server's own handlers: a writer that is down
    (restarting) or dies during the call (stopping on an I/O error) is a
    ``ServiceUnavailable`` refusal the client may retry, not a crash of the
    handler."""
    try:
        return await call_writer(path, msg)
    except (OSError, ChannelBroken, ChannelClosed) as exc:
        raise S3Error(
            "ServiceUnavailable",
            message=f"{os.path.basename(path)} did not answer {msg.name}: "
            f"{exc or type(exc).__name__}",
        ) from None
