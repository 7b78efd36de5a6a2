"""The hybrid logical clock that stamps every replicated mutation
(docs/design-replication.md §1). Pure: the physical clock is a function
the caller gives (the writer passes wall time plus the test offset).

A value is one integer, ``(physical_ms << 16) | logical``. Integer order is
the clock's order, and adding 1 to a value whose logical part is 0xFFFF
gives the next millisecond with logical 0: the design's overflow rule falls
out of the representation, so every rule below is a ``max`` of integers.

- local event: ``max(now_ms << 16, last + 1)``. When the wall clock is
  ahead of the last value the stamp is (now, 0); otherwise the last
  millisecond is kept and the logical part counts on. A clock set back
  therefore never makes a stamp go back.
- remote stamp seen: ``last = max(last, remote)``, so every later local
  stamp is above anything this site has applied.
- per key: ``max(tick(), prev + 1)`` where ``prev`` is the stamp of the
  key's current version, so a new write on this site is always above the
  version it replaces, whatever the wall clock says.

(The site id completes a stamp: ``(hlc, site)`` tuples are the LWW order.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

LOGICAL_BITS: Final = 16
LOGICAL_MASK: Final = (1 << LOGICAL_BITS) - 1
# Stamps are stored in SQLite INTEGER columns (signed 64 bits).
MAX_HLC: Final = (1 << 63) - 1
SITE_ID: Final = re.compile(r"[0-9a-f]{16}")


def pack(physical_ms: int, logical: int) -> int:
    if not (0 <= logical <= LOGICAL_MASK) or physical_ms < 0:
        raise ValueError(f"no HLC value for ({physical_ms}, {logical})")
    return (physical_ms << LOGICAL_BITS) | logical


def physical_ms(value: int) -> int:
    return value >> LOGICAL_BITS


def logical(value: int) -> int:
    return value & LOGICAL_MASK


def from_ns(ns: int) -> int:
    """The first value of the millisecond ``ns`` falls in."""
    return pack(ns // 1_000_000, 0)


def valid(value: int) -> bool:
    return 0 <= value <= MAX_HLC


def valid_site(site: str) -> bool:
    return SITE_ID.fullmatch(site) is not None


class Hlc:
    """One site's clock. ``last`` is the largest value it has issued or
    observed; it only grows."""

    def __init__(self, now_ms: Callable[[], int], last: int = 0) -> None:
        if not valid(last):
            raise ValueError(f"HLC start value {last} out of range")
        self._now_ms = now_ms
        self.last = last

    def start(self) -> int:
        """Start-up: ``max(persisted, now)`` (the persisted value is ``last``)."""
        self.last = max(self.last, pack(max(self._now_ms(), 0), 0))
        return self.last

    def tick(self) -> int:
        """A stamp for a local event."""
        value = max(pack(max(self._now_ms(), 0), 0), self.last + 1)
        if value > MAX_HLC:
            raise OverflowError("HLC exhausted")
        self.last = value
        return value

    def observe(self, remote: int) -> None:
        """A remote stamp applied here: later local stamps go above it."""
        if not valid(remote):
            raise ValueError(f"HLC value {remote} out of range")
        self.last = max(self.last, remote)

    def stamp_key(self, prev: int | None) -> int:
        """A stamp for a write to a key whose current version has stamp
        ``prev`` (None: the key has none)."""
        value = self.tick()
        if prev is not None and prev >= value:
            # prev came from this clock or one it observed; keep every later
            # stamp above it too.
            self.observe(prev + 1)
            value = self.last
        return value
