"""S3 XML request bodies, parsed (pure): bytes in, typed values out.

Rules this module keeps:

* Every body is untrusted and goes through one function, ``document_root``
  (``protocol/lifecycle.py``'s parser too): a body over its operation's
  limit is ``MaxMessageLengthExceeded`` before a byte of it is parsed; it is parsed with ``defusedxml`` and no DTD at all (not only
  no entities: S3 request bodies never need one), so nothing is expanded or
  fetched; anything that is not one well-formed document (empty, truncated,
  trailing text, a DTD) is ``MalformedXML``.
* Element names are compared without their namespace: SDKs send S3's
  namespace, hand-written clients often none. PutBucketVersioning, as
  before, also refuses a root in any third namespace.
* A wrong root element, an unknown child, a missing required field: also
  ``MalformedXML``; values out of range get the error S3 answers for them
  (``InvalidArgument``, ``InvalidPartOrder``, ``InvalidRequest`` for a
  malformed checksum). DeleteObjects' per-object conditions (``ETag``,
  ``LastModifiedTime``, ``Size``) are parsed here and decided by the writer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from seglake.errors import S3Error
from seglake.protocol import checksums
from seglake.protocol.conditions import DeleteConditions, parse_delete_conditions
from seglake.protocol.limits import MAX_PART_NUMBER
from seglake.protocol.xml import S3_NS
from seglake.units import MiB

# ---- limits ----------------------------------------------------------------------


MAX_DELETE_KEYS: Final = 1000  # AWS's limit per DeleteObjects request
# 1000 keys of up to 1 KiB each, escaped, plus version ids: AWS's own 2 MiB
# cap on this body leaves room for all of that and nothing more.
MAX_DELETE_BODY_BYTES: Final = 2 * MiB
# A Complete body lists at most 10,000 parts; with an ETag and a SHA-256
# checksum each, pretty-printed, that is about 2.5 MB. 4 MiB admits every
# legal request and bounds what a hostile one makes us parse.
MAX_COMPLETE_BODY_BYTES: Final = 4 * MiB
# A VersioningConfiguration is well under 1 KiB; AWS caps such bodies too.
MAX_VERSIONING_BODY_BYTES: Final = 16 * 1024

# Everything after this in the name of a part's element names a checksum algorithm.
_CHECKSUM_TAG: Final = "Checksum"
_PART_NUMBER_RE: Final = re.compile(r"[0-9]{1,5}")


# ---- the one way in ----------------------------------------------------------------


def local_name(tag: str) -> str:
    """An element's name without its namespace (``{ns}Key`` → ``Key``)."""
    return tag.rsplit("}", 1)[-1]


def children_by_name(node: Element, allowed: Iterable[str]) -> dict[str, list[Element]]:
    """``node``'s children by local name; one not in ``allowed`` is
    MalformedXML (AWS refuses unknown elements in configuration documents)."""
    allowed_set = set(allowed)
    out: dict[str, list[Element]] = {}
    for child in node:
        name = local_name(child.tag)
        if name not in allowed_set:
            raise S3Error(
                "MalformedXML", message=f"unexpected element {name} in {local_name(node.tag)}"
            )
        out.setdefault(name, []).append(child)
    return out


def document_root(
    body: bytes, name: str, limit: int, *, s3_namespace_only: bool = False
) -> Element:
    """The root element of ``body``, which must be called ``name``."""
    if len(body) > limit:
        raise S3Error("MaxMessageLengthExceeded")
    try:
        root: Element = ElementTree.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    # LookupError: an XML declaration naming an encoding Python does not know.
    except (ElementTree.ParseError, DefusedXmlException, ValueError, LookupError):
        raise S3Error("MalformedXML") from None
    if local_name(root.tag) != name:
        raise S3Error("MalformedXML")
    if s3_namespace_only and root.tag.startswith("{") and root.tag[1:].split("}", 1)[0] != S3_NS:
        raise S3Error("MalformedXML")
    return root


def _text(element: Element) -> str:
    return (element.text or "").strip()


# ---- DeleteObjects -------------------------------------------------------------------


@dataclass(frozen=True)
class DeleteRequest:
    quiet: bool
    objects: list[tuple[str, str | None]]  # (key, version id)
    # By index into ``objects``: the conditions an object carries (<ETag>,
    # <LastModifiedTime>, <Size>); objects without any are left out.
    conditions: dict[int, DeleteConditions] = field(default_factory=dict)


def parse_delete(body: bytes) -> DeleteRequest:
    """The ``<Delete>`` document → quiet flag and (key, version id) list."""
    root = document_root(body, "Delete", MAX_DELETE_BODY_BYTES)
    quiet = False
    objects: list[tuple[str, str | None]] = []
    conds: dict[int, DeleteConditions] = {}
    for child in root:
        name = local_name(child.tag)
        if name == "Quiet":
            text = _text(child).lower()
            if text not in ("true", "false"):
                raise S3Error("MalformedXML")
            quiet = text == "true"
        elif name == "Object":
            key, version_id, cond = _delete_object(child)
            if cond.any:
                conds[len(objects)] = cond
            objects.append((key, version_id))
            if len(objects) > MAX_DELETE_KEYS:
                raise S3Error("MalformedXML")
        else:
            raise S3Error("MalformedXML")
    if not objects:
        raise S3Error("MalformedXML")
    return DeleteRequest(quiet, objects, conds)


_CONDITION_ELEMENTS: Final = ("ETag", "LastModifiedTime", "Size")


def _delete_object(element: Element) -> tuple[str, str | None, DeleteConditions]:
    key: str | None = None
    version_id: str | None = None
    found: dict[str, str] = {}
    for item in element:
        name = local_name(item.tag)
        if name == "Key":
            key = item.text or ""  # keys keep their spaces
        elif name == "VersionId":
            version_id = item.text or ""
        elif name in _CONDITION_ELEMENTS:
            # Conditional deletes (conditions.py, rule 8); the writer decides.
            if name in found:
                raise S3Error("MalformedXML", message=f"<{name}> given twice for one object")
            found[name] = _text(item)
        else:
            raise S3Error("MalformedXML")
    if not key:
        raise S3Error("MalformedXML")
    try:
        cond = parse_delete_conditions(
            found.get("ETag"), found.get("LastModifiedTime"), found.get("Size"),
            names=("LastModifiedTime", "Size"),
        )  # fmt: skip
    except S3Error as exc:
        # Values of the wrong type for the document's schema.
        raise S3Error("MalformedXML", message=exc.text) from None
    return key, version_id, cond


# ---- CompleteMultipartUpload ----------------------------------------------------------


@dataclass(frozen=True)
class ListedPart:
    number: int
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)


def parse_complete(body: bytes) -> list[ListedPart]:
    """The parts a CompleteMultipartUpload body lists, checked for order."""
    root = document_root(body, "CompleteMultipartUpload", MAX_COMPLETE_BODY_BYTES)
    parts: list[ListedPart] = []
    for child in root:
        if local_name(child.tag) != "Part":
            raise S3Error("MalformedXML")
        part = _listed_part(child)
        if parts and part.number <= parts[-1].number:
            raise S3Error("InvalidPartOrder")
        parts.append(part)
    if not parts:
        raise S3Error("MalformedXML", message="You must specify at least one part")
    return parts


def _listed_part(element: Element) -> ListedPart:
    number: int | None = None
    etag: str | None = None
    sums: dict[str, str] = {}
    for item in element:
        name = local_name(item.tag)
        text = _text(item)
        if name == "PartNumber":
            if not _PART_NUMBER_RE.fullmatch(text):
                raise S3Error("InvalidArgument", message=f"Invalid part number {text[:16]!r}")
            number = int(text)
        elif name == "ETag":
            etag = text.strip('"').lower()
        elif name.startswith(_CHECKSUM_TAG) and name != "ChecksumType":
            alg = name[len(_CHECKSUM_TAG) :].upper()
            if alg not in checksums.ALGORITHMS:
                raise S3Error("MalformedXML", message=f"unknown element {name!r}")
            checksums.decode_value(alg, text)
            sums[alg] = text
    if number is None or etag is None:
        raise S3Error("MalformedXML", message="each Part needs a PartNumber and an ETag")
    if not 1 <= number <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", message="Part number must be 1..10000")
    return ListedPart(number, etag, sums)


# ---- PutBucketVersioning ---------------------------------------------------------------


def parse_versioning_configuration(body: bytes) -> tuple[str | None, str | None]:
    """``VersioningConfiguration`` XML → (Status, MfaDelete), each as sent or None."""
    root = document_root(
        body, "VersioningConfiguration", MAX_VERSIONING_BODY_BYTES, s3_namespace_only=True
    )
    values: dict[str, str] = {}
    for child in root:
        name = local_name(child.tag)
        if name not in ("Status", "MfaDelete") or name in values or len(child):
            raise S3Error("MalformedXML")
        values[name] = _text(child)
    return values.get("Status"), values.get("MfaDelete")
