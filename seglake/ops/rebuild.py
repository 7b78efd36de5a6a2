"""``seglake rebuild-index``: rebuild ``meta.db`` from the files alone.

Quiesce protocol: this replaces the database, so it runs only with no server
on the data dir, under ``offline_lock`` (``seglake/locks.py``: the
supervisor's and the writer's locks). A live server keeps the old database open; swapping the
file under it would split the store in two, so it is refused even when
quiesced or with ``--yes``: stop the server first.

What is restored, and from where: the record log in the segments
(``seglake/audit/replay.py``: every segment's typed records in (segment id,
offset) order, the newest record per uid and per bucket name):
- buckets (name, creation time, versioning, policy, lifecycle, CORS, tags,
  ACL, ownership, object-lock and encryption settings) from bucket records
  (a bucket-gone record removes one);
- every version and delete marker from its newest manifest record, in the
  state its newest version-state record gives (none: ``ACTIVE``;
  ``PURGED``: left out), with the metadata (tags, ACL, retention, legal
  hold: ``vmeta`` and the columns mirroring it) of its newest version-meta
  record (none: defaults; a record of an unknown or purged uid is ignored);
- the current pointer of each key: its ACTIVE version with the largest
  (hlc, site) stamp, none when that is a hidden tombstone (the rule every
  writer mutation and replicated apply keeps, writer/lww_rows.py);
- segments from the segment files (SEALED when they end in a valid footer);
- ``settings.clock_ns`` so new versions sort after every restored one, and
  ``settings.lock_clock_hwm`` (Object Lock's clock) from the same stamp.

Its window: a batch whose records were flushed but whose COMMIT never
happened (a crash between the two) was never acknowledged; the writer's
recovery appends the database's state after such records when it next
starts, so only a rebuild *before* that restart can show that batch
(docs/ops.md). A version-1 store (manifest files) is refused: run
``seglake upgrade`` first.

Not restored (they live in the database only): open multipart uploads,
``ops_runs`` history, the maintenance state (it starts ``off``), and
anything other features keep only in the database. The report says so.

The new database is built beside the old one (``meta.db.rebuild``), checked
with ``PRAGMA integrity_check``, fsynced, and swapped in by rename; an
existing ``meta.db`` (with its ``-wal``/``-shm``) is refused unless
``force``, and then moved into ``meta.db.replaced-<time>/``, never deleted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import apsw
import msgpack

from seglake.audit.replay import LogState, replay
from seglake.config import Config
from seglake.format import layout
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.format.vmeta import decode_vmeta, encode_vmeta, from_body
from seglake.meta.schema import open_write, scalar, set_setting
from seglake.protocol.repl_entries import BUCKET_FIELDS as BUCKET_STAMP_FIELDS
from seglake.writer.embedded import backfill_chunk_index, regenerate_oplog, sync_dir

# The bucket settings kept as text columns and in bucket records, after
# versioning (records.BUCKET_TEXT_FIELDS).
BUCKET_TEXT_COLUMNS = (
    "policy", "lifecycle", "cors", "tags", "acl", "ownership", "object_lock", "encryption",
)  # fmt: skip
# Keys the writer adds to a version's meta when it writes the manifest
# (ops._insert_version); the versions.meta column holds the meta without them.
MANIFEST_ONLY_META = ("etag", "created_ns", "delete_marker", "s3_version_id")
# The replication stamps the writer adds to the manifest meta (also kept
# out of versions.meta; restored into versions.hlc/site/prev_*).
MANIFEST_STAMP_META = ("hlc", "site", "prev")
NULL_VERSION = "null"


class RebuildRefused(RuntimeError):
    """The rebuild must not run (existing database without force, ...)."""


@dataclass
class RebuildReport:
    database: str
    buckets: int = 0
    versions: int = 0
    delete_markers: int = 0
    current: int = 0
    segments: int = 0
    manifests_seen: int = 0
    manifests_skipped: int = 0
    records: bool = False
    replaced_to: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Version:
    uid: str
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    created_ns: int
    delete_marker: bool
    meta: dict[str, Any]
    manifest: bytes
    state: str = "ACTIVE"
    hlc: int | None = None
    site: str | None = None
    prev: tuple[int, str] | None = None


def _versions(log: LogState, report: RebuildReport) -> list[_Version]:
    out: list[_Version] = []
    for uid, at in log.manifests.items():
        report.manifests_seen += 1
        where = f"segment {at.segment_id} @{at.offset}"
        try:
            m = decode_manifest(at.data, path=where)
        except FormatError as exc:
            report.manifests_skipped += 1
            report.problems.append(f"manifest skipped: {exc}")
            continue
        meta = dict(m.meta)
        extra = {k: meta.pop(k, None) for k in MANIFEST_ONLY_META}
        hlc, site, prev = (meta.pop(k, None) for k in MANIFEST_STAMP_META)
        created = extra["created_ns"]
        if not isinstance(created, int) or not isinstance(extra["s3_version_id"], str):
            report.manifests_skipped += 1
            report.problems.append(f"manifest skipped: {where} lacks created_ns/s3_version_id")
            continue
        out.append(
            _Version(
                uid=uid,
                bucket=m.bucket,
                key=m.key,
                version_id=str(extra["s3_version_id"]),
                size=m.size,
                etag=str(extra["etag"] or ""),
                created_ns=created,
                delete_marker=bool(extra["delete_marker"]),
                meta=meta,
                manifest=at.data,
                hlc=hlc if isinstance(hlc, int) and isinstance(site, str) else None,
                site=site if isinstance(hlc, int) and isinstance(site, str) else None,
                prev=(
                    (prev[0], prev[1])
                    if isinstance(prev, list)
                    and len(prev) == 2
                    and isinstance(prev[0], int)
                    and isinstance(prev[1], str)
                    else None
                ),
            )
        )
    out.sort(key=lambda v: (v.created_ns, v.uid))
    return out


def _segments(log: LogState) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for seg in log.segments:
        if seg.sealed:
            rows.append(
                (
                    seg.segment_id,
                    "SEALED",
                    seg.size,
                    seg.created_ns,
                    seg.mtime_ns,
                    seg.footer_digest,
                )
            )
        else:
            rows.append((seg.segment_id, "OPEN", seg.size, seg.created_ns, None, None))
    return rows


def build_database(
    cfg: Config, target: Path, report: RebuildReport, progress: Callable[[int], None] | None
) -> None:
    """Write a fresh database at ``target`` from the files of ``cfg``'s data dir."""
    upgrade = cfg.needs_upgrade()
    if upgrade is not None:
        raise RebuildRefused(upgrade)
    log = replay(cfg.segments_dir)
    report.records = True
    report.problems.extend(log.problems)
    for seg in log.segments:
        if not seg.sealed:
            report.notes.append(f"segment {seg.segment_id:016x} has no footer: restored as OPEN")
        if progress is not None:
            progress(1)
    buckets = {name: b for name, b in log.buckets.items() if b is not None}
    states = log.states
    versions = _versions(log, report)
    segments = _segments(log)
    record_ends = {
        at.segment_id: at.offset + segfmt.RECORD_HEADER_SIZE + len(at.data)
        for at in sorted(log.manifests.values(), key=lambda a: (a.segment_id, a.offset))
    }
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{target}{suffix}")
    site = _old_site_id(cfg)
    conn = open_write(str(target))
    try:
        if site is not None:
            with conn:
                set_setting(conn, "site_id", site)
        else:
            report.notes.append(
                "the old database's site id could not be read: this store has a new one"
            )
        _fill(conn, buckets, states, versions, segments, report, record_ends)
        _fill_keks(conn, log.keks, report)
        _fill_vmeta(conn, log, report)
        _fill_replication(conn, log, buckets, report)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # A self-contained file: no -wal of its own to be mixed up with the
        # old database's during the swap.
        conn.execute("PRAGMA journal_mode=DELETE")
        check = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if check != ["ok"]:
            raise RebuildRefused(f"the rebuilt database fails its integrity check: {check}")
    finally:
        conn.close()


def rebuild_index(
    cfg: Config, *, force: bool, progress: Callable[[int], None] | None = None
) -> RebuildReport:
    """Build a new ``meta.db`` from the segments' records; swap it in."""
    report = RebuildReport(database=str(cfg.db_path))
    old_files = [cfg.root / f"{layout.DB_FILE}{s}" for s in ("", *layout.DB_SIDE_SUFFIXES)]
    if cfg.db_path.exists() and not force:
        raise RebuildRefused(
            f"{cfg.db_path} exists; pass --force to replace it (it is kept in a backup directory)"
        )
    tmp = cfg.root / layout.DB_REBUILD_FILE
    build_database(cfg, tmp, report, progress)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if any(p.exists() for p in old_files):
        backup = (
            cfg.root / f"{layout.DB_REPLACED_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        )
        backup.mkdir()
        for p in old_files:
            if p.exists():
                os.rename(p, backup / p.name)
        sync_dir(backup)
        report.replaced_to = str(backup)
    os.rename(tmp, cfg.db_path)
    sync_dir(cfg.root)
    return report


def _fill(
    conn: apsw.Connection,
    buckets: dict[str, dict[str, Any]],
    states: dict[str, str],
    versions: list[_Version],
    segments: list[tuple[Any, ...]],
    report: RebuildReport,
    record_ends: dict[int, int],
) -> None:
    with conn:
        max_ns = 0
        for name, b in sorted(buckets.items()):
            max_ns = max(max_ns, int(b["created_ns"]))
            conn.execute(
                f"INSERT INTO buckets(name, created_ns, versioning, {', '.join(BUCKET_TEXT_COLUMNS)}) "
                f"VALUES (?, ?, ?{', ?' * len(BUCKET_TEXT_COLUMNS)})",
                (
                    name,
                    int(b["created_ns"]),
                    str(b["versioning"]),
                    *(b.get(c) for c in BUCKET_TEXT_COLUMNS),
                ),
            )
        report.buckets = len(buckets)
        newest_null: dict[tuple[str, str], str] = {}
        if not report.records:
            for v in versions:
                if v.version_id == NULL_VERSION:
                    newest_null[(v.bucket, v.key)] = v.uid  # ascending: last is newest
        current: dict[tuple[str, str], tuple[int, int]] = {}
        tombstoned: dict[tuple[str, str], int] = {}
        committed_end: dict[int, int] = dict(record_ends)
        orphans: set[str] = set()
        for v in versions:
            state = states.get(v.uid, "ACTIVE")
            if state == "PURGED":
                continue
            # A deleted bucket keeps its DELETED rows (DeleteBucket removes
            # only markers); a live version without its bucket is an orphan.
            if v.bucket not in buckets and state != "DELETED":
                orphans.add(v.bucket)
                continue
            if (
                newest_null
                and v.version_id == NULL_VERSION
                and newest_null[(v.bucket, v.key)] != v.uid
            ):
                state = "DELETED"
            # A manifest without stamps (written before replication) gets
            # one from its creation time below, as migration 10 did.
            prev_hlc, prev_site = v.prev if v.prev is not None else (None, None)
            # An unversioned DELETE's hidden tombstone says so in its
            # manifest meta: restored as one, and never current.
            tombstone = v.meta.get("tombstone") is True
            conn.execute(
                "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, "
                "state, delete_marker, hlc, site, prev_hlc, prev_site, meta, manifest, tombstone) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    v.uid, v.bucket, v.key, v.version_id, v.size, v.etag, v.created_ns, state,
                    int(v.delete_marker), v.created_ns if v.hlc is None else v.hlc,
                    "" if v.site is None else v.site, prev_hlc, prev_site,
                    msgpack.packb(v.meta, use_bin_type=True), v.manifest, int(tombstone),
                ),
            )  # fmt: skip
            row_id = conn.last_insert_rowid()
            report.versions += 1
            report.delete_markers += int(v.delete_marker)
            max_ns = max(max_ns, v.created_ns)
            m = decode_manifest(v.manifest, path=v.uid, with_meta=False)
            for c in m.chunks:
                committed_end[c.segment_id] = max(
                    committed_end.get(c.segment_id, 0), c.offset + c.length
                )
            if tombstone and state != "DELETED":
                # The key's winner is the hidden tombstone: no current row
                # (a row of the key replayed before it is not current either).
                current.pop((v.bucket, v.key), None)
                tombstoned[(v.bucket, v.key)] = v.created_ns
            elif state != "DELETED" and tombstoned.get((v.bucket, v.key), -1) <= v.created_ns:
                prev = current.get((v.bucket, v.key))
                if prev is None or prev[0] <= v.created_ns:
                    current[(v.bucket, v.key)] = (v.created_ns, row_id)
        for (bucket, key), (_ns, row_id) in current.items():
            conn.execute(
                "INSERT INTO current(bucket, key, version) VALUES (?, ?, ?)", (bucket, key, row_id)
            )
        report.current = len(current)
        for seg_id, state, size, created_ns, sealed_ns, digest in segments:
            conn.execute(
                "INSERT INTO segments(id, state, size, committed_end, created_ns, sealed_ns, "
                "footer_digest) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seg_id, state, size, committed_end.get(seg_id, 0), created_ns, sealed_ns, digest),
            )
        report.segments = len(segments)
        set_setting(conn, "clock_ns", max_ns)
        # Object Lock's clock never restarts below the newest replayed write
        # (seglake/writer/lock_rules.py): a lost meta.db plus a clock set back
        # must not shorten a retention.
        set_setting(conn, "lock_clock_hwm", max_ns // 1_000_000)
        for name in sorted(orphans):
            report.notes.append(
                f"versions of bucket {name!r} left out: the bucket has no record (deleted)"
            )
    report.notes.append(
        "not restored (database only): open multipart uploads, API keys, ops_runs history, "
        "maintenance state (starts off); DAMAGED marks survive only as state records"
    )


def _old_site_id(cfg: Config) -> str | None:
    """The site id of the database being replaced, if it can be read: a
    rebuilt store keeps its identity (its writes carry it)."""
    if not cfg.db_path.exists():
        return None
    try:
        conn = apsw.Connection(str(cfg.db_path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return None
    try:
        rows = conn.execute("SELECT value FROM settings WHERE name = 'site_id'").fetchall()
    except apsw.Error:
        return None
    finally:
        conn.close()
    return str(rows[0][0]) if rows else None


def _fill_replication(
    conn: apsw.Connection,
    log: LogState,
    buckets: dict[str, dict[str, Any]],
    report: RebuildReport,
) -> None:
    """The replication state (docs/design-replication.md §4): version stamps
    (those the manifests lacked, from their creation time in the order
    migration 10 uses), DELETED states' stamps, bucket registers, the chunk
    index, and a new oplog (one entry per row, HLC order) under a new
    epoch, with settings['hlc'] at the largest stamp."""
    site = str(conn.execute("SELECT value FROM settings WHERE name = 'site_id'").fetchall()[0][0])
    with conn:
        conn.execute(
            "UPDATE versions SET hlc = ranked.stamp, site = ? FROM ("
            "  SELECT id, ((hlc / 1000000) << 16)"
            "    | min(ROW_NUMBER() OVER (PARTITION BY hlc / 1000000 ORDER BY hlc, id) - 1, 65535)"
            "    AS stamp FROM versions WHERE site = ''"
            ") AS ranked WHERE versions.id = ranked.id",
            (site,),
        )
        for uid, (hlc, origin) in log.state_stamps.items():
            conn.execute(
                "UPDATE versions SET state_hlc = ?, state_site = ? WHERE uid = ? "
                "AND state = 'DELETED'",
                (hlc, origin, uid),
            )
        for name, body in buckets.items():
            stamps = body.get("stamps")
            if not isinstance(stamps, dict):
                continue
            for field_name, stamp in stamps.items():
                value_col = field_name if field_name in BUCKET_STAMP_FIELDS else None
                if value_col is None or not (
                    isinstance(stamp, list) and len(stamp) == 2 and isinstance(stamp[0], int)
                ):
                    continue
                conn.execute(
                    f"INSERT INTO bucket_stamps(bucket, field, hlc, site, value) "
                    f"SELECT name, ?, ?, ?, {value_col} FROM buckets WHERE name = ?",
                    (field_name, stamp[0], str(stamp[1]), name),
                )
        for name, (hlc, origin) in log.gone_stamps.items():
            # Kept after a re-creation too, as the writer keeps it.
            conn.execute(
                "INSERT INTO bucket_stamps(bucket, field, hlc, site, value) "
                "VALUES (?, '_gone', ?, ?, NULL)",
                (name, hlc, origin),
            )
        # The current version of each key by the rule the writer keeps
        # (writer/lww_rows.py): the largest (hlc, site) among ACTIVE rows,
        # none when that is a hidden tombstone. Creation order, used above
        # before the stamps were final, is not it: a replicated version
        # stamped by a site whose clock ran ahead can be older by
        # creation time and still win, and a CONFLICT row is never current.
        conn.execute("DELETE FROM current")
        conn.execute(
            "INSERT INTO current(bucket, key, version) SELECT bucket, key, id FROM ("
            "  SELECT id, bucket, key, tombstone, ROW_NUMBER() OVER ("
            "    PARTITION BY bucket, key ORDER BY hlc DESC, site DESC) AS rank"
            "  FROM versions WHERE state = 'ACTIVE'"
            ") WHERE rank = 1 AND tombstone = 0"
        )
        report.current = int(scalar(conn, "SELECT count(*) FROM current"))
    backfill_chunk_index(conn)
    entries = regenerate_oplog(
        conn, site=site, state_stamps={u: s for u, s in log.state_stamps.items()}
    )
    report.notes.append(
        f"replication: {entries} oplog entries regenerated under a new epoch (remotes "
        "restart their cursors at 0 of it; applying is idempotent)"
    )


def _fill_keks(
    conn: apsw.Connection, keks: dict[str, dict[str, Any]], report: RebuildReport
) -> None:
    """The SSE KEKs of the key records, wrapped as they were: readable again
    with the same master key file(s)."""
    with conn:
        for kek_id, body in sorted(keks.items()):
            conn.execute(
                "INSERT INTO sse_keks(id, wrapped, master_id, created_ns) VALUES (?, ?, ?, ?)",
                (kek_id, body["wrapped"], body["master_id"], int(body["created_ns"])),
            )
    if keks:
        report.notes.append(
            f"{len(keks)} SSE key(s) restored: encrypted objects need the SSE master key file"
        )


def _fill_vmeta(conn: apsw.Connection, log: LogState, report: RebuildReport) -> None:
    """Each restored version's metadata from its newest version-meta record."""
    restored = 0
    with conn:
        for uid, body in sorted(log.vmeta.items()):
            try:
                value = from_body(body, path=f"version-meta record of {uid}")
            except FormatError as exc:  # decode_record checked it; be safe anyway
                report.problems.append(f"version meta skipped: {exc}")
                continue
            # A record of defaults with no rev is what a version without
            # metadata would have: keep its column NULL, as the writer does.
            blob = None if value.is_default and value.rev == 0 else encode_vmeta(value)
            tag_count, lock_mode, lock_until_ms, legal_hold = value.columns()
            conn.execute(
                "UPDATE versions SET vmeta = ?, tag_count = ?, lock_mode = ?, lock_until_ms = ?, "
                "legal_hold = ? WHERE uid = ?",
                (blob, tag_count, lock_mode, lock_until_ms, legal_hold, uid),
            )
            restored += conn.changes()
    if restored:
        report.notes.append(
            f"version metadata (tags, ACL, lock) restored for {restored} version(s)"
        )


# ---- check (dry run) -------------------------------------------------------------

# Differences listed in a check report; the count is always complete.
MAX_LISTED_DIFFERENCES = 50


def _dump(path: Path) -> dict[str, dict[Any, Any]]:
    """What rebuild-index restores, keyed so row ids and order do not matter."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    conn.setbusytimeout(5000)
    try:
        conn.execute("BEGIN")  # one consistent snapshot of a live database
        try:
            buckets = {
                r[0]: tuple(r[1:])
                for r in conn.execute(
                    f"SELECT name, created_ns, versioning, {', '.join(BUCKET_TEXT_COLUMNS)} "
                    "FROM buckets"
                )
            }
            versions = {
                r[0]: tuple(r[1:])
                for r in conn.execute(
                    "SELECT uid, bucket, key, version_id, size, etag, created_ns, state, "
                    "delete_marker, meta, manifest, vmeta, tag_count, lock_mode, lock_until_ms, "
                    "legal_hold, hlc, site, prev_hlc, prev_site, state_hlc, state_site "
                    "FROM versions"
                )
            }
            current = {
                (r[0], r[1]): r[2]
                for r in conn.execute(
                    "SELECT c.bucket, c.key, v.uid FROM current c "
                    "JOIN versions v ON v.id = c.version"
                )
            }
            segments = {
                r[0]: tuple(r[1:]) for r in conn.execute("SELECT id, state, size FROM segments")
            }
            keks = {
                r[0]: tuple(r[1:])
                for r in conn.execute("SELECT id, wrapped, master_id, created_ns FROM sse_keks")
            }
            stamps = {
                (r[0], r[1]): tuple(r[2:])
                for r in conn.execute("SELECT bucket, field, hlc, site, value FROM bucket_stamps")
            }
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    return {
        "buckets": buckets, "versions": versions, "current": current, "segments": segments,
        "sse_keks": keks, "bucket_stamps": stamps,
    }  # fmt: skip


def _same_version(left: Any, right: Any) -> bool:
    """Equal rows up to msgpack packing of ``meta`` (column 8 of the dump)
    and of ``vmeta`` (column 10: equal values, NULL being the defaults)."""
    if left is None or right is None or left[:8] != right[:8] or left[9] != right[9]:
        return False
    if left[11:] != right[11:]:
        return False
    if msgpack.unpackb(left[8], raw=False) != msgpack.unpackb(right[8], raw=False):
        return False
    try:
        return decode_vmeta(left[10]) == decode_vmeta(right[10])
    except FormatError:
        return False


def compare_databases(original: Path, rebuilt: Path) -> tuple[int, list[str]]:
    """(number of differences, the first few described) between two databases."""
    a, b = _dump(original), _dump(rebuilt)
    count = 0
    listed: list[str] = []
    for table in ("buckets", "versions", "current", "segments", "sse_keks", "bucket_stamps"):
        for k in sorted(a[table].keys() | b[table].keys(), key=repr):
            left, right = a[table].get(k), b[table].get(k)
            if left == right:
                continue
            if table == "versions" and _same_version(left, right):
                continue
            count += 1
            if len(listed) < MAX_LISTED_DIFFERENCES:
                what = (
                    "missing in rebuild"
                    if right is None
                    else ("only in rebuild" if left is None else "differs")
                )
                listed.append(f"{table} {k!r}: {what}")
    return count, listed


def check_index(
    cfg: Config, progress: Callable[[int], None] | None = None
) -> tuple[RebuildReport, int, list[str]]:
    """Rebuild into a temporary file and compare it with ``meta.db``; change nothing.

    Safe next to a live server (it only reads); changes committed while it
    runs can show up as differences.
    """
    import tempfile

    report = RebuildReport(database=str(cfg.db_path))
    with tempfile.TemporaryDirectory(prefix="seglake-rebuild-check-") as tmp:
        target = Path(tmp) / "meta.db"
        build_database(cfg, target, report, progress)
        count, listed = compare_databases(cfg.db_path, target)
    return report, count, listed
