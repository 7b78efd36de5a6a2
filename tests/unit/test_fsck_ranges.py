"""fsck's chunk-range rule, one table of cases (no files involved)."""

from __future__ import annotations

import pytest

from seglake.audit.fsck import _chunk_problem, _Segment

SEGMENTS = {
    1: _Segment("OPEN", size_on_disk=1000, limit=1000),
    2: _Segment("SEALED", size_on_disk=2000, limit=1500),  # footer starts at 1500
    3: _Segment("OPEN", size_on_disk=None, limit=0),  # file missing
}

CASES = [
    # (segment, data offset, length, expected problem fragment or "" for fine)
    (1, 68, 100, ""),
    (1, 68, 932, ""),
    (1, 68, 933, "past the end of segment 1"),
    (1, 67, 10, "bad range"),
    (1, 100, 0, "bad range"),
    (2, 68, 1432, ""),
    (2, 68, 1433, "past the data end of sealed segment 2"),
    (2, 1900, 200, "past the end of segment 2"),
    (3, 68, 10, "file is missing"),
    (9, 68, 10, "not in the database"),
]


@pytest.mark.parametrize(("seg", "offset", "length", "expected"), CASES)
def test_chunk_problem(seg: int, offset: int, length: int, expected: str) -> None:
    problem = _chunk_problem(seg, offset, length, SEGMENTS)
    if expected:
        assert expected in problem
    else:
        assert problem == ""
