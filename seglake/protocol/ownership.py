"""Bucket ownership controls: the OwnershipControls document, the
``x-amz-object-ownership`` header, and what each setting means for ACLs and
object owners (pure, sans-IO).

Rules this module keeps:

* Three settings, as AWS: ``BucketOwnerEnforced`` (ACLs are disabled: the
  bucket owner owns every object, and a request that sets an ACL other than
  ``private``/``bucket-owner-full-control`` or its grant equivalent is
  ``AccessControlListNotSupported``), ``BucketOwnerPreferred`` (the writer
  owns a new object unless it is written ``bucket-owner-full-control``,
  then the bucket owner does) and ``ObjectWriter`` (the writer owns it).
* A bucket without ownership controls (``None``) behaves as
  ``ObjectWriter`` and GetBucketOwnershipControls answers
  ``OwnershipControlsNotFoundError``: Seglake's default for new buckets is
  ACLs enabled, the S3 behaviour before April 2023, because the tools a
  self-hosted store is used with send ACLs as a matter of course (s3cmd
  ``--acl-public``, rclone's ``acl`` option) and AWS's newer default would
  refuse them. A client asks for AWS's default with
  ``x-amz-object-ownership: BucketOwnerEnforced`` on CreateBucket or with
  PutBucketOwnershipControls (``docs/compatibility.md``).
"""

from __future__ import annotations

from typing import Final

from seglake.errors import S3Error
from seglake.protocol.acl import (
    BUCKET_OWNER_FULL_CONTROL,
    FULL_CONTROL,
    PRIVATE,
    USER,
    Acl,
)
from seglake.protocol.xml import el
from seglake.protocol.xml_requests import children_by_name, document_root

ENFORCED: Final = "BucketOwnerEnforced"
PREFERRED: Final = "BucketOwnerPreferred"
WRITER: Final = "ObjectWriter"
SETTINGS: Final = (ENFORCED, PREFERRED, WRITER)

# An OwnershipControls document is a few hundred bytes.
MAX_OWNERSHIP_BODY_BYTES: Final = 16 * 1024


def parse_ownership_controls(body: bytes) -> str:
    """``<OwnershipControls><Rule><ObjectOwnership>X</…></Rule></…>`` → X.
    AWS takes exactly one rule."""
    root = document_root(body, "OwnershipControls", MAX_OWNERSHIP_BODY_BYTES)
    rules = children_by_name(root, ("Rule",)).get("Rule", [])
    if len(rules) != 1:
        raise S3Error("MalformedXML", message="OwnershipControls takes exactly one Rule")
    values = children_by_name(rules[0], ("ObjectOwnership",)).get("ObjectOwnership", [])
    if len(values) != 1:
        raise S3Error("MalformedXML", message="a Rule takes exactly one ObjectOwnership")
    value = (values[0].text or "").strip()
    if value not in SETTINGS:
        raise S3Error("MalformedXML", message=f"unknown ObjectOwnership {value!r}")
    return value


def render_ownership_controls(value: str) -> list[str]:
    """The children of an OwnershipControls response."""
    return ["<Rule>" + el("ObjectOwnership", value) + "</Rule>"]


def parse_ownership_header(value: str) -> str:
    """``x-amz-object-ownership`` on CreateBucket (AWS compares it exactly)."""
    text = value.strip()
    if text not in SETTINGS:
        raise S3Error(
            "InvalidArgument",
            message="Invalid x-amz-object-ownership header",
            fields={"ArgumentName": "x-amz-object-ownership", "ArgumentValue": value},
        )
    return text


def acl_allowed(ownership: str | None, acl: Acl | None, bucket_owner: str) -> bool:
    """May a request set ``acl`` under ``ownership``? Under
    BucketOwnerEnforced only what gives the bucket owner full control and
    nothing else: ``private``, ``bucket-owner-full-control``, or the one
    explicit grant of FULL_CONTROL to the bucket owner (AWS's rule)."""
    if ownership != ENFORCED or acl is None:
        return True
    if acl.canned is not None:
        return acl.canned in (PRIVATE, BUCKET_OWNER_FULL_CONTROL)
    return all(
        g.grantee_type == USER and g.grantee == bucket_owner and g.permission == FULL_CONTROL
        for g in acl.grants
    )


def not_supported() -> S3Error:
    return S3Error("AccessControlListNotSupported")


def object_owner(ownership: str | None, writer: str, bucket_owner: str, acl: Acl | None) -> str:
    """Who owns an object ``writer`` creates with ``acl`` under ``ownership``."""
    if ownership == ENFORCED:
        return bucket_owner
    if ownership == PREFERRED and acl is not None and acl.canned == BUCKET_OWNER_FULL_CONTROL:
        return bucket_owner
    return writer
