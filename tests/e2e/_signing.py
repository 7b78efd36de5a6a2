"""Sign a raw request with botocore's SigV4 (for tests that speak HTTP by hand)."""

from __future__ import annotations

import hashlib

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY


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
