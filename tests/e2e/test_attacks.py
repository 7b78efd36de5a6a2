"""One regression test per known S3-server vulnerability class, against the real server.

Rules this file keeps:

* Attacks are sent as raw bytes over a socket (``raw_http``): HTTP clients
  normalise ``..`` segments, re-encode escapes or refuse control bytes, which
  would hide exactly what is being tested.
* Requests that must get past authentication are signed with botocore over
  the canonical form of the raw path, so the server authenticates them and
  the test reaches the code under attack.
* Each test proves two things: the attack is answered with the right S3 error
  (or, where S3 semantics make the input a legitimate literal key, it is kept
  literal and reaches nothing else), and nothing was stored — checked by
  listing or HEAD afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, unquote_to_bytes

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.chunk_signing import ChunkSigning, PayloadAuth, flip_first_hex, frame, seed_of, split
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

CREDS = Credentials(ACCESS_KEY, SECRET_KEY)
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
OK_ORIGIN = "https://ok.example"
VICTIM_BODY = b"victim's secret bytes"
# Every answer below must come well within this; a server that reads or
# expands without bound would not.
QUICK_SECONDS = 10.0


def _victim(srv: SeglakeServer) -> None:
    srv.s3().put_object(Bucket="victim", Key="secret", Body=VICTIM_BODY)


server = server_fixture(buckets=["atk", "victim"], setup=_victim)


# UNSIGNED-PAYLOAD disabled and CORS for one origin.
strict = server_fixture(
    "--allow-unsigned-payload=false", "--cors-origins", OK_ORIGIN, buckets=["strict"]
)


# --------------------------------------------------------------------------
# Raw HTTP


class Reply:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ")[1]) if lines[0].startswith(b"HTTP/") else 0
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1").strip()))

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def code(self) -> str | None:
        text = self.text
        if "<Code>" not in text:
            return None
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def raw_http(
    server: SeglakeServer,
    method: str,
    target: bytes,
    headers: list[tuple[str, str]] | list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    timeout: float = QUICK_SECONDS,
) -> Reply:
    """Send one request exactly as given (Connection: close) and read the answer."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1"]
    names = set()
    for n, v in headers:
        nb = n.encode("latin-1") if isinstance(n, str) else n
        vb = v.encode("latin-1") if isinstance(v, str) else v
        names.add(nb.lower())
        lines.append(nb + b": " + vb)
    if b"host" not in names:
        lines.append(f"Host: 127.0.0.1:{server.port}".encode())
    if b"content-length" not in names:
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=timeout) as s:
        # A server may answer and close before an oversized request is fully
        # sent (its header limit is reached first): read whatever came back.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        return Reply(_read_all(s, time.monotonic() + timeout))


def _read_all(s: socket.socket, deadline: float) -> bytes:
    out = bytearray()
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def sign(
    server: SeglakeServer,
    method: str,
    raw_path: bytes,
    raw_query: bytes = b"",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    payload: str | None = None,
) -> list[tuple[str, str]]:
    """botocore SigV4 headers for a raw path, signed over its canonical form.

    The canonical form decodes escapes once and re-encodes every byte that
    is not unreserved (what S3 does; an escaped ``/`` stays escaped),
    computed here with urllib.
    """
    canonical = "/".join(quote(unquote_to_bytes(seg), safe="~") for seg in raw_path.split(b"/"))
    url = f"http://127.0.0.1:{server.port}{canonical}"
    if raw_query:
        url += "?" + raw_query.decode("ascii")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    PayloadAuth(CREDS, REGION, payload).add_auth(req)
    out = [(k, str(v)) for k, v in req.headers.items()]
    out.append(("Host", f"127.0.0.1:{server.port}"))
    return out


def signed_request(
    server: SeglakeServer,
    method: str,
    raw_path: bytes,
    raw_query: bytes = b"",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    target = raw_path + (b"?" + raw_query if raw_query else b"")
    return raw_http(
        server, method, target, sign(server, method, raw_path, raw_query, headers, body), body
    )


def keys(server: SeglakeServer, bucket: str) -> list[str]:
    listed = server.s3().list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def assert_victim_intact(server: SeglakeServer) -> None:
    s3 = server.s3()
    assert keys(server, "victim") == ["secret"]
    assert s3.get_object(Bucket="victim", Key="secret")["Body"].read() == VICTIM_BODY


def outside_files(server: SeglakeServer) -> set[str]:
    """Names next to (not inside) the data dir: nothing may appear there."""
    return {p.name for p in server.data_dir.parent.iterdir()}


def assert_healthy(server: SeglakeServer) -> None:
    s3 = server.s3()
    s3.put_object(Bucket="atk", Key="health", Body=b"ok")
    assert s3.get_object(Bucket="atk", Key="health")["Body"].read() == b"ok"
    s3.delete_object(Bucket="atk", Key="health")


@pytest.fixture
def clean_atk(server: SeglakeServer) -> Iterator[None]:
    """Each test starts and ends with an empty ``atk`` bucket and an intact victim."""
    s3 = server.s3()
    for key in keys(server, "atk"):
        s3.delete_object(Bucket="atk", Key=key)
    yield
    assert_victim_intact(server)


# --------------------------------------------------------------------------
# Path traversal in keys


TRAVERSAL_PATHS = [
    b"/atk/../victim/secret",
    b"/atk/%2e%2e/victim/secret",
    b"/atk/%2E%2E%2Fvictim%2Fsecret",
    b"/atk/..%5cvictim%5csecret",
    b"/atk/..\\victim\\secret",
    b"/atk/a/./../../victim/secret",
    b"/atk//../victim/secret",
]


@pytest.mark.parametrize("raw_path", TRAVERSAL_PATHS)
def test_traversal_key_is_literal_and_reaches_nothing_else(
    server: SeglakeServer, clean_atk: None, raw_path: bytes
) -> None:
    """S3 keys are opaque: ``..`` and ``\\`` are ordinary characters. A PUT
    through such a path lands in the bucket it names, under the literal key,
    and never overwrites, reads or creates anything elsewhere."""
    before = outside_files(server)
    literal = unquote_to_bytes(raw_path[len(b"/atk/") :]).decode()
    # Read first: the traversal must not reach the victim's object.
    got = signed_request(server, "GET", raw_path)
    assert got.status == 404 and got.code() == "NoSuchKey", got.raw[:400]
    assert VICTIM_BODY not in got.body

    put = signed_request(server, "PUT", raw_path, body=b"attacker")
    assert put.status == 200, put.raw[:400]
    assert keys(server, "atk") == [literal]
    assert server.s3().get_object(Bucket="atk", Key=literal)["Body"].read() == b"attacker"
    assert outside_files(server) <= before | {p.name for p in server.data_dir.parent.glob("*.log")}
    server.s3().delete_object(Bucket="atk", Key=literal)


@pytest.mark.parametrize(
    "raw_path",
    [b"/../victim/secret", b"/%2e%2e/victim/secret", b"/./victim/secret", b"/..%2Fvictim/secret"],
)
def test_traversal_in_bucket_position_refused(
    server: SeglakeServer, clean_atk: None, raw_path: bytes
) -> None:
    for method in ("PUT", "GET"):
        r = signed_request(server, method, raw_path, body=b"attacker" if method == "PUT" else b"")
        assert r.status in (400, 404), r.raw[:400]
        assert r.code() in ("InvalidBucketName", "NoSuchBucket"), r.raw[:400]
        assert VICTIM_BODY not in r.body


@pytest.mark.parametrize("raw_key", [b"a%00b", b"%00", b"x/%00/../y", b"a%01b"])
def test_control_bytes_in_key_refused(
    server: SeglakeServer, clean_atk: None, raw_key: bytes
) -> None:
    r = signed_request(server, "PUT", b"/atk/" + raw_key, body=b"attacker")
    assert r.status == 400 and r.code() == "InvalidArgument", r.raw[:400]
    assert keys(server, "atk") == []


def test_overlong_key_refused(server: SeglakeServer, clean_atk: None) -> None:
    r = signed_request(server, "PUT", b"/atk/" + b"k" * 1025, body=b"attacker")
    assert r.status == 400 and r.code() == "KeyTooLongError", r.raw[:400]
    # Multi-byte: 342 three-byte characters are 1026 bytes.
    r = signed_request(server, "PUT", b"/atk/" + quote("€" * 342).encode(), body=b"attacker")
    assert r.status == 400 and r.code() == "KeyTooLongError", r.raw[:400]
    assert keys(server, "atk") == []
    # The limit itself is allowed.
    r = signed_request(server, "PUT", b"/atk/" + b"k" * 1024, body=b"ok")
    assert r.status == 200, r.raw[:400]


# --------------------------------------------------------------------------
# Copy-source traversal


@pytest.mark.parametrize(
    ("source", "codes"),
    [
        ("atk/../victim/secret", {"NoSuchKey"}),
        ("/atk/../victim/secret", {"NoSuchKey"}),
        ("atk/%2e%2e/victim/secret", {"NoSuchKey"}),
        ("atk/..%5Cvictim%5Csecret", {"NoSuchKey"}),
        ("../victim/secret", {"InvalidBucketName", "NoSuchBucket", "InvalidArgument"}),
        ("%2e%2e/victim/secret", {"InvalidBucketName", "NoSuchBucket", "InvalidArgument"}),
        ("victim/secret%00", {"InvalidArgument"}),
        ("victim/sec%00ret", {"InvalidArgument"}),
        ("/secret", {"InvalidArgument", "InvalidBucketName", "InvalidRequest"}),
        ("/", {"InvalidArgument", "InvalidBucketName", "InvalidRequest"}),
        ("victim", {"InvalidArgument", "InvalidRequest"}),
        ("victim/", {"InvalidArgument", "InvalidRequest"}),
    ],
)
def test_copy_source_traversal_refused(
    server: SeglakeServer, clean_atk: None, source: str, codes: set[str]
) -> None:
    r = signed_request(server, "PUT", b"/atk/copied", headers={"x-amz-copy-source": source})
    assert 400 <= r.status < 500, r.raw[:400]
    assert r.code() in codes, r.raw[:400]
    assert VICTIM_BODY not in r.body
    assert keys(server, "atk") == []


# --------------------------------------------------------------------------
# Presigned URLs


def test_presigned_put_within_expiry_works(server: SeglakeServer, clean_atk: None) -> None:
    url = server.s3(signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "atk", "Key": "presigned ok"}, ExpiresIn=60
    )
    target = url.split(str(server.port), 1)[1].encode()
    r = raw_http(server, "PUT", target, [], b"presigned bytes")
    assert r.status == 200, r.raw[:400]
    assert server.s3().get_object(Bucket="atk", Key="presigned ok")["Body"].read() == (
        b"presigned bytes"
    )


def test_presigned_past_expiry_refused(server: SeglakeServer, clean_atk: None) -> None:
    s3 = server.s3(signature_version="s3v4")
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "victim", "Key": "secret"}, ExpiresIn=1
    )
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "atk", "Key": "late"}, ExpiresIn=1
    )
    time.sleep(2.1)
    for method, url, body in (("GET", get_url, b""), ("PUT", put_url, b"late bytes")):
        target = url.split(str(server.port), 1)[1].encode()
        r = raw_http(server, method, target, [], body)
        assert r.status == 403 and r.code() == "AccessDenied", r.raw[:400]
        assert "expired" in r.text
        assert VICTIM_BODY not in r.body
    assert keys(server, "atk") == []


@pytest.mark.parametrize(
    "tamper",
    ["key", "bucket", "expires", "add-param", "signature", "date", "header"],
)
def test_presigned_tampered_refused(server: SeglakeServer, clean_atk: None, tamper: str) -> None:
    url = server.s3(signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "atk", "Key": "granted"}, ExpiresIn=600
    )
    target = url.split(str(server.port), 1)[1]
    headers: list[tuple[str, str]] = []
    if tamper == "key":
        target = target.replace("/atk/granted?", "/atk/other?")
    elif tamper == "bucket":
        target = target.replace("/atk/granted?", "/victim/secret?")
    elif tamper == "expires":
        target = target.replace("X-Amz-Expires=600", "X-Amz-Expires=6000")
    elif tamper == "add-param":
        target += "&versionId=null"
    elif tamper == "signature":
        sig = target.rsplit("X-Amz-Signature=", 1)[1][:64]
        target = target.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    elif tamper == "date":
        stamp = target.split("X-Amz-Date=", 1)[1][:16]
        later = stamp[:-3] + ("1" if stamp[-3] != "1" else "2") + stamp[-2:]
        target = target.replace(stamp, later)
    else:
        # An x-amz-* header the URL did not sign: turning a PUT into a copy.
        headers = [("x-amz-copy-source", "victim/secret")]
    r = raw_http(server, "PUT", target.encode(), headers, b"tampered")
    expected = "AccessDenied" if tamper == "header" else "SignatureDoesNotMatch"
    assert r.status == 403 and r.code() == expected, r.raw[:400]
    assert keys(server, "atk") == []


def test_unsigned_payload_refused_when_disabled(strict: SeglakeServer) -> None:
    path = b"/strict/unsigned"
    hdrs = sign(strict, "PUT", path, payload="UNSIGNED-PAYLOAD")
    r = raw_http(strict, "PUT", path, hdrs, b"unsigned bytes")
    assert r.status == 403 and r.code() == "AccessDenied", r.raw[:400]
    assert "UNSIGNED-PAYLOAD" in r.text
    # A presigned PUT is an unsigned payload too (its canonical request says so).
    url = strict.s3(signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "strict", "Key": "presigned"}, ExpiresIn=60
    )
    target = url.split(str(strict.port), 1)[1].encode()
    r = raw_http(strict, "PUT", target, [], b"presigned bytes")
    assert r.status == 403 and r.code() == "AccessDenied", r.raw[:400]
    assert keys(strict, "strict") == []
    # A signed payload is still accepted.
    r = raw_http(strict, "PUT", path, sign(strict, "PUT", path, body=b"signed"), b"signed")
    assert r.status == 200, r.raw[:400]
    strict.s3().delete_object(Bucket="strict", Key="unsigned")


# --------------------------------------------------------------------------
# aws-chunked with a trailer signature


def signed_trailer_body(
    data: bytes, amz_date: str, seed: str, chunk: int, tamper: str | None
) -> bytes:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER framing, signed independently
    (tests/chunk_signing.py), then changed as ``tamper`` says."""
    signing = ChunkSigning.for_request(SECRET_KEY, REGION, amz_date, seed)
    pieces = split(data, chunk)
    signatures = signing.chunk_signatures(pieces)
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    trailer_sig = signing.trailer_signature(signatures[-1], [("x-amz-checksum-sha256", checksum)])
    framed: list[str | None] = list(signatures)
    if tamper == "no-chunk-signatures":
        framed = [None] * len(pieces)
    if tamper == "no-trailers":
        return frame(pieces, framed)
    if tamper == "bad-signature":
        trailer_sig = flip_first_hex(trailer_sig)
    if tamper == "checksum":
        # A different (correct for other data) checksum under the original signature.
        checksum = base64.b64encode(hashlib.sha256(data + b"x").digest()).decode()
    trailers = [("x-amz-checksum-sha256", checksum)]
    if tamper == "unsigned-trailer-added":
        trailers.append(("x-amz-meta-injected", "1"))
    if tamper == "replayed-chunk-signature":
        trailer_sig = signatures[-1]  # the final chunk's signature, not the trailer's
    if tamper == "missing-signature":
        return frame(pieces, framed, trailers)
    return frame(pieces, framed, trailers, trailer_sig)


def _put_signed_trailer(server: SeglakeServer, key: str, tamper: str | None) -> Reply:
    data = os.urandom(20_000)
    path = f"/atk/{key}".encode()
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    # The body's length depends only on the framing, not on signature values.
    probe = signed_trailer_body(data, "20240101T000000Z", "0" * 64, 8192, tamper)
    hdrs = sign(
        server,
        "PUT",
        path,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-trailer": "x-amz-checksum-sha256",
            "x-amz-decoded-content-length": str(len(data)),
            "Content-Length": str(len(probe)),
        },
        payload=mode,
    )
    amz_date = dict(hdrs)["X-Amz-Date"]
    seed = seed_of(dict(hdrs)["Authorization"])
    body = signed_trailer_body(data, amz_date, seed, 8192, tamper)
    assert len(body) == len(probe)
    return raw_http(server, "PUT", path, hdrs, body)


def test_signed_trailer_round_trip(server: SeglakeServer, clean_atk: None) -> None:
    r = _put_signed_trailer(server, "trailer-ok", None)
    assert r.status == 200, r.raw[:600]
    assert keys(server, "atk") == ["trailer-ok"]


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("bad-signature", "SignatureDoesNotMatch"),
        ("missing-signature", "SignatureDoesNotMatch"),
        ("checksum", "SignatureDoesNotMatch"),
        ("unsigned-trailer-added", "SignatureDoesNotMatch"),
        ("replayed-chunk-signature", "SignatureDoesNotMatch"),
        ("no-chunk-signatures", "SignatureDoesNotMatch"),
        ("no-trailers", "SignatureDoesNotMatch"),
    ],
)
def test_signed_trailer_tampering_refused(
    server: SeglakeServer, clean_atk: None, tamper: str, code: str
) -> None:
    r = _put_signed_trailer(server, f"trailer-{tamper}", tamper)
    assert r.status == 403 and r.code() == code, r.raw[:600]
    assert keys(server, "atk") == []


# --------------------------------------------------------------------------
# Hostile XML


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>\n"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
)


# Each hostile document below is a prolog, then a body that uses its entity.
HOSTILE_PROLOGS = pytest.mark.parametrize(
    ("prolog", "entity"),
    [(BILLION_LAUGHS, b"&lol9;"), (EXTERNAL_ENTITY, b"&xxe;")],
    ids=["laughs", "xxe"],
)


def _md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def _refused_as_malformed(
    server: SeglakeServer,
    method: str,
    path: bytes,
    query: bytes,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send a hostile document: it must be refused as MalformedXML, quickly."""
    start = time.monotonic()
    r = signed_request(server, method, path, query, headers, body)
    assert time.monotonic() - start < QUICK_SECONDS
    assert r.status == 400 and r.code() == "MalformedXML", r.raw[:400]
    return r


@HOSTILE_PROLOGS
def test_hostile_xml_delete_objects(
    server: SeglakeServer, clean_atk: None, prolog: bytes, entity: bytes
) -> None:
    server.s3().put_object(Bucket="atk", Key="keep", Body=b"k")
    body = prolog + b"<Delete><Object><Key>keep" + entity + b"</Key></Object></Delete>"
    r = _refused_as_malformed(server, "POST", b"/atk", b"delete=", body, _md5_header(body))
    assert b"root:" not in r.body
    assert keys(server, "atk") == ["keep"]
    assert_healthy(server)


@HOSTILE_PROLOGS
def test_hostile_xml_complete_multipart(
    server: SeglakeServer, clean_atk: None, prolog: bytes, entity: bytes
) -> None:
    s3 = server.s3()
    upload = s3.create_multipart_upload(Bucket="atk", Key="mp")["UploadId"]
    try:
        etag = s3.upload_part(Bucket="atk", Key="mp", UploadId=upload, PartNumber=1, Body=b"p")[
            "ETag"
        ]
        body = (
            prolog
            + b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"
            + etag.encode()
            + entity
            + b"</ETag></Part></CompleteMultipartUpload>"
        )
        query = b"uploadId=" + quote(upload, safe="").encode()
        _refused_as_malformed(server, "POST", b"/atk/mp", query, body)
        assert keys(server, "atk") == []
        parts = s3.list_parts(Bucket="atk", Key="mp", UploadId=upload)["Parts"]
        assert [p["PartNumber"] for p in parts] == [1]
    finally:
        s3.abort_multipart_upload(Bucket="atk", Key="mp", UploadId=upload)
    assert_healthy(server)


@HOSTILE_PROLOGS
def test_hostile_xml_put_bucket_versioning(
    server: SeglakeServer, clean_atk: None, prolog: bytes, entity: bytes
) -> None:
    s3 = server.s3()
    before = s3.get_bucket_versioning(Bucket="atk").get("Status")
    body = prolog + b"<VersioningConfiguration><Status>Suspended" + entity
    body += b"</Status></VersioningConfiguration>"
    _refused_as_malformed(server, "PUT", b"/atk", b"versioning=", body)
    assert s3.get_bucket_versioning(Bucket="atk").get("Status") == before
    assert_healthy(server)


# --------------------------------------------------------------------------
# Oversized bodies


def _flood(
    server: SeglakeServer, method: str, target: bytes, headers: list[tuple[str, str]], declared: int
) -> tuple[Reply, int, float]:
    """Declare ``declared`` body bytes and keep sending until the server answers.

    Returns the answer, how many body bytes were sent before it came, and
    how long it took.
    """
    head = [f"{method} ".encode() + target + b" HTTP/1.1"]
    head += [f"{n}: {v}".encode() for n, v in headers]
    head += [f"Content-Length: {declared}".encode(), b"Connection: close"]
    sent = 0
    stop = threading.Event()
    piece = b"<" * 65536
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=QUICK_SECONDS) as s:
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n")

        def pump() -> None:
            nonlocal sent
            try:
                while not stop.is_set() and sent < declared:
                    s.sendall(piece[: declared - sent])
                    sent += min(len(piece), declared - sent)
            except OSError:
                pass

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        raw = _read_all(s, time.monotonic() + 30)
        stop.set()
        elapsed = time.monotonic() - start
    t.join(10)
    return Reply(raw), sent, elapsed


def test_oversized_delete_objects_refused_without_reading(
    server: SeglakeServer, clean_atk: None
) -> None:
    server.s3().put_object(Bucket="atk", Key="keep", Body=b"k")
    declared = 1 << 30  # 1 GiB claimed
    hdrs = sign(
        server,
        "POST",
        b"/atk",
        b"delete=",
        {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "Content-Length": str(declared)},
        payload="UNSIGNED-PAYLOAD",
    )
    r, sent, elapsed = _flood(server, "POST", b"/atk?delete=", hdrs, declared)
    assert r.status == 400 and r.code() == "MaxMessageLengthExceeded", r.raw[:400]
    assert sent < 64 * 1024 * 1024 and elapsed < 20
    # Just over the 2 MiB cap, sent in full.
    body = b"<Delete>" + b" " * (2 * 1024 * 1024) + b"</Delete>"
    r = signed_request(server, "POST", b"/atk", b"delete=", _md5_header(body), body)
    assert r.status == 400 and r.code() == "MaxMessageLengthExceeded", r.raw[:400]
    assert keys(server, "atk") == ["keep"]
    assert_healthy(server)


def test_oversized_complete_refused_without_reading(server: SeglakeServer, clean_atk: None) -> None:
    s3 = server.s3()
    upload = s3.create_multipart_upload(Bucket="atk", Key="mp-big")["UploadId"]
    try:
        s3.upload_part(Bucket="atk", Key="mp-big", UploadId=upload, PartNumber=1, Body=b"p")
        declared = 1 << 30
        query = b"uploadId=" + quote(upload, safe="").encode()
        hdrs = sign(
            server,
            "POST",
            b"/atk/mp-big",
            query,
            {"Content-Length": str(declared)},
            payload="UNSIGNED-PAYLOAD",
        )
        r, sent, elapsed = _flood(server, "POST", b"/atk/mp-big?" + query, hdrs, declared)
        assert 400 <= r.status < 500 and r.code() == "MaxMessageLengthExceeded", r.raw[:400]
        assert sent < 64 * 1024 * 1024 and elapsed < 20
        assert keys(server, "atk") == []
        parts = s3.list_parts(Bucket="atk", Key="mp-big", UploadId=upload)["Parts"]
        assert [p["PartNumber"] for p in parts] == [1]
    finally:
        s3.abort_multipart_upload(Bucket="atk", Key="mp-big", UploadId=upload)
    assert_healthy(server)


# --------------------------------------------------------------------------
# Range explosion


@pytest.mark.parametrize(
    "spec",
    [
        ",".join(["-1"] * 10_000),
        ",".join(["0-"] * 10_000),
        ",".join(["0-0"] * 7_000),
        ",".join(f"{i}-{i}" for i in range(17)),
        ",".join(["0-0"] * 10_000),
        ",".join(f"{i}-{i}" for i in range(10_000)),
    ],
    ids=["10k-suffix", "10k-open", "7k-same", "17-distinct", "10k-same", "10k-distinct"],
)
def test_range_explosion_refused(server: SeglakeServer, clean_atk: None, spec: str) -> None:
    """Many ranges are refused before any byte is read: 416 InvalidRange while
    the header fits the 32 KiB header limit, the header-size error beyond it."""
    server.s3().put_object(Bucket="atk", Key="ranged", Body=os.urandom(20_000))
    start = time.monotonic()
    r = signed_request(server, "GET", b"/atk/ranged", headers={"Range": "bytes=" + spec})
    assert time.monotonic() - start < QUICK_SECONDS
    if len(spec) < 30 * 1024:
        assert r.status == 416 and r.code() == "InvalidRange", r.raw[:400]
    else:
        # Refused at the HTTP layer; 0 = the connection was reset before the
        # answer could be read (the client was still sending).
        assert r.status in (0, 400, 431), r.raw[:400]
        assert r.code() in (None, "RequestHeaderSectionTooLarge"), r.raw[:400]
    assert len(r.body) < 4096
    assert_healthy(server)


# --------------------------------------------------------------------------
# CORS header injection


@pytest.mark.parametrize(
    "origin",
    [
        b"https://ok.example\r\nX-Injected: 1",
        b"https://ok.example\rX-Injected: 1",
        b"https://ok.example\nX-Injected: 1",
        b"https://ok.example\x00",
    ],
    ids=["crlf", "cr", "lf", "nul"],
)
def test_cors_origin_with_control_bytes_not_echoed(strict: SeglakeServer, origin: bytes) -> None:
    """A CR, LF or NUL inside a value is refused by the HTTP layer (400); a CRLF
    or bare LF ends the header there, so the server sees a clean Origin and a
    separate request header, never echoed. Either way no answer header holds
    attacker bytes."""
    for method in ("GET", "OPTIONS"):
        hdrs: list[tuple[bytes, bytes]] = [(b"Origin", origin)]
        if method == "OPTIONS":
            hdrs.append((b"Access-Control-Request-Method", b"GET"))
        r = raw_http(strict, method, b"/strict/x", hdrs)
        assert r.header("x-injected") is None, r.raw[:400]
        allow = r.header("access-control-allow-origin")
        assert allow in (None, OK_ORIGIN), r.raw[:400]
        assert b"X-Injected" not in r.raw.partition(b"\r\n\r\n")[0], r.raw[:400]
        if b"\n" not in origin:
            assert r.status == 400, r.raw[:400]
        elif method == "GET":
            assert r.status == 403 and r.code() == "AccessDenied", r.raw[:400]


@pytest.mark.parametrize(
    "origin",
    [
        "https://ok.example, https://evil.example",
        "https://ok.example.evil.example",
        "https://evil.example/https://ok.example",
        "null",
        "https://ok.example ",
    ],
)
def test_cors_lookalike_origin_not_allowed(strict: SeglakeServer, origin: str) -> None:
    r = raw_http(
        strict,
        "OPTIONS",
        b"/strict/x",
        [("Origin", origin), ("Access-Control-Request-Method", "GET")],
    )
    allow = r.header("access-control-allow-origin")
    if origin.strip() == OK_ORIGIN:
        # Trailing whitespace is not part of a header value (RFC 9110).
        assert r.status == 200 and allow == OK_ORIGIN
    else:
        assert r.status == 403 and allow is None, r.raw[:400]
    r = raw_http(strict, "GET", b"/strict/x", [("Origin", origin)])
    assert r.header("access-control-allow-origin") in (
        (OK_ORIGIN,) if origin.strip() == OK_ORIGIN else (None,)
    )


# --------------------------------------------------------------------------
# Request size limits


def test_header_section_too_large(server: SeglakeServer, clean_atk: None) -> None:
    hdrs = [(f"x-pad-{i}", "v" * 1000) for i in range(34)]
    r = raw_http(server, "PUT", b"/atk/big-headers", hdrs, b"x")
    assert r.status in (0, 400, 431), r.raw[:400]  # 0: reset while still sending
    assert keys(server, "atk") == []
    assert_healthy(server)


def test_url_too_long(server: SeglakeServer, clean_atk: None) -> None:
    for target in (b"/atk/" + b"k" * (33 * 1024), b"/atk/k?" + b"a=" + b"b" * (33 * 1024)):
        r = raw_http(server, "PUT", target, [], b"x")
        assert r.status in (0, 400, 414), r.raw[:400]  # 0: reset while still sending
        if r.code() is not None:
            assert r.code() == "InvalidURI", r.raw[:400]
    assert keys(server, "atk") == []
    assert_healthy(server)


# --------------------------------------------------------------------------
# SigV2


def test_sigv2_refused_with_a_clear_message(server: SeglakeServer, clean_atk: None) -> None:
    r = raw_http(
        server,
        "PUT",
        b"/atk/v2",
        [
            ("Authorization", f"AWS {ACCESS_KEY}:c2lnbmF0dXJl"),
            ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ],
        b"v2",
    )
    assert r.status == 403 and r.code() == "AccessDenied", r.raw[:400]
    assert "Signature Version 4" in r.text
    r = raw_http(
        server,
        "GET",
        f"/victim/secret?AWSAccessKeyId={ACCESS_KEY}&Expires=9999999999&Signature=abc".encode(),
        [],
    )
    assert r.status == 403 and r.code() == "AccessDenied", r.raw[:400]
    assert "Signature Version 4" in r.text
    assert VICTIM_BODY not in r.body
    assert keys(server, "atk") == []


# --------------------------------------------------------------------------
# Small XML bodies must be the bytes that were signed


def test_complete_body_must_match_signed_payload_hash(
    server: SeglakeServer, clean_atk: None
) -> None:
    s3 = server.s3()
    upload = s3.create_multipart_upload(Bucket="atk", Key="mp-swap")["UploadId"]
    try:
        etag = s3.upload_part(
            Bucket="atk", Key="mp-swap", UploadId=upload, PartNumber=1, Body=b"p"
        )["ETag"]
        doc = (
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
            f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        ).encode()
        query = b"uploadId=" + quote(upload, safe="").encode()
        # Signed over an empty body; a different body is sent.
        hdrs = sign(server, "POST", b"/atk/mp-swap", query, payload=EMPTY_SHA)
        r = raw_http(server, "POST", b"/atk/mp-swap?" + query, hdrs, doc)
        assert r.status == 400 and r.code() == "XAmzContentSHA256Mismatch", r.raw[:400]
        assert keys(server, "atk") == []
    finally:
        with contextlib.suppress(s3.exceptions.NoSuchUpload):
            s3.abort_multipart_upload(Bucket="atk", Key="mp-swap", UploadId=upload)


def test_unsigned_xml_body_refused_when_disabled(strict: SeglakeServer) -> None:
    s3 = strict.s3()
    before = s3.get_bucket_versioning(Bucket="strict").get("Status")
    body = b"<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>"
    hdrs = sign(strict, "PUT", b"/strict", b"versioning=", payload="UNSIGNED-PAYLOAD")
    r = raw_http(strict, "PUT", b"/strict?versioning=", hdrs, body)
    assert s3.get_bucket_versioning(Bucket="strict").get("Status") == before
    assert r.status == 403 and r.code() == "AccessDenied", r.raw[:400]


def test_unsigned_trailer_streaming_refused_when_disabled(strict: SeglakeServer) -> None:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER is as unsigned as UNSIGNED-PAYLOAD:
    its trailer checksum guards against corruption, not tampering."""
    import httpx
    from botocore.httpchecksum import Crc32Checksum

    from tests.e2e.test_streaming import signed_headers, unsigned_trailer_body

    data = os.urandom(10_000)
    body = unsigned_trailer_body(data, Crc32Checksum, "x-amz-checksum-crc32", 4096)
    url = f"{strict.endpoint}/strict/unsigned-trailer"
    headers = signed_headers(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", {
        "Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)), "Content-Length": str(len(body)),
    })  # fmt: skip
    r = httpx.put(url, content=body, headers=headers, timeout=30)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, r.text
    s3 = strict.s3()
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.head_object(Bucket="strict", Key="unsigned-trailer")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
