"""One request to one of our Unix-socket services, from a short-lived caller.

The CLI (``seglake/ops/admin_client.py``) calls the admin socket this way,
and the maintenance process calls the writer and the supervisor. Errors keep
the channel's meaning so callers can tell the cases apart: a service that is
not there raises ``OSError``, one that dies during the call
``ChannelBroken``, a refusal ``S3Error``, a call over ``CALL_TIMEOUT_S``
``trio.TooSlowError``.
"""

from __future__ import annotations

import os
from typing import Any, Final

import trio

from seglake.errors import S3Error
from seglake.ipc.channel import ChannelBroken, ChannelClosed, connect

# Every admin and maintenance call is a bounded step (a GC step, a state
# change): one that takes longer is a service in trouble, not a slow answer.
CALL_TIMEOUT_S: Final = 10.0


async def call_socket(path: str, name: str, args: Any = None) -> Any:
    """Connect to ``path``, make one call, close; the reply's value."""
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
                result, _ = await channel.call(name, args)
        except Exception as exc:
            failure = exc
        finally:
            await channel.aclose()
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def call_service(path: str, name: str, args: Any = None) -> Any:
    """``call_socket`` for a server's own handlers: a service that is down
    (the writer restarting) or dies during the call (a writer stopping on an
    I/O error) is a ``ServiceUnavailable`` refusal the client may retry, not
    a crash of the handler."""
    try:
        return await call_socket(path, name, args)
    except (OSError, ChannelBroken, ChannelClosed) as exc:
        raise S3Error(
            "ServiceUnavailable",
            message=f"{os.path.basename(path)} did not answer {name}: {exc or type(exc).__name__}",
        ) from None
