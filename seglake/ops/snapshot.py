"""``seglake snapshot`` and ``seglake db-integrity-check``: read-only.

Both open ``meta.db`` read-only and never change the store, so they are safe
next to a live server and need no quiesce. A snapshot is a consistent copy
of the database as of one moment (SQLite's online backup reads a single WAL
snapshot), written to a new file and fsynced, with a JSON report beside it.
It covers metadata only: segments and manifests stay where they are, and
objects written after the snapshot are not in it.

Restore: stop the server, replace ``meta.db`` with the snapshot and remove
``meta.db-wal`` and ``meta.db-shm``, start the server.

API-key secrets in the snapshot are sealed with ``.seglake-keys.master``,
which the snapshot deliberately does not contain (a backup holding both
would hold the secrets in the clear). The report names the file and how
many keys need it, so an operator who restores elsewhere knows to bring it.
The same goes for the SSE master key (``.seglake-sse.master`` or
``--sse-master-key-file``): encrypted objects are readable only with it, so
the report names it and counts the KEKs it wraps.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import apsw

from seglake.config import Config
from seglake.format.layout import MASTER_KEY_FILE
from seglake.meta.schema import SCHEMA_VERSION, open_read, query
from seglake.writer.embedded import sync_dir

COUNTED_TABLES = ("buckets", "versions", "current", "segments", "uploads", "parts")


@dataclass(frozen=True)
class SnapshotReport:
    path: str
    report_path: str
    bytes: int
    sha256: str
    schema_version: int
    taken_at: str
    counts: dict[str, int]
    # API keys whose sealed secrets need the master key, and that key's file
    # (None if it does not exist); neither is copied into the snapshot.
    sealed_api_keys: int
    master_key_file: str | None
    # SSE key-encryption keys in the snapshot, and the SSE master key file
    # that wraps them (None if it does not exist); the file is not copied.
    sse_keks: int = 0
    sse_master_key_file: str | None = None


def _counts(conn: apsw.Connection) -> dict[str, int]:
    return {t: int(query(conn, f"SELECT count(*) FROM {t}")[0][0]) for t in COUNTED_TABLES}


def take_snapshot(cfg: Config, out: Path | None = None) -> SnapshotReport:
    now = dt.datetime.now(dt.UTC)
    target = out or cfg.root / "snapshots" / f"meta-{now.strftime('%Y%m%dT%H%M%SZ')}.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    partial = target.with_name(target.name + ".partial")
    source = open_read(str(cfg.db_path))
    try:
        dest = apsw.Connection(str(partial))
        try:
            with dest.backup("main", source, "main") as backup:
                backup.step(-1)  # one pass: a single consistent snapshot of the source
            counts = _counts(dest)
            sealed = int(query(dest, "SELECT count(*) FROM api_keys")[0][0])
            keks = int(query(dest, "SELECT count(*) FROM sse_keks")[0][0])
            dest.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal
        finally:
            dest.close()
    finally:
        source.close()
    with open(partial, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        os.fsync(f.fileno())
    os.rename(partial, target)
    sync_dir(target.parent)
    report = SnapshotReport(
        path=str(target), report_path=str(target.with_suffix(".json")),
        bytes=target.stat().st_size, sha256=digest, schema_version=SCHEMA_VERSION,
        taken_at=now.isoformat(), counts=counts, sealed_api_keys=sealed,
        master_key_file=str(master) if (master := cfg.root / MASTER_KEY_FILE).exists() else None,
        sse_keks=keks,
        sse_master_key_file=str(cfg.sse_master_path) if cfg.sse_master_path.exists() else None,
    )  # fmt: skip
    Path(report.report_path).write_text(json.dumps(asdict(report), indent=2, sort_keys=True))
    return report


def integrity_check(db_path: Path) -> list[str]:
    """SQLite's own structural check; ``["ok"]`` when the file is sound."""
    try:
        conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:
        return [f"cannot open: {exc}"]
    try:
        rows: list[Any] = conn.execute("PRAGMA integrity_check").fetchall()
        return [str(r[0]) for r in rows]
    except apsw.Error as exc:
        return [f"integrity check failed: {exc}"]
    finally:
        conn.close()
