"""ListObjects pagination, pure: keys in, one page out.

S3 rules kept here:
- entries are keys and CommonPrefixes merged in key order; each counts
  once toward ``max_keys``;
- with a delimiter, every key whose remainder after ``prefix`` contains the
  delimiter is rolled up into ``prefix + remainder[:first delimiter]`` and
  that prefix appears once;
- the page is truncated only if another entry exists after the last one
  returned; the marker for the next page is the last key or prefix returned,
  and a next page starting from a prefix skips every key under it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from seglake.errors import S3Error

# Sorts after every key that starts with a given prefix (U+10FFFF is the
# largest code point and UTF-8 preserves code point order).
AFTER_ALL = "\U0010ffff"


class HasKey(Protocol):
    @property
    def key(self) -> str: ...


E = TypeVar("E", bound=HasKey)


@dataclass
class Page(Generic[E]):
    contents: list[E] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    last: str | None = None  # last key or common prefix returned


def skip_cursor(marker: str, delimiter: str, prefix: str) -> str:
    """Where to resume after ``marker``; a CommonPrefix skips its whole subtree."""
    if delimiter and marker.startswith(prefix) and marker.endswith(delimiter):
        rest = marker[len(prefix) :]
        # A key equal to the prefix is a key, not a rolled-up prefix (its
        # remainder is empty, which would otherwise "end with" the delimiter).
        if rest and rest.find(delimiter) == len(rest) - len(delimiter):
            return marker + AFTER_ALL
    return marker


def paginate(
    fetch: Callable[[str], Iterator[E]],
    *,
    prefix: str,
    delimiter: str,
    after: str,
    max_keys: int,
) -> Page[E]:
    """``fetch(after)`` yields entries with key > after and the prefix, ordered."""
    page: Page[E] = Page()
    if max_keys <= 0:
        return page
    count = 0
    cursor = after
    while True:
        restart = False
        for entry in fetch(cursor):
            key = entry.key
            if delimiter:
                idx = key.find(delimiter, len(prefix))
                if idx >= 0:
                    cp = key[: idx + len(delimiter)]
                    if count == max_keys:
                        page.is_truncated = True
                        return page
                    page.common_prefixes.append(cp)
                    page.last = cp
                    count += 1
                    # Jump over the rest of this prefix's subtree in one query.
                    cursor = cp + AFTER_ALL
                    restart = True
                    break
            if count == max_keys:
                page.is_truncated = True
                return page
            page.contents.append(entry)
            page.last = key
            count += 1
        if not restart:
            return page


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        raise S3Error(
            "InvalidArgument", message="The continuation token provided is incorrect"
        ) from None


def parse_encoding_type(raw: str | None) -> str | None:
    """``encoding-type``: absent, or ``url``; anything else is refused."""
    if raw is not None and raw != "url":
        raise S3Error("InvalidArgument", message="Invalid Encoding Method specified in Request")
    return raw


def parse_max_keys(raw: str | None, default: int = 1000, limit: int = 1000) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise S3Error("InvalidArgument", message="max-keys must be an integer") from None
    if value < 0:
        raise S3Error("InvalidArgument", message="max-keys must not be negative")
    return min(value, limit)
