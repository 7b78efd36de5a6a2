"""Client side of the admin socket, used by the CLI against a live server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.call import call_socket
from seglake.ipc.channel import ChannelBroken, ChannelClosed
from seglake.ipc.messages import Request, decode_any, decode_reply

R = TypeVar("R")


class AdminUnavailable(Exception):
    """No live server answers on this data dir's admin socket."""


class AdminRefused(AdminUnavailable):
    """A live server answered, and refused the command."""

    def __init__(self, message: str, error: S3Error) -> None:
        super().__init__(message)
        self.error = error


async def admin_call(
    cfg: Config,
    name: str,
    args: dict[str, Any],
    *,
    decode: Callable[[msgspec.Raw], Any] = decode_any,
) -> Any:
    try:
        token = cfg.admin_token_path.read_text().strip()
    except OSError as exc:
        raise AdminUnavailable(
            f"cannot read the admin token ({exc}); is a server running on {cfg.root}?"
        ) from None
    try:
        return await call_socket(
            str(cfg.admin_socket), name, {**args, "token": token}, decode=decode
        )
    except (OSError, ChannelBroken, ChannelClosed, trio.TooSlowError) as exc:
        raise AdminUnavailable(f"no server answers on {cfg.admin_socket}: {exc}") from None
    except S3Error as exc:
        raise AdminRefused(f"the server refused: {exc}", exc) from None


async def admin_mutation(cfg: Config, msg: Request[R]) -> R:
    """A writer mutation relayed by the admin socket; its typed reply."""
    reply: R = await admin_call(
        cfg,
        "writer_mutation",
        {"mutation": msg.name, "args": msg},
        decode=lambda raw: decode_reply(msg, raw),
    )
    return reply
