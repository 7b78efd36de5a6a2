"""S3 XML response bodies, built as text (pure).

Values are escaped for XML 1.0 element content. Keys that could not be
represented (control characters) are refused at write time, so anything
stored can be listed.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from urllib.parse import quote
from xml.sax.saxutils import escape

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'


def iso8601(ns: int) -> str:
    """S3's timestamp format in XML bodies: 2006-02-03T16:45:09.000Z."""
    t = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def http_date(ns: int) -> str:
    """RFC 7231 date for Last-Modified/Date headers."""
    return _http_date_seconds(ns // 1_000_000_000)


@functools.lru_cache(maxsize=4096)
def _http_date_seconds(seconds: int) -> str:
    # Formatting costs more than the rest of a small GET's header work, and
    # the same object's Last-Modified is sent again and again.
    t = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return t.strftime("%a, %d %b %Y %H:%M:%S GMT")


def el(name: str, value: object) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else escape(str(value))
    return f"<{name}>{text}</{name}>"


def document(root: str, children: Iterable[str], *, namespace: bool = True) -> bytes:
    ns = f' xmlns="{S3_NS}"' if namespace else ""
    return (HEADER + f"<{root}{ns}>" + "".join(children) + f"</{root}>").encode("utf-8")


def error_document(
    code: str, message: str, resource: str, request_id: str, extra: dict[str, str]
) -> bytes:
    parts = [el("Code", code), el("Message", message)]
    parts += [el(k, v) for k, v in extra.items()]
    parts += [el("Resource", resource), el("RequestId", request_id), el("HostId", request_id)]
    return document("Error", parts, namespace=False)


def url_encode_key(value: str) -> str:
    """``encoding-type=url``: keys percent-encoded as AWS does (slash kept)."""
    return quote(value, safe="/")
