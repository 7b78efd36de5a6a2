"""Router table: method + target + sub-resource → operation or 501."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.frontend.router import route

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
