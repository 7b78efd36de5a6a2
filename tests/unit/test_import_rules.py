"""The architecture's import rules, checked on the source.

Every module under ``seglake/`` is parsed with ``ast``; every import counts,
at module level or lazy inside a function, under ``TYPE_CHECKING`` or not.
A "unit" is a package (``seglake/writer/``) or a top-level module
(``seglake/config.py``). The rules are written once, here, each with its
reason; ``docs/architecture.md`` shows the same map for readers. A new unit,
or a new arrow between units, fails until it is added to ``MAY_IMPORT``
deliberately.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "seglake"

# unit, the units it may import (imports within a unit are always allowed), why.
RULES: tuple[tuple[str, str, str], ...] = (
    ("units", "", "byte units that every layer uses, so they depend on nothing"),
    ("errors", "", "the S3 error table every layer raises from"),
    ("redaction", "", "pure rules for what never reaches a log"),
    ("logs", "redaction", "log set-up installs the redaction filter"),
    ("failpoints", "", "test-mode fault injection is hit from anywhere, so it imports nothing"),
    ("private_files", "", "file modes and the umask: plain os calls, nothing of ours"),
    ("lifecycle", "private_files",
     "a child process's orphan check and start-up (its config pipe, umask 077)"),
    ("aio", "errors", "small trio helpers that report S3 errors"),
    ("metrics", "",
     "pure counters, log histograms, report merging and the stats/Prometheus renderings: every "
     "process counts into them, so they depend on nothing"),
    ("format", "units",
     "on-disk codecs and data-dir names: the lowest layer that knows the store's rules; "
     "values such as limits are passed in, never read from the configuration"),
    ("protocol", "errors units",
     "sans-IO S3 cores (SigV4, aws-chunked, ranges, listing, policies, limits, CORS): "
     "bytes and strings in, decisions or S3 errors out"),
    ("config", "format protocol units",
     "one Config: its paths come from format.layout, its CORS settings are checked by "
     "protocol.cors"),
    ("config_doc", "config",
     "each setting's help line and the effective configuration with its sources"),
    ("meta", "errors format protocol units",
     "the SQLite schema and read queries; replication reads answer in the wire's types"),
    ("ipc", "errors format units",
     "framing and request channels: frames are bounded by the format's chunk size, refusals "
     "travel as S3 errors"),
    ("sse", "errors format private_files units",
     "SSE key levels, chunk sealing and encryption headers: pure code and the master key "
     "file, used by frontends (encrypt, decrypt) and the CLI (rotation); never by the writer"),
    ("auth", "errors format meta private_files protocol units",
     "API keys and their policies, read from meta.db and sealed with the master key"),
    ("locks", "config", "the data dir's flocks, found through Config's paths"),
    ("audit", "config errors format meta private_files units",
     "read-only checks (fsck, scrub) that the maintenance process and the CLI both run: they "
     "read files and meta.db and reach no process"),
    ("writer", "config errors failpoints format ipc lifecycle locks logs meta metrics protocol units",
     "the only process that writes data: it serves requests and never calls up into "
     "frontends, maintenance or the CLI"),
    ("frontend",
     "aio auth config errors format ipc lifecycle logs meta metrics protocol sse units",
     "frontends never write: they reach the writer through IPC messages only, never through "
     "its code"),
    ("expiry", "config errors ipc meta protocol units",
     "bucket lifecycle execution shared by the maintenance schedule and lifecycle-run: reads "
     "meta.db, plans with the pure rules, and sends re-checked mutations through a function its "
     "caller gives (it reaches no process itself)"),
    ("repl",
     "aio config errors failpoints format ipc logs meta metrics protocol units",
     "replication's moving parts (HTTP client, pull/push/bootstrap loops, repl-validate): they "
     "reach the writer through IPC messages or the function a caller gives, never its code"),
    ("maintenance",
     "audit config errors expiry failpoints ipc lifecycle logs meta metrics repl units",
     "the maintenance process relays to the writer over IPC; it imports neither the writer's "
     "code nor the operator CLI"),
    ("ops",
     "audit auth config errors expiry format ipc locks meta metrics private_files protocol "
     "repl sse units writer",
     "the operator CLI: a live server through the admin socket, an offline store only through "
     "the writer's public embedded API (ONLY_THROUGH)"),
    ("supervisor", "config ipc lifecycle locks logs metrics private_files units",
     "starts and watches the processes; it knows their module names, not their code"),
    ("cli", "config config_doc errors ops private_files supervisor units",
     "the command line parses flags and dispatches to ops/ or the supervisor"),
)  # fmt: skip
MAY_IMPORT: dict[str, tuple[frozenset[str], str]] = {
    unit: (frozenset(allowed.split()), why) for unit, allowed, why in RULES
}

# (importer unit, imported unit) -> the only modules of the imported unit
# the importer may name, and why.
ONLY_THROUGH: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    ("ops", "writer"): (
        frozenset({"seglake.writer", "seglake.writer.embedded"}),
        "offline commands run mutations through writer/embedded.py, the writer's public API, "
        "never through its internals (APPLY, BatchContext, RecordJournal, VersionClock...)",
    ),
}

# Modules a pure layer may not import: they do I/O or run an event loop.
IO_MODULES = frozenset(
    {"os", "trio", "anyio", "asyncio", "socket", "selectors", "select", "subprocess", "shutil",
     "fcntl", "mmap", "signal", "threading", "tempfile", "pathlib", "io", "apsw", "sqlite3"}
)  # fmt: skip
PURE: dict[str, tuple[frozenset[str], str]] = {
    "protocol": (frozenset(), "protocol cores are sans-IO: the ASGI layer does all I/O"),
    "format": (
        frozenset({"os", "pathlib"}),
        "codecs never open, write, rename or delete a file. pathlib builds names (layout.py); "
        "os is allowed only for reading an fd the caller opened (FORMAT_OS), so recovery, fsck, "
        "scrub and the frontend's reads share one validated record reader",
    ),
}
# What format/ may use of os: positional reads and read-ahead advice on an fd.
FORMAT_OS = frozenset({"pread", "preadv", "fstat", "posix_fadvise", "POSIX_FADV_SEQUENTIAL"})
# Path methods that touch the file system; format/ only builds paths.
PATH_IO = frozenset(
    {"open", "read_text", "read_bytes", "write_text", "write_bytes", "mkdir", "unlink",
     "iterdir", "glob", "rglob", "touch", "rmdir", "rename", "exists", "is_dir", "is_file"}
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (a seglake module, or an external top-level name)
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def imports_of(module: str, tree: ast.AST, known: Iterable[str]) -> list[Import]:
    """Every import in ``tree`` (lazy ones too), resolved to a module name:
    ``from seglake.writer import fileio`` names ``seglake.writer.fileio``."""
    known = set(known)
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(module, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(Import(module, sub if sub in known else base, node.lineno))
    return out


def import_graph() -> list[Import]:
    modules = all_modules()
    found: list[Import] = []
    for name, path in modules.items():
        found += imports_of(name, ast.parse(path.read_text(), str(path)), modules)
    return found


def check_arrows(imports: Iterable[Import]) -> list[str]:
    """Every import that breaks MAY_IMPORT or ONLY_THROUGH, as a message."""
    problems: list[str] = []
    for imp in sorted(set(imports), key=lambda i: (i.module, i.line, i.target)):
        if imp.target.split(".")[0] != "seglake" or imp.target == "seglake":
            continue
        src, dst = unit_of(imp.module), unit_of(imp.target)
        if src == dst:
            continue
        allowed, why = MAY_IMPORT.get(src, (frozenset(), "not in MAY_IMPORT"))
        where = f"{imp.module}:{imp.line} imports {imp.target}"
        if dst not in allowed:
            problems.append(f"{where}: {src}/ may not import {dst}/ ({why})")
            continue
        only = ONLY_THROUGH.get((src, dst))
        if only is not None and imp.target not in only[0]:
            problems.append(
                f"{where}: {src}/ reaches {dst}/ only through {sorted(only[0])} ({only[1]})"
            )
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _internal(imports: Iterable[Import]) -> list[Import]:
    return [i for i in imports if i.target.startswith("seglake.") and i.target != i.module]


# ---- the rules ------------------------------------------------------------------------


def test_every_unit_has_a_rule() -> None:
    units = {unit_of(m) for m in all_modules() if m != "seglake"}
    assert units - set(MAY_IMPORT) == set(), "place each new package in MAY_IMPORT"
    assert set(MAY_IMPORT) - units == set(), "a rule for a unit that no longer exists"


def test_imports_follow_the_layers() -> None:
    problems = check_arrows(import_graph())
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def test_no_cycles_between_units_or_modules() -> None:
    units: dict[str, set[str]] = defaultdict(set)
    modules: dict[str, set[str]] = defaultdict(set)
    for imp in _internal(import_graph()):
        modules[imp.module].add(imp.target)
        if unit_of(imp.module) != unit_of(imp.target):
            units[unit_of(imp.module)].add(unit_of(imp.target))
    # A cycle makes import order matter and hides which layer is below which.
    assert cycles(units) == [], "import cycles between packages"
    assert cycles(modules) == [], "import cycles between modules"


def test_the_rule_table_itself_has_no_cycle() -> None:
    edges = {unit: set(allowed) for unit, (allowed, _why) in MAY_IMPORT.items()}
    assert cycles(edges) == []


@pytest.mark.parametrize("unit", sorted(PURE))
def test_pure_layers_do_no_io(unit: str) -> None:
    allowed, why = PURE[unit]
    problems = [
        f"{i.module}:{i.line} imports {i.target} ({why})"
        for i in import_graph()
        if unit_of(i.module) == unit and i.target.split(".")[0] in IO_MODULES - allowed
    ]
    assert not problems, "\n".join(problems)


def test_format_uses_os_only_to_read_and_never_touches_files() -> None:
    problems: list[str] = []
    for name, path in all_modules().items():
        if unit_of(name) != "format":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "os" and node.attr not in FORMAT_OS
            ):  # fmt: skip
                problems.append(f"{name}:{node.lineno} uses os.{node.attr}")
            if isinstance(node, ast.Call):
                fn = node.func
                if isinstance(fn, ast.Name) and fn.id == "open":
                    problems.append(f"{name}:{node.lineno} calls open()")
                if isinstance(fn, ast.Attribute) and fn.attr in PATH_IO:
                    problems.append(f"{name}:{node.lineno} calls .{fn.attr}()")
                if (
                    isinstance(fn, ast.Name) and fn.id == "getattr" and len(node.args) >= 2
                    and isinstance(node.args[0], ast.Name) and node.args[0].id == "os"
                    and isinstance(node.args[1], ast.Constant)
                    and node.args[1].value not in FORMAT_OS
                ):  # fmt: skip
                    problems.append(f"{name}:{node.lineno} uses os.{node.args[1].value}")
    assert not problems, "\n".join(problems)


# ---- the checker sees what it must ---------------------------------------------------


def test_checker_sees_lazy_and_from_package_imports() -> None:
    source = (
        "from seglake.writer import ops\n"
        "def handler():\n"
        "    from seglake.writer.ops import BatchContext\n"
        "    import seglake.ops.gc\n"
    )
    known = {"seglake.writer", "seglake.writer.ops", "seglake.ops", "seglake.ops.gc"}
    found = imports_of("seglake.frontend.objects", ast.parse(source), known)
    assert [(i.target, i.line) for i in found] == [
        ("seglake.writer.ops", 1), ("seglake.writer.ops", 3), ("seglake.ops.gc", 4)
    ]  # fmt: skip
    problems = check_arrows(found)
    assert len(problems) == 3 and all("frontend/ may not import" in p for p in problems)


def test_checker_narrows_ops_to_the_embedded_writer() -> None:
    ok = Import("seglake.ops.gc", "seglake.writer.embedded", 1)
    internal = Import("seglake.ops.gc", "seglake.writer.mutations", 2)
    assert check_arrows([ok]) == []
    assert "only through" in check_arrows([internal])[0]


def test_cycle_finder() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
