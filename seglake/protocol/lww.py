"""The last-writer-wins rule of multi-site replication
(docs/design-replication.md §3), pure: rows in, verdicts out.

Rules this file keeps, and why each converges (every answer is a function
of the *set* of entries a site has seen, never of their arrival order):

- A **stamp** is ``(hlc, site)``, compared as a tuple: the LWW order.
- **DELETED is absorbing.** A uid once DELETED stays DELETED; the row is
  kept (the tombstone horizon of §2 decides when GC may purge it), so it
  keeps counting in the sibling relation below.
- **Siblings**: two versions of a key with the same ``prev`` (the stamp of
  the key's current version at their origin when written, None for a key
  that had none) and different sites were written concurrently. Every
  sibling but the one with the largest stamp is CONFLICT. The relation is
  pairwise over all rows the site holds (DELETED ones included), so a row
  only ever goes ACTIVE → CONFLICT as rows arrive, whatever their order.
- **Current**: the row with the largest stamp among those neither DELETED
  nor in conflict (delete markers and tombstones count: a key whose
  current row is a marker reads as deleted). None: the key has no current.
- DAMAGED describes this site's disk, not the history: it is kept as the
  row's state, and such a row is eligible for current exactly when an
  ACTIVE one would be.
- **Version metadata** (tags, ACL, legal hold) is one register per
  version, the newest stamp wins; a retention is merged instead
  (design-version-metadata.md §2): the later retain-until date, and
  COMPLIANCE over GOVERNANCE, so no site can shorten what another set.
- **Buckets**: each config field is a register; the larger stamp wins.
  ``bucket_gone`` at T is itself remembered (as the bucket's gone stamp,
  the largest seen): registers and versions stamped below it are dropped,
  now and when they arrive later. The bucket exists while a register or a
  version stamped at or above the gone stamp remains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

Stamp = tuple[int, str]

ACTIVE: Final = "ACTIVE"
CONFLICT: Final = "CONFLICT"
DELETED: Final = "DELETED"
DAMAGED: Final = "DAMAGED"
STATES: Final = frozenset({ACTIVE, CONFLICT, DELETED, DAMAGED})


@dataclass(frozen=True)
class Row:
    """One version of a key, as the rule needs it."""

    uid: str
    hlc: int
    site: str
    prev: Stamp | None
    state: str = ACTIVE
    delete_marker: bool = False
    tombstone: bool = False

    @property
    def stamp(self) -> Stamp:
        return (self.hlc, self.site)


@dataclass(frozen=True)
class KeyVerdict:
    """``states``: the state every row of the key should have (uid → state);
    ``current``: the uid of the key's current version, None for none."""

    states: Mapping[str, str]
    current: str | None


def in_conflict(rows: Iterable[Row]) -> set[str]:
    """The uids that lose to a sibling: another row with the same ``prev``,
    another site and a larger stamp."""
    by_prev: dict[Stamp | None, list[Row]] = {}
    for r in rows:
        by_prev.setdefault(r.prev, []).append(r)
    losers: set[str] = set()
    for group in by_prev.values():
        if len(group) < 2:
            continue
        for r in group:
            if any(s.site != r.site and s.stamp > r.stamp for s in group):
                losers.add(r.uid)
    return losers


def decide_key(rows: Iterable[Row]) -> KeyVerdict:
    """The state of each row and the current version of one key."""
    rows = list(rows)
    losers = in_conflict(rows)
    states: dict[str, str] = {}
    best: Row | None = None
    for r in rows:
        if r.state == DELETED:
            states[r.uid] = DELETED
            continue
        if r.uid in losers:
            # A damaged loser keeps saying it is damaged; it is out of the
            # running for current either way.
            states[r.uid] = DAMAGED if r.state == DAMAGED else CONFLICT
            continue
        states[r.uid] = DAMAGED if r.state == DAMAGED else ACTIVE
        if best is None or r.stamp > best.stamp:
            best = r
    return KeyVerdict(states, None if best is None else best.uid)


def newer(stamp: Stamp, than: Stamp | None) -> bool:
    """Does a register write stamped ``stamp`` replace one stamped ``than``?"""
    return than is None or stamp > than


def below_gone(stamp: Stamp, gone: Stamp | None) -> bool:
    """Is an entry stamped ``stamp`` swallowed by a bucket_gone stamped ``gone``?"""
    return gone is not None and stamp < gone


def bucket_exists(
    registers: Iterable[Stamp], versions: Iterable[Stamp], gone: Stamp | None
) -> bool:
    """Does a bucket exist, given its field registers' stamps, its versions'
    stamps and its gone stamp? (Entries below the gone stamp do not count.)"""
    return any(not below_gone(s, gone) for s in registers) or any(
        not below_gone(s, gone) for s in versions
    )


Retention = tuple[str, int]  # (mode, retain-until ms)


def merge_retention(a: Retention | None, b: Retention | None) -> Retention | None:
    """Two sites' retentions of one version, merged: the later date, and
    COMPLIANCE if either says so (commutative, so order does not matter)."""
    if a is None or b is None:
        return a if b is None else b
    mode = "COMPLIANCE" if "COMPLIANCE" in (a[0], b[0]) else a[0]
    return (mode, max(a[1], b[1]))
