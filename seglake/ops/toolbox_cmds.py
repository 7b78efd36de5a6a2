"""CLI modes of the ops toolbox: ``rebuild-index``, ``support-bundle``,
``mpu-gc-plan``, ``mpu-gc-run``, ``db-reindex``, ``buckets``.

Quiesce protocol: destructive modes (``rebuild-index``, ``mpu-gc-run``,
``db-reindex``) first pass ``gate.require_quiesced_or_yes``; every change goes
through the live writer, or with no server through the writer embedded in
this process (``toolbox.py``). ``rebuild-index`` replaces ``meta.db`` and therefore runs
only with the server stopped. Plans, listings and the support bundle only
read. Every run is recorded in ``ops_runs`` (``toolbox.record``).

Seed spellings work verbatim through ``cli.normalise``: ``-mode buckets
-buckets-action create -bucket NAME``, ``-mode mpu-gc-run -mpu-force
-mpu-ttl 24h``, ``-mode rebuild-index -force``; the idiomatic forms are
``seglake buckets create NAME``, ``seglake mpu-gc-run --force``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import msgspec

from seglake.config import Config
from seglake.ipc.messages import (
    BucketCreated,
    CreateBucket,
    DbReindex,
    DeleteBucket,
    MpuGcAbort,
    MpuGcAborted,
    Request,
)
from seglake.meta.maintenance_reads import ABORT_BATCH, expired_uploads, read_rows, recent_runs

R = TypeVar("R")

TOOLBOX_MODES: Final = (
    "rebuild-index", "support-bundle", "mpu-gc-plan", "mpu-gc-run", "db-reindex", "buckets",
)  # fmt: skip
BUCKET_ACTIONS: Final = ("list", "create", "delete", "exists")
# Config fields whose values never leave the machine in a support bundle,
# and database columns blanked in its snapshot.
SECRET_FIELDS: Final = ("secret_key", "access_key")
# "wrapped": SSE key-encryption keys (sse_keks.wrapped). Useless without the
# master key, but a support bundle has no reason to carry them.
SECRET_COLUMN_WORDS: Final = ("secret", "token", "password", "wrapped")
REDACTED: Final = "[redacted]"


def add_toolbox_flags(p: argparse.ArgumentParser) -> None:
    """The toolbox's flags; a flag another mode already defined is shared."""

    def add(flag: str, **kw: Any) -> None:
        if flag not in p._option_string_actions:
            p.add_argument(flag, **kw)

    add(
        "--force", action="store_true",
        help="confirm a destructive mode (rebuild-index, buckets delete NAME: with every version)",
    )  # fmt: skip
    add("--mpu-force", action="store_true", help="mpu-gc-run: confirm (seed spelling)")
    add(
        "--dry-run", action="store_true",
        help="rebuild-index: rebuild into a temporary file and compare, change nothing",
    )  # fmt: skip
    add("--buckets-action", help="buckets: list | create | delete | exists")
    add("--bucket", help="buckets: the bucket name")
    add("--versioning", help="buckets create: enabled | unversioned (default: server default)")


# ---- shared helpers -----------------------------------------------------------


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _err(msg: str) -> None:
    print(f"seglake: {msg}", file=sys.stderr)


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool
) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on a terminal (stderr); ``None`` callback otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _gate_refuses(cfg: Config, yes: bool, mode: str) -> bool:
    """False if ``mode`` may run; else True, the refusal said on stderr."""
    from seglake.ops.gate import GateRefused, require_quiesced_or_yes

    try:
        require_quiesced_or_yes(cfg, yes, mode)
    except GateRefused as exc:
        _err(str(exc))
        return True
    return False


def _finish(
    cfg: Config, mode: str, started: int, ok: bool, doc: dict[str, Any], as_json: bool
) -> str:
    from seglake.ops.toolbox import record

    recorded, note = record(cfg, mode, started, "ok" if ok else "errors", doc)
    doc["recorded"], doc["record_note"] = recorded, note
    if as_json:
        _print_json(doc)
    return note


# ---- rebuild-index --------------------------------------------------------------


def rebuild_check_cmd(cfg: Config, *, as_json: bool) -> int:
    """``rebuild-index --dry-run``: prove the files rebuild to today's database."""
    import apsw

    from seglake.ops.rebuild import RebuildRefused, check_index

    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path} to compare with")
        return 2
    started = time.time_ns()
    try:
        with progress_bar("manifests", None, enabled=not as_json) as bar:
            report, count, listed = check_index(cfg, bar)
    except (RebuildRefused, OSError, apsw.Error) as exc:
        _err(f"rebuild-index --dry-run failed: {exc}")
        return 1
    doc = {**report.as_dict(), "dry_run": True, "differences": count, "listed": listed}
    ok = count == 0 and not report.problems
    note = _finish(cfg, "rebuild-index", started, ok, doc, as_json)
    if not as_json:
        verdict = "identical" if count == 0 else f"{count} DIFFERENCE(S)"
        print(
            f"rebuild-index --dry-run: the files rebuild to {report.buckets} bucket(s), "
            f"{report.versions} version(s); compared with {cfg.db_path}: {verdict}; {note}"
        )
        for line in listed:
            print(f"  {line}")
        for line in report.problems:
            print(f"  PROBLEM: {line}")
    return 0 if ok else 1


def rebuild_index_cmd(cfg: Config, *, force: bool, yes: bool, as_json: bool) -> int:
    from seglake.ops.gate import GateRefused, live_state, offline_lock
    from seglake.ops.rebuild import RebuildRefused, rebuild_index

    if _gate_refuses(cfg, yes, "rebuild-index"):
        return 1
    try:
        live = live_state(cfg)
    except GateRefused as exc:
        _err(str(exc))
        return 1
    if live is not None:
        _err(
            "rebuild-index replaces meta.db, which the running server keeps open; stop the "
            f"server on {cfg.root} (maintenance state {live!r}) and run it again"
        )
        return 1
    started = time.time_ns()
    try:
        with (
            offline_lock(cfg, "rebuild-index"),
            progress_bar("manifests", None, enabled=not as_json) as bar,
        ):
            report = rebuild_index(cfg, force=force, progress=bar)
    except (GateRefused, RebuildRefused) as exc:
        _err(str(exc))
        return 1
    except OSError as exc:
        _err(f"rebuild-index failed: {exc}")
        return 1
    doc = report.as_dict()
    ok = not report.problems
    note = _finish(cfg, "rebuild-index", started, ok, doc, as_json)
    if not as_json:
        print(
            f"rebuild-index: {report.buckets} bucket(s), {report.versions} version(s) "
            f"({report.delete_markers} delete marker(s)), {report.current} current key(s), "
            f"{report.segments} segment(s) from {report.manifests_seen} manifest(s)"
            + (f"; old database kept in {report.replaced_to}" if report.replaced_to else "")
            + f"; {note}"
        )
        for line in report.notes:
            print(f"  note: {line}")
        for line in report.problems:
            print(f"  PROBLEM: {line}")
    return 0 if ok else 1


# ---- support-bundle -------------------------------------------------------------


def _redacted_config(cfg: Config) -> dict[str, Any]:
    doc = dataclasses.asdict(cfg)
    for name in SECRET_FIELDS:
        if doc.get(name):
            doc[name] = REDACTED
    return doc


def _redact_snapshot(path: Path) -> list[str]:
    """Blank every secret-looking column of the snapshot copy; returns them."""
    import apsw

    conn = apsw.Connection(str(path))
    blanked: list[str] = []
    try:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        ]
        for table in tables:
            for col in conn.execute(f'PRAGMA table_info("{table}")').fetchall():
                name = str(col[1])
                if any(w in name.lower() for w in SECRET_COLUMN_WORDS):
                    conn.execute(f'UPDATE "{table}" SET "{name}" = ?', (REDACTED,))
                    blanked.append(f"{table}.{name}")
        if blanked:
            conn.execute("VACUUM")  # drop the freed pages that still hold the old values
    finally:
        conn.close()
    return blanked


def _status_doc(cfg: Config) -> dict[str, Any]:
    import trio

    from seglake.ops.admin_client import AdminUnavailable, admin_call
    from seglake.ops.commands import offline_state

    try:
        doc: dict[str, Any] = trio.run(admin_call, cfg, "status", {})
        doc["server"] = "running"
        return doc
    except AdminUnavailable as exc:
        try:
            state = offline_state(cfg)
        except (OSError, RuntimeError) as err:
            state = {"error": str(err)}
        return {"server": "not running", "reason": str(exc), "maintenance": state}


def render_runs(console: Any, runs: list[dict[str, Any]]) -> None:
    """The last ops runs as a table (``seglake status``)."""
    from rich.table import Table

    if not runs:
        console.print("ops runs: none recorded")
        return
    table = Table("id", "mode", "finished", "took", "status", title="last ops runs")
    for r in runs:
        if "error" in r:
            console.print(f"ops runs: {r['error']}")
            continue
        finished = r.get("finished_ns") or 0
        took = (finished - (r.get("started_ns") or 0)) / 1e9 if finished else 0.0
        when = datetime.fromtimestamp(finished / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        style = "green" if r.get("status") == "ok" else "red"
        table.add_row(
            str(r.get("id")), str(r.get("mode")), when, f"{took:.1f}s",
            f"[{style}]{r.get('status')}[/{style}]",
        )  # fmt: skip
    console.print(table)


def support_bundle_cmd(cfg: Config, *, out: str | None, as_json: bool) -> int:
    import tempfile

    import apsw

    from seglake.audit.fsck import run_fsck
    from seglake.audit.scrub import plan_bytes, run_scrub
    from seglake.ops.snapshot import take_snapshot

    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path}")
        return 2
    started = time.time_ns()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(out) if out else cfg.root / "support" / f"seglake-support-{stamp}.tar.gz"
    if target.exists():
        _err(f"{target} already exists")
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    top = f"seglake-support-{stamp}"
    members: dict[str, bytes] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="seglake-bundle-") as tmp:
            snap = take_snapshot(cfg, Path(tmp) / "meta.db")
            blanked = _redact_snapshot(Path(snap.path))
            members["meta.db"] = Path(snap.path).read_bytes()
        fsck = run_fsck(cfg, all_manifests=True).as_dict()
        with progress_bar("scrub", plan_bytes(cfg), enabled=not as_json) as bar:
            scrub = run_scrub(cfg, bar).as_dict()
        runs = recent_runs(cfg.db_path)
    except (OSError, apsw.Error, RuntimeError) as exc:
        _err(f"support-bundle failed: {exc}")
        return 1
    snapshot_doc = dataclasses.asdict(snap)
    snapshot_doc["redacted_columns"] = blanked
    docs: dict[str, Any] = {
        "snapshot.json": snapshot_doc,
        "fsck.json": fsck,
        "scrub.json": scrub,
        "status.json": _status_doc(cfg),
        "config.json": _redacted_config(cfg),
        "ops_runs.json": runs,
    }
    for name, doc in docs.items():
        members[name] = json.dumps(doc, indent=2, sort_keys=True, default=str).encode()
    index = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(members.items())}
    members["index.json"] = json.dumps(index, indent=2, sort_keys=True).encode()
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
    partial.replace(target)
    ok = bool(fsck["clean"]) and bool(scrub["clean"])
    doc = {
        "path": str(target),
        "bytes": target.stat().st_size,
        "files": sorted(members),
        "fsck_clean": fsck["clean"],
        "scrub_clean": scrub["clean"],
        "redacted_columns": blanked,
    }
    note = _finish(cfg, "support-bundle", started, ok, doc, as_json)
    if not as_json:
        print(
            f"support-bundle: {target} ({doc['bytes']} bytes; fsck "
            f"{'clean' if fsck['clean'] else 'ERRORS'}, scrub "
            f"{'clean' if scrub['clean'] else 'DAMAGE'}); {note}"
        )
    return 0


# ---- MPU-GC ---------------------------------------------------------------------


def _mpu_plan(cfg: Config) -> tuple[int, list[dict[str, Any]]]:
    cutoff = time.time_ns() - int(cfg.mpu_ttl * 1e9)
    return cutoff, expired_uploads(cfg.db_path, cutoff)


def _render_uploads(title: str, uploads: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    now = time.time_ns()
    table = Table("bucket", "key", "upload id", "age", "parts", "bytes", title=title)
    for u in uploads:
        age_h = (now - int(u["created_ns"])) / 3.6e12
        table.add_row(
            u["bucket"], u["key"], u["upload_id"], f"{age_h:.1f}h", str(u["parts"]),
            str(u["bytes"]),
        )  # fmt: skip
    Console().print(table)


def mpu_gc_plan_cmd(cfg: Config, *, as_json: bool) -> int:
    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path}")
        return 2
    started = time.time_ns()
    cutoff, uploads = _mpu_plan(cfg)
    doc = {
        "ttl_seconds": cfg.mpu_ttl,
        "cutoff_ns": cutoff,
        "uploads": uploads,
        "count": len(uploads),
        "reclaimable_bytes": sum(int(u["bytes"]) for u in uploads),
    }
    note = _finish(cfg, "mpu-gc-plan", started, True, doc, as_json)
    if not as_json:
        if uploads:
            _render_uploads(f"uploads older than {cfg.mpu_ttl:g}s", uploads)
        print(
            f"mpu-gc-plan: {len(uploads)} upload(s) would be aborted, "
            f"{doc['reclaimable_bytes']} byte(s) of parts become reclaimable by gc; {note}"
        )
    return 0


def abort_expired(
    apply: Callable[[MpuGcAbort], MpuGcAborted],
    uploads: list[dict[str, Any]],
    cutoff_ns: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], int]:
    """Abort ``uploads`` in bounded batches through ``apply``."""
    aborted: list[str] = []
    parts = 0
    ids = [str(u["upload_id"]) for u in uploads]
    for i in range(0, len(ids), ABORT_BATCH):
        chunk = ids[i : i + ABORT_BATCH]
        result = apply(MpuGcAbort(upload_ids=chunk, cutoff_ns=cutoff_ns))
        aborted.extend(result.aborted)
        parts += result.parts
        if progress is not None:
            progress(len(chunk))
    return aborted, parts


def mpu_gc_run_cmd(cfg: Config, *, force: bool, yes: bool, as_json: bool) -> int:
    from seglake.errors import S3Error
    from seglake.ops.admin_client import AdminRefused
    from seglake.ops.gate import GateRefused
    from seglake.ops.toolbox import NoDatabase, writer_apply

    if not force:
        _err("mpu-gc-run aborts uploads for good; pass --force (-mpu-force) to confirm")
        return 2
    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path}")
        return 2
    if _gate_refuses(cfg, yes, "mpu-gc-run"):
        return 1
    started = time.time_ns()
    cutoff, uploads = _mpu_plan(cfg)
    via: list[str] = []

    def apply(msg: MpuGcAbort) -> MpuGcAborted:
        result, how = writer_apply(cfg, "mpu-gc-run", msg)
        via.append(how)
        return result

    try:
        with progress_bar("abort uploads", len(uploads), enabled=not as_json) as bar:
            aborted, parts = abort_expired(apply, uploads, cutoff, bar)
    except (AdminRefused, GateRefused, NoDatabase, S3Error) as exc:
        _err(f"mpu-gc-run: {exc}")
        return 1
    doc = {
        "ttl_seconds": cfg.mpu_ttl, "cutoff_ns": cutoff, "planned": len(uploads),
        "aborted": aborted, "parts_dropped": parts, "via": via[0] if via else "none",
        "bytes_released": sum(int(u["bytes"]) for u in uploads if u["upload_id"] in aborted),
    }  # fmt: skip
    note = _finish(cfg, "mpu-gc-run", started, True, doc, as_json)
    if not as_json:
        print(
            f"mpu-gc-run: aborted {len(aborted)} of {len(uploads)} upload(s) older than "
            f"{cfg.mpu_ttl:g}s ({parts} part(s), {doc['bytes_released']} byte(s) now dead "
            f"data for gc); {note}"
        )
    return 0


# ---- db-reindex -----------------------------------------------------------------


def db_reindex_cmd(cfg: Config, *, yes: bool, as_json: bool) -> int:
    from seglake.errors import S3Error
    from seglake.ops.admin_client import AdminRefused
    from seglake.ops.gate import GateRefused
    from seglake.ops.toolbox import NoDatabase, writer_apply

    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path}")
        return 2
    if _gate_refuses(cfg, yes, "db-reindex"):
        return 1
    started = time.time_ns()
    t0 = time.monotonic()
    try:
        result, via = writer_apply(cfg, "db-reindex", DbReindex())
    except (AdminRefused, GateRefused, NoDatabase, S3Error) as exc:
        _err(f"db-reindex: {exc}")
        return 1
    doc = {"indexes": result.indexes, "via": via, "seconds": time.monotonic() - t0}
    note = _finish(cfg, "db-reindex", started, True, doc, as_json)
    if not as_json:
        print(
            f"db-reindex: {doc['indexes']} index(es) rebuilt, statistics refreshed ({via}); {note}"
        )
    return 0


# ---- buckets --------------------------------------------------------------------


def list_buckets(db_path: Path) -> list[dict[str, Any]]:
    return read_rows(
        db_path,
        ("name", "created_ns", "versioning", "objects", "bytes"),
        "SELECT b.name, b.created_ns, b.versioning, "
        "(SELECT count(*) FROM current c JOIN versions v ON v.id = c.version "
        " WHERE c.bucket = b.name AND v.delete_marker = 0), "
        "(SELECT coalesce(sum(size), 0) FROM versions v WHERE v.bucket = b.name "
        " AND v.state != 'DELETED' AND v.delete_marker = 0) "
        "FROM buckets b ORDER BY b.name",
    )


def buckets_cmd(
    cfg: Config,
    *,
    action: str,
    name: str | None,
    versioning: str | None,
    as_json: bool,
    force: bool = False,
) -> int:
    from seglake.errors import S3Error
    from seglake.ops.admin_client import AdminRefused
    from seglake.ops.gate import GateRefused
    from seglake.ops.toolbox import NoDatabase, writer_apply
    from seglake.protocol.limits import validate_bucket_name

    if action not in BUCKET_ACTIONS:
        _err(f"buckets action must be one of {', '.join(BUCKET_ACTIONS)}")
        return 2
    if action != "list" and not name:
        _err(f"buckets {action} needs a bucket name (--bucket NAME or a positional NAME)")
        return 2
    if not cfg.db_path.exists():
        _err(f"no database at {cfg.db_path}")
        return 2
    started = time.time_ns()
    if action in ("list", "exists"):
        rows = list_buckets(cfg.db_path)
        if action == "list":
            if as_json:
                _print_json({"buckets": rows})
            else:
                from rich.console import Console
                from rich.table import Table

                table = Table("bucket", "created", "versioning", "objects", "bytes")
                for r in rows:
                    created = datetime.fromtimestamp(r["created_ns"] / 1e9, UTC)
                    table.add_row(
                        r["name"], created.strftime("%Y-%m-%d %H:%M:%S"), r["versioning"],
                        str(r["objects"]), str(r["bytes"]),
                    )  # fmt: skip
                Console().print(table)
            return 0
        found = next((r for r in rows if r["name"] == name), None)
        if as_json:
            _print_json({"bucket": name, "exists": found is not None, "info": found})
        else:
            print(f"{name}: {'exists' if found else 'does not exist'}")
        return 0 if found else 1
    assert name is not None
    msg: CreateBucket | DeleteBucket = DeleteBucket(bucket=name)
    if action == "create":
        try:
            validate_bucket_name(name)
        except S3Error:
            _err(f"invalid bucket name {name!r} (S3 rules: 3-63 of a-z 0-9 . -)")
            return 2
        msg = CreateBucket(bucket=name, versioning=versioning or cfg.default_versioning)
        if msg.versioning not in ("enabled", "unversioned"):
            _err("--versioning must be enabled or unversioned")
            return 2
    if action == "delete" and force:
        return bucket_purge_cmd(cfg, name, as_json=as_json, started=started)
    try:
        result, via = writer_apply(cfg, f"buckets {action}", cast(Request[Any], msg))
    except AdminRefused as exc:
        _err(f"buckets {action} {name}: {exc.error.code}: {exc.error.text}")
        return 1
    except S3Error as exc:
        _err(f"buckets {action} {name}: {exc.code}: {exc.text}")
        return 1
    except (GateRefused, NoDatabase) as exc:
        _err(str(exc))
        return 1
    doc: dict[str, Any] = {"action": action, "bucket": name, "via": via}
    doc.update(msgspec.structs.asdict(result))
    if isinstance(msg, CreateBucket):
        doc["versioning"] = msg.versioning
    note = _finish(cfg, "buckets", started, True, doc, as_json)
    if not as_json:
        if isinstance(result, BucketCreated):
            what = "created" if result.created else "already exists (unchanged)"
            print(f"bucket {name}: {what}; {note}")
        else:
            print(f"bucket {name}: deleted; {note}")
    return 0


def bucket_purge_cmd(cfg: Config, name: str, *, as_json: bool, started: int) -> int:
    """``buckets delete NAME --force``: every upload and version, then the bucket."""
    from seglake.errors import S3Error
    from seglake.ops.admin_client import AdminRefused
    from seglake.ops.bucket_purge import PurgeFailed, pending_counts, purge_bucket
    from seglake.ops.gate import GateRefused
    from seglake.ops.toolbox import NoDatabase, writer_apply

    via: list[str] = []

    def apply(msg: Request[R]) -> R:
        try:
            result, how = writer_apply(cfg, f"buckets delete {name} --force", msg)
        except AdminRefused as exc:
            raise exc.error from None
        via.append(how)
        return result

    versions, uploads = pending_counts(cfg.db_path, name)
    ok, error = True, ""
    try:
        with progress_bar(f"empty {name}", versions + uploads, enabled=not as_json) as bar:
            report = purge_bucket(cfg.db_path, name, apply, bar)
    except PurgeFailed as exc:
        ok, error, report = False, str(exc), exc.report
    except S3Error as exc:
        _err(f"buckets delete {name} --force: {exc.code}: {exc.text}")
        return 1
    except (GateRefused, NoDatabase) as exc:
        _err(str(exc))
        return 1
    doc: dict[str, Any] = {
        "action": "delete", "force": True, "bucket": name, "deleted": ok,
        "versions_deleted": report.versions_deleted, "uploads_aborted": report.uploads_aborted,
        "rounds": report.rounds, "errors": report.errors, "via": via[0] if via else "none",
    }  # fmt: skip
    if error:
        doc["error"] = error
    note = _finish(cfg, "buckets", started, ok, doc, as_json)
    if not as_json:
        if ok:
            print(
                f"bucket {name}: deleted with {report.versions_deleted} version(s) and "
                f"{report.uploads_aborted} upload(s); their bytes are now dead data for gc; {note}"
            )
        else:
            _err(f"buckets delete {name} --force: {error}; " + "; ".join(report.errors))
    return 0 if ok else 1


# ---- dispatch -------------------------------------------------------------------


def run_mode(mode: str, args: argparse.Namespace, words: list[str], cfg: Config) -> int:
    """Run toolbox ``mode``; ``words`` are the positional words after the mode."""
    as_json = bool(args.json)
    yes = bool(args.yes)
    if mode == "rebuild-index" and args.dry_run:
        return rebuild_check_cmd(cfg, as_json=as_json)
    if mode == "rebuild-index":
        return rebuild_index_cmd(cfg, force=bool(args.force), yes=yes, as_json=as_json)
    if mode == "support-bundle":
        return support_bundle_cmd(cfg, out=args.out, as_json=as_json)
    if mode == "mpu-gc-plan":
        return mpu_gc_plan_cmd(cfg, as_json=as_json)
    if mode == "mpu-gc-run":
        force = bool(args.force) or bool(args.mpu_force)
        return mpu_gc_run_cmd(cfg, force=force, yes=yes, as_json=as_json)
    if mode == "db-reindex":
        return db_reindex_cmd(cfg, yes=yes, as_json=as_json)
    if mode in ("buckets", "bucket"):
        action = args.buckets_action or (words[0] if words else "list")
        name = args.bucket or (words[1] if len(words) > 1 else None)
        return buckets_cmd(
            cfg, action=action, name=name, versioning=args.versioning, as_json=as_json,
            force=bool(args.force),
        )  # fmt: skip
    raise ValueError(f"not a toolbox mode: {mode}")
