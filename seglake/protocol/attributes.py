"""GetObjectAttributes: the request headers and the response body (pure).

Rules this module keeps (AWS's behaviour, as documented for the operation):

* ``x-amz-object-attributes`` lists, comma-separated, any of ``ATTRIBUTES``;
  a missing or empty header, or an unknown name, is ``InvalidArgument``.
  Only the listed attributes are in the body, in the order of AWS's schema.
* ``ETag`` is sent without the double quotes other operations put around it.
* ``Checksum`` holds the object's checksum values and its ``ChecksumType``;
  a COMPOSITE value is sent without its ``-N`` suffix (the part count is in
  ``ObjectParts``). An object stored without a checksum has no ``Checksum``.
* ``ObjectParts`` exists only for an object uploaded in parts. Its
  ``Part`` list (number, size, the part's checksum), paginated by
  ``x-amz-max-parts`` (default and cap 1000, as ListParts) and
  ``x-amz-part-number-marker``, is given only when the object has a
  checksum; otherwise only ``PartsCount`` is.
* ``StorageClass`` is always STANDARD; ``ObjectSize`` is in bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

from seglake.errors import S3Error
from seglake.protocol.xml import document, el

ATTRIBUTES: Final = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS: Final = 1000  # default and cap of x-amz-max-parts, as ListParts' max-parts
# Integers above this are refused rather than parsed (S3's Integer fields).
_MAX_INT: Final = 2**31 - 1


def parse_attributes(value: str | None) -> frozenset[str]:
    """The attribute names ``x-amz-object-attributes`` asks for."""
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    if not names:
        raise S3Error(
            "InvalidArgument",
            message="The x-amz-object-attributes header specifying the attributes to be "
            "retrieved is either missing or empty",
            fields={"ArgumentName": "x-amz-object-attributes"},
        )
    for name in names:
        if name not in ATTRIBUTES:
            raise S3Error(
                "InvalidArgument", message="Invalid attribute name specified.",
                fields={"ArgumentName": "x-amz-object-attributes", "ArgumentValue": name[:64]},
            )  # fmt: skip
    return frozenset(names)


def parse_int_header(value: str | None, name: str, default: int) -> int:
    """``x-amz-max-parts`` / ``x-amz-part-number-marker``: a non-negative integer."""
    if value is None:
        return default
    raw = value.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) > _MAX_INT:
        raise S3Error(
            "InvalidArgument", message=f"Provided {name} is not an integer or within range",
            fields={"ArgumentName": name, "ArgumentValue": raw[:64]},
        )  # fmt: skip
    return int(raw)


@dataclass(frozen=True)
class ObjectFacts:
    """What GetObjectAttributes can say about one version."""

    etag: str  # without quotes
    size: int
    # algorithm → base64 value (a COMPOSITE one may end in ``-N``)
    checksums: dict[str, str]
    checksum_type: str | None  # COMPOSITE or FULL_OBJECT when there are checksums
    # For an object uploaded in parts: each part's size, in part order.
    part_sizes: tuple[int, ...] | None = None
    # The parts' raw checksums under ``part_algorithm``, concatenated.
    part_checksums: bytes | None = None
    part_algorithm: str | None = None
    part_digest_size: int = 0


def _parts_xml(facts: ObjectFacts, max_parts: int, marker: int) -> str:
    sizes = facts.part_sizes or ()
    out = [el("PartsCount", len(sizes))]
    listed = (
        facts.checksums
        and facts.part_checksums is not None
        and facts.part_algorithm is not None
        and facts.part_digest_size > 0
        and len(facts.part_checksums) == facts.part_digest_size * len(sizes)
    )
    if not listed:
        return "<ObjectParts>" + "".join(out) + "</ObjectParts>"
    max_parts = min(max_parts, MAX_PARTS)
    first = min(marker, len(sizes))  # part numbers are 1..len(sizes)
    last = min(first + max_parts, len(sizes))
    out.append(el("PartNumberMarker", marker))
    if last > first:
        out.append(el("NextPartNumberMarker", last))
    out += [el("MaxParts", max_parts), el("IsTruncated", last < len(sizes))]
    ds = facts.part_digest_size
    blob = facts.part_checksums or b""
    tag = f"Checksum{facts.part_algorithm}"
    for i in range(first, last):
        value = base64.b64encode(blob[i * ds : (i + 1) * ds]).decode("ascii")
        out.append(
            "<Part>" + el("PartNumber", i + 1) + el("Size", sizes[i]) + el(tag, value) + "</Part>"
        )
    return "<ObjectParts>" + "".join(out) + "</ObjectParts>"


def attributes_document(
    facts: ObjectFacts, wanted: frozenset[str], *, max_parts: int = MAX_PARTS, marker: int = 0
) -> bytes:
    """The GetObjectAttributes response body."""
    out: list[str] = []
    if "ETag" in wanted:
        out.append(el("ETag", facts.etag.strip('"')))
    if "Checksum" in wanted and facts.checksums:
        inner = [
            el(f"Checksum{alg}", value.split("-")[0])
            for alg, value in sorted(facts.checksums.items())
        ]
        if facts.checksum_type:
            inner.append(el("ChecksumType", facts.checksum_type))
        out.append("<Checksum>" + "".join(inner) + "</Checksum>")
    if "ObjectParts" in wanted and facts.part_sizes is not None:
        out.append(_parts_xml(facts, max_parts, marker))
    if "StorageClass" in wanted:
        out.append(el("StorageClass", "STANDARD"))
    if "ObjectSize" in wanted:
        out.append(el("ObjectSize", facts.size))
    return document("GetObjectAttributesResponse", out)
