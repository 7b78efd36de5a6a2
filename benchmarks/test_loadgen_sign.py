"""The load generator's SigV4 signer agrees with botocore's S3SigV4Auth.

Run: ``.venv/bin/python -m pytest -q benchmarks/test_loadgen_sign.py``
"""

from __future__ import annotations

import calendar
import datetime

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from benchmarks.loadgen import Signer, object_path

WHEN = datetime.datetime(2024, 2, 29, 23, 59, 58)

CASES = [
    ("PUT", "http://127.0.0.1:9000", "/bench/obj-0"),
    ("GET", "http://127.0.0.1:9000", "/bench/obj-123456"),
    ("PUT", "http://127.0.0.1:41234", "/bench"),
    ("GET", "http://localhost:8080", "/bench/a/b.c~d_e-f"),
]


def botocore_authorization(method: str, url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: WHEN)
    request = AWSRequest(method=method, url=url, data=b"")
    # Plain-http S3 signs the payload unless payload signing is switched off.
    request.context["client_config"] = BotoConfig(s3={"payload_signing_enabled": False})
    S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG"), "s3", "us-east-1").add_auth(
        request
    )
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    return str(request.headers["Authorization"])


@pytest.mark.parametrize(("method", "base", "path"), CASES)
def test_signature_matches_botocore(
    method: str, base: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = Signer("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "us-east-1")
    host = base.split("://", 1)[1]
    amz_date = signer.amz_date(calendar.timegm(WHEN.timetuple()))
    assert amz_date == "20240229T235958Z"
    ours = signer.authorization(method, path, host, amz_date)
    assert ours == botocore_authorization(method, base + path, monkeypatch)


def test_signing_key_is_cached_per_day() -> None:
    signer = Signer("AK", "SK", "us-east-1")
    first = signer.signing_key("20240229")
    assert signer.signing_key("20240229") is first
    assert signer.signing_key("20240301") != first


def test_request_head_shape() -> None:
    signer = Signer("AK", "SK", "us-east-1")
    head = signer.request_head("PUT", "/bench/k", "127.0.0.1:1", 5, now=0.0)
    assert head.startswith(b"PUT /bench/k HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")
    assert b"\r\nx-amz-date: 19700101T000000Z\r\n" in head
    assert head.endswith(b"Content-Length: 5\r\n\r\n")


def test_paths_outside_unreserved_characters_are_refused() -> None:
    with pytest.raises(ValueError):
        object_path("bench", "a b")
