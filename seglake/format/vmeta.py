"""The mutable metadata of one stored version: ``versions.vmeta`` in
``meta.db`` and the body of a version-meta record (kind 4, ``records.py``).

What it holds (docs/design-version-metadata.md §1): tags, the object ACL,
retention (object lock) and legal hold. A manifest is immutable; these
change later, so they live here and nowhere else.

The blob (``versions.vmeta``) is a msgpack map::

    {"rev": int,                                  always present
     "tags": [[key, value], ...],                 only when there are tags
     "acl": {"canned": str} | {"grants": [...]},  only when set (opaque here)
     "lock": {"mode": "GOVERNANCE"|"COMPLIANCE", "until_ms": int},  only when set
     "legal_hold": true}                          only when on

A NULL column means "all defaults, never changed" (no tags, no ACL beyond
the owner's, no lock, no hold). ``rev`` is the writer's clock when the value
was last set, so a later change carries a larger rev (replication's
last-writer-wins, §2); a value set back to defaults keeps its blob (and its
rev) rather than going back to NULL.

Rules this file keeps:
- Pure: values in, bytes out, no I/O. ``decode_vmeta`` treats the bytes as
  hostile and raises ``FormatError`` only.
- Always read it through ``decode_vmeta`` (every field filled in, missing
  keys as defaults): other code must not unpack the blob by hand.
- ``encode_vmeta`` is canonical (fixed key order, defaults left out), so
  the same value always has the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from seglake.format.errors import FormatError

LOCK_MODES: Final = ("GOVERNANCE", "COMPLIANCE")


@dataclass(frozen=True)
class Lock:
    mode: str  # GOVERNANCE | COMPLIANCE
    until_ms: int  # retain until, milliseconds since the epoch


@dataclass(frozen=True)
class VersionMeta:
    """The decoded value; ``VersionMeta()`` is "all defaults"."""

    rev: int = 0
    tags: tuple[tuple[str, str], ...] = ()
    acl: dict[str, Any] | None = None
    lock: Lock | None = None
    legal_hold: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # keys of later writers, kept

    @property
    def is_default(self) -> bool:
        return not (self.tags or self.acl or self.lock or self.legal_hold or self.extra)

    def columns(self) -> tuple[int | None, str | None, int | None, int]:
        """(tag_count, lock_mode, lock_until_ms, legal_hold): the columns of
        ``versions`` that mirror this value. tag_count is NULL for none."""
        lock = self.lock
        return (
            len(self.tags) or None,
            None if lock is None else lock.mode,
            None if lock is None else lock.until_ms,
            int(self.legal_hold),
        )

    def body(self) -> dict[str, Any]:
        """The fields of a version-meta record (without ``uid``)."""
        return {
            "rev": self.rev,
            "tags": [[k, v] for k, v in self.tags],
            "acl": self.acl,
            "lock": None
            if self.lock is None
            else {"mode": self.lock.mode, "until_ms": self.lock.until_ms},
            "legal_hold": self.legal_hold,
        }


DEFAULT: Final = VersionMeta()
_KNOWN: Final = ("rev", "tags", "acl", "lock", "legal_hold")


def encode_vmeta(value: VersionMeta) -> bytes:
    doc: dict[str, Any] = {"rev": value.rev}
    if value.tags:
        doc["tags"] = [[k, v] for k, v in value.tags]
    if value.acl is not None:
        doc["acl"] = value.acl
    if value.lock is not None:
        doc["lock"] = {"mode": value.lock.mode, "until_ms": value.lock.until_ms}
    if value.legal_hold:
        doc["legal_hold"] = True
    for k in sorted(value.extra):
        doc[k] = value.extra[k]
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    return packed


def decode_vmeta(blob: bytes | None, *, path: str = "versions.vmeta") -> VersionMeta:
    """The value of a ``versions.vmeta`` column (None: all defaults)."""
    if blob is None:
        return DEFAULT
    try:
        doc = msgpack.unpackb(blob, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for bad bytes
        raise FormatError(path, 0, f"version meta is not valid msgpack: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(path, 0, "version meta is not a map")
    return from_body(doc, path=path)


def from_body(doc: dict[str, Any], *, path: str) -> VersionMeta:
    """A value from a blob's map or a version-meta record's body (whose
    ``uid`` is ignored); missing keys are defaults, wrong types refused."""
    rev = doc.get("rev", 0)
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        raise FormatError(path, 0, "version meta rev is not a non-negative int")
    raw_tags = doc.get("tags") or []
    if not isinstance(raw_tags, list):
        raise FormatError(path, 0, "version meta tags are not a list")
    tags: list[tuple[str, str]] = []
    for t in raw_tags:
        if not (isinstance(t, list | tuple) and len(t) == 2 and all(isinstance(x, str) for x in t)):
            raise FormatError(path, 0, "version meta tag is not [key, value]")
        tags.append((t[0], t[1]))
    acl = doc.get("acl")
    if acl is not None and not isinstance(acl, dict):
        raise FormatError(path, 0, "version meta acl is not a map")
    raw_lock = doc.get("lock")
    lock = None
    if raw_lock is not None:
        until = raw_lock.get("until_ms") if isinstance(raw_lock, dict) else None
        if (
            not isinstance(raw_lock, dict)
            or raw_lock.get("mode") not in LOCK_MODES
            or not isinstance(until, int)
            or isinstance(until, bool)
        ):
            raise FormatError(path, 0, "version meta lock is not {mode, until_ms}")
        lock = Lock(str(raw_lock["mode"]), until)
    hold = doc.get("legal_hold", False)
    if not isinstance(hold, bool):
        raise FormatError(path, 0, "version meta legal_hold is not a bool")
    extra = {k: v for k, v in doc.items() if k not in _KNOWN and k != "uid"}
    return VersionMeta(rev, tuple(tags), acl, lock, hold, extra)
