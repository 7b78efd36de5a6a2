"""The log filter that scrubs credentials (second line of defence)."""

from __future__ import annotations

import io
import logging

import pytest

from seglake.redaction import REDACTED, RedactingFilter, redact

SIG = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={SIG}",
            SIG,
        ),
        (f"GET /b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature={SIG}&X-Amz-Expires=60", SIG),
        (f"form {{'x-amz-signature': '{SIG}', 'key': 'k'}}", SIG),
        ("form {'policy': 'eyJleHBpcmF0aW9uIjogIjIwOTkifQ=='}", "eyJleHBpcmF0aW9uIjogIjIwOTkifQ=="),
        ("headers [(b'authorization', b'AWS test:c2VjcmV0')]", "c2VjcmV0"),
        ("GET /?AWSAccessKeyId=AK&Signature=c2VjcmV0%3D&Expires=1", "c2VjcmV0"),
        ("x-amz-security-token: FQoGZXIvYXdzEJr", "FQoGZXIvYXdzEJr"),
    ],
)
def test_redact(line: str, secret: str) -> None:
    out = redact(line)
    assert secret not in out
    assert REDACTED in out


def test_ordinary_lines_untouched() -> None:
    line = "ABC123 PutObject 200 etag d41d8cd98f00b204e9800998ecf8427e key signatures/x"
    assert redact(line) == line


def test_filter_scrubs_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("seglake.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("request %s", f"?X-Amz-Signature={SIG}")
        try:
            raise ValueError(f"Signature={SIG}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SIG not in text
    assert text.count(REDACTED) == 2
    assert "ValueError" in text
