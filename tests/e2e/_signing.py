"""Sign a raw request with botocore's SigV4 (for tests that speak HTTP by hand)."""

from __future__ import annotations

import hashlib

import httpx
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer


def signed_headers(
    method: str,
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    secret: str = SECRET_KEY,
) -> dict[str, str]:
    """Headers (including Host, X-Amz-Date, Authorization) for ``url`` as given.

    The Host header is taken from ``url``, so a request can be signed for
    ``http://bkt.localhost:PORT/key`` and sent to 127.0.0.1 with that Host.
    """
    hdrs = dict(headers or {})
    hdrs.setdefault("x-amz-content-sha256", hashlib.sha256(body).hexdigest())
    req = AWSRequest(method=method, url=url, data=body, headers=hdrs)
    SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", REGION).add_auth(req)
    out = {k: str(v) for k, v in req.headers.items()}
    out["Host"] = url.split("://", 1)[1].split("/", 1)[0]
    return out


def signed_request(
    server: SeglakeServer,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> httpx.Response:
    """One request signed as boto3 signs it (S3's SigV4: the path as given,
    not encoded again) and sent with httpx: for requests boto3 would not
    send, or answers it would parse away. ``path`` and ``query`` go out as
    given (already percent-encoded where needed)."""
    url = server.endpoint + path + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    return httpx.request(method, url, headers=dict(req.headers.items()), content=body)
