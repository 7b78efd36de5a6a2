"""Native TLS (``--tls --tls-cert --tls-key``) with certificate reload.

A test CA made here signs every server certificate. Checked: boto3, awscli
and curl work over TLS and verify the chain; policies see the connection as
secure (``aws:SecureTransport``); the certificate is replaced twice while
four clients PUT and GET — no request fails and new connections see each new
certificate; a broken replacement is refused and the old certificate stays
in service; plain HTTP is not served; a bad pair refuses to start.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

LOAD_CLIENTS = 4
LOAD_SECONDS = 20.0  # the whole swap-under-load phase is bounded by this
SEEN_TIMEOUT_S = 10.0


class Pki:
    """A CA and the server certificates it signs, written as PEM files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Seglake test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_path = root / "ca.pem"
        self.ca_path.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    def issue(self, cert_path: Path, key_path: Path) -> int:
        """A fresh server certificate for 127.0.0.1/localhost, written by
        rename so the server never reads half a file; returns its serial."""
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        for path, data in (
            (key_path, key_pem),
            (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
        ):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            os.replace(tmp, path)
        return serial


class TlsServer(SeglakeServer):
    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _http_ready(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port or 0), timeout=1) as raw,
                ctx.wrap_socket(raw) as s,
            ):
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return s.recv(12).startswith(b"HTTP/1.1")
        except OSError:
            return False


def peer_serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        der = s.getpeercert(binary_form=True)
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        assert s.selected_alpn_protocol() == "http/1.1"  # h2 is never chosen
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def wait_for_serial(port: int, ca: Path, serial: int) -> float:
    start = time.monotonic()
    while time.monotonic() - start < SEEN_TIMEOUT_S:
        if peer_serial(port, ca) == serial:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"certificate {serial:x} never served")


def client(srv: TlsServer, ca: Path) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=srv.endpoint, region_name=REGION, verify=str(ca),
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[TlsServer, Pki, Path, Path]]:
    pki = Pki(tmp_path)
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    pki.issue(cert, key)
    srv = TlsServer(
        tmp_path / "data",
        extra_args=["--tls", "--tls-cert", str(cert), "--tls-key", str(key),
                    "--public-buckets", "public"],
    )  # fmt: skip
    with srv:
        yield srv, pki, cert, key


def test_clients_over_tls_and_secure_transport(
    tls_server: tuple[TlsServer, Pki, Path, Path], tmp_path: Path
) -> None:
    srv, pki, _cert, _key = tls_server
    s3 = client(srv, pki.ca_path)
    s3.create_bucket(Bucket="tls")
    s3.put_object(Bucket="tls", Key="k", Body=b"over tls")
    assert s3.get_object(Bucket="tls", Key="k")["Body"].read() == b"over tls"

    aws = Path(sys.executable).parent / "aws"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}  # fmt: skip
    out = subprocess.run(
        [str(aws), "--endpoint-url", srv.endpoint, "--ca-bundle", str(pki.ca_path),
         "s3", "cp", "s3://tls/k", "-"],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout == b"over tls", out.stderr

    # aws:SecureTransport: the public bucket lets anyone read only over TLS.
    s3.create_bucket(Bucket="public")
    s3.put_object(Bucket="public", Key="p", Body=b"public over tls")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::public/*",
        "Condition": {"Bool": {"aws:SecureTransport": "true"}},
    }]}  # fmt: skip
    s3.put_bucket_policy(Bucket="public", Policy=json.dumps(policy))
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    deadline = time.monotonic() + 10  # frontends see the policy on their next request
    while True:
        got = subprocess.run(
            [curl, "-sS", "--cacert", str(pki.ca_path), f"{srv.endpoint}/public/p"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        if got.stdout == b"public over tls" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got.returncode == 0 and got.stdout == b"public over tls", got
    # The chain is checked: without the CA, curl refuses the server.
    untrusted = subprocess.run(
        [curl, "-sS", f"{srv.endpoint}/public/p"], capture_output=True, timeout=30, check=False
    )
    assert untrusted.returncode == 60, untrusted  # "peer certificate cannot be authenticated"
    # TLS 1.1 and older are refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(pki.ca_path))
    with warnings.catch_warnings():  # the point is to speak a deprecated version
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", srv.port or 0), timeout=5) as raw,
        old.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass
    # Plain HTTP on the TLS port gets no S3 answer.
    with socket.create_connection(("127.0.0.1", srv.port or 0), timeout=5) as s:
        s.sendall(b"GET /public/p HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            reply = s.recv(100)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert b"public over tls" not in reply and not reply.startswith(b"HTTP/1.1 200")


def test_certificate_swapped_twice_under_load(
    tls_server: tuple[TlsServer, Pki, Path, Path],
) -> None:
    srv, pki, cert, key = tls_server
    port = srv.port or 0
    first = peer_serial(port, pki.ca_path)
    admin = client(srv, pki.ca_path)
    admin.create_bucket(Bucket="swap")
    failures: list[str] = []
    done = threading.Event()
    counts = [0] * LOAD_CLIENTS

    def load(n: int) -> None:
        deadline = time.monotonic() + LOAD_SECONDS
        body = os.urandom(4096)
        i = 0
        while not done.is_set() and time.monotonic() < deadline and i < 5000:
            if i % 10 == 0:
                s3 = client(srv, pki.ca_path)  # new connections see new certificates
            try:
                s3.put_object(Bucket="swap", Key=f"c{n}/{i}", Body=body)
                if s3.get_object(Bucket="swap", Key=f"c{n}/{i}")["Body"].read() != body:
                    failures.append(f"client {n}: object {i} read back wrong")
            except Exception as exc:
                failures.append(f"client {n}: request {i}: {exc!r}")
            i += 1
            counts[n] = i

    threads = [threading.Thread(target=load, args=(n,)) for n in range(LOAD_CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        second = pki.issue(cert, key)
        wait_for_serial(port, pki.ca_path, second)
        time.sleep(1)
        third = pki.issue(cert, key)
        wait_for_serial(port, pki.ca_path, third)
        time.sleep(1)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert len({first, second, third}) == 3
    assert failures == [], failures[:5]
    assert all(c >= 10 for c in counts), counts  # every client really worked throughout

    # A broken replacement is refused; the certificate in service stays.
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    time.sleep(3)
    assert peer_serial(port, pki.ca_path) == third
    admin.put_object(Bucket="swap", Key="after", Body=b"still serving")
    assert admin.get_object(Bucket="swap", Key="after")["Body"].read() == b"still serving"
    assert "refused, the old one stays in service" in srv.log_tail(400)
    # SIGHUP reloads at once (here: the good pair written back).
    fourth = pki.issue(cert, key)
    for pid in srv.refresh_pids()["frontend"]:
        os.kill(pid, 1)  # SIGHUP
    wait_for_serial(port, pki.ca_path, fourth)


def test_a_bad_pair_refuses_to_start(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    pki.issue(cert, key)
    other_key = tmp_path / "other.key"
    pki.issue(tmp_path / "other.pem", other_key)
    for args, message in [
        (["--tls", "--tls-cert", str(cert), "--tls-key", str(other_key)], "cannot use tls-cert"),
        (["--tls", "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(key)], "cannot use tls-cert"),
        (["--tls"], "tls needs tls-cert and tls-key"),
        # the seed's spelling
        (["-tls", "-tls-cert", str(tmp_path / "missing.pem"), "-tls-key", str(key)], "cannot use tls-cert"),
    ]:  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "serve", "--data-dir", str(tmp_path / "d"),
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--addr", "127.0.0.1:0",
             *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
