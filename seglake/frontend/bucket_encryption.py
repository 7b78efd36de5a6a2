"""Get/Put/DeleteBucketEncryption (``?encryption``): a bucket's default
encryption, applied to every write that asks for none itself.

Rules this module keeps:

* A configuration is parsed completely before it is stored
  (``seglake/protocol/bucket_encryption.py``: AES256 only, aws:kms is 501)
  and stored as canonical XML through ``SetBucketConfig``; nothing changes
  when it is refused. As AWS requires, the PUT body carries Content-MD5 or
  an ``x-amz-checksum-*`` value.
* A bucket without a configuration answers GetBucketEncryption with 404
  ``ServerSideEncryptionConfigurationNotFoundError``. AWS now reports SSE-S3
  for every bucket because it encrypts every object; Seglake does not
  encrypt unless asked, and saying otherwise would be a false promise
  (``docs/compatibility.md``).
* Writes read the bucket's row when they start (PutObject, CopyObject,
  CreateMultipartUpload, POST uploads: ``frontend/sse.py``
  ``bucket_default_sse``), so a committed change applies from the next
  write on, in every frontend; the parts of an upload follow what its
  creation decided.
"""

from __future__ import annotations

from seglake.errors import S3Error
from seglake.frontend.body import configuration_body
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.sse import stored_encryption
from seglake.ipc.messages import SetBucketConfig
from seglake.protocol.bucket_encryption import MAX_BODY_BYTES, encryption_xml, parse_encryption


class BucketEncryptionHandlers(FamilyBase):
    async def get_encryption(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        text = stored_encryption(self.reader, req.bucket)
        if text is None:
            raise S3Error(
                "ServerSideEncryptionConfigurationNotFoundError", resource=req.bucket,
                fields={"BucketName": req.bucket},
            )  # fmt: skip
        await req.xml(200, text.encode())

    async def put_encryption(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        body = await configuration_body(req, self.cfg, MAX_BODY_BYTES)
        canonical = encryption_xml(parse_encryption(body)).decode()
        await self.writer.call(
            SetBucketConfig(bucket=req.bucket, field="encryption", value=canonical)
        )
        await req.respond(200)

    async def delete_encryption(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        await self.writer.call(SetBucketConfig(bucket=req.bucket, field="encryption", value=None))
        await req.respond(204)
