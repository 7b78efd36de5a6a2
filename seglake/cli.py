"""Command line: ``seglake [MODE] [flags]``.

Both spellings work: the seed's Go-style single-dash flags
(``./build/seglake -data-dir ./data -mode status``) and the idiomatic form
(``seglake status --data-dir ./data``). Every server setting is also a
``SEGLAKE_*`` environment variable (flags beat env, env beats defaults), and
``--secrets-file`` loads KEY=VALUE pairs without exporting them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from typing import Any

import trio

from seglake.config import FIELD_TYPES, Config, build_config
from seglake.config_doc import effective, flag_help, sources
from seglake.private_files import use_private_umask

MODES = (
    "server", "serve", "status", "config", "maintenance", "fsck", "scrub", "snapshot",
    "db-integrity-check",
    # observability (seglake/ops/dashboard.py)
    "stats", "dashboard", "top",
    # ops toolbox (seglake/ops/toolbox_cmds.py)
    "rebuild-index", "support-bundle", "mpu-gc-plan", "mpu-gc-run", "db-reindex", "buckets",
    "bucket",
    # access control (seglake/ops/keys_cmd.py)
    "keys", "bucket-policy",
    # permissions of the store's files (seglake/ops/doctor.py)
    "doctor",
    # server-side encryption keys (seglake/ops/sse_cmd.py)
    "sse",
    # segment GC (seglake/ops/gc.py)
    "gc-plan", "gc-run", "gc-rewrite-plan", "gc-rewrite-run", "gc-rewrite",
    # bucket lifecycle rules (seglake/ops/lifecycle_cmd.py)
    "lifecycle-plan", "lifecycle-run",
    # a version-1 store into segment format 2 (seglake/writer/upgrade.py)
    "upgrade",
    # one-shot replication (seglake/ops/repl_cmd.py)
    "repl-pull", "repl-push", "repl-bootstrap",
    # compare two sites (seglake/ops/repl_validate_cmd.py)
    "repl-validate",
)  # fmt: skip
# Settings whose flag may be given several times (joined as a comma list).
REPEATABLE = frozenset({"repl_remote"})
DEFAULT_WAIT_TIMEOUT_S = 60.0  # how long `maintenance enable|disable` waits for the state


def normalise(argv: list[str]) -> list[str]:
    """``-data-dir x`` → ``--data-dir x``; ``-gc-force`` → ``--gc-force``."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            arg = "-" + arg
        out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seglake",
        description="Seglake: a durable, single-node S3-compatible object store.",
    )
    p.add_argument("command", nargs="*", help="mode: " + ", ".join(MODES) + " (default serve)")
    p.add_argument("--mode", help="seed spelling of the command")
    p.add_argument("--secrets-file", help="KEY=VALUE file loaded before the environment")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--maintenance-action", help="maintenance mode: enable | disable | status")
    p.add_argument("--no-wait", action="store_true", help="do not wait for quiesced/off")
    p.add_argument("--once", action="store_true", help="dashboard: print one frame and exit")
    p.add_argument(
        "--yes", action="store_true",
        help="run a destructive mode on a live server that is not quiesced",
    )  # fmt: skip
    p.add_argument("--out", help="snapshot: file to write (default DATA_DIR/snapshots/...)")
    p.add_argument(
        "--wait-timeout", type=float, default=DEFAULT_WAIT_TIMEOUT_S,
        help="seconds to wait for the maintenance state (default 60)",
    )  # fmt: skip
    p.add_argument(
        "--all-manifests", action="store_true", help="fsck: also look for orphan manifest files"
    )
    p.add_argument(
        "--deep", action="store_true",
        help="repl-validate: also read every chunk on both sides and check its BLAKE3",
    )  # fmt: skip
    from seglake.ops.toolbox_cmds import add_toolbox_flags

    add_toolbox_flags(p)
    from seglake.ops.keys_cmd import add_keys_flags

    add_keys_flags(p)
    from seglake.ops.gc import add_gc_flags

    add_gc_flags(p)
    from seglake.ops.doctor import add_doctor_flags

    add_doctor_flags(p)
    settings = p.add_argument_group(
        "server settings", "each also a SEGLAKE_* environment variable; flags beat env"
    )
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.name in REPEATABLE:
            settings.add_argument(
                flag, dest=f.name, action="append", default=None, help=flag_help(f.name)
            )
        elif FIELD_TYPES[f.name] is bool:
            settings.add_argument(
                flag, dest=f.name, nargs="?", const="true", default=None,
                metavar="BOOL", help=flag_help(f.name),
            )  # fmt: skip
        else:
            settings.add_argument(flag, dest=f.name, default=None, help=flag_help(f.name))
    return p


def setting_flags(args: argparse.Namespace) -> dict[str, str | bool]:
    """The settings given as flags on this command line."""
    out: dict[str, str | bool] = {}
    for f in fields(Config):
        value = getattr(args, f.name)
        if isinstance(value, list):
            value = ",".join(value)
        if value is not None:
            out[f.name] = value
    return out


def parse(argv: list[str]) -> tuple[argparse.Namespace, Config]:
    args = build_parser().parse_args(normalise(argv))
    cfg = build_config(setting_flags(args), secrets_file=args.secrets_file)
    return args, cfg


def config_cmd(args: argparse.Namespace, cfg: Config, action: str) -> int:
    """``seglake config show``: every setting in force, its value and source."""
    if action != "show":
        print(f"seglake: unknown config action {action!r} (available: show)", file=sys.stderr)
        return 2
    where = sources(setting_flags(args), dict(os.environ), args.secrets_file)
    rows = effective(cfg, where)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        value = r["value"]
        shown = "''" if value == "" else json.dumps(value) if isinstance(value, bool) else value
        print(f"{r['name'].replace('_', '-'):<{width}}  {shown!s:<28}  {r['source']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # Before anything can create a file: the store is its owner's alone,
    # and the supervisor's children inherit this.
    use_private_umask()
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # `seglake config show | head`: the reader left early, which is no
        # error of ours. Point stdout at /dev/null so the interpreter's own
        # flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def run(argv: list[str]) -> int:
    try:
        args, cfg = parse(argv)
    except (ValueError, OSError) as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 2
    words = list(args.command)
    mode = args.mode or (words[0] if words else "server")
    if mode in ("server", "serve"):
        from seglake.supervisor.main import serve

        return serve(cfg)
    if mode == "status":
        return status(cfg, as_json=args.json)
    if mode == "config":
        return config_cmd(args, cfg, words[1] if len(words) > 1 and not args.mode else "show")
    if mode == "maintenance":
        from seglake.ops.commands import maintenance_cmd

        action = args.maintenance_action or (words[1] if len(words) > 1 else "status")
        return maintenance_cmd(
            cfg, action, wait=not args.no_wait, timeout=args.wait_timeout, as_json=args.json
        )
    if mode == "stats":
        from seglake.ops.dashboard import stats_cmd

        return stats_cmd(cfg, as_json=args.json)
    if mode in ("dashboard", "top"):
        from seglake.ops.dashboard import dashboard_cmd

        return dashboard_cmd(cfg, once=args.once, as_json=args.json)
    if mode == "fsck":
        from seglake.ops.commands import fsck_cmd

        return fsck_cmd(cfg, all_manifests=args.all_manifests, as_json=args.json)
    if mode == "scrub":
        from seglake.ops.commands import scrub_cmd

        return scrub_cmd(cfg, as_json=args.json)
    if mode == "snapshot":
        from seglake.ops.commands import snapshot_cmd

        return snapshot_cmd(cfg, out=args.out, as_json=args.json)
    if mode == "upgrade":
        from seglake.ops.commands import upgrade_cmd

        return upgrade_cmd(cfg, as_json=args.json)
    if mode == "db-integrity-check":
        from seglake.ops.commands import db_integrity_cmd

        return db_integrity_cmd(cfg, as_json=args.json)
    if mode in ("rebuild-index", "support-bundle", "mpu-gc-plan", "mpu-gc-run", "db-reindex",
                "buckets", "bucket"):  # fmt: skip
        from seglake.ops.toolbox_cmds import run_mode

        return run_mode(mode, args, words if args.mode else words[1:], cfg)
    if mode == "doctor":
        from seglake.ops.doctor import doctor_cmd

        return doctor_cmd(cfg, fix_permissions=args.fix_permissions, as_json=args.json)
    if mode == "sse":
        from seglake.ops.sse_cmd import run_sse_mode

        return run_sse_mode(cfg, words if args.mode else words[1:], as_json=args.json)
    if mode in ("keys", "bucket-policy"):
        from seglake.ops.keys_cmd import run_keys_mode

        return run_keys_mode(cfg, mode, args, words if args.mode else words[1:])
    if mode in ("gc-plan", "gc-run", "gc-rewrite-plan", "gc-rewrite-run", "gc-rewrite"):
        from seglake.ops.gc import run_gc_mode

        return run_gc_mode(mode, args, cfg)
    if mode in ("lifecycle-plan", "lifecycle-run"):
        from seglake.ops.lifecycle_cmd import lifecycle_plan_cmd, lifecycle_run_cmd

        rest = words if args.mode else words[1:]
        target = args.bucket or (rest[0] if rest else None)
        if mode == "lifecycle-plan":
            return lifecycle_plan_cmd(cfg, target, as_json=args.json)
        return lifecycle_run_cmd(cfg, target, as_json=args.json)
    if mode in ("repl-pull", "repl-push", "repl-bootstrap"):
        from seglake.ops.repl_cmd import repl_cmd

        return repl_cmd(cfg, mode, as_json=args.json)
    if mode == "repl-validate":
        from seglake.ops.repl_validate_cmd import repl_validate_cmd

        return repl_validate_cmd(cfg, deep=args.deep, as_json=args.json)
    print(f"seglake: unknown mode {mode!r} (available: {', '.join(MODES)})", file=sys.stderr)
    return 2


def status(cfg: Config, *, as_json: bool) -> int:
    from seglake.ops.admin_client import AdminUnavailable, admin_call

    try:
        result = trio.run(admin_call, cfg, "status", {})
    except AdminUnavailable as exc:
        print(f"seglake: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    render_status(result)
    return 0


def render_status(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]Seglake[/bold] {result.get('data_dir')} on {result.get('address')}")
    procs = Table("process", "pid", "alive", "uptime", "restarts", title="processes")
    for p in result.get("processes", []):
        procs.add_row(
            p["name"], str(p.get("pid")), "yes" if p.get("alive") else "NO",
            f"{p.get('uptime', 0):.0f}s", str(p.get("restarts", 0)),
        )  # fmt: skip
    console.print(procs)
    metrics = dict(result.get("store") or {})
    maint = metrics.pop("maintenance", None)
    store = Table("metric", "value", title="store")
    for k, v in sorted(metrics.items()):
        store.add_row(k, str(v))
    console.print(store)
    if isinstance(maint, dict):
        console.print(
            f"maintenance: [bold]{maint.get('state')}[/bold] "
            f"(writes in flight: {maint.get('write_in_flight', 0)})"
        )
    from seglake.ops.toolbox_cmds import render_runs

    render_runs(console, result.get("runs") or [])
    oplog = result.get("oplog") or {}
    if "rows" in oplog:
        console.print(
            f"oplog: {oplog['rows']} rows, {oplog['bytes']} bytes, floor {oplog['floor']}, "
            f"head {oplog['head']}"
        )
    repl = result.get("replication") or []
    if repl:
        table = Table(
            "remote", "direction", "state", "cursor", "backlog", "lag s", "entries", "conflicts",
            "last error", title="replication",
        )  # fmt: skip
        for r in repl:
            lag = r.get("lag_seconds")
            table.add_row(
                str(r.get("remote")), str(r.get("direction")), str(r.get("state")),
                f"{r.get('epoch')}:{r.get('cursor')}", _backlog(r), "?" if lag is None else f"{lag:.1f}", str(r.get("entries")),
                str(r.get("conflicts")), str(r.get("last_error") or ""),
            )  # fmt: skip
        console.print(table)


def _backlog(row: dict[str, Any]) -> str:
    """A task's backlog in one column (the table must fit 80 columns):
    entries, and the object bytes they carry when there are any."""
    from seglake.ops.dashboard import compact_bytes

    entries, data = row.get("backlog_entries"), row.get("backlog_bytes")
    return f"{entries} ({compact_bytes(data)})" if data else str(entries)


if __name__ == "__main__":
    sys.exit(main())
