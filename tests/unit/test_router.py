"""Router table: method + target + sub-resource → operation or 501."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.frontend.router import host_bucket, route

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
