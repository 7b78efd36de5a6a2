"""Conditional writes over the real server: PutObject, CopyObject and
CompleteMultipartUpload with ``If-Match`` / ``If-None-Match: *``.

The writer decides every condition inside the transaction that commits the
write, so racing writers cannot both win: 32 threads, each with its own
client, race on one key and exactly one gets 200. The rest check each AWS
answer: 412 PreconditionFailed (naming the condition), 404 NoSuchKey for
If-Match on no object, 501 NotImplemented for If-None-Match with an ETag,
409 ConditionalRequestConflict when the key changed during the upload.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import status_and_code
from tests.e2e._signing import signed_headers, signed_request
from tests.harness import SeglakeServer, server_fixture

RACERS = 32
MiB = 1024 * 1024

# Two frontends, and an in-flight limit per access key (split between the
# frontends) well above the racers, so none of them is refused with SlowDown.
server = server_fixture("--key-inflight-limit", str(8 * RACERS), frontends=2)


@pytest.fixture(scope="module")
def s3(server: SeglakeServer) -> Any:
    return server.s3()


def race(server: SeglakeServer, write: Callable[[Any, int], Any]) -> dict[int, Any]:
    """Run ``write(client, i)`` for i in 0..RACERS-1 at once, each thread with
    its own boto3 client; returns each racer's result or its ClientError."""
    clients = [server.s3() for _ in range(RACERS)]
    start = threading.Barrier(RACERS)

    def run(i: int) -> Any:
        start.wait()
        try:
            return write(clients[i], i)
        except ClientError as exc:
            return exc

    with ThreadPoolExecutor(RACERS) as pool:
        return dict(enumerate(pool.map(run, range(RACERS))))


def outcome(result: Any) -> tuple[int, str]:
    if isinstance(result, ClientError):
        r = result.response
        return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]
    return result["ResponseMetadata"]["HTTPStatusCode"], "OK"


def body_of(i: int) -> bytes:
    return f"racer {i:02d} ".encode() * (1000 + i)


def test_racing_create_only_puts_exactly_one_wins(
    server: SeglakeServer, s3: Any, bucket: str
) -> None:
    results = race(
        server,
        lambda c, i: c.put_object(Bucket=bucket, Key="new", Body=body_of(i), IfNoneMatch="*"),
    )
    counts = Counter(outcome(r) for r in results.values())
    assert counts == {(200, "OK"): 1, (412, "PreconditionFailed"): RACERS - 1}, counts
    (winner,) = (i for i, r in results.items() if outcome(r)[0] == 200)
    got = s3.get_object(Bucket=bucket, Key="new")
    assert got["Body"].read() == body_of(winner)
    assert got["ETag"] == results[winner]["ETag"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="new").get("Versions", [])
    assert len(versions) == 1  # the losers left nothing behind


def test_racing_if_match_overwrites_exactly_one_wins(
    server: SeglakeServer, s3: Any, bucket: str
) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"original")["ETag"]
    results = race(
        server, lambda c, i: c.put_object(Bucket=bucket, Key="k", Body=body_of(i), IfMatch=etag)
    )
    counts = Counter(outcome(r) for r in results.values())
    assert counts == {(200, "OK"): 1, (412, "PreconditionFailed"): RACERS - 1}, counts
    (winner,) = (i for i, r in results.items() if outcome(r)[0] == 200)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body_of(winner)


def test_put_condition_outcomes(server: SeglakeServer, s3: Any, bucket: str) -> None:
    def put_status(key: str, **cond: str) -> tuple[int, str]:
        try:
            return outcome(s3.put_object(Bucket=bucket, Key=key, Body=b"x", **cond))
        except ClientError as exc:
            return outcome(exc)

    assert put_status("absent", IfMatch='"0123"') == (404, "NoSuchKey")
    assert put_status("absent", IfMatch="*") == (404, "NoSuchKey")
    assert put_status("fresh", IfNoneMatch="*") == (200, "OK")
    assert put_status("fresh", IfNoneMatch="*") == (412, "PreconditionFailed")
    etag = s3.head_object(Bucket=bucket, Key="fresh")["ETag"]
    assert put_status("fresh", IfMatch='"0123"') == (412, "PreconditionFailed")
    for good in (etag, etag.strip('"'), "*", f'"0000", {etag}'):
        assert put_status("fresh", IfMatch=good) == (200, "OK"), good
    # AWS takes only "*" in a write's If-None-Match.
    assert put_status("fresh", IfNoneMatch=etag) == (501, "NotImplemented")
    assert put_status("absent", IfNoneMatch=etag) == (501, "NotImplemented")
    # A delete marker is no object: If-Match fails, If-None-Match passes.
    s3.delete_object(Bucket=bucket, Key="fresh")
    assert put_status("fresh", IfMatch=etag) == (404, "NoSuchKey")
    assert put_status("fresh", IfNoneMatch="*") == (200, "OK")


def test_412_body_names_the_write_condition(server: SeglakeServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    resp = signed_request(server, "PUT", f"/{bucket}/k", headers={"If-None-Match": "*"}, body=b"2")
    assert resp.status_code == 412
    assert b"<Code>PreconditionFailed</Code>" in resp.content
    assert b"<Condition>If-None-Match</Condition>" in resp.content
    resp = signed_request(server, "PUT", f"/{bucket}/k", headers={"If-Match": '"ab"'}, body=b"2")
    assert resp.status_code == 412
    assert b"<Condition>If-Match</Condition>" in resp.content
    resp = signed_request(
        server, "PUT", f"/{bucket}/k", headers={"If-None-Match": '"ab"'}, body=b"2"
    )
    assert resp.status_code == 501
    assert b"<Header>If-None-Match</Header>" in resp.content
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"


def test_copy_destination_conditions(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source bytes")
    src = f"{bucket}/src"

    def copy_status(**cond: str) -> tuple[int, str]:
        try:
            return outcome(s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **cond))
        except ClientError as exc:
            return outcome(exc)

    assert copy_status(IfMatch='"0123"') == (404, "NoSuchKey")
    assert copy_status(IfNoneMatch="*") == (200, "OK")
    assert copy_status(IfNoneMatch="*") == (412, "PreconditionFailed")
    etag = s3.head_object(Bucket=bucket, Key="dst")["ETag"]
    assert copy_status(IfMatch='"0123"') == (412, "PreconditionFailed")
    assert copy_status(IfMatch=etag) == (200, "OK")
    assert copy_status(IfNoneMatch=etag) == (501, "NotImplemented")


def _upload(s3: Any, bucket: str, key: str, data: bytes) -> tuple[str, list[dict[str, Any]]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data)[
        "ETag"
    ]
    return upload_id, [{"PartNumber": 1, "ETag": etag}]


def test_complete_conditions(s3: Any, bucket: str) -> None:
    def complete(key: str, upload: tuple[str, list[dict[str, Any]]], **cond: str) -> Any:
        return s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload[0], MultipartUpload={"Parts": upload[1]},
            **cond,
        )  # fmt: skip

    # Two uploads of one new key, both create-only: the first Complete wins.
    first, second = _upload(s3, bucket, "mp", b"first"), _upload(s3, bucket, "mp", b"second")
    assert complete("mp", first, IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as exc:
        complete("mp", second, IfNoneMatch="*")
    assert status_and_code(exc) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"first"

    # If-Match: a missing key, a wrong ETag, the right one.
    with pytest.raises(ClientError) as exc:
        complete("absent", _upload(s3, bucket, "absent", b"a"), IfMatch='"0123"')
    assert status_and_code(exc) == (404, "NoSuchKey")
    up = _upload(s3, bucket, "mp", b"third")
    with pytest.raises(ClientError) as exc:
        complete("mp", up, IfMatch='"0123"')
    assert status_and_code(exc) == (412, "PreconditionFailed")
    etag = s3.head_object(Bucket=bucket, Key="mp")["ETag"]
    assert complete("mp", up, IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"third"

    with pytest.raises(ClientError) as exc:
        complete("mp", _upload(s3, bucket, "mp", b"x"), IfNoneMatch=etag)
    assert status_and_code(exc) == (501, "NotImplemented")


def test_complete_conflicts_with_a_write_during_the_upload(s3: Any, bucket: str) -> None:
    """The key was written and deleted after CreateMultipartUpload: the
    create-only Complete would pass, but the upload raced another write →
    409, and nothing is created."""
    up = _upload(s3, bucket, "raced", b"late")
    s3.put_object(Bucket=bucket, Key="raced", Body=b"meanwhile")
    s3.delete_object(Bucket=bucket, Key="raced")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="raced", UploadId=up[0], MultipartUpload={"Parts": up[1]},
            IfNoneMatch="*",
        )  # fmt: skip
    assert status_and_code(exc) == (409, "ConditionalRequestConflict")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="raced")
    assert status_and_code(exc)[0] == 404
    # Unconditional, the same upload completes.
    s3.complete_multipart_upload(
        Bucket=bucket, Key="raced", UploadId=up[0], MultipartUpload={"Parts": up[1]}
    )
    assert s3.get_object(Bucket=bucket, Key="raced")["Body"].read() == b"late"


def _slow_put(
    server: SeglakeServer, path: str, headers: dict[str, str], first: bytes, rest: bytes,
    sent_first: threading.Event, go_on: threading.Event,
) -> httpx.Response:  # fmt: skip
    """A PUT whose body stops after ``first`` until ``go_on`` is set."""
    url = server.endpoint + path
    hdrs = {**headers, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    hdrs = signed_headers("PUT", url, headers=hdrs)
    hdrs["Content-Length"] = str(len(first) + len(rest))

    def body() -> Iterator[bytes]:
        yield first
        sent_first.set()
        assert go_on.wait(30)
        yield rest

    return httpx.put(url, headers=hdrs, content=body(), timeout=60)


@pytest.mark.parametrize("versioned", [True, False])
def test_put_conflicts_with_a_delete_during_the_upload(
    server: SeglakeServer, s3: Any, make_bucket: Callable[..., str], versioned: bool
) -> None:
    """If-None-Match: * started while the key existed; the key is deleted
    while the body is on its way. At commit the condition would hold, but the
    key changed under the request: 409, and the PUT stores nothing."""
    if versioned:
        bucket = make_bucket("v")
    else:  # deletes remove the current row instead of adding a marker
        bucket = f"{make_bucket('scratch')}-u"
        resp = signed_request(
            server, "PUT", f"/{bucket}", headers={"x-seglake-versioning": "unversioned"}
        )
        assert resp.status_code == 200, resp.text
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    first, rest = b"a" * MiB, b"b" * MiB
    sent_first, go_on = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(
            _slow_put,
            server,
            f"/{bucket}/k",
            {"If-None-Match": "*"},
            first,
            rest,
            sent_first,
            go_on,
        )
        assert sent_first.wait(30)
        # The frontend took its look at the key before reading the body;
        # give it a moment to have started on this request.
        threading.Event().wait(0.5)
        s3.delete_object(Bucket=bucket, Key="k")
        go_on.set()
        resp = fut.result()
    assert resp.status_code == 409, resp.text
    assert b"<Code>ConditionalRequestConflict</Code>" in resp.content
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert status_and_code(exc)[0] == 404
    # A retry (the key now absent from the start) succeeds.
    body = first + rest
    done = s3.put_object(Bucket=bucket, Key="k", Body=body, IfNoneMatch="*")
    assert done["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
