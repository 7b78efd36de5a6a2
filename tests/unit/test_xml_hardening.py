"""Every parser of an XML request body refuses DTDs outright (not only
entity definitions), external entities and entity bombs: one table of
hostile prologs, run against each parser."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from seglake.errors import S3Error
from seglake.protocol.xml_requests import (
    parse_complete,
    parse_delete,
    parse_versioning_configuration,
)

PROLOGS = {
    "plain-doctype": b"<!DOCTYPE x>\n",
    "internal-subset": b"<!DOCTYPE x [<!ELEMENT x ANY>]>\n",
    "entity": b'<!DOCTYPE x [<!ENTITY e "boom">]>\n',
    "laughs": b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n',
    "external": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n',
    "parameter": b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]>\n',
}

PARSERS: dict[str, tuple[Callable[[bytes], object], bytes]] = {
    "delete": (parse_delete, b"<Delete><Object><Key>k</Key></Object></Delete>"),
    "complete": (
        parse_complete,
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        b'<ETag>"0123456789abcdef0123456789abcdef"</ETag></Part></CompleteMultipartUpload>',
    ),
    "versioning": (
        parse_versioning_configuration,
        b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
    ),
}


@pytest.mark.parametrize("parser_name", sorted(PARSERS))
def test_document_without_prolog_parses(parser_name: str) -> None:
    parse, doc = PARSERS[parser_name]
    parse(doc)
    parse(b'<?xml version="1.0" encoding="UTF-8"?>\n' + doc)


@pytest.mark.parametrize("prolog_name", sorted(PROLOGS))
@pytest.mark.parametrize("parser_name", sorted(PARSERS))
def test_any_dtd_refused(parser_name: str, prolog_name: str) -> None:
    parse, doc = PARSERS[parser_name]
    with pytest.raises(S3Error) as info:
        parse(b'<?xml version="1.0"?>\n' + PROLOGS[prolog_name] + doc)
    assert info.value.code == "MalformedXML"
