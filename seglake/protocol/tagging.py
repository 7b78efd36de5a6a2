"""Object and bucket tags (pure): the ``Tagging`` XML document, the
``x-amz-tagging`` header, AWS's limits, and the XML answered back.

Rules this file keeps (AWS S3's, as its API reference and the behaviour of
its SDKs state them):

- A tag set holds at most ``MAX_OBJECT_TAGS`` (10) tags on an object and
  ``MAX_BUCKET_TAGS`` (50) on a bucket. A key is 1..128 and a value 0..256
  Unicode characters (code points, not bytes). Keys are case-sensitive and
  unique within a set. Any of these broken is ``InvalidTag``, with a message
  naming what.
- Keys and values hold only letters, numbers and separators of any script
  (Unicode categories L, N, Z) and ``_ . : / = + - @``, the pattern of
  AWS's S3 ``Tag`` type; S3 answers ``InvalidTag`` for others (a comma or a
  parenthesis, say), and so does Seglake rather than keep what AWS refuses.
- A key starting with ``aws:`` is reserved for AWS and refused on every
  write (``InvalidTag``).
- The body of PutObjectTagging / PutBucketTagging is a ``Tagging`` document
  holding one ``TagSet`` of ``Tag`` elements, each with one ``Key`` and one
  ``Value``. Anything else (not XML, another root, an unknown element, a Tag
  without Key or Value, two TagSets) is ``MalformedXML``. Element text is
  kept exactly as sent (no stripping: a value may start with a space).
- ``x-amz-tagging`` (PutObject, CreateMultipartUpload, CopyObject with
  REPLACE) is a URL-encoded query string ``k1=v1&k2=v2``; ``k`` alone is a
  tag with an empty value. The same limits apply; a key given twice is
  ``InvalidTag``.
- A presigned POST's ``tagging`` form field is a ``Tagging`` XML document,
  as AWS's form takes it.
- Tag order is kept as given; GetObjectTagging answers it back in that
  order.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qsl, quote
from xml.etree.ElementTree import Element

from seglake.errors import S3Error
from seglake.protocol.xml import document, el
from seglake.protocol.xml_requests import children_by_name, document_root

MAX_OBJECT_TAGS: Final = 10
MAX_BUCKET_TAGS: Final = 50
MAX_KEY_CHARS: Final = 128
MAX_VALUE_CHARS: Final = 256
RESERVED_PREFIX: Final = "aws:"
# 50 tags of 128 + 256 characters (up to 4 bytes each in UTF-8), with their
# elements, stay under 80 KiB; 256 KiB leaves room for indentation and
# refuses anything that could only be an attack.
MAX_BODY_BYTES: Final = 256 * 1024
# x-amz-tagging: 10 tags of 128 + 256 characters, percent-encoded (up to 12
# bytes per character) stay under 48 KiB; the header limits cap it anyway.
MAX_HEADER_CHARS: Final = 64 * 1024

TAG_PUNCTUATION: Final = frozenset("_.:/=+-@")

Tags = list[tuple[str, str]]


def _allowed(text: str) -> bool:
    return all(c in TAG_PUNCTUATION or unicodedata.category(c)[0] in "LNZ" for c in text)


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidTag", message=message)


def check_tags(tags: Sequence[tuple[str, str]], *, limit: int = MAX_OBJECT_TAGS) -> Tags:
    """``tags`` if they are a valid tag set for a write (see the top); else
    ``InvalidTag``."""
    if len(tags) > limit:
        what = "Object" if limit == MAX_OBJECT_TAGS else "Bucket"
        raise _invalid(f"{what} tags cannot be greater than {limit}")
    seen: set[str] = set()
    for key, value in tags:
        if not 1 <= len(key) <= MAX_KEY_CHARS or not _allowed(key):
            raise _invalid("The TagKey you have provided is invalid")
        if len(value) > MAX_VALUE_CHARS or not _allowed(value):
            raise _invalid("The TagValue you have provided is invalid")
        if key.startswith(RESERVED_PREFIX):
            raise _invalid("Your TagKey cannot be prefixed with aws:")
        if key in seen:
            raise _invalid("Cannot provide multiple Tags with the same key")
        seen.add(key)
    return list(tags)


def _only(found: dict[str, list[Element]], name: str, where: str) -> Element:
    nodes = found.get(name, [])
    if len(nodes) != 1:
        raise S3Error("MalformedXML", message=f"{where} needs exactly one {name}")
    return nodes[0]


def _tag_set(root: Element) -> Tags:
    found = children_by_name(root, ("TagSet",))
    tag_set = _only(found, "TagSet", "Tagging")
    tags: Tags = []
    for node in children_by_name(tag_set, ("Tag",)).get("Tag", []):
        parts = children_by_name(node, ("Key", "Value"))
        key = _only(parts, "Key", "Tag").text or ""
        value = _only(parts, "Value", "Tag").text or ""
        tags.append((key, value))
    return tags


def parse_tagging(body: bytes, *, limit: int = MAX_OBJECT_TAGS) -> Tags:
    """A PutObjectTagging / PutBucketTagging body (or a POST form's
    ``tagging`` field), checked."""
    root = document_root(body, "Tagging", MAX_BODY_BYTES)
    if len(root) == 0 and (root.text or "").strip():
        raise S3Error("MalformedXML")
    return check_tags(_tag_set(root), limit=limit)


def parse_tagging_header(value: str) -> Tags:
    """The ``x-amz-tagging`` header, checked."""
    if len(value) > MAX_HEADER_CHARS:
        raise _invalid("The x-amz-tagging header is too long")
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise S3Error(
            "InvalidArgument",
            message="The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.",
        ) from None
    return check_tags(pairs)


def tagging_xml(tags: Sequence[tuple[str, str]]) -> bytes:
    """GetObjectTagging / GetBucketTagging's answer."""
    inner = "".join("<Tag>" + el("Key", k) + el("Value", v) + "</Tag>" for k, v in tags)
    return document("Tagging", ["<TagSet>" + inner + "</TagSet>"])


def tagging_header(tags: Sequence[tuple[str, str]]) -> str:
    """``tags`` as an ``x-amz-tagging`` value (tests and tools)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags)


def stored_bucket_tags(text: str | None) -> Tags | None:
    """The tags kept in ``buckets.tags`` (the canonical XML written by
    ``tagging_xml``); None when the bucket has none."""
    if text is None:
        return None
    return _tag_set(document_root(text.encode("utf-8"), "Tagging", MAX_BODY_BYTES))
