"""The CLI's ``sse`` mode: ``seglake sse rotate-master`` and ``seglake sse status``.

Rotation replaces the SSE master key without rewriting any object data or
manifest: only the KEKs' wrapping changes (``docs/design-version-metadata.md``
§4). Order, each step durable before the next, so a crash anywhere leaves
every KEK unwrappable by a master file that is present (readers load every
``<file>.<id>``):

1. the current master is kept as ``<file>.<old id>``;
2. the new master is written as ``<file>.<new id>``;
3. every KEK is re-wrapped under the new master in one writer batch
   (``RewrapKeks``: through the running server, or the embedded writer when
   none runs); its COMMIT makes the new wrapping durable, key records too;
4. the new master replaces ``<file>`` (rename), then both side files are
   removed: the old master no longer opens anything.

KEKs are unwrapped here, in this process, and sent only wrapped.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.ipc.messages import KekRow, RewrapKeks
from seglake.meta import sse_reads
from seglake.meta.schema import open_read
from seglake.ops.admin_client import AdminRefused, AdminUnavailable, admin_mutation
from seglake.private_files import fsync_dir
from seglake.sse import keys
from seglake.writer.embedded import apply_offline

ACTIONS = ("rotate-master", "status")


def _keks(cfg: Config) -> list[sse_reads.StoredKek]:
    if not cfg.db_path.exists():
        return []
    conn = open_read(str(cfg.db_path))
    try:
        return sse_reads.all_keks(conn)
    finally:
        conn.close()


def _rewrap(cfg: Config, msg: RewrapKeks) -> int:
    try:
        return trio.run(admin_mutation, cfg, msg).count
    except AdminRefused as exc:
        raise exc.error from None
    except AdminUnavailable:
        return apply_offline(cfg, "sse rotate-master", msg).count


def rotate_master(cfg: Config) -> dict[str, Any]:
    path = cfg.sse_master_path
    if not path.exists():
        raise keys.SseKeyError(f"{path} does not exist: there is no SSE master key to rotate")
    masters = keys.load_all(path)
    old = keys.load_current(path)
    old_id = keys.master_id(old)
    rows = _keks(cfg)
    plain: dict[str, bytes] = {}
    for row in rows:
        master = masters.get(row.master_id)
        if master is None:
            raise keys.SseKeyError(
                f"KEK {row.id} is wrapped by master {row.master_id}, whose file is missing"
            )
        plain[row.id] = keys.unwrap_kek(master, row.id, row.wrapped)
    new = keys.new_key()
    new_id = keys.master_id(new)
    kept = keys.keep_retired(path, old)
    pending = keys.keep_retired(path, new)
    msg = RewrapKeks(
        keks=[KekRow(r.id, keys.wrap_kek(new, r.id, plain[r.id]), new_id) for r in rows]
    )
    count = _rewrap(cfg, msg) if rows else 0
    keys.install_master(path, new)
    for side in (kept, pending):
        side.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return {"master_file": str(path), "old_master": old_id, "new_master": new_id, "keks": count}


def status(cfg: Config) -> dict[str, Any]:
    path = cfg.sse_master_path
    masters = keys.load_all(path)
    current = keys.master_id(keys.load_current(path)) if path.exists() else None
    rows = _keks(cfg)
    missing = sorted({r.master_id for r in rows} - masters.keys())
    return {
        "master_file": str(path),
        "master_present": path.exists(),
        "current_master": current,
        "masters_present": sorted(masters),
        "keks": len(rows),
        "missing_masters": missing,
    }


def run_sse_mode(cfg: Config, words: list[str], *, as_json: bool) -> int:
    action = words[0] if words else ""
    if action not in ACTIONS:
        print(f"seglake sse: ACTION must be one of {', '.join(ACTIONS)}", file=sys.stderr)
        return 2
    try:
        doc = rotate_master(cfg) if action == "rotate-master" else status(cfg)
    except (keys.SseKeyError, S3Error, OSError) as exc:
        print(f"seglake sse {action}: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    elif action == "rotate-master":
        print(
            f"SSE master rotated: {doc['old_master']} -> {doc['new_master']} "
            f"({doc['keks']} KEK(s) re-wrapped; no object data rewritten). "
            f"Back up {doc['master_file']} now: the old master no longer opens anything."
        )
    else:
        for k, v in doc.items():
            print(f"{k}: {v}")
    return 1 if action == "status" and doc["missing_masters"] else 0
