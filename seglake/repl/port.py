"""What the pull, push and bootstrap loops are given by their caller: a
writer to store chunks and apply entries through, and a remote to talk to.

The loops never open a socket to the writer themselves: the maintenance
process hands them its writer channel (``maintenance/repl_tasks.py``), an
offline CLI run the embedded writer (``seglake/writer/embedded.py``). The
remote is ``seglake/repl/client.py``'s ``ReplClient``; the protocol below
names only what the loops use, so they are typed without depending on how
the client talks HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from seglake.ipc.messages import Appended, Request
from seglake.protocol.repl_wire import OplogPage, PushBatch, PushResult

R = TypeVar("R")


class WriterPort(Protocol):
    async def append(self, digest: bytes, data: bytes) -> Appended:
        """Store one chunk whose BLAKE3 the caller has checked."""
        ...

    async def apply(self, msg: Request[R]) -> R:
        """Commit one mutation (``ReplApply``, ``ReplSetPushCursor``...)."""
        ...


class Remote(Protocol):
    async def oplog(self, since: str, limit: int, exclude_site: str | None = None) -> OplogPage: ...

    async def push(self, batch: PushBatch, frames: list[tuple[bytes, bytes]]) -> PushResult: ...

    async def have(self, digests: list[bytes]) -> list[bytes]: ...

    async def chunks(self, digests: list[bytes]) -> dict[bytes, bytes]: ...

    def snapshot(self) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...

    async def aclose(self) -> None: ...
