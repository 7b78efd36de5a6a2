"""Client side of the admin socket, used by the CLI against a live server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.call import call_socket, call_typed
from seglake.ipc.channel import ChannelBroken, ChannelClosed
from seglake.ipc.messages import AdminStats, Request, decode_any, decode_reply

R = TypeVar("R")


class AdminUnavailable(Exception):
    """No live server answers on this data dir's admin socket."""


class AdminRefused(AdminUnavailable):
    """A live server answered, and refused the command."""

    def __init__(self, message: str, error: S3Error) -> None:
        super().__init__(message)
        self.error = error


def _token(cfg: Config) -> str:
    try:
        return cfg.admin_token_path.read_text().strip()
    except OSError as exc:
        raise AdminUnavailable(
            f"cannot read the admin token ({exc}); is a server running on {cfg.root}?"
        ) from None


async def _answered(cfg: Config, call: Awaitable[R]) -> R:
    """``call``'s reply, its failures as ``AdminUnavailable``/``AdminRefused``."""
    try:
        return await call
    except (OSError, ChannelBroken, ChannelClosed, trio.TooSlowError) as exc:
        raise AdminUnavailable(f"no server answers on {cfg.admin_socket}: {exc}") from None
    except S3Error as exc:
        raise AdminRefused(f"the server refused: {exc}", exc) from None


async def admin_call(
    cfg: Config,
    name: str,
    args: dict[str, Any],
    *,
    decode: Callable[[msgspec.Raw], Any] = decode_any,
) -> Any:
    """One of the admin socket's plain commands (``status``, ``maintenance``, ...)."""
    token = _token(cfg)
    return await _answered(
        cfg, call_socket(str(cfg.admin_socket), name, {**args, "token": token}, decode=decode)
    )


async def admin_request(cfg: Config, msg: AdminStats) -> dict[str, Any]:
    """A typed admin command (``messages.ADMIN``), with the token filled in;
    its typed reply."""
    signed = msgspec.structs.replace(msg, token=_token(cfg))
    return await _answered(cfg, call_typed(str(cfg.admin_socket), signed))


async def admin_mutation(cfg: Config, msg: Request[R]) -> R:
    """A writer mutation relayed by the admin socket; its typed reply."""
    reply: R = await admin_call(
        cfg,
        "writer_mutation",
        {"mutation": msg.name, "args": msg},
        decode=lambda raw: decode_reply(msg, raw),
    )
    return reply
