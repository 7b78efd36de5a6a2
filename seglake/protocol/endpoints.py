"""Every S3 endpoint Seglake knows, declared once (pure data).

An endpoint is decided from the method, what the path names (the service, a
bucket or an object), at most one sub-resource query keyword, and for a few
endpoints one more query value or header — after Garage's S3 router. Each
row says everything the rest of the code needs to know about it:

* the router (``frontend/router.py``) finds the row from the request;
* authorisation (``frontend/authz.py``) and the policy evaluator
  (``protocol/policy.py``) read its policy actions and its auth facts;
* dispatch (``frontend/dispatch.py``) binds its ``handler``;
* ``docs/compatibility.md`` (``frontend/compat.py``) lists it.

Rules this table keeps (``tests/unit/test_endpoints.py`` checks them):

* Names are AWS's API operation names and are unique.
* Every endpoint has at least one policy action, implemented or not: a
  policy may name an unimplemented operation, a deny on it is honoured, and
  a non-admin key is refused before learning it is absent. The first action
  is the AWS IAM name; the others are Seglake v1 names for the same
  operation (a v1 policy may say ``HeadObject`` or ``ListMultipartParts``).
* ``handler`` is ``"<family>.<method>"``, a handler method of a family in
  ``frontend/dispatch.py``; None means the request is authorised like any
  other and then answered ``501 NotImplemented`` — never a wrong ``200``.
* For one (method, target, sub-resource) there is exactly one endpoint with
  no further condition; the others (``query``, ``copy_source``) are chosen
  over it when their condition holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Final

# What the path names: ``/``, ``/bucket``, ``/bucket/key``.
SERVICE, BUCKET, OBJECT = "service", "bucket", "object"

COPY_SOURCE_HEADER: Final = "x-amz-copy-source"

# Sub-resource query keywords, in precedence order: a request carrying one of
# these is that sub-resource's endpoint, whatever else it carries.
# ``partNumber`` is not here: with ``uploadId`` it is UploadPart, alone it
# selects a part of an object on GET/HEAD.
SUBRESOURCES: Final = (
    "uploadId", "uploads", "delete", "versioning", "versions", "location", "policy",
    "policyStatus", "cors", "acl", "tagging", "lifecycle", "encryption", "object-lock",
    "retention", "legal-hold", "attributes", "restore", "select", "torrent", "website",
    "logging", "notification", "replication", "requestPayment", "accelerate",
    "ownershipControls", "publicAccessBlock", "analytics", "metrics", "inventory",
    "intelligent-tiering",
)  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    # SERVICE, BUCKET or OBJECT: also the policy resource kind (a bucket, or
    # bucket/key), and who may ask: a bucket or object endpoint anonymously
    # on a public bucket when its policy allows "*", a service one never.
    target: str
    subresource: str = ""  # a SUBRESOURCES keyword, or "" for none
    _: KW_ONLY
    actions: tuple[str, ...]
    handler: str | None = None
    # Chosen over the plain endpoint of the same route when the query has
    # exactly this one value for this key (``?list-type=2``).
    query: tuple[str, str] | None = None
    # Chosen over the plain endpoint when ``x-amz-copy-source`` is present;
    # the source object is then authorised as a GetObject too.
    copy_source: bool = False
    # The request carries the listing condition keys s3:prefix/s3:delimiter.
    listing: bool = False
    # The ``ro`` key-policy shorthand grants this endpoint's actions (and
    # its version action).
    granted_by_ro: bool = False
    # With ``?versionId`` the request is also this action (AWS's version
    # action), so an allow of either grants it and a deny of either refuses.
    version_action: str | None = None
    # The objects are named in the body and each is authorised by the
    # handler as this operation (``Request.object_check``); up front only
    # "could any statement allow it" is checked, to refuse hopeless bodies.
    per_object: str | None = None
    # The admin may run it whatever a bucket policy denies, so the operator
    # can always repair a policy.
    policy_repair: bool = False
    # May be signed by its form fields (a browser POST upload) instead of
    # its headers or query.
    signed_form: bool = False
    # Seglake's own endpoints (``OWN_ENDPOINTS``) are found by this exact
    # path (path style only), never by the S3 routing rules.
    path: str = ""


E = Endpoint


def _501(name: str, method: str, target: str, subresource: str, action: str) -> Endpoint:
    """A known S3 operation Seglake does not implement: no handler, one AWS
    IAM action."""
    return Endpoint(name, method, target, subresource, actions=(action,))


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    # ---- service -----------------------------------------------------------
    E("ListBuckets", "GET", SERVICE, actions=("ListAllMyBuckets", "ListBuckets"),
      handler="buckets.list_buckets", granted_by_ro=True),
    # ---- buckets -----------------------------------------------------------
    E("CreateBucket", "PUT", BUCKET, actions=("CreateBucket",), handler="buckets.create_bucket"),
    E("DeleteBucket", "DELETE", BUCKET, actions=("DeleteBucket",),
      handler="buckets.delete_bucket"),
    E("HeadBucket", "HEAD", BUCKET, actions=("ListBucket", "HeadBucket"),
      handler="buckets.head_bucket", granted_by_ro=True),
    E("GetBucketLocation", "GET", BUCKET, "location", actions=("GetBucketLocation",),
      handler="buckets.get_bucket_location", granted_by_ro=True),
    E("ListObjects", "GET", BUCKET, actions=("ListBucket",),
      handler="buckets.list_objects_v1", listing=True, granted_by_ro=True),
    E("ListObjectsV2", "GET", BUCKET, query=("list-type", "2"), actions=("ListBucket",),
      handler="buckets.list_objects_v2", listing=True, granted_by_ro=True),
    E("PostObject", "POST", BUCKET, actions=("PutObject",), handler="postobject.post_object",
      per_object="PutObject", signed_form=True),
    E("DeleteObjects", "POST", BUCKET, "delete", actions=("DeleteObject",),
      handler="multidelete.delete_objects", per_object="DeleteObject"),
    # versioning
    E("GetBucketVersioning", "GET", BUCKET, "versioning", actions=("GetBucketVersioning",),
      handler="versioning.get_bucket_versioning", granted_by_ro=True),
    E("PutBucketVersioning", "PUT", BUCKET, "versioning", actions=("PutBucketVersioning",),
      handler="versioning.put_bucket_versioning"),
    E("ListObjectVersions", "GET", BUCKET, "versions", actions=("ListBucketVersions",),
      handler="versioning.list_object_versions", listing=True, granted_by_ro=True),
    # bucket policy
    E("GetBucketPolicy", "GET", BUCKET, "policy", actions=("GetBucketPolicy",),
      handler="bucket_policy.get_policy", policy_repair=True),
    E("PutBucketPolicy", "PUT", BUCKET, "policy", actions=("PutBucketPolicy",),
      handler="bucket_policy.put_policy", policy_repair=True),
    E("DeleteBucketPolicy", "DELETE", BUCKET, "policy", actions=("DeleteBucketPolicy",),
      handler="bucket_policy.delete_policy", policy_repair=True),
    E("GetBucketPolicyStatus", "GET", BUCKET, "policyStatus", actions=("GetBucketPolicyStatus",),
      handler="bucket_policy.get_policy_status", granted_by_ro=True),
    # lifecycle (AWS has no delete action: DeleteBucketLifecycle is a Put)
    E("GetBucketLifecycleConfiguration", "GET", BUCKET, "lifecycle",
      actions=("GetLifecycleConfiguration",), handler="bucket_lifecycle.get_lifecycle"),
    E("PutBucketLifecycleConfiguration", "PUT", BUCKET, "lifecycle",
      actions=("PutLifecycleConfiguration",), handler="bucket_lifecycle.put_lifecycle"),
    E("DeleteBucketLifecycle", "DELETE", BUCKET, "lifecycle",
      actions=("PutLifecycleConfiguration",), handler="bucket_lifecycle.delete_lifecycle"),
    # CORS (AWS has no delete action: DeleteBucketCors is a Put)
    E("GetBucketCors", "GET", BUCKET, "cors", actions=("GetBucketCORS",),
      handler="bucket_cors.get_cors"),
    E("PutBucketCors", "PUT", BUCKET, "cors", actions=("PutBucketCORS",),
      handler="bucket_cors.put_cors"),
    E("DeleteBucketCors", "DELETE", BUCKET, "cors", actions=("PutBucketCORS",),
      handler="bucket_cors.delete_cors"),
    # default encryption (AWS has no delete action: DeleteBucketEncryption is a Put)
    E("GetBucketEncryption", "GET", BUCKET, "encryption",
      actions=("GetEncryptionConfiguration",), handler="bucket_encryption.get_encryption"),
    E("PutBucketEncryption", "PUT", BUCKET, "encryption",
      actions=("PutEncryptionConfiguration",), handler="bucket_encryption.put_encryption"),
    E("DeleteBucketEncryption", "DELETE", BUCKET, "encryption",
      actions=("PutEncryptionConfiguration",), handler="bucket_encryption.delete_encryption"),
    E("ListMultipartUploads", "GET", BUCKET, "uploads",
      actions=("ListBucketMultipartUploads", "ListMultipartUploads"),
      handler="multipart.list_multipart_uploads", listing=True, granted_by_ro=True),
    # tagging (AWS has no delete action: DeleteBucketTagging is a Put)
    E("GetBucketTagging", "GET", BUCKET, "tagging", actions=("GetBucketTagging",),
      handler="tagging.get_bucket_tagging", granted_by_ro=True),
    E("PutBucketTagging", "PUT", BUCKET, "tagging", actions=("PutBucketTagging",),
      handler="tagging.put_bucket_tagging"),
    E("DeleteBucketTagging", "DELETE", BUCKET, "tagging", actions=("PutBucketTagging",),
      handler="tagging.delete_bucket_tagging"),
    # ACLs and ownership controls (AWS has no delete action for ownership
    # controls: DeleteBucketOwnershipControls is a Put)
    E("GetBucketAcl", "GET", BUCKET, "acl", actions=("GetBucketAcl",),
      handler="acl.get_bucket_acl", granted_by_ro=True),
    E("PutBucketAcl", "PUT", BUCKET, "acl", actions=("PutBucketAcl",),
      handler="acl.put_bucket_acl"),
    E("GetBucketOwnershipControls", "GET", BUCKET, "ownershipControls",
      actions=("GetBucketOwnershipControls",), handler="acl.get_ownership", granted_by_ro=True),
    E("PutBucketOwnershipControls", "PUT", BUCKET, "ownershipControls",
      actions=("PutBucketOwnershipControls",), handler="acl.put_ownership"),
    E("DeleteBucketOwnershipControls", "DELETE", BUCKET, "ownershipControls",
      actions=("PutBucketOwnershipControls",), handler="acl.delete_ownership"),
    E("GetObjectLockConfiguration", "GET", BUCKET, "object-lock",
      actions=("GetBucketObjectLockConfiguration",),
      handler="object_lock.get_object_lock_configuration", granted_by_ro=True),
    E("PutObjectLockConfiguration", "PUT", BUCKET, "object-lock",
      actions=("PutBucketObjectLockConfiguration",),
      handler="object_lock.put_object_lock_configuration"),
    # bucket sub-resources Seglake does not implement (501)
    _501("GetBucketWebsite", "GET", BUCKET, "website", "GetBucketWebsite"),
    _501("PutBucketWebsite", "PUT", BUCKET, "website", "PutBucketWebsite"),
    _501("DeleteBucketWebsite", "DELETE", BUCKET, "website", "DeleteBucketWebsite"),
    _501("GetBucketLogging", "GET", BUCKET, "logging", "GetBucketLogging"),
    _501("PutBucketLogging", "PUT", BUCKET, "logging", "PutBucketLogging"),
    _501("GetBucketNotificationConfiguration", "GET", BUCKET, "notification", "GetBucketNotification"),
    _501("PutBucketNotificationConfiguration", "PUT", BUCKET, "notification", "PutBucketNotification"),
    _501("GetBucketReplication", "GET", BUCKET, "replication", "GetReplicationConfiguration"),
    _501("PutBucketReplication", "PUT", BUCKET, "replication", "PutReplicationConfiguration"),
    _501("DeleteBucketReplication", "DELETE", BUCKET, "replication", "PutReplicationConfiguration"),
    _501("GetBucketRequestPayment", "GET", BUCKET, "requestPayment", "GetBucketRequestPayment"),
    _501("PutBucketRequestPayment", "PUT", BUCKET, "requestPayment", "PutBucketRequestPayment"),
    _501("GetBucketAccelerateConfiguration", "GET", BUCKET, "accelerate", "GetAccelerateConfiguration"),
    _501("PutBucketAccelerateConfiguration", "PUT", BUCKET, "accelerate", "PutAccelerateConfiguration"),
    _501("GetPublicAccessBlock", "GET", BUCKET, "publicAccessBlock", "GetBucketPublicAccessBlock"),
    _501("PutPublicAccessBlock", "PUT", BUCKET, "publicAccessBlock", "PutBucketPublicAccessBlock"),
    _501("DeletePublicAccessBlock", "DELETE", BUCKET, "publicAccessBlock", "PutBucketPublicAccessBlock"),
    _501("GetBucketAnalyticsConfiguration", "GET", BUCKET, "analytics", "GetAnalyticsConfiguration"),
    _501("GetBucketMetricsConfiguration", "GET", BUCKET, "metrics", "GetMetricsConfiguration"),
    _501("GetBucketInventoryConfiguration", "GET", BUCKET, "inventory", "GetInventoryConfiguration"),
    _501("GetBucketIntelligentTieringConfiguration", "GET", BUCKET, "intelligent-tiering", "GetIntelligentTieringConfiguration"),
    # ---- objects -----------------------------------------------------------
    E("PutObject", "PUT", OBJECT, actions=("PutObject",), handler="objects.put_object"),
    E("CopyObject", "PUT", OBJECT, copy_source=True, actions=("PutObject", "CopyObject"),
      handler="copy.copy_object"),
    E("GetObject", "GET", OBJECT, actions=("GetObject",), handler="objects.get_object",
      granted_by_ro=True, version_action="GetObjectVersion"),
    E("HeadObject", "HEAD", OBJECT, actions=("GetObject", "HeadObject"),
      handler="objects.head_object", granted_by_ro=True, version_action="GetObjectVersion"),
    E("DeleteObject", "DELETE", OBJECT, actions=("DeleteObject",),
      handler="objects.delete_object", version_action="DeleteObjectVersion"),
    E("GetObjectAttributes", "GET", OBJECT, "attributes", actions=("GetObjectAttributes",),
      handler="objects.get_object_attributes", granted_by_ro=True,
      version_action="GetObjectVersionAttributes"),
    # object ACLs
    E("GetObjectAcl", "GET", OBJECT, "acl", actions=("GetObjectAcl",),
      handler="acl.get_object_acl", granted_by_ro=True, version_action="GetObjectVersionAcl"),
    E("PutObjectAcl", "PUT", OBJECT, "acl", actions=("PutObjectAcl",),
      handler="acl.put_object_acl", version_action="PutObjectVersionAcl"),
    # multipart
    E("CreateMultipartUpload", "POST", OBJECT, "uploads",
      actions=("PutObject", "CreateMultipartUpload"), handler="multipart.create_multipart_upload"),
    E("UploadPart", "PUT", OBJECT, "uploadId", actions=("PutObject", "UploadPart"),
      handler="multipart.upload_part"),
    E("UploadPartCopy", "PUT", OBJECT, "uploadId", copy_source=True,
      actions=("PutObject", "UploadPart"), handler="multipart.upload_part_copy"),
    E("ListParts", "GET", OBJECT, "uploadId",
      actions=("ListMultipartUploadParts", "ListMultipartParts"), handler="multipart.list_parts",
      granted_by_ro=True),
    E("CompleteMultipartUpload", "POST", OBJECT, "uploadId",
      actions=("PutObject", "CompleteMultipartUpload"),
      handler="multipart.complete_multipart_upload"),
    E("AbortMultipartUpload", "DELETE", OBJECT, "uploadId", actions=("AbortMultipartUpload",),
      handler="multipart.abort_multipart_upload"),
    # tagging: with ?versionId also the version actions, as AWS
    E("GetObjectTagging", "GET", OBJECT, "tagging", actions=("GetObjectTagging",),
      handler="tagging.get_object_tagging", granted_by_ro=True,
      version_action="GetObjectVersionTagging"),
    E("PutObjectTagging", "PUT", OBJECT, "tagging", actions=("PutObjectTagging",),
      handler="tagging.put_object_tagging", version_action="PutObjectVersionTagging"),
    E("DeleteObjectTagging", "DELETE", OBJECT, "tagging", actions=("DeleteObjectTagging",),
      handler="tagging.delete_object_tagging", version_action="DeleteObjectVersionTagging"),
    # object sub-resources Seglake does not implement (501)
    _501("RestoreObject", "POST", OBJECT, "restore", "RestoreObject"),
    _501("SelectObjectContent", "POST", OBJECT, "select", "GetObject"),
    E("GetObjectRetention", "GET", OBJECT, "retention", actions=("GetObjectRetention",),
      handler="object_lock.get_object_retention", granted_by_ro=True),
    E("PutObjectRetention", "PUT", OBJECT, "retention", actions=("PutObjectRetention",),
      handler="object_lock.put_object_retention"),
    E("GetObjectLegalHold", "GET", OBJECT, "legal-hold", actions=("GetObjectLegalHold",),
      handler="object_lock.get_object_legal_hold", granted_by_ro=True),
    E("PutObjectLegalHold", "PUT", OBJECT, "legal-hold", actions=("PutObjectLegalHold",),
      handler="object_lock.put_object_legal_hold"),
    _501("GetObjectTorrent", "GET", OBJECT, "torrent", "GetObjectTorrent"),
)  # fmt: skip

# Seglake's own HTTP endpoints (SPEC §6: ``GET /v1/meta/stats``,
# ``GET /v1/meta/conflicts``, ``/v1/replication/*``). Each is its own policy
# action, on the service (no bucket); the value says whether the ``ro``
# shorthand grants it. Those with a row in ``OWN_ENDPOINTS`` are served;
# the others are declared so a policy may already name them.
OWN_OPERATIONS: Final[Mapping[str, bool]] = {
    "GetMetaStats": True,
    "GetMetaConflicts": True,
    "ReplicationRead": False,
    "ReplicationWrite": False,
}

# The own endpoints that are served, each at one exact path. ``/v1/...``
# cannot name a bucket (bucket names have at least three characters), so
# these paths shadow no S3 request. Each has exactly one action, an own
# operation; several endpoints may share one (the replication endpoints
# are all ``ReplicationRead`` or ``ReplicationWrite``).
OWN_ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    E("GetMetaStats", "GET", SERVICE, actions=("GetMetaStats",), handler="observe.meta_stats",
      granted_by_ro=True, path="/v1/meta/stats"),
    # Replication (docs/design-replication.md §5, frontend/replication.py).
    E("GetReplicationOplog", "GET", SERVICE, actions=("ReplicationRead",),
      handler="replication.get_oplog", path="/v1/replication/oplog"),
    E("PushReplicationOplog", "POST", SERVICE, actions=("ReplicationWrite",),
      handler="replication.push_oplog", path="/v1/replication/oplog"),
    E("ReplicationHave", "POST", SERVICE, actions=("ReplicationWrite",),
      handler="replication.have", path="/v1/replication/have"),
    E("GetReplicationManifests", "GET", SERVICE, actions=("ReplicationRead",),
      handler="replication.get_manifests", path="/v1/replication/manifest"),
    E("GetReplicationChunks", "GET", SERVICE, actions=("ReplicationRead",),
      handler="replication.get_chunks", path="/v1/replication/chunk"),
    E("GetMetaConflicts", "GET", SERVICE, actions=("GetMetaConflicts",),
      handler="conflicts.meta_conflicts", granted_by_ro=True, path="/v1/meta/conflicts"),
    E("GetReplicationSnapshot", "GET", SERVICE, actions=("ReplicationRead",),
      handler="repl_snapshot.get_snapshot", path="/v1/replication/snapshot"),
)  # fmt: skip

# Object Lock: a permission that is no operation of its own. A request that
# asks to bypass GOVERNANCE retention (DeleteObject, DeleteObjects,
# PutObjectRetention) is also checked as this action on the same object;
# without an allow the bypass is not applied (the request itself still runs).
BYPASS_GOVERNANCE: Final = "BypassGovernanceRetention"

ENDPOINT_BY_NAME: Final[Mapping[str, Endpoint]] = {e.name: e for e in (*ENDPOINTS, *OWN_ENDPOINTS)}
