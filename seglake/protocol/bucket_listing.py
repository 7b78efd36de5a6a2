"""ListBuckets paging (the 2024 API): ``max-buckets``, ``continuation-token``,
``prefix`` and ``bucket-region``, as pure functions over bucket names.

Rules this file keeps:
- Without ``max-buckets`` every bucket is listed and no token is returned,
  as AWS answers clients that predate paging.
- ``max-buckets`` is 1..10,000 (AWS's bounds); anything else is
  ``InvalidArgument``, never clamped silently.
- The continuation token is opaque to clients: the URL-safe base64 of the
  last name returned. A token that does not decode is ``InvalidArgument``;
  one naming a bucket deleted since is still a valid position, because
  names are compared, not looked up.
- ``bucket-region`` names the region the buckets must be in; this store
  has one, so any other region lists nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from seglake.errors import S3Error

MAX_BUCKETS_LIMIT = 10_000
# A bucket name is at most 63 bytes; a longer token was not made by us.
MAX_TOKEN_CHARS = 128


@dataclass(frozen=True)
class ListBucketsQuery:
    max_buckets: int | None
    after: str  # names greater than this one; "" from the start
    prefix: str
    region: str | None


@dataclass(frozen=True)
class BucketsPage:
    names: list[str]
    next_token: str | None


def encode_token(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode()


def decode_token(token: str) -> str:
    bad = S3Error("InvalidArgument", message="The continuation token provided is incorrect")
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise bad
    try:
        return base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeError):
        raise bad from None


def parse_query(query: Mapping[str, Sequence[str]]) -> ListBucketsQuery:
    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    max_buckets: int | None = None
    raw = one("max-buckets")
    if raw is not None:
        try:
            max_buckets = int(raw)
        except ValueError:
            max_buckets = 0
        if not 1 <= max_buckets <= MAX_BUCKETS_LIMIT:
            raise S3Error(
                "InvalidArgument",
                message=f"max-buckets must be an integer from 1 to {MAX_BUCKETS_LIMIT}",
            )
    token = one("continuation-token")
    return ListBucketsQuery(
        max_buckets=max_buckets,
        after="" if token is None else decode_token(token),
        prefix=one("prefix") or "",
        region=one("bucket-region"),
    )


def page(names: Iterable[str], q: ListBucketsQuery, region: str) -> BucketsPage:
    """The page of ``names`` (any order) that ``q`` asks for, in name order."""
    if q.region is not None and q.region != region:
        return BucketsPage([], None)
    wanted = sorted(n for n in names if n.startswith(q.prefix) and n > q.after)
    if q.max_buckets is None or len(wanted) <= q.max_buckets:
        return BucketsPage(wanted, None)
    taken = wanted[: q.max_buckets]
    return BucketsPage(taken, encode_token(taken[-1]))
