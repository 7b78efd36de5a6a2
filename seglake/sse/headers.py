"""What a request asks for in its encryption headers, with AWS's errors.

Pure: header mapping (lower-case names) in, a decision or an ``S3Error`` out.
The customer key never appears in an error message, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from seglake.errors import S3Error

SSE_HEADER: Final = "x-amz-server-side-encryption"
AES256: Final = "AES256"
# Encryption AWS offers that Seglake does not (yet): refused as 501, never ignored.
_KMS: Final = ("aws:kms", "aws:kms:dsse")
_PREFIX: Final = "x-amz-server-side-encryption-customer-"
_SOURCE_PREFIX: Final = "x-amz-copy-source-server-side-encryption-customer-"
_CUSTOMER_KEY_BYTES: Final = 32

MSG_MISSING_ON_READ: Final = (
    "The object was stored using a form of Server Side Encryption. The correct parameters "
    "must be provided to retrieve the object."
)
MSG_NOT_APPLICABLE: Final = "The encryption parameters are not applicable to this object."
MSG_WRONG_KEY: Final = "The provided encryption parameters did not match the ones used originally."
MSG_INSECURE: Final = (
    "Requests specifying Server Side Encryption with Customer provided keys must be made "
    "over a secure connection."
)


@dataclass(frozen=True)
class CustomerKey:
    """An SSE-C key as a request gave it (validated). ``key_md5`` is the
    client's base64 MD5, echoed in responses as AWS does."""

    key: bytes = field(repr=False)
    key_md5: str

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-amz-server-side-encryption-customer-algorithm", AES256.encode()),
            (b"x-amz-server-side-encryption-customer-key-md5", self.key_md5.encode()),
        ]


def requested_sse(headers: Mapping[str, str]) -> str | None:
    """``x-amz-server-side-encryption``: "AES256", or None when absent.
    KMS is 501 NotImplemented; anything else is AWS's 400 InvalidArgument."""
    raw = headers.get(SSE_HEADER)
    if raw is None:
        return None
    value = raw.strip()
    if value == AES256:
        return AES256
    if value.lower() in _KMS:
        raise S3Error(
            "NotImplemented",
            message=f"Seglake does not implement the {SSE_HEADER} header with this value",
            fields={"Header": SSE_HEADER},
        )
    raise S3Error(
        "InvalidArgument",
        message="The encryption method specified is not supported",
        fields={"ArgumentName": SSE_HEADER, "ArgumentValue": value[:64]},
    )


def customer_key(
    headers: Mapping[str, str], *, source: bool = False, secure: bool = True
) -> CustomerKey | None:
    """The SSE-C key of a request (``source``: of its copy source), or None
    when it sends none of the three headers. ``secure``: whether the request
    came over TLS (or plain HTTP is allowed for tests)."""
    prefix = _SOURCE_PREFIX if source else _PREFIX
    alg = headers.get(prefix + "algorithm")
    raw_key = headers.get(prefix + "key")
    md5 = headers.get(prefix + "key-md5")
    if alg is None and raw_key is None and md5 is None:
        return None
    arg = prefix + ("algorithm" if alg is None else "key")
    if not secure:
        raise S3Error("InvalidRequest", message=MSG_INSECURE)
    if alg is None:
        raise _invalid(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide a valid encryption algorithm.",
            arg,
        )
    if alg.strip() != AES256:
        raise S3Error(
            "InvalidEncryptionAlgorithmError",
            fields={"ArgumentName": prefix + "algorithm", "ArgumentValue": alg.strip()[:64]},
        )
    if raw_key is None:
        raise _invalid(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide an appropriate secret key.",
            arg,
        )
    try:
        key = base64.b64decode(raw_key.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _CUSTOMER_KEY_BYTES:
        raise _invalid("The secret key was invalid for the specified algorithm.", arg)
    if md5 is None:
        raise _invalid(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide the client calculated MD5 of the secret key.",
            prefix + "key-md5",
        )
    expected = base64.b64encode(hashlib.md5(key).digest()).decode("ascii")
    if md5.strip() != expected:
        raise _invalid(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
            prefix + "key-md5",
        )
    return CustomerKey(key, expected)


def new_object_encryption(
    headers: Mapping[str, str], *, secure: bool
) -> tuple[str | None, CustomerKey | None]:
    """What a write (PUT, Copy destination, CreateMultipartUpload) asks for:
    ("AES256", None) for SSE-S3, (None, key) for SSE-C, (None, None) for
    nothing. Both at once is AWS's InvalidArgument."""
    sse = requested_sse(headers)
    customer = customer_key(headers, secure=secure)
    if sse is not None and customer is not None:
        raise _invalid(
            "Server Side Encryption with Customer provided key is incompatible with the "
            "encryption method specified",
            SSE_HEADER,
        )
    return sse, customer


def _invalid(message: str, argument: str) -> S3Error:
    # Only the argument's name: its value may be (part of) a customer key.
    return S3Error("InvalidArgument", message=message, fields={"ArgumentName": argument})
