"""Virtual-hosted-style addressing against the real server.

``<bucket>.localhost`` is virtual-hosted with no configuration; other names
only under a configured base domain (``--domains``), so ``myhost.lan:9000``
is never read as bucket ``myhost``. Name resolution of ``*.localhost`` is not
something glibc does from ``/etc/hosts``, so boto3 runs with
``socket.getaddrinfo`` patched to send ``*.localhost`` and ``*.s3.test`` to
127.0.0.1; raw requests are sent to 127.0.0.1 with the Host header signed.
"""

from __future__ import annotations

import socket
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e._signing import signed_headers
from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, server_fixture

_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture
def loopback_names(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host.endswith(".localhost") or host.endswith(".s3.test")):
            host = "127.0.0.1"
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def vhost_client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION,
        config=Config(s3={"addressing_style": "virtual"}, retries={"total_max_attempts": 1}),
    )  # fmt: skip


def send(port: int, method: str, host: str, path: str, body: bytes = b"") -> httpx.Response:
    """A request signed for ``http://{host}{path}``, sent to 127.0.0.1:port."""
    headers = signed_headers(method, f"http://{host}{path}", body)
    return httpx.request(
        method, f"http://127.0.0.1:{port}{path}", content=body, headers=headers, timeout=10
    )


domain_server = server_fixture("--domains", "s3.test,lan")


def test_boto3_virtual_style_on_localhost(
    server: SeglakeServer, s3: Any, bucket: str, loopback_names: None
) -> None:
    client = vhost_client(f"http://localhost:{server.port}")
    seen: list[str] = []
    client.meta.events.register("before-send.s3", lambda request, **_: seen.append(request.url))
    client.put_object(Bucket=bucket, Key="dir/v.txt", Body=b"virtual")
    assert client.get_object(Bucket=bucket, Key="dir/v.txt")["Body"].read() == b"virtual"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["dir/v.txt"]
    client.head_bucket(Bucket=bucket)
    client.delete_object(Bucket=bucket, Key="dir/v.txt")
    assert all(url.startswith(f"http://{bucket}.localhost:{server.port}/") for url in seen), seen
    # The path-style client sees the same bucket.
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_boto3_virtual_style_create_bucket(
    server: SeglakeServer, s3: Any, loopback_names: None
) -> None:
    from tests.e2e.conftest import bucket_name

    name = bucket_name("vhost-create")
    client = vhost_client(f"http://localhost:{server.port}")
    client.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        client.head_bucket(Bucket=name + "-missing")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_raw_vhost_key_with_bucket_like_prefix(server: SeglakeServer, bucket: str) -> None:
    assert server.port is not None
    host = f"{bucket}.localhost:{server.port}"
    # In virtual-hosted style the whole path is the key, even "/<bucket>/x".
    r = send(server.port, "PUT", host, f"/{bucket}/x", b"one")
    assert r.status_code == 200, r.text
    path_style = send(server.port, "GET", f"127.0.0.1:{server.port}", f"/{bucket}/{bucket}/x")
    assert path_style.content == b"one"


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "myhost.lan", "myhost", "[::1]", "bkt.example.org"]
)
def test_other_hosts_are_path_style(server: SeglakeServer, bucket: str, host: str) -> None:
    assert server.port is not None
    put = send(server.port, "PUT", f"{host}:{server.port}", f"/{bucket}/p", b"path")
    assert put.status_code == 200, put.text
    got = send(server.port, "GET", f"127.0.0.1:{server.port}", f"/{bucket}/p")
    assert got.content == b"path"


def test_configured_domains(domain_server: SeglakeServer, loopback_names: None) -> None:
    port = domain_server.port
    assert port is not None
    client = vhost_client(f"http://s3.test:{port}")
    client.create_bucket(Bucket="dombkt")
    client.put_object(Bucket="dombkt", Key="k", Body=b"domain")
    assert client.get_object(Bucket="dombkt", Key="k")["Body"].read() == b"domain"
    # The bare base domain is path style.
    r = send(port, "GET", f"s3.test:{port}", "/dombkt/k")
    assert r.status_code == 200 and r.content == b"domain"
    # "myhost.lan" with "lan" configured *is* bucket "myhost" — the operator asked for it.
    r = send(port, "GET", f"myhost.lan:{port}", "/k")
    assert r.status_code == 404 and "<Code>NoSuchBucket</Code>" in r.text
    # Unlisted domains stay path style.
    r = send(port, "GET", f"dombkt.other.test:{port}", "/dombkt/k")
    assert r.status_code == 200 and r.content == b"domain"


def test_virtual_hosted_can_be_disabled(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = SeglakeServer(
        tmp_path_factory.mktemp("novhost") / "data", frontends=1,
        extra_args=["--virtual-hosted=false"],
    )  # fmt: skip
    with srv:
        port = srv.port
        assert port is not None
        srv.s3().create_bucket(Bucket="plain")
        r = send(port, "PUT", f"plain.localhost:{port}", "/plain/k", b"x")
        assert r.status_code == 200, r.text
        r = send(port, "GET", f"plain.localhost:{port}", "/k")
        assert r.status_code == 404 and "<Code>NoSuchBucket</Code>" in r.text
