"""Hypothesis fuzz targets for the SigV4 canonicaliser/verifier and the aws-chunked decoder.

Rules this file keeps:

* The number of examples per target comes from ``SEGLAKE_FUZZ_EXAMPLES``
  (default ``fuzzing.DEFAULT_EXAMPLES``, small enough for ``make test``);
  ``make fuzz`` runs the same targets with many more.
* Hostile input may only ever produce ``S3Error`` (an answer the client
  gets), never another exception (a 500) and never a hang.
* The decoder never hands out more bytes than it was fed, gives the same
  result whether the body arrives whole or in pieces, and refuses every
  single-byte change of a signed body unless the change is invisible
  (decoded data and trailers identical).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from datetime import UTC, datetime
from urllib.parse import quote

from hypothesis import assume, given
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.chunked import AwsChunkedDecoder, Data, EndOfMessage, Event, Trailers
from seglake.protocol.sigv4 import (
    AuthContext,
    RequestView,
    StreamingSigner,
    authenticate,
    canonical_query,
    canonical_uri,
)
from tests.chunk_signing import ChunkSigning
from tests.unit.fuzzing import FUZZ

AK = "AKIDFUZZ"
SECRET = "fuzz-secret"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
AMZ_DATE = "20240501T120000Z"
SCOPE = "20240501/us-east-1/s3/aws4_request"
UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def lookup(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


def _is_canonical(out: bytes, extra: bytes) -> bool:
    """Only unreserved bytes, ``extra`` and uppercase %XX escapes of the rest."""
    i = 0
    while i < len(out):
        b = out[i]
        if b == 0x25:
            pair = out[i + 1 : i + 3]
            if len(pair) != 2 or pair.upper() != pair or pair.strip(b"0123456789ABCDEF"):
                return False
            if int(pair, 16) in UNRESERVED:
                return False  # an unreserved byte is never escaped
            i += 3
            continue
        if b not in UNRESERVED and b not in extra:
            return False
        i += 1
    return True


# --------------------------------------------------------------------------
# Canonicaliser

raw_component = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [b"%", b"%2", b"%2f", b"%2F", b"%7e", b"%zz", b"%%", b"/", b"//", b"..", b"a", b"~",
             b" ", b"+", b"=", b"&", b"\x00", b"\xff", "é".encode(), b"%C3%A9", b"%c3"]
        ),
        max_size=30,
    ).map(b"".join),
)  # fmt: skip


@FUZZ
@given(raw_component)
def test_canonical_uri_only_s3error(raw: bytes) -> None:
    try:
        out = canonical_uri(raw)
    except S3Error as err:
        assert err.code == "InvalidURI"
        return
    assert _is_canonical(out, b"/")
    assert canonical_uri(out) == out  # idempotent


@FUZZ
@given(raw_component)
def test_canonical_query_only_s3error(raw: bytes) -> None:
    try:
        out = canonical_query(raw)
    except S3Error as err:
        assert err.code == "InvalidURI"
        return
    pairs = out.split(b"&") if out else []
    assert pairs == sorted(pairs, key=lambda p: tuple(p.split(b"=", 1)))
    for pair in pairs:
        assert pair.count(b"=") == 1
        assert _is_canonical(pair.replace(b"=", b""), b"")
    assert canonical_query(out) == out


@FUZZ
@given(st.text(max_size=80))
def test_canonical_uri_round_trips_botocore_encoding(key: str) -> None:
    # boto3's S3 serializer: quote(key, safe="/~") after "/bucket/".
    encoded = ("/bucket/" + quote(key, safe="/~")).encode("ascii")
    assert canonical_uri(encoded) == encoded


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=8))
def test_canonical_query_round_trips_botocore_encoding(pairs: list[tuple[str, str]]) -> None:
    from botocore.utils import percent_encode

    encoded = [(percent_encode(k), percent_encode(v)) for k, v in pairs]
    raw = "&".join(f"{k}={v}" for k, v in encoded).encode("ascii")
    expected = "&".join(f"{k}={v}" for k, v in sorted(encoded if raw else []))
    assert canonical_query(raw) == expected.encode("ascii")


# --------------------------------------------------------------------------
# authenticate on header and query soup

_HEX64 = st.text("0123456789abcdefABCDEF", min_size=0, max_size=66)
_AUTH_VALUES = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda cred, signed, sig, sep: (
            f"AWS4-HMAC-SHA256 Credential={cred}{sep}SignedHeaders={signed}{sep}Signature={sig}"
        ).encode("utf-8", "surrogatepass"),
        st.one_of(
            st.just(f"{AK}/{SCOPE}"),
            st.just(f"{AK}/20240501/us/s3/aws4_request"),
            st.text(max_size=60),
        ),
        st.one_of(
            st.just("host;x-amz-content-sha256;x-amz-date"),
            st.just("host;x-amz-date"),
            st.text(max_size=40),
        ),
        _HEX64,
        st.sampled_from([",", ", ", ",,", " ", ""]),
    ),
    st.sampled_from([b"AWS AKID:sig", b"AWS4-HMAC-SHA256", b"", b"Bearer x"]),
)
_HEADER_SOUP = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([b"authorization", b"Authorization"]), _AUTH_VALUES),
        st.tuples(
            st.sampled_from([b"x-amz-date", b"X-Amz-Date"]),
            st.one_of(st.just(AMZ_DATE.encode()), st.binary(max_size=20)),
        ),
        st.tuples(
            st.just(b"x-amz-content-sha256"),
            st.one_of(
                st.sampled_from(
                    [b"UNSIGNED-PAYLOAD", b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA.encode()]
                ),
                st.binary(max_size=70),
            ),
        ),
        st.tuples(
            st.sampled_from([b"host", b"x-amz-meta-a", b"x-amz-copy-source"]),
            st.binary(max_size=30),
        ),
        st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=30)),
    ),
    max_size=8,
)
_QUERY_NAMES = [
    b"X-Amz-Algorithm", b"X-Amz-Credential", b"X-Amz-Date", b"X-Amz-Expires",
    b"X-Amz-SignedHeaders", b"X-Amz-Signature", b"AWSAccessKeyId", b"Signature", b"versionId",
    b"X-Amz-Foo", b"x-amz-date", b"",
]  # fmt: skip
_QUERY_VALUES = st.one_of(
    st.sampled_from(
        [
            b"AWS4-HMAC-SHA256",
            f"{AK}%2F{SCOPE.replace('/', '%2F')}".encode(),
            AMZ_DATE.encode(),
            b"3600",
            b"604801",
            b"0",
            b"host",
            b"a" * 64,
            b"%zz",
            b"",
        ]
    ),
    st.binary(max_size=40),
)
_QUERY_SOUP = st.lists(
    st.tuples(st.sampled_from(_QUERY_NAMES), st.sampled_from([b"=", b""]), _QUERY_VALUES),
    max_size=8,
).map(lambda items: b"&".join(n + eq + v for n, eq, v in items))


@FUZZ
@given(
    st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE", "OPTIONS", "PATCH"]),
    raw_component,
    _QUERY_SOUP,
    _HEADER_SOUP,
    st.sampled_from(["us-east-1", "eu-west-1"]),
)
def test_authenticate_soup_only_s3error(
    method: str,
    path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    region: str,
) -> None:
    view = RequestView(method, path, query, headers)
    try:
        result = authenticate(view, lookup, NOW, region=region)
    except S3Error as err:
        assert SECRET not in err.text
        assert 400 <= err.status < 500
        return
    # Nothing here carries a valid signature: the only success is "anonymous".
    assert result is None
    assert not any(n.lower() == b"authorization" for n, _ in headers)


# --------------------------------------------------------------------------
# aws-chunked decoder


class _AcceptAll:
    """A signer that accepts every signature (to reach the signed states)."""

    def verify_chunk(self, chunk_sha256_hex: str, signature: str) -> None:
        assert len(chunk_sha256_hex) == 64 and len(signature) == 64

    def verify_trailer(self, trailer_sha256_hex: str, signature: str) -> None:
        assert len(trailer_sha256_hex) == 64 and len(signature) == 64


def _run(
    decoder: AwsChunkedDecoder, body: bytes, cuts: list[int]
) -> tuple[bytes, dict[str, str] | None, bool]:
    """Feed ``body`` split at ``cuts``; returns (data, trailers, ended)."""
    data = bytearray()
    trailers: dict[str, str] | None = None
    ended = False
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    fed = 0
    for a, b in itertools.pairwise(bounds):
        events: list[Event] = decoder.feed(body[a:b])
        fed += b - a
        for event in events:
            assert not ended, "event after EndOfMessage"
            if isinstance(event, Data):
                assert event.data, "empty Data event"
                data += event.data
            elif isinstance(event, Trailers):
                trailers = event.headers
            else:
                assert isinstance(event, EndOfMessage)
                ended = True
        assert len(data) <= fed  # never more data than was fed
    decoder.eof()
    return bytes(data), trailers, ended


def _outcome(
    body: bytes, cuts: list[int], signed: bool, trailer: bool
) -> tuple[bytes, dict[str, str] | None, bytes] | str:
    decoder = AwsChunkedDecoder(signer=_AcceptAll() if signed else None, trailer=trailer)
    try:
        data, trailers, ended = _run(decoder, body, cuts)
    except S3Error as err:
        assert 400 <= err.status < 500
        # A dead decoder keeps refusing with the same error.
        try:
            decoder.feed(b"0\r\n")
        except S3Error as again:
            assert again is err
        else:
            raise AssertionError("decoder accepted input after an error") from None
        return err.code
    assert ended
    assert len(data) <= len(body)
    return data, trailers, decoder.unused_data


def _frame(chunks: list[bytes], signed: bool, trailers: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    ext = b";chunk-signature=" + b"a" * 64 if signed else b""
    for chunk in [*chunks, b""]:
        out += b"%x" % len(chunk) + ext + b"\r\n" + chunk
        if chunk:
            out += b"\r\n"
    for name, value in trailers:
        out += name + b":" + value + b"\r\n"
    if trailers and signed:
        out += b"x-amz-trailer-signature:" + b"b" * 64 + b"\r\n"
    out += b"\r\n"
    return bytes(out)


_framed = st.builds(
    _frame,
    st.lists(st.binary(min_size=1, max_size=40), max_size=5),
    st.booleans(),
    st.lists(
        st.tuples(
            st.sampled_from([b"x-amz-checksum-crc32", b"X-Trailer", b"bad name", b""]),
            st.binary(max_size=20),
        ),
        max_size=3,
    ),
)


def _mutated(body: bytes, pos: int, value: int, op: int) -> bytes:
    if not body:
        return bytes((value,))
    pos %= len(body)
    if op == 0:
        return body[:pos] + bytes((value,)) + body[pos + 1 :]
    if op == 1:
        return body[:pos] + body[pos + 1 :]
    return body[:pos] + bytes((value,)) + body[pos:]


_bodies = st.one_of(
    st.binary(max_size=300),
    _framed,
    st.builds(_mutated, _framed, st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2)),
    st.builds(lambda b, junk: b + junk, _framed, st.binary(max_size=20)),
)


@FUZZ
@given(_bodies, st.lists(st.integers(0, 400), max_size=8), st.booleans(), st.booleans())
def test_chunked_decoder_only_s3error_and_split_invariant(
    body: bytes, cuts: list[int], signed: bool, trailer: bool
) -> None:
    whole = _outcome(body, [], signed, trailer)
    split = _outcome(body, cuts, signed, trailer)
    bytewise = _outcome(body, list(range(1, len(body))), signed, trailer)
    assert whole == split == bytewise


# A real signature chain, computed independently of seglake's signer
# (tests/chunk_signing.py).

SIGNING = ChunkSigning.for_request(SECRET, "us-east-1", AMZ_DATE, "5eed" * 16)


def _ctx() -> AuthContext:
    return AuthContext(
        access_key=AK,
        region="us-east-1",
        amz_date=AMZ_DATE,
        scope=SCOPE,
        signing_key=SIGNING.key,
        seed_signature=SIGNING.seed,
        content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        presigned=False,
    )


def _signed_body(chunks: list[bytes], trailer: bool) -> bytes:
    if not trailer:
        return SIGNING.body([*chunks, b""])
    value = base64.b64encode(hashlib.sha256(b"".join(chunks)).digest()).decode()
    return SIGNING.body([*chunks, b""], [("x-amz-checksum-sha256", value)])


def _decode_signed(
    body: bytes, trailer: bool, cuts: list[int]
) -> tuple[bytes, dict[str, str] | None]:
    decoder = AwsChunkedDecoder(signer=StreamingSigner(_ctx()), trailer=trailer)
    data, trailers, ended = _run(decoder, body, cuts)
    assert ended and decoder.unused_data == b""
    return data, trailers


@FUZZ
@given(
    st.lists(st.binary(min_size=1, max_size=30), max_size=4),
    st.booleans(),
    st.integers(0, 100_000),
    st.integers(0, 255),
    st.integers(0, 2),
    st.lists(st.integers(0, 400), max_size=5),
)
def test_signed_chunked_single_byte_changes_refused(
    chunks: list[bytes], trailer: bool, pos: int, value: int, op: int, cuts: list[int]
) -> None:
    body = _signed_body(chunks, trailer)
    good = _decode_signed(body, trailer, cuts)
    assert good[0] == b"".join(chunks)
    bad = _mutated(body, pos, value, op)
    assume(bad != body)
    try:
        got = _decode_signed(bad, trailer, cuts)
    except S3Error as err:
        assert err.code in ("SignatureDoesNotMatch", "InvalidRequest", "IncompleteBody"), err.code
        return
    # Accepted only when the change cannot be seen: hex-digit case in a size
    # line or whitespace around a trailer value.
    assert got == good
