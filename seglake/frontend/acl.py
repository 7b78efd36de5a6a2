"""Get/PutBucketAcl, Get/PutObjectAcl (``?acl``, with ``versionId``) and
Get/Put/DeleteBucketOwnershipControls (``?ownershipControls``); the ACL a
write request asks for (``requested_acl``), checked the same way.

Rules this module keeps:

* An ACL is parsed and checked completely before the writer is asked
  (``protocol/acl.py``: AWS's errors), and nothing changes when it is
  refused. A bucket's ACL goes into ``buckets.acl`` with its owner
  (``SetBucketConfig``), an object version's into its version metadata
  (``SetVersionMeta``): the records the writer keeps for both survive a
  restart and ``rebuild-index``. ``private`` is stored as no ACL at all.
* Under BucketOwnerEnforced a request that sets an ACL other than
  ``private``, ``bucket-owner-full-control`` or the bucket owner's full
  control is ``AccessControlListNotSupported``; reading ACLs still works
  and shows the owner's full control.
* Seglake's Block Public Access: an ACL that grants anything to AllUsers
  is refused with ``AccessDenied`` on a bucket the operator has not listed
  in ``--public-buckets``, because anonymous requests are never served
  there, and accepting it would tell the client its data is public when it
  is not. (Who may call these is ``authz.py``'s: ``s3:GetBucketAcl``,
  ``s3:PutBucketAcl``, ``s3:GetObjectAcl``, ``s3:PutObjectAcl``,
  ``s3:GetBucketOwnershipControls``, ``s3:PutBucketOwnershipControls``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend.access import BucketAcl, ObjectAcl, refuse_public_acl
from seglake.frontend.body import configuration_body, has_integrity_header
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.ipc.messages import SetBucketConfig, SetVersionMeta
from seglake.protocol import ownership as own
from seglake.protocol.acl import (
    MAX_ACL_BODY_BYTES,
    Acl,
    Grant,
    acl_from_headers,
    bucket_acl_text,
    parse_access_control_policy,
    render_access_control_policy,
)
from seglake.protocol.xml import document

# ACL documents and ownership controls are small: a body over this is refused.
BODY_LIMIT: Final = MAX_ACL_BODY_BYTES


def check_settable(
    acl: Acl | None, bucket: BucketAcl, object_owner: str, cfg: Config, bucket_name: str
) -> None:
    """May ``acl`` be set on ``bucket`` (or an object in it owned by
    ``object_owner``)? Raises AWS's error if not (module docstring)."""
    if acl is None:
        return
    if not own.acl_allowed(bucket.ownership, acl, bucket.owner):
        raise own.not_supported()
    refuse_public_acl(acl, object_owner, bucket.owner, cfg, bucket_name)


def stored_acl(acl: Acl) -> dict[str, object] | None:
    """What goes into version metadata: nothing for ``private``."""
    return None if acl.is_private else acl.to_value()


class AclHandlers(FamilyBase):
    # ---- shared ---------------------------------------------------------------
    def bucket_state(self, name: str) -> BucketAcl:
        state = self.access.bucket(name)
        if state is None:
            raise S3Error("NoSuchBucket", resource=name, fields={"BucketName": name})
        return state

    def object_state(self, req: Request, state: BucketAcl) -> ObjectAcl:
        version_id = req.q("versionId")
        if version_id == "":
            raise S3Error("InvalidArgument", message="Version id cannot be the empty string")
        obj = self.access.object(state, req.bucket, req.key, version_id)
        if obj is None:
            if version_id is not None:
                raise S3Error(
                    "NoSuchVersion", resource=req.key,
                    fields={"Key": req.key, "VersionId": version_id},
                )  # fmt: skip
            raise S3Error("NoSuchKey", resource=req.key, fields={"Key": req.key})
        if obj.delete_marker:
            if version_id is None:
                raise S3Error("NoSuchKey", resource=req.key, fields={"Key": req.key})
            # AWS: a delete marker has no ACL.
            raise S3Error(
                "MethodNotAllowed",
                headers={"x-amz-delete-marker": "true", "allow": "DELETE"},
            )
        return obj

    def requested_acl(self, headers: Mapping[str, str], *, bucket: bool) -> Acl | None:
        """The ACL a request's ``x-amz-acl``/``x-amz-grant-*`` headers ask for."""
        return acl_from_headers(headers, self.access.index.known, bucket=bucket)

    async def _acl_body_or_headers(self, req: Request, *, bucket: bool, owner: str) -> Acl:
        """PutBucketAcl/PutObjectAcl take the ACL as an AccessControlPolicy
        body or as headers, not both (AWS)."""
        if has_integrity_header(req):
            body = await configuration_body(req, self.cfg, BODY_LIMIT)
        else:
            body = await req.small_body(BODY_LIMIT, allow_unsigned=self.cfg.allow_unsigned_payload)
        from_headers = self.requested_acl(req.headers, bucket=bucket)
        if body.strip():
            if from_headers is not None:
                raise S3Error(
                    "InvalidRequest",
                    message="Send the ACL as headers or as an AccessControlPolicy body, not both",
                )
            named_owner, acl = parse_access_control_policy(body, self.access.index.known)
            if named_owner != owner:
                raise S3Error(
                    "AccessDenied", message="The Owner ID in the ACL is not the resource's owner"
                )
            return acl
        if from_headers is None:
            raise S3Error(
                "MalformedACLError",
                message="Send x-amz-acl, an x-amz-grant-* header or an AccessControlPolicy body",
            )
        return from_headers

    def _document(self, owner: str, grants: tuple[Grant, ...]) -> bytes:
        name = self.access.display_name
        return document(
            "AccessControlPolicy", render_access_control_policy(owner, name(owner), grants, name)
        )

    # ---- bucket ACL -------------------------------------------------------------
    async def get_bucket_acl(self, req: Request) -> None:
        state = self.bucket_state(req.bucket)
        await req.xml(200, self._document(state.owner, state.grants()))

    async def put_bucket_acl(self, req: Request) -> None:
        state = self.bucket_state(req.bucket)
        acl = await self._acl_body_or_headers(req, bucket=True, owner=state.owner)
        check_settable(acl, state, state.owner, self.cfg, req.bucket)
        text = bucket_acl_text(state.owner, acl)
        await self.writer.call(SetBucketConfig(bucket=req.bucket, field="acl", value=text))
        await req.respond(200)

    # ---- object ACL -------------------------------------------------------------
    async def get_object_acl(self, req: Request) -> None:
        obj = self.object_state(req, self.bucket_state(req.bucket))
        headers = []
        if req.q("versionId") is not None:
            headers.append((b"x-amz-version-id", obj.version_id.encode()))
        await req.xml(200, self._document(obj.owner, obj.grants()), headers)

    async def put_object_acl(self, req: Request) -> None:
        state = self.bucket_state(req.bucket)
        obj = self.object_state(req, state)
        acl = await self._acl_body_or_headers(req, bucket=False, owner=obj.owner)
        check_settable(acl, state, obj.owner, self.cfg, req.bucket)
        done = await self.writer.call(
            SetVersionMeta(
                bucket=req.bucket, key=req.key, version_id=req.q("versionId"),
                acl=stored_acl(acl),
            )
        )  # fmt: skip
        headers = []
        if req.q("versionId") is not None:
            headers.append((b"x-amz-version-id", done.version_id.encode()))
        await req.respond(200, headers)

    # ---- ownership controls ----------------------------------------------------------
    async def get_ownership(self, req: Request) -> None:
        state = self.bucket_state(req.bucket)
        if state.ownership is None:
            raise S3Error(
                "OwnershipControlsNotFoundError", resource=req.bucket,
                fields={"BucketName": req.bucket},
            )  # fmt: skip
        body = document("OwnershipControls", own.render_ownership_controls(state.ownership))
        await req.xml(200, body)

    async def put_ownership(self, req: Request) -> None:
        state = self.bucket_state(req.bucket)
        if has_integrity_header(req):
            body = await configuration_body(req, self.cfg, own.MAX_OWNERSHIP_BODY_BYTES)
        else:
            body = await req.small_body(
                own.MAX_OWNERSHIP_BODY_BYTES, allow_unsigned=self.cfg.allow_unsigned_payload
            )
        value = own.parse_ownership_controls(body)
        if value == own.ENFORCED and not own.acl_allowed(value, state.acl, state.owner):
            # AWS: disabling ACLs needs a bucket ACL that grants nobody else.
            raise S3Error("InvalidBucketAclWithObjectOwnership")
        await self.writer.call(SetBucketConfig(bucket=req.bucket, field="ownership", value=value))
        await req.respond(200)

    async def delete_ownership(self, req: Request) -> None:
        self.bucket_state(req.bucket)
        await self.writer.call(SetBucketConfig(bucket=req.bucket, field="ownership", value=None))
        await req.respond(204)
