"""Request headers that ask for something Seglake does not do yet.

Each would change what is stored or who may read it (KMS encryption, Object
Lock, storage classes). Accepting one and storing a plain object would let
the client believe its data is encrypted or locked when it is not, so a
request carrying one is refused with ``501 NotImplemented`` before a byte
of its body is read. A header sent with the one value that means "the
default" (``x-amz-storage-class: STANDARD``) asks for what Seglake does
anyway and passes: SDKs and tools send those routinely.

As a feature lands (issues #15, #19, #20) its headers leave this table:
tags (``x-amz-tagging``, ``protocol/tagging.py``) and ACLs and ownership
controls (``x-amz-acl``, ``x-amz-grant-*``, ``x-amz-object-ownership``,
``protocol/acl.py``) have, and so have SSE-S3 and SSE-C
(``x-amz-server-side-encryption``, ``-customer-*``, ``seglake/sse/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from seglake.errors import S3Error

# header -> the values that mean the default, compared case-insensitively
# (empty: any value is refused).
Defaults = Mapping[str, tuple[str, ...]]

_SSE_C: Final[Defaults] = {
    "x-amz-server-side-encryption-customer-algorithm": (),
    "x-amz-server-side-encryption-customer-key": (),
    "x-amz-server-side-encryption-customer-key-md5": (),
}
# What PutObject, CopyObject and CreateMultipartUpload may ask of the new object.
_NEW_OBJECT: Final[Defaults] = {
    "x-amz-server-side-encryption": (),
    "x-amz-server-side-encryption-aws-kms-key-id": (),
    "x-amz-server-side-encryption-context": (),
    "x-amz-server-side-encryption-bucket-key-enabled": ("false",),
    **_SSE_C,
    "x-amz-website-redirect-location": (),
    "x-amz-storage-class": ("standard",),
}
# CreateBucket's ACL, ownership and Object Lock headers are all implemented.
_NEW_BUCKET: Final[Defaults] = {}

# What PutObject implements itself (seglake/sse/headers.py: AES256 and SSE-C;
# aws:kms stays 501 there).
_ENCRYPTION: Final = ("x-amz-server-side-encryption", *_SSE_C)

BY_OPERATION: Final[Mapping[str, Defaults]] = {
    "CreateBucket": _NEW_BUCKET,
    "PutObject": {k: v for k, v in _NEW_OBJECT.items() if k not in _ENCRYPTION},
    "CopyObject": {k: v for k, v in _NEW_OBJECT.items() if k not in _ENCRYPTION},
    "CreateMultipartUpload": {k: v for k, v in _NEW_OBJECT.items() if k not in _ENCRYPTION},
}


def refuse_unimplemented(operation: str, headers: Mapping[str, str]) -> None:
    """Raise ``NotImplemented`` if ``headers`` (lower-case names) ask
    ``operation`` for something Seglake does not do."""
    table = BY_OPERATION.get(operation)
    if not table:
        return
    for name, defaults in table.items():
        value = headers.get(name)
        if value is not None and value.strip().lower() not in defaults:
            raise S3Error(
                "NotImplemented",
                # Never the value: it may be a customer's encryption key.
                message=f"Seglake does not implement the {name} header with this value",
                fields={"Header": name},
            )
