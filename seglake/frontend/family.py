"""What an operation family (objects, buckets, multipart, ...) provides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from seglake.config import Config
from seglake.frontend.http import Request
from seglake.frontend.writer_client import WriterClient
from seglake.meta.reads import MetaReader

Handler = Callable[[Request], Awaitable[None]]


class Family(Protocol):
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None: ...

    def handlers(self) -> dict[str, Handler]:
        """Router operation name → handler."""
        ...
