"""What an upload body must prove (``seglake/protocol/upload_checks.py``):
the decisions taken from the headers before the body is read, and the
checks after it, each as one table of cases."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest

from seglake.errors import S3Error
from seglake.protocol.sigv4 import (
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
)
from seglake.protocol.upload_checks import (
    STREAMING_MODES,
    BodyChecks,
    StreamingMode,
    body_checks,
    check_content_md5,
    check_size,
    declared_length,
    verify_body,
)

BODY = b"hello"
MD5 = hashlib.md5(BODY).digest()
MD5_B64 = base64.b64encode(MD5).decode()
SHA_HEX = hashlib.sha256(BODY).hexdigest()
SHA_B64 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
CRC_B64 = "AAAAAA=="  # 4 bytes: a well-formed CRC32 value
SIGNED = "0" * 64  # any payload hash a signature covered


def code_of(fn: object, *args: object, **kwargs: object) -> object:
    try:
        return fn(*args, **kwargs)  # type: ignore[operator]
    except S3Error as exc:
        return exc.code


# ---- declared_length: (headers, max_object_size, value or error)
LENGTHS: list[tuple[dict[str, str], int, object]] = [
    ({"content-length": "0"}, 0, 0),
    ({"content-length": "5"}, 5, 5),
    ({"content-length": "6"}, 5, "EntityTooLarge"),
    ({"content-length": "9" * 19}, 0, int("9" * 19)),
    ({"content-length": "1" + "0" * 19}, 0, "InvalidArgument"),
    ({"content-length": "-1"}, 0, "InvalidArgument"),
    ({"content-length": " 5"}, 0, "InvalidArgument"),
    ({}, 0, "MissingContentLength"),
    # aws-chunked: the decoded length counts, the wire length does not.
    ({"x-amz-content-sha256": STREAMING_PAYLOAD, "content-length": "99",
      "x-amz-decoded-content-length": "5"}, 0, 5),
    ({"x-amz-content-sha256": STREAMING_PAYLOAD, "content-length": "99"}, 0,
     "MissingContentLength"),
    ({"x-amz-content-sha256": SHA_HEX, "content-length": "5",
      "x-amz-decoded-content-length": "7"}, 0, 5),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "limit", "want"), LENGTHS)
def test_declared_length(headers: dict[str, str], limit: int, want: object) -> None:
    assert code_of(declared_length, headers, limit) == want


# ---- body_checks: (headers, signed payload, allow unsigned, BodyChecks or error)
PLAIN = BodyChecks(streaming=None, payload_sha256=None, content_md5=None)
SIGNED_TRAILER = StreamingMode(signed=True, trailer=True)
UNSIGNED_TRAILER = StreamingMode(signed=False, trailer=True)
DECISIONS: list[tuple[dict[str, str], str | None, bool, object]] = [
    ({}, None, False, PLAIN),
    ({"x-amz-content-sha256": SHA_HEX}, SHA_HEX, False, replace(PLAIN, payload_sha256=SHA_HEX)),
    ({"content-md5": MD5_B64}, None, False, replace(PLAIN, content_md5=MD5_B64)),
    # Unsigned payloads: sent, or covered by a presigned URL.
    ({"x-amz-content-sha256": UNSIGNED_PAYLOAD}, UNSIGNED_PAYLOAD, False, "AccessDenied"),
    ({}, UNSIGNED_PAYLOAD, False, "AccessDenied"),
    ({}, UNSIGNED_PAYLOAD, True, PLAIN),
    ({"x-amz-content-sha256": UNSIGNED_PAYLOAD}, None, True, PLAIN),
    # The streaming table.
    ({"x-amz-content-sha256": STREAMING_PAYLOAD}, STREAMING_PAYLOAD, False,
     replace(PLAIN, streaming=StreamingMode(signed=True, trailer=False))),
    ({"x-amz-content-sha256": STREAMING_PAYLOAD}, None, True, "AccessDenied"),
    ({"x-amz-content-sha256": STREAMING_PAYLOAD_TRAILER,
      "x-amz-trailer": "X-Amz-Checksum-CRC32"}, STREAMING_PAYLOAD_TRAILER, False,
     replace(PLAIN, streaming=SIGNED_TRAILER, trailer_algorithm="CRC32")),
    ({"x-amz-content-sha256": STREAMING_UNSIGNED_PAYLOAD_TRAILER}, None, False, "AccessDenied"),
    ({"x-amz-content-sha256": STREAMING_UNSIGNED_PAYLOAD_TRAILER,
      "x-amz-trailer": "x-amz-checksum-sha256"}, None, True,
     replace(PLAIN, streaming=UNSIGNED_TRAILER, trailer_algorithm="SHA256")),
    # Checksums: one, well-formed, of a known algorithm.
    ({"x-amz-checksum-crc32": f" {CRC_B64} "}, None, False,
     replace(PLAIN, header_sums={"CRC32": CRC_B64})),
    ({"x-amz-checksum-crc32": "AAA"}, None, False, "InvalidRequest"),
    ({"x-amz-checksum-md5": MD5_B64}, None, False, "InvalidRequest"),
    ({"x-amz-checksum-algorithm": "CRC32"}, None, False, PLAIN),
    ({"x-amz-checksum-crc32": CRC_B64, "x-amz-checksum-sha256": SHA_B64}, None, False,
     "InvalidRequest"),
    ({"x-amz-trailer": "x-amz-checksum-crc32"}, None, False, "InvalidRequest"),
    ({"x-amz-content-sha256": STREAMING_PAYLOAD, "x-amz-trailer": "x-amz-meta-a"},
     STREAMING_PAYLOAD, False, "InvalidRequest"),
    ({"x-amz-content-sha256": STREAMING_PAYLOAD, "x-amz-trailer": "x-amz-checksum-crc32",
      "x-amz-checksum-sha256": SHA_B64}, STREAMING_PAYLOAD, False, "InvalidRequest"),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "signed", "allow", "want"), DECISIONS)
def test_body_checks(
    headers: dict[str, str], signed: str | None, allow: bool, want: object
) -> None:
    assert code_of(body_checks, headers, signed, allow_unsigned=allow) == want


def test_streaming_modes_are_the_signed_constants() -> None:
    assert {STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_PAYLOAD_TRAILER} == (
        set(STREAMING_MODES)
    )


def test_algorithms_lists_header_and_trailer() -> None:
    assert replace(PLAIN, header_sums={"CRC32": CRC_B64}).algorithms == ["CRC32"]
    assert replace(PLAIN, trailer_algorithm="SHA1").algorithms == ["SHA1"]
    assert PLAIN.algorithms == []


# ---- check_size: (received, length, at_most, complete, None or error)
SIZES: list[tuple[int, int, bool, bool, object]] = [
    (5, 5, False, True, None),
    (3, 5, False, False, None),
    (3, 5, False, True, "IncompleteBody"),
    (6, 5, False, False, "IncompleteBody"),
    (3, 5, True, True, None),
    (6, 5, True, False, "EntityTooLarge"),
    (0, 0, False, True, None),
]


@pytest.mark.parametrize(("received", "length", "at_most", "complete", "want"), SIZES)
def test_check_size(
    received: int, length: int, at_most: bool, complete: bool, want: object
) -> None:
    got = code_of(check_size, received, length, at_most=at_most, complete=complete)
    assert got == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (MD5_B64, None),
        (base64.b64encode(b"\0" * 16).decode(), "BadDigest"),
        (base64.b64encode(b"\0" * 15).decode(), "InvalidDigest"),
        ("not base64!", "InvalidDigest"),
        ("", "InvalidDigest"),
    ],
)
def test_check_content_md5(value: str, want: object) -> None:
    assert code_of(check_content_md5, value, MD5) == want


# ---- verify_body: (checks, payload sha hex, sums computed, trailers, stored or error)
CRC = replace(PLAIN, header_sums={"CRC32": CRC_B64})
TRAILED = replace(PLAIN, streaming=SIGNED_TRAILER, trailer_algorithm="CRC32")
AFTER: list[tuple[BodyChecks, str | None, dict[str, str], dict[str, str], object]] = [
    (PLAIN, None, {}, {}, {}),
    (replace(PLAIN, payload_sha256=SHA_HEX.upper()), SHA_HEX, {}, {}, {}),
    (replace(PLAIN, payload_sha256=SHA_HEX), "0" * 64, {}, {}, "XAmzContentSHA256Mismatch"),
    (replace(PLAIN, payload_sha256="é" * 64), SHA_HEX, {}, {}, "XAmzContentSHA256Mismatch"),
    (replace(PLAIN, content_md5=MD5_B64), None, {}, {}, {}),
    (replace(PLAIN, content_md5="AAAA"), None, {}, {}, "InvalidDigest"),
    (CRC, None, {"CRC32": CRC_B64}, {}, {"CRC32": CRC_B64}),
    (CRC, None, {"CRC32": "AQAAAA=="}, {}, "BadDigest"),
    (TRAILED, None, {"CRC32": CRC_B64}, {"x-amz-checksum-crc32": f" {CRC_B64}"},
     {"CRC32": CRC_B64}),
    (TRAILED, None, {"CRC32": CRC_B64}, {"x-amz-checksum-crc32": "AQAAAA=="}, "BadDigest"),
    (TRAILED, None, {"CRC32": CRC_B64}, {"x-amz-checksum-crc32": "AQ"}, "InvalidRequest"),
    (TRAILED, None, {"CRC32": CRC_B64}, {}, "InvalidRequest"),
    # The order: payload hash before Content-MD5 before the checksum.
    (replace(CRC, payload_sha256=SHA_HEX, content_md5="AAAA"), "0" * 64, {"CRC32": "x"}, {},
     "XAmzContentSHA256Mismatch"),
    (replace(CRC, content_md5=base64.b64encode(b"\0" * 16).decode()), None, {"CRC32": "x"}, {},
     "BadDigest"),
]  # fmt: skip


@pytest.mark.parametrize(("checks", "sha", "sums", "trailers", "want"), AFTER)
def test_verify_body(
    checks: BodyChecks, sha: str | None, sums: dict[str, str], trailers: dict[str, str],
    want: object,
) -> None:  # fmt: skip
    got = code_of(verify_body, checks, md5=MD5, payload_sha256=sha, sums=sums, trailers=trailers)
    assert got == want
