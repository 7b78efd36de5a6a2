"""Disk overhead per small object version, measured on disk (blocks, as ``du``
counts them), not as apparent size.

    .venv/bin/python -m benchmarks.disk_overhead --objects 20000 --size 100

Starts a real server in a temporary data dir beside the work tree (same
disk), PUTs ``--objects`` objects of ``--size`` bytes with ``--threads``
concurrent clients, stops the server (so the WAL is checkpointed as on any
clean stop), and reports the blocks of the whole data dir, of
``objects/`` and of ``meta.db`` (with its WAL), minus the object bytes
themselves, per version. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import apsw

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def blocks(path: Path) -> int:
    """Bytes of allocated blocks under ``path`` (``du -B1``), hard links once."""
    if path.is_file():
        return os.lstat(path).st_blocks * 512
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in [".", *names]:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def inodes(path: Path) -> int:
    return sum(1 + len(names) for _d, _dirs, names in os.walk(path))


def main(argv: list[str] | None = None) -> int:
    from tests.harness import SeglakeServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    parent = REPO_ROOT / ".bench-tmp"
    parent.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="disk-overhead-", dir=parent))
    data = tmp / "data"
    try:
        with SeglakeServer(data, frontends=2) as srv:
            s3 = srv.s3(max_pool_connections=args.threads)
            s3.create_bucket(Bucket="overhead")
            empty = blocks(data)
            errors: list[str] = []
            started = time.monotonic()

            def run(t: int) -> None:
                try:
                    for i in range(t, args.objects, args.threads):
                        body = (f"{i:012d}" * (args.size // 12 + 1)).encode()[: args.size]
                        s3.put_object(Bucket="overhead", Key=f"k/{i:08d}", Body=body)
                except Exception as exc:  # reported below
                    errors.append(repr(exc))

            threads = [threading.Thread(target=run, args=(t,)) for t in range(args.threads)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            elapsed = time.monotonic() - started
            if errors:
                print(f"errors: {errors[:3]}", file=sys.stderr)
                return 1
            assert srv.stop() == 0
        payload = args.objects * args.size
        total = blocks(data)
        objects = blocks(data / "objects")
        db = sum(blocks(p) for p in data.glob("meta.db*"))
        db_files = {p.name: blocks(p) for p in data.glob("meta.db*")}
        conn = apsw.Connection(str(data / "meta.db"), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            page_size = int(conn.execute("PRAGMA page_size").fetchall()[0][0])
            tables = {
                str(name): int(pages) * page_size
                for name, pages in conn.execute(
                    "SELECT name, count(*) FROM dbstat GROUP BY name ORDER BY 2 DESC"
                ).fetchall()
            }
        except apsw.SQLError:  # dbstat not compiled in
            tables = {}
        finally:
            conn.close()
        doc: dict[str, Any] = {
            "objects": args.objects,
            "object_size": args.size,
            "payload_bytes": payload,
            "data_dir_blocks": total,
            "empty_store_blocks": empty,
            "objects_dir_blocks": objects,
            "meta_db_blocks": db,
            "inodes": inodes(data),
            "overhead_per_version": round((total - empty - payload) / args.objects, 1),
            "objects_dir_overhead_per_version": round((objects - payload) / args.objects, 1),
            "meta_db_per_version": round(db / args.objects, 1),
            "meta_db_files": db_files,
            "meta_db_bytes_by_table_or_index": tables,
            "puts_per_s": round(args.objects / elapsed, 1),
        }
        print(json.dumps(doc, indent=2))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
