"""aws-chunked bodies signed the way the AWS SDKs sign them, for every suite.

Rules this file keeps:

* Chunk and trailer signatures are computed here from the AWS description
  ("Signature Calculations for the Authorization Header: Transferring Payload
  in Multiple Chunks" and its trailer variant) with ``hmac`` and ``hashlib``
  only: nothing from ``seglake``, so the tests check Seglake's verifier
  against an independent signer, not against itself.
* The seed signature (the request's own) comes from botocore, told which
  ``x-amz-content-sha256`` value to sign (``PayloadAuth``).
* Signing and framing are separate steps, so a test can sign correctly and
  then frame something else: a changed signature, a missing extension, an
  extra or missing trailer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

Trailers = Sequence[tuple[str, str]]


def signing_key(secret: str, date: str, region: str) -> bytes:
    """The SigV4 signing key for ``date`` (YYYYMMDD), ``region`` and S3."""
    key = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    for part in (region, "s3", "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def seed_of(authorization: str) -> str:
    """The seed signature: the signature of the request's Authorization header."""
    return authorization.rsplit("Signature=", 1)[1]


def canonical_trailers(trailers: Trailers) -> bytes:
    """The trailer block as the trailer signature hashes it."""
    return b"".join(f"{name.lower()}:{value.strip()}\n".encode() for name, value in trailers)


@dataclass(frozen=True)
class ChunkSigning:
    """What every signature of one aws-chunked body depends on."""

    key: bytes
    amz_date: str  # X-Amz-Date of the request
    scope: str  # DATE/REGION/s3/aws4_request
    seed: str  # the request's own signature

    @classmethod
    def for_request(cls, secret: str, region: str, amz_date: str, seed: str) -> ChunkSigning:
        scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
        return cls(signing_key(secret, amz_date[:8], region), amz_date, scope, seed)

    @classmethod
    def for_headers(cls, secret: str, region: str, headers: Mapping[str, str]) -> ChunkSigning:
        """From the X-Amz-Date and Authorization headers botocore produced."""
        return cls.for_request(
            secret, region, headers["X-Amz-Date"], seed_of(headers["Authorization"])
        )

    def chunk_signatures(self, pieces: Sequence[bytes]) -> list[str]:
        """One chained signature per piece (the final empty piece included)."""
        previous = self.seed
        out = []
        for piece in pieces:
            text = "\n".join(
                [
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    self.amz_date,
                    self.scope,
                    previous,
                    EMPTY_SHA256,
                    hashlib.sha256(piece).hexdigest(),
                ]
            )
            previous = hmac_hex(self.key, text)
            out.append(previous)
        return out

    def trailer_signature(self, previous: str, trailers: Trailers) -> str:
        """The trailer's signature, chained to the final chunk's (``previous``)."""
        digest = hashlib.sha256(canonical_trailers(trailers)).hexdigest()
        text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, previous, digest])
        return hmac_hex(self.key, text)

    def body(
        self, pieces: Sequence[bytes], trailers: Trailers | None = None, *, separator: str = ":"
    ) -> bytes:
        """``pieces`` signed and framed; with ``trailers``, signed trailers too."""
        signatures = self.chunk_signatures(pieces)
        if trailers is None:
            return frame(pieces, signatures)
        signature = self.trailer_signature(signatures[-1], trailers)
        return frame(pieces, signatures, trailers, signature, separator=separator)


def split(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of ``size`` bytes, then the final empty piece."""
    return [data[i : i + size] for i in range(0, len(data), size)] + [b""]


def frame(
    pieces: Sequence[bytes],
    signatures: Sequence[str | None],
    trailers: Trailers | None = None,
    trailer_signature: str | None = None,
    *,
    separator: str = ":",
) -> bytes:
    """The aws-chunked bytes: one chunk per piece (a None signature: no
    extension), then the trailers and their signature line, if given.

    ``pieces`` ends with the empty final piece (see ``split``).
    """
    out = bytearray()
    for piece, signature in zip(pieces, signatures, strict=True):
        extension = "" if signature is None else f";chunk-signature={signature}"
        out += f"{len(piece):x}{extension}\r\n".encode() + piece
        if piece:
            out += b"\r\n"
    for name, value in trailers or ():
        out += f"{name}{separator}{value}\r\n".encode()
    if trailer_signature is not None:
        out += f"x-amz-trailer-signature:{trailer_signature}\r\n".encode()
    return bytes(out + b"\r\n")


def flip_first_hex(signature: str) -> str:
    """``signature`` with its first digit changed (a wrong but well-formed one)."""
    return ("0" if signature[0] != "0" else "1") + signature[1:]


# AWS's documented example ("Signature Calculations for the Authorization
# Header: Transferring Payload in Multiple Chunks", S3 API reference): the
# request as sent, its secret key, and each chunk with the signature AWS lists.
AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_EXAMPLE_PATH = b"/examplebucket/chunkObject.txt"
AWS_EXAMPLE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"Host", b"s3.amazonaws.com"),
    (b"x-amz-date", b"20130524T000000Z"),
    (b"x-amz-storage-class", b"REDUCED_REDUNDANCY"),
    (
        b"Authorization",
        b"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
        b"aws4_request,SignedHeaders=content-encoding;content-length;host;"
        b"x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
        b"x-amz-storage-class,Signature="
        b"4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    ),
    (b"x-amz-content-sha256", b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    (b"Content-Encoding", b"aws-chunked"),
    (b"x-amz-decoded-content-length", b"66560"),
    (b"Content-Length", b"66824"),
]
AWS_EXAMPLE_CHUNKS: list[tuple[bytes, str]] = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]


class PayloadAuth(S3SigV4Auth):
    """botocore's header signer, told which ``x-amz-content-sha256`` value to
    sign (a ``STREAMING-*`` mode, ``UNSIGNED-PAYLOAD``, or a wrong hash);
    None signs the body's own hash, as botocore would."""

    def __init__(self, credentials: Credentials, region: str, payload: str | None) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload if self._payload is not None else str(super().payload(request))
