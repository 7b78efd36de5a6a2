"""ListBuckets paging: query parsing and pages, table-driven."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.protocol.bucket_listing import (
    ListBucketsQuery,
    decode_token,
    encode_token,
    page,
    parse_query,
)

NAMES = ["delta", "alpha", "beta-2", "beta-1", "gamma"]  # any order in


def q(**kw: object) -> ListBucketsQuery:
    base: dict[str, object] = {"max_buckets": None, "after": "", "prefix": "", "region": None}
    base.update(kw)
    return ListBucketsQuery(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "names", "token_after"),
    [
        (q(), ["alpha", "beta-1", "beta-2", "delta", "gamma"], None),
        (q(max_buckets=2), ["alpha", "beta-1"], "beta-1"),
        (q(max_buckets=2, after="beta-1"), ["beta-2", "delta"], "delta"),
        (q(max_buckets=2, after="delta"), ["gamma"], None),
        (q(max_buckets=5), ["alpha", "beta-1", "beta-2", "delta", "gamma"], None),
        (q(prefix="beta"), ["beta-1", "beta-2"], None),
        (q(prefix="beta", max_buckets=1), ["beta-1"], "beta-1"),
        (q(prefix="zzz"), [], None),
        # a token naming a bucket deleted since is still a position
        (q(after="c", max_buckets=10), ["delta", "gamma"], None),
        (q(region="us-east-1"), ["alpha", "beta-1", "beta-2", "delta", "gamma"], None),
        (q(region="eu-west-1"), [], None),
    ],
)
def test_pages(query: ListBucketsQuery, names: list[str], token_after: str | None) -> None:
    got = page(NAMES, query, "us-east-1")
    assert got.names == names
    assert got.next_token == (None if token_after is None else encode_token(token_after))


def test_walking_every_page_lists_each_name_once() -> None:
    names = [f"b{i:03d}" for i in range(37)]
    seen: list[str] = []
    token: str | None = None
    for _ in range(20):
        query = parse_query(
            {"max-buckets": ["5"], **({"continuation-token": [token]} if token else {})}
        )
        got = page(names, query, "us-east-1")
        seen += got.names
        token = got.next_token
        if token is None:
            break
    assert seen == names


@pytest.mark.parametrize(
    "query",
    [
        {"max-buckets": ["0"]},
        {"max-buckets": ["10001"]},
        {"max-buckets": ["-1"]},
        {"max-buckets": ["ten"]},
        {"max-buckets": [""]},
        {"continuation-token": ["!!!not-base64"]},
        {"continuation-token": [""]},
        {"continuation-token": ["%%%"]},  # no base64 letter at all
        {"continuation-token": ["é"]},
        {"continuation-token": ["A" * 200]},
        {"continuation-token": ["_w=="]},  # decodes, but not to UTF-8
    ],
)
def test_bad_queries_are_invalid_argument(query: dict[str, list[str]]) -> None:
    with pytest.raises(S3Error) as exc:
        parse_query(query)
    assert exc.value.code == "InvalidArgument"


def test_token_round_trip() -> None:
    for name in ["a.b-c", "x" * 63, "bucket.with.dots"]:
        assert decode_token(encode_token(name)) == name
    parsed = parse_query({"max-buckets": ["10000"], "prefix": ["p"], "bucket-region": ["r"]})
    assert parsed == ListBucketsQuery(10000, "", "p", "r")
