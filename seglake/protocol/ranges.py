"""HTTP Range requests for GET (pure).

Rules kept here (RFC 9110 §14 as S3 applies it):
- only the ``bytes`` unit; a header that does not parse is ignored (the
  whole object is served), as S3 does;
- ``a-b`` (b clamped to the last byte), ``a-`` (to the end), ``-n`` (the
  last n bytes);
- a range whose first byte is past the end is unsatisfiable; if every range
  is, the answer is 416 ``InvalidRange`` with ``Content-Range: bytes */size``;
- several satisfiable ranges are served as ``multipart/byteranges`` (the
  seed's feature; AWS itself serves only one). Their number is capped so a
  request cannot make the server read an object hundreds of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from seglake.errors import S3Error

# Enough for any real client (most send one); bounds the work a single
# request can cause.
MAX_RANGES: Final = 16


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def _digits(text: str) -> int | None:
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_range(header: str | None, size: int) -> list[ByteRange] | None:
    """Satisfiable ranges in request order, or ``None`` to serve everything.

    Raises ``S3Error('InvalidRange')`` when the header parses but no range
    can be satisfied, or when it asks for more than ``MAX_RANGES``.
    """
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        raise _unsatisfiable(size, f"at most {MAX_RANGES} ranges per request")
    out: list[ByteRange] = []
    for part in parts:
        first, dash, last = part.strip().partition("-")
        if not dash:
            return None
        if first.strip() == "":
            n = _digits(last)
            if n is None:
                return None
            if n == 0 or size == 0:
                continue
            out.append(ByteRange(max(0, size - n), size - 1))
            continue
        a = _digits(first)
        if a is None:
            return None
        if last.strip() == "":
            b = size - 1
        else:
            parsed = _digits(last)
            if parsed is None or parsed < a:
                return None
            b = min(parsed, size - 1)
        if a >= size:
            continue
        out.append(ByteRange(a, b))
    if not out:
        raise _unsatisfiable(size)
    return out


def _unsatisfiable(size: int, why: str | None = None) -> S3Error:
    return S3Error(
        "InvalidRange",
        message=why,
        headers={"Content-Range": f"bytes */{size}"},
        fields={"ActualObjectSize": str(size)},
    )


def multipart_parts(
    ranges: list[ByteRange], size: int, content_type: str, boundary: str
) -> tuple[list[bytes], bytes, int]:
    """Per-range part headers, the closing delimiter, and the total length."""
    heads = [
        (
            f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        ).encode("latin-1", "replace")
        for r in ranges
    ]
    closing = f"\r\n--{boundary}--\r\n".encode()
    total = sum(len(h) for h in heads) + sum(r.length for r in ranges) + len(closing)
    return heads, closing, total
