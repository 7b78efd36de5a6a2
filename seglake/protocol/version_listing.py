"""ListObjectVersions pagination, pure: versions in, one page out.

S3 rules kept here:
- entries are ordered by key (UTF-8 byte order), then newest first within a
  key; Version and DeleteMarker entries share that one order;
- each version (or marker) counts once toward ``max_keys``, and so does each
  CommonPrefix: with a delimiter, every version whose key's remainder after
  ``prefix`` contains the delimiter is rolled up into one prefix;
- the position is a key plus, optionally, a version of it: ``key-marker``
  alone resumes after every version of that key, ``key-marker`` with
  ``version-id-marker`` resumes with the versions of that key older than the
  marker, then the following keys;
- the page is truncated only if another entry exists after the last one
  returned; ``NextKeyMarker`` / ``NextVersionIdMarker`` name that last entry
  (a CommonPrefix has no version, so it gives only ``NextKeyMarker``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from seglake.errors import S3Error
from seglake.protocol.listing import rolled_page, skip_cursor

# Seglake version ids: 16 hex digits of the bit-inverted nanosecond clock,
# then 8 hex digits of randomness (see ``seglake.writer.ops.VersionClock``).
VERSION_ID_LEN = 24
_CLOCK_HEX = 16
_MAX_U64 = (1 << 64) - 1
NULL_VERSION = "null"


class HasVersion(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def version_id(self) -> str: ...


V = TypeVar("V", bound=HasVersion)

# fetch(after_key, below_ns): entries in listing order starting right after
# the position. ``below_ns is None``: keys > after_key. Otherwise: versions of
# after_key created before below_ns, then keys > after_key.
Fetch = Callable[[str, int | None], Iterator[V]]


@dataclass
class VersionPage(Generic[V]):
    entries: list[V] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key: str | None = None
    next_version_id: str | None = None


def is_version_id(value: str) -> bool:
    """Whether ``value`` has the shape of a Seglake version id (or ``null``)."""
    if value == NULL_VERSION:
        return True
    return len(value) == VERSION_ID_LEN and all(c in "0123456789abcdef" for c in value)


def version_created_ns(version_id: str) -> int | None:
    """The creation clock a (non-null) version id carries, or None for ``null``."""
    if version_id == NULL_VERSION:
        return None
    return _MAX_U64 - int(version_id[:_CLOCK_HEX], 16)


def check_markers(key_marker: str | None, version_id_marker: str | None) -> None:
    """AWS's rules for the pair of markers of a ListObjectVersions request."""
    if version_id_marker is None:
        return
    if not key_marker:
        raise S3Error(
            "InvalidArgument",
            message="A version-id marker cannot be specified without a key marker.",
        )
    if not is_version_id(version_id_marker):
        raise S3Error("InvalidArgument", message="Invalid version id specified")


def paginate_versions(
    fetch: Fetch[V],
    *,
    prefix: str,
    delimiter: str,
    key_marker: str,
    below_ns: int | None,
    max_keys: int,
) -> VersionPage[V]:
    """One page of versions after (key_marker, below_ns); see the module rules."""
    after_key = key_marker if below_ns is not None else skip_cursor(key_marker, delimiter, prefix)
    rolled = rolled_page(
        fetch, prefix=prefix, delimiter=delimiter, after_key=after_key, within=below_ns,
        max_keys=max_keys,
    )  # fmt: skip
    page = VersionPage(rolled.contents, rolled.common_prefixes, rolled.is_truncated)
    if rolled.is_truncated:
        page.next_key = rolled.last
        page.next_version_id = None if rolled.last_entry is None else rolled.last_entry.version_id
    return page
