"""The tagging parsers (seglake/protocol/tagging.py): the Tagging XML
document, the x-amz-tagging header and AWS's limits, table-driven."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.protocol.tagging import (
    MAX_BUCKET_TAGS,
    check_tags,
    parse_tagging,
    parse_tagging_header,
    stored_bucket_tags,
    tagging_header,
    tagging_xml,
)

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def doc(*tags: tuple[str, str], ns: str = "") -> bytes:
    inner = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in tags)
    return f"<Tagging {ns}><TagSet>{inner}</TagSet></Tagging>".encode()


GOOD_XML = [
    (doc(), []),
    (doc(("a", "1")), [("a", "1")]),
    (doc(("a", "1"), ns=NS), [("a", "1")]),
    (doc(("k", "")), [("k", "")]),
    (doc((" spaced ", " kept ")), [(" spaced ", " kept ")]),
    (doc(("&#65;b", "&#x4E2D;")), [("Ab", "中")]),  # character references decoded
    (doc(("B", "1"), ("b", "2")), [("B", "1"), ("b", "2")]),  # case-sensitive keys
    (doc(*[(f"k{i}", "v") for i in range(10)]), [(f"k{i}", "v") for i in range(10)]),
    (doc(("k" * 128, "v" * 256)), [("k" * 128, "v" * 256)]),
    (doc(("é" * 128, "中" * 256)), [("é" * 128, "中" * 256)]),  # characters, not bytes
    (b"<Tagging><TagSet><Tag><Key>k</Key><Value/></Tag></TagSet></Tagging>", [("k", "")]),
    (
        b"<?xml version='1.0' encoding='UTF-8'?>\n<Tagging>\n  <TagSet>\n    <Tag>"
        b"<Value>v</Value><Key>k</Key></Tag>\n  </TagSet>\n</Tagging>",
        [("k", "v")],
    ),
]


@pytest.mark.parametrize(("body", "want"), GOOD_XML)
def test_good_documents(body: bytes, want: list[tuple[str, str]]) -> None:
    assert parse_tagging(body) == want
    # What GET answers parses back to the same set.
    assert parse_tagging(tagging_xml(want)) == want


BAD_XML = [
    (b"", "MalformedXML"),
    (b"not xml", "MalformedXML"),
    (b"<Tagging>", "MalformedXML"),
    (b"<Tagging></Tagging>", "MalformedXML"),
    (b"<Tagging><TagSet/><TagSet/></Tagging>", "MalformedXML"),
    (b"<Other><TagSet/></Other>", "MalformedXML"),
    (b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>", "MalformedXML"),
    (b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>", "MalformedXML"),
    (
        b"<Tagging><TagSet><Tag><Key>a</Key><Key>b</Key><Value>v</Value></Tag></TagSet></Tagging>",
        "MalformedXML",
    ),
    (b"<Tagging><TagSet><Other/></TagSet></Tagging>", "MalformedXML"),
    (b"<Tagging><TagSet/><Extra/></Tagging>", "MalformedXML"),
    (b'<!DOCTYPE x [<!ENTITY a "b">]><Tagging><TagSet/></Tagging>', "MalformedXML"),
    (doc(*[(f"k{i}", "v") for i in range(11)]), "InvalidTag"),
    (doc(("k" * 129, "v")), "InvalidTag"),
    (doc(("k", "v" * 257)), "InvalidTag"),
    (doc(("", "v")), "InvalidTag"),
    (doc(("dup", "1"), ("dup", "2")), "InvalidTag"),
    (doc(("aws:created", "1")), "InvalidTag"),
    (doc(("&amp;lt;", "&lt;&gt;")), "InvalidTag"),  # decoded, then outside the pattern
    (b"<Tagging>" + b" " * 300_000 + b"<TagSet/></Tagging>", "MaxMessageLengthExceeded"),
]


@pytest.mark.parametrize(("body", "code"), BAD_XML)
def test_bad_documents(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as err:
        parse_tagging(body)
    assert err.value.code == code


def test_every_prefix_of_a_document_is_refused() -> None:
    body = doc(("a", "1"), ("b", "2"))
    for n in range(len(body)):
        with pytest.raises(S3Error):
            parse_tagging(body[:n])


def test_bucket_limit_is_50() -> None:
    fifty = [(f"k{i}", "v") for i in range(MAX_BUCKET_TAGS)]
    assert parse_tagging(doc(*fifty), limit=MAX_BUCKET_TAGS) == fifty
    with pytest.raises(S3Error) as err:
        parse_tagging(doc(*fifty, ("one", "more")), limit=MAX_BUCKET_TAGS)
    assert err.value.code == "InvalidTag"
    assert stored_bucket_tags(tagging_xml(fifty).decode()) == fifty
    assert stored_bucket_tags(None) is None


HEADERS = [
    ("", []),
    ("a=1", [("a", "1")]),
    ("a=1&b=2", [("a", "1"), ("b", "2")]),
    ("a", [("a", "")]),
    ("a=", [("a", "")]),
    ("c%20d=e%2Bf", [("c d", "e+f")]),
    ("k+1=v+2", [("k 1", "v 2")]),
    ("%C3%A9=%C3%BC%E4%B8%AD", [("é", "ü中")]),  # letters of any script
    ("a%3Ab%2Fc=x%3Dy%40z_-.+", [("a:b/c", "x=y@z_-. ")]),  # every allowed mark
    ("a=1&", [("a", "1")]),
]


@pytest.mark.parametrize(("value", "want"), HEADERS)
def test_header(value: str, want: list[tuple[str, str]]) -> None:
    assert parse_tagging_header(value) == want
    assert parse_tagging_header(tagging_header(want)) == want


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("a=1&a=2", "InvalidTag"),
        ("&".join(f"k{i}=v" for i in range(11)), "InvalidTag"),
        ("=v", "InvalidTag"),
        ("k=" + "v" * 257, "InvalidTag"),
        ("aws:x=1", "InvalidTag"),
        # Outside AWS's Tag pattern (letters, numbers, separators, _.:/=+-@).
        ("platform=metal%2Copenstack", "InvalidTag"),
        ("name=web%20(prod)", "InvalidTag"),
        ("price=%E2%82%AC5", "InvalidTag"),
        ("k%21=v", "InvalidTag"),
        ("k=line%0Abreak", "InvalidTag"),
        ("%FF=1", "InvalidArgument"),
        ("a=" + "x" * 70_000, "InvalidTag"),
    ],
)
def test_bad_headers(value: str, code: str) -> None:
    with pytest.raises(S3Error) as err:
        parse_tagging_header(value)
    assert err.value.code == code


def test_check_tags_keeps_order() -> None:
    pairs = [("z", "1"), ("a", "2")]
    assert check_tags(pairs) == pairs
