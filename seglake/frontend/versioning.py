"""Bucket versioning operations: GetBucketVersioning, PutBucketVersioning,
ListObjectVersions.

Rules this family keeps:
- A bucket is ``enabled``, ``suspended`` or ``unversioned``. GetBucketVersioning
  reports ``Enabled`` / ``Suspended``, and an empty configuration for an
  unversioned bucket (as AWS does for a bucket never versioned).
- PutBucketVersioning accepts AWS's ``VersioningConfiguration`` XML with
  ``Status`` Enabled or Suspended. A body that is not that XML is
  ``MalformedXML``; another status, or none, is
  ``IllegalVersioningConfigurationException``. MFA delete is not implemented:
  ``MfaDelete=Enabled`` is refused (``Disabled`` states what is true and is
  accepted). ``unversioned`` can never be set again.
- The XML body is untrusted: size-capped, parsed without DTDs or entities,
  and checked against the signed payload hash and Content-MD5 when given.
- ListObjectVersions lists every stored version and delete marker (never
  one removed by version id), newest first per key; an unversioned bucket's
  versions are listed with VersionId ``null``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from seglake.errors import S3Error
from seglake.frontend.buckets import OWNER_ID
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.meta.version_reads import VersionEntry, list_versions, null_version_created_ns
from seglake.protocol import listing
from seglake.protocol.version_listing import (
    check_markers,
    paginate_versions,
    version_created_ns,
)
from seglake.protocol.xml import S3_NS, document, el, iso8601, url_encode_key

# A VersioningConfiguration is well under 1 KiB; AWS caps such bodies too.
MAX_VERSIONING_XML_BYTES: Final = 16 * 1024
LIST_BATCH: Final = 1000
_STATUS_TO_STATE: Final = {"Enabled": "enabled", "Suspended": "suspended"}
_STATE_TO_STATUS: Final = {"enabled": "Enabled", "suspended": "Suspended"}


def _owner() -> str:
    return "<Owner>" + el("ID", OWNER_ID) + el("DisplayName", OWNER_ID) + "</Owner>"


def _local(tag: str) -> str:
    """An element's name without its namespace (``{ns}Status`` → ``Status``)."""
    return tag.rsplit("}", 1)[-1]


def parse_versioning_configuration(body: bytes) -> tuple[str | None, str | None]:
    """``VersioningConfiguration`` XML → (Status, MfaDelete), pure.

    Raises ``MalformedXML`` for anything that is not that document.
    """
    if not body.strip():
        raise S3Error("MalformedXML")
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError):
        raise S3Error("MalformedXML") from None
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if _local(root.tag) != "VersioningConfiguration" or ns not in ("", S3_NS):
        raise S3Error("MalformedXML")
    values: dict[str, str] = {}
    for child in root:
        name = _local(child.tag)
        if name not in ("Status", "MfaDelete") or name in values or len(child):
            raise S3Error("MalformedXML")
        values[name] = (child.text or "").strip()
    return values.get("Status"), values.get("MfaDelete")


class VersioningHandlers(FamilyBase):
    def _versioning(self, name: str) -> str:
        return self.require_bucket(name).versioning

    async def get_bucket_versioning(self, req: Request) -> None:
        status = _STATE_TO_STATUS.get(self._versioning(req.bucket))
        parts = [el("Status", status)] if status else []
        await req.xml(200, document("VersioningConfiguration", parts))

    async def put_bucket_versioning(self, req: Request) -> None:
        self._versioning(req.bucket)
        body = await req.small_body(
            MAX_VERSIONING_XML_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
        )
        status, mfa_delete = parse_versioning_configuration(body)
        if mfa_delete is not None and mfa_delete != "Disabled":
            if mfa_delete == "Enabled":
                raise S3Error("NotImplemented", message="MFA delete is not implemented")
            raise S3Error("IllegalVersioningConfigurationException")
        state = _STATUS_TO_STATE.get(status or "")
        if state is None:
            raise S3Error("IllegalVersioningConfigurationException")
        await self.writer.call("set_versioning", {"bucket": req.bucket, "status": state})
        await req.respond(200)

    async def list_object_versions(self, req: Request) -> None:
        self._versioning(req.bucket)
        prefix = req.q("prefix") or ""
        delimiter = req.q("delimiter") or ""
        encoding = listing.parse_encoding_type(req.q("encoding-type"))
        max_keys = listing.parse_max_keys(req.q("max-keys"))
        key_marker = req.q("key-marker") or ""
        version_id_marker = req.q("version-id-marker") or None
        check_markers(key_marker, version_id_marker)
        below_ns: int | None = None
        if version_id_marker is not None:
            below_ns = version_created_ns(version_id_marker)
            if below_ns is None:  # "null": the position of that key's null version
                below_ns = null_version_created_ns(self.reader, req.bucket, key_marker)

        def fetch(after_key: str, below: int | None) -> Iterator[VersionEntry]:
            return list_versions(
                self.reader, req.bucket, prefix=prefix, after_key=after_key,
                below_ns=below, batch=LIST_BATCH,
            )  # fmt: skip

        page = paginate_versions(
            fetch, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            below_ns=below_ns, max_keys=max_keys,
        )  # fmt: skip
        enc = url_encode_key if encoding == "url" else (lambda s: s)
        parts = [
            el("Name", req.bucket), el("Prefix", enc(prefix)), el("KeyMarker", enc(key_marker)),
            el("VersionIdMarker", version_id_marker or ""),
        ]  # fmt: skip
        if page.is_truncated and page.next_key is not None:
            parts.append(el("NextKeyMarker", enc(page.next_key)))
            if page.next_version_id is not None:
                parts.append(el("NextVersionIdMarker", page.next_version_id))
        parts.append(el("MaxKeys", max_keys))
        if delimiter:
            parts.append(el("Delimiter", enc(delimiter)))
        if encoding:
            parts.append(el("EncodingType", encoding))
        parts.append(el("IsTruncated", page.is_truncated))
        for e in page.entries:
            common = (
                el("Key", enc(e.key)) + el("VersionId", e.version_id)
                + el("IsLatest", e.is_latest) + el("LastModified", iso8601(e.created_ns))
            )  # fmt: skip
            if e.delete_marker:
                parts.append(f"<DeleteMarker>{common}{_owner()}</DeleteMarker>")
            else:
                item = (
                    common + el("ETag", f'"{e.etag}"') + el("Size", e.size)
                    + el("StorageClass", "STANDARD") + _owner()
                )  # fmt: skip
                parts.append(f"<Version>{item}</Version>")
        for cp in page.common_prefixes:
            parts.append("<CommonPrefixes>" + el("Prefix", enc(cp)) + "</CommonPrefixes>")
        await req.xml(200, document("ListVersionsResult", parts))
