"""Ten thousand botocore-signed requests, each verified and then mutated once.

Rules this file keeps:

* botocore is the signing oracle for the request itself (header auth via
  ``S3SigV4Auth``, presigned via ``S3SigV4QueryAuth``, streaming seeds via
  ``S3SigV4Auth`` told to sign a ``STREAMING-*`` payload). Chunk and trailer
  signatures come from ``tests/chunk_signing.py``, independent of
  ``seglake.protocol.sigv4``.
* Requests are random but seeded: a failure names the request index, and the
  same index rebuilds the same request.
* Every request must verify as signed; then one single-field change, chosen
  at random among the ones that apply, must be refused with the code that
  change deserves. Every mutation kind runs at least ``MIN_PER_KIND`` times.
* Verification is the pure ``authenticate``: no server, so the whole file
  runs in seconds.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import quote, unquote, urlsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode

from seglake.errors import S3Error
from seglake.protocol.chunked import AwsChunkedDecoder, Data, EndOfMessage, Trailers
from seglake.protocol.sigv4 import AuthContext, RequestView, StreamingSigner, authenticate
from tests.chunk_signing import ChunkSigning, PayloadAuth, frame, seed_of, split

SEED = 20240501
TOTAL_REQUESTS = 10_000
MIN_PER_KIND = 200
AK = "AKIDMASS0000000001"
SECRET = "mass/Secret+Key/0123456789abcdefEXAMPLE"
CREDS = Credentials(AK, SECRET)
HOST = "s3.local.test:9000"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
MAX_SKEW = 15 * 60

METHODS = ["GET", "PUT", "HEAD", "DELETE", "POST"]
# (server region, region the client signs with): "us" is AWS's alias for us-east-1.
REGIONS = [
    ("us-east-1", "us-east-1"),
    ("us-east-1", "us"),
    ("eu-west-3", "eu-west-3"),
    ("garage", "garage"),
]
WRONG_REGIONS = ["eu-central-1", "ap-south-1", "us-west-2", "US-EAST-1", "us-east-2"]
KEY_PIECES = [
    "a", "Z", "0", "9", "-", "_", ".", "~", " ", "+", "%", "%41", "%2F", "/", "//", "..",
    "../", "./", "=", "&", "?", "#", "!", "'", "(", ")", "*", ":", "@", ",", ";", "$",
    "é", "ß", "日本", "Ω", "😀", "🪣", "\u200b", "ü", "\t", "photos", "2024", "x y",
]  # fmt: skip
QUERY_PIECES = [
    "a", "B", "7", " ", "+", "%", "=", "&", "/", "~", "é", "😀", "*", "'", "!", ".", "-",
    "_", "versionId", "prefix", "x y", "%20",
]  # fmt: skip
SUBRESOURCES = ["uploads", "versioning", "tagging", "acl", "delete", "versions", "location"]
HEADER_NAMES = [
    "x-amz-meta-{}", "X-Amz-Meta-{}", "x-amz-tagging", "x-amz-acl", "x-amz-storage-class",
    "Content-Type", "cache-control", "Content-Disposition", "x-custom-{}", "If-Match",
    "x-amz-server-side-encryption", "Content-Language",
]  # fmt: skip
HEADER_VALUE_CHARS = "abcXYZ0189-_.,;:/=+*!'\"()[]{}<>@#$%^&~|?"


# --------------------------------------------------------------------------
# aws-chunked bodies, signed by tests/chunk_signing.py (independent of Seglake).


@dataclass
class Stream:
    """A signed aws-chunked body and its signatures."""

    data: bytes
    trailer: bool
    pieces: list[bytes]
    signatures: list[str]  # chunk signatures, then the trailer's (if any)

    def body(self, mutate_signature: int | None = None, rng: random.Random | None = None) -> bytes:
        sigs = list(self.signatures)
        if mutate_signature is not None:
            assert rng is not None
            sigs[mutate_signature] = _flip_hex(sigs[mutate_signature], rng)
        if not self.trailer:
            return frame(self.pieces, sigs)
        return frame(self.pieces, sigs[:-1], _trailers(self.data), sigs[-1])


def _trailers(data: bytes) -> list[tuple[str, str]]:
    """The checksum trailer every trailer stream carries."""
    return [("x-amz-checksum-sha256", base64.b64encode(hashlib.sha256(data).digest()).decode())]


def build_stream(
    rng: random.Random, amz_date: str, region: str, seed_signature: str, trailer: bool
) -> Stream:
    data = rng.randbytes(rng.choice([0, 1, 5, 17, 64, 100, 257]))
    pieces = split(data, rng.choice([1, 3, 16, 64, 1000]))
    signing = ChunkSigning.for_request(SECRET, region, amz_date, seed_signature)
    sigs = signing.chunk_signatures(pieces)
    if trailer:
        sigs.append(signing.trailer_signature(sigs[-1], _trailers(data)))
    return Stream(data, trailer, pieces, sigs)


def decode_stream(ctx: AuthContext, body: bytes, trailer: bool, rng: random.Random) -> bytes:
    """Feed a body to the decoder in random pieces; returns the data it emitted."""
    decoder = AwsChunkedDecoder(signer=StreamingSigner(ctx), trailer=trailer)
    out = bytearray()
    pos = 0
    ended = False
    while pos < len(body):
        step = rng.randint(1, max(1, len(body) // 3))
        for event in decoder.feed(body[pos : pos + step]):
            if isinstance(event, Data):
                out += event.data
            elif isinstance(event, EndOfMessage):
                ended = True
            else:
                assert isinstance(event, Trailers)
        pos += step
    decoder.eof()
    assert ended and decoder.unused_data == b""
    return bytes(out)


# --------------------------------------------------------------------------
# Random requests


def _key(rng: random.Random) -> str:
    return "".join(rng.choice(KEY_PIECES) for _ in range(rng.randint(1, 12)))


def _query(rng: random.Random, unique: bool) -> str:
    """A raw query string encoded as boto3 would, with bare subresources mixed in."""
    items: list[str] = []
    names: set[str] = set()
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5])):
        if rng.random() < 0.2:
            name = rng.choice(SUBRESOURCES)
            value = None
        else:
            name = "".join(rng.choice(QUERY_PIECES) for _ in range(rng.randint(1, 4)))
            value = "".join(rng.choice(QUERY_PIECES) for _ in range(rng.randint(0, 6)))
        if unique and name in names:
            continue
        names.add(name)
        enc = percent_encode(name)
        items.append(enc if value is None else f"{enc}={percent_encode(value)}")
    return "&".join(items)


def _header_value(rng: random.Random) -> str:
    words = [
        "".join(rng.choice(HEADER_VALUE_CHARS) for _ in range(rng.randint(1, 8)))
        for _ in range(rng.randint(1, 3))
    ]
    return rng.choice([" ", "  ", " \t "]).join(words)


def _headers(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(rng.choice([0, 1, 2, 4])):
        name = rng.choice(HEADER_NAMES)
        if "{}" in name:
            name = name.format("".join(rng.choice("abcz019-") for _ in range(rng.randint(1, 6))))
        out.append((name, _header_value(rng)))
    return out


@dataclass
class Case:
    index: int
    kind: str  # header | presigned | streaming
    view: RequestView
    now: datetime
    server_region: str
    stream: Stream | None
    ctx: AuthContext | None = None


def _to_view(req: AWSRequest) -> RequestView:
    parts = urlsplit(req.url)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in req.headers.items()]
    if "host" not in {n.lower() for n in req.headers}:
        headers.insert(0, (b"Host", parts.netloc.encode("ascii")))
    return RequestView(req.method, parts.path.encode("ascii"), parts.query.encode("ascii"), headers)


def make_case(index: int, rng: random.Random, clock: list[datetime]) -> Case:
    roll = rng.random()
    kind = "header" if roll < 0.45 else "presigned" if roll < 0.75 else "streaming"
    server_region, sign_region = rng.choice(REGIONS)
    # Midday-ish so every date mutation below stays on the same day.
    signed_at = datetime(2024, 1, 1, 4) + timedelta(
        days=rng.randint(0, 900), seconds=rng.randint(0, 16 * 3600)
    )
    clock[0] = signed_at
    method = "PUT" if kind == "streaming" else rng.choice(METHODS)
    bucket = rng.choice(["bucket", "b-1", "my.bucket", "x" * 63])
    path = f"/{bucket}"
    if rng.random() < 0.95:
        path += "/" + quote(_key(rng), safe="/~")
    query = _query(rng, unique=kind == "presigned")
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    headers = _headers(rng)
    body = b""
    if method == "PUT" and kind == "header" and rng.random() < 0.5:
        body = rng.randbytes(rng.randint(0, 64))
    req = AWSRequest(method=method, url=url, data=body)
    for n, v in headers:
        req.headers.add_header(n, v)
    stream = None
    if kind == "presigned":
        S3SigV4QueryAuth(
            CREDS, "s3", sign_region, expires=rng.choice([1, 60, 3600, 604800])
        ).add_auth(req)
    elif kind == "header":
        payload = rng.choice([None, None, "UNSIGNED-PAYLOAD"])
        PayloadAuth(CREDS, sign_region, payload).add_auth(req)
    else:
        trailer = rng.random() < 0.5
        mode = STREAMING_TRAILER if trailer else STREAMING
        req.headers["Content-Encoding"] = "aws-chunked"
        if trailer:
            req.headers["x-amz-trailer"] = "x-amz-checksum-sha256"
        PayloadAuth(CREDS, sign_region, mode).add_auth(req)
        amz_date = req.headers["X-Amz-Date"]
        seed = seed_of(req.headers["Authorization"])
        stream = build_stream(rng, amz_date, sign_region, seed, trailer)
    view = _to_view(req)
    now = signed_at.replace(tzinfo=UTC) + timedelta(seconds=rng.randint(-600, 600))
    if kind == "presigned":
        # Within the URL's lifetime (the shortest is one second).
        now = signed_at.replace(tzinfo=UTC) + timedelta(seconds=rng.randint(-600, 1))
    return Case(index, kind, view, now, server_region, stream)


# --------------------------------------------------------------------------
# Mutations: each returns (mutated case pieces, expected error code)


def _flip_hex(sig: str, rng: random.Random) -> str:
    i = rng.randrange(len(sig))
    choices = [c for c in "0123456789abcdef" if c != sig[i]]
    return sig[:i] + rng.choice(choices) + sig[i + 1 :]


_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_HEX = "0123456789ABCDEF"


def _mutate_component(raw: bytes, rng: random.Random, *, allow_insert: bool) -> bytes:
    """Change one byte of a percent-encoded component so its decoded value changes."""
    if not raw:
        assert allow_insert
        return rng.choice(_UNRESERVED).encode()
    i = rng.randrange(len(raw))
    # Inside a %XX escape: change the escaped value (not just its case).
    start = max(0, i - 2)
    window = raw[start : i + 1]
    pct = window.rfind(b"%")
    if pct >= 0 and start + pct + 2 >= i and start + pct < i:
        j = start + pct
        value = int(raw[j + 1 : j + 3], 16)
        digit = i - j - 1  # 0 = high nibble, 1 = low nibble
        while True:
            new = rng.randrange(16)
            cand = (new << 4) | (value & 0xF) if digit == 0 else (value & 0xF0) | new
            if cand != value:
                break
        return raw[:j] + b"%" + b"%02X" % cand + raw[j + 3 :]
    old = chr(raw[i])
    new_c = rng.choice([c for c in _UNRESERVED if c != old])
    return raw[:i] + new_c.encode() + raw[i + 1 :]


def _header_index(view: RequestView, name: bytes) -> int:
    for i, (n, _) in enumerate(view.headers):
        if n.lower() == name:
            return i
    raise KeyError(name)


def _set_header(view: RequestView, name: bytes, value: bytes) -> RequestView:
    headers = list(view.headers)
    try:
        i = _header_index(view, name)
    except KeyError:
        headers.append((name, value))
    else:
        headers[i] = (headers[i][0], value)
    return replace(view, headers=headers)


def _auth_header(view: RequestView) -> str:
    return view.headers[_header_index(view, b"authorization")][1].decode()


def _query_items(view: RequestView) -> list[bytes]:
    return view.query_string.split(b"&") if view.query_string else []


_PRESIGN_NAMES = {
    b"X-Amz-Algorithm",
    b"X-Amz-Credential",
    b"X-Amz-Date",
    b"X-Amz-Expires",
    b"X-Amz-SignedHeaders",
    b"X-Amz-Signature",
}


def _set_query_param(view: RequestView, name: bytes, value: bytes) -> RequestView:
    items = []
    for item in _query_items(view):
        n, _, _ = item.partition(b"=")
        items.append(n + b"=" + value if n == name else item)
    return replace(view, query_string=b"&".join(items))


def _query_param(view: RequestView, name: bytes) -> bytes:
    for item in _query_items(view):
        n, _, v = item.partition(b"=")
        if n == name:
            return v
    raise KeyError(name)


def _signed_header_names(case: Case) -> list[bytes]:
    if case.kind == "presigned":
        raw = unquote(_query_param(case.view, b"X-Amz-SignedHeaders").decode())
    else:
        raw = _auth_header(case.view).split("SignedHeaders=", 1)[1].split(",", 1)[0]
    skip = {"x-amz-date", "x-amz-content-sha256"}
    return [n.encode() for n in raw.split(";") if n not in skip]


def applicable(case: Case) -> list[str]:
    kinds = ["path", "date", "region", "payload", "signature"]
    if any(not item.startswith(b"X-Amz-") for item in _query_items(case.view)):
        kinds.append("query")
    if _signed_header_names(case):
        kinds.append("header")
    if case.kind == "streaming":
        kinds.append("chunk")
    return kinds


def mutate(case: Case, kind: str, rng: random.Random) -> tuple[Case, str]:
    """One single-field change and the code it must be refused with."""
    view = case.view
    bad_auth = (
        "AuthorizationQueryParametersError"
        if case.kind == "presigned"
        else "AuthorizationHeaderMalformed"
    )
    if kind == "path":
        return replace(case, view=replace(view, raw_path=_mutate_component(
            view.raw_path, rng, allow_insert=False))), "SignatureDoesNotMatch"  # fmt: skip
    if kind == "query":
        items = _query_items(view)
        choices = [i for i, item in enumerate(items) if not item.startswith(b"X-Amz-")]
        i = rng.choice(choices)
        name, _, value = items[i].partition(b"=")
        items[i] = name + b"=" + _mutate_component(value, rng, allow_insert=True)
        return replace(case, view=replace(view, query_string=b"&".join(items))), (
            "SignatureDoesNotMatch"
        )
    if kind == "header":
        name = rng.choice(_signed_header_names(case))
        idx = _header_index(view, name)
        value = view.headers[idx][1]
        positions = [p for p, b in enumerate(value) if b not in b" \t"]
        p = rng.choice(positions)
        new = rng.choice([c for c in HEADER_VALUE_CHARS if ord(c) != value[p]]).encode()
        headers = list(view.headers)
        headers[idx] = (headers[idx][0], value[:p] + new + value[p + 1 :])
        return replace(case, view=replace(view, headers=headers)), "SignatureDoesNotMatch"
    if kind == "date":
        if case.kind == "presigned":
            old = _query_param(view, b"X-Amz-Date").decode()
        else:
            old = view.headers[_header_index(view, b"x-amz-date")][1].decode()
        signed = datetime.strptime(old, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        delta = rng.choice([-1, 1]) * rng.choice([1, 59, 600, 899, 901, 3600])
        moved = signed + timedelta(seconds=delta)
        stamp = moved.strftime("%Y%m%dT%H%M%SZ").encode()
        if case.kind == "presigned":
            expires = int(_query_param(view, b"X-Amz-Expires"))
            mutated = _set_query_param(view, b"X-Amz-Date", stamp)
            skew = (moved - case.now).total_seconds()
            if skew > MAX_SKEW:
                code = "RequestTimeTooSkewed"
            elif case.now > moved + timedelta(seconds=expires):
                code = "AccessDenied"  # expired
            else:
                code = "SignatureDoesNotMatch"
        else:
            mutated = _set_header(view, b"x-amz-date", stamp)
            skew = abs((moved - case.now).total_seconds())
            code = "RequestTimeTooSkewed" if skew > MAX_SKEW else "SignatureDoesNotMatch"
        return replace(case, view=mutated), code
    if kind == "region":
        wrong = rng.choice(WRONG_REGIONS)
        if case.kind == "presigned":
            cred = _query_param(view, b"X-Amz-Credential")
            parts = cred.split(b"%2F")
            parts[2] = wrong.encode()
            mutated = _set_query_param(view, b"X-Amz-Credential", b"%2F".join(parts))
        else:
            auth = _auth_header(view)
            cred = auth.split("Credential=", 1)[1].split(",", 1)[0]
            parts_s = cred.split("/")
            parts_s[2] = wrong
            auth = auth.replace(cred, "/".join(parts_s))
            mutated = _set_header(view, b"authorization", auth.encode())
        return replace(case, view=mutated), bad_auth
    if kind == "payload":
        if case.kind == "presigned":
            value = hashlib.sha256(rng.randbytes(8)).hexdigest().encode()
        elif case.kind == "streaming":
            old = view.headers[_header_index(view, b"x-amz-content-sha256")][1].decode()
            value = rng.choice(
                [
                    m
                    for m in (
                        STREAMING,
                        STREAMING_TRAILER,
                        "UNSIGNED-PAYLOAD",
                        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                        EMPTY_SHA,
                    )
                    if m != old
                ]
            ).encode()
        else:
            old = view.headers[_header_index(view, b"x-amz-content-sha256")][1].decode()
            if old == "UNSIGNED-PAYLOAD":
                value = hashlib.sha256(rng.randbytes(8)).hexdigest().encode()
            else:
                value = _flip_hex(old, rng).encode()
        return replace(case, view=_set_header(view, b"x-amz-content-sha256", value)), (
            "SignatureDoesNotMatch"
        )
    if kind == "signature":
        if case.kind == "presigned":
            sig = _query_param(view, b"X-Amz-Signature").decode()
            mutated = _set_query_param(view, b"X-Amz-Signature", _flip_hex(sig, rng).encode())
        else:
            auth = _auth_header(view)
            head, sig = auth.rsplit("Signature=", 1)
            mutated = _set_header(
                view, b"authorization", f"{head}Signature={_flip_hex(sig, rng)}".encode()
            )
        return replace(case, view=mutated), "SignatureDoesNotMatch"
    raise AssertionError(kind)


# --------------------------------------------------------------------------
# The run


def lookup(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


def _cases() -> Iterator[tuple[Case, random.Random]]:
    rng = random.Random(SEED)
    clock = [datetime(2024, 1, 1)]
    with mock.patch("botocore.auth.get_current_datetime", side_effect=lambda: clock[0]):
        for index in range(TOTAL_REQUESTS):
            yield make_case(index, rng, clock), rng


def _check(case: Case, rng: random.Random, kinds: Counter[str], counts: Counter[str]) -> None:
    ctx = authenticate(case.view, lookup, case.now, region=case.server_region)
    assert ctx is not None, case.index
    assert ctx.presigned == (case.kind == "presigned")
    counts[case.kind] += 1
    if case.stream is not None:
        assert decode_stream(ctx, case.stream.body(), case.stream.trailer, rng) == case.stream.data

    # Pick the least-used applicable kind half the time so every kind gets
    # its share, and a random one otherwise.
    options = applicable(case)
    if rng.random() < 0.5:
        kind = min(options, key=lambda k: (kinds[k], rng.random()))
    else:
        kind = rng.choice(options)
    kinds[kind] += 1
    if kind == "chunk":
        assert case.stream is not None
        which = rng.randrange(len(case.stream.signatures))
        body = case.stream.body(mutate_signature=which, rng=rng)
        with pytest.raises(S3Error) as exc:
            decode_stream(ctx, body, case.stream.trailer, rng)
        assert exc.value.code == "SignatureDoesNotMatch", case.index
        return
    bad, code = mutate(case, kind, rng)
    try:
        got = authenticate(bad.view, lookup, bad.now, region=bad.server_region)
    except S3Error as err:
        assert err.code == code, (case.index, kind, err.code, err.text, bad.view)
        assert SECRET not in err.text
    else:
        raise AssertionError(f"request {case.index}: {kind} mutation accepted: {got} {bad.view}")


def test_ten_thousand_botocore_requests_and_their_mutations() -> None:
    kinds: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for case, rng in _cases():
        _check(case, rng, kinds, counts)
    print(f"\nverified {sum(counts.values())} requests: {dict(counts)}")
    print(f"refused mutations: {dict(kinds)}")
    assert sum(counts.values()) == TOTAL_REQUESTS
    for kind in ("path", "query", "header", "date", "region", "payload", "signature", "chunk"):
        assert kinds[kind] >= MIN_PER_KIND, (kind, kinds)
    assert min(counts.values()) >= 1000, counts
