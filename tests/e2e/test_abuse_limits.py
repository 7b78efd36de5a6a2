"""Abuse limits against the real server: auth-failure rate limits per IP and
per key, the replay cache, slow clients, and secrets kept out of the logs.

Servers here run one frontend: the limits are per frontend process, so with
one the numbers are exact. Distinct client IPs come from binding the client
socket to other loopback addresses (all of 127.0.0.0/8 is loopback on Linux).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from pathlib import Path
from xml.etree import ElementTree

import httpx

from tests.e2e._signing import signed_headers
from tests.harness import SECRET_KEY, SeglakeServer, server_fixture

TIMEOUT = 20.0
BURST = 5
RATE = 0.5  # failures/s refilled: one token every 2 s


def _get(
    server: SeglakeServer, path: str, headers: dict[str, str], source: str = "127.0.0.1"
) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        return client.get(f"{server.endpoint}{path}", headers=headers)


def signed_get(
    server: SeglakeServer, path: str, *, secret: str = SECRET_KEY, source: str = "127.0.0.1"
) -> httpx.Response:
    return _get(
        server, path, signed_headers("GET", f"{server.endpoint}{path}", secret=secret), source
    )


def code_of(resp: httpx.Response) -> str:
    if not resp.content:
        return ""
    return ElementTree.fromstring(resp.content).findtext("Code") or ""


# One server per test: the key's bucket is shared by every address.
limited = server_fixture(
    "--auth-fail-burst", str(BURST), "--auth-fail-rate", str(RATE),
    buckets=["lim"], scope="function",
)  # fmt: skip


def test_ip_limit_slows_down_after_burst(limited: SeglakeServer) -> None:
    ip = "127.0.0.11"
    for _ in range(BURST):
        resp = signed_get(limited, "/lim", secret="wrong", source=ip)
        assert resp.status_code == 403
        assert code_of(resp) == "SignatureDoesNotMatch"
    resp = signed_get(limited, "/lim", secret="wrong", source=ip)
    assert resp.status_code == 503
    assert code_of(resp) == "SlowDown"
    assert resp.headers.get("retry-after") == "1"
    # While the address is over its limit even a good signature waits...
    assert code_of(signed_get(limited, "/lim", source=ip)) == "SlowDown"
    # ...other addresses are not affected...
    assert signed_get(limited, "/lim", source="127.0.0.12").status_code == 200
    # ...and one refilled token later (1 / RATE s) the address is served again.
    deadline = time.monotonic() + 4 / RATE
    while time.monotonic() < deadline:
        time.sleep(0.5)
        resp = signed_get(limited, "/lim", source=ip)
        if resp.status_code == 200:
            break
    assert resp.status_code == 200


def test_key_limit_does_not_lock_out_the_key_holder(limited: SeglakeServer) -> None:
    # Failures for one key spread over many addresses (each below its own
    # IP burst) use up the key's burst.
    sources = [f"127.0.1.{i}" for i in range(1, BURST + 1)]
    for source in sources:
        assert code_of(signed_get(limited, "/lim", secret="guess", source=source)) == (
            "SignatureDoesNotMatch"
        )
    # The next guess for that key gets no verdict, from any address...
    resp = signed_get(limited, "/lim", secret="guess", source="127.0.1.50")
    assert resp.status_code == 503
    assert code_of(resp) == "SlowDown"
    # ...while the holder of the secret is served.
    ok = signed_get(limited, "/lim", source="127.0.1.51")
    assert ok.status_code == 200
    assert b"<ListBucketResult" in ok.content


def test_failures_without_credentials_are_not_counted(limited: SeglakeServer) -> None:
    # Anonymous requests are refused by authorisation, not by a failed
    # signature: they never trip the limit.
    ip = "127.0.2.1"
    for _ in range(BURST * 2):
        resp = _get(limited, "/lim", {}, ip)
        assert resp.status_code == 403
        assert code_of(resp) == "AccessDenied"
    assert signed_get(limited, "/lim", source=ip).status_code == 200


# --------------------------------------------------------------------------
# Replay cache


# Two frontends: a replay must be caught whichever one it reaches.
replay_block = server_fixture(
    "--replay-ttl", "60", "--replay-block", "--replay-cache-max", "1000",
    frontends=2, buckets=["rep"],
)  # fmt: skip


def test_replayed_request_refused(replay_block: SeglakeServer) -> None:
    url = f"{replay_block.endpoint}/rep"
    headers = signed_headers("GET", url)
    first = _get(replay_block, "/rep", headers)
    assert first.status_code == 200
    # Each replay on a new connection, so the kernel spreads them over both
    # frontends.
    for _ in range(8):
        again = _get(replay_block, "/rep", headers)
        assert again.status_code == 403
        assert code_of(again) == "AccessDenied"
        assert "already been used" in again.text
    # A replayed PUT stores nothing new.
    body = b"once only"
    put_headers = signed_headers("PUT", f"{url}/obj", body=body)
    put_headers["Content-Length"] = str(len(body))
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.put(f"{url}/obj", content=body, headers=put_headers).status_code == 200
        replay = client.put(f"{url}/obj", content=body, headers=put_headers)
    assert replay.status_code == 403
    versions = replay_block.s3().list_object_versions(Bucket="rep", Prefix="obj")["Versions"]
    assert len(versions) == 1
    # A freshly signed request is fine (boto3 signs each request anew).
    assert replay_block.s3().get_object(Bucket="rep", Key="obj")["Body"].read() == body


def test_replay_log_only(tmp_path: Path) -> None:
    srv = SeglakeServer(tmp_path / "data", frontends=1, extra_args=["--replay-ttl", "60"])
    with srv:
        srv.s3().create_bucket(Bucket="replog")
        headers = signed_headers("GET", f"{srv.endpoint}/replog")
        assert _get(srv, "/replog", headers).status_code == 200
        assert _get(srv, "/replog", headers).status_code == 200
        signature = headers["Authorization"].rsplit("Signature=", 1)[1]
        deadline = time.monotonic() + 10
        log = ""
        while time.monotonic() < deadline and "replayed request signature" not in log:
            time.sleep(0.1)
            log = srv.log_path.read_text(errors="replace")
    assert "replayed request signature" in log
    assert "logged only" in log
    assert signature not in log


# --------------------------------------------------------------------------
# Slow clients


impatient = server_fixture(
    "--body-idle-timeout", "1", "--body-min-rate", "1000", "--keep-alive-timeout", "2",
    buckets=["slow"],
)  # fmt: skip


def _slow_put(server: SeglakeServer, key: str, pieces: list[bytes], pause: float) -> bytes:
    """PUT declaring 1000 bytes, sending ``pieces`` ``pause`` s apart; the raw answer."""
    url = f"{server.endpoint}/slow/{key}"
    body = b"s" * 1000
    headers = signed_headers("PUT", url, body=body)
    head = [f"PUT /slow/{key} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    head.append("Content-Length: 1000")
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=TIMEOUT) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        started = time.monotonic()
        for piece in pieces:
            try:
                s.sendall(piece)
            except OSError:
                break
            time.sleep(pause)
        s.settimeout(TIMEOUT)
        out = b""
        while time.monotonic() - started < TIMEOUT:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if b"</Error>" in out:
                break
    return out


def test_idle_body_cut_off_with_request_timeout(impatient: SeglakeServer) -> None:
    started = time.monotonic()
    answer = _slow_put(impatient, "idle", [b"s" * 10], pause=0.0)
    assert time.monotonic() - started < 10
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"<Code>RequestTimeout</Code>" in answer
    assert b"connection: close" in answer.lower()
    s3 = impatient.s3()
    assert "Contents" not in s3.list_objects_v2(Bucket="slow", Prefix="idle")


def test_dripping_body_cut_off(impatient: SeglakeServer) -> None:
    # Ten bytes every 0.5 s is never idle for 1 s, but far below 1000 B/s.
    answer = _slow_put(impatient, "drip", [b"s" * 10] * 30, pause=0.5)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"<Code>RequestTimeout</Code>" in answer
    assert "Contents" not in impatient.s3().list_objects_v2(Bucket="slow", Prefix="drip")


def test_slow_request_head_cut_off(impatient: SeglakeServer) -> None:
    # A header line trickled a few bytes at a time never completes the head:
    # the connection is closed once the keep-alive timer (2 s) runs out.
    started = time.monotonic()
    closed_after = None
    with socket.create_connection(("127.0.0.1", impatient.port or 0), timeout=TIMEOUT) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(40):
            try:
                s.sendall(b"X-Slow: a\r\n")
                s.settimeout(0.25)
                if s.recv(65536) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the slow head was never cut off"
    assert 1.5 <= closed_after < 8


# --------------------------------------------------------------------------
# Log redaction


def test_logs_never_contain_signatures_or_secrets(tmp_path: Path) -> None:
    srv = SeglakeServer(tmp_path / "data", frontends=1, extra_args=["--log-level", "debug"])
    secrets: list[str] = [SECRET_KEY]
    with srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="redact")
        # Header-signed requests, good and bad.
        for secret in (SECRET_KEY, "wrong-secret"):
            headers = signed_headers("GET", f"{srv.endpoint}/redact", secret=secret)
            _get(srv, "/redact", headers)
            secrets.append(headers["Authorization"].rsplit("Signature=", 1)[1])
            secrets.append(headers["Authorization"])
        # A presigned URL, used and then tampered with.
        v4 = srv.s3(signature_version="s3v4")
        url = v4.generate_presigned_url("get_object", {"Bucket": "redact", "Key": "nope"})
        httpx.get(url, timeout=TIMEOUT)
        signature = url.rsplit("X-Amz-Signature=", 1)[1]
        httpx.get(url.replace(signature, "0" * 64), timeout=TIMEOUT)
        secrets.append(signature)
        # A POST form, good and tampered.
        post = v4.generate_presigned_post("redact", "form")
        files = {"file": ("f", b"form bytes")}
        httpx.post(post["url"], data=post["fields"], files=files, timeout=TIMEOUT)
        bad = dict(post["fields"], **{"x-amz-signature": "1" * 64})
        httpx.post(post["url"], data=bad, files=files, timeout=TIMEOUT)
        secrets.append(post["fields"]["x-amz-signature"])
        secrets.append(post["fields"]["policy"])
        # An unhandled-looking request with credentials in odd places.
        _get(srv, "/redact?X-Amz-Signature=" + "a" * 64, {"Authorization": "AWS test:c2VjcmV0"})
        secrets.append("c2VjcmV0")
    log = srv.log_path.read_text(errors="replace")
    assert " access " in log  # requests were logged
    for secret in secrets:
        assert secret not in log, f"{secret[:12]}... leaked into the log"
    assert "Authorization" not in log
    assert base64.b64encode(SECRET_KEY.encode()).decode() not in log
    assert hashlib.sha256(SECRET_KEY.encode()).hexdigest() not in log
