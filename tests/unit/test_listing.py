"""ListObjects pagination against a brute-force model of S3's rules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol import listing


@dataclass(frozen=True)
class E:
    key: str


def fetcher(keys: list[str], prefix: str):  # type: ignore[no-untyped-def]
    ordered = sorted(set(keys), key=lambda k: k.encode("utf-8"))

    def fetch(after: str) -> Iterator[E]:
        for k in ordered:
            if k.encode() > after.encode() and k.startswith(prefix):
                yield E(k)

    return fetch


def model(keys: list[str], prefix: str, delimiter: str) -> list[tuple[str, str]]:
    """Every entry S3 would list, in order: ("key"|"prefix", value)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for k in sorted(set(keys), key=lambda k: k.encode("utf-8")):
        if not k.startswith(prefix):
            continue
        idx = k.find(delimiter, len(prefix)) if delimiter else -1
        if idx >= 0:
            cp = k[: idx + len(delimiter)]
            if cp not in seen:
                seen.add(cp)
                out.append(("prefix", cp))
        else:
            out.append(("key", k))
    return out


def walk(keys: list[str], prefix: str, delimiter: str, max_keys: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    after = ""
    for _ in range(10_000):
        page = listing.paginate(
            fetcher(keys, prefix), prefix=prefix, delimiter=delimiter,
            after=listing.skip_cursor(after, delimiter, prefix), max_keys=max_keys,
        )  # fmt: skip
        entries = [("key", e.key) for e in page.contents] + [
            ("prefix", p) for p in page.common_prefixes
        ]
        got += sorted(entries, key=lambda x: x[1].encode())
        assert len(entries) <= max_keys
        if not page.is_truncated:
            return got
        assert page.last is not None
        after = listing.decode_token(listing.encode_token(page.last))
    raise AssertionError("pagination did not terminate")


KEYS = [
    "/",
    "/a",
    "a",
    "a/b",
    "a/c/d",
    "a/c/e",
    "b",
    "b/",
    "c//d",
    "dé/x",
    "d/1",
    "d/2",
    "z",
    "💡/k",
]


@pytest.mark.parametrize("prefix", ["", "/", "a", "a/", "a/c/", "d", "nothing"])
@pytest.mark.parametrize("delimiter", ["", "/", "//", "c"])
@pytest.mark.parametrize("max_keys", [1, 2, 3, 1000])
def test_table(prefix: str, delimiter: str, max_keys: int) -> None:
    assert walk(KEYS, prefix, delimiter, max_keys) == model(KEYS, prefix, delimiter)


key_chars = st.sampled_from(list("ab/-é💡"))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(key_chars, min_size=1, max_size=6), max_size=30),
    st.text(key_chars, max_size=2),
    st.sampled_from(["", "/", "-", "b/"]),
    st.integers(min_value=1, max_value=5),
)
def test_property(keys: list[str], prefix: str, delimiter: str, max_keys: int) -> None:
    assert walk(keys, prefix, delimiter, max_keys) == model(keys, prefix, delimiter)


def test_max_keys_zero_is_empty() -> None:
    page = listing.paginate(fetcher(KEYS, ""), prefix="", delimiter="", after="", max_keys=0)
    assert page.contents == [] and page.common_prefixes == [] and not page.is_truncated


@pytest.mark.parametrize("raw,expected", [(None, 1000), ("0", 0), ("7", 7), ("5000", 1000)])
def test_parse_max_keys(raw: str | None, expected: int) -> None:
    assert listing.parse_max_keys(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "x", "1.5", ""])
def test_parse_max_keys_invalid(raw: str) -> None:
    with pytest.raises(S3Error) as e:
        listing.parse_max_keys(raw)
    assert e.value.code == "InvalidArgument"


@pytest.mark.parametrize("token", ["!!!", "\u00ff", "gA"])
def test_bad_token(token: str) -> None:
    with pytest.raises(S3Error) as e:
        listing.decode_token(token)
    assert e.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("query", "shown", "echo"),
    [
        ({}, "a b/é", []),
        ({"prefix": "p", "delimiter": "/"}, "a b/é", ["<Delimiter>/</Delimiter>"]),
        (
            {"delimiter": " ", "encoding-type": "url"},
            "a%20b/%C3%A9",
            ["<Delimiter>%20</Delimiter>", "<EncodingType>url</EncodingType>"],
        ),
    ],
)
def test_list_query(query: dict[str, str], shown: str, echo: list[str]) -> None:
    lq = listing.ListQuery.parse(query.get)
    assert (lq.prefix, lq.delimiter) == (query.get("prefix", ""), query.get("delimiter", ""))
    assert lq.show("a b/é") == shown
    assert lq.echo_xml() == echo
    assert lq.common_prefixes_xml(["a b/"]) == [
        f"<CommonPrefixes><Prefix>{lq.show('a b/')}</Prefix></CommonPrefixes>"
    ]


def test_list_query_refuses_unknown_encoding() -> None:
    with pytest.raises(S3Error) as e:
        listing.ListQuery.parse({"encoding-type": "base64"}.get)
    assert e.value.code == "InvalidArgument"
