"""The one table of S3 errors, and the exception that carries a row of it.

Every S3-visible failure in Seglake is raised as ``S3Error(code, ...)`` where
``code`` is a key of ``ERRORS``; the ASGI layer turns it into AWS XML with the
status and extra headers of that row. Codes and statuses follow AWS S3's
documented error table so that SDK retry and error-handling logic behaves as
it would against AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    message: str


ERRORS: Final[dict[str, ErrorSpec]] = {
    # 3xx / 4xx client errors
    "NotModified": ErrorSpec(304, "Not Modified"),
    "AccessDenied": ErrorSpec(403, "Access Denied"),
    # A refused CORS preflight (OPTIONS): origin, method or headers not allowed.
    # A request that sets an ACL on a bucket whose ownership controls are
    # BucketOwnerEnforced (ACLs disabled).
    "AccessControlListNotSupported": ErrorSpec(400, "The bucket does not allow ACLs"),
    "AccessForbidden": ErrorSpec(403, "CORSResponse: This CORS request is not allowed."),
    "AuthorizationHeaderMalformed": ErrorSpec(400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": ErrorSpec(
        400, "Error parsing the X-Amz-Credential parameter."
    ),
    "BadDigest": ErrorSpec(400, "The Content-MD5 you specified did not match what we received."),
    "BucketAlreadyExists": ErrorSpec(409, "The requested bucket name is not available."),
    "BucketAlreadyOwnedByYou": ErrorSpec(
        409, "Your previous request to create the named bucket succeeded and you already own it."
    ),
    "BucketNotEmpty": ErrorSpec(409, "The bucket you tried to delete is not empty."),
    # A conditional write passed its condition, but the key was written or
    # deleted while the request (or the multipart upload) was under way.
    "ConditionalRequestConflict": ErrorSpec(
        409,
        "A conflicting operation ran on this key during the request. Retry a PutObject or "
        "CopyObject; for a multipart upload, start a new upload and send the parts again.",
    ),
    "EntityTooLarge": ErrorSpec(400, "Your proposed upload exceeds the maximum allowed size."),
    "EntityTooSmall": ErrorSpec(
        400, "Your proposed upload is smaller than the minimum allowed object size."
    ),
    "ExpiredToken": ErrorSpec(400, "The provided token has expired."),
    "IllegalVersioningConfigurationException": ErrorSpec(
        400, "The versioning configuration specified in the request is invalid."
    ),
    "IncompleteBody": ErrorSpec(
        400, "You did not provide the number of bytes specified by the Content-Length HTTP header."
    ),
    "InvalidAccessKeyId": ErrorSpec(
        403, "The AWS access key Id you provided does not exist in our records."
    ),
    "InvalidArgument": ErrorSpec(400, "Invalid Argument"),
    # BucketOwnerEnforced asked for while the bucket's ACL grants others access.
    "InvalidBucketAclWithObjectOwnership": ErrorSpec(
        400, "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
    ),
    # Object Lock: versioning cannot be suspended, lock not enableable here.
    "InvalidBucketState": ErrorSpec(
        409, "The request is not valid with the current state of the bucket."
    ),
    "InvalidBucketName": ErrorSpec(400, "The specified bucket is not valid."),
    "InvalidEncryptionAlgorithmError": ErrorSpec(
        400, "The Encryption request you specified is not valid. Supported value: AES256."
    ),
    "ServerSideEncryptionConfigurationNotFoundError": ErrorSpec(
        404, "The server side encryption configuration was not found"
    ),
    "InvalidChunkSizeError": ErrorSpec(
        400, "Only the last chunk is allowed to have a size less than 8192 bytes"
    ),
    "InvalidDigest": ErrorSpec(400, "The Content-MD5 you specified is not valid."),
    "InvalidEncodingType": ErrorSpec(400, "Invalid Encoding Method specified in Request"),
    "InvalidObjectState": ErrorSpec(
        403, "The operation is not valid for the current state of the object."
    ),
    "InvalidPart": ErrorSpec(
        400,
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag.",
    ),
    "InvalidPartNumber": ErrorSpec(416, "The requested partnumber is not satisfiable"),
    "InvalidPartOrder": ErrorSpec(
        400,
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
    ),
    "InvalidRange": ErrorSpec(416, "The requested range is not satisfiable"),
    "InvalidRequest": ErrorSpec(400, "Invalid Request"),
    "InvalidURI": ErrorSpec(400, "Couldn't parse the specified URI."),
    "InvalidTag": ErrorSpec(
        400,
        "The tag provided was not a valid tag. This error can occur if the tag did not pass "
        "input validation.",
    ),
    "KeyTooLongError": ErrorSpec(400, "Your key is too long."),
    # Browser form uploads (POST Object): the form, its file count, its policy.
    "MalformedPOSTRequest": ErrorSpec(
        400, "The body of your POST request is not well-formed multipart/form-data."
    ),
    "IncorrectNumberOfFilesInPostRequest": ErrorSpec(
        400, "POST requires exactly one file upload per request."
    ),
    "InvalidPolicyDocument": ErrorSpec(
        400,
        "The content of the form does not meet the conditions specified in the policy document.",
    ),
    "MalformedACLError": ErrorSpec(
        400,
        "The XML you provided was not well-formed or did not validate against our published schema.",
    ),
    "MalformedXML": ErrorSpec(
        400,
        "The XML you provided was not well-formed or did not validate against our published schema.",
    ),
    "MalformedPolicy": ErrorSpec(400, "Policies must be valid JSON and the first byte must be '{'"),
    "MaxMessageLengthExceeded": ErrorSpec(400, "Your request was too big."),
    "MetadataTooLarge": ErrorSpec(
        400, "Your metadata headers exceed the maximum allowed metadata size."
    ),
    "MethodNotAllowed": ErrorSpec(
        405, "The specified method is not allowed against this resource."
    ),
    "MissingContentLength": ErrorSpec(411, "You must provide the Content-Length HTTP header."),
    "MissingSecurityHeader": ErrorSpec(400, "Your request is missing a required header."),
    "NoSuchBucket": ErrorSpec(404, "The specified bucket does not exist."),
    "NoSuchBucketPolicy": ErrorSpec(404, "The bucket policy does not exist"),
    "NoSuchCORSConfiguration": ErrorSpec(404, "The CORS configuration does not exist"),
    "NoSuchKey": ErrorSpec(404, "The specified key does not exist."),
    "NoSuchObjectLockConfiguration": ErrorSpec(
        404, "The specified object does not have a ObjectLock configuration"
    ),
    "ObjectLockConfigurationNotFoundError": ErrorSpec(
        404, "Object Lock configuration does not exist for this bucket"
    ),
    "NoSuchLifecycleConfiguration": ErrorSpec(404, "The lifecycle configuration does not exist"),
    "NoSuchTagSet": ErrorSpec(404, "The TagSet does not exist"),
    "NoSuchUpload": ErrorSpec(
        404,
        "The specified multipart upload does not exist. The upload ID might be invalid, "
        "or the multipart upload might have been aborted or completed.",
    ),
    "NoSuchVersion": ErrorSpec(
        404, "The version ID specified in the request does not match an existing version."
    ),
    "OwnershipControlsNotFoundError": ErrorSpec(
        404, "The bucket ownership controls were not found"
    ),
    "PreconditionFailed": ErrorSpec(
        412, "At least one of the preconditions you specified did not hold."
    ),
    # RFC 6585: a write to a bucket in --require-if-match-buckets without
    # If-Match (overwrite guard) or If-None-Match: * (create only).
    "PreconditionRequired": ErrorSpec(
        428, "This bucket requires conditional writes: send If-Match or If-None-Match: *."
    ),
    "RequestHeaderSectionTooLarge": ErrorSpec(
        400, "Your request header section exceeds the maximum allowed size."
    ),
    "RequestTimeout": ErrorSpec(
        400,
        "Your socket connection to the server was not read from or written to within "
        "the timeout period.",
    ),
    "RequestTimeTooSkewed": ErrorSpec(
        403, "The difference between the request time and the server's time is too large."
    ),
    "SignatureDoesNotMatch": ErrorSpec(
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "UnresolvableGrantByEmailAddress": ErrorSpec(
        400, "The email address you provided does not match any account on record."
    ),
    "XAmzContentSHA256Mismatch": ErrorSpec(
        400, "The provided 'x-amz-content-sha256' header does not match what was computed."
    ),
    "SlowDown": ErrorSpec(503, "Please reduce your request rate."),
    "ServiceUnavailable": ErrorSpec(503, "The service is unavailable. Please retry."),
    "MaintenanceMode": ErrorSpec(
        503, "The server is in maintenance mode and refuses writes; reads keep working."
    ),
    # Replication (docs/design-replication.md §5): Seglake's own codes, each
    # recorded in repl_remotes.last_error by the side that got it.
    "ReplicationBadBatch": ErrorSpec(
        400, "The replication batch is malformed; nothing of it was applied."
    ),
    "ReplicationGap": ErrorSpec(
        409, "The replication batch starts after this site's cursor for its sender."
    ),
    "ReplicationCursorMismatch": ErrorSpec(
        409, "The replication batch does not start at this site's stored cursor."
    ),
    "ReplicationMissingChunk": ErrorSpec(
        409, "An entry names a chunk this site does not have and the batch did not carry."
    ),
    "ReplicationBadChunk": ErrorSpec(
        400, "A replicated chunk's bytes do not match its digest; nothing was applied."
    ),
    "OplogTruncated": ErrorSpec(
        410, "The oplog no longer holds entries after this cursor; bootstrap the site."
    ),
    # 5xx server errors
    "InternalError": ErrorSpec(500, "We encountered an internal error. Please try again."),
    "ObjectDamaged": ErrorSpec(
        500, "The stored object failed its integrity check and cannot be served."
    ),
    "NotImplemented": ErrorSpec(
        501, "A header or operation you provided implies functionality that is not implemented."
    ),
    "InsufficientStorage": ErrorSpec(
        507, "The server does not have enough free space to store this object."
    ),
}


@dataclass
class S3Error(Exception):
    """An S3 error response. ``code`` must be a key of ``ERRORS``.

    ``message`` overrides the table's generic text when a more specific
    explanation helps the caller; ``headers`` are extra response headers
    (e.g. ``Content-Range`` for ``InvalidRange``); ``fields`` are extra XML
    elements AWS includes for this code (e.g. ``Key``, ``BucketName``).
    """

    code: str
    message: str | None = None
    resource: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ERRORS:
            raise KeyError(f"unknown S3 error code {self.code!r}")
        super().__init__(self.code, self.text)

    @property
    def status(self) -> int:
        return ERRORS[self.code].status

    @property
    def text(self) -> str:
        return self.message if self.message is not None else ERRORS[self.code].message

    def __str__(self) -> str:
        return f"{self.code}: {self.text}"
