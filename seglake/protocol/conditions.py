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

Writes and deletes have their own conditions, decided by the writer inside
the transaction that commits them (``decide_write``, ``decide_delete``), so
two racing requests can never both pass. Rules (AWS S3, general purpose
buckets):

6. A write (PutObject, CopyObject, CompleteMultipartUpload) takes
   ``If-None-Match: *`` (create only: a live current version → 412) and
   ``If-Match: <etag list | *>`` (overwrite only that version: no live
   current version → 404 ``NoSuchKey``, another ETag → 412). AWS accepts only
   ``*`` in a write's ``If-None-Match`` and answers an ETag there with 501
   ``NotImplemented``; so do we. Both headers at once are evaluated together
   (If-None-Match first), as AWS does not forbid it.
7. A conditional write that passes at commit, but whose key changed since the
   request began (PUT/Copy: since the frontend first looked; Complete: since
   the upload was created) is 409 ``ConditionalRequestConflict``: a
   conflicting operation ran during the upload and the client should look
   again and retry. A failed condition wins over a conflict (412/404 first).
8. A delete takes ``If-Match`` (ETag list or ``*``),
   ``x-amz-if-match-last-modified-time`` and ``x-amz-if-match-size`` (and the
   same three per object in DeleteObjects), evaluated against the current
   version only. A delete marker counts as no object. No object: ``If-Match``
   → 404 ``NoSuchKey``; the other two alone hold (AWS: "if the object doesn't
   exist, 204"). Each mismatch → 412 naming that condition. Times compare in
   whole seconds, as ``Last-Modified`` shows them. A value that does not
   parse is 400 ``InvalidArgument``, never ignored: ignoring it would turn a
   guarded delete into an unconditional one.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from seglake.errors import S3Error


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


# ---- writes and deletes (decided in the writer's transaction) ------------------------


class WriteOutcome(enum.Enum):
    PROCEED = "proceed"
    PRECONDITION_FAILED = "precondition-failed"  # 412
    NO_SUCH_KEY = "no-such-key"  # 404
    CONFLICT = "conflict"  # 409 ConditionalRequestConflict


@dataclass(frozen=True)
class WriteVerdict:
    outcome: WriteOutcome
    condition: str | None = None  # the header that failed, for <Condition>

    @property
    def ok(self) -> bool:
        return self.outcome is WriteOutcome.PROCEED

    def raise_for(self, key: str) -> None:
        """Raise the S3 error this verdict stands for (nothing if it passed)."""
        if self.outcome is WriteOutcome.PROCEED:
            return
        if self.outcome is WriteOutcome.NO_SUCH_KEY:
            raise S3Error("NoSuchKey", resource=key, fields={"Key": key})
        if self.outcome is WriteOutcome.CONFLICT:
            raise S3Error("ConditionalRequestConflict", resource=key)
        raise S3Error(
            "PreconditionFailed", resource=key, fields={"Condition": self.condition or ""}
        )


WRITE_PROCEED = WriteVerdict(WriteOutcome.PROCEED)


@dataclass(frozen=True)
class KeyState:
    """A key's current version as the writer sees it inside its transaction."""

    uid: str
    etag: str
    size: int
    created_ns: int
    delete_marker: bool = False


@dataclass(frozen=True)
class WriteConditions:
    if_match: str | None = None  # an ETag list, or "*"
    if_none_match: bool = False  # If-None-Match: * (the only value AWS takes on writes)

    @property
    def any(self) -> bool:
        return self.if_match is not None or self.if_none_match


def write_conditions_from_headers(headers: Mapping[str, str]) -> WriteConditions:
    """A write's own ``If-Match`` / ``If-None-Match`` (lower-cased headers).
    ``If-None-Match`` with anything but ``*`` is 501, as on AWS."""
    none_match = headers.get("if-none-match")
    if none_match is not None and none_match.strip() != "*":
        raise S3Error(
            "NotImplemented",
            message="A header you provided implies functionality that is not implemented",
            fields={"Header": "If-None-Match"},
        )
    return WriteConditions(headers.get("if-match"), none_match is not None)


def decide_write(
    c: WriteConditions, current: KeyState | None, seen_uid: str | None
) -> WriteVerdict:
    """Rules 6 and 7. ``seen_uid``: the current version's uid when the request
    began ("" for none), or None when that was not recorded."""
    if not c.any:
        return WRITE_PROCEED
    live = current is not None and not current.delete_marker
    if c.if_none_match and live:
        return WriteVerdict(WriteOutcome.PRECONDITION_FAILED, "If-None-Match")
    if c.if_match is not None:
        if current is None or not live:
            return WriteVerdict(WriteOutcome.NO_SUCH_KEY)
        if not etag_matches(c.if_match, current.etag, weak=False):
            return WriteVerdict(WriteOutcome.PRECONDITION_FAILED, "If-Match")
    now_uid = current.uid if current is not None else ""
    if seen_uid is not None and seen_uid != now_uid:
        return WriteVerdict(WriteOutcome.CONFLICT)
    return WRITE_PROCEED


@dataclass(frozen=True)
class DeleteConditions:
    if_match: str | None = None  # an ETag list, or "*"
    last_modified_s: int | None = None  # seconds since the epoch
    size: int | None = None

    @property
    def any(self) -> bool:
        return (
            self.if_match is not None or self.last_modified_s is not None or self.size is not None
        )


MTIME_HEADER = "x-amz-if-match-last-modified-time"
SIZE_HEADER = "x-amz-if-match-size"


def parse_timestamp(value: str) -> int | None:
    """Seconds since the epoch for an HTTP date or an ISO 8601 time
    (``2024-05-06T07:08:09.750Z``, as S3 XML and SDK headers carry them)."""
    seconds = parse_http_date(value)
    if seconds is not None:
        return seconds
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return int(parsed.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


def parse_delete_conditions(
    if_match: str | None, last_modified: str | None, size: str | None, *, names: tuple[str, str]
) -> DeleteConditions:
    """Rule 8's values, checked; ``names`` are the time and size fields as the
    request called them (headers or XML elements), for the error message."""
    seconds: int | None = None
    if last_modified is not None:
        seconds = parse_timestamp(last_modified)
        if seconds is None:
            raise S3Error(
                "InvalidArgument", message=f"Invalid {names[0]}",
                fields={"ArgumentName": names[0], "ArgumentValue": last_modified[:64]},
            )  # fmt: skip
    nbytes: int | None = None
    if size is not None:
        text = size.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise S3Error(
                "InvalidArgument", message=f"Invalid {names[1]}",
                fields={"ArgumentName": names[1], "ArgumentValue": size[:64]},
            )  # fmt: skip
        nbytes = int(text)
    return DeleteConditions(if_match, seconds, nbytes)


def delete_conditions_from_headers(headers: Mapping[str, str]) -> DeleteConditions:
    return parse_delete_conditions(
        headers.get("if-match"), headers.get(MTIME_HEADER), headers.get(SIZE_HEADER),
        names=(MTIME_HEADER, SIZE_HEADER),
    )  # fmt: skip


def decide_delete(c: DeleteConditions, current: KeyState | None) -> WriteVerdict:
    """Rule 8, against the key's current version (None: no current row)."""
    if not c.any:
        return WRITE_PROCEED
    if current is None or current.delete_marker:
        if c.if_match is not None:
            return WriteVerdict(WriteOutcome.NO_SUCH_KEY)
        return WRITE_PROCEED
    if c.if_match is not None and not etag_matches(c.if_match, current.etag, weak=False):
        return WriteVerdict(WriteOutcome.PRECONDITION_FAILED, "If-Match")
    if c.last_modified_s is not None and current.created_ns // 1_000_000_000 != c.last_modified_s:
        return WriteVerdict(WriteOutcome.PRECONDITION_FAILED, MTIME_HEADER)
    if c.size is not None and current.size != c.size:
        return WriteVerdict(WriteOutcome.PRECONDITION_FAILED, SIZE_HEADER)
    return WRITE_PROCEED
