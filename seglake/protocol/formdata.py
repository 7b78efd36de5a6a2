"""A streaming ``multipart/form-data`` parser for browser form uploads (pure, sans-IO).

Rules this module keeps:

* Bytes in, events out: ``FormDataParser.feed(data)`` returns the events the
  bytes completed; the caller owns the socket. Input is split anywhere — a
  delimiter may arrive one byte at a time — and the events are the same.
* Everything except the file's content is bounded: the non-file fields,
  every part's header section, the preamble, the parts after the file and the
  epilogue all count against one budget (``max_form_bytes``), and the number
  of parts is capped. Overrunning either is an error, never a larger buffer.
* The file's content is never held: it is emitted as ``FileData`` as soon as
  it cannot be the start of the next delimiter, so memory per request is the
  budget plus one delimiter's length.
* The file is the last field that counts (as S3 documents for POST uploads):
  parts after it are parsed for framing, charged to the budget and dropped.
* Anything malformed raises ``S3Error("MalformedPOSTRequest")``. A second
  part named like the file comes after the first, so it is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from seglake.errors import S3Error

# RFC 2046 caps a boundary at 70 characters.
MAX_BOUNDARY_BYTES: Final = 70
# Every non-file byte of a form (field values, part headers, preamble,
# epilogue). S3's own POST limit for the fields before the file is 20 KB; 64
# KiB leaves room for long policies and metadata and is still a small buffer.
DEFAULT_MAX_FORM_BYTES: Final = 64 * 1024
# Parts in one form. A POST form has a dozen fields; a thousand tiny parts
# would only be a way to make the server do work.
DEFAULT_MAX_PARTS: Final = 256
# One part's header section: Content-Disposition with a long file name plus
# Content-Type fits easily.
MAX_PART_HEADER_BYTES: Final = 8 * 1024

_BCHARS: Final = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
)


@dataclass(frozen=True)
class Field:
    """A complete non-file field (name as sent; value as raw bytes)."""

    name: str
    value: bytes


@dataclass(frozen=True)
class FileStart:
    """The file part begins; ``filename`` is the Content-Disposition parameter."""

    name: str
    filename: str
    content_type: str | None


@dataclass(frozen=True)
class FileData:
    data: bytes


@dataclass(frozen=True)
class FileEnd:
    pass


@dataclass(frozen=True)
class FormEnd:
    """The closing delimiter was seen; the rest of the body is epilogue."""


Event = Field | FileStart | FileData | FileEnd | FormEnd


class _State(Enum):
    PREAMBLE = "preamble"  # before the first delimiter
    AFTER_DELIMITER = "after-delimiter"  # "--" (close) or CRLF (next part)
    HEADERS = "headers"
    BODY = "body"
    EPILOGUE = "epilogue"


def malformed(message: str) -> S3Error:
    return S3Error("MalformedPOSTRequest", message=message)


def boundary_from_content_type(value: str | None) -> bytes:
    """The boundary of a ``multipart/form-data; boundary=...`` Content-Type.

    Returns b"" when the body is not a form at all (S3 answers that with 412
    PreconditionFailed, the caller's business) and raises
    ``MalformedPOSTRequest`` for a form whose boundary is missing or invalid.
    """
    if value is None:
        return b""
    media, _, params = value.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return b""
    boundary: str | None = None
    for param in _split_params(params):
        name, eq, raw = param.partition("=")
        if eq and name.strip().lower() == "boundary":
            boundary = _unquote_param(raw.strip())
    if not boundary:
        raise malformed("multipart/form-data needs a boundary parameter")
    try:
        data = boundary.encode("ascii")
    except UnicodeEncodeError:
        raise malformed("the multipart boundary is not ASCII") from None
    if len(data) > MAX_BOUNDARY_BYTES or data.endswith(b" ") or not set(data) <= _BCHARS:
        raise malformed("the multipart boundary is not valid (RFC 2046)")
    return data


def _split_params(text: str) -> list[str]:
    """``a=1; b="x;y"`` → ``['a=1', 'b="x;y"']`` (semicolons inside quotes kept)."""
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if quoted:
        raise malformed("unterminated quoted string in a header parameter")
    last = "".join(current).strip()
    if last:
        out.append(last)
    return [p for p in out if p]


def _unquote_param(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        inner = raw[1:-1]
        out: list[str] = []
        it = iter(inner)
        for ch in it:
            out.append(next(it, "") if ch == "\\" else ch)
        return "".join(out)
    return raw


def parse_part_headers(block: bytes) -> tuple[str, str | None, str | None]:
    """A part's header section → (field name, filename or None, content type or None)."""
    disposition: str | None = None
    content_type: str | None = None
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise malformed("a part header line is not 'Name: value'")
        # Browsers send UTF-8 file names in the quoted parameter; anything
        # that is not UTF-8 is taken byte for byte (Latin-1) so nothing fails.
        try:
            text = value.strip().decode("utf-8")
        except UnicodeDecodeError:
            text = value.strip().decode("latin-1")
        if any(ord(c) < 0x20 and c != "\t" for c in text):
            raise malformed("control characters in a part header")
        lname = name.lower()
        if lname == b"content-disposition":
            if disposition is not None:
                raise malformed("a part has two Content-Disposition headers")
            disposition = text
        elif lname == b"content-type":
            if content_type is not None:
                raise malformed("a part has two Content-Type headers")
            content_type = text
    if disposition is None:
        raise malformed("a part has no Content-Disposition header")
    kind, _, params = disposition.partition(";")
    if kind.strip().lower() != "form-data":
        raise malformed("a part's Content-Disposition is not form-data")
    field_name: str | None = None
    filename: str | None = None
    for param in _split_params(params):
        pname, eq, raw = param.partition("=")
        if not eq:
            continue
        key = pname.strip().lower()
        if key == "name":
            if field_name is not None:
                raise malformed("a part names its field twice")
            field_name = _unquote_param(raw.strip())
        elif key == "filename":
            if filename is not None:
                raise malformed("a part names its file twice")
            filename = _unquote_param(raw.strip())
    if not field_name:
        raise malformed("a part has no field name")
    return field_name, filename, content_type


class FormDataParser:
    """Feed the request body; get ``Field``/``FileStart``/``FileData``/``FileEnd``/``FormEnd``.

    ``file_field`` names the part whose content is streamed (compared without
    regard to case, as S3 does for form field names); every other part is a
    ``Field``, bounded by the budget.
    """

    def __init__(
        self,
        boundary: bytes,
        *,
        file_field: str = "file",
        max_form_bytes: int = DEFAULT_MAX_FORM_BYTES,
        max_parts: int = DEFAULT_MAX_PARTS,
    ) -> None:
        if not boundary or len(boundary) > MAX_BOUNDARY_BYTES:
            raise ValueError("boundary must be 1..70 bytes")
        # Every delimiter after the first is CRLF "--" boundary; the first may
        # open the body without the CRLF, so the parser starts as if a CRLF
        # had been received just before the first byte.
        self._delimiter = b"\r\n--" + boundary
        self._file_field = file_field.lower()
        self._budget = max_form_bytes
        self._parts_left = max_parts
        self._buf = bytearray(b"\r\n")
        self._state = _State.PREAMBLE
        self._part_name = ""
        self._part_is_file = False
        self._file_seen = False
        self._after_file = False
        self._field_value = bytearray()
        self._ended = False
        self._failed = False

    @property
    def complete(self) -> bool:
        """The closing delimiter has been parsed."""
        return self._ended

    @property
    def file_seen(self) -> bool:
        return self._file_seen

    def feed(self, data: bytes) -> list[Event]:
        if self._failed:
            raise malformed("the form was already refused")
        try:
            return self._feed(data)
        except S3Error:
            self._failed = True
            raise

    def eof(self) -> None:
        """The body ended: it must have ended after the closing delimiter."""
        if not self._ended:
            raise malformed("the form ended before its closing boundary")

    # ---- internals --------------------------------------------------------
    def _charge(self, n: int) -> None:
        self._budget -= n
        if self._budget < 0:
            raise malformed("the form's fields are larger than this server accepts")

    def _feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self._state is _State.EPILOGUE:
            self._charge(len(data))
            return events
        self._buf += data
        while True:
            before = (self._state, len(self._buf))
            if self._state is _State.PREAMBLE:
                self._preamble()
            elif self._state is _State.AFTER_DELIMITER:
                self._after_delimiter(events)
            elif self._state is _State.HEADERS:
                self._headers(events)
            elif self._state is _State.BODY:
                self._body(events)
            else:  # EPILOGUE: the rest of the buffer is charged and dropped
                self._charge(len(self._buf))
                self._buf.clear()
                return events
            if (self._state, len(self._buf)) == before:
                return events  # needs more input

    def _preamble(self) -> None:
        at = self._buf.find(self._delimiter)
        if at < 0:
            # Keep what could be the start of a delimiter; charge the rest.
            keep = len(self._delimiter) - 1
            drop = max(0, len(self._buf) - keep)
            self._charge(drop)
            del self._buf[:drop]
            return
        self._charge(at)
        del self._buf[: at + len(self._delimiter)]
        self._state = _State.AFTER_DELIMITER

    def _after_delimiter(self, events: list[Event]) -> None:
        # After a delimiter: "--" closes the form; otherwise optional linear
        # whitespace (RFC 2046 transport padding) then CRLF opens a part.
        buf = self._buf
        if len(buf) < 2:
            return
        if buf[:2] == b"--":
            del buf[:2]
            self._ended = True
            self._state = _State.EPILOGUE
            events.append(FormEnd())
            return
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > 256:
                raise malformed("garbage after a boundary")
            # A lone CR at the end may be the start of the CRLF.
            pending = buf[:-1] if buf.endswith(b"\r") else buf
            if pending.strip(b" \t"):
                raise malformed("garbage after a boundary")
            return
        if buf[:end].strip(b" \t"):
            raise malformed("garbage after a boundary")
        self._charge(end + 2)
        del buf[: end + 2]
        self._parts_left -= 1
        if self._parts_left < 0:
            raise malformed("the form has more parts than this server accepts")
        self._state = _State.HEADERS

    def _headers(self, events: list[Event]) -> None:
        buf = self._buf
        if buf.startswith(b"\r\n"):
            block = b""
            used = 2
        else:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_PART_HEADER_BYTES:
                    raise malformed("a part's headers are too long")
                return
            if end > MAX_PART_HEADER_BYTES:
                raise malformed("a part's headers are too long")
            block = bytes(buf[:end])
            used = end + 4
        self._charge(used)
        del buf[:used]
        name, filename, content_type = parse_part_headers(block)
        self._part_name = name
        self._part_is_file = name.lower() == self._file_field and not self._after_file
        if self._part_is_file:
            self._file_seen = True
            events.append(FileStart(name, filename or "", content_type))
        self._field_value.clear()
        self._state = _State.BODY

    def _body(self, events: list[Event]) -> None:
        buf = self._buf
        at = buf.find(self._delimiter)
        if at < 0:
            # Everything except a possible delimiter prefix at the end is content.
            safe = len(buf) - (len(self._delimiter) - 1)
            if safe <= 0:
                return
            self._content(bytes(buf[:safe]), events)
            del buf[:safe]
            return
        if at:
            self._content(bytes(buf[:at]), events)
        del buf[: at + len(self._delimiter)]
        if self._part_is_file:
            events.append(FileEnd())
            self._after_file = True
        elif not self._after_file:
            events.append(Field(self._part_name, bytes(self._field_value)))
        self._field_value.clear()
        self._state = _State.AFTER_DELIMITER

    def _content(self, data: bytes, events: list[Event]) -> None:
        if self._part_is_file:
            events.append(FileData(data))
            return
        self._charge(len(data))
        if not self._after_file:
            self._field_value += data
