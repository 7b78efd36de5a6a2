"""Owners and ACLs of buckets and objects as access control sees them.

Rules this module keeps:

* Every access key is a canonical user (``auth/canonical.py``): its id is
  derived from the access key id and its display name is the access key id.
  The bootstrap admin key is the account; what has no recorded owner (a
  bucket or object written before ACLs existed) is the account's.
* A bucket's owner is the key that created it (kept with its ACL in
  ``buckets.acl``); an object's owner is the one its ownership controls
  chose when it was written (manifest meta ``owner``), and under
  BucketOwnerEnforced always the bucket owner, whatever was recorded.
* A missing or damaged ACL is ``private`` (``protocol/acl.py``), so damage
  only ever narrows access.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import apsw
import msgspec

from seglake.auth.canonical import canonical_id
from seglake.auth.directory import CanonicalIndex, KeyRecord
from seglake.config import Config, csv_list
from seglake.errors import S3Error
from seglake.ipc.messages import VersionMetaInit
from seglake.meta.acl_reads import bucket_access, object_access
from seglake.protocol import ownership as own
from seglake.protocol.acl import (
    Acl,
    Grant,
    acl_from_headers,
    grants_permission,
    owner_xml,
    parse_bucket_acl_text,
)


@dataclass(frozen=True)
class BucketAcl:
    owner: str
    acl: Acl
    ownership: str | None

    def grants(self) -> tuple[Grant, ...]:
        if self.ownership == own.ENFORCED:
            # ACLs disabled: the bucket's ACL is the owner's full control.
            return Acl(canned="private").expand(self.owner, self.owner)
        return self.acl.expand(self.owner, self.owner)

    def allows(self, requester: str | None, permission: str) -> bool:
        return grants_permission(self.grants(), self.owner, requester, permission)


@dataclass(frozen=True)
class ObjectAcl:
    version_id: str
    delete_marker: bool
    owner: str
    acl: Acl
    bucket: BucketAcl

    def grants(self) -> tuple[Grant, ...]:
        if self.bucket.ownership == own.ENFORCED:
            return Acl(canned="private").expand(self.owner, self.bucket.owner)
        return self.acl.expand(self.owner, self.bucket.owner)

    def allows(self, requester: str | None, permission: str) -> bool:
        return grants_permission(self.grants(), self.owner, requester, permission)


class AccessView:
    def __init__(self, conn: apsw.Connection, admin_key: str) -> None:
        self.conn = conn
        self.index = CanonicalIndex(conn, admin_key)

    @property
    def account_id(self) -> str:
        return self.index.admin_id

    def requester(self, record: KeyRecord | None) -> str | None:
        """The caller's canonical id; None when anonymous."""
        return None if record is None else canonical_id(record.access_key)

    def display_name(self, ident: str) -> str:
        name = self.index.display_name(ident)
        return name if name is not None else ident

    def bucket(self, bucket: str) -> BucketAcl | None:
        row = bucket_access(self.conn, bucket)
        if row is None:
            return None
        owner, acl = parse_bucket_acl_text(row.acl, self.account_id)
        ownership = row.ownership if row.ownership in own.SETTINGS else None
        return BucketAcl(owner, acl, ownership)

    def object(
        self, bucket: BucketAcl, name: str, key: str, version_id: str | None
    ) -> ObjectAcl | None:
        row = object_access(self.conn, name, key, version_id)
        if row is None:
            return None
        try:
            acl = Acl.from_value(row.acl)
        except ValueError:
            acl = Acl(canned="private")
        owner = row.owner if row.owner is not None else bucket.owner
        if bucket.ownership == own.ENFORCED:
            owner = bucket.owner
        return ObjectAcl(row.version_id, row.delete_marker, owner, acl, bucket)

    def new_object(
        self, headers: Mapping[str, str], record: KeyRecord | None, bucket: str, cfg: Config
    ) -> tuple[dict[str, Any] | None, str]:
        """The ACL (as version metadata stores it; None for private) and the
        owner of an object a PutObject, CopyObject, CreateMultipartUpload or
        POST upload creates, its ``x-amz-acl``/``x-amz-grant-*`` headers
        checked as AWS does (``protocol/acl.py``, ``protocol/ownership.py``).
        An anonymous writer (a bucket ACL granted WRITE) writes objects the
        bucket owner owns: AWS records them as owned by the anonymous user,
        who could do nothing more with them than the bucket ACL allows."""
        state = self.bucket(bucket)
        if state is None:
            raise S3Error("NoSuchBucket", resource=bucket, fields={"BucketName": bucket})
        acl = acl_from_headers(headers, self.index.known, bucket=False)
        if not own.acl_allowed(state.ownership, acl, state.owner):
            raise S3Error("AccessControlListNotSupported")
        writer = self.requester(record) or state.owner
        owner = own.object_owner(state.ownership, writer, state.owner, acl)
        refuse_public_acl(acl, owner, state.owner, cfg, bucket)
        if acl is None or acl.is_private:
            return None, owner
        return acl.to_value(), owner

    def owner_xml(self, ident: str, tag: str = "Owner") -> str:
        """``<Owner>`` (or ``<Initiator>``) with the id and its display name."""
        return owner_xml(ident, self.display_name(ident), tag)

    def owner_renderer(self) -> Callable[..., str]:
        """``owner_xml`` for one listing: each distinct owner is looked up
        once, not once per entry (a page lists up to 1000)."""
        return functools.cache(self.owner_xml)

    def listed_owner(self, bucket: BucketAcl | None, recorded: str | None) -> str:
        """Who a listing shows as an object's owner: the recorded one, the
        bucket owner under BucketOwnerEnforced or when none was recorded."""
        if bucket is None:
            return recorded if recorded is not None else self.account_id
        if bucket.ownership == own.ENFORCED or recorded is None:
            return bucket.owner
        return recorded


def refuse_public_acl(
    acl: Acl | None, owner: str, bucket_owner: str, cfg: Config, bucket: str
) -> None:
    """Seglake's Block Public Access: an ACL granting AllUsers anything is
    ``AccessDenied`` on a bucket not in ``--public-buckets``, where
    anonymous requests are never served (accepting it would tell the client
    its data is public when it is not)."""
    if acl is None or bucket in csv_list(cfg.public_buckets):
        return
    if acl.grants_all_users(owner, bucket_owner):
        raise S3Error(
            "AccessDenied",
            message="Public ACLs are blocked on this bucket: the operator has not listed it in "
            "--public-buckets, so anonymous requests are never served there",
        )


def with_acl(vmeta: VersionMetaInit | None, acl: dict[str, Any] | None) -> VersionMetaInit | None:
    """A new version's metadata (tags from ``x-amz-tagging``, ...) with the
    ACL ``AccessView.new_object`` gave it."""
    if acl is None:
        return vmeta
    if vmeta is None:
        return VersionMetaInit(acl=acl)
    return msgspec.structs.replace(vmeta, acl=acl)
