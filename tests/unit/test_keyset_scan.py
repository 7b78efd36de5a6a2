"""``meta.schema.keyset_scan``, the batch-by-key walk under every listing
query: the same rows whatever the batch size, in order, ending at the first
row out of range."""

from __future__ import annotations

import pytest

from seglake.meta.schema import keyset_scan

ROWS = ["a", "b/1", "b/2", "b/3", "c", "d"]


def walk(batch: int, start: str, prefix: str) -> tuple[list[str], list[str]]:
    asked: list[str] = []

    def batch_after(position: str) -> list[str]:
        asked.append(position)
        return [r for r in ROWS if r > position][:batch]

    got = keyset_scan(
        batch_after, start, batch=batch, position_of=lambda r: r,
        in_range=lambda r: r.startswith(prefix),
    )  # fmt: skip
    return list(got), asked


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 6, 100])
@pytest.mark.parametrize(
    ("start", "prefix", "want"),
    [
        ("", "", ROWS),
        ("b/1", "", ROWS[2:]),
        ("a", "b/", ["b/1", "b/2", "b/3"]),
        ("d", "", []),
        ("", "z", []),
    ],
)
def test_same_rows_for_every_batch_size(
    batch: int, start: str, prefix: str, want: list[str]
) -> None:
    assert walk(batch, start, prefix)[0] == want


def test_resumes_after_the_last_row_and_stops_at_a_short_batch() -> None:
    assert walk(2, "", "")[1] == ["", "b/1", "b/3", "d"]
    assert walk(4, "", "")[1] == ["", "b/3"]
    # Out of range: no further batch is asked for.
    assert walk(1, "a", "b/")[1] == ["a", "b/1", "b/2", "b/3"]
