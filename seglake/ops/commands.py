"""The CLI's maintenance commands: ``maintenance``, ``fsck``, ``scrub``.

Quiesce protocol: these commands never write a data file or open ``meta.db``
for writing. ``maintenance enable|disable`` asks the writer (through the
admin socket and the maintenance process) for a target state and polls until
it is reached; ``fsck`` and ``scrub`` only read, and anything they record
(``ops_runs``, ``DAMAGED`` marks) is a writer mutation sent through the admin
socket while a server is live. Without a server nothing is recorded.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import apsw
import trio

from seglake.config import Config
from seglake.ipc.messages import MarkDamaged, RecordOpRun, Request
from seglake.ops.admin_client import (
    AdminRefused,
    AdminUnavailable,
    admin_call,
    admin_mutation,
)

R = TypeVar("R")

POLL_INTERVAL_S = 0.1
TARGET_OF = {"enable": "quiesced", "disable": "off"}
ACTIONS = ("enable", "disable", "status")


def _when(ts: float) -> str:
    if not ts:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


# ---- maintenance -------------------------------------------------------------


def offline_state(cfg: Config) -> dict[str, Any]:
    """The persisted state, read from meta.db read-only (no server running)."""
    from seglake.meta.maintenance_state import read_state
    from seglake.meta.schema import open_read

    if not cfg.db_path.exists():
        raise FileNotFoundError(f"no database at {cfg.db_path}")
    conn = open_read(str(cfg.db_path))
    try:
        doc = read_state(conn)
    finally:
        conn.close()
    doc["write_in_flight"] = 0
    return doc


async def _maintenance(cfg: Config, action: str, wait: bool, wait_s: float) -> dict[str, Any]:
    status: dict[str, Any] = await admin_call(cfg, "maintenance", {"action": action})
    target = TARGET_OF.get(action)
    if target is None or not wait:
        return status
    with trio.move_on_after(wait_s):
        while status.get("state") != target:
            await trio.sleep(POLL_INTERVAL_S)
            status = await admin_call(cfg, "maintenance", {"action": "status"})
    return status


def maintenance_cmd(cfg: Config, action: str, *, wait: bool, timeout: float, as_json: bool) -> int:
    if action not in ACTIONS:
        print(f"seglake: maintenance action must be one of {', '.join(ACTIONS)}", file=sys.stderr)
        return 2
    server = "running"
    try:
        status = trio.run(_maintenance, cfg, action, wait, timeout)
    except AdminRefused as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 1
    except AdminUnavailable as exc:
        if action != "status":
            print(f"seglake: {exc}", file=sys.stderr)
            return 1
        try:
            status = offline_state(cfg)
        except (OSError, RuntimeError) as err:
            print(f"seglake: the server is not running and {err}", file=sys.stderr)
            return 1
        server = "not running"
    status["server"] = server
    target = TARGET_OF.get(action)
    reached = target is None or not wait or status.get("state") == target
    if as_json:
        _print_json(status)
    else:
        _render_maintenance(status)
    if not reached:
        print(
            f"seglake: timed out after {timeout:g}s waiting for {target!r} "
            f"(state {status.get('state')!r}, {status.get('write_in_flight')} write(s) in flight)",
            file=sys.stderr,
        )
        return 1
    return 0


def _render_maintenance(status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if status.get("server") != "running":
        console.print("server: [yellow]not running[/yellow] (state read from meta.db)")
    console.print(
        f"maintenance: [bold]{status.get('state')}[/bold] since {_when(status.get('since') or 0)}"
        f"; writes in flight: {status.get('write_in_flight', 0)}"
    )
    history = status.get("history") or []
    if history:
        table = Table("at", "from", "to", "reason", title="last transitions")
        for h in history[-10:]:
            table.add_row(_when(h.get("at", 0)), h.get("from"), h.get("to"), h.get("reason"))
        console.print(table)


# ---- ops_runs and mark_damaged via the writer ----------------------------------


def _writer_mutation(cfg: Config, msg: Request[R]) -> R:
    return trio.run(admin_mutation, cfg, msg)


def record_run(
    cfg: Config, mode: str, started_ns: int, status: str, report: dict[str, Any]
) -> tuple[bool, str]:
    """Record a finished run in ``ops_runs`` through the writer, if a server is live."""
    summary = json.dumps(report, sort_keys=True)
    try:
        _writer_mutation(
            cfg,
            RecordOpRun(
                mode=mode,
                started_ns=started_ns,
                finished_ns=time.time_ns(),
                status=status,
                report=summary,
            ),
        )
    except AdminRefused as exc:
        return False, f"not recorded in ops_runs: {exc}"
    except AdminUnavailable:
        return (
            False,
            "not recorded in ops_runs: no server is running (only the writer records runs)",
        )
    return True, "recorded in ops_runs"


# ---- fsck ----------------------------------------------------------------------


def fsck_cmd(cfg: Config, *, all_manifests: bool, as_json: bool) -> int:
    from seglake.audit.fsck import run_fsck

    if not cfg.db_path.exists():
        print(f"seglake: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    started = time.time_ns()
    report = run_fsck(cfg, all_manifests=all_manifests)
    doc = report.as_dict()
    recorded, note = record_run(cfg, "fsck", started, "ok" if report.clean else "errors", doc)
    doc["recorded"], doc["record_note"] = recorded, note
    if as_json:
        _print_json(doc)
    else:
        _render_findings("fsck", doc, note)
    return 0 if report.clean else 1


def _render_findings(title: str, doc: dict[str, Any], note: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for label, style in (("errors", "red"), ("warnings", "yellow")):
        rows = doc.get(label) or []
        if not rows:
            continue
        table = Table("kind", "object", "detail", title=f"{title} {label}", style=style)
        for f in rows:
            obj = f"{f['bucket']}/{f['key']} ({f['version_id']})" if f.get("bucket") else ""
            table.add_row(f["kind"], obj, f["detail"] if obj else f"{f['detail']} {f['path']}")
        console.print(table)
    verdict = (
        "[green]clean[/green]" if doc["clean"] else f"[red]{len(doc['errors'])} error(s)[/red]"
    )
    console.print(
        f"{title}: {verdict}; {doc['segments']} segment(s), {doc['versions']} live version(s), "
        f"{doc['chunks']} chunk(s), {len(doc['warnings'])} warning(s); {note}"
    )


# ---- scrub ---------------------------------------------------------------------


def scrub_cmd(cfg: Config, *, as_json: bool) -> int:
    from seglake.audit.scrub import ScrubReport, plan_bytes, run_scrub

    if not cfg.db_path.exists():
        print(f"seglake: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    started = time.time_ns()
    report: ScrubReport
    if sys.stderr.isatty() and not as_json:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("scrub", total=plan_bytes(cfg))
            report = run_scrub(cfg, lambda n: bar.advance(task, n))
    else:
        report = run_scrub(cfg)
    doc = report.as_dict()
    marked: list[str] = []
    mark_note = "nothing to mark"
    if report.damaged:
        mark_note = "marked DAMAGED"
        for uid in report.damaged_uids:
            try:
                _writer_mutation(cfg, MarkDamaged(uid=uid))
            except AdminUnavailable as exc:
                mark_note = f"not marked DAMAGED: {exc}"
                break
            marked.append(uid)
    recorded, note = record_run(cfg, "scrub", started, "ok" if doc["clean"] else "errors", doc)
    doc.update(marked=marked, mark_note=mark_note, recorded=recorded, record_note=note)
    if as_json:
        _print_json(doc)
    else:
        _render_scrub(doc)
    return 0 if doc["clean"] else 1


def _render_scrub(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if doc["damaged"]:
        table = Table("bucket", "key", "version", "chunk", "reason", title="damaged", style="red")
        for d in doc["damaged"]:
            table.add_row(d["bucket"], d["key"], d["version_id"], str(d["chunk"]), d["reason"])
        console.print(table)
        console.print(f"{len(doc['damaged'])} damaged version(s): {doc['mark_note']}")
    for f in doc.get("file_damage", []):
        console.print(f"[red]{f['kind']}[/red] {f['path']}: {f['reason']}")
    verdict = "[green]clean[/green]" if doc["clean"] else "[red]damage found[/red]"
    console.print(
        f"scrub: {verdict}; {doc['versions']} version(s), {doc['chunks']} chunk(s), "
        f"{doc['bytes']} byte(s) verified; {doc['record_note']}"
    )


def snapshot_cmd(cfg: Config, *, out: str | None, as_json: bool) -> int:
    from seglake.ops.snapshot import take_snapshot

    if not cfg.db_path.exists():
        print(f"seglake: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    started = time.time_ns()
    try:
        report = take_snapshot(cfg, Path(out) if out else None)
    except (OSError, apsw.Error) as exc:
        print(f"seglake: snapshot failed: {exc}", file=sys.stderr)
        return 1
    doc: dict[str, Any] = dataclasses.asdict(report)
    recorded, note = record_run(cfg, "snapshot", started, "ok", doc)
    doc["recorded"], doc["record_note"] = recorded, note
    if as_json:
        _print_json(doc)
    else:
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
        print(f"snapshot: {report.path} ({report.bytes} bytes, sha256 {report.sha256[:16]}...)")
        print(f"  {counts}; report {report.report_path}; {note}")
        if report.sealed_api_keys:
            where = report.master_key_file or "the master key file (missing from this data dir!)"
            print(
                f"  {report.sealed_api_keys} API key(s) are sealed with {where}, which is not in "
                "the snapshot: keep a copy of it with the snapshot, or those keys stop working "
                "after a restore elsewhere"
            )
        if report.sse_keks:
            where = report.sse_master_key_file or "the SSE master key file (MISSING!)"
            print(
                f"  encrypted objects need {where}, which is not in the snapshot: back it up "
                "separately, or encrypted objects cannot be read after a restore"
            )
    return 0


def db_integrity_cmd(cfg: Config, *, as_json: bool) -> int:
    from seglake.ops.snapshot import integrity_check

    if not cfg.db_path.exists():
        print(f"seglake: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    started = time.time_ns()
    problems = integrity_check(cfg.db_path)
    ok = problems == ["ok"]
    doc: dict[str, Any] = {"database": str(cfg.db_path), "ok": ok, "messages": problems}
    recorded, note = record_run(cfg, "db-integrity-check", started, "ok" if ok else "errors", doc)
    doc["recorded"], doc["record_note"] = recorded, note
    if as_json:
        _print_json(doc)
    else:
        print(f"db-integrity-check: {'ok' if ok else 'PROBLEMS'} ({cfg.db_path}); {note}")
        if not ok:
            for line in problems:
                print(f"  {line}")
    return 0 if ok else 1


def upgrade_cmd(cfg: Config, *, as_json: bool) -> int:
    """``seglake upgrade``: a version-1 store into segment format 2
    (``seglake/writer/upgrade.py``). Needs the server stopped: it takes the
    data-dir and writer locks itself and is refused while anything holds them."""
    from seglake.locks import DataDirBusy
    from seglake.writer.embedded import upgrade

    if not cfg.db_path.exists():
        print(f"seglake: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    try:
        report = upgrade(cfg)
    except DataDirBusy as exc:
        print(f"seglake: upgrade refused: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an I/O failure: every step is restartable
        print(f"seglake: upgrade failed (run it again): {exc!r}", file=sys.stderr)
        return 1
    doc = report.as_dict()
    if as_json:
        _print_json(doc)
    elif report.already:
        print(f"upgrade: {cfg.root} is already a format-2 store; nothing to do")
    else:
        print(
            f"upgrade: {report.buckets} bucket, {report.manifests} manifest and {report.states} "
            f"state record(s) written to segment {report.segment}; {report.files_removed} "
            f"old file(s) removed"
        )
        for note in report.notes:
            print(f"  note: {note}")
    return 0
