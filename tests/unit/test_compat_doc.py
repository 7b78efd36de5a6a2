"""docs/compatibility.md is exactly what the generator produces (cannot drift)."""

from __future__ import annotations

from seglake.frontend.compat import DOC_PATH, operation_rows, render, supported_operations
from seglake.protocol.endpoints import ENDPOINTS


def test_committed_doc_matches_generator() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/compatibility.md is out of date: run `make docs`"
    )


def test_every_endpoint_has_one_row() -> None:
    names = [r[0] for r in operation_rows()]
    assert sorted(names) == sorted(e.name for e in ENDPOINTS)


def test_supported_operations_are_routed() -> None:
    routed = {r[0] for r in operation_rows()}
    assert supported_operations() <= routed
    assert {"PutObject", "GetObject", "ListBuckets"} <= supported_operations()


def test_rows_say_yes_exactly_for_handled_operations() -> None:
    text = render()
    supported = supported_operations()
    for op, method, _target, _sel in operation_rows():
        expected = "yes" if op in supported else "no"
        assert f"| {op} | {expected} | {method} |" in text
