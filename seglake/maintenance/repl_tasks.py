"""Continuous replication in the maintenance process
(docs/design-replication.md §6): one task per configured remote
(``--repl-remote``) and direction (``--repl-pull``, on by default;
``--repl-push``), each repeating its step (``seglake/repl/``) every
``--repl-interval`` / ``--repl-push-interval`` once caught up and backing
off on failures up to the backoff max.

Quiesce protocol: replication writes data, so a task does not step while
the writer reports maintenance mode (it waits, shown as "paused"); the
writer refuses its mutations then anyway. A task stopped by a permanent
error (credentials, policy, a truncated oplog) stays stopped until the
process restarts; its status shows why.

Chunks and entries reach the writer over one channel of this process
(``WriterChannel``), like a frontend's: ``Append`` with the chunk as the
frame body, then ``ReplApply``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final, TypeVar

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.channel import Channel, ChannelBroken, ChannelClosed, connect
from seglake.ipc.messages import Append, Appended, MaintenanceStatus, ReplNoteRemote, Request
from seglake.repl.backoff import Backoff
from seglake.repl.client import ReplClient
from seglake.repl.pull import StepReport, pull_step
from seglake.repl.push import push_step, rewind_push
from seglake.repl.runner import Failure, ReplStopped, TaskStatus, run_task

log = logging.getLogger("seglake.maintenance")
R = TypeVar("R")

# A ReplApply of a full group (64 MiB of chunks, 10,000 entries) is one
# writer batch; far longer than that is a writer in trouble.
WRITER_CALL_TIMEOUT_S: Final = 300.0
# How long a task waits for the remote's site id before it pushes (it must
# leave out the remote's own entries).
SITE_PROBE_LIMIT: Final = 1


class WriterChannel:
    """A ``WriterPort`` over one multiplexed channel to the writer,
    reconnected after a writer restart."""

    def __init__(self, path: str, nursery: trio.Nursery) -> None:
        self._path = path
        self._nursery = nursery
        self._channel: Channel | None = None
        self._lock = trio.Lock()

    async def _get(self) -> Channel:
        async with self._lock:
            ch = self._channel
            if ch is not None and ch.usable:
                return ch
            try:
                ch, _ = await connect(self._path, max_in_flight=16)
            except OSError as exc:
                raise S3Error("ServiceUnavailable", message=f"writer: {exc}") from None
            self._nursery.start_soon(ch.run_reader)
            self._channel = ch
            return ch

    async def _call(self, msg: Request[R], body: bytes = b"") -> R:
        ch = await self._get()
        try:
            with trio.fail_after(WRITER_CALL_TIMEOUT_S):
                result, _ = await ch.request(msg, body)
        except (ChannelBroken, ChannelClosed) as exc:
            raise S3Error(
                "ServiceUnavailable", message=f"the writer went away during {msg.name}"
            ) from exc
        return result

    async def append(self, digest: bytes, data: bytes) -> Appended:
        return await self._call(Append(digest=digest), data)

    async def apply(self, msg: Request[R]) -> R:
        return await self._call(msg)

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.aclose()


class ReplTasks:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tasks: dict[tuple[str, str], TaskStatus] = {}
        for remote in cfg.repl_remotes:
            if cfg.repl_pull:
                self.tasks[(remote, "pull")] = TaskStatus(remote, "pull")
            if cfg.repl_push:
                self.tasks[(remote, "push")] = TaskStatus(remote, "push")

    def describe(self) -> list[dict[str, Any]]:
        now = time.time()
        return [s.as_dict(now) for s in self.tasks.values()]

    async def run(self) -> None:
        if not self.tasks:
            return
        if not (self.cfg.repl_access_key and self.cfg.repl_secret_key):
            for s in self.tasks.values():
                s.state = "stopped"
                s.last_error = "no --repl-access-key / --repl-secret-key configured"
            log.error("replication remotes configured without --repl-access-key/--repl-secret-key")
            return
        async with trio.open_nursery() as nursery:
            writer = WriterChannel(str(self.cfg.writer_socket), nursery)
            try:
                async with trio.open_nursery() as tasks:
                    for (remote, direction), status in self.tasks.items():
                        tasks.start_soon(self._task, writer, remote, direction, status)
            finally:
                await writer.aclose()
                nursery.cancel_scope.cancel()

    async def _paused(self, writer: WriterChannel) -> bool:
        state = await writer.apply(MaintenanceStatus())
        return bool(state.get("state") != "off")

    async def _task(
        self, writer: WriterChannel, remote: str, direction: str, status: TaskStatus
    ) -> None:
        cfg = self.cfg
        client = ReplClient(
            remote, access_key=cfg.repl_access_key, secret_key=cfg.repl_secret_key,
            region=cfg.repl_region, ca_file=cfg.repl_ca_path,
        )  # fmt: skip

        async def note(report: StepReport | None, error: str | None) -> None:
            nbytes = report.bytes_in if report is not None else 0
            await writer.apply(ReplNoteRemote(remote=remote, error=error, bytes_in=nbytes))

        async def paused() -> bool:
            return await self._paused(writer)

        try:
            if direction == "pull":

                async def pull() -> StepReport:
                    return await pull_step(
                        client, writer, cfg.db_path, remote, limit=cfg.repl_limit
                    )

                policy = Backoff(cfg.repl_interval, cfg.repl_backoff_max)
                await run_task(pull, status, policy, watch=True, paused=paused, note=note)
            else:
                site: list[str] = []
                epoch: list[str] = []

                async def push() -> StepReport:
                    if not site:
                        site.append((await client.oplog("0", SITE_PROBE_LIMIT)).site)
                    report = await push_step(
                        client, writer, cfg.root, cfg.db_path, remote, limit=cfg.repl_push_limit,
                        remote_site=site[0],
                    )  # fmt: skip
                    epoch[:] = [report.epoch]
                    return report

                async def on_failure(f: Failure) -> None:
                    if f.code == "ReplicationGap":
                        # The remote lost our cursor: it may be another
                        # store now, under another site id.
                        site.clear()
                        if epoch:
                            await rewind_push(writer, remote, epoch[0])

                policy = Backoff(cfg.repl_push_interval, cfg.repl_push_backoff_max)
                await run_task(
                    push, status, policy, watch=True, paused=paused, note=note,
                    on_failure=on_failure,
                )  # fmt: skip
        except ReplStopped as exc:
            log.error("replication %s %s stopped: %s", direction, remote, exc.failure)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
