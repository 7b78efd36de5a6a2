"""The replication HTTP client against the real server: signing, keep-alive,
error documents, and failures below HTTP (refused, silent peer)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio

from seglake.repl.client import ReplClient, ReplHTTPError
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer


def _client(server: SeglakeServer, secret: str = SECRET_KEY, timeout: float = 30.0) -> ReplClient:
    return ReplClient(server.endpoint, access_key=ACCESS_KEY, secret_key=secret, timeout=timeout)


def test_signed_get_and_keep_alive(server: SeglakeServer) -> None:
    async def main() -> None:
        client = _client(server)
        try:
            for _ in range(3):
                doc = json.loads(await client.fetch("GET", "/v1/meta/stats"))
                assert isinstance(doc, dict)
            assert client._conn is not None and client._conn.requests == 3
        finally:
            await client.aclose()

    trio.run(main)


def test_error_document_is_parsed(server: SeglakeServer) -> None:
    async def main() -> None:
        client = _client(server, secret="wrong-secret")
        try:
            with pytest.raises(ReplHTTPError) as info:
                await client.fetch("GET", "/v1/meta/stats")
            err = info.value
            assert (err.status, err.code, err.retryable) == (403, "SignatureDoesNotMatch", False)
            # The connection survives an error answer and serves the next call.
            with pytest.raises(ReplHTTPError):
                await client.fetch("GET", "/v1/meta/stats")
        finally:
            await client.aclose()

    trio.run(main)


def test_refused_connection_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connect is refused

        async def main() -> None:
            client = ReplClient(f"http://127.0.0.1:{port}", access_key="k", secret_key="s",
                                timeout=5)  # fmt: skip
            with pytest.raises(ReplHTTPError) as info:
                await client.fetch("GET", "/v1/meta/stats")
            assert info.value.code == "ConnectionError" and info.value.retryable

        trio.run(main)


def test_silent_peer_times_out() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts (in the kernel) and never answers
        port = s.getsockname()[1]

        async def main() -> None:
            client = ReplClient(f"http://127.0.0.1:{port}", access_key="k", secret_key="s",
                                timeout=0.5)  # fmt: skip
            with trio.fail_after(10):
                with pytest.raises(ReplHTTPError) as info:
                    await client.fetch("GET", "/v1/meta/stats")
            assert info.value.code == "Timeout" and info.value.retryable
            await client.aclose()

        trio.run(main)


def test_https_with_ca_file(tmp_path: Path) -> None:
    from tests.e2e.test_tls import Pki, TlsServer

    pki = Pki(tmp_path)
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    pki.issue(cert, key)
    tls = ["--tls", "--tls-cert", str(cert), "--tls-key", str(key)]
    with TlsServer(tmp_path / "data", frontends=1, extra_args=tls) as srv:

        async def main() -> None:
            trusted = ReplClient(srv.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                 timeout=30, ca_file=str(pki.ca_path))  # fmt: skip
            try:
                for _ in range(2):
                    assert isinstance(json.loads(await trusted.fetch("GET", "/v1/meta/stats")),
                                      dict)  # fmt: skip
                assert trusted._conn is not None and trusted._conn.requests == 2
            finally:
                await trusted.aclose()
            untrusted = ReplClient(srv.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                   timeout=30)  # fmt: skip
            with pytest.raises(ReplHTTPError) as info:
                await untrusted.fetch("GET", "/v1/meta/stats")
            assert info.value.code == "TLSError" and not info.value.retryable

        trio.run(main)
