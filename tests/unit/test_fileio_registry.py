"""The writer's file-operation registry matches the code both ways.

Every site name passed to ``seglake/writer/fileio.py`` is registered (an
unregistered one would also fail at run time), and every registered site is
used somewhere, so the fault tests' "100% of sites" is 100% of the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from seglake.writer import fileio

WRITER = Path(fileio.__file__).parent
SITE = re.compile(r"[a-z_]+\.[a-z_]+")


def _site_args(call: ast.Call) -> set[str]:
    return {
        a.value
        for a in [*call.args, *(k.value for k in call.keywords)]
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and SITE.fullmatch(a.value)
    }


def _used() -> set[str]:
    used: set[str] = set()
    for path in WRITER.glob("*.py"):
        tree = ast.parse(path.read_text())
        if path.name == "fileio.py":
            # SQLite's sites are named inside the recorder itself.
            used |= {
                n.value
                for n in ast.walk(tree)
                if isinstance(n, ast.Constant)
                and isinstance(n.value, str)
                and n.value.startswith("sqlite.")
                and SITE.fullmatch(n.value)
            }
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                via_fileio = (
                    isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name)
                    and f.value.id == "fileio"
                )
                if via_fileio or (isinstance(f, ast.Name) and f.id == "fsync_dir"):
                    used |= _site_args(node)
            elif isinstance(node, ast.FunctionDef) and node.name == "fsync_dir":
                used |= {
                    d.value
                    for d in node.args.defaults
                    if isinstance(d, ast.Constant) and isinstance(d.value, str)
                }
    return used


def test_every_site_used_is_registered() -> None:
    unknown = _used() - set(fileio.SITES)
    assert not unknown, f"unregistered sites in the writer: {sorted(unknown)}"


def test_every_registered_site_is_used() -> None:
    unused = set(fileio.SITES) - _used()
    assert not unused, f"registered but never used: {sorted(unused)}"


def test_fsync_and_write_sets() -> None:
    assert {"segment.fsync", "manifest_dir.fsync", "sqlite.sync"} <= fileio.FSYNC_SITES
    assert "segment.append" in fileio.WRITE_SITES
    assert not fileio.FSYNC_SITES & fileio.WRITE_SITES
