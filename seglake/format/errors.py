"""The one error the on-disk codecs raise for bad bytes.

Rules this file keeps:

- ``FormatError`` means "the bytes on disk (or handed to a decoder) are not a
  valid Seglake file": truncated, corrupted, forged or from an unknown format
  version. It never means "the caller passed a bad argument" (that is
  ``ValueError``) nor "the disk failed to read" (that is ``OSError``).
- Every ``FormatError`` names the file and the byte offset an operator should
  look at with a hex dump; each decoder documents which byte that is.
"""

from __future__ import annotations


class FormatError(Exception):
    """A file (or buffer read from one) failed validation at ``offset``."""

    path: str
    offset: int
    reason: str

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(path, offset, reason)
        self.path = path
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path} @ offset {self.offset}: {self.reason}"
