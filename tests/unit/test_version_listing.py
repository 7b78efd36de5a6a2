"""The pure cores of versioning: ListObjectVersions pagination and the
PutBucketVersioning XML parser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.version_listing import (
    check_markers,
    is_version_id,
    paginate_versions,
    version_created_ns,
)
from seglake.protocol.xml_requests import parse_versioning_configuration
from seglake.writer.ops import VersionClock


@dataclass(frozen=True)
class Entry:
    key: str
    version_id: str
    created_ns: int


def make_fetch(entries: list[Entry], prefix: str) -> object:
    ordered = sorted(entries, key=lambda e: (e.key.encode(), -e.created_ns))

    def fetch(after_key: str, below: int | None) -> Iterator[Entry]:
        for e in ordered:
            if not e.key.startswith(prefix):
                continue
            if e.key.encode() > after_key.encode() or (
                below is not None and e.key == after_key and e.created_ns < below
            ):
                yield e

    return fetch


def reference(entries: list[Entry], prefix: str, delimiter: str) -> list[tuple[str, str | None]]:
    """Every entry of a full listing: (key, version id) or (common prefix, None)."""
    ordered = sorted(entries, key=lambda e: (e.key.encode(), -e.created_ns))
    out: list[tuple[str, str | None]] = []
    for e in ordered:
        if not e.key.startswith(prefix):
            continue
        idx = e.key.find(delimiter, len(prefix)) if delimiter else -1
        if idx >= 0:
            cp = e.key[: idx + len(delimiter)]
            if (cp, None) not in out:
                out.append((cp, None))
        else:
            out.append((e.key, e.version_id))
    return out


def walk(
    entries: list[Entry], prefix: str, delimiter: str, max_keys: int
) -> list[tuple[str, str | None]]:
    fetch = make_fetch(entries, prefix)
    by_id = {e.version_id: e.created_ns for e in entries}
    ref = reference(entries, prefix, delimiter)
    got: list[tuple[str, str | None]] = []
    key_marker, below = "", None
    for _ in range(1000):
        page = paginate_versions(
            fetch,  # type: ignore[arg-type]
            prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            below_ns=below, max_keys=max_keys,
        )  # fmt: skip
        assert len(page.entries) + len(page.common_prefixes) <= max_keys
        # Within a page, entries and prefixes interleave in key order.
        items = [(e.key, e.version_id) for e in page.entries]
        items += [(cp, None) for cp in page.common_prefixes]
        got += sorted(items, key=ref.index)
        if not page.is_truncated:
            assert page.next_key is None
            return got
        assert page.next_key is not None
        key_marker = page.next_key
        below = by_id[page.next_version_id] if page.next_version_id else None
    raise AssertionError("pagination did not end")


KEYS = ["a", "a/b", "a/c/d", "ab", "b/", "b/x", "é", "z"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(st.sampled_from(KEYS), max_size=25),
    st.sampled_from(["", "a", "b/", "a/"]),
    st.sampled_from(["", "/"]),
    st.integers(1, 6),
)
def test_pages_cover_the_listing_exactly_once(
    keys: list[str], prefix: str, delimiter: str, max_keys: int
) -> None:
    entries = [Entry(k, f"v{i:03d}", 1000 + i) for i, k in enumerate(keys)]
    assert walk(entries, prefix, delimiter, max_keys) == reference(entries, prefix, delimiter)


def test_max_keys_zero_is_an_empty_untruncated_page() -> None:
    entries = [Entry("a", "v1", 1)]
    page = paginate_versions(
        make_fetch(entries, ""),  # type: ignore[arg-type]
        prefix="", delimiter="", key_marker="", below_ns=None, max_keys=0,
    )  # fmt: skip
    assert page.entries == [] and not page.is_truncated


def test_version_ids_carry_their_clock() -> None:
    ns = 1_700_000_000_123_456_789
    vid = VersionClock.uid_for(ns)
    assert is_version_id(vid) and version_created_ns(vid) == ns
    assert is_version_id("null") and version_created_ns("null") is None
    for bad in ("", "nul", "0" * 23, "G" * 24, "0" * 25):
        assert not is_version_id(bad)


@pytest.mark.parametrize(
    ("key_marker", "version_marker", "ok"),
    [
        (None, None, True),
        ("k", None, True),
        ("k", "null", True),
        ("k", "0" * 24, True),
        ("", "0" * 24, False),
        (None, "null", False),
        ("k", "bogus", False),
    ],
)
def test_marker_rules(key_marker: str | None, version_marker: str | None, ok: bool) -> None:
    if ok:
        check_markers(key_marker, version_marker)
    else:
        with pytest.raises(S3Error) as exc:
            check_markers(key_marker, version_marker)
        assert exc.value.code == "InvalidArgument"


NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
PARSE_CASES = [
    (f"<VersioningConfiguration {NS}><Status>Enabled</Status></VersioningConfiguration>",
     ("Enabled", None)),
    ("<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>",
     ("Suspended", None)),
    ("<VersioningConfiguration><Status> Suspended </Status>"
     "<MfaDelete>Disabled</MfaDelete></VersioningConfiguration>", ("Suspended", "Disabled")),
    ("<VersioningConfiguration/>", (None, None)),
    ("<VersioningConfiguration><Status>Bogus</Status></VersioningConfiguration>",
     ("Bogus", None)),
    ("", "MalformedXML"),
    ("   ", "MalformedXML"),
    ("<VersioningConfiguration>", "MalformedXML"),
    ("<Versioning><Status>Enabled</Status></Versioning>", "MalformedXML"),
    ('<VersioningConfiguration xmlns="urn:other"><Status>Enabled</Status>'
     "</VersioningConfiguration>", "MalformedXML"),
    ("<VersioningConfiguration><Status>Enabled</Status><X/></VersioningConfiguration>",
     "MalformedXML"),
    ("<VersioningConfiguration><Status><A/></Status></VersioningConfiguration>", "MalformedXML"),
    ("<VersioningConfiguration><Status>Enabled</Status><Status>Suspended</Status>"
     "</VersioningConfiguration>", "MalformedXML"),
    ('<!DOCTYPE v [<!ENTITY e "Enabled">]><VersioningConfiguration><Status>&e;</Status>'
     "</VersioningConfiguration>", "MalformedXML"),
    ("<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>trailing",
     "MalformedXML"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "want"), PARSE_CASES)
def test_parse_versioning_configuration(body: str, want: object) -> None:
    if isinstance(want, str):
        with pytest.raises(S3Error) as exc:
            parse_versioning_configuration(body.encode())
        assert exc.value.code == want
    else:
        assert parse_versioning_configuration(body.encode()) == want
