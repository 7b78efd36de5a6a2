"""Sans-IO decoder for ``Content-Encoding: aws-chunked`` request bodies.

Rules this module keeps:

* Bytes in, events out: ``feed()`` returns ``Data``, then ``Trailers`` (only
  when a trailer section is expected), then ``EndOfMessage``. Nothing here
  reads a socket or knows about HTTP framing outside the body.
* Data is streamed as it arrives and never buffered per chunk; only size and
  trailer lines are buffered, and those are bounded. Chunk hashes for
  signature checks are computed incrementally.
* ``Data`` is untrusted until the chunk it belongs to has been verified, and
  the stream as a whole until ``EndOfMessage``: a signature is checked when
  its chunk's last byte arrives, after earlier pieces were handed out. The
  caller must not make the body visible before ``EndOfMessage``.
* Framing is exact: ``HEX[;chunk-signature=SIG]\\r\\n DATA \\r\\n``, a final
  zero-size chunk, then either ``\\r\\n`` or trailer lines and ``\\r\\n``.
  Anything else is refused rather than guessed at, because a lenient parser
  and a strict client can disagree on where the body ends.
* Once a signer is given every chunk must be signed; without one, a
  signature is refused (we would be pretending to have checked it).
* Bytes after the final CRLF are not ours: they stay in ``unused_data``.
* After an error the decoder is dead and re-raises the same error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final, Protocol

from seglake.errors import S3Error

# Longest size line accepted, CRLF excluded. A signed line is about 90 bytes
# (hex size, ";chunk-signature=", 64 hex); 256 leaves room without letting a
# client make us buffer an unbounded line.
MAX_SIZE_LINE_BYTES: Final = 256
# Trailers carry a checksum or two; these bounds are far above any SDK's use
# and keep a hostile trailer section from growing without limit.
MAX_TRAILER_BYTES: Final = 16 * 1024
MAX_TRAILER_FIELDS: Final = 16
DEFAULT_MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024

_SIGNATURE_EXT: Final = b";chunk-signature="
_TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
_LOWER_HEX: Final = b"0123456789abcdef"
_SIGNATURE_LEN: Final = 64
# Header-name characters allowed by RFC 9110's token rule.
_TOKEN_CHARS: Final = (
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Data:
    data: bytes


@dataclass(frozen=True)
class Trailers:
    headers: dict[str, str]


@dataclass(frozen=True)
class EndOfMessage:
    pass


Event = Data | Trailers | EndOfMessage


class ChunkSigner(Protocol):
    def verify_chunk(self, chunk_sha256_hex: str, signature: str) -> None: ...

    def verify_trailer(self, trailer_sha256_hex: str, signature: str) -> None: ...


class _State(Enum):
    SIZE_LINE = auto()
    DATA = auto()
    DATA_CRLF = auto()
    FINAL_CRLF = auto()
    TRAILER = auto()
    DONE = auto()
    ERROR = auto()


def _framing(message: str) -> S3Error:
    return S3Error("InvalidRequest", message=f"Malformed aws-chunked body: {message}")


class AwsChunkedDecoder:
    """Decodes one aws-chunked body.

    ``trailer`` says whether the final chunk is followed by a trailer section
    (the ``*-TRAILER`` payload modes); ``signer`` verifies chunk and trailer
    signatures (the ``STREAMING-AWS4-HMAC-SHA256-*`` modes).
    """

    def __init__(
        self,
        *,
        signer: ChunkSigner | None,
        trailer: bool,
        max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
    ) -> None:
        self._signer = signer
        self._trailer = trailer
        self._max_chunk_size = max_chunk_size
        self._state = _State.SIZE_LINE
        self._line = bytearray()
        self._remaining = 0
        self._chunk_hash: hashlib._Hash | None = None
        self._chunk_signature = ""
        self._trailers: dict[str, str] = {}
        self._trailer_lines: list[bytes] = []
        self._trailer_bytes = 0
        self._trailer_signature: str | None = None
        self._unused = b""
        self._error: S3Error | None = None

    @property
    def unused_data(self) -> bytes:
        return self._unused

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    def eof(self) -> None:
        if self._error is not None:
            raise self._error
        if self._state is not _State.DONE:
            self._error = S3Error(
                "IncompleteBody",
                message="The aws-chunked body ended before its final chunk and CRLF.",
            )
            self._state = _State.ERROR
            raise self._error

    def feed(self, data: bytes) -> list[Event]:
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            # Data events promise immutable bytes, whatever buffer type came in.
            data = bytes(data)
        if self._state is _State.DONE:
            self._unused += data
            return []
        try:
            return self._feed(data)
        except S3Error as exc:
            self._error = exc
            self._state = _State.ERROR
            raise

    def _feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state is _State.DATA:
                take = min(self._remaining, end - pos)
                piece = data[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                events.append(Data(piece))
                if self._remaining == 0:
                    self._finish_chunk()
                    self._state = _State.DATA_CRLF
                continue
            if state is _State.DONE:
                self._unused = data[pos:]
                break
            # Line states: gather up to a LF, then handle the whole line.
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line += data[pos:]
                self._check_line_length(len(self._line))
                break
            self._line += data[pos : nl + 1]
            pos = nl + 1
            line = bytes(self._line)
            self._line.clear()
            self._check_line_length(len(line) - 1)
            if len(line) < 2 or line[-2] != 0x0D:
                raise _framing("line not terminated by CRLF")
            line = line[:-2]
            if b"\r" in line:
                raise _framing("stray CR inside a line")
            self._handle_line(line, events)
        return events

    def _check_line_length(self, length: int) -> None:
        # ``length`` may still include a trailing CR; allowing for it keeps
        # the limits about content, not about where a feed happened to split.
        state = self._state
        if state is _State.SIZE_LINE:
            if length > MAX_SIZE_LINE_BYTES + 1:
                raise _framing(f"chunk size line longer than {MAX_SIZE_LINE_BYTES} bytes")
        elif state is _State.TRAILER:
            if self._trailer_bytes + length > MAX_TRAILER_BYTES + 1:
                raise _framing(f"trailer section larger than {MAX_TRAILER_BYTES} bytes")
        elif length > 1:
            # DATA_CRLF / FINAL_CRLF expect an empty line.
            raise _framing("expected CRLF")

    def _handle_line(self, line: bytes, events: list[Event]) -> None:
        state = self._state
        if state is _State.SIZE_LINE:
            self._handle_size_line(line, events)
        elif state is _State.DATA_CRLF:
            if line:
                raise _framing("chunk data not followed by CRLF")
            self._state = _State.SIZE_LINE
        elif state is _State.FINAL_CRLF:
            if line:
                raise _framing("final chunk not followed by CRLF")
            self._state = _State.DONE
            events.append(EndOfMessage())
        else:
            self._handle_trailer_line(line, events)

    def _handle_size_line(self, line: bytes, events: list[Event]) -> None:
        size_part, sep, signature_part = line.partition(b";")
        if not size_part or size_part.translate(None, _HEX_DIGITS):
            raise _framing("chunk size is not a hexadecimal number")
        size = int(size_part, 16)
        if size > self._max_chunk_size:
            raise _framing(
                f"chunk of {size} bytes exceeds the limit of {self._max_chunk_size} bytes"
            )
        if sep:
            if self._signer is None:
                raise _framing("chunk extension present in an unsigned stream")
            signature = signature_part[len(_SIGNATURE_EXT) - 1 :]
            if (
                not line[len(size_part) :].startswith(_SIGNATURE_EXT)
                or len(signature) != _SIGNATURE_LEN
                or signature.translate(None, _LOWER_HEX)
            ):
                raise _framing("chunk extension must be chunk-signature=<64 lowercase hex>")
            self._chunk_signature = signature.decode("ascii")
        elif self._signer is not None:
            raise S3Error(
                "SignatureDoesNotMatch",
                message="A chunk of a signed aws-chunked body has no chunk-signature.",
            )
        if size == 0:
            if self._signer is not None:
                self._signer.verify_chunk(_EMPTY_SHA256, self._chunk_signature)
            if self._trailer:
                self._state = _State.TRAILER
            else:
                self._state = _State.FINAL_CRLF
            return
        self._remaining = size
        self._chunk_hash = hashlib.sha256() if self._signer is not None else None
        self._state = _State.DATA

    def _finish_chunk(self) -> None:
        if self._signer is not None:
            assert self._chunk_hash is not None
            self._signer.verify_chunk(self._chunk_hash.hexdigest(), self._chunk_signature)
            self._chunk_hash = None

    def _handle_trailer_line(self, line: bytes, events: list[Event]) -> None:
        self._trailer_bytes += len(line) + 2
        if not line:
            self._finish_trailers(events)
            return
        if self._trailer_signature is not None:
            raise _framing("x-amz-trailer-signature must be the last trailer")
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not raw_name or raw_name.translate(None, _TOKEN_CHARS):
            raise _framing("trailer line is not 'name:value'")
        value_bytes = raw_value.strip(b" \t")
        if any((b < 0x20 and b != 0x09) or b == 0x7F for b in value_bytes):
            raise _framing("trailer value contains control characters")
        name = raw_name.decode("ascii").lower()
        try:
            value = value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _framing("trailer value is not UTF-8") from None
        if name == _TRAILER_SIGNATURE:
            if self._signer is None:
                raise _framing("trailer signature present in an unsigned stream")
            if len(value) != _SIGNATURE_LEN or value_bytes.translate(None, _LOWER_HEX):
                raise _framing("x-amz-trailer-signature must be 64 lowercase hex")
            self._trailer_signature = value
            return
        if name in self._trailers:
            raise _framing(f"trailer {name!r} appears more than once")
        if len(self._trailers) >= MAX_TRAILER_FIELDS:
            raise _framing(f"more than {MAX_TRAILER_FIELDS} trailers")
        self._trailers[name] = value
        self._trailer_lines.append(name.encode("ascii") + b":" + value_bytes + b"\n")

    def _finish_trailers(self, events: list[Event]) -> None:
        if self._signer is not None:
            if self._trailer_signature is None:
                raise S3Error(
                    "SignatureDoesNotMatch",
                    message="The signed aws-chunked body has no x-amz-trailer-signature.",
                )
            digest = hashlib.sha256(b"".join(self._trailer_lines)).hexdigest()
            self._signer.verify_trailer(digest, self._trailer_signature)
        self._state = _State.DONE
        events.append(Trailers(dict(self._trailers)))
        events.append(EndOfMessage())
