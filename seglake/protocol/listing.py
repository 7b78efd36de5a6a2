"""Listing pagination, pure: entries in, one page out.

S3 rules kept here, for every listing (objects, versions, multipart uploads;
``rolled_page`` is the one loop they share):
- entries and CommonPrefixes are merged in key order; each counts once
  toward ``max_keys``;
- with a delimiter, every entry whose key's remainder after ``prefix``
  contains the delimiter is rolled up into ``prefix + remainder[:first
  delimiter]`` and that prefix appears once;
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
from seglake.protocol.xml import el, url_encode_key

# Sorts after every key that starts with a given prefix (U+10FFFF is the
# largest code point and UTF-8 preserves code point order).
AFTER_ALL = "\U0010ffff"


class HasKey(Protocol):
    @property
    def key(self) -> str: ...


E = TypeVar("E", bound=HasKey)
# Where a listing stands within one key (a version's clock, an upload id):
# the position after ``after_key`` when fetching resumes inside that key.
Within = TypeVar("Within")


@dataclass
class Page(Generic[E]):
    contents: list[E] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    last: str | None = None  # last key or common prefix returned
    last_entry: E | None = None  # the entry ``last`` names; None for a prefix


def skip_cursor(marker: str, delimiter: str, prefix: str) -> str:
    """Where to resume after ``marker``; a CommonPrefix skips its whole subtree."""
    if delimiter and marker.startswith(prefix) and marker.endswith(delimiter):
        rest = marker[len(prefix) :]
        # A key equal to the prefix is a key, not a rolled-up prefix (its
        # remainder is empty, which would otherwise "end with" the delimiter).
        if rest and rest.find(delimiter) == len(rest) - len(delimiter):
            return marker + AFTER_ALL
    return marker


def rolled_page(
    fetch: Callable[[str, Within | None], Iterator[E]],
    *,
    prefix: str,
    delimiter: str,
    after_key: str,
    within: Within | None,
    max_keys: int,
) -> Page[E]:
    """One page of entries with CommonPrefixes rolled up (see the module rules).

    ``fetch(after_key, within)`` yields entries in listing order from just
    after that position: with ``within`` None, the entries of keys greater
    than ``after_key``; otherwise first the rest of ``after_key``'s own.
    """
    page: Page[E] = Page()
    if max_keys <= 0:
        return page
    count = 0
    while True:
        restart = False
        for entry in fetch(after_key, within):
            # Whether it is returned as itself or rolled up, this entry is
            # one more: truncated if the page is already full.
            if count == max_keys:
                page.is_truncated = True
                return page
            count += 1
            key = entry.key
            idx = key.find(delimiter, len(prefix)) if delimiter else -1
            if idx < 0:
                page.contents.append(entry)
                page.last, page.last_entry = key, entry
                continue
            cp = key[: idx + len(delimiter)]
            page.common_prefixes.append(cp)
            page.last, page.last_entry = cp, None
            # Jump over the rest of this prefix's subtree in one query.
            after_key, within = cp + AFTER_ALL, None
            restart = True
            break
        if not restart:
            return page


def paginate(
    fetch: Callable[[str], Iterator[E]],
    *,
    prefix: str,
    delimiter: str,
    after: str,
    max_keys: int,
) -> Page[E]:
    """``fetch(after)`` yields entries with key > after and the prefix, ordered."""
    return rolled_page(
        lambda after_key, _within: fetch(after_key),
        prefix=prefix, delimiter=delimiter, after_key=after, within=None, max_keys=max_keys,
    )  # fmt: skip


@dataclass(frozen=True)
class ListQuery:
    """The query parameters every S3 listing takes alike."""

    prefix: str
    delimiter: str
    encoding: str | None  # "url" or None

    @classmethod
    def parse(cls, q: Callable[[str], str | None]) -> ListQuery:
        """From ``q(name)``: a query parameter's value, None when absent."""
        encoding = parse_encoding_type(q("encoding-type"))
        return cls(q("prefix") or "", q("delimiter") or "", encoding)

    def show(self, key: str) -> str:
        """A key (or prefix, or marker) as the response shows it."""
        return url_encode_key(key) if self.encoding == "url" else key

    def echo_xml(self) -> list[str]:
        """``Delimiter`` and ``EncodingType``, echoed when the request set them."""
        out = [el("Delimiter", self.show(self.delimiter))] if self.delimiter else []
        return out + ([el("EncodingType", self.encoding)] if self.encoding else [])

    def common_prefixes_xml(self, prefixes: list[str]) -> list[str]:
        return [
            "<CommonPrefixes>" + el("Prefix", self.show(cp)) + "</CommonPrefixes>"
            for cp in prefixes
        ]


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
