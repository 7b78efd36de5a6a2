"""``seglake doctor [--fix-permissions]``: find, and on request repair, a
data dir that other local users can read.

Stores written before Seglake ran with umask 077 (or opened up by hand) have
0644 segments and a 0755 data dir. Reading the modes is always safe; the
repair only takes group and world bits away (``private_files.make_private``),
which no Seglake process depends on, so it runs on a live store as well as a
stopped one. A repair is recorded in ``ops_runs``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from seglake.config import Config
from seglake.ops.sse_cmd import status as sse_status
from seglake.private_files import exposed, make_private

# A terminal gets this many paths; --json gets them all.
SHOWN = 20


def sse_doc(cfg: Config) -> dict[str, Any]:
    """The SSE master key's state: the file to back up, and any master a KEK
    needs that is missing (its encrypted objects cannot be read)."""
    try:
        return sse_status(cfg)
    # doctor reports, never crashes: a master file or a database it cannot
    # read is itself the finding.
    except Exception as exc:
        return {"master_file": str(cfg.sse_master_path), "error": str(exc), "keks": None,
                "missing_masters": ["unreadable"]}  # fmt: skip


def _print_sse(sse: dict[str, Any]) -> None:
    if sse.get("error"):
        print(f"doctor: SSE master key: {sse['error']}")
    elif sse["missing_masters"]:
        print(
            f"doctor: SSE master key(s) {', '.join(sse['missing_masters'])} are missing "
            f"({sse['master_file']}): objects encrypted under them cannot be read; restore the "
            "file from a backup"
        )
    elif sse["keks"]:
        print(
            f"doctor: encrypted objects depend on {sse['master_file']}: keep a backup of it "
            "apart from the data (losing it loses them)"
        )


def add_doctor_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fix-permissions", action="store_true",
        help="doctor: take group and other access off every file and directory of the store",
    )  # fmt: skip


def doctor_cmd(cfg: Config, *, fix_permissions: bool, as_json: bool) -> int:
    if not cfg.root.is_dir():
        print(f"seglake: no data directory at {cfg.root}")
        return 2
    started = time.time_ns()
    sse = sse_doc(cfg)
    if not fix_permissions:
        found = exposed(cfg.root)
        doc: dict[str, Any] = {
            "exposed": [{"path": str(p), "mode": f"{m:04o}"} for p, m in found],
            "sse": sse,
        }
        if as_json:
            print(json.dumps(doc, indent=2))
            return 1 if found or sse["missing_masters"] else 0
        _print_sse(sse)
        if found:
            for p, m in found[:SHOWN]:
                print(f"{m:04o}  {p}")
            more = f" ({len(found) - SHOWN} not shown)" if len(found) > SHOWN else ""
            print(
                f"doctor: {len(found)} path(s) open to group or other users{more}; "
                "run `seglake doctor --fix-permissions`"
            )
        else:
            print(f"doctor: every path under {cfg.root} is private to its owner")
        return 1 if found or sse["missing_masters"] else 0
    from seglake.ops.toolbox import record

    changed = make_private(cfg.root)
    doc = {
        "fixed": [{"path": str(p), "from": f"{old:04o}", "to": f"{new:04o}"}
                  for p, old, new in changed],
    }  # fmt: skip
    left = exposed(cfg.root)
    doc["still_exposed"] = [str(p) for p, _ in left]
    recorded, note = (False, "nothing changed")
    if changed:
        recorded, note = record(
            cfg, "doctor", started, "ok" if not left else "errors", {"fixed": len(changed)}
        )
    doc["recorded"], doc["record_note"] = recorded, note
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"doctor: made {len(changed)} path(s) private to their owner; {note}")
        for p in doc["still_exposed"][:SHOWN]:
            print(f"still open (changed while we ran?): {p}")
    return 1 if left else 0
