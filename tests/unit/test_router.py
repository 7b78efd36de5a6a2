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
]


@pytest.mark.parametrize("method,path,query,op,bucket,key", CASES)
def test_routes(
    method: str, path: bytes, query: dict[str, list[str]], op: str, bucket: str, key: str
) -> None:
    r = route(method, path, query)
    assert (r.operation, r.bucket, r.key) == (op, bucket, key)


@pytest.mark.parametrize(
    "method,path,query,code",
    [
        ("GET", b"/bkt", {"acl": [""]}, "NotImplemented"),
        ("POST", b"/bkt", {"delete": [""]}, "NotImplemented"),
        ("POST", b"/bkt/k", {"uploads": [""]}, "NotImplemented"),
        ("PUT", b"/bkt/k", {"tagging": [""]}, "NotImplemented"),
        ("GET", b"/bkt", {"website": [""]}, "NotImplemented"),
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
