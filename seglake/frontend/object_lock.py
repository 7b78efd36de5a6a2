"""Object Lock operations: Put/GetObjectLockConfiguration, Put/GetObjectRetention,
Put/GetObjectLegalHold, and the lock parts of writes and reads.

Rules this family keeps (``docs/design-version-metadata.md`` §3):
- The frontend checks syntax (``protocol/object_lock.py``) and permission; the
  writer decides everything that depends on stored state (whether a
  retention may change, whether a version may go), in its transaction.
- ``bypass_governance`` is sent to the writer only when the request carries
  ``x-amz-bypass-governance-retention: true`` *and* the key holds
  ``s3:BypassGovernanceRetention`` (``Request.may_bypass_governance``).
- A bucket's configuration cannot be removed; retention and legal hold are
  refused on a bucket without one (``InvalidRequest``, AWS's words).
- Writes to a lock-enabled bucket must carry Content-MD5 or an
  ``x-amz-checksum-*`` (header or trailer), checked before the body is read.
"""

from __future__ import annotations

from seglake.errors import S3Error
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.lock_fields import bucket_lock, wall_ms
from seglake.frontend.objects import validate_key, validate_version_id
from seglake.ipc.messages import Retention, SetBucketConfig, SetVersionMeta
from seglake.meta.lock_reads import VersionLock, version_lock
from seglake.protocol import object_lock as ol


class ObjectLockHandlers(FamilyBase):
    # ---- bucket configuration --------------------------------------------------
    async def get_object_lock_configuration(self, req: Request) -> None:
        config = bucket_lock(self.reader, req.bucket)
        if config is None:
            raise S3Error(
                "ObjectLockConfigurationNotFoundError", resource=req.bucket,
                fields={"BucketName": req.bucket},
            )  # fmt: skip
        await req.xml(200, config.to_xml())

    async def put_object_lock_configuration(self, req: Request) -> None:
        bucket_lock(self.reader, req.bucket)
        body = await req.small_body(
            ol.MAX_LOCK_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
        )
        config = ol.parse_lock_configuration(body)
        await self.writer.call(
            SetBucketConfig(bucket=req.bucket, field="object_lock", value=config.to_xml().decode())
        )
        await req.respond(200)

    # ---- per version -------------------------------------------------------------
    def _version(self, req: Request) -> VersionLock:
        validate_key(req.key)
        version_id = req.q("versionId")
        if version_id is not None:
            validate_version_id(version_id)
        if bucket_lock(self.reader, req.bucket) is None:
            raise S3Error("InvalidRequest", message=ol.MISSING_CONFIG_MSG)
        lock = version_lock(self.reader.conn, req.bucket, req.key, version_id)
        if lock is None:
            if version_id is None:
                raise S3Error("NoSuchKey", resource=req.key, fields={"Key": req.key})
            raise S3Error(
                "NoSuchVersion", resource=req.key, fields={"Key": req.key, "VersionId": version_id}
            )
        if lock.delete_marker:
            raise S3Error(
                "MethodNotAllowed", resource=req.key,
                headers={"x-amz-delete-marker": "true", "x-amz-version-id": lock.version_id},
            )  # fmt: skip
        return lock

    async def get_object_retention(self, req: Request) -> None:
        lock = self._version(req)
        if lock.mode is None or lock.until_ms is None:
            raise S3Error("NoSuchObjectLockConfiguration", resource=req.key)
        await req.xml(200, ol.retention_xml(Retention(mode=lock.mode, until_ms=lock.until_ms)))

    async def get_object_legal_hold(self, req: Request) -> None:
        lock = self._version(req)
        await req.xml(200, ol.legal_hold_xml(lock.legal_hold))

    async def put_object_retention(self, req: Request) -> None:
        self._version(req)
        body = await req.small_body(
            ol.MAX_LOCK_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
        )
        retention = ol.parse_retention(body, wall_ms())
        version_id = req.q("versionId")
        bypass = req.may_bypass_governance(req.key, version_id)
        lock = None if retention is None else Retention(retention.mode, retention.until_ms)
        reply = await self.writer.call(
            SetVersionMeta(
                bucket=req.bucket, key=req.key, version_id=version_id, retention=lock,
                bypass_governance=bypass,
            )
        )  # fmt: skip
        await req.respond(200, _version_header(reply.version_id))

    async def put_object_legal_hold(self, req: Request) -> None:
        self._version(req)
        body = await req.small_body(
            ol.MAX_LOCK_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
        )
        on = ol.parse_legal_hold(body)
        reply = await self.writer.call(
            SetVersionMeta(
                bucket=req.bucket, key=req.key, version_id=req.q("versionId"), legal_hold=on
            )
        )
        await req.respond(200, _version_header(reply.version_id))


def _version_header(version_id: str | None) -> list[tuple[bytes, bytes]]:
    if not version_id or version_id == "null":
        return []
    return [(b"x-amz-version-id", version_id.encode())]
