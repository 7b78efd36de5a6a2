"""aws-chunked uploads against the real server, over raw HTTP.

botocore only switches to aws-chunked trailers over HTTPS, so these tests
build the bodies themselves: botocore's own ``AwsChunkedWrapper`` for the
unsigned-trailer form, and chunk signatures from ``tests/chunk_signing.py``
(independent of Seglake's verifier) for the signed form. Every refusal must
leave nothing stored.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zlib
from pathlib import Path

import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
)

from tests.chunk_signing import ChunkSigning, PayloadAuth, flip_first_hex, frame, split
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

CREDS = Credentials(ACCESS_KEY, SECRET_KEY)


server = server_fixture(buckets=["stream"])


def signed_headers(url: str, mode: str, extra: dict[str, str]) -> dict[str, str]:
    """A PUT's headers, signed by botocore with ``mode`` as x-amz-content-sha256."""
    req = AWSRequest(method="PUT", url=url, headers=dict(extra))
    PayloadAuth(CREDS, REGION, mode).add_auth(req)
    return {k: v for k, v in req.headers.items()}


def put_raw(
    server: SeglakeServer, key: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.put(f"{server.endpoint}/stream/{key}", content=body, headers=headers)


def assert_absent(server: SeglakeServer, key: str) -> None:
    s3 = server.s3()
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.head_object(Bucket="stream", Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def unsigned_trailer_body(data: bytes, checksum_cls: type, name: str, chunk: int) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum_cls, checksum_name=name, chunk_size=chunk
    )
    return wrapper.read()


CHECKSUMS = [
    ("x-amz-checksum-crc32", Crc32Checksum, "ChecksumCRC32"),
    ("x-amz-checksum-crc32c", CrtCrc32cChecksum, "ChecksumCRC32C"),
    ("x-amz-checksum-crc64nvme", CrtCrc64NvmeChecksum, "ChecksumCRC64NVME"),
]


@pytest.mark.parametrize("size", [0, 1, 65_536, 4 * 1024 * 1024 + 3, 9 * 1024 * 1024])
@pytest.mark.parametrize("name,cls,field", CHECKSUMS, ids=[c[0] for c in CHECKSUMS])
def test_unsigned_trailer_round_trip(
    server: SeglakeServer, size: int, name: str, cls: type, field: str
) -> None:
    data = os.urandom(size)
    body = unsigned_trailer_body(data, cls, name, 64 * 1024)
    key = f"ut-{name}-{size}"
    url = f"{server.endpoint}/stream/{key}"
    headers = signed_headers(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", {
        "Content-Encoding": "aws-chunked", "x-amz-trailer": name,
        "x-amz-decoded-content-length": str(size), "Content-Length": str(len(body)),
    })  # fmt: skip
    r = put_raw(server, key, body, headers)
    assert r.status_code == 200, r.text
    expected = cls()
    expected.update(data)
    assert r.headers[name] == expected.b64digest()
    assert r.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = server.s3().get_object(Bucket="stream", Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[field] == expected.b64digest()
    assert "ContentEncoding" not in got  # aws-chunked is framing, not stored


def test_unsigned_trailer_wrong_checksum_stores_nothing(server: SeglakeServer) -> None:
    data = os.urandom(100_000)
    body = unsigned_trailer_body(data, Crc32Checksum, "x-amz-checksum-crc32", 65_536)
    good = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    bad = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big"))
    assert good in body
    body = body.replace(good, bad)
    url = f"{server.endpoint}/stream/badsum"
    headers = signed_headers(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", {
        "Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)), "Content-Length": str(len(body)),
    })  # fmt: skip
    r = put_raw(server, "badsum", body, headers)
    assert r.status_code == 400 and "<Code>BadDigest</Code>" in r.text
    assert_absent(server, "badsum")


def test_decoded_length_mismatch_stores_nothing(server: SeglakeServer) -> None:
    data = os.urandom(10_000)
    body = unsigned_trailer_body(data, Crc32Checksum, "x-amz-checksum-crc32", 4096)
    url = f"{server.endpoint}/stream/lenmismatch"
    headers = signed_headers(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", {
        "Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data) + 1), "Content-Length": str(len(body)),
    })  # fmt: skip
    r = put_raw(server, "lenmismatch", body, headers)
    assert r.status_code == 400 and "<Code>IncompleteBody</Code>" in r.text
    assert_absent(server, "lenmismatch")


def signed_chunked_body(
    data: bytes, headers: dict[str, str], chunk: int, *, corrupt_chunk: int | None = None
) -> bytes:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD framing with chained chunk signatures."""
    pieces = split(data, chunk)
    signatures = ChunkSigning.for_headers(SECRET_KEY, REGION, headers).chunk_signatures(pieces)
    if corrupt_chunk is not None:
        signatures[corrupt_chunk] = flip_first_hex(signatures[corrupt_chunk])
    return frame(pieces, signatures)


def _signed_put(
    server: SeglakeServer, key: str, data: bytes, corrupt: int | None
) -> httpx.Response:
    url = f"{server.endpoint}/stream/{key}"
    chunk = 8192
    n_chunks = len(data) // chunk + (1 if len(data) % chunk else 0) + 1
    # Content-Length must be known before signing: compute the framed size.
    framed = sum(len(f"{min(chunk, len(data) - i):x}") for i in range(0, len(data), chunk))
    length = framed + len("0") + n_chunks * (len(";chunk-signature=") + 64 + 4) + len(data)
    headers = signed_headers(url, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", {
        "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(length),
    })  # fmt: skip
    body = signed_chunked_body(data, headers, chunk, corrupt_chunk=corrupt)
    assert len(body) == length
    return put_raw(server, key, body, headers)


def test_signed_streaming_round_trip(server: SeglakeServer) -> None:
    data = os.urandom(100_000)
    r = _signed_put(server, "signed-ok", data, None)
    assert r.status_code == 200, r.text
    assert server.s3().get_object(Bucket="stream", Key="signed-ok")["Body"].read() == data


@pytest.mark.parametrize("corrupt", [0, 5, 13], ids=["first", "middle", "final-empty"])
def test_signed_streaming_bad_chunk_signature_stores_nothing(
    server: SeglakeServer, corrupt: int
) -> None:
    data = os.urandom(100_000)  # 13 data chunks of 8 KiB (the last short) + the final empty one
    key = f"signed-bad-{corrupt}"
    r = _signed_put(server, key, data, corrupt)
    assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text
    assert_absent(server, key)


def test_unknown_content_sha256_refused(server: SeglakeServer) -> None:
    url = f"{server.endpoint}/stream/weird"
    headers = signed_headers(url, "STREAMING-SOMETHING-ELSE", {"Content-Length": "3"})
    r = put_raw(server, "weird", b"abc", headers)
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text
    assert "x-amz-request-id" in r.headers
    assert_absent(server, "weird")


def test_payload_hash_mismatch_stores_nothing(server: SeglakeServer) -> None:
    url = f"{server.endpoint}/stream/hashmismatch"
    wrong = hashlib.sha256(b"something else").hexdigest()
    headers = signed_headers(url, wrong, {"Content-Length": "5"})
    r = put_raw(server, "hashmismatch", b"hello", headers)
    assert r.status_code == 400 and "<Code>XAmzContentSHA256Mismatch</Code>" in r.text
    assert_absent(server, "hashmismatch")


def test_truncated_body_stores_nothing(server: SeglakeServer, tmp_path: Path) -> None:
    """The client promises 1 MiB, sends half and closes: nothing is stored."""
    import socket

    url = f"{server.endpoint}/stream/truncated"
    headers = signed_headers(url, "UNSIGNED-PAYLOAD", {"Content-Length": str(1 << 20)})
    headers["Host"] = f"127.0.0.1:{server.port}"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=10) as s:
        s.sendall(f"PUT /stream/truncated HTTP/1.1\r\n{head}\r\n".encode() + os.urandom(1 << 19))
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except OSError:
            pass
    # A 400 (ours, IncompleteBody, or Hypercorn's for a body cut by EOF) or a
    # closed connection; never a 200.
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert_absent(server, "truncated")
    # The server is still healthy afterwards.
    server.s3().put_object(Bucket="stream", Key="after-truncation", Body=b"ok")
    assert server.s3().get_object(Bucket="stream", Key="after-truncation")["Body"].read() == b"ok"
