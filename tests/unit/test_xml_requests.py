"""The XML request-body parsers (``seglake/protocol/xml_requests.py``): one
table of cases, each body fed whole to its parser, with the value or the S3
error code it must give; then every good case again with S3's namespace
(same value) and with trailing garbage (``MalformedXML``)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from seglake.errors import S3Error
from seglake.protocol.conditions import DeleteConditions
from seglake.protocol.xml import S3_NS
from seglake.protocol.xml_requests import (
    MAX_COMPLETE_BODY_BYTES,
    MAX_DELETE_BODY_BYTES,
    MAX_DELETE_KEYS,
    MAX_VERSIONING_BODY_BYTES,
    DeleteRequest,
    ListedPart,
    parse_complete,
    parse_delete,
    parse_versioning_configuration,
)

PARSERS: dict[str, Callable[[bytes], object]] = {
    "Delete": parse_delete,
    "CompleteMultipartUpload": parse_complete,
    "VersioningConfiguration": parse_versioning_configuration,
}
SHA = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
LAUGHS = (
    '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
)
EXTERNAL = '<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>'


def doc(root: str, inner: str, attrs: str = "") -> str:
    return f"<{root}{attrs}>{inner}</{root}>"


def obj(key: str, version: str | None = None) -> str:
    v = "" if version is None else f"<VersionId>{version}</VersionId>"
    return f"<Object><Key>{key}</Key>{v}</Object>"


def part(n: object, etag: str = '"AbC"', extra: str = "") -> str:
    return f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>{extra}</Part>"


# (parser, body, value or error code)
CASES: list[tuple[str, str, object]] = [
    # ---- DeleteObjects
    ("Delete", doc("Delete", obj("k")), DeleteRequest(False, [("k", None)])),
    ("Delete", doc("Delete", "<Quiet> TRUE </Quiet>" + obj(" k ", "v1") + obj("j")),
     DeleteRequest(True, [(" k ", "v1"), ("j", None)])),
    ("Delete", doc("Delete", "<Quiet>false</Quiet>" + obj("a&amp;b")),
     DeleteRequest(False, [("a&b", None)])),
    ("Delete", doc("Delete", obj("k", "")), DeleteRequest(False, [("k", "")])),
    ("Delete", doc("Delete", ""), "MalformedXML"),
    ("Delete", doc("Delete", "<Quiet>true</Quiet>"), "MalformedXML"),
    ("Delete", doc("Delete", "<Quiet>yes</Quiet>" + obj("k")), "MalformedXML"),
    ("Delete", doc("Delete", "<Object></Object>"), "MalformedXML"),
    ("Delete", doc("Delete", obj("")), "MalformedXML"),
    ("Delete", doc("Delete", "<Object><Key>k</Key><Junk/></Object>"), "MalformedXML"),
    ("Delete", doc("Delete", obj("k") + "<Junk/>"), "MalformedXML"),
    ("Delete", doc("Delete", "<Object><Key>k</Key><ETag>x</ETag></Object>"),
     DeleteRequest(False, [("k", None)], {0: DeleteConditions(if_match="x")})),
    ("Delete", doc("Delete", obj("j") + "<Object><Key>k</Key><Size> 1 </Size></Object>"),
     DeleteRequest(False, [("j", None), ("k", None)], {1: DeleteConditions(size=1)})),
    ("Delete", doc("Delete", '<Object><Key>k</Key><VersionId>v</VersionId><ETag>"e"</ETag>'
                             "<LastModifiedTime>2024-05-06T07:08:09.750Z</LastModifiedTime>"
                             "<Size>0</Size></Object>"),
     DeleteRequest(False, [("k", "v")], {0: DeleteConditions('"e"', 1_714_979_289, 0)})),
    ("Delete", doc("Delete", "<Object><Key>k</Key><Size>-1</Size></Object>"), "MalformedXML"),
    ("Delete", doc("Delete", "<Object><Key>k</Key><Size>x</Size></Object>"), "MalformedXML"),
    ("Delete", doc("Delete", "<Object><Key>k</Key><LastModifiedTime>now</LastModifiedTime>"
                             "</Object>"), "MalformedXML"),
    ("Delete", doc("Delete", "<Object><Key>k</Key><ETag>a</ETag><ETag>b</ETag></Object>"),
     "MalformedXML"),
    ("Delete", doc("Delete", obj("k") * MAX_DELETE_KEYS),
     DeleteRequest(False, [("k", None)] * MAX_DELETE_KEYS)),
    ("Delete", doc("Delete", obj("k") * (MAX_DELETE_KEYS + 1)), "MalformedXML"),
    ("Delete", doc("Remove", obj("k")), "MalformedXML"),
    ("Delete", doc("Delete", obj("k")) + " " * MAX_DELETE_BODY_BYTES,
     "MaxMessageLengthExceeded"),
    # ---- CompleteMultipartUpload
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", part(1)),
     [ListedPart(1, "abc")]),
    ("CompleteMultipartUpload",
     doc("CompleteMultipartUpload", part(" 2 ", ' "x" ') + part(10000)),
     [ListedPart(2, "x"), ListedPart(10000, "abc")]),
    ("CompleteMultipartUpload",
     doc("CompleteMultipartUpload", part(1, extra=f"<ChecksumSHA256>{SHA}</ChecksumSHA256>"
                                               "<ChecksumType>FULL_OBJECT</ChecksumType>")),
     [ListedPart(1, "abc", {"SHA256": SHA})]),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", ""), "MalformedXML"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", "<Junk/>"), "MalformedXML"),
    ("CompleteMultipartUpload",
     doc("CompleteMultipartUpload", "<Part><PartNumber>1</PartNumber></Part>"), "MalformedXML"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", "<Part><ETag>e</ETag></Part>"),
     "MalformedXML"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", part("x")), "InvalidArgument"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", part(0)), "InvalidArgument"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", part(10001)), "InvalidArgument"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", part(123456)), "InvalidArgument"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", part(2) + part(1)),
     "InvalidPartOrder"),
    ("CompleteMultipartUpload", doc("CompleteMultipartUpload", part(1) + part(1)),
     "InvalidPartOrder"),
    ("CompleteMultipartUpload",
     doc("CompleteMultipartUpload", part(1, extra="<ChecksumMD4>AAAA</ChecksumMD4>")),
     "MalformedXML"),
    ("CompleteMultipartUpload",
     doc("CompleteMultipartUpload", part(1, extra="<ChecksumCRC32>short</ChecksumCRC32>")),
     "InvalidRequest"),
    ("CompleteMultipartUpload", doc("Complete", part(1)), "MalformedXML"),
    ("CompleteMultipartUpload", "x" * (MAX_COMPLETE_BODY_BYTES + 1),
     "MaxMessageLengthExceeded"),
    # ---- PutBucketVersioning
    ("VersioningConfiguration", doc("VersioningConfiguration", "<Status>Enabled</Status>"),
     ("Enabled", None)),
    ("VersioningConfiguration",
     doc("VersioningConfiguration", "<MfaDelete> Disabled </MfaDelete><Status>Odd</Status>"),
     ("Odd", "Disabled")),
    ("VersioningConfiguration", doc("VersioningConfiguration", ""), (None, None)),
    ("VersioningConfiguration",
     doc("VersioningConfiguration", "<Status>Enabled</Status><Status>Enabled</Status>"),
     "MalformedXML"),
    ("VersioningConfiguration", doc("VersioningConfiguration", "<Status><A/></Status>"),
     "MalformedXML"),
    ("VersioningConfiguration", doc("VersioningConfiguration", "<Other/>"), "MalformedXML"),
    ("VersioningConfiguration",
     doc("VersioningConfiguration", "<Status>Enabled</Status>", ' xmlns="urn:other"'),
     "MalformedXML"),
    ("VersioningConfiguration", doc("Versioning", "<Status>Enabled</Status>"), "MalformedXML"),
    ("VersioningConfiguration",
     doc("VersioningConfiguration", " " * MAX_VERSIONING_BODY_BYTES),
     "MaxMessageLengthExceeded"),
]  # fmt: skip

# Not one well-formed document, or one with a DTD: refused alike by every parser.
HOSTILE: dict[str, str] = {
    "empty": "",
    "blank": "  \n",
    "not-xml": "Enabled",
    "unclosed": "<{root}>",
    "mismatched": "<{root}></Other>",
    "two-roots": "<{root}/><{root}/>",
    "bad-encoding": '<?xml version="1.0" encoding="nope"?><{root}/>',
    "billion-laughs": LAUGHS + "<{root}>&c;</{root}>",
    "external-entity": EXTERNAL + "<{root}>&e;</{root}>",
    "bare-doctype": "<!DOCTYPE r><{root}/>",
    "undefined-entity": "<{root}>&e;</{root}>",
}


def run(parser: str, body: bytes) -> object:
    try:
        return PARSERS[parser](body)
    except S3Error as exc:
        return exc.code


@pytest.mark.parametrize(("parser", "body", "want"), CASES)
def test_case(parser: str, body: str, want: object) -> None:
    assert run(parser, body.encode()) == want


GOOD = [(parser, body, want) for parser, body, want in CASES if not isinstance(want, str)]


@pytest.mark.parametrize(("parser", "body", "want"), GOOD)
def test_good_case_in_s3_namespace_and_with_a_prolog(parser: str, body: str, want: object) -> None:
    namespaced = body.replace(f"<{parser}>", f'<{parser} xmlns="{S3_NS}">', 1)
    assert namespaced != body
    prolog = '<?xml version="1.0" encoding="UTF-8"?>\n'
    assert run(parser, (prolog + namespaced + "\n").encode()) == want


@pytest.mark.parametrize(("parser", "body", "want"), GOOD)
def test_good_case_with_trailing_garbage(parser: str, body: str, want: object) -> None:
    assert run(parser, (body + "<x/>").encode()) == "MalformedXML"
    assert run(parser, (body + "junk").encode()) == "MalformedXML"


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_hostile_body(parser: str, hostile: str) -> None:
    assert run(parser, HOSTILE[hostile].format(root=parser).encode()) == "MalformedXML"
