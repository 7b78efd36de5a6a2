"""The SQLite schema of ``meta.db`` and its migrations.

Rules this file keeps:
- Only the writer process opens ``meta.db`` for writing; frontends and tools
  open it read-only (WAL lets them read while the writer commits).
- Every connection that writes uses WAL with ``synchronous=FULL``: a commit
  returns only after the WAL is on stable storage.
- The schema version lives in ``PRAGMA user_version``. Migrations are applied
  in order, each in its own transaction, and are never edited once released:
  a change is a new entry at the end of ``MIGRATIONS``.

Tables (SPEC §5):
- ``buckets``: name, creation time, versioning state, policy.
- ``versions``: one row per stored version or delete marker. ``uid`` is
  unique for every row and names its manifest file; ``version_id`` is what S3
  clients see, ``null`` for versions written while a bucket was unversioned
  or suspended (so it repeats: an overwritten null version stays as a
  DELETED row until GC). ``manifest`` holds the same bytes as the manifest
  file so a GET needs one query. Keys are TEXT under BINARY collation, i.e. ordered by UTF-8 bytes as
  S3 lists them.
- ``current``: the current-version pointer per (bucket, key).
- ``segments``: every segment file with its state and ``committed_end``, the
  end offset of the last chunk referenced by a committed version; recovery
  never truncates a segment below it.
- ``settings``: small named values (maintenance state, HLC watermark).
- ``ops_runs``: history of maintenance runs.
- ``uploads`` / ``parts``: open multipart uploads and their parts (migration 2);
  ``uploads.key_uid``, the key's current version at creation (migration 4).
- ``completed_uploads``: recently completed uploads, so a repeated Complete
  gets the same answer (migration 5).
- ``buckets.lifecycle``: the bucket's lifecycle configuration, as the XML
  GetBucketLifecycleConfiguration answers (migration 6; NULL = none).
- ``buckets.cors``: the bucket's CORS configuration, as the XML GetBucketCors
  answers (migration 7; NULL = none: the server-wide ``--cors-*`` apply).
- per-version metadata (migration 8, docs/design-version-metadata.md):
  ``versions.vmeta`` (``seglake/format/vmeta.py``; NULL = all defaults) and
  the columns mirroring it (``tag_count``, ``lock_mode``, ``lock_until_ms``,
  ``legal_hold``), ``uploads.vmeta``/``uploads.owner`` (what a multipart
  upload's version gets), and the bucket settings ``tags``, ``acl``,
  ``ownership``, ``object_lock``, ``encryption`` (canonical text each).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import apsw

# A position in a keyset scan: the sort key of the last row read.
P = TypeVar("P")

MIGRATIONS: Final[list[str]] = [
    # 1: the foundation
    """
    CREATE TABLE buckets (
        name        TEXT PRIMARY KEY,
        created_ns  INTEGER NOT NULL,
        versioning  TEXT NOT NULL CHECK (versioning IN ('enabled', 'suspended', 'unversioned')),
        policy      TEXT
    );
    CREATE TABLE versions (
        id             INTEGER PRIMARY KEY,
        uid            TEXT NOT NULL UNIQUE,
        bucket         TEXT NOT NULL,
        key            TEXT NOT NULL,
        version_id     TEXT NOT NULL,
        size           INTEGER NOT NULL,
        etag           TEXT NOT NULL,
        created_ns     INTEGER NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('ACTIVE', 'DELETED', 'DAMAGED', 'CONFLICT')),
        delete_marker  INTEGER NOT NULL DEFAULT 0,
        hlc            INTEGER NOT NULL,
        meta           BLOB NOT NULL,
        manifest       BLOB
    );
    CREATE INDEX versions_by_key ON versions(bucket, key, version_id);
    CREATE TABLE current (
        bucket      TEXT NOT NULL,
        key         TEXT NOT NULL,
        version     INTEGER NOT NULL REFERENCES versions(id),
        PRIMARY KEY (bucket, key)
    ) WITHOUT ROWID;
    CREATE TABLE segments (
        id             INTEGER PRIMARY KEY,
        state          TEXT NOT NULL CHECK (state IN ('OPEN', 'SEALED')),
        size           INTEGER NOT NULL,
        committed_end  INTEGER NOT NULL,
        created_ns     INTEGER NOT NULL,
        sealed_ns      INTEGER,
        footer_digest  BLOB
    );
    CREATE TABLE settings (
        name   TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    CREATE TABLE ops_runs (
        id           INTEGER PRIMARY KEY,
        mode         TEXT NOT NULL,
        started_ns   INTEGER NOT NULL,
        finished_ns  INTEGER,
        status       TEXT NOT NULL,
        report       TEXT
    );
    """,
    # 2: multipart uploads. A part's data lives in segments already; its row
    # lists the chunks (msgpack [[segment, offset, length, blake3], ...]), so
    # parts of open uploads are live data for GC. Upload ids begin with the
    # creation clock, so (bucket, key, upload_id) order is S3's listing order.
    """
    CREATE TABLE uploads (
        upload_id           TEXT PRIMARY KEY,
        bucket              TEXT NOT NULL,
        key                 TEXT NOT NULL,
        created_ns          INTEGER NOT NULL,
        meta                BLOB NOT NULL,
        checksum_algorithm  TEXT
    );
    CREATE INDEX uploads_by_key ON uploads(bucket, key, upload_id);
    CREATE TABLE parts (
        upload_id    TEXT NOT NULL REFERENCES uploads(upload_id),
        part_number  INTEGER NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
        size         INTEGER NOT NULL,
        etag         TEXT NOT NULL,
        created_ns   INTEGER NOT NULL,
        checksums    BLOB NOT NULL,
        chunks       BLOB NOT NULL,
        PRIMARY KEY (upload_id, part_number)
    ) WITHOUT ROWID;
    """,
    # api_keys: access keys managed with `seglake keys`. The secret is stored
    # only encrypted (AES-256-GCM under a master key kept outside meta.db,
    # see seglake/auth/keystore.py); policy is rw, ro or a JSON document;
    # inflight 0 means the server's --key-inflight-limit. An empty allow-list
    # (api_key_buckets) means every bucket.
    """
    CREATE TABLE api_keys (
        access_key  TEXT PRIMARY KEY,
        secret_enc  BLOB NOT NULL,
        policy      TEXT NOT NULL,
        enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        inflight    INTEGER NOT NULL CHECK (inflight >= 0),
        created_ns  INTEGER NOT NULL
    );
    CREATE TABLE api_key_buckets (
        access_key  TEXT NOT NULL REFERENCES api_keys(access_key),
        bucket      TEXT NOT NULL,
        PRIMARY KEY (access_key, bucket)
    ) WITHOUT ROWID;
    """,
    # 4: conditional CompleteMultipartUpload. key_uid is the uid of the key's
    # current version (or delete marker) when the upload was created, '' for
    # none; a conditional Complete that passes against a key changed since
    # then is 409 ConditionalRequestConflict. NULL: created before this column.
    """
    ALTER TABLE uploads ADD COLUMN key_uid TEXT;
    """,
    # 5: completed multipart uploads, kept for a while so that a repeated
    # CompleteMultipartUpload (an SDK retrying after a lost response) with the
    # same part list is answered with the same result. parts_digest is the
    # SHA-256 of the msgpack [[part number, etag], ...] list; result is the
    # msgpack of the writer's reply. Rows older than the retention window are
    # pruned by later Completes.
    """
    CREATE TABLE completed_uploads (
        upload_id     TEXT PRIMARY KEY,
        bucket        TEXT NOT NULL,
        key           TEXT NOT NULL,
        parts_digest  BLOB NOT NULL,
        result        BLOB NOT NULL,
        completed_ns  INTEGER NOT NULL
    );
    CREATE INDEX completed_uploads_by_time ON completed_uploads(completed_ns);
    """,
    # 6: bucket lifecycle configurations (seglake/protocol/lifecycle.py), stored
    # as the canonical XML the writer made of the client's document; mirrored
    # into the bucket record so rebuild-index restores it.
    """
    ALTER TABLE buckets ADD COLUMN lifecycle TEXT;
    """,
    # 7: bucket CORS configurations (seglake/protocol/bucket_cors.py), stored
    # as the canonical XML the writer made of the client's document; mirrored
    # into the bucket record so rebuild-index restores it. Frontends read it
    # by the buckets primary key on requests that carry an Origin.
    """
    ALTER TABLE buckets ADD COLUMN cors TEXT;
    """,
    # 8: per-version metadata (tags, ACL, object lock) and the new bucket
    # settings. Columns, not a side table: GET/HEAD read the versions row
    # already, and ALTER TABLE ADD COLUMN costs nothing in existing rows. The
    # lock fields are columns of their own so enforcement finds locked
    # versions through versions_locked. Mirrored into version-meta records
    # (segment type 4) and bucket records, so rebuild-index restores them.
    """
    ALTER TABLE versions ADD COLUMN vmeta BLOB;
    ALTER TABLE versions ADD COLUMN tag_count INTEGER;
    ALTER TABLE versions ADD COLUMN lock_mode TEXT
        CHECK (lock_mode IN ('GOVERNANCE', 'COMPLIANCE'));
    ALTER TABLE versions ADD COLUMN lock_until_ms INTEGER;
    ALTER TABLE versions ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX versions_locked ON versions(bucket, key)
        WHERE lock_until_ms IS NOT NULL OR legal_hold = 1;
    ALTER TABLE uploads ADD COLUMN vmeta BLOB;
    ALTER TABLE uploads ADD COLUMN owner TEXT;
    ALTER TABLE buckets ADD COLUMN tags TEXT;
    ALTER TABLE buckets ADD COLUMN acl TEXT;
    ALTER TABLE buckets ADD COLUMN ownership TEXT;
    ALTER TABLE buckets ADD COLUMN object_lock TEXT;
    ALTER TABLE buckets ADD COLUMN encryption TEXT;
    """,
    # 9: server-side encryption. KEKs
    # wrapped by the SSE master key (seglake/sse/keys.py; master_id names
    # which master), mirrored as segment key records so rebuild-index
    # restores them. parts.sse_nonce: the random nonce base each UploadPart
    # of an encrypted upload sealed its chunks with (a re-uploaded part gets
    # a new one, so a (DEK, nonce) pair is never reused).
    """
    CREATE TABLE sse_keks (
        id          TEXT PRIMARY KEY,
        wrapped     BLOB NOT NULL,
        master_id   TEXT NOT NULL,
        created_ns  INTEGER NOT NULL
    );
    ALTER TABLE parts ADD COLUMN sse_nonce BLOB;
    """,
    # 10: multi-site replication (docs/design-replication.md). versions.hlc
    # becomes a hybrid logical clock value, (physical ms << 16) | logical,
    # converted from the nanoseconds it held so the existing order is kept
    # exactly (rank within a millisecond in ns order); with the stamp's site
    # and the stamp of the key's current version when the version was
    # written (prev_*: what the sibling rule of seglake/protocol/lww.py
    # compares). state_hlc/state_site: the stamp of the version's DELETED
    # state (its oplog 'state' entry; kept in state records so rebuild-index
    # restores it). tombstone: the hidden null delete marker an unversioned
    # DELETE leaves (never in ``current``, invisible to S3; it keeps a late
    # older put from another site from bringing the key back). The site id of this store is chosen here for stores that
    # predate it; the writer may still replace it while the store is empty.
    # oplog: every replicated mutation in local commit order (seq is the
    # paging cursor; oplog_identity makes applying a relayed entry
    # idempotent). chunk_index: where each stored chunk is, by digest
    # (derived; rebuilt from manifests). bucket_stamps: one LWW register per
    # bucket config field. repl_pending_state: DELETED states that arrived
    # before their version. repl_remotes / repl_inbound: cursors per remote.
    """
    ALTER TABLE versions ADD COLUMN site TEXT NOT NULL DEFAULT '';
    ALTER TABLE versions ADD COLUMN prev_hlc INTEGER;
    ALTER TABLE versions ADD COLUMN prev_site TEXT;
    ALTER TABLE versions ADD COLUMN state_hlc INTEGER;
    ALTER TABLE versions ADD COLUMN state_site TEXT;
    ALTER TABLE versions ADD COLUMN tombstone INTEGER NOT NULL DEFAULT 0;
    UPDATE versions SET hlc = ranked.stamp FROM (
        SELECT id, ((hlc / 1000000) << 16)
            | min(ROW_NUMBER() OVER (PARTITION BY hlc / 1000000 ORDER BY hlc, id) - 1, 65535)
            AS stamp
        FROM versions
    ) AS ranked WHERE versions.id = ranked.id;
    INSERT OR IGNORE INTO settings(name, value) VALUES ('site_id', lower(hex(randomblob(8))));
    UPDATE versions SET site = (SELECT value FROM settings WHERE name = 'site_id');
    CREATE INDEX versions_by_stamp ON versions(bucket, key, hlc, site);
    CREATE TABLE oplog (
        seq     INTEGER PRIMARY KEY,
        hlc     INTEGER NOT NULL,
        site    TEXT NOT NULL,
        op      TEXT NOT NULL
            CHECK (op IN ('version', 'state', 'bucket', 'bucket_gone', 'vmeta', 'kek')),
        bucket  TEXT NOT NULL,
        key     TEXT,
        uid     TEXT,
        body    BLOB NOT NULL
    );
    CREATE UNIQUE INDEX oplog_identity ON oplog(site, hlc, op, bucket, ifnull(uid, ''));
    CREATE INDEX oplog_vmeta ON oplog(uid, hlc, site) WHERE op = 'vmeta';
    CREATE TABLE chunk_index (
        digest   BLOB PRIMARY KEY,
        segment  INTEGER NOT NULL,
        offset   INTEGER NOT NULL,
        length   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE bucket_stamps (
        bucket  TEXT NOT NULL,
        field   TEXT NOT NULL,
        hlc     INTEGER NOT NULL,
        site    TEXT NOT NULL,
        value   BLOB,
        PRIMARY KEY (bucket, field)
    ) WITHOUT ROWID;
    CREATE TABLE repl_pending_state (
        uid     TEXT PRIMARY KEY,
        bucket  TEXT NOT NULL,
        key     TEXT NOT NULL,
        hlc     INTEGER NOT NULL,
        site    TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE repl_remotes (
        remote         TEXT PRIMARY KEY,
        site           TEXT,
        epoch          TEXT,
        pull_cursor    INTEGER NOT NULL DEFAULT 0,
        push_epoch     TEXT,
        push_cursor    INTEGER NOT NULL DEFAULT 0,
        last_pull_hlc  INTEGER,
        last_push_hlc  INTEGER,
        last_ok_ns     INTEGER,
        last_error     TEXT,
        conflicts      INTEGER NOT NULL DEFAULT 0,
        bytes_in       INTEGER NOT NULL DEFAULT 0,
        bytes_out      INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE repl_inbound (
        site    TEXT PRIMARY KEY,
        epoch   TEXT NOT NULL,
        cursor  INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION: Final = len(MIGRATIONS)

# settings['store_format']: the newest segment format the store holds data
# in. "2" is written by ``seglake upgrade``; "3" by the first commit into a
# format-3 segment (seglake/writer/commit.py). Older binaries never read it:
# they refuse the segments themselves (docs/design-version-metadata.md §5).
STORE_FORMAT_SETTING: Final = "store_format"
STORE_FORMAT_3: Final = "3"


def query(conn: apsw.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """All rows of a query. Rows are typed ``Any``: columns are known by the SQL."""
    rows: list[Any] = conn.execute(sql, params).fetchall()
    return rows


def keyset_scan(
    batch_after: Callable[[P], list[Any]],
    start: P,
    *,
    batch: int,
    position_of: Callable[[Any], P],
    in_range: Callable[[Any], bool],
) -> Iterator[Any]:
    """The rows of an ordered query read ``batch`` at a time, each batch by
    key rather than by OFFSET: ``batch_after(position)`` returns up to
    ``batch`` rows after ``position``, and the next batch starts after the
    last row returned (``position_of(row)``). The walk ends at a short batch
    or at the first row not ``in_range`` (past the prefix: in key order
    nothing after it can be in range)."""
    position = start
    while True:
        rows = batch_after(position)
        for row in rows:
            if not in_range(row):
                return
            yield row
        if len(rows) < batch:
            return
        position = position_of(rows[-1])


def scalar(conn: apsw.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    rows = query(conn, sql, params)
    return rows[0][0] if rows else None


def live_version(
    conn: apsw.Connection, cols: str, bucket: str, key: str, version_id: str | None
) -> Any | None:
    """Columns ``cols`` (of ``versions v``) of the current version of
    ``key`` (``version_id`` None) or of the version ``version_id`` names;
    None when that version does not exist or is DELETED. Delete markers are
    rows like any other: callers decide what one means."""
    if version_id is None:
        rows = query(
            conn,
            f"SELECT {cols} FROM current c JOIN versions v ON v.id = c.version "
            "WHERE c.bucket = ? AND c.key = ? AND v.state != 'DELETED'",
            (bucket, key),
        )
    else:
        rows = query(
            conn,
            f"SELECT {cols} FROM versions v WHERE v.bucket = ? AND v.key = ? "
            "AND v.version_id = ? AND v.state != 'DELETED' AND v.tombstone = 0",
            (bucket, key, version_id),
        )
    return rows[0] if rows else None


def open_write(path: str) -> apsw.Connection:
    """The writer's connection: creates/migrates the database."""
    conn = apsw.Connection(path)
    conn.setbusytimeout(5000)
    mode = scalar(conn, "PRAGMA journal_mode=WAL")
    if str(mode).lower() != "wal":
        raise RuntimeError(f"{path}: could not enable WAL (journal_mode={mode})")
    conn.execute("PRAGMA synchronous=FULL")
    # The writer checkpoints itself between batches; automatic checkpoints
    # inside a commit would add a second fsync to the client-visible barrier.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    migrate(conn)
    return conn


def open_read(path: str) -> apsw.Connection:
    """A read-only connection for frontends and tools."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    conn.setbusytimeout(5000)
    conn.execute("PRAGMA query_only=1")
    version = int(scalar(conn, "PRAGMA user_version"))
    if version != SCHEMA_VERSION:
        raise RuntimeError(f"{path}: schema version {version}, this build expects {SCHEMA_VERSION}")
    return conn


def migrate(conn: apsw.Connection) -> None:
    current = int(scalar(conn, "PRAGMA user_version"))
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {current} is newer than this build ({SCHEMA_VERSION})"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with conn:
            conn.execute(MIGRATIONS[version - 1])
            conn.execute(f"PRAGMA user_version={version}")


def get_setting(conn: apsw.Connection, name: str) -> str | None:
    value = scalar(conn, "SELECT value FROM settings WHERE name = ?", (name,))
    return None if value is None else str(value)


def set_setting(conn: apsw.Connection, name: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO settings(name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (name, str(value)),
    )
