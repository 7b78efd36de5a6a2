"""Range GETs on the real server: single, suffix, open-ended, across chunk
boundaries, multi-range (multipart/byteranges) and 416."""

from __future__ import annotations

import os
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

MiB = 1024 * 1024
DATA = os.urandom(9 * MiB + 123)  # three chunks: 4 MiB, 4 MiB, 1 MiB + 123


def _objects(srv: SeglakeServer) -> None:
    s3 = srv.s3()
    s3.put_object(Bucket="rng", Key="big", Body=DATA)
    s3.put_object(Bucket="rng", Key="empty", Body=b"")


server = server_fixture(buckets=["rng"], setup=_objects)


@pytest.mark.parametrize(
    "header,start,end",
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        (f"bytes={4 * MiB - 10}-{4 * MiB + 9}", 4 * MiB - 10, 4 * MiB + 9),  # spans two chunks
        (f"bytes={MiB}-{9 * MiB}", MiB, 9 * MiB),  # spans three chunks
        ("bytes=-500", len(DATA) - 500, len(DATA) - 1),
        (f"bytes={8 * MiB}-", 8 * MiB, len(DATA) - 1),
        ("bytes=5-999999999999", 5, len(DATA) - 1),
    ],
)
def test_single_range(server: SeglakeServer, header: str, start: int, end: int) -> None:
    r = server.s3().get_object(Bucket="rng", Key="big", Range=header)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["ContentRange"] == f"bytes {start}-{end}/{len(DATA)}"
    assert r["ContentLength"] == end - start + 1
    assert r["Body"].read() == DATA[start : end + 1]


def test_unparseable_range_serves_everything(server: SeglakeServer) -> None:
    r = server.s3().get_object(Bucket="rng", Key="big", Range="bytes=z-1")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200 and r["Body"].read() == DATA


@pytest.mark.parametrize("key,header", [("big", f"bytes={len(DATA)}-"), ("empty", "bytes=0-")])
def test_unsatisfiable(server: SeglakeServer, key: str, header: str) -> None:
    s3 = server.s3()
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.get_object(Bucket="rng", Key=key, Range=header)
    resp = e.value.response
    assert resp["Error"]["Code"] == "InvalidRange"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 416
    size = len(DATA) if key == "big" else 0
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-range"] == f"bytes */{size}"


def test_multi_range(server: SeglakeServer) -> None:
    url = f"{server.endpoint}/rng/big"
    spans = [(0, 9), (4 * MiB - 3, 4 * MiB + 3), (len(DATA) - 7, len(DATA) - 1)]
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in spans)
    req = AWSRequest(method="GET", url=url, headers={"Range": header})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    r = httpx.get(url, headers=dict(req.headers.items()), timeout=30)
    assert r.status_code == 206
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/byteranges; boundary=")
    assert int(r.headers["content-length"]) == len(r.content)
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + r.content
    )
    parts = list(msg.iter_parts())
    assert len(parts) == len(spans)
    for part, (a, b) in zip(parts, spans, strict=True):
        assert part["Content-Range"] == f"bytes {a}-{b}/{len(DATA)}"
        assert part.get_payload(decode=True) == DATA[a : b + 1]


def test_s3transfer_ranged_download(server: SeglakeServer, tmp_path: os.PathLike[str]) -> None:
    """boto3's download_file fetches big objects in concurrent ranged GETs."""
    from boto3.s3.transfer import TransferConfig

    target = os.path.join(tmp_path, "out.bin")
    cfg = TransferConfig(multipart_threshold=MiB, multipart_chunksize=MiB, max_concurrency=4)
    server.s3().download_file("rng", "big", target, Config=cfg)
    with open(target, "rb") as f:
        assert f.read() == DATA
