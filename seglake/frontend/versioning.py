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
- The XML body is untrusted: size-capped, parsed without DTDs or entities
  (``seglake/protocol/xml_requests.py``), and checked against the signed
  payload hash and Content-MD5 when given.
- ListObjectVersions lists every stored version and delete marker (never
  one removed by version id), newest first per key; an unversioned bucket's
  versions are listed with VersionId ``null``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from seglake.errors import S3Error
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.ipc.messages import SetVersioning
from seglake.meta.acl_reads import version_owners
from seglake.meta.version_reads import VersionEntry, list_versions, null_version_created_ns
from seglake.protocol import listing
from seglake.protocol.version_listing import (
    check_markers,
    paginate_versions,
    version_created_ns,
)
from seglake.protocol.xml import document, el, iso8601
from seglake.protocol.xml_requests import MAX_VERSIONING_BODY_BYTES, parse_versioning_configuration

LIST_BATCH: Final = 1000
_STATUS_TO_STATE: Final = {"Enabled": "enabled", "Suspended": "suspended"}
_STATE_TO_STATUS: Final = {"enabled": "Enabled", "suspended": "Suspended"}


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
            MAX_VERSIONING_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
        )
        status, mfa_delete = parse_versioning_configuration(body)
        if mfa_delete is not None and mfa_delete != "Disabled":
            if mfa_delete == "Enabled":
                raise S3Error("NotImplemented", message="MFA delete is not implemented")
            raise S3Error("IllegalVersioningConfigurationException")
        state = _STATUS_TO_STATE.get(status or "")
        if state is None:
            raise S3Error("IllegalVersioningConfigurationException")
        await self.writer.call(SetVersioning(bucket=req.bucket, status=state))
        await req.respond(200)

    async def list_object_versions(self, req: Request) -> None:
        self._versioning(req.bucket)
        lq = listing.ListQuery.parse(req.q)
        prefix, delimiter, enc = lq.prefix, lq.delimiter, lq.show
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
        parts = [
            el("Name", req.bucket), el("Prefix", enc(prefix)), el("KeyMarker", enc(key_marker)),
            el("VersionIdMarker", version_id_marker or ""),
        ]  # fmt: skip
        if page.is_truncated and page.next_key is not None:
            parts.append(el("NextKeyMarker", enc(page.next_key)))
            if page.next_version_id is not None:
                parts.append(el("NextVersionIdMarker", page.next_version_id))
        parts += [el("MaxKeys", max_keys), *lq.echo_xml(), el("IsTruncated", page.is_truncated)]
        bucket_acl = self.access.bucket(req.bucket)
        owners = version_owners(
            self.reader.conn, req.bucket, [(e.key, e.version_id) for e in page.entries]
        )

        render = self.access.owner_renderer()

        def owner_xml(key: str, version_id: str) -> str:
            recorded = owners.get((key, version_id))
            return render(self.access.listed_owner(bucket_acl, recorded))

        for e in page.entries:
            common = (
                el("Key", enc(e.key)) + el("VersionId", e.version_id)
                + el("IsLatest", e.is_latest) + el("LastModified", iso8601(e.created_ns))
            )  # fmt: skip
            if e.delete_marker:
                parts.append(
                    f"<DeleteMarker>{common}{owner_xml(e.key, e.version_id)}</DeleteMarker>"
                )
            else:
                item = (
                    common + el("ETag", f'"{e.etag}"') + el("Size", e.size)
                    + el("StorageClass", "STANDARD") + owner_xml(e.key, e.version_id)
                )  # fmt: skip
                parts.append(f"<Version>{item}</Version>")
        parts += lq.common_prefixes_xml(page.common_prefixes)
        await req.xml(200, document("ListVersionsResult", parts))
