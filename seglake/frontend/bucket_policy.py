"""Get/Put/DeleteBucketPolicy (``?policy``) and GetBucketPolicyStatus.

Rules this module keeps:

* A policy is parsed completely before it is stored
  (``seglake/protocol/policy.py``); anything unsupported is
  ``MalformedPolicy`` and nothing changes. The writer parses it once more
  before committing, so no other path can store an unenforceable policy.
* The stored text is the document as the client sent it, and GetBucketPolicy
  hands exactly that back (``NoSuchBucketPolicy`` when there is none).
* A bucket is public (GetBucketPolicyStatus) when its policy is public by
  AWS's rules (an allow reaching anonymous callers that no condition limits
  to fixed callers or addresses, ``Policy.is_public``) and it is in
  ``--public-buckets``: otherwise unsigned requests cannot succeed, as under
  AWS's RestrictPublicBuckets.
* Who may call these is decided by ``authz.py`` like every operation
  (actions ``s3:GetBucketPolicy``, ``s3:PutBucketPolicy``,
  ``s3:DeleteBucketPolicy``).
"""

from __future__ import annotations

from seglake.config import csv_list
from seglake.errors import S3Error
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.ipc.messages import SetBucketPolicy
from seglake.meta.schema import scalar
from seglake.protocol.policy import MAX_POLICY_BYTES, PolicyError, parse_bucket_policy
from seglake.protocol.xml import document, el


class BucketPolicyHandlers(FamilyBase):
    async def get_policy(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        text = scalar(self.reader.conn, "SELECT policy FROM buckets WHERE name = ?", (req.bucket,))
        if text is None:
            raise S3Error("NoSuchBucketPolicy", fields={"BucketName": req.bucket})
        await req.respond(200, [(b"content-type", b"application/json")], str(text).encode())

    async def get_policy_status(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        text = scalar(self.reader.conn, "SELECT policy FROM buckets WHERE name = ?", (req.bucket,))
        if text is None:
            raise S3Error("NoSuchBucketPolicy", fields={"BucketName": req.bucket})
        try:
            public = parse_bucket_policy(str(text), req.bucket).is_public()
        except PolicyError:
            public = False  # an unreadable stored policy denies everything
        public = public and req.bucket in csv_list(self.cfg.public_buckets)
        await req.xml(200, document("PolicyStatus", [el("IsPublic", public)]))

    async def put_policy(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        body = await req.small_body(
            MAX_POLICY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
        )
        try:
            text = body.decode("utf-8")
            parse_bucket_policy(text, req.bucket)
        except (PolicyError, UnicodeDecodeError) as exc:
            raise S3Error("MalformedPolicy", message=str(exc)) from None
        await self.writer.call(SetBucketPolicy(bucket=req.bucket, policy=text))
        await req.respond(204)

    async def delete_policy(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        await self.writer.call(SetBucketPolicy(bucket=req.bucket, policy=None))
        await req.respond(204)
