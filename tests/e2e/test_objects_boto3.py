"""Objects, buckets, listings, checksums and errors through boto3 (and raw HTTP).

Everything runs against the one shared multi-process server; each test works in
its own bucket. Bodies are random bytes from a per-test seeded generator, so a
failure reproduces with the same data.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, unquote_plus
from xml.etree import ElementTree

import boto3
import httpx
import pytest
from awscrt import checksums as crt_checksums
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_request
from tests.e2e.conftest import bucket_name
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

MiB = 1024 * 1024
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MD5_OF_EMPTY = "d41d8cd98f00b204e9800998ecf8427e"


# ---- helpers -----------------------------------------------------------------


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def client_with(server: SeglakeServer, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )  # fmt: skip


def canonical_query(params: list[tuple[str, str]]) -> str:
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" if v is not None else quote(k)
        for k, v in params
    )


def xml_error_code(body: bytes) -> str:
    root = ElementTree.fromstring(body)
    code = root.find("Code")
    assert root.tag == "Error", body
    assert code is not None and code.text, body
    return code.text


def put_many(s3: Any, bucket: str, keys: list[str]) -> None:
    def one(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, keys))


# ---- object round trips ----------------------------------------------------------

SIZES = [0, 1, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 20 * MiB]


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_object_round_trip(s3: Any, bucket: str, rng: Any, size: int) -> None:
    body = rng.randbytes(size)
    key = f"obj/size-{size}.bin"
    md5 = hashlib.md5(body).hexdigest()
    meta = {"colour": "blue", "words": "hello world", "n": str(size)}
    ctype = "application/x-seglake-test; charset=binary"

    put = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=ctype, Metadata=meta)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["ETag"] == f'"{md5}"'
    assert put.get("VersionId")

    got = s3.get_object(Bucket=bucket, Key=key)
    data = got["Body"].read()
    assert len(data) == size
    assert data == body
    assert got["ContentLength"] == size
    assert got["ETag"] == f'"{md5}"'
    assert got["ContentType"] == ctype
    assert got["Metadata"] == meta
    assert got["VersionId"] == put["VersionId"]

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"] == f'"{md5}"'
    assert head["ContentType"] == ctype
    assert head["Metadata"] == meta
    assert head["LastModified"] == got["LastModified"]

    listing = s3.list_objects_v2(Bucket=bucket, Prefix="obj/")
    assert listing["KeyCount"] == 1
    [entry] = listing["Contents"]
    assert entry["Key"] == key
    assert entry["Size"] == size
    assert entry["ETag"] == f'"{md5}"'

    deleted = s3.delete_object(Bucket=bucket, Key=key)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted["DeleteMarker"] is True
    assert deleted["VersionId"]
    assert deleted["VersionId"] != put["VersionId"]

    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key)
    assert error_of(exc) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_objects_v2(Bucket=bucket, Prefix="obj/")["KeyCount"] == 0


def test_empty_object_etag_and_default_content_type(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    head = s3.head_object(Bucket=bucket, Key="empty")
    assert head["ETag"] == f'"{MD5_OF_EMPTY}"'
    assert head["ContentLength"] == 0
    assert head["ContentType"] == "binary/octet-stream"  # S3's default


def test_standard_headers_round_trip(s3: Any, bucket: str) -> None:
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    s3.put_object(
        Bucket=bucket, Key="h", Body=b"headers",
        ContentType="text/plain; charset=utf-8",
        ContentDisposition='attachment; filename="a b.txt"',
        ContentEncoding="identity", ContentLanguage="en-GB",
        CacheControl="max-age=60, private", Expires=expires,
    )  # fmt: skip
    for resp in (s3.head_object(Bucket=bucket, Key="h"), s3.get_object(Bucket=bucket, Key="h")):
        assert resp["ContentType"] == "text/plain; charset=utf-8"
        assert resp["ContentDisposition"] == 'attachment; filename="a b.txt"'
        assert resp["ContentEncoding"] == "identity"
        assert resp["ContentLanguage"] == "en-GB"
        assert resp["CacheControl"] == "max-age=60, private"
        assert resp["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Wed, 02 Jan 2030 03:04:05 GMT"


def test_key_length_limit(s3: Any, bucket: str) -> None:
    longest = "k" * 1024
    s3.put_object(Bucket=bucket, Key=longest, Body=b"x")
    assert s3.get_object(Bucket=bucket, Key=longest)["Body"].read() == b"x"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_of(exc) == (400, "KeyTooLongError")


def test_overwrite_returns_newest(s3: Any, bucket: str, rng: Any) -> None:
    first, second = rng.randbytes(1000), rng.randbytes(3000)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=first)["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=second)["VersionId"]
    assert v1 != v2
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == second
    assert got["VersionId"] == v2


def test_version_id_reads_and_deletes_that_version(s3: Any, bucket: str) -> None:
    """`versionId` selects a version; it must never be ignored (GET would serve the
    wrong bytes and DELETE would add a marker instead of removing the version)."""
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]

    old = s3.get_object(Bucket=bucket, Key="v", VersionId=v1)
    assert old["Body"].read() == b"one"
    assert old["VersionId"] == v1
    assert s3.head_object(Bucket=bucket, Key="v", VersionId=v1)["VersionId"] == v1

    gone = s3.delete_object(Bucket=bucket, Key="v", VersionId=v2)
    assert gone["VersionId"] == v2
    assert not gone.get("DeleteMarker")
    current = s3.get_object(Bucket=bucket, Key="v")
    assert current["Body"].read() == b"one"
    assert current["VersionId"] == v1


def test_unknown_version_id_is_not_served(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="v", Body=b"current")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="v", VersionId="0123456789abcdef01234567")
    status, code = error_of(exc)
    assert (status, code) in {(404, "NoSuchVersion"), (400, "InvalidArgument")}


# ---- errors ------------------------------------------------------------------------


def test_no_such_bucket(s3: Any) -> None:
    missing = bucket_name("never-created")
    for call in (
        lambda: s3.get_object(Bucket=missing, Key="k"),
        lambda: s3.put_object(Bucket=missing, Key="k", Body=b"x"),
        lambda: s3.list_objects_v2(Bucket=missing),
        lambda: s3.list_objects(Bucket=missing),
        lambda: s3.delete_bucket(Bucket=missing),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=missing)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_no_such_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_of(exc) == (404, "NoSuchKey")
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="nope")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_missing_key_is_204(s3: Any, bucket: str) -> None:
    resp = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_bucket_not_empty_then_delete(s3: Any, make_bucket: Any) -> None:
    full = make_bucket("full")
    s3.put_object(Bucket=full, Key="x", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=full)
    assert error_of(exc) == (409, "BucketNotEmpty")
    s3.head_bucket(Bucket=full)  # still there

    empty = make_bucket("empty")
    assert s3.delete_bucket(Bucket=empty)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=empty)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_signature_does_not_match(server: SeglakeServer, s3: Any, bucket: str) -> None:
    bad = client_with(server, ACCESS_KEY, SECRET_KEY + "-wrong")
    with pytest.raises(ClientError) as exc:
        bad.list_buckets()
    assert error_of(exc) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as exc:
        bad.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert error_of(exc) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")  # nothing was written


def test_invalid_access_key_id(server: SeglakeServer, bucket: str) -> None:
    bad = client_with(server, "AKNOSUCHKEY", SECRET_KEY)
    with pytest.raises(ClientError) as exc:
        bad.list_buckets()
    assert error_of(exc) == (403, "InvalidAccessKeyId")
    with pytest.raises(ClientError) as exc:
        bad.get_object(Bucket=bucket, Key="k")
    assert error_of(exc) == (403, "InvalidAccessKeyId")


# Names botocore lets through (it only checks the character set) but S3 rejects.
BAD_BUCKET_NAMES = [
    "ab",
    "a" * 64,
    "Upper-case",
    "under_score",
    "-leading-dash",
    "trailing-dash-",
    "double..dot",
    "dot.-dash",
    "203.0.113.9",  # IP-formatted (a documentation address; never contacted)
    # reserved prefixes and suffixes (AWS bucket naming rules)
    "xn--punycode-prefix",
    "sthree-prefix",
    "ends-with-s3alias",
    "ends-with--ol-s3",
]


@pytest.mark.parametrize("name", BAD_BUCKET_NAMES)
def test_invalid_bucket_name(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_of(exc) == (400, "InvalidBucketName")


def test_create_own_bucket_again_is_ok(s3: Any, bucket: str) -> None:
    resp = s3.create_bucket(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_bad_content_md5_is_rejected(s3: Any, bucket: str, rng: Any) -> None:
    body = rng.randbytes(4096)
    wrong = base64.b64encode(hashlib.md5(body + b"!").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5", Body=body, ContentMD5=wrong)
    assert error_of(exc) == (400, "BadDigest")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="md5")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    right = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=body, ContentMD5=right)
    assert s3.get_object(Bucket=bucket, Key="md5")["Body"].read() == body


# ---- checksums ---------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


CHECKSUMS = {
    "SHA256": ("ChecksumSHA256", lambda b: _b64(hashlib.sha256(b).digest())),
    "SHA1": ("ChecksumSHA1", lambda b: _b64(hashlib.sha1(b).digest())),
    "CRC32C": ("ChecksumCRC32C", lambda b: _b64(crt_checksums.crc32c(b).to_bytes(4, "big"))),
    "CRC32": ("ChecksumCRC32", lambda b: _b64(crt_checksums.crc32(b).to_bytes(4, "big"))),
}


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32C", "SHA1", "CRC32"])
def test_checksum_round_trip(s3: Any, bucket: str, rng: Any, algorithm: str) -> None:
    field, compute = CHECKSUMS[algorithm]
    body = rng.randbytes(1 * MiB + 17)
    expected = compute(body)
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm=algorithm)
    assert put[field] == expected

    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # botocore also validates the checksum while reading
    assert got[field] == expected
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[field] == expected


def test_wrong_checksum_header_is_rejected(server: SeglakeServer, bucket: str) -> None:
    body = b"checksummed body"
    wrong = _b64(hashlib.sha256(b"something else").digest())
    resp = signed_request(
        server, "PUT", f"/{bucket}/bad-sum", body=body,
        headers={"x-amz-checksum-sha256": wrong, "Content-Type": "text/plain"},
    )  # fmt: skip
    assert resp.status_code == 400, resp.text
    assert xml_error_code(resp.content) == "BadDigest"
    assert signed_request(server, "HEAD", f"/{bucket}/bad-sum").status_code == 404


# ---- keys that need escaping ----------------------------------------------------------

ODD_KEYS = [
    "with space",
    "two  spaces and trailing ",
    "plus+sign",
    "percent%20literal",
    "percent%",
    "unicode-ü-日本語-😀",
    "a//b",
    "a///b//",
    "/leading-slash",
    "q?mark",
    "hash#tag",
    "amp&eq=semi;",
    "tilde~star*paren()",
    "quote'dq\"",
    "angle<br>",
    "back\\slash",
]


def test_odd_keys_round_trip_and_list(s3: Any, bucket: str) -> None:
    for i, key in enumerate(ODD_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=f"{i}:{key}".encode())
    for i, key in enumerate(ODD_KEYS):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"{i}:{key}".encode(), key
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(f"{i}:{key}".encode())

    expected = sorted(ODD_KEYS, key=lambda k: k.encode())
    # boto3 asks for encoding-type=url and decodes the answer itself.
    v2 = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in v2["Contents"]] == expected
    v1 = s3.list_objects(Bucket=bucket)
    assert [o["Key"] for o in v1["Contents"]] == expected

    slashed = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [p["Prefix"] for p in slashed.get("CommonPrefixes", [])] == ["a//"]
    assert "Contents" not in slashed
    deeper = s3.list_objects_v2(Bucket=bucket, Prefix="a//", Delimiter="/")
    assert [o["Key"] for o in deeper.get("Contents", [])] == ["a//b"]
    assert [p["Prefix"] for p in deeper.get("CommonPrefixes", [])] == ["a///"]

    for key in ODD_KEYS:
        s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


ENCODED_CHARS = re.compile(r"^[A-Za-z0-9%+\-_.~/*]*$")


def _texts(root: ElementTree.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.iterfind(path)]


@pytest.mark.parametrize("list_type", ["1", "2"])
def test_encoding_type_url_raw(server: SeglakeServer, s3: Any, bucket: str, list_type: str) -> None:
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    params = [("encoding-type", "url")]
    if list_type == "2":
        params.insert(0, ("list-type", "2"))
    resp = signed_request(server, "GET", f"/{bucket}", query=canonical_query(sorted(params)))
    assert resp.status_code == 200, resp.text
    root = ElementTree.fromstring(resp.content)
    assert _texts(root, f"{S3_NS}EncodingType") == ["url"]
    raw_keys = _texts(root, f"{S3_NS}Contents/{S3_NS}Key")
    for raw in raw_keys:
        assert ENCODED_CHARS.match(raw), f"key not URL-encoded: {raw!r}"
    assert [unquote_plus(k) for k in raw_keys] == sorted(ODD_KEYS, key=lambda k: k.encode())

    # Prefix and Delimiter are echoed encoded too.
    params = sorted([*params, ("prefix", "with space"), ("delimiter", " ")])
    resp = signed_request(server, "GET", f"/{bucket}", query=canonical_query(params))
    assert resp.status_code == 200, resp.text
    root = ElementTree.fromstring(resp.content)
    assert [unquote_plus(t) for t in _texts(root, f"{S3_NS}Prefix")] == ["with space"]
    for raw in _texts(root, f"{S3_NS}Prefix") + _texts(root, f"{S3_NS}Delimiter"):
        assert " " not in raw, raw
    assert [unquote_plus(t) for t in _texts(root, f"{S3_NS}Delimiter")] == [" "]
    assert [unquote_plus(k) for k in _texts(root, f"{S3_NS}Contents/{S3_NS}Key")] == ["with space"]


def test_list_without_encoding_returns_raw_keys(
    server: SeglakeServer, s3: Any, bucket: str
) -> None:
    key = "plain ü+%/x"
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    resp = signed_request(server, "GET", f"/{bucket}", query="list-type=2")
    assert resp.status_code == 200
    root = ElementTree.fromstring(resp.content)
    assert _texts(root, f"{S3_NS}Contents/{S3_NS}Key") == [key]


# ---- listings ----------------------------------------------------------------------

TREE_KEYS = [
    "docs/a.txt",
    "docs/b.txt",
    "docs/sub/c.txt",
    "docs/sub/deeper/d.txt",
    "img/1.png",
    "img/2.png",
    "readme",
    "z-last",
]


def test_list_prefix_delimiter_max_keys(s3: Any, bucket: str) -> None:
    put_many(s3, bucket, TREE_KEYS)

    everything = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in everything["Contents"]] == TREE_KEYS
    assert everything["KeyCount"] == len(TREE_KEYS)
    assert everything["IsTruncated"] is False
    for o in everything["Contents"]:
        assert o["Size"] == len(o["Key"])
        assert o["ETag"] == f'"{hashlib.md5(o["Key"].encode()).hexdigest()}"'

    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["readme", "z-last"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["docs/", "img/"]
    assert top["KeyCount"] == 4

    docs = s3.list_objects_v2(Bucket=bucket, Prefix="docs/", Delimiter="/")
    assert [o["Key"] for o in docs["Contents"]] == ["docs/a.txt", "docs/b.txt"]
    assert [p["Prefix"] for p in docs["CommonPrefixes"]] == ["docs/sub/"]
    assert docs["Prefix"] == "docs/"
    assert docs["Delimiter"] == "/"

    prefixed = s3.list_objects_v2(Bucket=bucket, Prefix="docs/sub")
    assert [o["Key"] for o in prefixed["Contents"]] == ["docs/sub/c.txt", "docs/sub/deeper/d.txt"]
    assert "CommonPrefixes" not in prefixed

    assert s3.list_objects_v2(Bucket=bucket, Prefix="nothing-here")["KeyCount"] == 0

    # max-keys counts keys and common prefixes together.
    first = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert first["IsTruncated"] is True
    assert first["MaxKeys"] == 2
    assert first["KeyCount"] == 2
    assert [p["Prefix"] for p in first["CommonPrefixes"]] == ["docs/", "img/"]
    assert "Contents" not in first
    rest = s3.list_objects_v2(
        Bucket=bucket, Delimiter="/", MaxKeys=2, ContinuationToken=first["NextContinuationToken"]
    )
    assert [o["Key"] for o in rest["Contents"]] == ["readme", "z-last"]
    assert rest["IsTruncated"] is False

    three = s3.list_objects_v2(Bucket=bucket, MaxKeys=3)
    assert [o["Key"] for o in three["Contents"]] == TREE_KEYS[:3]
    assert three["IsTruncated"] is True

    after = s3.list_objects_v2(Bucket=bucket, StartAfter="img/1.png")
    assert [o["Key"] for o in after["Contents"]] == TREE_KEYS[5:]

    zero = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert zero["KeyCount"] == 0
    assert "Contents" not in zero

    v1 = s3.list_objects(Bucket=bucket, Delimiter="/", Prefix="img/")
    assert [o["Key"] for o in v1["Contents"]] == ["img/1.png", "img/2.png"]
    v1_page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1)
    assert v1_page["IsTruncated"] is True
    assert v1_page["NextMarker"] == "docs/"
    v1_next = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=v1_page["NextMarker"])
    assert [p["Prefix"] for p in v1_next["CommonPrefixes"]] == ["img/"]
    assert [o["Key"] for o in v1_next["Contents"]] == ["readme", "z-last"]


MANY = 2500


def _many_keys() -> list[str]:
    # A mix of depths so that the order is not simply the insertion order.
    keys = [f"k/{i % 7}/{i:05d}" for i in range(MANY - 100)]
    keys += [f"top-{i:03d}" for i in range(100)]
    return sorted(keys)


@pytest.fixture(scope="module")
def many_bucket(s3: Any) -> str:
    name = bucket_name("many-keys")
    s3.create_bucket(Bucket=name)
    keys = _many_keys()
    put_many(s3, name, list(reversed(keys)))
    return name


def test_paginate_v2(s3: Any, many_bucket: str) -> None:
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=many_bucket))
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 500]
    assert [p["IsTruncated"] for p in pages] == [True, True, False]
    assert all(p.get("NextContinuationToken") for p in pages[:-1])
    keys = [o["Key"] for p in pages for o in p["Contents"]]
    assert keys == _many_keys()

    small = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=many_bucket, Prefix="k/3/", PaginationConfig={"PageSize": 77}
        )
    )
    keys = [o["Key"] for p in small for o in p["Contents"]]
    assert keys == [k for k in _many_keys() if k.startswith("k/3/")]
    assert all(p["KeyCount"] == 77 for p in small[:-1])


def test_list_limits_and_bad_arguments(s3: Any, many_bucket: str) -> None:
    capped = s3.list_objects_v2(Bucket=many_bucket, MaxKeys=5000)
    assert capped["KeyCount"] == 1000
    assert capped["IsTruncated"] is True
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=many_bucket, MaxKeys=-1)
    assert error_of(exc) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=many_bucket, ContinuationToken="not-a-token")
    assert error_of(exc) == (400, "InvalidArgument")


def test_paginate_v1(s3: Any, many_bucket: str) -> None:
    pages = list(s3.get_paginator("list_objects").paginate(Bucket=many_bucket))
    assert [len(p["Contents"]) for p in pages] == [1000, 1000, 500]
    assert [p["IsTruncated"] for p in pages] == [True, True, False]
    keys = [o["Key"] for p in pages for o in p["Contents"]]
    assert keys == _many_keys()

    explicit = s3.list_objects(Bucket=many_bucket, MaxKeys=600, Marker=_many_keys()[999])
    assert [o["Key"] for o in explicit["Contents"]] == _many_keys()[1000:1600]
    assert explicit["Marker"] == _many_keys()[999]


def test_paginate_with_delimiter(s3: Any, many_bucket: str) -> None:
    expected_tops = [f"top-{i:03d}" for i in range(100)]
    expected_subs = [f"k/{i}/" for i in range(7)]
    for op, token_field in (
        ("list_objects_v2", "NextContinuationToken"),
        ("list_objects", "NextMarker"),
    ):
        paginator = s3.get_paginator(op)
        pages = list(
            paginator.paginate(Bucket=many_bucket, Delimiter="/", PaginationConfig={"PageSize": 7})
        )
        prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
        keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
        assert prefixes == ["k/"], op
        assert keys == expected_tops, op
        assert len(pages) == 15, op  # 101 entries, 7 per page
        assert all(p[token_field] for p in pages[:-1]), op

        pages = list(
            paginator.paginate(
                Bucket=many_bucket, Prefix="k/", Delimiter="/", PaginationConfig={"PageSize": 2}
            )
        )
        prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
        assert prefixes == expected_subs, op
        assert not any(p.get("Contents") for p in pages), op
        assert len(pages) == 4, op
        assert all(p[token_field] for p in pages[:-1]), op


# ---- buckets -------------------------------------------------------------------------


def test_list_buckets_shows_creation_date(s3: Any, bucket: str) -> None:
    resp = s3.list_buckets()
    names = [b["Name"] for b in resp["Buckets"]]
    assert bucket in names
    assert names == sorted(names)
    [entry] = [b for b in resp["Buckets"] if b["Name"] == bucket]
    created = entry["CreationDate"]
    assert isinstance(created, dt.datetime)
    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(minutes=10) < created < now + dt.timedelta(minutes=1)


def test_head_bucket_and_location(s3: Any, bucket: str) -> None:
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    loc = s3.get_bucket_location(Bucket=bucket)
    assert loc.get("LocationConstraint") in (None, "", "us-east-1")


# ---- raw HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/some-bucket", "/some-bucket/some-key"])
def test_unsigned_request_is_access_denied(server: SeglakeServer, path: str) -> None:
    resp = httpx.get(server.endpoint + path)
    assert resp.status_code == 403
    assert resp.headers.get("x-amz-request-id")
    assert "xml" in resp.headers.get("content-type", "")
    assert xml_error_code(resp.content) == "AccessDenied"
    root = ElementTree.fromstring(resp.content)
    assert root.findtext("RequestId") == resp.headers["x-amz-request-id"]


def test_unsupported_subresource_is_not_implemented(server: SeglakeServer, bucket: str) -> None:
    resp = signed_request(server, "GET", f"/{bucket}", query="website")
    assert resp.status_code == 501, resp.text
    assert resp.headers.get("x-amz-request-id")
    assert xml_error_code(resp.content) == "NotImplemented"


def test_every_response_has_request_id(server: SeglakeServer, s3: Any, bucket: str) -> None:
    responses = [
        s3.list_buckets(),
        s3.put_object(Bucket=bucket, Key="r", Body=b"r"),
        s3.get_object(Bucket=bucket, Key="r"),
        s3.head_object(Bucket=bucket, Key="r"),
        s3.list_objects_v2(Bucket=bucket),
        s3.delete_object(Bucket=bucket, Key="r"),
    ]
    ids = [r["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)
