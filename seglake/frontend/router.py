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

# Sub-resource keywords S3 defines; a request carrying one of these is that
# sub-resource's operation, whatever else it carries.
SUBRESOURCES: Final = (
    "acl", "accelerate", "analytics", "attributes", "cors", "delete", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
    "metrics", "notification", "object-lock", "ownershipControls", "partNumber", "policy",
    "policyStatus", "publicAccessBlock", "replication", "requestPayment", "restore", "retention",
    "select", "tagging", "torrent", "uploadId", "uploads", "versioning", "versions", "website",
)  # fmt: skip

# (method, target, sub-resource or "") → operation; None = known, not implemented.
ROUTES: Final[dict[tuple[str, str, str], str | None]] = {
    ("GET", SERVICE, ""): "ListBuckets",
    ("PUT", BUCKET, ""): "CreateBucket",
    ("DELETE", BUCKET, ""): "DeleteBucket",
    ("HEAD", BUCKET, ""): "HeadBucket",
    ("GET", BUCKET, ""): "ListObjects",
    ("GET", BUCKET, "location"): "GetBucketLocation",
    ("PUT", OBJECT, ""): "PutObject",
    ("GET", OBJECT, ""): "GetObject",
    ("HEAD", OBJECT, ""): "HeadObject",
    ("DELETE", OBJECT, ""): "DeleteObject",
    # Known S3 operations not implemented yet.
    ("GET", BUCKET, "versioning"): None,
    ("PUT", BUCKET, "versioning"): None,
    ("GET", BUCKET, "versions"): None,
    ("POST", BUCKET, "delete"): None,
    ("GET", BUCKET, "uploads"): None,
    ("POST", OBJECT, "uploads"): None,
    ("PUT", OBJECT, "uploadId"): None,
    ("GET", OBJECT, "uploadId"): None,
    ("POST", OBJECT, "uploadId"): None,
    ("DELETE", OBJECT, "uploadId"): None,
    ("GET", BUCKET, "policy"): None,
    ("PUT", BUCKET, "policy"): None,
    ("DELETE", BUCKET, "policy"): None,
    ("GET", BUCKET, "cors"): None,
    ("PUT", BUCKET, "cors"): None,
    ("DELETE", BUCKET, "cors"): None,
    ("GET", BUCKET, "acl"): None,
    ("PUT", BUCKET, "acl"): None,
    ("GET", OBJECT, "acl"): None,
    ("PUT", OBJECT, "acl"): None,
    ("GET", BUCKET, "tagging"): None,
    ("PUT", BUCKET, "tagging"): None,
    ("DELETE", BUCKET, "tagging"): None,
    ("GET", OBJECT, "tagging"): None,
    ("PUT", OBJECT, "tagging"): None,
    ("DELETE", OBJECT, "tagging"): None,
    ("GET", BUCKET, "lifecycle"): None,
    ("PUT", BUCKET, "lifecycle"): None,
    ("DELETE", BUCKET, "lifecycle"): None,
    ("GET", BUCKET, "encryption"): None,
    ("PUT", BUCKET, "encryption"): None,
    ("GET", BUCKET, "object-lock"): None,
    ("GET", OBJECT, "attributes"): None,
    ("POST", OBJECT, "restore"): None,
    ("POST", OBJECT, "select"): None,
}


@dataclass(frozen=True)
class Route:
    operation: str
    bucket: str
    key: str


def split_path(raw_path: bytes) -> tuple[str, str]:
    """``/bucket/key`` (percent-encoded) → (bucket, key), both decoded."""
    if not raw_path.startswith(b"/"):
        raise S3Error("InvalidURI")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", message="The path is not valid UTF-8") from None
    bucket, _, key = path[1:].partition("/")
    return bucket, key


def route(method: str, raw_path: bytes, query: dict[str, list[str]]) -> Route:
    bucket, key = split_path(raw_path)
    target = OBJECT if key else BUCKET if bucket else SERVICE
    sub = next((k for k in SUBRESOURCES if k in query), "")
    if sub == "partNumber":
        sub = ""  # GET/HEAD ?partNumber=N is a GetObject variant (#3)
    op = ROUTES.get((method, target, sub))
    if op is None:
        if (method, target, sub) in ROUTES or sub:
            raise S3Error(
                "NotImplemented",
                message=f"{method} ?{sub} on {'an' if target == OBJECT else 'a'} {target} "
                "is not implemented by Seglake",
            )
        raise S3Error("MethodNotAllowed")
    if op == "ListObjects" and query.get("list-type") == ["2"]:
        op = "ListObjectsV2"
    return Route(op, bucket, key)
