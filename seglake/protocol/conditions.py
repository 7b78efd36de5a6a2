"""Conditional request headers: If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since (pure).

Rules this module keeps (RFC 7232 §6, as AWS S3 applies them):

1. ``If-Match`` present: it alone decides the "has it changed" side; false →
   412 (``If-Unmodified-Since`` is then ignored). Absent: a false
   ``If-Unmodified-Since`` → 412.
2. ``If-None-Match`` present: it alone decides the "is it the same" side; a
   match → 304 on reads (``If-Modified-Since`` is then ignored). Absent: an
   ``If-Modified-Since`` the object is not newer than → 304 on reads.
3. For ``x-amz-copy-source-if-*`` every failure is 412: a copy has no
   "not modified" answer.
4. A date that does not parse is ignored, never an error. Dates have whole
   seconds; the object's time is truncated to seconds, the same value its
   ``Last-Modified`` header shows.
5. ETag lists: comma-separated, quoted or not (SDK users often pass the bare
   hex), ``*`` matches any existing object. ``If-Match`` compares strongly
   (a ``W/`` tag never matches), ``If-None-Match`` weakly (``W/"x"``
   matches ``"x"``).

The evaluator returns a verdict; the caller turns it into its own error, so
the same code serves GET/HEAD, CopyObject and the writer.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Outcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not-modified"  # 304
    PRECONDITION_FAILED = "precondition-failed"  # 412


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    # The header that decided a failure, as AWS names it in <Condition>.
    condition: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.PROCEED


PROCEED = Verdict(Outcome.PROCEED)


@dataclass(frozen=True)
class Conditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.if_match, self.if_none_match, self.if_modified_since,
                self.if_unmodified_since,
            )
        )  # fmt: skip


READ_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
COPY_HEADERS = tuple(f"x-amz-copy-source-{h}" for h in READ_HEADERS)


def from_headers(headers: Mapping[str, str], *, copy_source: bool = False) -> Conditions:
    """The four conditions from lower-cased request headers (or their
    ``x-amz-copy-source-`` twins)."""
    names = COPY_HEADERS if copy_source else READ_HEADERS
    m, nm, ms, us = (headers.get(n) for n in names)
    return Conditions(m, nm, ms, us)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch for an HTTP date (IMF-fixdate, RFC 850 or
    asctime form, which ``email.utils`` all reads); None if it does not parse."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # asctime carries no zone; HTTP dates are GMT
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return int(parsed.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


def parse_etag_list(value: str) -> list[tuple[bool, str]] | None:
    """``(weak, opaque)`` per entry of an ETag list; None for ``*``.

    Entries are split on commas outside quotes; quotes are removed, so a bare
    ``abc`` and ``"abc"`` are the same tag. Empty entries are skipped.
    """
    if value.strip() == "*":
        return None
    tags: list[tuple[bool, str]] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t,":
            i += 1
        if i >= n:
            break
        weak = False
        if value.startswith(("W/", "w/"), i):
            weak = True
            i += 2
        if i < n and value[i] == '"':
            end = value.find('"', i + 1)
            if end < 0:
                end = n
            tags.append((weak, value[i + 1 : end]))
            i = end + 1
            # Anything between the closing quote and the next comma is junk.
            comma = value.find(",", i)
            i = n if comma < 0 else comma + 1
        else:
            comma = value.find(",", i)
            stop = n if comma < 0 else comma
            tag = value[i:stop].strip()
            if tag:
                tags.append((weak, tag))
            i = stop + 1
    return tags


def etag_matches(value: str, etag: str, *, weak: bool) -> bool:
    """Whether the ETag list ``value`` matches the object's (unquoted) ``etag``."""
    tags = parse_etag_list(value)
    if tags is None:
        return True
    return any(opaque == etag and (weak or not is_weak) for is_weak, opaque in tags)


def evaluate(c: Conditions, etag: str, last_modified_ns: int, *, copy: bool = False) -> Verdict:
    """The verdict for an existing object with ``etag`` (unquoted) and
    ``last_modified_ns``; ``copy`` selects the copy-source rules (no 304)."""
    prefix = "x-amz-copy-source-" if copy else ""
    modified_s = last_modified_ns // 1_000_000_000
    if c.if_match is not None:
        if not etag_matches(c.if_match, etag, weak=False):
            return Verdict(Outcome.PRECONDITION_FAILED, prefix + "If-Match")
    elif c.if_unmodified_since is not None:
        since = parse_http_date(c.if_unmodified_since)
        if since is not None and modified_s > since:
            return Verdict(Outcome.PRECONDITION_FAILED, prefix + "If-Unmodified-Since")
    fail = Outcome.PRECONDITION_FAILED if copy else Outcome.NOT_MODIFIED
    if c.if_none_match is not None:
        if etag_matches(c.if_none_match, etag, weak=True):
            return Verdict(fail, prefix + "If-None-Match")
    elif c.if_modified_since is not None:
        since = parse_http_date(c.if_modified_since)
        if since is not None and modified_s <= since:
            return Verdict(fail, prefix + "If-Modified-Since")
    return PROCEED
