"""Object and bucket tagging (``?tagging``), and the tags a write asks for.

Rules this module keeps:

* Tags are version metadata (``versions.vmeta``, docs/design-version-metadata.md):
  Put/DeleteObjectTagging send one ``SetVersionMeta`` and write no object
  data; the writer decides which version "latest" is and the answer names
  it (``x-amz-version-id``). GetObjectTagging reads the row the frontend's
  read-only connection sees.
* The version a request addresses is found as GET finds it: ``?versionId``
  naming a delete marker is ``405 MethodNotAllowed``, a key whose current
  version is a delete marker (or no version) is ``NoSuchKey``, an unknown
  version id ``NoSuchVersion``.
* Syntax and limits (``seglake/protocol/tagging.py``) are checked before the
  writer is asked; nothing changes when a request is refused. PUT bodies
  carry Content-MD5 or an ``x-amz-checksum-*`` as AWS requires.
* Bucket tags are kept as the canonical ``Tagging`` XML in ``buckets.tags``
  (``SetBucketConfig``); a bucket without tags is ``NoSuchTagSet``.
* ``write_tags``: the tags PutObject, CreateMultipartUpload and CopyObject
  (with ``x-amz-tagging-directive: REPLACE``) give the new version through
  ``x-amz-tagging``.
"""

from __future__ import annotations

from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.vmeta import decode_vmeta
from seglake.frontend.body import configuration_body
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.objects import validate_key, validate_version_id
from seglake.ipc.messages import SetBucketConfig, SetVersionMeta, VersionMetaInit
from seglake.meta.reads import VersionRow
from seglake.meta.schema import query
from seglake.protocol.tagging import (
    MAX_BODY_BYTES,
    MAX_BUCKET_TAGS,
    Tags,
    parse_tagging,
    parse_tagging_header,
    stored_bucket_tags,
    tagging_xml,
)

TAGGING_HEADER = "x-amz-tagging"
DIRECTIVE_HEADER = "x-amz-tagging-directive"


def write_vmeta(req: Request) -> VersionMetaInit | None:
    """The metadata ``x-amz-tagging`` asks for on a new version (None: the
    header is absent)."""
    raw = req.headers.get(TAGGING_HEADER)
    return None if raw is None else VersionMetaInit(tags=parse_tagging_header(raw))


def tagging_directive(req: Request) -> str:
    """CopyObject's ``x-amz-tagging-directive`` (COPY when absent)."""
    raw = req.headers.get(DIRECTIVE_HEADER)
    if raw is None:
        return "COPY"
    if raw not in ("COPY", "REPLACE"):
        raise S3Error(
            "InvalidArgument", message="Unknown tagging directive.",
            fields={"ArgumentName": DIRECTIVE_HEADER, "ArgumentValue": raw},
        )  # fmt: skip
    return raw


def version_tags(v: VersionRow) -> Tags:
    try:
        return list(decode_vmeta(v.vmeta, path=f"meta.db:versions/{v.uid}").tags)
    except FormatError:
        raise S3Error("InternalError", message="malformed version metadata") from None


class TaggingHandlers(FamilyBase):
    # ---- objects ---------------------------------------------------------
    def _version(self, req: Request) -> VersionRow:
        validate_key(req.key)
        version_id = req.q("versionId")
        if version_id is not None:
            validate_version_id(version_id)
            v = self.reader.version(req.bucket, req.key, version_id)
            if v is None:
                self.require_bucket(req.bucket)
                raise S3Error(
                    "NoSuchVersion", resource=req.key,
                    fields={"Key": req.key, "VersionId": version_id},
                )  # fmt: skip
            if v.delete_marker:
                raise S3Error(
                    "MethodNotAllowed", resource=req.key,
                    headers={
                        "x-amz-delete-marker": "true", "x-amz-version-id": version_id,
                        "Allow": "DELETE",
                    },
                )  # fmt: skip
            return v
        v = self.reader.current(req.bucket, req.key)
        if v is None or v.state == "DELETED" or v.delete_marker:
            self.require_bucket(req.bucket)
            raise S3Error("NoSuchKey", resource=req.key, fields={"Key": req.key})
        return v

    def _version_header(self, bucket: str, version_id: str) -> list[tuple[bytes, bytes]]:
        """``x-amz-version-id``, except for the null version of a bucket that
        was never versioned (as GET/HEAD)."""
        if version_id == "null":
            b = self.reader.bucket(bucket)
            if b is None or b.versioning == "unversioned":
                return []
        return [(b"x-amz-version-id", version_id.encode())]

    async def get_object_tagging(self, req: Request) -> None:
        v = self._version(req)
        headers = self._version_header(v.bucket, v.version_id)
        await req.xml(200, tagging_xml(version_tags(v)), headers)

    async def put_object_tagging(self, req: Request) -> None:
        validate_key(req.key)
        version_id = req.q("versionId")
        if version_id is not None:
            validate_version_id(version_id)
        self.require_bucket(req.bucket)
        body = await configuration_body(req, self.cfg, MAX_BODY_BYTES)
        tags = parse_tagging(body)
        if req.tag_check is not None:
            req.tag_check(tags)  # s3:RequestObjectTag/... of the body's tags
        result = await self.writer.call(
            SetVersionMeta(bucket=req.bucket, key=req.key, version_id=version_id, tags=tags)
        )
        await req.respond(200, self._version_header(req.bucket, result.version_id))

    async def delete_object_tagging(self, req: Request) -> None:
        validate_key(req.key)
        version_id = req.q("versionId")
        if version_id is not None:
            validate_version_id(version_id)
        self.require_bucket(req.bucket)
        result = await self.writer.call(
            SetVersionMeta(bucket=req.bucket, key=req.key, version_id=version_id, tags=[])
        )
        await req.respond(204, self._version_header(req.bucket, result.version_id))

    # ---- buckets ---------------------------------------------------------
    async def get_bucket_tagging(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        rows = query(self.reader.conn, "SELECT tags FROM buckets WHERE name = ?", (req.bucket,))
        tags = stored_bucket_tags(rows[0][0] if rows else None)
        if tags is None:
            raise S3Error("NoSuchTagSet", resource=req.bucket, fields={"BucketName": req.bucket})
        await req.xml(200, tagging_xml(tags))

    async def put_bucket_tagging(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        body = await configuration_body(req, self.cfg, MAX_BODY_BYTES)
        tags = parse_tagging(body, limit=MAX_BUCKET_TAGS)
        # An empty TagSet leaves the bucket without tags (GetBucketTagging:
        # NoSuchTagSet), as AWS answers after it.
        text = tagging_xml(tags).decode("utf-8") if tags else None
        await self.writer.call(SetBucketConfig(bucket=req.bucket, field="tags", value=text))
        await req.respond(204)

    async def delete_bucket_tagging(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        await self.writer.call(SetBucketConfig(bucket=req.bucket, field="tags", value=None))
        await req.respond(204)
