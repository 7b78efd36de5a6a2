"""``seglake -mode repl-pull|repl-push|repl-bootstrap -repl-remote URL``:
one-shot replication (docs/replication.md).

They run the same steps as the maintenance process's continuous tasks
(``seglake/repl/``), against the writer embedded in this process, with
the data-dir lock held: no server may run on the data dir meanwhile. With
a live server the command refuses and says to use ``serve --repl-remote``
(continuous pull, and push with ``--repl-push``): two pullers for one
remote would only refuse each other's cursor moves.

A store in maintenance mode is not touched (replication writes data).
``-repl-watch`` / ``-repl-push-watch`` keep the command running, stepping
every interval, until it is stopped (Ctrl-C) or hits a permanent error.
Exit status: 0 caught up, 1 stopped on an error or gave up (the error is
printed and kept in ``repl_remotes.last_error``), 2 bad usage.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.messages import ReplNoteRemote
from seglake.locks import DataDirBusy
from seglake.meta.maintenance_state import OFF, read_state
from seglake.meta.repl_remote_reads import RemoteRow, remote_row
from seglake.meta.schema import open_read
from seglake.protocol.repl_wire import WireError, parse_cursor
from seglake.repl.backoff import Backoff
from seglake.repl.client import ReplClient
from seglake.repl.port import Remote, WriterPort
from seglake.repl.pull import StepReport, pull_step, set_pull_cursor
from seglake.repl.push import push_step, rewind_push
from seglake.repl.runner import Failure, ReplStopped, TaskStatus, run_task

MODES = ("repl-pull", "repl-push", "repl-bootstrap")
FETCH_DATA_REFUSED = (
    "-repl-fetch-data=false is not supported: a version whose data stayed on the remote would "
    "need every GET of it to fetch from there, which seglake does not do; pull with the data "
    "(the default), or use repl-validate to compare metadata only"
)


class UsageError(Exception):
    """The command line asks for something this mode cannot do."""


def _err(msg: str) -> None:
    print(f"seglake: {msg}", file=sys.stderr)


def client_for(cfg: Config, url: str) -> ReplClient:
    return ReplClient(
        url, access_key=cfg.repl_access_key, secret_key=cfg.repl_secret_key,
        region=cfg.repl_region, ca_file=cfg.repl_ca_path,
    )  # fmt: skip


def _stored(cfg: Config, remote: str) -> tuple[RemoteRow | None, str]:
    conn = open_read(str(cfg.db_path))
    try:
        return remote_row(conn, remote), str(read_state(conn).get("state", OFF))
    finally:
        conn.close()


async def _noter(writer: WriterPort, remote: str) -> Any:
    async def note(report: StepReport | None, error: str | None) -> None:
        await writer.apply(
            ReplNoteRemote(
                remote=remote, error=error, bytes_in=report.bytes_in if report is not None else 0
            )
        )

    return note


async def start_pull_at(
    cfg: Config, source: Remote, writer: WriterPort, remote: str, since: str
) -> None:
    """``-repl-since EPOCH:SEQ`` (or a bare SEQ in the remote's epoch): where
    the first pull of ``remote`` starts. Allowed only while no cursor is
    stored for that epoch (or it is already there): moving a stored cursor
    would skip entries or re-apply them under a wrong range."""
    try:
        epoch, seq = parse_cursor(since)
    except WireError as exc:
        raise UsageError(f"-repl-since: {exc}") from None
    probe = await source.oplog("0", 1)
    epoch = epoch or probe.epoch
    row, _ = await trio.to_thread.run_sync(_stored, cfg, remote)
    if row is not None and row.epoch == epoch:
        if row.pull_cursor == seq:
            return
        raise UsageError(
            f"-repl-since {since}: the pull cursor of {remote} is stored at {epoch}:"
            f"{row.pull_cursor}; it moves only with the entries it covers"
        )
    if epoch != probe.epoch:
        raise UsageError(f"-repl-since {since}: {remote} serves oplog epoch {probe.epoch}")
    await set_pull_cursor(writer, remote, epoch=epoch, seq=seq, remote_site=probe.site)


async def remote_site_of(cfg: Config, dest: Remote, remote: str) -> str:
    row, _ = await trio.to_thread.run_sync(_stored, cfg, remote)
    if row is not None and row.site:
        return row.site
    return (await dest.oplog("0", 1)).site


async def run_pull(cfg: Config, writer: WriterPort, remote: str, source: Remote) -> TaskStatus:
    if cfg.repl_since:
        await start_pull_at(cfg, source, writer, remote, cfg.repl_since)
    status = TaskStatus(remote, "pull")

    async def step() -> StepReport:
        return await pull_step(source, writer, cfg.db_path, remote, limit=cfg.repl_limit)

    policy = Backoff(cfg.repl_interval, cfg.repl_backoff_max, cfg.repl_retry_timeout)
    await run_task(step, status, policy, watch=cfg.repl_watch, note=await _noter(writer, remote))
    return status


async def run_push(cfg: Config, writer: WriterPort, remote: str, dest: Remote) -> TaskStatus:
    row, _ = await trio.to_thread.run_sync(_stored, cfg, remote)
    if cfg.repl_push_since:
        if not cfg.repl_push_since.isdigit():
            raise UsageError(f"-repl-push-since {cfg.repl_push_since!r}: a seq of our oplog")
        since = int(cfg.repl_push_since)
        at = row.push_cursor if row is not None else 0
        if since == 0 and at and row is not None and row.push_epoch:
            await rewind_push(writer, remote, row.push_epoch)
        elif since not in (0, at):
            raise UsageError(
                f"-repl-push-since {since}: the push cursor of {remote} is at {at}; only 0 "
                "(send everything again; the remote skips what it has) or that value is "
                "accepted, since the remote takes only batches that start at its cursor"
            )
    site = await remote_site_of(cfg, dest, remote)
    status = TaskStatus(remote, "push", remote_site=site)
    own_epoch: list[str] = []

    async def step() -> StepReport:
        report = await push_step(
            dest, writer, cfg.root, cfg.db_path, remote, limit=cfg.repl_push_limit,
            remote_site=site,
        )  # fmt: skip
        own_epoch[:] = [report.epoch]
        return report

    async def on_failure(f: Failure) -> None:
        if f.code == "ReplicationGap" and own_epoch:
            await rewind_push(writer, remote, own_epoch[0])

    policy = Backoff(cfg.repl_push_interval, cfg.repl_push_backoff_max, cfg.repl_retry_timeout)
    await run_task(
        step, status, policy, watch=cfg.repl_push_watch, note=await _noter(writer, remote),
        on_failure=on_failure,
    )  # fmt: skip
    return status


async def run_bootstrap(
    cfg: Config, writer: WriterPort, remote: str, source: Remote
) -> dict[str, Any]:
    """The snapshot, then pulls until caught up; a failure of the snapshot
    is final (run it again with -repl-bootstrap-force), one of the catch-up
    pulls is retried like ``repl-pull``."""
    from seglake.repl.bootstrap import bootstrap_from

    stream = client_for(cfg, remote)
    try:
        report = await bootstrap_from(
            source, stream, writer, cfg.db_path, remote, force=cfg.repl_bootstrap_force,
            limit=cfg.repl_limit,
        )  # fmt: skip
    except Exception as exc:
        from seglake.repl.runner import classify

        failure = classify(exc)
        if failure is None:
            raise
        raise S3Error(
            "InternalError"
            if failure.status in (0,) or failure.status >= 500
            else "InvalidRequest",
            message=f"bootstrap from {remote} failed: {failure}",
        ) from None
    doc = report.as_dict()
    if report.catch_up.more:
        status = await run_pull(cfg, writer, remote, source)
        doc["catch_up_more"] = status.as_dict(time.time())
    return doc


def _summary(mode: str, status: TaskStatus) -> str:
    moved = "received" if status.direction == "pull" else "sent"
    nbytes = status.bytes_in if status.direction == "pull" else status.bytes_out
    return (
        f"{mode} {status.remote}: {status.entries} entries ({status.applied} applied, "
        f"{status.skipped} skipped, {status.conflicts} conflicts), {status.chunks} chunks / "
        f"{nbytes} bytes {moved}; cursor {status.epoch}:{status.cursor}, backlog "
        f"{status.backlog}"
    )


def repl_cmd(cfg: Config, mode: str, *, as_json: bool) -> int:
    """``-mode repl-pull`` / ``repl-push`` / ``repl-bootstrap``."""
    from seglake.ops.gate import GateRefused, live_state

    remotes = cfg.repl_remotes
    if not remotes:
        _err(f"{mode} needs -repl-remote URL")
        return 2
    if not (cfg.repl_access_key and cfg.repl_secret_key):
        _err(f"{mode} needs -repl-access-key and -repl-secret-key (a key of the remote)")
        return 2
    if not cfg.repl_fetch_data:
        _err(f"{mode}: {FETCH_DATA_REFUSED}")
        return 2
    if mode == "repl-bootstrap" and len(remotes) != 1:
        _err("repl-bootstrap takes exactly one -repl-remote")
        return 2
    try:
        live = live_state(cfg)
    except GateRefused as exc:
        _err(f"{mode}: {exc}")
        return 1
    if live is not None:
        _err(
            f"{mode}: a server is running on {cfg.root}; continuous replication runs inside it: "
            f"restart it with `seglake serve --repl-remote URL` (pull; add --repl-push to push), "
            f"or stop it to run {mode} once"
        )
        return 1
    if mode in ("repl-bootstrap", "repl-pull"):
        # A new site may start from nothing (a snapshot, or the remote's
        # whole oplog): its data dir need not exist yet.
        cfg.root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        doc = trio.run(_offline, cfg, mode, remotes)
    except DataDirBusy as exc:
        text = str(exc)
        _err(text if text.startswith(mode) else f"{mode}: {text}")
        return 1
    except UsageError as exc:
        _err(f"{mode}: {exc}")
        return 2
    except (S3Error, OSError) as exc:
        _err(f"{mode}: {exc}")
        return 1
    doc["seconds"] = round(time.time() - started, 3)
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for line in doc["lines"]:
            print(line)
    return 1 if doc["errors"] else 0


async def _offline(cfg: Config, mode: str, remotes: tuple[str, ...]) -> dict[str, Any]:
    from seglake.writer.embedded import EmbeddedWriter, run_embedded

    async def work(writer: EmbeddedWriter) -> dict[str, Any]:
        _, state = await trio.to_thread.run_sync(_stored, cfg, remotes[0])
        if state != OFF:
            raise S3Error(
                "InvalidRequest", message=f"the store is in maintenance mode ({state}); "
                "replication writes data: `seglake maintenance disable` first",
            )  # fmt: skip
        return await _run_all(cfg, mode, remotes, writer)

    result: dict[str, Any] = await run_embedded(cfg, mode, work)
    return result


async def _run_all(
    cfg: Config, mode: str, remotes: tuple[str, ...], writer: WriterPort
) -> dict[str, Any]:
    doc: dict[str, Any] = {"mode": mode, "via": "offline", "remotes": [], "lines": [], "errors": 0}
    for remote in remotes:
        client = client_for(cfg, remote)
        try:
            if mode == "repl-bootstrap":
                report = await run_bootstrap(cfg, writer, remote, client)
                doc["remotes"].append({"remote": remote, **report})
                doc["lines"].append(f"{mode} {remote}: {json.dumps(report, sort_keys=True)}")
                continue
            status = TaskStatus(remote, "pull" if mode == "repl-pull" else "push")
            try:
                if mode == "repl-pull":
                    status = await run_pull(cfg, writer, remote, client)
                else:
                    status = await run_push(cfg, writer, remote, client)
            except ReplStopped as exc:
                doc["errors"] += 1
                why = "gave up" if exc.gave_up else "stopped"
                doc["lines"].append(f"{mode} {remote}: {why}: {exc.failure}")
            doc["remotes"].append(status.as_dict(time.time()))
            doc["lines"].append(_summary(mode, status))
        finally:
            await client.aclose()
    return doc
