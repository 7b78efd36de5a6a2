"""Scrub credentials from log lines (every process's log handler).

Seglake's own log lines are written so that they never carry a signature,
an Authorization header or a secret: the access line names the request id,
method, operation, status, size and time only, and S3 error texts never
include signatures. This filter is the second line of defence, for a
message or traceback that quotes a request anyway: SigV4/SigV2 signatures
(header, query string or POST form), Authorization header values,
``X-Amz-Security-Token`` values, SSE-C customer keys (and their MD5s) and POST
policies are replaced with
``[redacted]`` before the line is formatted.
"""

from __future__ import annotations

import logging
import re
from typing import Final

REDACTED: Final = "[redacted]"

_PATTERNS: Final = (
    # Authorization header values (SigV4 "AWS4-HMAC-SHA256 ...", SigV2 "AWS k:s").
    re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*b?['\"]?)[^'\"\r\n]+"),
    re.compile(r"AWS4-HMAC-SHA256 Credential=[^\s'\"]+(?:[ ,]+\w+=[^\s,'\"]+)*"),
    # Signatures in headers, query strings and form fields, any spelling.
    re.compile(r"(?i)((?:x-amz-)?signature['\"]?\s*[=:,]\s*['\"]?)[0-9A-Za-z%+/=]+"),
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[=:,]\s*['\"]?)[^&\s'\"]+"),
    # SSE-C customer keys (object and copy source), and their MD5s.
    re.compile(
        r"(?i)(server-side-encryption-customer-key(?:-md5)?['\"]?\s*[=:,]\s*b?['\"]?)"
        r"[0-9A-Za-z%+/=]+"
    ),
    re.compile(r"(?i)(['\"]?policy['\"]?\s*[=:,]\s*['\"]?)[0-9A-Za-z+/=]{16,}"),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with ``redact``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
