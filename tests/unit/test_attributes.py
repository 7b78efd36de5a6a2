"""GetObjectAttributes request headers and response body (seglake/protocol/attributes.py).

The body is parsed back with ElementTree and with botocore's own response
parser for the operation, so what a client sees is what is checked.
"""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET
from typing import Any

import botocore.session
import pytest
from botocore.parsers import RestXMLParser

from seglake.errors import S3Error
from seglake.protocol.attributes import (
    ATTRIBUTES,
    MAX_PARTS,
    ObjectFacts,
    attributes_document,
    parse_attributes,
    parse_int_header,
)

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_MODEL = botocore.session.get_session().get_service_model("s3")


def boto_parse(body: bytes) -> dict[str, Any]:
    """The dict boto3's get_object_attributes would return for this body."""
    shape = _MODEL.operation_model("GetObjectAttributes").output_shape
    response = {"body": body, "headers": {}, "status_code": 200}
    parsed: dict[str, Any] = RestXMLParser().parse(response, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def crc32_raw(n: int) -> bytes:
    return struct.pack(">I", n)


SINGLE = ObjectFacts(
    etag="9e107d9d372bb6826bd81d3542a419d6", size=43,
    checksums={"CRC32": "QUFBQQ=="}, checksum_type="FULL_OBJECT",
)  # fmt: skip

PARTS = 2500
MULTI = ObjectFacts(
    etag="0123456789abcdef0123456789abcdef-2500", size=PARTS * 7 - 3,
    checksums={"CRC32": base64.b64encode(crc32_raw(7)).decode() + f"-{PARTS}"},
    checksum_type="COMPOSITE",
    part_sizes=tuple([7] * (PARTS - 1) + [4]),
    part_checksums=b"".join(crc32_raw(i) for i in range(1, PARTS + 1)),
    part_algorithm="CRC32", part_digest_size=4,
)  # fmt: skip


# ---- headers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("ETag", {"ETag"}),
        ("ETag,ObjectSize", {"ETag", "ObjectSize"}),
        (" ETag , Checksum ,ObjectParts,StorageClass,ObjectSize ", set(ATTRIBUTES)),
        ("ETag,ETag", {"ETag"}),
    ],
)
def test_parse_attributes(value: str, want: set[str]) -> None:
    assert parse_attributes(value) == want


@pytest.mark.parametrize("value", [None, "", " , ", "etag", "ETag,Size", "Owner"])
def test_parse_attributes_refused(value: str | None) -> None:
    with pytest.raises(S3Error) as exc:
        parse_attributes(value)
    assert exc.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("value", "want"), [(None, 17), ("0", 0), ("1000", 1000), (" 5 ", 5), ("2147483647", 2**31 - 1)]
)
def test_parse_int_header(value: str | None, want: int) -> None:
    assert parse_int_header(value, "x-amz-max-parts", 17) == want


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "", "2147483648", "٣"])
def test_parse_int_header_refused(value: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_int_header(value, "x-amz-max-parts", 17)
    assert exc.value.code == "InvalidArgument"


# ---- body ------------------------------------------------------------------------


def test_only_the_wanted_attributes_in_schema_order() -> None:
    body = attributes_document(SINGLE, frozenset({"ObjectSize", "ETag"}))
    root = ET.fromstring(body)
    assert root.tag == NS + "GetObjectAttributesResponse"
    assert [c.tag for c in root] == [NS + "ETag", NS + "ObjectSize"]
    assert boto_parse(body) == {"ETag": SINGLE.etag, "ObjectSize": 43}


def test_single_part_object() -> None:
    body = attributes_document(SINGLE, frozenset(ATTRIBUTES))
    assert boto_parse(body) == {
        "ETag": SINGLE.etag,  # unquoted
        "Checksum": {"ChecksumCRC32": "QUFBQQ==", "ChecksumType": "FULL_OBJECT"},
        "StorageClass": "STANDARD",
        "ObjectSize": 43,
    }  # no ObjectParts: the object was not uploaded in parts


def test_no_checksum_no_checksum_element() -> None:
    facts = ObjectFacts(etag='"abc"', size=0, checksums={}, checksum_type=None)
    assert boto_parse(attributes_document(facts, frozenset(ATTRIBUTES))) == {
        "ETag": "abc", "StorageClass": "STANDARD", "ObjectSize": 0,
    }  # fmt: skip


def test_multipart_first_page() -> None:
    got = boto_parse(attributes_document(MULTI, frozenset({"Checksum", "ObjectParts"})))
    # The COMPOSITE value loses its -N suffix here; the type says what it is.
    assert got["Checksum"] == {
        "ChecksumCRC32": base64.b64encode(crc32_raw(7)).decode(), "ChecksumType": "COMPOSITE",
    }  # fmt: skip
    parts = got["ObjectParts"]
    assert parts["TotalPartsCount"] == PARTS
    assert parts["PartNumberMarker"] == 0 and parts["NextPartNumberMarker"] == 1000
    assert parts["MaxParts"] == 1000 and parts["IsTruncated"] is True
    assert len(parts["Parts"]) == 1000
    assert parts["Parts"][0] == {
        "PartNumber": 1, "Size": 7, "ChecksumCRC32": base64.b64encode(crc32_raw(1)).decode(),
    }  # fmt: skip
    assert parts["Parts"][-1]["PartNumber"] == 1000


def test_multipart_pages_cover_every_part_once() -> None:
    seen: list[dict[str, Any]] = []
    marker, pages = 0, 0
    while True:
        got = boto_parse(
            attributes_document(MULTI, frozenset({"ObjectParts"}), max_parts=300, marker=marker)
        )["ObjectParts"]
        pages += 1
        assert got["PartNumberMarker"] == marker and got["MaxParts"] == 300
        seen += got["Parts"]
        if not got["IsTruncated"]:
            break
        marker = got["NextPartNumberMarker"]
    assert pages == 9  # 2500 / 300, rounded up
    assert [p["PartNumber"] for p in seen] == list(range(1, PARTS + 1))
    assert seen[-1] == {
        "PartNumber": PARTS, "Size": 4, "ChecksumCRC32": base64.b64encode(crc32_raw(PARTS)).decode(),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("max_parts", "marker", "numbers", "truncated"),
    [
        (5000, 0, (1, 1000), True),  # capped at 1000
        (0, 0, None, True),
        (10, 2495, (2496, 2500), False),
        (10, 2500, None, False),
        (10, 99999, None, False),
    ],
)
def test_page_edges(
    max_parts: int, marker: int, numbers: tuple[int, int] | None, truncated: bool
) -> None:
    got = boto_parse(
        attributes_document(MULTI, frozenset({"ObjectParts"}), max_parts=max_parts, marker=marker)
    )["ObjectParts"]
    assert got["MaxParts"] == min(max_parts, MAX_PARTS)
    assert got["IsTruncated"] is truncated
    if numbers is None:
        assert "Parts" not in got and "NextPartNumberMarker" not in got
    else:
        listed = [p["PartNumber"] for p in got["Parts"]]
        assert listed == list(range(numbers[0], numbers[1] + 1))
        assert got["NextPartNumberMarker"] == numbers[1]


def test_multipart_without_checksum_gives_only_the_count() -> None:
    facts = ObjectFacts(
        etag="x-3", size=30, checksums={}, checksum_type=None, part_sizes=(10, 10, 10)
    )
    got = boto_parse(attributes_document(facts, frozenset({"ObjectParts", "Checksum"})))
    assert got == {"ObjectParts": {"TotalPartsCount": 3}}


def test_part_checksums_of_the_wrong_length_are_not_listed() -> None:
    facts = ObjectFacts(
        etag="x-2", size=20, checksums={"CRC32": "AAAAAA==-2"}, checksum_type="COMPOSITE",
        part_sizes=(10, 10), part_checksums=b"\0" * 4, part_algorithm="CRC32",
        part_digest_size=4,
    )  # fmt: skip
    got = boto_parse(attributes_document(facts, frozenset({"ObjectParts"})))
    assert got == {"ObjectParts": {"TotalPartsCount": 2}}


def test_policy_actions() -> None:
    """s3:GetObjectAttributes, and with ?versionId also s3:GetObjectVersionAttributes;
    the ``ro`` shorthand grants both."""
    from seglake.protocol.endpoints import ENDPOINT_BY_NAME
    from seglake.protocol.policy import READ_ONLY_ACTIONS, VERSION_ACTIONS

    e = ENDPOINT_BY_NAME["GetObjectAttributes"]
    assert (e.method, e.subresource, e.actions) == ("GET", "attributes", ("GetObjectAttributes",))
    assert e.handler == "objects.get_object_attributes"
    assert VERSION_ACTIONS["GetObjectAttributes"] == "GetObjectVersionAttributes"
    assert {"GetObjectAttributes", "GetObjectVersionAttributes"} <= READ_ONLY_ACTIONS
