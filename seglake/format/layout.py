"""Every name in a data dir: files, directories, locks and sockets.

A data dir looks like this (``<root>`` is ``--data-dir``)::

    <root>/meta.db (-wal, -shm)        the index (SQLite, WAL)
    <root>/objects/segments/<id>.seg   chunk data; <id> is 16 lowercase hex digits
    (segment format 2 keeps manifests and metadata records in the segments;
    a version-1 store also has objects/manifests/, objects/records/ and
    objects/gc-pending/, which ``seglake upgrade`` folds in and removes)
    <root>/.seglake.lock               the supervisor's flock ("pid time" inside)
    <root>/.seglake-writer.lock        the writer's flock: one writer per data dir
    <root>/.seglake-writer.sock        the writer's IPC socket
    <root>/.seglake-supervisor.sock    the supervisor's socket (process list)
    <root>/.seglake-admin.sock         the admin socket (maintenance process, 0600)
    <root>/.seglake-admin.token        the admin socket's token (0600)
    <root>/.seglake-listen             the address the supervisor bound
    <root>/.seglake-keys.master        the key that seals API secrets (0600)
    <root>/.seglake-sse.master         the key that wraps the SSE key-encryption keys (0600)
    <root>/.seglake-replay             the frontends' shared replay table
    <root>/.seglake-gc-pause           present = gc-rewrite pauses (by hand, cron)

Rules this file keeps: names only. Nothing here touches the file system;
every process builds its paths from these, so a name changes in one place.
The manifest and record path rules (sharding) stay with their codecs
(``manifest.py``, ``records.py``), which build on ``objects_dir`` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

DB_FILE: Final = "meta.db"
# SQLite's companions of DB_FILE in WAL mode; they move with it.
DB_SIDE_SUFFIXES: Final = ("-wal", "-shm")
OBJECTS_DIR: Final = "objects"
SEGMENTS_DIR: Final = "segments"  # under OBJECTS_DIR
MANIFESTS_DIR: Final = "manifests"  # under OBJECTS_DIR
RECORDS_DIR: Final = "records"  # under OBJECTS_DIR
GC_PENDING_DIR: Final = "gc-pending"  # under OBJECTS_DIR
SEGMENT_SUFFIX: Final = ".seg"
GC_PENDING_SUFFIX: Final = ".pending"

LOCK_FILE: Final = ".seglake.lock"
WRITER_LOCK_FILE: Final = ".seglake-writer.lock"
WRITER_SOCKET: Final = ".seglake-writer.sock"
SUPERVISOR_SOCKET: Final = ".seglake-supervisor.sock"
ADMIN_SOCKET: Final = ".seglake-admin.sock"
ADMIN_TOKEN_FILE: Final = ".seglake-admin.token"
LISTEN_FILE: Final = ".seglake-listen"
MASTER_KEY_FILE: Final = ".seglake-keys.master"
# The SSE master key (seglake/sse/keys.py); a superseded one is kept as
# "<name>.<master id>" until a rotation is durable.
SSE_MASTER_FILE: Final = ".seglake-sse.master"
REPLAY_FILE: Final = ".seglake-replay"
GC_PAUSE_FILE: Final = ".seglake-gc-pause"
# rebuild-index builds the new index beside the old one, then renames it.
DB_REBUILD_FILE: Final = DB_FILE + ".rebuild"
DB_REPLACED_PREFIX: Final = DB_FILE + ".replaced-"


def segment_file_name(segment_id: int) -> str:
    return f"{segment_id:016x}{SEGMENT_SUFFIX}"


def segment_id_of(name: str) -> int | None:
    """The id in a segment file name; None for any other name."""
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    try:
        return int(name[: -len(SEGMENT_SUFFIX)], 16)
    except ValueError:
        return None


def objects_dir(root: Path) -> Path:
    return root / OBJECTS_DIR


def segments_dir(root: Path) -> Path:
    return root / OBJECTS_DIR / SEGMENTS_DIR


def manifests_dir(root: Path) -> Path:
    return root / OBJECTS_DIR / MANIFESTS_DIR


def gc_pending_dir(root: Path) -> Path:
    return root / OBJECTS_DIR / GC_PENDING_DIR


def v1_dirs(root: Path) -> list[Path]:
    """The directories only a version-1 store has (one file per manifest,
    per metadata record, per pending gc manifest)."""
    return [manifests_dir(root), root / OBJECTS_DIR / RECORDS_DIR, gc_pending_dir(root)]
