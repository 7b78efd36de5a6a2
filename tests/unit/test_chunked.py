"""The aws-chunked decoder, tested the way h11 tests its readers.

One table of valid bodies, each fed whole, then a byte at a time, then with
trailing garbage that must be left alone; a table of malformed bodies; every
truncation; and hypothesis for random streams split at random points.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.chunked import (
    MAX_TRAILER_FIELDS,
    AwsChunkedDecoder,
    ChunkSigner,
    Data,
    EndOfMessage,
    Event,
    Trailers,
)
from seglake.protocol.sigv4 import (
    AuthContext,
    RequestView,
    StreamingSigner,
    authenticate,
    derive_signing_key,
)
from tests.chunk_signing import (
    AWS_EXAMPLE_HEADERS,
    AWS_EXAMPLE_PATH,
    AWS_EXAMPLE_SECRET,
    ChunkSigning,
)

SIGNING_KEY = derive_signing_key("chunk-secret", "20240501", "us-east-1")
CTX = AuthContext(
    access_key="AKIDCHUNKED",
    region="us-east-1",
    amz_date="20240501T120000Z",
    scope="20240501/us-east-1/s3/aws4_request",
    signing_key=SIGNING_KEY,
    seed_signature="5" * 64,
    content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    presigned=False,
)


# Signed independently of seglake.protocol.sigv4 (tests/chunk_signing.py).
SIGNING = ChunkSigning(SIGNING_KEY, CTX.amz_date, CTX.scope, CTX.seed_signature)


def signed_stream(
    chunks: list[bytes], trailers: list[tuple[str, str]] | None = None, *, trailer_sep: str = ":"
) -> bytes:
    """An aws-chunked body signed the way the AWS SDKs sign one."""
    return SIGNING.body([*chunks, b""], trailers, separator=trailer_sep)


def unsigned_stream(chunks: list[bytes], trailers: list[tuple[str, str]] | None = None) -> bytes:
    out = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c]
    out.append(b"0\r\n")
    for n, v in trailers or []:
        out.append(f"{n}:{v}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)


def botocore_stream(data: bytes, checksum_cls: type | None, name: str, chunk_size: int) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum_cls, checksum_name=name, chunk_size=chunk_size
    )
    body: bytes = wrapper.read()
    return body


def b64(cls: type, data: bytes) -> str:
    c = cls()
    c.update(data)
    value: str = c.b64digest()
    return value


def signer() -> ChunkSigner:
    return StreamingSigner(CTX)


@dataclass
class Case:
    name: str
    body: bytes
    data: bytes
    trailers: dict[str, str] | None
    make_signer: Callable[[], ChunkSigner] | None = None
    trailer: bool = False
    max_chunk_size: int = 16 * 1024 * 1024
    extra: dict[str, object] = field(default_factory=dict)

    def decoder(self) -> AwsChunkedDecoder:
        return AwsChunkedDecoder(
            signer=self.make_signer() if self.make_signer else None,
            trailer=self.trailer,
            max_chunk_size=self.max_chunk_size,
        )


PAYLOAD = bytes(range(256)) * 20 + b"tail"
SMALL = b"hello, world"

# AWS's documented example ("Transferring Payload in Multiple Chunks").
AWS_EXAMPLE_BODY = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
    + b"a" * 65536
    + b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
    + b"a" * 1024
    + b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
)


def aws_example_signer() -> ChunkSigner:
    from datetime import UTC, datetime

    view = RequestView("PUT", AWS_EXAMPLE_PATH, b"", AWS_EXAMPLE_HEADERS)
    ctx = authenticate(view, lambda ak: AWS_EXAMPLE_SECRET, datetime(2013, 5, 24, tzinfo=UTC))
    assert ctx is not None
    return StreamingSigner(ctx)


VALID: list[Case] = [
    *[
        Case(
            f"botocore-{cls.__name__}-{size}",
            botocore_stream(PAYLOAD, cls, f"x-amz-checksum-{alg}", size),
            PAYLOAD,
            {f"x-amz-checksum-{alg}": b64(cls, PAYLOAD)},
            trailer=True,
        )
        for cls, alg in [
            (Crc32Checksum, "crc32"),
            (CrtCrc32cChecksum, "crc32c"),
            (CrtCrc64NvmeChecksum, "crc64nvme"),
            (Sha1Checksum, "sha1"),
            (Sha256Checksum, "sha256"),
        ]
        for size in (1000, 4096)
    ],
    Case(
        "botocore-empty-body",
        botocore_stream(b"", Crc32Checksum, "x-amz-checksum-crc32", 1024),
        b"",
        {"x-amz-checksum-crc32": b64(Crc32Checksum, b"")},
        trailer=True,
    ),
    Case(
        "botocore-no-checksum",
        botocore_stream(SMALL, None, "x-amz-checksum", 5),
        SMALL,
        {},
        trailer=True,
    ),
    Case("unsigned-no-trailer", unsigned_stream([b"abc", b"defg"]), b"abcdefg", None),
    Case("unsigned-empty", b"0\r\n\r\n", b"", None),
    Case("uppercase-hex", b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", None),
    Case("leading-zero-hex", b"000a\r\n0123456789\r\n000\r\n\r\n", b"0123456789", None),
    Case(
        "space-after-colon",
        unsigned_stream([SMALL], [("X-Amz-Checksum-CRC32", " " + b64(Crc32Checksum, SMALL) + " ")]),
        SMALL,
        {"x-amz-checksum-crc32": b64(Crc32Checksum, SMALL)},
        trailer=True,
    ),
    Case(
        "two-trailers",
        unsigned_stream([SMALL], [("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-meta-z", "v")]),
        SMALL,
        {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-meta-z": "v"},
        trailer=True,
    ),
    Case(
        "signed-no-trailer",
        signed_stream([b"a" * 100, b"b" * 7]),
        b"a" * 100 + b"b" * 7,
        None,
        signer,
    ),
    Case("signed-empty", signed_stream([]), b"", None, signer),
    Case(
        "signed-trailer",
        signed_stream(
            [PAYLOAD[:3000], PAYLOAD[3000:]],
            [("x-amz-checksum-crc32c", b64(CrtCrc32cChecksum, PAYLOAD))],
        ),
        PAYLOAD,
        {"x-amz-checksum-crc32c": b64(CrtCrc32cChecksum, PAYLOAD)},
        signer,
        trailer=True,
    ),
    Case(
        "signed-trailer-space-after-colon",
        signed_stream(
            [SMALL], [("x-amz-checksum-sha256", b64(Sha256Checksum, SMALL))], trailer_sep=": "
        ),
        SMALL,
        {"x-amz-checksum-sha256": b64(Sha256Checksum, SMALL)},
        signer,
        trailer=True,
    ),
    Case(
        "signed-no-trailer-fields",
        signed_stream([SMALL], []),
        SMALL,
        {},
        signer,
        trailer=True,
    ),
    Case("aws-documented-example", AWS_EXAMPLE_BODY, b"a" * 66560, None, aws_example_signer),
    Case("exactly-max-chunk", unsigned_stream([b"x" * 64]), b"x" * 64, None, max_chunk_size=64),
]


def run(decoder: AwsChunkedDecoder, pieces: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events


def check(case: Case, events: list[Event], decoder: AwsChunkedDecoder) -> None:
    data = [e.data for e in events if isinstance(e, Data)]
    assert all(data), "empty Data events are never emitted"
    assert b"".join(data) == case.data
    rest = [e for e in events if not isinstance(e, Data)]
    if case.trailers is None:
        assert rest == [EndOfMessage()]
    else:
        assert rest == [Trailers(case.trailers), EndOfMessage()]
    # Nothing after EndOfMessage and no Data after Trailers.
    assert events[-1] == EndOfMessage()
    assert decoder.complete
    decoder.eof()


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_valid_whole(case: Case) -> None:
    d = case.decoder()
    assert not d.complete
    check(case, run(d, [case.body]), d)
    assert d.unused_data == b""


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_valid_byte_at_a_time(case: Case) -> None:
    d = case.decoder()
    body = case.body
    events = run(d, [body[i : i + 1] for i in range(len(body))])
    check(case, events, d)
    assert d.unused_data == b""


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n", b"\r\n", b"0\r\n\r\n", b"\x00\xff"])
def test_valid_with_trailing_garbage(case: Case, garbage: bytes) -> None:
    d = case.decoder()
    check(case, run(d, [case.body + garbage]), d)
    assert d.unused_data == garbage
    # More bytes after the end are kept too, and produce no events.
    assert d.feed(b"more") == []
    assert d.unused_data == garbage + b"more"


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_every_truncation_is_incomplete(case: Case) -> None:
    body = case.body
    # Long bodies: every position near the framing, a stride through the data.
    positions = sorted(
        {
            *range(0, min(len(body), 400)),
            *range(len(body) - 400, len(body)),
            *range(0, len(body), 97),
        }
    )
    for cut in positions:
        if cut < 0:
            continue
        d = case.decoder()
        d.feed(body[:cut])
        assert not d.complete
        with pytest.raises(S3Error) as exc:
            d.eof()
        assert exc.value.code == "IncompleteBody", cut


def test_data_streams_without_waiting_for_chunk_end() -> None:
    d = AwsChunkedDecoder(signer=None, trailer=False)
    assert d.feed(b"10\r\n") == []
    assert d.feed(b"abc") == [Data(b"abc")]
    assert d.feed(b"defghijklmnop") == [Data(b"defghijklmnop")]
    assert d.feed(b"\r") == []
    assert d.feed(b"\n0\r\n\r") == []
    assert d.feed(b"\n") == [EndOfMessage()]


def bad(
    body: bytes, *, signed: bool = False, trailer: bool = False, max_chunk: int = 1 << 24
) -> S3Error:
    d = AwsChunkedDecoder(
        signer=signer() if signed else None, trailer=trailer, max_chunk_size=max_chunk
    )
    with pytest.raises(S3Error) as exc:
        d.feed(body)
        d.eof()
    # A failed decoder stays failed.
    with pytest.raises(S3Error):
        d.feed(b"0\r\n\r\n")
    return exc.value


def replace_once(body: bytes, old: bytes, new: bytes) -> bytes:
    assert old in body
    return body.replace(old, new, 1)


GOOD_SIGNED = signed_stream([b"abc", b"defg"])
GOOD_SIGNED_TRAILER = signed_stream(
    [b"abc"], [("x-amz-checksum-crc32", b64(Crc32Checksum, b"abc"))]
)
FIRST_SIG = GOOD_SIGNED.split(b"chunk-signature=")[1][:64]
LAST_SIG = GOOD_SIGNED.split(b"chunk-signature=")[3][:64]
TRAILER_SIG = GOOD_SIGNED_TRAILER.split(b"x-amz-trailer-signature:")[1][:64]


def reorder(body: bytes) -> bytes:
    """Swap the first two chunks of a two-chunk stream."""
    lines = body.split(b"\r\n")
    return b"\r\n".join([*lines[2:4], *lines[0:2], *lines[4:]])


MALFORMED: list[tuple[str, bytes, dict[str, object], str]] = [
    ("bad-hex", b"zz\r\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("empty-size", b"\r\n", {}, "InvalidRequest"),
    ("signed-size", b"+3\r\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("negative-size", b"-3\r\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("0x-prefix", b"0x3\r\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("underscore", b"1_0\r\n", {}, "InvalidRequest"),
    ("space-in-size", b" 3\r\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("size-trailing-space", b"3 \r\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("bare-lf-size", b"3\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("cr-in-size", b"3\r3\r\nabc\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("missing-crlf-after-data", b"3\r\nabcd\r\n0\r\n\r\n", {}, "InvalidRequest"),
    ("lf-only-after-data", b"3\r\nabc\n0\r\n\r\n", {}, "InvalidRequest"),
    ("oversize-size-line", b"0" * 300 + b"3\r\n", {}, "InvalidRequest"),
    ("oversize-no-newline", b"1" * 1000, {}, "InvalidRequest"),
    ("chunk-too-big", b"41\r\n", {"max_chunk": 64}, "InvalidRequest"),
    ("huge-size", b"ffffffffffffffffffff\r\n", {}, "InvalidRequest"),
    (
        "extension-unsigned",
        b"3;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n0\r\n\r\n",
        {},
        "InvalidRequest",
    ),
    ("other-extension", b"3;foo=bar\r\nabc\r\n0\r\n\r\n", {"signed": True}, "InvalidRequest"),
    ("final-not-crlf", b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", {}, "InvalidRequest"),
    ("final-junk", b"0\r\nxx", {}, "InvalidRequest"),
    ("trailer-no-colon", b"0\r\nnocolon\r\n\r\n", {"trailer": True}, "InvalidRequest"),
    ("trailer-empty-name", b"0\r\n:v\r\n\r\n", {"trailer": True}, "InvalidRequest"),
    ("trailer-space-in-name", b"0\r\nx y:v\r\n\r\n", {"trailer": True}, "InvalidRequest"),
    ("trailer-space-before-colon", b"0\r\nx :v\r\n\r\n", {"trailer": True}, "InvalidRequest"),
    ("trailer-control-char", b"0\r\nx:a\x01b\r\n\r\n", {"trailer": True}, "InvalidRequest"),
    ("trailer-bare-lf", b"0\r\nx:v\n\r\n", {"trailer": True}, "InvalidRequest"),
    ("trailer-duplicate", b"0\r\nx:1\r\nX:2\r\n\r\n", {"trailer": True}, "InvalidRequest"),
    (
        "too-many-trailers",
        b"0\r\n" + b"".join(b"t%d:v\r\n" % i for i in range(MAX_TRAILER_FIELDS + 1)) + b"\r\n",
        {"trailer": True},
        "InvalidRequest",
    ),
    ("trailer-too-large", b"0\r\nx:" + b"v" * 20000, {"trailer": True}, "InvalidRequest"),
    (
        "trailer-signature-unsigned",
        b"0\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n",
        {"trailer": True},
        "InvalidRequest",
    ),
    (
        "missing-chunk-signature",
        b"3\r\nabc\r\n0\r\n\r\n",
        {"signed": True},
        "SignatureDoesNotMatch",
    ),
    (
        "missing-final-signature",
        GOOD_SIGNED.split(b"0;chunk-signature=")[0] + b"0\r\n\r\n",
        {"signed": True},
        "SignatureDoesNotMatch",
    ),
    (
        "wrong-chunk-signature",
        replace_once(GOOD_SIGNED, FIRST_SIG, b"0" * 64),
        {"signed": True},
        "SignatureDoesNotMatch",
    ),
    (
        "wrong-final-signature",
        replace_once(GOOD_SIGNED, LAST_SIG, b"0" * 64),
        {"signed": True},
        "SignatureDoesNotMatch",
    ),
    (
        "uppercase-signature",
        replace_once(GOOD_SIGNED, FIRST_SIG, FIRST_SIG.upper()),
        {"signed": True},
        "InvalidRequest",
    ),
    (
        "short-signature",
        replace_once(GOOD_SIGNED, FIRST_SIG, FIRST_SIG[:63]),
        {"signed": True},
        "InvalidRequest",
    ),
    (
        "tampered-data",
        replace_once(GOOD_SIGNED, b"defg", b"defh"),
        {"signed": True},
        "SignatureDoesNotMatch",
    ),
    ("reordered-chunks", reorder(GOOD_SIGNED), {"signed": True}, "SignatureDoesNotMatch"),
    (
        "wrong-trailer-signature",
        replace_once(GOOD_SIGNED_TRAILER, TRAILER_SIG, b"0" * 64),
        {"signed": True, "trailer": True},
        "SignatureDoesNotMatch",
    ),
    (
        "tampered-trailer",
        replace_once(GOOD_SIGNED_TRAILER, b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32:A"),
        {"signed": True, "trailer": True},
        "SignatureDoesNotMatch",
    ),
    (
        "missing-trailer-signature",
        GOOD_SIGNED_TRAILER.split(b"x-amz-trailer-signature:")[0] + b"\r\n",
        {"signed": True, "trailer": True},
        "SignatureDoesNotMatch",
    ),
    (
        "trailer-after-signature",
        GOOD_SIGNED_TRAILER[:-2] + b"x-amz-meta-late:1\r\n\r\n",
        {"signed": True, "trailer": True},
        "InvalidRequest",
    ),
    (
        "signed-no-trailer-section-expected",
        GOOD_SIGNED_TRAILER,
        {"signed": True},
        "InvalidRequest",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "kwargs", "code"), [pytest.param(*c, id=c[0]) for c in MALFORMED]
)
def test_malformed(name: str, body: bytes, kwargs: dict[str, object], code: str) -> None:
    err = bad(body, **kwargs)  # type: ignore[arg-type]
    assert err.code == code, (name, err)
    assert len(err.text) < 200


@pytest.mark.parametrize(
    ("name", "body", "signed", "trailer"),
    [
        ("bad-hex", b"zz\r\nabc\r\n0\r\n\r\n", False, False),
        ("wrong-signature", replace_once(GOOD_SIGNED, FIRST_SIG, b"0" * 64), True, False),
        ("tampered-trailer", replace_once(GOOD_SIGNED_TRAILER, b"crc32:", b"crc32:A"), True, True),
        ("oversize-no-newline", b"1" * 1000, False, False),
    ],
)
def test_malformed_byte_at_a_time(name: str, body: bytes, signed: bool, trailer: bool) -> None:
    d = AwsChunkedDecoder(signer=signer() if signed else None, trailer=trailer)
    with pytest.raises(S3Error):
        for i in range(len(body)):
            d.feed(body[i : i + 1])
        d.eof()


def test_feed_after_error_reraises_same_error() -> None:
    d = AwsChunkedDecoder(signer=None, trailer=False)
    with pytest.raises(S3Error) as first:
        d.feed(b"zz\r\n")
    with pytest.raises(S3Error) as second:
        d.feed(b"")
    assert second.value is first.value
    with pytest.raises(S3Error):
        d.eof()


def test_eof_before_anything() -> None:
    d = AwsChunkedDecoder(signer=None, trailer=True)
    with pytest.raises(S3Error) as exc:
        d.eof()
    assert exc.value.code == "IncompleteBody"


def test_signature_checked_before_following_chunk() -> None:
    # A wrong first signature must stop the stream before the second chunk's data.
    body = replace_once(GOOD_SIGNED, FIRST_SIG, b"0" * 64)
    d = AwsChunkedDecoder(signer=signer(), trailer=False)
    cut = body.index(b"defg")
    with pytest.raises(S3Error):
        d.feed(body[:cut])


# --------------------------------------------------------------------------
# Generated streams split at random points.

chunk_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=6)
trailer_lists = st.one_of(
    st.none(),
    st.lists(
        st.tuples(
            st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
        ),
        max_size=4,
        unique_by=lambda t: t[0],
    ).filter(lambda ts: all(n != "x-amz-trailer-signature" for n, _ in ts)),
)


def split_at(body: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(
    chunks=chunk_lists,
    trailers=trailer_lists,
    is_signed=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    garbage=st.binary(max_size=8),
)
def test_generated_streams(
    chunks: list[bytes],
    trailers: list[tuple[str, str]] | None,
    is_signed: bool,
    cuts: list[int],
    garbage: bytes,
) -> None:
    body = signed_stream(chunks, trailers) if is_signed else unsigned_stream(chunks, trailers)
    trailer = trailers is not None
    d = AwsChunkedDecoder(signer=signer() if is_signed else None, trailer=trailer)
    events = run(d, split_at(body + garbage, cuts))
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"".join(chunks)
    tail = [e for e in events if not isinstance(e, Data)]
    if trailer:
        assert trailers is not None
        assert tail == [Trailers({n: v.strip() for n, v in trailers}), EndOfMessage()]
    else:
        assert tail == [EndOfMessage()]
    assert d.unused_data == garbage
    d.eof()


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=5000),
    chunk_size=st.integers(1, 2000),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_generated_botocore_streams(data: bytes, chunk_size: int, cuts: list[int]) -> None:
    body = botocore_stream(data, CrtCrc32cChecksum, "x-amz-checksum-crc32c", chunk_size)
    d = AwsChunkedDecoder(signer=None, trailer=True)
    events = run(d, split_at(body, cuts))
    assert b"".join(e.data for e in events if isinstance(e, Data)) == data
    assert events[-2:] == [
        Trailers({"x-amz-checksum-crc32c": b64(CrtCrc32cChecksum, data)}),
        EndOfMessage(),
    ]


@settings(max_examples=200, deadline=None)
@given(
    chunks=chunk_lists,
    is_signed=st.booleans(),
    pos=st.integers(min_value=0),
    byte=st.integers(0, 255),
)
def test_generated_corruption_never_passes_silently(
    chunks: list[bytes], is_signed: bool, pos: int, byte: int
) -> None:
    body = signed_stream(chunks) if is_signed else unsigned_stream(chunks)
    pos %= len(body)
    if body[pos] == byte:
        return
    corrupted = body[:pos] + bytes((byte,)) + body[pos + 1 :]
    d = AwsChunkedDecoder(signer=signer() if is_signed else None, trailer=False)
    try:
        events = d.feed(corrupted)
        d.eof()
    except S3Error:
        return
    # Accepted: only possible for unsigned streams where the change stays valid
    # framing (a data byte, or a hex digit's case); signed streams never.
    assert not is_signed
    decoded = b"".join(e.data for e in events if isinstance(e, Data))
    assert decoded != b"".join(chunks) or corrupted[pos : pos + 1] in b"ABCDEFabcdef"


def test_feed_accepts_other_buffers() -> None:
    d = AwsChunkedDecoder(signer=None, trailer=False)
    events = d.feed(bytearray(b"3\r\nabc\r\n0\r\n\r\nrest"))  # type: ignore[arg-type]
    assert events == [Data(b"abc"), EndOfMessage()]
    assert all(type(e.data) is bytes for e in events if isinstance(e, Data))
    assert d.unused_data == b"rest"
