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
PREFIX = re.compile(r"[a-z_]+")
# Helpers that take a site prefix and use ``<prefix>.<op>`` sites.
PREFIXED: dict[str, tuple[str, ...]] = {}


def _site_args(call: ast.Call) -> set[str]:
    return {
        a.value
        for a in [*call.args, *(k.value for k in call.keywords)]
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and SITE.fullmatch(a.value)
    }


def _prefixed(call: ast.Call, ops: tuple[str, ...]) -> set[str]:
    return {
        f"{a.value}.{op}"
        for a in call.args
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and PREFIX.fullmatch(a.value)
        for op in ops
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
                if via_fileio and isinstance(f, ast.Attribute) and f.attr in PREFIXED:
                    used |= _prefixed(node, PREFIXED[f.attr])
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
    assert {"segment.fsync", "seal.fsync", "sqlite.sync"} <= fileio.FSYNC_SITES
    assert "segment.append" in fileio.WRITE_SITES
    assert not fileio.FSYNC_SITES & fileio.WRITE_SITES


# Calls that change the data dir and so must go through fileio in the writer.
RAW_OS = {"fsync", "write", "pwrite", "pwritev", "replace", "rename", "unlink", "remove"}
RAW_OS |= {"mkdir", "makedirs", "ftruncate", "truncate", "rmdir"}
RAW_PATH = {"unlink", "mkdir", "write_bytes", "write_text", "rename", "touch", "rmdir"}
# Not data: the writer's socket file belongs to a running server; the two
# top directories are created at start-up and their parents fsynced right
# after by ``Writer._prepare_dirs`` on every start.
ALLOWED = {("main.py", "os.unlink"), ("main.py", ".mkdir()"), ("segments.py", ".mkdir()")}


def test_writer_changes_files_only_through_fileio() -> None:
    """No writer module but fileio calls ``os.fsync``/``os.replace``/...
    or ``Path.unlink``/``.mkdir``/...: such a call would have no failpoint,
    no EIO injection and no power-cut journal, and the fault tests could not
    see it."""
    raw: list[str] = []
    for path in sorted(WRITER.glob("*.py")):
        if path.name == "fileio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            f = node.func
            if isinstance(f.value, ast.Name) and f.value.id == "os" and f.attr in RAW_OS:
                what = f"os.{f.attr}"
                if (path.name, what) not in ALLOWED:
                    raw.append(f"{path.name}:{node.lineno} {what}")
            elif f.attr in RAW_PATH and not (
                isinstance(f.value, ast.Name) and f.value.id == "fileio"
            ):
                what = f".{f.attr}()"
                if (path.name, what) not in ALLOWED:
                    raw.append(f"{path.name}:{node.lineno} {what}")
    assert not raw, f"file changes outside fileio: {raw}"
