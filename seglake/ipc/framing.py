"""IPC framing between Seglake processes (sans-IO).

A frame on the Unix socket is::

    total_len u32 | header_len u32 | header (msgpack) | body (raw bytes)

``total_len`` counts everything after itself. The header is a msgpack array
``[kind, request_id, name, args]`` where ``args`` is the message
(``messages.py``: a typed request or reply, encoded as a msgpack map); the
body carries bulk payload (chunk data) outside msgpack so that 4 MiB chunks
are not re-encoded. Frames larger than
``MAX_FRAME`` are a protocol violation: the peer is broken or hostile, and the
connection is dropped rather than buffering without bound.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from seglake.format.segment import CHUNK_SIZE
from seglake.ipc.messages import MessageError, decode_any
from seglake.units import KiB

REQUEST: Final = 0
REPLY_OK: Final = 1
REPLY_ERROR: Final = 2

# One chunk of payload plus generous room for its header; nothing larger is
# ever legitimately sent, so anything larger is rejected before buffering.
MAX_FRAME: Final = CHUNK_SIZE + 256 * KiB
_PREFIX = struct.Struct(">II")
SMALL_BODY: Final = 64 * KiB


# The header up to its args; the args stay encoded (``msgspec.Raw``) until
# the receiver decodes them as the type the name or the call says.
_Header = tuple[int, int, str, msgspec.Raw]
_header_decoder: Final = msgspec.msgpack.Decoder(_Header)
_encoder: Final = msgspec.msgpack.Encoder()


class FramingError(Exception):
    """The byte stream is not a valid sequence of frames."""


@dataclass(frozen=True)
class Frame:
    kind: int
    request_id: int
    name: str
    args: Any
    body: bytes | bytearray | memoryview = b""


def encode_frame(frame: Frame) -> list[bytes | bytearray | memoryview]:
    """Return the frame as buffers to send in order (avoids joining big bodies)."""
    header = _encoder.encode((frame.kind, frame.request_id, frame.name, frame.args))
    total = 4 + len(header) + len(frame.body)
    if total > MAX_FRAME:
        raise FramingError(f"frame of {total} bytes exceeds the {MAX_FRAME}-byte limit")
    prefix = _PREFIX.pack(total, len(header))
    if len(frame.body) > SMALL_BODY:
        return [prefix + header, frame.body]
    # One buffer, one send: each send wakes the peer, which costs more than
    # copying a small body.
    return [prefix + header + bytes(frame.body)]


class FrameDecoder:
    """Accumulates bytes and yields complete frames.

    Network reads are kept as a list and joined once per complete frame, so
    a 4 MiB body is copied once here; frame bodies are zero-copy views of
    that join. Buffers at most one frame: a length prefix over ``MAX_FRAME``
    raises before any of its payload is accepted.

    With ``raw_args`` a frame's ``args`` are left encoded (``msgspec.Raw``)
    for the receiver to decode as a declared type; otherwise they are
    decoded as plain msgpack values.
    """

    def __init__(self, *, raw_args: bool = False) -> None:
        self._raw_args = raw_args
        self._pieces: list[bytes] = []
        self._have = 0
        self._need: int | None = None  # total frame size incl. the prefix, once known

    def feed(self, data: bytes) -> list[Frame]:
        if data:
            self._pieces.append(data)
            self._have += len(data)
        out: list[Frame] = []
        while True:
            if self._need is None:
                if self._have < 8:
                    return out
                head = self._peek(8)
                total, header_len = _PREFIX.unpack_from(head, 0)
                if total > MAX_FRAME or total < 4 or header_len > total - 4:
                    raise FramingError(f"bad frame prefix total={total} header={header_len}")
                self._need = 4 + total
            if self._have < self._need:
                return out
            joined = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
            view = memoryview(joined)
            need = self._need
            _, header_len = _PREFIX.unpack_from(joined, 0)
            header_raw = bytes(view[8 : 8 + header_len])
            body = view[8 + header_len : need]
            rest = joined[need:] if len(joined) > need else b""
            self._pieces = [rest] if rest else []
            self._have = len(rest)
            self._need = None
            out.append(_decode_header(header_raw, body, self._raw_args))

    def _peek(self, n: int) -> bytes:
        if len(self._pieces[0]) >= n:
            return self._pieces[0][:n]
        joined = b"".join(self._pieces)
        self._pieces = [joined]
        return joined[:n]

    @property
    def pending_bytes(self) -> int:
        return self._have


def _decode_header(raw: bytes, body: memoryview, raw_args: bool) -> Frame:
    try:
        kind, request_id, name, args = _header_decoder.decode(raw)
    except msgspec.DecodeError as exc:  # also a header of the wrong shape
        raise FramingError(f"frame header is not [kind, id, name, args]: {exc}") from None
    if kind not in (REQUEST, REPLY_OK, REPLY_ERROR):
        raise FramingError(f"unknown frame kind {kind}")
    if raw_args:
        return Frame(kind, request_id, name, args, body)
    try:
        return Frame(kind, request_id, name, decode_any(args), body)
    except MessageError as exc:
        raise FramingError(str(exc)) from None
