"""Client side of the admin socket, used by the CLI against a live server."""

from __future__ import annotations

from typing import Any

from seglake.config import Config
from seglake.errors import S3Error


class AdminUnavailable(Exception):
    """No live server answers on this data dir's admin socket."""


async def admin_call(cfg: Config, name: str, args: dict[str, Any]) -> Any:
    from seglake.maintenance.main import call_socket

    try:
        token = cfg.admin_token_path.read_text().strip()
    except OSError as exc:
        raise AdminUnavailable(
            f"cannot read the admin token ({exc}); is a server running on {cfg.root}?"
        ) from None
    try:
        return await call_socket(str(cfg.admin_socket), name, {**args, "token": token})
    except (OSError, ConnectionError) as exc:
        raise AdminUnavailable(f"no server answers on {cfg.admin_socket}: {exc}") from None
    except S3Error as exc:
        raise AdminUnavailable(f"the server refused: {exc}") from None
