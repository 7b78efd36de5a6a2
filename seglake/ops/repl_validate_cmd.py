"""``seglake -mode repl-validate -data-dir A -repl-other B`` (or
``-repl-remote URL -repl-other URL2``; ``--deep`` also reads every chunk):
compare two sites' replicated state (``seglake/repl/validate.py``).

Side A is ``-repl-remote`` when given (one URL), else ``-data-dir``; side B
is ``-repl-other``, a data dir or an ``http(s)://`` URL. Endpoints are read
through their snapshot with ``-repl-access-key/-repl-secret-key`` (the key
needs ReplicationRead). Data dirs are opened read-only: a server running on
them is neither locked out nor disturbed.

Output: every difference on its own line on stdout, and which store A and B
are on stderr; exit 1 on any difference, 0 (with a one-line summary) when
identical, 2 when a side cannot be read or the command line is wrong.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.protocol.repl_wire import WireError
from seglake.repl.client import ReplClient, ReplHTTPError
from seglake.repl.validate import StoreState, compare, read_data_dir, read_endpoint, summary


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _read(cfg: Config, where: str, label: str, deep: bool) -> StoreState:
    if not _is_url(where):
        return read_data_dir(Path(where), label, deep=deep)

    async def main() -> StoreState:
        client = ReplClient(where.rstrip("/"), access_key=cfg.repl_access_key,
                            secret_key=cfg.repl_secret_key, region=cfg.repl_region,
                            ca_file=cfg.repl_ca_path)  # fmt: skip
        try:
            return await read_endpoint(client, label, deep=deep)
        finally:
            await client.aclose()

    return trio.run(main)


def repl_validate_cmd(cfg: Config, *, deep: bool, as_json: bool) -> int:
    remotes = cfg.repl_remotes
    if len(remotes) > 1:
        print("seglake: repl-validate compares two sides: give at most one -repl-remote",
              file=sys.stderr)  # fmt: skip
        return 2
    if not cfg.repl_other:
        print("seglake: repl-validate needs -repl-other (a data dir or an S3 URL)", file=sys.stderr)
        return 2
    first = remotes[0] if remotes else str(cfg.root)
    second = cfg.repl_other
    sides: list[StoreState] = []
    for where, label in ((first, "A"), (second, "B")):
        try:
            sides.append(_read(cfg, where, label, deep))
        except ReplHTTPError as exc:
            print(f"seglake: repl-validate: {label} {where}: {exc.status} {exc.code}: "
                  f"{exc.message}", file=sys.stderr)  # fmt: skip
            return 2
        except (OSError, RuntimeError, WireError, FormatError, S3Error, ValueError) as exc:
            print(f"seglake: repl-validate: {label} {where}: {exc}", file=sys.stderr)
            return 2
    a, b = sides
    lines = compare(a, b)
    if as_json:
        print(json.dumps({
            "a": {"where": first, "site": a.site}, "b": {"where": second, "site": b.site},
            "identical": not lines, "differences": lines,
            "summary": summary(a, b, deep=deep) if not lines else None,
        }, indent=2))  # fmt: skip
        return 1 if lines else 0
    print(f"A = {first} (site {a.site or '?'})", file=sys.stderr)
    print(f"B = {second} (site {b.site or '?'})", file=sys.stderr)
    if not lines:
        print(summary(a, b, deep=deep))
        return 0
    for line in lines:
        print(line)
    print(f"repl-validate: {len(lines)} differences", file=sys.stderr)
    return 1
