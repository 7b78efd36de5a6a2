"""AWS Signature Version 4 verification: Authorization header and presigned URLs.

Rules this module keeps:

* Pure and sans-IO. ``authenticate`` sees the request exactly as it came off
  the wire (``RequestView``) and a way to look up a secret; it returns who
  signed, ``None`` for an anonymous request, or raises ``S3Error``.
* The canonical request is rebuilt from the raw bytes the client sent, never
  from a decoded or normalised form: S3 signs the path as-is (no ``..`` or
  ``//`` collapsing), and decoding first would let two different wire paths
  share one signature.
* Only SigV4 with HMAC-SHA256 is accepted. SigV2 is refused by name so the
  client learns what to change rather than seeing a signature mismatch.
* Every ``x-amz-*`` header the request carries must be signed, as AWS
  requires. Without that rule, anyone holding a presigned PUT URL could add
  ``x-amz-copy-source`` and turn it into a copy of another object.
* Errors never contain the expected signature, the signing key or the secret.
* Every request passes through here, so the hot path avoids regexes, per-call
  compilation and needless decoding; HMACs use the one-shot ``hmac.digest``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from seglake.errors import S3Error

ALGORITHM: Final = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_PAYLOAD_TRAILER: Final = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOAD: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

_PAYLOAD_CONSTANTS: Final = frozenset(
    {
        UNSIGNED_PAYLOAD,
        STREAMING_UNSIGNED_PAYLOAD_TRAILER,
        STREAMING_PAYLOAD,
        STREAMING_PAYLOAD_TRAILER,
    }
)

# AWS allows 15 minutes of clock difference between client and server.
MAX_SKEW_SECONDS: Final = 15 * 60
# AWS caps presigned URL lifetime at seven days.
MAX_PRESIGN_EXPIRES_SECONDS: Final = 7 * 24 * 60 * 60

_SERVICE: Final = "s3"
_TERMINATOR: Final = "aws4_request"
# The legacy region name AWS still accepts as a synonym for us-east-1.
_US_EAST_1_ALIASES: Final = frozenset({"us", "us-east-1"})

_AUTH_PREFIX: Final = b"AWS4-HMAC-SHA256 "
_SIGV2_PREFIX: Final = b"AWS "
_SIGV2_MESSAGE: Final = (
    "Signature Version 2 is not supported by this server; sign requests with "
    "AWS Signature Version 4 (AWS4-HMAC-SHA256)."
)

_Q_ALGORITHM: Final = b"X-Amz-Algorithm"
_Q_CREDENTIAL: Final = b"X-Amz-Credential"
_Q_DATE: Final = b"X-Amz-Date"
_Q_EXPIRES: Final = b"X-Amz-Expires"
_Q_SIGNED_HEADERS: Final = b"X-Amz-SignedHeaders"
_Q_SIGNATURE: Final = b"X-Amz-Signature"
_PRESIGN_PARAMS: Final = frozenset(
    {_Q_ALGORITHM, _Q_CREDENTIAL, _Q_DATE, _Q_EXPIRES, _Q_SIGNED_HEADERS, _Q_SIGNATURE}
)
_SIGV2_PARAMS: Final = frozenset({b"AWSAccessKeyId", b"Signature"})

_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_UNRESERVED_BYTES: Final = bytes(sorted(_UNRESERVED))
_PATH_SAFE_BYTES: Final = _UNRESERVED_BYTES + b"/"
# Canonical spelling of each byte value: unreserved bytes as themselves,
# everything else as an uppercase %XX escape.
_ENCODED: Final[tuple[bytes, ...]] = tuple(
    bytes((b,)) if b in _UNRESERVED else b"%%%02X" % b for b in range(256)
)
_PATH_ENCODED: Final[tuple[bytes, ...]] = tuple(
    b"/" if b == 0x2F else e for b, e in enumerate(_ENCODED)
)
# Every two-character hex escape body, in either case, to its byte value.
_HEX_PAIRS: Final[dict[bytes, int]] = {
    (hi + lo).encode("ascii"): int(hi + lo, 16)
    for hi in "0123456789abcdefABCDEF"
    for lo in "0123456789abcdefABCDEF"
}
_LOWER_HEX_BYTES: Final = b"0123456789abcdef"
_HEX_BYTES: Final = b"0123456789abcdefABCDEF"


@dataclass(frozen=True)
class RequestView:
    """The parts of an HTTP request that a signature covers, as received."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True)
class AuthContext:
    """Who signed a request, and what later chunk signatures chain from."""

    access_key: str
    region: str
    amz_date: str
    scope: str
    signing_key: bytes
    seed_signature: str
    content_sha256: str
    presigned: bool


# Keys change once a day per (secret, region); caching them removes four of
# the six HMACs from every request. Bounded so rotating secrets cannot grow it.
@functools.lru_cache(maxsize=256)
def derive_signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """The SigV4 signing key for one day, region and service."""
    k = hmac.digest(("AWS4" + secret).encode("utf-8"), date.encode("ascii"), "sha256")
    k = hmac.digest(k, region.encode("utf-8"), "sha256")
    k = hmac.digest(k, service.encode("utf-8"), "sha256")
    return hmac.digest(k, b"aws4_request", "sha256")


def sign(signing_key: bytes, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of ``string_to_sign`` under ``signing_key``."""
    return hmac.digest(signing_key, string_to_sign.encode("utf-8"), "sha256").hex()


def chunk_string_to_sign(ctx: AuthContext, previous_signature: str, chunk_sha256_hex: str) -> str:
    """String to sign for one aws-chunked data chunk."""
    return (
        f"AWS4-HMAC-SHA256-PAYLOAD\n{ctx.amz_date}\n{ctx.scope}\n"
        f"{previous_signature}\n{EMPTY_SHA256}\n{chunk_sha256_hex}"
    )


def trailer_string_to_sign(
    ctx: AuthContext, previous_signature: str, trailer_sha256_hex: str
) -> str:
    """String to sign for the trailer section of an aws-chunked body."""
    return (
        f"AWS4-HMAC-SHA256-TRAILER\n{ctx.amz_date}\n{ctx.scope}\n"
        f"{previous_signature}\n{trailer_sha256_hex}"
    )


class StreamingSigner:
    """Verifies the signature chain of an aws-chunked body (a ``ChunkSigner``).

    Each chunk's signature covers the previous one, starting from the
    request's own signature, so chunks cannot be dropped, reordered or moved
    between requests.
    """

    __slots__ = ("_ctx", "_previous")

    def __init__(self, ctx: AuthContext) -> None:
        self._ctx = ctx
        self._previous = ctx.seed_signature

    def verify_chunk(self, chunk_sha256_hex: str, signature: str) -> None:
        sts = chunk_string_to_sign(self._ctx, self._previous, chunk_sha256_hex)
        self._check(sts, signature, "chunk")

    def verify_trailer(self, trailer_sha256_hex: str, signature: str) -> None:
        sts = trailer_string_to_sign(self._ctx, self._previous, trailer_sha256_hex)
        self._check(sts, signature, "trailer")

    def _check(self, string_to_sign: str, signature: str, what: str) -> None:
        expected = sign(self._ctx.signing_key, string_to_sign)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise S3Error(
                "SignatureDoesNotMatch",
                message=f"The {what} signature we calculated does not match the "
                f"signature you provided.",
            )
        self._previous = signature


# --------------------------------------------------------------------------
# Canonical forms


def _canonical_component(raw: bytes, literal: tuple[bytes, ...], safe: bytes) -> bytes:
    """Re-encode one percent-encoded component the AWS way.

    Escapes are decoded to their byte and re-encoded (so ``%7e`` becomes
    ``~`` and ``%2f`` becomes ``%2F``); literal bytes are kept when ``safe``
    and escaped otherwise. Decoding never goes further than one level, so
    ``%2541`` stays ``%2541``.
    """
    if b"%" not in raw:
        if not raw.translate(None, safe):
            return raw
        return b"".join([literal[b] for b in raw])
    parts = raw.split(b"%")
    head = parts[0]
    out = [head if not head.translate(None, safe) else b"".join([literal[b] for b in head])]
    for part in parts[1:]:
        value = _HEX_PAIRS.get(part[:2])
        if value is None:
            raise S3Error("InvalidURI", message="The request URI contains a malformed %-escape.")
        out.append(_ENCODED[value])
        rest = part[2:]
        if rest:
            out.append(
                rest if not rest.translate(None, safe) else b"".join([literal[b] for b in rest])
            )
    return b"".join(out)


def canonical_uri(raw_path: bytes) -> bytes:
    """The canonical URI of a raw request path (S3 rules: no normalisation)."""
    if not raw_path:
        return b"/"
    return _canonical_component(raw_path, _PATH_ENCODED, _PATH_SAFE_BYTES)


def _unquote(canonical: bytes) -> bytes:
    """Decode a component already in canonical form (so every escape is valid)."""
    if b"%" not in canonical:
        return canonical
    parts = canonical.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        out.append(bytes((_HEX_PAIRS[part[:2]],)))
        out.append(part[2:])
    return b"".join(out)


def _query_pairs(query_string: bytes) -> list[tuple[bytes, bytes]]:
    """Canonical (name, value) pairs of a raw query, in wire order."""
    pairs = []
    for item in query_string.split(b"&"):
        if not item:
            # Empty fields (``a=1&&b=2``, a trailing ``&``) carry nothing.
            continue
        name, _, value = item.partition(b"=")
        pairs.append(
            (
                _canonical_component(name, _ENCODED, _UNRESERVED_BYTES),
                _canonical_component(value, _ENCODED, _UNRESERVED_BYTES),
            )
        )
    return pairs


def canonical_query(query_string: bytes) -> bytes:
    """The canonical query string of a raw query (for header-signed requests)."""
    if not query_string:
        return b""
    return b"&".join([n + b"=" + v for n, v in sorted(_query_pairs(query_string))])


def _trimmed(value: bytes) -> bytes:
    """A header value as it appears in a canonical request.

    Runs of whitespace collapse to one space. Non-ASCII values are taken as
    UTF-8 when they decode as such (Go and Java SDKs send UTF-8 bytes); else
    as Latin-1, which is how Python's http.client puts botocore's str values
    on the wire while botocore signs their UTF-8 encoding.
    """
    v = b" ".join(value.split())
    if v.isascii():
        return v
    try:
        v.decode("utf-8")
    except UnicodeDecodeError:
        return v.decode("latin-1").encode("utf-8")
    return v


def _header_map(headers: Sequence[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        lname = name.lower()
        values = out.get(lname)
        if values is None:
            out[lname] = [value]
        else:
            values.append(value)
    return out


# --------------------------------------------------------------------------
# Helpers shared by both flavours


def _amz_date_epoch(value: str) -> int | None:
    """Seconds since the epoch of a ``YYYYMMDDTHHMMSSZ`` stamp, or None if malformed."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    day = value[:8]
    clock = value[9:15]
    # isdigit() alone admits non-ASCII digits such as "٣".
    if not (day.isascii() and day.isdigit() and clock.isascii() and clock.isdigit()):
        return None
    ymd = int(day)
    year, month, mday = ymd // 10000, ymd // 100 % 100, ymd % 100
    hms = int(clock)
    hour, minute, second = hms // 10000, hms // 100 % 100, hms % 100
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= mday <= (29 if month == 2 and leap else _MONTH_DAYS[month]):
        return None
    return _days_from_civil(year, month, mday) * 86400 + hour * 3600 + minute * 60 + second


_MONTH_DAYS: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(year: int, month: int, mday: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's method)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + mday - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _now_epoch(now: datetime) -> float:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.timestamp()


def _format_epoch(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _same_region(client: str, server: str) -> bool:
    if client == server:
        return True
    return client in _US_EAST_1_ALIASES and server in _US_EAST_1_ALIASES


def _is_payload_hash(value: str) -> bool:
    if value in _PAYLOAD_CONSTANTS:
        return True
    return len(value) == 64 and value.isascii() and not value.encode().translate(None, _HEX_BYTES)


def _is_signature(value: str) -> bool:
    return (
        len(value) == 64
        and value.isascii()
        and not value.encode().translate(None, _LOWER_HEX_BYTES)
    )


@dataclass(frozen=True)
class _Credential:
    access_key: str
    date: str
    region: str
    scope: str

    def context(
        self, amz_date: str, key: bytes, signature: str, content_sha256: str, *, presigned: bool
    ) -> AuthContext:
        """The context of a request this credential signed with ``signature``."""
        return AuthContext(
            self.access_key, self.region, amz_date, self.scope, key, signature, content_sha256,
            presigned,
        )  # fmt: skip


def _parse_credential(value: str, code: str, what: str) -> _Credential:
    parts = value.split("/")
    if len(parts) != 5 or not parts[0]:
        raise S3Error(
            code,
            message=f"{what} must be ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request.",
        )
    access_key, date, region, service, terminator = parts
    if len(date) != 8 or not date.isascii() or not date.isdigit():
        raise S3Error(code, message=f"{what} has an invalid date {date!r}; expected YYYYMMDD.")
    if not region:
        raise S3Error(code, message=f"{what} has an empty region.")
    if service != _SERVICE:
        raise S3Error(code, message=f"{what} has service {service!r}; expected 's3'.")
    if terminator != _TERMINATOR:
        raise S3Error(code, message=f"{what} must end with 'aws4_request'.")
    return _Credential(access_key, date, region, value[len(access_key) + 1 :])


def _check_region(cred: _Credential, server_region: str, code: str, lead: str) -> None:
    if not _same_region(cred.region, server_region):
        raise S3Error(
            code,
            message=f"{lead}; the region '{cred.region}' is wrong; expecting '{server_region}'",
            fields={"Region": server_region},
        )


def _check_credential_date(cred: _Credential, amz_date: str, code: str) -> None:
    if cred.date != amz_date[:8]:
        raise S3Error(code, message="Invalid credential date. Date is not the same as X-Amz-Date.")


def _too_skewed(amz_date: str, server_epoch: float, message: str | None = None) -> S3Error:
    return S3Error(
        "RequestTimeTooSkewed",
        message=message,
        fields={
            "RequestTime": amz_date,
            "ServerTime": _format_epoch(server_epoch),
            "MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000),
        },
    )


def _parse_signed_headers(value: str, code: str, what: str) -> list[bytes]:
    names = value.split(";")
    if not value or not all(names):
        raise S3Error(code, message=f"{what} must be a ';'-separated list of header names.")
    if value != value.lower() or not value.isascii():
        raise S3Error(code, message=f"{what} must list lowercase header names.")
    if len(set(names)) != len(names):
        raise S3Error(code, message=f"{what} lists a header more than once.")
    if "host" not in names:
        raise S3Error(code, message=f"{what} must include 'host'.")
    return [n.encode("ascii") for n in names]


# This header needs no signing of its own: its value is the canonical
# request's last line, so the signature covers it either way.
_PAYLOAD_HASH_HEADER: Final = frozenset({b"x-amz-content-sha256"})


def _canonical_headers(
    signed: list[bytes],
    header_map: dict[bytes, list[bytes]],
    code: str,
    *,
    exempt: frozenset[bytes],
) -> bytes:
    signed_set = set(signed)
    unsigned = [
        n.decode("latin-1")
        for n in header_map
        if n.startswith(b"x-amz-") and n not in signed_set and n not in exempt
    ]
    if unsigned:
        listed = ", ".join(sorted(unsigned))
        raise S3Error(
            "AccessDenied",
            message=f"There were headers present in the request which were not signed: {listed}",
            fields={"HeadersNotSigned": listed},
        )
    lines = []
    for name in signed:
        values = header_map.get(name)
        if values is None:
            raise S3Error(
                code,
                message=f"Header {name.decode('ascii')!r} is listed as signed "
                f"but is missing from the request.",
            )
        if len(values) == 1:
            lines.append(name + b":" + _trimmed(values[0]) + b"\n")
        else:
            lines.append(name + b":" + b",".join([_trimmed(v) for v in values]) + b"\n")
    return b"".join(lines)


def _single_header(header_map: dict[bytes, list[bytes]], name: bytes) -> str | None:
    values = header_map.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise S3Error("InvalidArgument", message=f"Header {name.decode()} appears more than once.")
    try:
        return values[0].strip().decode("ascii")
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", message=f"Header {name.decode()} is not ASCII.") from None


def _check_payload_hash(value: str) -> None:
    if not _is_payload_hash(value):
        raise S3Error(
            "InvalidArgument",
            message="x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, or a SHA-256 hex digest.",
        )


def _normalised_payload_hash(value: str) -> str:
    return value if value in _PAYLOAD_CONSTANTS else value.lower()


def _signature_of(
    method: str,
    uri: bytes,
    query: bytes,
    headers: bytes,
    signed: str,
    payload: str,
    amz_date: str,
    scope: str,
    key: bytes,
) -> str:
    creq = b"\n".join(
        (
            method.encode("ascii"),
            uri,
            query,
            headers,
            signed.encode("ascii"),
            payload.encode("ascii"),
        )
    )
    sts = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(creq).hexdigest()}"
    return sign(key, sts)


def _mismatch() -> S3Error:
    # The table's text on purpose: nothing about what we expected may leak.
    return S3Error("SignatureDoesNotMatch")


def _lookup(lookup_secret: Callable[[str], str | None], access_key: str) -> str:
    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", fields={"AWSAccessKeyId": access_key})
    return secret


def _verify(
    req: RequestView,
    lookup_secret: Callable[[str], str | None],
    cred: _Credential,
    *,
    query: bytes,
    headers: bytes,
    signed: str,
    payload: str,
    amz_date: str,
    signature: str,
    presigned: bool,
) -> AuthContext:
    """The last step of both forms of authentication (header and presigned
    query): the signature recomputed with the key's secret must match the one
    sent; the request's context when it does."""
    secret = _lookup(lookup_secret, cred.access_key)
    key = derive_signing_key(secret, cred.date, cred.region)
    uri = canonical_uri(req.raw_path)
    expected = _signature_of(
        req.method, uri, query, headers, signed, payload, amz_date, cred.scope, key
    )
    if not hmac.compare_digest(expected, signature):
        raise _mismatch()
    content_sha256 = _normalised_payload_hash(payload)
    return cred.context(amz_date, key, signature, content_sha256, presigned=presigned)


# --------------------------------------------------------------------------
# Client side


def sign_request(
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    access_key: str,
    secret: str,
    region: str,
    payload_hash: str,
    now: datetime,
) -> list[tuple[bytes, bytes]]:
    """The headers to add to a request so that ``authenticate`` accepts it
    (Seglake's own clients: replication). Every header in ``headers``
    (names lowercase, ``host`` among them) is signed, with ``x-amz-date``
    and ``x-amz-content-sha256`` (``payload_hash``: the body's SHA-256 hex,
    or ``UNSIGNED-PAYLOAD``). The canonical request is built by the same
    functions the verifier uses, so the two cannot disagree."""
    _check_payload_hash(payload_hash)
    amz_date = datetime.fromtimestamp(int(_now_epoch(now)), UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    scope = f"{date}/{region}/{_SERVICE}/{_TERMINATOR}"
    added = [(b"x-amz-date", amz_date.encode()), (b"x-amz-content-sha256", payload_hash.encode())]
    every = [*headers, *added]
    header_map = _header_map(every)
    signed = sorted(header_map)
    canonical = _canonical_headers(signed, header_map, "InvalidArgument", exempt=frozenset())
    signed_str = ";".join(n.decode("ascii") for n in signed)
    key = derive_signing_key(secret, date, region)
    signature = _signature_of(
        method, canonical_uri(raw_path), canonical_query(query_string), canonical, signed_str,
        payload_hash, amz_date, scope, key,
    )  # fmt: skip
    auth = f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed_str}, "
    auth += f"Signature={signature}"
    return [*added, (b"authorization", auth.encode())]


# --------------------------------------------------------------------------
# Entry point


def authenticate(
    req: RequestView,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    *,
    region: str = "us-east-1",
) -> AuthContext | None:
    """Verify a request's SigV4 signature.

    Returns None for an anonymous request (no Authorization header and no
    signing query parameters), the verified ``AuthContext`` otherwise, and
    raises ``S3Error`` for anything signed but not acceptable. ``now`` should
    be timezone-aware; a naive value is taken as UTC. The caller still has to
    compare a hex ``content_sha256`` with the body it receives.
    """
    header_map = _header_map(req.headers)
    auth_values = header_map.get(b"authorization")

    presign_params: dict[bytes, bytes] | None = None
    query_pairs: list[tuple[bytes, bytes]] | None = None
    qs = req.query_string
    # Cheap substring test first: most requests carry no signing parameters.
    if qs and (b"X-Amz-" in qs or b"Signature" in qs or b"AWSAccessKeyId" in qs):
        query_pairs = _query_pairs(qs)
        for name, value in query_pairs:
            if name in _SIGV2_PARAMS:
                raise S3Error("AccessDenied", message=_SIGV2_MESSAGE)
            if name in _PRESIGN_PARAMS:
                if presign_params is None:
                    presign_params = {}
                if name in presign_params:
                    raise S3Error(
                        "AuthorizationQueryParametersError",
                        message=f"Query parameter {name.decode()} appears more than once.",
                    )
                presign_params[name] = value

    if auth_values is not None:
        if presign_params is not None:
            raise S3Error(
                "InvalidArgument",
                message="Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                "parameter or the Authorization header should be specified.",
            )
        if len(auth_values) != 1:
            raise S3Error(
                "AuthorizationHeaderMalformed",
                message="The request carries more than one Authorization header.",
            )
        if query_pairs is None:
            query = canonical_query(qs)
        else:
            query = b"&".join([n + b"=" + v for n, v in sorted(query_pairs)])
        return _authenticate_header(
            req, auth_values[0], header_map, query, lookup_secret, now, region
        )
    if presign_params is not None:
        assert query_pairs is not None
        return _authenticate_query(
            req, presign_params, query_pairs, header_map, lookup_secret, now, region
        )
    return None


def _authenticate_header(
    req: RequestView,
    authorization: bytes,
    header_map: dict[bytes, list[bytes]],
    query: bytes,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    server_region: str,
) -> AuthContext:
    malformed = "AuthorizationHeaderMalformed"
    authorization = authorization.strip()
    if authorization.startswith(_SIGV2_PREFIX):
        raise S3Error("AccessDenied", message=_SIGV2_MESSAGE)
    if not authorization.startswith(_AUTH_PREFIX):
        raise S3Error(
            malformed,
            message="The authorization header must use the AWS4-HMAC-SHA256 algorithm.",
        )
    try:
        body = authorization[len(_AUTH_PREFIX) :].decode("ascii")
    except UnicodeDecodeError:
        raise S3Error(malformed, message="The authorization header is not ASCII.") from None
    fields: dict[str, str] = {}
    for part in body.split(","):
        field_name, eq, value = part.strip().partition("=")
        if (
            not eq
            or field_name in fields
            or field_name not in ("Credential", "SignedHeaders", "Signature")
        ):
            raise S3Error(
                malformed,
                message="The authorization header must be 'AWS4-HMAC-SHA256 Credential=..., "
                "SignedHeaders=..., Signature=...'.",
            )
        fields[field_name] = value
    if len(fields) != 3:
        raise S3Error(
            malformed,
            message="The authorization header needs Credential, SignedHeaders and Signature.",
        )
    cred = _parse_credential(fields["Credential"], malformed, "The Credential")
    _check_region(cred, server_region, malformed, "The authorization header is malformed")
    signed_str = fields["SignedHeaders"]
    signed = _parse_signed_headers(signed_str, malformed, "SignedHeaders")
    signature = fields["Signature"]
    if not _is_signature(signature):
        raise S3Error(malformed, message="Signature must be 64 lowercase hex characters.")

    payload = _single_header(header_map, b"x-amz-content-sha256")
    if payload is None:
        raise S3Error(
            "InvalidRequest",
            message="Missing required header for this request: x-amz-content-sha256",
        )
    _check_payload_hash(payload)

    amz_date = _single_header(header_map, b"x-amz-date")
    epoch = None if amz_date is None else _amz_date_epoch(amz_date)
    if amz_date is None or epoch is None:
        raise S3Error(
            "AccessDenied",
            message="AWS authentication requires a valid x-amz-date header (YYYYMMDDTHHMMSSZ).",
        )
    if b"x-amz-date" not in signed:
        raise S3Error(malformed, message="SignedHeaders must include 'x-amz-date'.")
    _check_credential_date(cred, amz_date, malformed)
    server_epoch = _now_epoch(now)
    if abs(server_epoch - epoch) > MAX_SKEW_SECONDS:
        raise _too_skewed(amz_date, server_epoch)

    canonical_headers = _canonical_headers(
        signed, header_map, malformed, exempt=_PAYLOAD_HASH_HEADER
    )
    return _verify(
        req, lookup_secret, cred, query=query, headers=canonical_headers, signed=signed_str,
        payload=payload, amz_date=amz_date, signature=signature, presigned=False,
    )  # fmt: skip


def _authenticate_query(
    req: RequestView,
    params: dict[bytes, bytes],
    query_pairs: list[tuple[bytes, bytes]],
    header_map: dict[bytes, list[bytes]],
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    server_region: str,
) -> AuthContext:
    bad = "AuthorizationQueryParametersError"

    def param(name: bytes) -> str:
        raw = params.get(name)
        if raw is None:
            raise S3Error(
                bad,
                message=f"Query-string authentication requires the {name.decode()} parameter.",
            )
        try:
            return _unquote(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise S3Error(bad, message=f"{name.decode()} is not valid UTF-8.") from None

    if param(_Q_ALGORITHM) != ALGORITHM:
        raise S3Error(bad, message='X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    cred = _parse_credential(param(_Q_CREDENTIAL), bad, "X-Amz-Credential")
    _check_region(cred, server_region, bad, "Error parsing the X-Amz-Credential parameter")
    amz_date = param(_Q_DATE)
    epoch = _amz_date_epoch(amz_date)
    if epoch is None:
        raise S3Error(
            bad, message="X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        )
    expires_str = param(_Q_EXPIRES)
    if (
        not expires_str
        or len(expires_str) > 7
        or not expires_str.isascii()
        or not expires_str.isdigit()
    ):
        raise S3Error(bad, message="X-Amz-Expires should be a number")
    expires = int(expires_str)
    if expires < 1:
        raise S3Error(bad, message="X-Amz-Expires must be non-negative and non-zero")
    if expires > MAX_PRESIGN_EXPIRES_SECONDS:
        raise S3Error(
            bad,
            message="X-Amz-Expires must be less than a week (in seconds) that is 604800",
        )
    signed_str = param(_Q_SIGNED_HEADERS)
    signed = _parse_signed_headers(signed_str, bad, "X-Amz-SignedHeaders")
    signature = param(_Q_SIGNATURE)
    if not _is_signature(signature):
        raise S3Error(bad, message="X-Amz-Signature must be 64 lowercase hex characters.")
    _check_credential_date(cred, amz_date, bad)

    server_epoch = _now_epoch(now)
    if epoch - server_epoch > MAX_SKEW_SECONDS:
        raise _too_skewed(
            amz_date,
            server_epoch,
            message="Request is not valid yet: X-Amz-Date is too far in the future.",
        )
    if server_epoch > epoch + expires:
        raise S3Error(
            "AccessDenied",
            message="Request has expired",
            fields={
                "X-Amz-Expires": expires_str,
                "Expires": _format_epoch(epoch + expires),
                "ServerTime": _format_epoch(server_epoch),
            },
        )

    payload = _single_header(header_map, b"x-amz-content-sha256")
    if payload is None:
        payload = UNSIGNED_PAYLOAD
    else:
        _check_payload_hash(payload)

    canonical_headers = _canonical_headers(signed, header_map, bad, exempt=_PAYLOAD_HASH_HEADER)
    query = b"&".join([n + b"=" + v for n, v in sorted(query_pairs) if n != _Q_SIGNATURE])
    return _verify(
        req, lookup_secret, cred, query=query, headers=canonical_headers, signed=signed_str,
        payload=payload, amz_date=amz_date, signature=signature, presigned=True,
    )  # fmt: skip
