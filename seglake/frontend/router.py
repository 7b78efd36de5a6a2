"""Request → endpoint, decided once per request (pure).

The S3 operation is a function of the method, whether a bucket and key are
present, and which sub-resource query keyword is given. ``ROUTES`` is the one
table: (method, target, sub-resource) → operation name. Known S3 operations
that Seglake does not implement map to ``None`` and are answered with 501
``NotImplemented`` — never a wrong 200. ``docs/compatibility.md`` is
generated from this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

from seglake.errors import S3Error

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"

# Sub-resource keywords, in precedence order: a request carrying one of these
# is that sub-resource's operation, whatever else it carries. ``partNumber``
# is not here: with ``uploadId`` it is UploadPart, alone it selects a part of
# an object on GET/HEAD.
SUBRESOURCES: Final = (
    "uploadId", "uploads", "delete", "versioning", "versions", "location", "policy",
    "policyStatus", "cors", "acl", "tagging", "lifecycle", "encryption", "object-lock",
    "retention", "legal-hold", "attributes", "restore", "select", "torrent", "website",
    "logging", "notification", "replication", "requestPayment", "accelerate",
    "ownershipControls", "publicAccessBlock", "analytics", "metrics", "inventory",
    "intelligent-tiering",
)  # fmt: skip

# (method, target, sub-resource or "") → S3 operation name (AWS's API names).
# Whether Seglake implements an operation is decided by the handler families
# registered in ``app.py``: a routed operation without a handler is 501.
ROUTES: Final[dict[tuple[str, str, str], str]] = {
    ("GET", SERVICE, ""): "ListBuckets",
    ("PUT", BUCKET, ""): "CreateBucket",
    ("DELETE", BUCKET, ""): "DeleteBucket",
    ("HEAD", BUCKET, ""): "HeadBucket",
    ("GET", BUCKET, ""): "ListObjects",
    ("POST", BUCKET, ""): "PostObject",
    ("GET", BUCKET, "location"): "GetBucketLocation",
    ("GET", BUCKET, "versioning"): "GetBucketVersioning",
    ("PUT", BUCKET, "versioning"): "PutBucketVersioning",
    ("GET", BUCKET, "versions"): "ListObjectVersions",
    ("POST", BUCKET, "delete"): "DeleteObjects",
    ("GET", BUCKET, "uploads"): "ListMultipartUploads",
    ("GET", BUCKET, "policy"): "GetBucketPolicy",
    ("PUT", BUCKET, "policy"): "PutBucketPolicy",
    ("DELETE", BUCKET, "policy"): "DeleteBucketPolicy",
    ("GET", BUCKET, "policyStatus"): "GetBucketPolicyStatus",
    ("GET", BUCKET, "cors"): "GetBucketCors",
    ("PUT", BUCKET, "cors"): "PutBucketCors",
    ("DELETE", BUCKET, "cors"): "DeleteBucketCors",
    ("GET", BUCKET, "acl"): "GetBucketAcl",
    ("PUT", BUCKET, "acl"): "PutBucketAcl",
    ("GET", BUCKET, "tagging"): "GetBucketTagging",
    ("PUT", BUCKET, "tagging"): "PutBucketTagging",
    ("DELETE", BUCKET, "tagging"): "DeleteBucketTagging",
    ("GET", BUCKET, "lifecycle"): "GetBucketLifecycleConfiguration",
    ("PUT", BUCKET, "lifecycle"): "PutBucketLifecycleConfiguration",
    ("DELETE", BUCKET, "lifecycle"): "DeleteBucketLifecycle",
    ("GET", BUCKET, "encryption"): "GetBucketEncryption",
    ("PUT", BUCKET, "encryption"): "PutBucketEncryption",
    ("DELETE", BUCKET, "encryption"): "DeleteBucketEncryption",
    ("GET", BUCKET, "object-lock"): "GetObjectLockConfiguration",
    ("PUT", BUCKET, "object-lock"): "PutObjectLockConfiguration",
    ("GET", BUCKET, "website"): "GetBucketWebsite",
    ("PUT", BUCKET, "website"): "PutBucketWebsite",
    ("DELETE", BUCKET, "website"): "DeleteBucketWebsite",
    ("GET", BUCKET, "logging"): "GetBucketLogging",
    ("PUT", BUCKET, "logging"): "PutBucketLogging",
    ("GET", BUCKET, "notification"): "GetBucketNotificationConfiguration",
    ("PUT", BUCKET, "notification"): "PutBucketNotificationConfiguration",
    ("GET", BUCKET, "replication"): "GetBucketReplication",
    ("PUT", BUCKET, "replication"): "PutBucketReplication",
    ("DELETE", BUCKET, "replication"): "DeleteBucketReplication",
    ("GET", BUCKET, "requestPayment"): "GetBucketRequestPayment",
    ("PUT", BUCKET, "requestPayment"): "PutBucketRequestPayment",
    ("GET", BUCKET, "accelerate"): "GetBucketAccelerateConfiguration",
    ("PUT", BUCKET, "accelerate"): "PutBucketAccelerateConfiguration",
    ("GET", BUCKET, "ownershipControls"): "GetBucketOwnershipControls",
    ("PUT", BUCKET, "ownershipControls"): "PutBucketOwnershipControls",
    ("DELETE", BUCKET, "ownershipControls"): "DeleteBucketOwnershipControls",
    ("GET", BUCKET, "publicAccessBlock"): "GetPublicAccessBlock",
    ("PUT", BUCKET, "publicAccessBlock"): "PutPublicAccessBlock",
    ("DELETE", BUCKET, "publicAccessBlock"): "DeletePublicAccessBlock",
    ("GET", BUCKET, "analytics"): "GetBucketAnalyticsConfiguration",
    ("GET", BUCKET, "metrics"): "GetBucketMetricsConfiguration",
    ("GET", BUCKET, "inventory"): "GetBucketInventoryConfiguration",
    ("GET", BUCKET, "intelligent-tiering"): "GetBucketIntelligentTieringConfiguration",
    ("PUT", OBJECT, ""): "PutObject",
    ("GET", OBJECT, ""): "GetObject",
    ("HEAD", OBJECT, ""): "HeadObject",
    ("DELETE", OBJECT, ""): "DeleteObject",
    ("POST", OBJECT, "uploads"): "CreateMultipartUpload",
    ("PUT", OBJECT, "uploadId"): "UploadPart",
    ("GET", OBJECT, "uploadId"): "ListParts",
    ("POST", OBJECT, "uploadId"): "CompleteMultipartUpload",
    ("DELETE", OBJECT, "uploadId"): "AbortMultipartUpload",
    ("GET", OBJECT, "acl"): "GetObjectAcl",
    ("PUT", OBJECT, "acl"): "PutObjectAcl",
    ("GET", OBJECT, "tagging"): "GetObjectTagging",
    ("PUT", OBJECT, "tagging"): "PutObjectTagging",
    ("DELETE", OBJECT, "tagging"): "DeleteObjectTagging",
    ("GET", OBJECT, "attributes"): "GetObjectAttributes",
    ("POST", OBJECT, "restore"): "RestoreObject",
    ("POST", OBJECT, "select"): "SelectObjectContent",
    ("GET", OBJECT, "retention"): "GetObjectRetention",
    ("PUT", OBJECT, "retention"): "PutObjectRetention",
    ("GET", OBJECT, "legal-hold"): "GetObjectLegalHold",
    ("PUT", OBJECT, "legal-hold"): "PutObjectLegalHold",
    ("GET", OBJECT, "torrent"): "GetObjectTorrent",
}

# Operations selected by a header on top of the route above.
COPY_VARIANTS: Final = {"PutObject": "CopyObject", "UploadPart": "UploadPartCopy"}


@dataclass(frozen=True)
class Route:
    operation: str
    bucket: str
    key: str


def split_path(raw_path: bytes, host_bucket: str = "") -> tuple[str, str]:
    """``/bucket/key`` (percent-encoded) → (bucket, key), both decoded.

    With ``host_bucket`` (virtual-hosted style) the bucket came from the Host
    header and the whole path is the key: ``/key`` → (host_bucket, key).
    """
    if not raw_path.startswith(b"/"):
        raise S3Error("InvalidURI")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", message="The path is not valid UTF-8") from None
    if host_bucket:
        return host_bucket, path[1:]
    bucket, _, key = path[1:].partition("/")
    return bucket, key


def host_bucket(host: str | None, domains: tuple[str, ...] = ()) -> str:
    """The bucket named by a virtual-hosted-style Host header, or "" for path style.

    ``<bucket>.<d>`` for a base domain ``d`` in ``domains`` (longest match
    wins) and ``<bucket>.localhost`` are virtual-hosted; everything else —
    IPs, ``localhost``, a bare base domain, dot-less or unlisted names — is
    path style, so ``myhost.lan:9000`` is never read as bucket ``myhost``.
    ``domains`` are lowercase without a leading dot (``Config.domain_list``).
    """
    if not host:
        return ""
    name = host.strip().lower()
    if name.startswith("["):
        return ""  # IPv6 literal
    name = name.rsplit(":", 1)[0] if ":" in name else name
    name = name.rstrip(".")
    if name.replace(".", "").isdigit():
        return ""  # IPv4 literal
    for base in sorted((*domains, "localhost"), key=len, reverse=True):
        if name.endswith("." + base):
            return name[: -len(base) - 1]
    return ""


def route(
    method: str,
    raw_path: bytes,
    query: dict[str, list[str]],
    *,
    copy_source: bool = False,
    vhost_bucket: str = "",
) -> Route:
    """``copy_source``: the request carries ``x-amz-copy-source``;
    ``vhost_bucket``: the bucket from the Host header (``host_bucket``)."""
    bucket, key = split_path(raw_path, vhost_bucket)
    target = OBJECT if key else BUCKET if bucket else SERVICE
    sub = next((k for k in SUBRESOURCES if k in query), "")
    op = ROUTES.get((method, target, sub))
    if op is None:
        if sub:
            raise S3Error(
                "NotImplemented",
                message=f"{method} ?{sub} on {'an' if target == OBJECT else 'a'} {target} "
                "is not an operation Seglake implements",
            )
        raise S3Error("MethodNotAllowed")
    if op == "ListObjects" and query.get("list-type") == ["2"]:
        op = "ListObjectsV2"
    if copy_source and op in COPY_VARIANTS:
        op = COPY_VARIANTS[op]
    return Route(op, bucket, key)
