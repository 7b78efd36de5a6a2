"""What an upload body must prove: decided from the request's headers before
a byte of it is read, checked once it has all arrived (pure).

Rules this module keeps:

* ``x-amz-content-sha256`` picks the body's framing from one table
  (``STREAMING_MODES``): aws-chunked with signed chunks, with a trailer, or
  both; any other value is a plain body, and a 64-hex value is the SHA-256
  the whole payload must have.
* Nothing unsigned is accepted when the server refuses unsigned payloads:
  ``UNSIGNED-PAYLOAD`` (sent, or covered by a presigned URL's signature) and
  ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` alike (a trailer checksum guards
  against corruption, not tampering). Signed chunks need a signed request.
* At most one ``x-amz-checksum-*`` value, from a header or announced in
  ``x-amz-trailer`` (which needs an aws-chunked body); a malformed or
  unsupported one is refused before the body is read.
* After the body: the size, then the payload SHA-256, then Content-MD5, then
  the checksum — the first that fails is the answer. Values are compared in
  constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from seglake.errors import S3Error
from seglake.protocol import checksums
from seglake.protocol.sigv4 import (
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
)

# The longest decimal length accepted: 19 digits always fit in 63 bits.
_MAX_LENGTH_DIGITS: Final = 19
_UNSIGNED_DISABLED: Final = "UNSIGNED-PAYLOAD is disabled on this server"


@dataclass(frozen=True)
class StreamingMode:
    """An aws-chunked body: how its chunks are signed, whether trailers follow."""

    signed: bool  # every chunk signed, chained from the request's signature
    trailer: bool  # a trailer section (a checksum) follows the final chunk


STREAMING_MODES: Final[Mapping[str, StreamingMode]] = {
    STREAMING_UNSIGNED_PAYLOAD_TRAILER: StreamingMode(signed=False, trailer=True),
    STREAMING_PAYLOAD: StreamingMode(signed=True, trailer=False),
    STREAMING_PAYLOAD_TRAILER: StreamingMode(signed=True, trailer=True),
}


def declared_length(headers: Mapping[str, str], max_object_size: int) -> int:
    """The payload length the client promises (the decoded length of an
    aws-chunked body); checked against what arrives. ``max_object_size`` 0:
    no limit."""
    raw = (
        headers.get("x-amz-decoded-content-length")
        if headers.get("x-amz-content-sha256", "") in STREAMING_MODES
        else headers.get("content-length")
    )
    if raw is None:
        raise S3Error("MissingContentLength")
    if not raw.isdigit() or len(raw) > _MAX_LENGTH_DIGITS:
        raise S3Error("InvalidArgument", message="invalid content length")
    length = int(raw)
    if max_object_size and length > max_object_size:
        raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(max_object_size)})
    return length


@dataclass(frozen=True)
class BodyChecks:
    """What one upload body is checked against."""

    streaming: StreamingMode | None  # None: the body is the payload as it is
    payload_sha256: str | None  # hex digest the payload must have (plain signed body)
    content_md5: str | None  # the Content-MD5 header as sent
    header_sums: dict[str, str] = field(default_factory=dict)  # algorithm → value sent
    trailer_algorithm: str | None = None  # announced in x-amz-trailer

    @property
    def algorithms(self) -> list[str]:
        """The checksums to compute over the payload."""
        trailer = [self.trailer_algorithm] if self.trailer_algorithm else []
        return [*self.header_sums, *trailer]


def body_checks(
    headers: Mapping[str, str], signed_payload: str | None, *, allow_unsigned: bool
) -> BodyChecks:
    """The checks for a body, from the request's (lowercase) headers.

    ``signed_payload``: the payload hash the request's signature covers
    (None for an anonymous request). Raises what must be refused before the
    body is read.
    """
    sha_mode = headers.get("x-amz-content-sha256", "")
    streaming = STREAMING_MODES.get(sha_mode)
    if streaming is not None:
        if streaming.signed and signed_payload is None:
            raise S3Error("AccessDenied")
        if not streaming.signed and not allow_unsigned:
            raise S3Error("AccessDenied", message=_UNSIGNED_DISABLED)
    elif not allow_unsigned and UNSIGNED_PAYLOAD in (sha_mode, signed_payload):
        # A presigned request need not send the header: its signature then
        # covers UNSIGNED-PAYLOAD all the same.
        raise S3Error("AccessDenied", message=_UNSIGNED_DISABLED)

    header_sums: dict[str, str] = {}
    for name, value in headers.items():
        alg = checksums.algorithm_from_header(name)
        if alg is not None:
            checksums.decode_value(alg, value)  # malformed → InvalidRequest
            header_sums[alg] = value.strip()
    trailer_alg: str | None = None
    announced = headers.get("x-amz-trailer")
    if announced:
        if streaming is None:
            raise S3Error("InvalidRequest", message="x-amz-trailer requires an aws-chunked body")
        trailer_alg = checksums.algorithm_from_header(announced.strip().lower())
        if trailer_alg is None:
            raise S3Error("InvalidRequest", message=f"unsupported trailer {announced!r}")
    if len(header_sums) + (1 if trailer_alg else 0) > 1:
        raise S3Error("InvalidRequest", message="Expecting a single x-amz-checksum- header")
    return BodyChecks(
        streaming=streaming,
        payload_sha256=sha_mode if len(sha_mode) == 64 else None,
        content_md5=headers.get("content-md5"),
        header_sums=header_sums,
        trailer_algorithm=trailer_alg,
    )


def check_size(received: int, length: int, *, at_most: bool, complete: bool) -> None:
    """``received`` bytes against the declared ``length``: exact, or a cap
    (``at_most``, for a body whose size is not declared up front). Called as
    bytes arrive (``complete`` False) and once at the end."""
    if received > length:
        if at_most:
            raise S3Error("EntityTooLarge", fields={"MaxSizeAllowed": str(length)})
        raise S3Error("IncompleteBody", message="more data than the declared length")
    if complete and received != length and not at_most:
        raise S3Error("IncompleteBody")


def check_content_md5(content_md5: str, md5: bytes) -> None:
    """The Content-MD5 header (base64 of 16 bytes) against the body's MD5."""
    try:
        expected = base64.b64decode(content_md5, validate=True)
    except (binascii.Error, ValueError):
        raise S3Error("InvalidDigest") from None
    if len(expected) != 16:
        raise S3Error("InvalidDigest")
    if not hmac.compare_digest(md5, expected):
        raise S3Error("BadDigest")


def verify_body(
    checks: BodyChecks,
    *,
    md5: bytes,
    payload_sha256: str | None,
    sums: Mapping[str, str],
    trailers: Mapping[str, str],
) -> dict[str, str]:
    """Everything ``checks`` asks of a fully received body, in the module's
    order; the checksums to store (algorithm → base64) when all hold.

    ``payload_sha256``: hex digest of the payload (when ``checks`` has one to
    match); ``sums``: base64 value of each of ``checks.algorithms``;
    ``trailers``: the aws-chunked trailer fields, lowercase names.
    """
    if checks.payload_sha256 is not None and not hmac.compare_digest(
        (payload_sha256 or "").encode(), checks.payload_sha256.lower().encode()
    ):
        raise S3Error("XAmzContentSHA256Mismatch")
    if checks.content_md5 is not None:
        check_content_md5(checks.content_md5, md5)
    sent = dict(checks.header_sums)
    if checks.trailer_algorithm is not None:
        name = checksums.header_name(checks.trailer_algorithm)
        value = trailers.get(name)
        if value is None:
            raise S3Error("InvalidRequest", message=f"the announced trailer {name} was not sent")
        checksums.decode_value(checks.trailer_algorithm, value)
        sent[checks.trailer_algorithm] = value.strip()
    for alg, value in sent.items():
        if not hmac.compare_digest(sums[alg], value):
            raise S3Error(
                "BadDigest",
                message=f"The {alg} you specified did not match the calculated checksum.",
            )
    return {alg: sums[alg] for alg in sent}
