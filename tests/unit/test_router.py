"""Router: method + target + sub-resource (+ list-type, copy source) → endpoint, or 501/405."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.frontend.router import host_bucket, route
from seglake.protocol.endpoints import BUCKET, ENDPOINTS, OBJECT, SERVICE, SUBRESOURCES, Endpoint

CASES = [
    ("GET", b"/", {}, "ListBuckets", "", ""),
    ("PUT", b"/bkt", {}, "CreateBucket", "bkt", ""),
    ("PUT", b"/bkt/", {}, "CreateBucket", "bkt", ""),
    ("GET", b"/bkt", {}, "ListObjects", "bkt", ""),
    ("GET", b"/bkt", {"list-type": ["2"]}, "ListObjectsV2", "bkt", ""),
    ("GET", b"/bkt", {"location": [""]}, "GetBucketLocation", "bkt", ""),
    ("HEAD", b"/bkt", {}, "HeadBucket", "bkt", ""),
    ("DELETE", b"/bkt", {}, "DeleteBucket", "bkt", ""),
    ("PUT", b"/bkt/a/b", {}, "PutObject", "bkt", "a/b"),
    ("GET", b"/bkt/a%20b%2Bc", {}, "GetObject", "bkt", "a b+c"),
    ("GET", b"/bkt/a//b/../c", {}, "GetObject", "bkt", "a//b/../c"),
    ("GET", b"/bkt/%F0%9F%92%A1", {}, "GetObject", "bkt", "💡"),
    ("HEAD", b"/bkt/k", {}, "HeadObject", "bkt", "k"),
    ("DELETE", b"/bkt/k", {}, "DeleteObject", "bkt", "k"),
    ("PUT", b"/bkt/k", {"partNumber": ["1"], "uploadId": ["u"]}, "UploadPart", "bkt", "k"),
    ("GET", b"/bkt/k", {"partNumber": ["1"]}, "GetObject", "bkt", "k"),
    ("POST", b"/bkt/k", {"uploads": [""]}, "CreateMultipartUpload", "bkt", "k"),
    ("POST", b"/bkt", {"delete": [""]}, "DeleteObjects", "bkt", ""),
    ("GET", b"/bkt", {"versions": [""]}, "ListObjectVersions", "bkt", ""),
    ("GET", b"/bkt", {"acl": [""]}, "GetBucketAcl", "bkt", ""),
]


@pytest.mark.parametrize("method,path,query,op,bucket,key", CASES)
def test_routes(
    method: str, path: bytes, query: dict[str, list[str]], op: str, bucket: str, key: str
) -> None:
    r = route(method, path, query)
    assert (r.operation, r.bucket, r.key) == (op, bucket, key)


def test_copy_variants() -> None:
    assert route("PUT", b"/b/k", {}, copy_source=True).operation == "CopyObject"
    q = {"partNumber": ["2"], "uploadId": ["u"]}
    assert route("PUT", b"/b/k", q, copy_source=True).operation == "UploadPartCopy"
    assert route("GET", b"/b/k", {}, copy_source=True).operation == "GetObject"


@pytest.mark.parametrize(
    "method,path,query,code",
    [
        ("POST", b"/bkt", {"website": [""]}, "NotImplemented"),
        ("PATCH", b"/bkt", {"acl": [""]}, "NotImplemented"),
        ("POST", b"/bkt/k", {}, "MethodNotAllowed"),
        ("PATCH", b"/bkt/k", {}, "MethodNotAllowed"),
        ("GET", b"/bkt/%FF", {}, "InvalidURI"),
        ("GET", b"bkt", {}, "InvalidURI"),
    ],
)
def test_refusals(method: str, path: bytes, query: dict[str, list[str]], code: str) -> None:
    with pytest.raises(S3Error) as e:
        route(method, path, query)
    assert e.value.code == code


# Host header → bucket for virtual-hosted style (domains as Config.domain_list gives them).
HOSTS = [
    ("bkt.localhost", (), "bkt"),
    ("bkt.localhost:9000", (), "bkt"),
    ("BKT.LocalHost:9000", (), "bkt"),
    ("my.dotted.bkt.localhost", (), "my.dotted.bkt"),
    ("bkt.localhost.", (), "bkt"),
    ("localhost", (), ""),
    ("localhost:9000", (), ""),
    ("127.0.0.1:9000", (), ""),
    ("127.0.0.1", ("0.1",), ""),  # an IP is path style whatever is configured
    ("[::1]:9000", (), ""),
    ("[::1]", (), ""),
    ("myhost.lan:9000", (), ""),  # not read as bucket "myhost"
    ("myhost:9000", (), ""),
    ("s3.example.com", (), ""),
    ("bkt.s3.example.com", (), ""),  # domain not configured
    ("bkt.s3.example.com", ("s3.example.com",), "bkt"),
    ("bkt.s3.example.com:443", ("s3.example.com",), "bkt"),
    ("s3.example.com", ("s3.example.com",), ""),  # the bare domain is path style
    ("a.b.s3.example.com", ("s3.example.com",), "a.b"),
    ("bkt.s3.example.com", ("example.com", "s3.example.com"), "bkt"),  # longest wins
    ("bkt.other.com", ("s3.example.com",), ""),
    ("bkt.evils3.example.com", ("s3.example.com",), ""),
    ("", (), ""),
    (None, (), ""),
]


@pytest.mark.parametrize("host,domains,expected", HOSTS)
def test_host_bucket(host: str | None, domains: tuple[str, ...], expected: str) -> None:
    assert host_bucket(host, domains) == expected


VHOST_CASES = [
    ("GET", b"/", {}, "ListObjects", "vb", ""),
    ("GET", b"/", {"list-type": ["2"]}, "ListObjectsV2", "vb", ""),
    ("PUT", b"/", {}, "CreateBucket", "vb", ""),
    ("HEAD", b"/", {}, "HeadBucket", "vb", ""),
    ("PUT", b"/k", {}, "PutObject", "vb", "k"),
    ("GET", b"/a/b/c", {}, "GetObject", "vb", "a/b/c"),
    ("GET", b"/other/k", {}, "GetObject", "vb", "other/k"),
    ("GET", b"/a%20b", {}, "GetObject", "vb", "a b"),
    ("POST", b"/", {"delete": [""]}, "DeleteObjects", "vb", ""),
    ("PUT", b"/k", {"partNumber": ["1"], "uploadId": ["u"]}, "UploadPart", "vb", "k"),
]


@pytest.mark.parametrize("method,path,query,op,bucket,key", VHOST_CASES)
def test_vhost_routes(
    method: str, path: bytes, query: dict[str, list[str]], op: str, bucket: str, key: str
) -> None:
    r = route(method, path, query, vhost_bucket="vb")
    assert (r.operation, r.bucket, r.key) == (op, bucket, key)


def test_vhost_copy_variant() -> None:
    assert route("PUT", b"/k", {}, copy_source=True, vhost_bucket="vb").operation == "CopyObject"


# ---- built from the endpoint table: every row is reachable, exactly so ----------

_PATHS = {
    SERVICE: (b"/", "", ""),
    BUCKET: (b"/bkt", "bkt", ""),
    OBJECT: (b"/bkt/a/k", "bkt", "a/k"),
}


def _request_for(e: Endpoint) -> dict[str, list[str]]:
    query = {e.subresource: ["u1"]} if e.subresource else {}
    if e.query is not None:
        query[e.query[0]] = [e.query[1]]
    return query


@pytest.mark.parametrize("e", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_is_routed_to_itself(e: Endpoint) -> None:
    path, bucket, key = _PATHS[e.target]
    r = route(e.method, path, _request_for(e), copy_source=e.copy_source)
    assert (r.operation, r.bucket, r.key) == (e.name, bucket, key)
    if e.target != SERVICE:  # the same request, virtual-hosted style
        vpath = b"/" + key.encode()
        r = route(e.method, vpath, _request_for(e), copy_source=e.copy_source, vhost_bucket="vb")
        assert (r.operation, r.bucket, r.key) == (e.name, "vb", key)


@pytest.mark.parametrize(
    "e", [e for e in ENDPOINTS if e.query or e.copy_source], ids=lambda e: e.name
)
def test_conditional_endpoint_falls_back_to_the_plain_one(e: Endpoint) -> None:
    """Without its query value or header, a conditional endpoint's request is
    the plain endpoint of the same method, target and sub-resource."""
    (plain,) = [
        p for p in ENDPOINTS
        if (p.method, p.target, p.subresource) == (e.method, e.target, e.subresource)
        and p.query is None and not p.copy_source
    ]  # fmt: skip
    path, _, _ = _PATHS[e.target]
    query = {e.subresource: ["u1"]} if e.subresource else {}
    assert route(e.method, path, query).operation == plain.name
    if e.query is not None:  # another value, or the value twice, is not it
        for values in (["x"], [e.query[1], e.query[1]]):
            q = {**query, e.query[0]: values}
            assert route(e.method, path, q, copy_source=e.copy_source).operation != e.name


_ROUTED = {(e.method, e.target, e.subresource) for e in ENDPOINTS}


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"])
def test_what_the_table_lacks_is_refused(method: str) -> None:
    """A method/target/sub-resource with no row: 501 with a keyword, else 405."""
    for target, (path, _, _) in _PATHS.items():
        for sub in ("", *SUBRESOURCES):
            if (method, target, sub) in _ROUTED:
                continue
            with pytest.raises(S3Error) as e:
                route(method, path, {sub: [""]} if sub else {})
            assert e.value.code == ("NotImplemented" if sub else "MethodNotAllowed")
