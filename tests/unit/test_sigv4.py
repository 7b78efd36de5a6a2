"""SigV4 verification, with botocore as the signing oracle.

Requests are signed by botocore exactly as boto3 would sign them (the S3
serializer percent-encodes the key with ``quote(key, safe="/~")`` and the
query with ``percent_encode_sequence``), turned into the bytes a server
receives, and verified. Then every single-field change must be refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.sigv4 import (
    AuthContext,
    RequestView,
    StreamingSigner,
    authenticate,
    canonical_query,
    canonical_uri,
    chunk_string_to_sign,
    derive_signing_key,
    sign,
    trailer_string_to_sign,
)
from tests.chunk_signing import (
    AWS_EXAMPLE_CHUNKS,
    AWS_EXAMPLE_HEADERS,
    AWS_EXAMPLE_PATH,
    AWS_EXAMPLE_SECRET,
)

AK = "AKIDEXAMPLE0000001"
SECRET = "s3cr3t/K7MDENG+bPxRfiCYEXAMPLEKEY"
SECRETS = {AK: SECRET}
CREDS = Credentials(AK, SECRET)
SIGNED_AT = datetime(2024, 5, 1, 12, 0, 0)  # naive UTC, as botocore produces
NOW = SIGNED_AT.replace(tzinfo=UTC)
HOST = "localhost:9000"
EMPTY = hashlib.sha256(b"").hexdigest()


def lookup(access_key: str) -> str | None:
    return SECRETS.get(access_key)


def make_url(bucket: str, key: str | None, query: list[tuple[str, str]] | None) -> str:
    path = "/" + bucket
    if key is not None:
        path += "/" + quote(key, safe="/~")
    url = f"http://{HOST}{path}"
    if query:
        url += "?" + percent_encode_sequence(query)
    return url


def to_view(req: AWSRequest) -> RequestView:
    parts = urlsplit(req.url)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in req.headers.items()]
    if "host" not in {n.lower() for n, _ in req.headers.items()}:
        headers.insert(0, (b"Host", parts.netloc.encode("ascii")))
    return RequestView(
        method=req.method,
        raw_path=parts.path.encode("ascii"),
        query_string=parts.query.encode("ascii"),
        headers=headers,
    )


def signed(
    method: str = "GET",
    bucket: str = "bucket",
    key: str | None = "key",
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    region: str = "us-east-1",
    at: datetime = SIGNED_AT,
    creds: Credentials = CREDS,
) -> RequestView:
    req = AWSRequest(method=method, url=make_url(bucket, key, query), data=body)
    for n, v in headers or []:
        req.headers.add_header(n, v)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        S3SigV4Auth(creds, "s3", region).add_auth(req)
    return to_view(req)


def presigned(
    method: str = "GET",
    bucket: str = "bucket",
    key: str | None = "key",
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
    region: str = "us-east-1",
    expires: int = 3600,
    at: datetime = SIGNED_AT,
) -> RequestView:
    req = AWSRequest(method=method, url=make_url(bucket, key, query))
    for n, v in headers or []:
        req.headers.add_header(n, v)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        S3SigV4QueryAuth(CREDS, "s3", region, expires=expires).add_auth(req)
    return to_view(req)


def verify(view: RequestView, now: datetime = NOW, region: str = "us-east-1") -> AuthContext:
    ctx = authenticate(view, lookup, now, region=region)
    assert ctx is not None
    return ctx


def refused(view: RequestView, now: datetime = NOW, region: str = "us-east-1") -> S3Error:
    with pytest.raises(S3Error) as exc:
        authenticate(view, lookup, now, region=region)
    err = exc.value
    # Nothing secret may leak through an error message.
    assert SECRET not in err.text
    return err


def header(view: RequestView, name: bytes) -> bytes:
    for n, v in view.headers:
        if n.lower() == name:
            return v
    raise KeyError(name)


def with_header(view: RequestView, name: bytes, value: bytes) -> RequestView:
    out = []
    found = False
    for n, v in view.headers:
        if n.lower() == name and not found:
            out.append((n, value))
            found = True
        else:
            out.append((n, v))
    if not found:
        out.append((name, value))
    return replace(view, headers=out)


def without_header(view: RequestView, name: bytes) -> RequestView:
    return replace(view, headers=[(n, v) for n, v in view.headers if n.lower() != name])


def query_param(view: RequestView, name: bytes) -> bytes:
    for item in view.query_string.split(b"&"):
        n, _, v = item.partition(b"=")
        if n == name:
            return v
    raise KeyError(name)


def with_query_param(view: RequestView, name: bytes, value: bytes | None) -> RequestView:
    items = []
    for item in view.query_string.split(b"&"):
        n, _, _ = item.partition(b"=")
        if n == name:
            if value is not None:
                items.append(n + b"=" + value)
        else:
            items.append(item)
    return replace(view, query_string=b"&".join(items))


def flip(b: int) -> int:
    """A different byte of the same class, so the canonical form changes."""
    c = chr(b)
    if c.isdigit():
        return ord("0" if c != "0" else "1")
    if c.isalpha():
        return ord(c.swapcase())
    raise ValueError(c)


def alnum_positions(raw: bytes) -> Iterator[int]:
    """Positions of literal letters/digits (not hex digits of a %XX escape)."""
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:
            i += 3
            continue
        if chr(raw[i]).isalnum() and raw[i] < 0x80:
            yield i
        i += 1


def mutate(raw: bytes, i: int) -> bytes:
    return raw[:i] + bytes((flip(raw[i]),)) + raw[i + 1 :]


# --------------------------------------------------------------------------
# AWS's own published examples (Signature V4 for S3 documentation).

AWS_AK = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = AWS_EXAMPLE_SECRET
AWS_NOW = datetime(2013, 5, 24, 0, 5, 0, tzinfo=UTC)


def aws_lookup(access_key: str) -> str | None:
    return AWS_SECRET if access_key == AWS_AK else None


def test_aws_documented_get_object() -> None:
    view = RequestView(
        "GET",
        b"/test.txt",
        b"",
        [
            (b"Host", b"examplebucket.s3.amazonaws.com"),
            (b"Range", b"bytes=0-9"),
            (b"x-amz-content-sha256", EMPTY.encode()),
            (b"x-amz-date", b"20130524T000000Z"),
            (
                b"Authorization",
                b"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                b"aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                b"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ],
    )
    ctx = authenticate(view, aws_lookup, AWS_NOW)
    assert ctx is not None
    assert ctx.scope == "20130524/us-east-1/s3/aws4_request"
    assert not ctx.presigned


def test_aws_documented_presigned_get() -> None:
    view = RequestView(
        "GET",
        b"/test.txt",
        b"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524"
        b"%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
        b"&X-Amz-SignedHeaders=host&X-Amz-Signature="
        b"aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        [(b"Host", b"examplebucket.s3.amazonaws.com")],
    )
    ctx = authenticate(view, aws_lookup, AWS_NOW)
    assert ctx is not None
    assert ctx.presigned
    assert ctx.content_sha256 == "UNSIGNED-PAYLOAD"


def test_derive_signing_key_known_value() -> None:
    # From AWS's "Examples of how to derive a signing key for Signature Version 4".
    key = derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


# --------------------------------------------------------------------------
# Valid requests signed by botocore.

KEYS = [
    "plain.txt",
    "with space/and more spaces.txt",
    "plus+sign",
    "percent%25literal%",
    "tilde~file",
    "unicode/日本語/ключ/é",
    "double//slashes///here",
    "dots/../../up/./here",
    "..",
    "reserved!*'();:@&=+$,?#[]",
    "emoji-😀",
    "trailing/",
]

QUERIES: list[list[tuple[str, str]]] = [
    [],
    [("uploads", "")],
    [("list-type", "2"), ("prefix", "a b/c+d"), ("delimiter", "/")],
    [("prefix", "日本"), ("start-after", "x%y&z=w")],
    [("versionId", "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo")],
    [("b", "2"), ("a", "1"), ("a", "0"), ("A", "x")],
    [("response-content-disposition", 'attachment; filename="a b.txt"')],
    [("tilde~", "~"), ("star*", "*")],
]


@pytest.mark.parametrize("key", KEYS)
def test_header_auth_keys(key: str) -> None:
    ctx = verify(signed(key=key))
    assert ctx.access_key == AK
    assert ctx.amz_date == "20240501T120000Z"
    assert ctx.content_sha256 == EMPTY


@pytest.mark.parametrize("key", KEYS)
def test_presigned_keys(key: str) -> None:
    ctx = verify(presigned(key=key))
    assert ctx.presigned
    assert ctx.content_sha256 == "UNSIGNED-PAYLOAD"


@pytest.mark.parametrize("query", QUERIES)
def test_header_auth_queries(query: list[tuple[str, str]]) -> None:
    verify(signed(query=query))


@pytest.mark.parametrize("query", QUERIES)
def test_presigned_queries(query: list[tuple[str, str]]) -> None:
    # botocore folds repeated presign parameters into a dict; skip those.
    names = [n for n, _ in query]
    if len(set(names)) == len(names):
        verify(presigned(query=query))


def test_bucket_only_and_root() -> None:
    verify(signed(key=None))
    req = AWSRequest(method="GET", url=f"http://{HOST}/")
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    verify(to_view(req))


def test_put_with_body_and_metadata() -> None:
    body = b"hello world"
    view = signed(
        "PUT",
        body=body,
        headers=[
            ("Content-Type", "text/plain"),
            ("x-amz-meta-Spaced", "  a   b  c  "),
            ("x-amz-meta-tab", "a\t\tb"),
            ("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww=="),
        ],
    )
    ctx = verify(view)
    assert ctx.content_sha256 == hashlib.sha256(body).hexdigest()


def test_repeated_headers_joined_in_order() -> None:
    view = signed("PUT", headers=[("x-amz-meta-a", "1"), ("x-amz-meta-a", " 2  3 ")])
    assert [v for n, v in view.headers if n.lower() == b"x-amz-meta-a"] == [b"1", b" 2  3 "]
    verify(view)
    swapped = list(view.headers)
    idx = [i for i, (n, _) in enumerate(swapped) if n.lower() == b"x-amz-meta-a"]
    swapped[idx[0]], swapped[idx[1]] = swapped[idx[1]], swapped[idx[0]]
    assert refused(replace(view, headers=swapped)).code == "SignatureDoesNotMatch"


def test_latin1_header_value_as_sent_by_botocore() -> None:
    # http.client puts str header values on the wire as Latin-1 while botocore
    # signs their UTF-8 encoding.
    verify(signed("PUT", headers=[("x-amz-meta-name", "café")]))


def test_utf8_header_value_as_sent_by_other_sdks() -> None:
    ctx = verify(signed("PUT", headers=[("x-amz-meta-name", "café")]))
    # A client that puts UTF-8 bytes on the wire and signs the same bytes.
    view = RequestView(
        "GET",
        b"/bucket/key",
        b"",
        [
            (b"host", HOST.encode()),
            (b"x-amz-content-sha256", EMPTY.encode()),
            (b"x-amz-date", ctx.amz_date.encode()),
            (b"x-amz-meta-name", "日本".encode()),
        ],
    )
    creq = b"\n".join(
        [
            b"GET",
            b"/bucket/key",
            b"",
            b"host:"
            + HOST.encode()
            + b"\nx-amz-content-sha256:"
            + EMPTY.encode()
            + b"\nx-amz-date:"
            + ctx.amz_date.encode()
            + b"\nx-amz-meta-name:"
            + "日本".encode()
            + b"\n",
            b"host;x-amz-content-sha256;x-amz-date;x-amz-meta-name",
            EMPTY.encode(),
        ]
    )
    sts = f"AWS4-HMAC-SHA256\n{ctx.amz_date}\n{ctx.scope}\n{hashlib.sha256(creq).hexdigest()}"
    sig = sign(ctx.signing_key, sts)
    auth = (
        f"AWS4-HMAC-SHA256 Credential={AK}/{ctx.scope}, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-name, Signature={sig}"
    )
    verify(with_header(view, b"authorization", auth.encode()))


def test_header_names_any_case() -> None:
    view = signed()
    upper = replace(view, headers=[(n.upper(), v) for n, v in view.headers])
    assert verify(upper) == verify(view)


def test_anonymous() -> None:
    assert authenticate(RequestView("GET", b"/b/k", b"", [(b"host", b"h")]), lookup, NOW) is None
    view = RequestView("GET", b"/b/k", b"prefix=X-Amz-Signature&Signaturex=1", [(b"host", b"h")])
    assert authenticate(view, lookup, NOW) is None


def test_context_fields_and_seed() -> None:
    view = signed("PUT", body=b"x", region="eu-west-3")
    ctx = verify(view, region="eu-west-3")
    auth = header(view, b"authorization").decode()
    assert ctx.seed_signature == auth.rsplit("Signature=", 1)[1]
    assert ctx.region == "eu-west-3"
    assert ctx.scope == "20240501/eu-west-3/s3/aws4_request"
    assert ctx.signing_key == derive_signing_key(SECRET, "20240501", "eu-west-3")


def test_us_region_alias_both_directions() -> None:
    ctx = verify(signed(region="us"))
    assert ctx.region == "us"
    verify(signed(region="us-east-1"), region="us")
    verify(presigned(region="us"))
    verify(presigned(region="us-east-1"), region="us")


def test_other_region() -> None:
    verify(signed(region="eu-central-1"), region="eu-central-1")
    err = refused(signed(region="eu-central-1"))
    assert err.code == "AuthorizationHeaderMalformed"
    assert "us-east-1" in err.text
    err = refused(presigned(region="eu-central-1"))
    assert err.code == "AuthorizationQueryParametersError"
    assert "us-east-1" in err.text


def test_uppercase_payload_hash_accepted() -> None:
    req = AWSRequest(method="PUT", url=make_url("b", "k", None), data=b"abc")
    digest = hashlib.sha256(b"abc").hexdigest().upper()
    req.headers["X-Amz-Content-SHA256"] = digest
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    # S3SigV4Auth overwrites the header with its own lowercase hash; sign by hand.
    view = with_header(to_view(req), b"x-amz-content-sha256", digest.encode())
    ctx = _resign(view)
    assert ctx.content_sha256 == digest.lower()


def _resign(view: RequestView) -> AuthContext:
    """Re-sign a view with an independent, straightforward implementation."""
    amz_date = header(view, b"x-amz-date").decode()
    names = sorted({n.lower() for n, _ in view.headers} - {b"authorization"})
    lines = b""
    for name in names:
        values = [b" ".join(v.split()) for n, v in view.headers if n.lower() == name]
        lines += name + b":" + b",".join(values) + b"\n"
    creq = b"\n".join(
        [
            view.method.encode(),
            view.raw_path,
            canonical_query(view.query_string),
            lines,
            b";".join(names),
            header(view, b"x-amz-content-sha256"),
        ]
    )
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = derive_signing_key(SECRET, amz_date[:8], "us-east-1")
    sig = sign(key, f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(creq).hexdigest()}")
    auth = f"AWS4-HMAC-SHA256 Credential={AK}/{scope},SignedHeaders={b';'.join(names).decode()},Signature={sig}"
    return verify(with_header(view, b"authorization", auth.encode()))


@pytest.mark.parametrize(
    "payload",
    [
        "UNSIGNED-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ],
)
def test_payload_constants(payload: str) -> None:
    view = with_header(signed("PUT"), b"x-amz-content-sha256", payload.encode())
    assert _resign(view).content_sha256 == payload


# --------------------------------------------------------------------------
# Canonical forms.


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"/", b"/"),
        (b"", b"/"),
        (b"/a/b", b"/a/b"),
        (b"/a%2Fb", b"/a%2Fb"),
        (b"/a%2fb", b"/a%2Fb"),
        (b"/%7e%7E~", b"/~~~"),
        (b"/%41%61", b"/Aa"),
        (b"/a b", b"/a%20b"),
        (b"/a+b", b"/a%2Bb"),
        (b"/a%20b", b"/a%20b"),
        (b"/a%2520b", b"/a%2520b"),
        (b"//x/../y/./", b"//x/../y/./"),
        ("/é".encode(), b"/%C3%A9"),
        (b"/%c3%a9", b"/%C3%A9"),
        (b"/a:b@c!", b"/a%3Ab%40c%21"),
    ],
)
def test_canonical_uri(raw: bytes, canonical: bytes) -> None:
    assert canonical_uri(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"", b""),
        (b"uploads", b"uploads="),
        (b"b=2&a=1", b"a=1&b=2"),
        (b"a=2&a=1&a=", b"a=&a=1&a=2"),
        (b"a=b=c", b"a=b%3Dc"),
        (b"p=a+b", b"p=a%2Bb"),
        (b"p=a%20b", b"p=a%20b"),
        (b"p=%7e%2f/", b"p=~%2F%2F"),
        (b"a=1&&b=2&", b"a=1&b=2"),
        (b"Z=1&a=1", b"Z=1&a=1"),
        ("k=é".encode(), b"k=%C3%A9"),
    ],
)
def test_canonical_query(raw: bytes, canonical: bytes) -> None:
    assert canonical_query(raw) == canonical


@pytest.mark.parametrize("raw", [b"/a%", b"/a%2", b"/a%zz", b"/%%41"])
def test_malformed_escape_in_path(raw: bytes) -> None:
    view = replace(signed(), raw_path=raw)
    assert refused(view).code == "InvalidURI"


def test_malformed_escape_in_query() -> None:
    view = replace(signed(), query_string=b"prefix=100%")
    assert refused(view).code == "InvalidURI"


# --------------------------------------------------------------------------
# Single-field mutations of a header-signed request.

BASE_QUERY = [("list-type", "2"), ("prefix", "Photos 2024/")]
BASE_HEADERS = [("x-amz-meta-color", "Blue Green"), ("Content-Type", "image/png")]


def base_signed() -> RequestView:
    return signed(
        "PUT", key="Photos/Cat1.png", query=BASE_QUERY, headers=BASE_HEADERS, body=b"meow"
    )


def test_base_signed_verifies() -> None:
    verify(base_signed())


def test_every_path_byte_mutation_refused() -> None:
    view = base_signed()
    positions = list(alnum_positions(view.raw_path))
    assert len(positions) > 10
    for i in positions:
        err = refused(replace(view, raw_path=mutate(view.raw_path, i)))
        assert err.code == "SignatureDoesNotMatch", i


def test_every_query_byte_mutation_refused() -> None:
    view = base_signed()
    for i in alnum_positions(view.query_string):
        err = refused(replace(view, query_string=mutate(view.query_string, i)))
        assert err.code == "SignatureDoesNotMatch", i


def test_query_additions_refused() -> None:
    view = base_signed()
    for extra in (b"&x=1", b"&uploads", b"&list-type=2"):
        err = refused(replace(view, query_string=view.query_string + extra))
        assert err.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("name", [b"host", b"x-amz-meta-color", b"content-type", b"x-amz-date"])
def test_every_signed_header_byte_mutation_refused(name: bytes) -> None:
    view = base_signed()
    value = header(view, name)
    for i in alnum_positions(value):
        err = refused(with_header(view, name, mutate(value, i)))
        if name == b"x-amz-date":
            # Invalid stamps are AccessDenied, another day no longer matches
            # the credential scope, another time is skewed or mis-signed.
            expected = {
                "AccessDenied",
                "AuthorizationHeaderMalformed" if i < 8 else "SignatureDoesNotMatch",
            }
            if i >= 8:
                expected.add("RequestTimeTooSkewed")
            assert err.code in expected, i
        else:
            assert err.code == "SignatureDoesNotMatch", (name, i)


def test_date_one_second_off_refused() -> None:
    view = base_signed()
    err = refused(with_header(view, b"x-amz-date", b"20240501T120001Z"))
    assert err.code == "SignatureDoesNotMatch"


def test_payload_hash_mutations() -> None:
    view = base_signed()
    value = header(view, b"x-amz-content-sha256")
    for i in range(0, 64, 7):
        c = value[i]
        other = b"0" if c != ord("0") else b"1"
        err = refused(
            with_header(view, b"x-amz-content-sha256", value[:i] + other + value[i + 1 :])
        )
        assert err.code == "SignatureDoesNotMatch"
    for constant in (b"UNSIGNED-PAYLOAD", b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
        assert refused(with_header(view, b"x-amz-content-sha256", constant)).code == (
            "SignatureDoesNotMatch"
        )
    for bad in (b"unsigned-payload", b"abc", value[:-1], value + b"0", b"g" * 64, b""):
        err = refused(with_header(view, b"x-amz-content-sha256", bad))
        assert err.code == "InvalidArgument", bad


def test_missing_payload_hash() -> None:
    err = refused(without_header(base_signed(), b"x-amz-content-sha256"))
    assert err.code == "InvalidRequest"
    assert err.text == "Missing required header for this request: x-amz-content-sha256"


def test_method_mutation_refused() -> None:
    view = base_signed()
    for method in ("POST", "GET", "put"):
        assert refused(replace(view, method=method)).code == "SignatureDoesNotMatch"


def auth_parts(view: RequestView) -> tuple[str, str, str]:
    auth = header(view, b"authorization").decode()
    cred = auth.split("Credential=")[1].split(",")[0]
    signed_headers = auth.split("SignedHeaders=")[1].split(",")[0]
    signature = auth.split("Signature=")[1]
    return cred, signed_headers, signature


def with_auth(view: RequestView, cred: str, signed_headers: str, signature: str) -> RequestView:
    value = (
        f"AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed_headers}, Signature={signature}"
    )
    return with_header(view, b"authorization", value.encode())


def test_every_signature_digit_mutation_refused() -> None:
    view = base_signed()
    cred, sh, sig = auth_parts(view)
    for i in range(64):
        other = "0" if sig[i] != "0" else "1"
        err = refused(with_auth(view, cred, sh, sig[:i] + other + sig[i + 1 :]))
        assert err.code == "SignatureDoesNotMatch"
        assert sig not in err.text


def test_credential_mutations() -> None:
    view = base_signed()
    cred, sh, sig = auth_parts(view)
    ak, date, region, service, term = cred.split("/")
    cases = {
        "AKIDEXAMPLE0000002": "InvalidAccessKeyId",
        f"{ak}/20240502/{region}/{service}/{term}": "AuthorizationHeaderMalformed",
        f"{ak}/{date}/us-east-2/{service}/{term}": "AuthorizationHeaderMalformed",
        f"{ak}/{date}/us/{service}/{term}": "SignatureDoesNotMatch",
        f"{ak}/{date}/{region}/s4/{term}": "AuthorizationHeaderMalformed",
        f"{ak}/{date}/{region}/{service}/aws4_requesT": "AuthorizationHeaderMalformed",
        f"{ak}/{date}/{region}/{service}": "AuthorizationHeaderMalformed",
        f"/{date}/{region}/{service}/{term}": "AuthorizationHeaderMalformed",
        f"{ak}/2024050/{region}/{service}/{term}": "AuthorizationHeaderMalformed",
    }
    for bad, code in cases.items():
        if "/" not in bad:
            bad = f"{bad}/{date}/{region}/{service}/{term}"
        err = refused(with_auth(view, bad, sh, sig))
        assert err.code == code, bad


def test_unknown_key_via_botocore() -> None:
    view = signed(creds=Credentials("NOBODY", "x"))
    err = refused(view)
    assert err.code == "InvalidAccessKeyId"
    assert err.fields["AWSAccessKeyId"] == "NOBODY"


def test_signed_headers_mutations() -> None:
    view = base_signed()
    cred, sh, sig = auth_parts(view)
    names = sh.split(";")
    assert refused(with_auth(view, cred, ";".join(n for n in names if n != "host"), sig)).code == (
        "AuthorizationHeaderMalformed"
    )
    assert refused(
        with_auth(view, cred, ";".join(n for n in names if n != "x-amz-date"), sig)
    ).code in ("AuthorizationHeaderMalformed", "AccessDenied")
    # Dropping a non-x-amz header from the list changes what was signed.
    assert (
        refused(with_auth(view, cred, ";".join(n for n in names if n != "content-type"), sig)).code
        == "SignatureDoesNotMatch"
    )
    # Dropping an x-amz header leaves it present but unsigned.
    err = refused(with_auth(view, cred, ";".join(n for n in names if n != "x-amz-meta-color"), sig))
    assert err.code == "AccessDenied"
    assert "x-amz-meta-color" in err.text
    assert refused(with_auth(view, cred, sh.upper(), sig)).code == "AuthorizationHeaderMalformed"
    assert refused(with_auth(view, cred, sh + ";host", sig)).code == "AuthorizationHeaderMalformed"
    assert refused(with_auth(view, cred, sh + ";x-missing", sig)).code == (
        "AuthorizationHeaderMalformed"
    )
    assert refused(with_auth(view, cred, sh + ";", sig)).code == "AuthorizationHeaderMalformed"
    assert refused(with_auth(view, cred, "", sig)).code == "AuthorizationHeaderMalformed"


def test_unsigned_amz_header_refused() -> None:
    view = base_signed()
    err = refused(with_header(view, b"x-amz-copy-source", b"/other/secret"))
    assert err.code == "AccessDenied"
    assert err.fields["HeadersNotSigned"] == "x-amz-copy-source"
    # Non-x-amz headers may be added freely (proxies add some).
    verify(with_header(view, b"user-agent", b"curl/8"))


def test_removed_signed_header_refused() -> None:
    err = refused(without_header(base_signed(), b"content-type"))
    assert err.code == "AuthorizationHeaderMalformed"


def test_clock_skew() -> None:
    view = base_signed()
    verify(view, now=NOW + timedelta(minutes=15))
    verify(view, now=NOW - timedelta(minutes=15))
    for delta in (timedelta(minutes=15, seconds=1), -timedelta(minutes=15, seconds=1)):
        err = refused(view, now=NOW + delta)
        assert err.code == "RequestTimeTooSkewed"
        assert err.fields["RequestTime"] == "20240501T120000Z"


def test_naive_now_is_utc() -> None:
    verify(base_signed(), now=SIGNED_AT)


@pytest.mark.parametrize(
    "bad",
    [b"2024-05-01T12:00:00Z", b"20240501T120000", b"20241301T120000Z", b"2024050xT120000Z", b""],
)
def test_bad_amz_date(bad: bytes) -> None:
    err = refused(with_header(base_signed(), b"x-amz-date", bad))
    assert err.code == "AccessDenied"


def test_missing_amz_date() -> None:
    assert refused(without_header(base_signed(), b"x-amz-date")).code == "AccessDenied"


def test_sigv2_refused() -> None:
    view = with_header(
        base_signed(), b"authorization", b"AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg="
    )
    err = refused(view)
    assert err.code == "AccessDenied"
    assert "Version 4" in err.text
    view = RequestView(
        "GET",
        b"/b/k",
        b"AWSAccessKeyId=AKIDEXAMPLE&Expires=1700000000&Signature=abc%3D",
        [(b"host", b"h")],
    )
    err = refused(view)
    assert err.code == "AccessDenied"
    assert "Version 4" in err.text


@pytest.mark.parametrize(
    "auth",
    [
        b"AWS4-HMAC-SHA256",
        b"AWS4-HMAC-SHA256 ",
        b"AWS4-HMAC-SHA1 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
        b"AWS4-ECDSA-P256-SHA256 Credential=x",
        b"Bearer abc",
        b"AWS4-HMAC-SHA256 Credential=CRED, SignedHeaders=SH",
        b"AWS4-HMAC-SHA256 Credential=CRED, SignedHeaders=SH, Signature=SIG, Extra=1",
        b"AWS4-HMAC-SHA256 Credential=CRED, Credential=CRED, SignedHeaders=SH, Signature=SIG",
        b"AWS4-HMAC-SHA256 Credential=CRED SignedHeaders=SH Signature=SIG",
        b"AWS4-HMAC-SHA256 Credential=CRED, SignedHeaders=SH, Signature=" + b"A" * 64,
        b"AWS4-HMAC-SHA256 Credential=CRED, SignedHeaders=SH, Signature=" + b"a" * 63,
        b"AWS4-HMAC-SHA256 Credential=CRED, SignedHeaders=SH, Signature=",
        b"AWS4-HMAC-SHA256 Credential=CRED, SignedHeaders=SH, Signature=SIG\xff",
        b"AWS4-HMAC-SHA256 credential=CRED, SignedHeaders=SH, Signature=SIG",
    ],
)
def test_malformed_authorization(auth: bytes) -> None:
    view = base_signed()
    cred, sh, sig = auth_parts(view)
    value = (
        auth.replace(b"CRED", cred.encode())
        .replace(b"SH", sh.encode())
        .replace(b"SIG", sig.encode())
    )
    assert (
        refused(with_header(view, b"authorization", value)).code == "AuthorizationHeaderMalformed"
    )


def test_authorization_spacing_variants() -> None:
    view = base_signed()
    cred, sh, sig = auth_parts(view)
    for sep in (",", ", ", ",  "):
        value = f"AWS4-HMAC-SHA256 Credential={cred}{sep}SignedHeaders={sh}{sep}Signature={sig}"
        verify(with_header(view, b"authorization", value.encode()))


def test_two_authorization_headers() -> None:
    view = base_signed()
    doubled = replace(
        view, headers=[*view.headers, (b"Authorization", header(view, b"authorization"))]
    )
    assert refused(doubled).code == "AuthorizationHeaderMalformed"


def test_header_and_query_auth_together() -> None:
    view = base_signed()
    both = replace(view, query_string=view.query_string + b"&X-Amz-Signature=" + b"0" * 64)
    assert refused(both).code == "InvalidArgument"


# --------------------------------------------------------------------------
# Presigned URLs.


def base_presigned(**kw: object) -> RequestView:
    return presigned("GET", key="Photos/Cat1.png", query=[("versionId", "v1 2")], **kw)  # type: ignore[arg-type]


def test_presigned_with_signed_header() -> None:
    view = presigned("PUT", headers=[("x-amz-meta-owner", "me")])
    ctx = verify(view)
    assert ctx.presigned
    err = refused(with_header(view, b"x-amz-meta-owner", b"you"))
    assert err.code == "SignatureDoesNotMatch"


def test_presigned_unsigned_amz_header_refused() -> None:
    view = presigned("PUT")
    err = refused(with_header(view, b"x-amz-copy-source", b"/other/secret"))
    assert err.code == "AccessDenied"


def test_presigned_payload_hash_header() -> None:
    view = base_presigned()
    # An unsigned-payload presign does not bind a body hash the client adds later.
    err = refused(with_header(view, b"x-amz-content-sha256", EMPTY.encode()))
    assert err.code == "SignatureDoesNotMatch"
    ctx = verify(with_header(view, b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"))
    assert ctx.content_sha256 == "UNSIGNED-PAYLOAD"
    assert refused(with_header(view, b"x-amz-content-sha256", b"nope")).code == "InvalidArgument"


def test_presigned_expiry() -> None:
    view = base_presigned(expires=60)
    verify(view, now=NOW + timedelta(seconds=60))
    err = refused(view, now=NOW + timedelta(seconds=61))
    assert err.code == "AccessDenied"
    assert err.text == "Request has expired"


def test_presigned_long_lived() -> None:
    view = base_presigned(expires=604800)
    verify(view, now=NOW + timedelta(days=7))
    assert refused(view, now=NOW + timedelta(days=7, seconds=1)).code == "AccessDenied"


def test_presigned_future() -> None:
    view = base_presigned()
    verify(view, now=NOW - timedelta(minutes=15))
    err = refused(view, now=NOW - timedelta(minutes=15, seconds=1))
    assert err.code in ("RequestTimeTooSkewed", "AccessDenied")


@pytest.mark.parametrize(
    "expires", [b"0", b"-1", b"604801", b"1e3", b"", b"+5", b"99999999999", b"%31"]
)
def test_presigned_bad_expires(expires: bytes) -> None:
    view = with_query_param(base_presigned(), b"X-Amz-Expires", expires)
    err = refused(view)
    if expires == b"%31":
        # "%31" is "1", a valid value: only the signature no longer matches.
        assert err.code == "SignatureDoesNotMatch"
    else:
        assert err.code == "AuthorizationQueryParametersError", expires


@pytest.mark.parametrize(
    "name",
    [
        b"X-Amz-Algorithm",
        b"X-Amz-Credential",
        b"X-Amz-Date",
        b"X-Amz-Expires",
        b"X-Amz-SignedHeaders",
        b"X-Amz-Signature",
    ],
)
def test_presigned_missing_param(name: bytes) -> None:
    err = refused(with_query_param(base_presigned(), name, None))
    assert err.code == "AuthorizationQueryParametersError"


def test_presigned_duplicate_param() -> None:
    view = base_presigned()
    dup = replace(view, query_string=view.query_string + b"&X-Amz-Expires=3600")
    assert refused(dup).code == "AuthorizationQueryParametersError"


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        (b"X-Amz-Algorithm", b"AWS4-HMAC-SHA1", "AuthorizationQueryParametersError"),
        (b"X-Amz-Date", b"20240501T120000", "AuthorizationQueryParametersError"),
        (b"X-Amz-Date", b"20240502T120000Z", "AuthorizationQueryParametersError"),
        (b"X-Amz-Date", b"20240501T115959Z", "SignatureDoesNotMatch"),
        (b"X-Amz-Expires", b"3601", "SignatureDoesNotMatch"),
        (b"X-Amz-SignedHeaders", b"host%3Bx-amz-meta-a", "AuthorizationQueryParametersError"),
        (b"X-Amz-SignedHeaders", b"x-amz-date", "AuthorizationQueryParametersError"),
        (b"X-Amz-SignedHeaders", b"HOST", "AuthorizationQueryParametersError"),
        (b"X-Amz-Signature", b"0" * 64, "SignatureDoesNotMatch"),
        (b"X-Amz-Signature", b"0" * 63, "AuthorizationQueryParametersError"),
        (
            b"X-Amz-Credential",
            b"NOBODY%2F20240501%2Fus-east-1%2Fs3%2Faws4_request",
            "InvalidAccessKeyId",
        ),
        (
            b"X-Amz-Credential",
            AK.encode() + b"%2F20240501%2Feu-west-1%2Fs3%2Faws4_request",
            "AuthorizationQueryParametersError",
        ),
        (
            b"X-Amz-Credential",
            AK.encode() + b"%2F20240501%2Fus-east-1%2Fs3",
            "AuthorizationQueryParametersError",
        ),
        (
            b"X-Amz-Credential",
            AK.encode() + b"%2F20240501%2Fus%2Fs3%2Faws4_request",
            "SignatureDoesNotMatch",
        ),
    ],
)
def test_presigned_param_mutations(name: bytes, value: bytes, code: str) -> None:
    err = refused(with_query_param(base_presigned(), name, value))
    assert err.code == code


def test_presigned_every_path_and_query_byte_mutation() -> None:
    view = base_presigned()
    for i in alnum_positions(view.raw_path):
        assert refused(replace(view, raw_path=mutate(view.raw_path, i))).code == (
            "SignatureDoesNotMatch"
        )
    # Only the operation's own parameters: X-Amz-* mutations are covered above.
    op_end = view.query_string.index(b"&X-Amz-")
    for i in alnum_positions(view.query_string[:op_end]):
        assert refused(replace(view, query_string=mutate(view.query_string, i))).code == (
            "SignatureDoesNotMatch"
        )
    err = refused(with_header(view, b"host", b"evil:9000"))
    assert err.code == "SignatureDoesNotMatch"
    assert refused(replace(view, method="PUT")).code == "SignatureDoesNotMatch"


def test_presigned_signature_digit_mutations() -> None:
    view = base_presigned()
    sig = query_param(view, b"X-Amz-Signature")
    for i in range(64):
        other = b"0" if sig[i] != ord("0") else b"1"
        mutated = with_query_param(view, b"X-Amz-Signature", sig[:i] + other + sig[i + 1 :])
        assert refused(mutated).code == "SignatureDoesNotMatch"


# --------------------------------------------------------------------------
# aws-chunked helpers.


def test_chunk_and_trailer_strings() -> None:
    ctx = verify(signed("PUT"))
    prev = "a" * 64
    assert chunk_string_to_sign(ctx, prev, "b" * 64) == (
        f"AWS4-HMAC-SHA256-PAYLOAD\n{ctx.amz_date}\n{ctx.scope}\n{prev}\n{EMPTY}\n{'b' * 64}"
    )
    assert trailer_string_to_sign(ctx, prev, "c" * 64) == (
        f"AWS4-HMAC-SHA256-TRAILER\n{ctx.amz_date}\n{ctx.scope}\n{prev}\n{'c' * 64}"
    )


def test_aws_documented_chunk_signatures() -> None:
    view = RequestView("PUT", AWS_EXAMPLE_PATH, b"", AWS_EXAMPLE_HEADERS)
    ctx = authenticate(view, aws_lookup, AWS_NOW)
    assert ctx is not None
    assert ctx.content_sha256 == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    signer = StreamingSigner(ctx)
    for data, sig in AWS_EXAMPLE_CHUNKS:
        signer.verify_chunk(hashlib.sha256(data).hexdigest(), sig)


def test_streaming_signer_chain() -> None:
    ctx = verify(signed("PUT"))
    s = StreamingSigner(ctx)
    h = hashlib.sha256(b"x").hexdigest()
    first = sign(ctx.signing_key, chunk_string_to_sign(ctx, ctx.seed_signature, h))
    # Replaying the first chunk's signature for a second chunk fails: the chain moved on.
    s.verify_chunk(h, first)
    with pytest.raises(S3Error) as exc:
        s.verify_chunk(h, first)
    assert exc.value.code == "SignatureDoesNotMatch"
    assert first not in exc.value.text


# --------------------------------------------------------------------------
# Generated requests.

key_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40
)
param_name = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12).filter(
    lambda s: not s.startswith("X-Amz-") and s not in ("Signature", "AWSAccessKeyId")
)
param_value = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
header_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30
).filter(lambda s: s.strip() != "")
meta_name = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=key_text,
    query=st.lists(st.tuples(param_name, param_value), max_size=4),
    meta=st.lists(st.tuples(meta_name, header_value), max_size=3),
    method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE", "POST"]),
)
def test_generated_header_auth(
    key: str,
    query: list[tuple[str, str]],
    meta: list[tuple[str, str]],
    method: str,
) -> None:
    headers = [(f"x-amz-meta-{n}", v) for n, v in meta]
    view = signed(
        method, key=key, query=query, headers=headers, body=b"b" if method == "PUT" else b""
    )
    verify(view)
    positions = list(alnum_positions(view.raw_path))
    if positions:
        i = positions[len(positions) // 2]
        assert refused(replace(view, raw_path=mutate(view.raw_path, i))).code == (
            "SignatureDoesNotMatch"
        )
    qpos = list(alnum_positions(view.query_string))
    if qpos:
        i = qpos[-1]
        assert refused(replace(view, query_string=mutate(view.query_string, i))).code == (
            "SignatureDoesNotMatch"
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=key_text,
    query=st.dictionaries(param_name, param_value, max_size=4),
    expires=st.integers(1, 604800),
)
def test_generated_presigned(key: str, query: dict[str, str], expires: int) -> None:
    view = presigned(key=key, query=list(query.items()), expires=expires)
    verify(view, now=NOW + timedelta(seconds=expires))
    assert refused(view, now=NOW + timedelta(seconds=expires + 1)).code == "AccessDenied"
    positions = list(alnum_positions(view.raw_path))
    if positions:
        i = positions[0]
        assert refused(replace(view, raw_path=mutate(view.raw_path, i))).code == (
            "SignatureDoesNotMatch"
        )


@given(raw=st.binary(max_size=40))
def test_canonical_uri_is_idempotent(raw: bytes) -> None:
    path = b"/" + raw
    try:
        once = canonical_uri(path)
    except S3Error as exc:
        assert exc.code == "InvalidURI"
        return
    assert canonical_uri(once) == once
    assert once.isascii()


@given(raw=st.binary(max_size=40))
def test_canonical_query_is_idempotent(raw: bytes) -> None:
    try:
        once = canonical_query(raw)
    except S3Error as exc:
        assert exc.code == "InvalidURI"
        return
    assert canonical_query(once) == once


def test_lookup_is_called_with_access_key() -> None:
    seen: list[str] = []

    def spy(ak: str) -> str | None:
        seen.append(ak)
        return lookup(ak)

    view = base_signed()
    assert authenticate(view, spy, NOW) is not None
    assert seen == [AK]


def test_verification_speed() -> None:
    # A coarse guard against accidental quadratic work; the real figure is
    # measured in benchmarks/.
    import time

    view = base_signed()
    fn: Callable[[], object] = lambda: authenticate(view, lookup, NOW)  # noqa: E731
    fn()
    start = time.perf_counter()
    for _ in range(200):
        fn()
    per_call = (time.perf_counter() - start) / 200
    assert per_call < 2e-3


def test_payload_hash_header_need_not_be_signed() -> None:
    # Its value is the canonical request's last line, so it is covered anyway.
    view = base_signed()
    payload = header(view, b"x-amz-content-sha256").decode()
    amz_date = header(view, b"x-amz-date").decode()
    names = ["content-type", "host", "x-amz-date", "x-amz-meta-color"]
    lines = "".join(f"{n}:{' '.join(header(view, n.encode()).decode().split())}\n" for n in names)
    creq = "\n".join(
        [
            "PUT",
            view.raw_path.decode(),
            canonical_query(view.query_string).decode(),
            lines,
            ";".join(names),
            payload,
        ]
    )
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = derive_signing_key(SECRET, amz_date[:8], "us-east-1")
    sts = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    view = with_auth(view, f"{AK}/{scope}", ";".join(names), sign(key, sts))
    assert verify(view).content_sha256 == payload
    assert refused(with_header(view, b"x-amz-content-sha256", EMPTY.encode())).code == (
        "SignatureDoesNotMatch"
    )
