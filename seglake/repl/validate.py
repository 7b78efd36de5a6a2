"""``repl-validate``: do two sites hold the same replicated state?
(docs/design-replication.md §7, docs/replication.md "Checking two sites")

Each side is a data dir (its ``meta.db`` opened read-only, in one read
transaction; safe while its server runs: nothing is locked or written) or
a live endpoint (its ``GET /v1/replication/snapshot``). Both are reduced to
the same ``StoreState`` and compared:

- buckets, and each config field's value (``repl_entries.BUCKET_FIELDS``);
- per ``(bucket, key, uid)``: state, hlc, site, version id, etag, size,
  delete marker, the chunk digest list and the version metadata (tags,
  ACL, retention, legal hold; compared decoded, without ``rev``: a value
  set back to defaults is stored as no value by a replica). A DELETED
  version is compared by its state only: its data is gone, and a replica
  may have received it already deleted, without its manifest;
- which version is current per key;
- the SSE key-encryption key ids.

Segment offsets are local to each site and never compared. With ``deep``
every chunk a side's live versions name is also read on that side and its
BLAKE3 compared with its digest.

A snapshot does not say which rows are CONFLICT nor which is current: for
an endpoint they are derived with the rule every site applies
(``protocol/lww.py``); a data dir's are read from its rows.

Every difference is one line of text (``Difference.line``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import blake3

from seglake.format import layout
from seglake.format import segment as segfmt
from seglake.format.errors import FormatError
from seglake.format.manifest import decode_manifest
from seglake.format.vmeta import decode_vmeta
from seglake.meta.repl_reads import chunk_locations
from seglake.meta.schema import open_read
from seglake.protocol import lww
from seglake.protocol.repl_entries import (
    BUCKET_FIELDS,
    BucketBody,
    StateBody,
    VersionBody,
    decode_body,
)
from seglake.protocol.repl_snapshot import SnapshotDecoder, SnapshotEnd
from seglake.protocol.repl_wire import Entry

# Digests asked per /chunk request in deep mode (each chunk up to 4 MiB).
DEEP_GROUP: Final = 16
VersionKey = tuple[str, str, str]  # bucket, key, uid


@dataclass(frozen=True)
class VersionFacts:
    """What is compared of one version. Everything but ``state`` is None
    for a DELETED version (see the top)."""

    state: str
    hlc: int | None = None
    site: str | None = None
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    delete_marker: bool | None = None
    tombstone: bool | None = None
    digests: tuple[bytes, ...] | None = None
    vmeta: tuple[Any, ...] | None = None


COMPARED: Final = (
    "hlc", "site", "version_id", "etag", "size", "delete_marker", "tombstone", "digests",
    "vmeta",
)  # fmt: skip


@dataclass
class StoreState:
    label: str
    site: str = ""
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[VersionKey, VersionFacts] = field(default_factory=dict)
    current: dict[tuple[str, str], str] = field(default_factory=dict)
    keks: set[str] = field(default_factory=set)
    # Deep mode: problems found reading this side's chunks (digest → text).
    chunk_problems: dict[bytes, str] = field(default_factory=dict)
    chunks_checked: int = 0


def vmeta_value(blob: bytes | None, where: str) -> tuple[Any, ...]:
    """The comparable part of a vmeta blob: (tags, acl, lock, legal hold,
    extra), without ``rev``."""
    v = decode_vmeta(blob, path=where)
    return (v.tags, v.acl, v.lock, v.legal_hold, tuple(sorted(v.extra.items())))


# ---- a data dir -----------------------------------------------------------------


def read_data_dir(root: Path, label: str, *, deep: bool = False) -> StoreState:
    """The state of the store at ``root``, read in one read transaction on a
    read-only connection (a running server is not disturbed)."""
    db = root / layout.DB_FILE
    if not db.is_file():
        raise FileNotFoundError(f"{root}: no {layout.DB_FILE} (not a seglake data dir)")
    conn = open_read(str(db))
    st = StoreState(label)
    where: dict[bytes, tuple[int, int, int]] = {}
    try:
        conn.execute("BEGIN")
        try:
            rows = conn.execute("SELECT value FROM settings WHERE name = 'site_id'").fetchall()
            st.site = str(rows[0][0]) if rows else ""
            cols = ", ".join(BUCKET_FIELDS)
            for name, *values in conn.execute(f"SELECT name, {cols} FROM buckets"):
                st.buckets[str(name)] = {
                    f: v for f, v in zip(BUCKET_FIELDS, values, strict=True) if v is not None
                }
            for (kek_id,) in conn.execute("SELECT id FROM sse_keks"):
                st.keks.add(str(kek_id))
            for row in conn.execute(
                "SELECT uid, bucket, key, version_id, etag, size, delete_marker, state, hlc, "
                "site, manifest, vmeta, tombstone FROM versions"
            ):
                uid, bucket, key, vid, etag, size, marker, state, hlc, site, mf, vmeta, tomb = row
                vk = (str(bucket), str(key), str(uid))
                if state == lww.DELETED:
                    st.versions[vk] = VersionFacts(lww.DELETED)
                    continue
                digests: tuple[bytes, ...] | None = None
                if mf is not None:
                    m = decode_manifest(bytes(mf), path=f"{label}:{uid}", with_meta=False)
                    digests = tuple(c.digest for c in m.chunks)
                    if deep:
                        for c in m.chunks:
                            where.setdefault(c.digest, (c.segment_id, c.offset, c.length))
                st.versions[vk] = VersionFacts(
                    state=str(state), hlc=int(hlc), site=str(site), version_id=str(vid),
                    etag=str(etag), size=int(size), delete_marker=bool(marker),
                    tombstone=bool(tomb), digests=digests,
                    vmeta=vmeta_value(None if vmeta is None else bytes(vmeta), f"{label}:{uid}"),
                )  # fmt: skip
            for bucket, key, uid in conn.execute(
                "SELECT c.bucket, c.key, v.uid FROM current c JOIN versions v ON v.id = c.version"
            ):
                st.current[(str(bucket), str(key))] = str(uid)
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()
    if deep:
        _check_local_chunks(root, st, where)
    return st


def _check_local_chunks(
    root: Path, st: StoreState, where: dict[bytes, tuple[int, int, int]]
) -> None:
    seg_dir = layout.segments_dir(root)
    for digest, loc in where.items():
        st.chunks_checked += 1
        problem = _read_check(seg_dir, digest, loc)
        if problem is not None and problem.startswith("moved:"):
            # GC rewrote the segment since the read: ask chunk_index again.
            conn = open_read(str(root / layout.DB_FILE))
            try:
                fresh = chunk_locations(conn, [digest]).get(digest)
            finally:
                conn.close()
            problem = (
                "its segment is gone" if fresh is None else _read_check(seg_dir, digest, fresh)
            )
            if problem is not None and problem.startswith("moved:"):
                problem = "its segment is gone"
        if problem is not None:
            st.chunk_problems[digest] = problem


def _read_check(seg_dir: Path, digest: bytes, loc: tuple[int, int, int]) -> str | None:
    seg, offset, length = loc
    path = seg_dir / layout.segment_file_name(seg)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return f"moved: {path}"
    except OSError as exc:
        return f"unreadable: {exc}"
    try:
        data = segfmt.read_record(fd, offset, length, digest, path=str(path), verify=False)
    except (FormatError, OSError, ValueError) as exc:
        return f"unreadable: {exc}"
    finally:
        os.close(fd)
    if blake3.blake3(data).digest() != digest:
        return f"bytes at segment {seg} offset {offset} do not match the BLAKE3 digest"
    return None


# ---- an endpoint ----------------------------------------------------------------


class SnapshotSource(Protocol):
    """What validate needs of a remote (``seglake/repl/client.ReplClient``)."""

    def snapshot(self) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...

    async def chunks(self, digests: list[bytes]) -> dict[bytes, bytes]: ...


class _SnapshotBuilder:
    """A ``StoreState`` from snapshot items (see the top for what is derived)."""

    def __init__(self, label: str) -> None:
        self.st = StoreState(label)
        self.rows: dict[VersionKey, tuple[VersionBody | None, Entry | None, bool]] = {}
        self.end: SnapshotEnd | None = None

    def add(self, item: Entry | SnapshotEnd) -> None:
        if isinstance(item, SnapshotEnd):
            self.end = item
            self.st.site = item.site
            return
        body = decode_body(item.op, item.body)
        if isinstance(body, BucketBody):
            fields = self.st.buckets.setdefault(item.bucket, {})
            if body.value is not None:
                fields[body.field] = body.value
        elif item.op == "kek":
            self.st.keks.add(str(item.uid))
        elif isinstance(body, VersionBody | StateBody):
            vk = (item.bucket, str(item.key), str(item.uid))
            old_body, old_entry, deleted = self.rows.get(vk, (None, None, False))
            if isinstance(body, VersionBody):
                self.rows[vk] = (body, item, deleted)
            else:
                self.rows[vk] = (old_body, old_entry, True)

    def finish(self) -> StoreState:
        by_key: dict[tuple[str, str], list[lww.Row]] = {}
        for (bucket, key, uid), (body, entry, deleted) in self.rows.items():
            if body is None or entry is None:
                # Deleted before it reached that site: the state is all it has.
                by_key.setdefault((bucket, key), []).append(lww.Row(uid, 0, "", None, lww.DELETED))
                continue
            prev = None if body.prev is None else (body.prev.hlc, body.prev.site)
            state = lww.DELETED if deleted else lww.ACTIVE
            row = lww.Row(
                uid, entry.hlc, entry.site, prev, state, body.delete_marker, body.tombstone
            )
            by_key.setdefault((bucket, key), []).append(row)
        for (bucket, key), rows in by_key.items():
            verdict = lww.decide_key(rows)
            winner = next((r for r in rows if r.uid == verdict.current), None)
            if winner is not None and not winner.tombstone:
                # A tombstone wins without being current (the writer's rule).
                self.st.current[(bucket, key)] = winner.uid
            for r in rows:
                state = verdict.states[r.uid]
                vk = (bucket, key, r.uid)
                body, entry, _ = self.rows[vk]
                if state == lww.DELETED or body is None or entry is None:
                    self.st.versions[vk] = VersionFacts(lww.DELETED)
                    continue
                m = decode_manifest(entry.manifest or b"", path=f"{self.st.label}:{r.uid}",
                                    with_meta=False)  # fmt: skip
                self.st.versions[vk] = VersionFacts(
                    state=state, hlc=entry.hlc, site=entry.site, version_id=body.version_id,
                    etag=body.etag, size=body.size, delete_marker=body.delete_marker,
                    tombstone=body.tombstone, digests=tuple(c.digest for c in m.chunks),
                    vmeta=vmeta_value(body.vmeta, f"{self.st.label}:{r.uid}"),
                )  # fmt: skip
        return self.st


async def read_endpoint(source: SnapshotSource, label: str, *, deep: bool = False) -> StoreState:
    """The state a live site serves as its snapshot (and, deep, whether each
    chunk its live versions name is served and matches its digest)."""
    dec = SnapshotDecoder()
    build = _SnapshotBuilder(label)
    async with source.snapshot() as body:
        async for piece in body:
            for item in dec.feed(piece):
                build.add(item)
    dec.close()
    st = build.finish()
    if deep:
        await _check_remote_chunks(source, st)
    return st


async def _check_remote_chunks(source: SnapshotSource, st: StoreState) -> None:
    wanted = list(
        dict.fromkeys(d for f in st.versions.values() if f.digests is not None for d in f.digests)
    )
    for i in range(0, len(wanted), DEEP_GROUP):
        group = wanted[i : i + DEEP_GROUP]
        got = await _fetch(source, group)
        for d in group:
            st.chunks_checked += 1
            data = got.get(d)
            if data is None:
                st.chunk_problems[d] = "not served (missing or damaged there)"
            elif blake3.blake3(data).digest() != d:
                st.chunk_problems[d] = "served bytes do not match the BLAKE3 digest"


async def _fetch(source: SnapshotSource, group: list[bytes]) -> dict[bytes, bytes]:
    from seglake.repl.client import ReplHTTPError

    try:
        return await source.chunks(group)
    except ReplHTTPError as exc:
        if exc.code != "ReplicationBadChunk" or len(group) == 1:
            if exc.code == "ReplicationBadChunk":
                return {}
            raise
    # One chunk of the group did not verify: ask one by one to name it.
    out: dict[bytes, bytes] = {}
    for d in group:
        out.update(await _fetch(source, [d]))
    return out


# ---- comparing --------------------------------------------------------------------


def _show(text: str) -> str:
    """A bucket or key as printed: as is when plain, else JSON-quoted (a key
    may hold spaces, newlines, anything)."""
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    import json

    return json.dumps(text)


def _value(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, tuple) and v and all(isinstance(x, bytes) for x in v):
        return "[" + ",".join(x.hex()[:16] for x in v) + "]"
    return repr(v)


def compare(a: StoreState, b: StoreState) -> list[str]:
    """One line per difference, sorted within each kind; [] when the two
    states are the same."""
    out: list[str] = []
    A, B = a.label, b.label
    for name in sorted(a.buckets.keys() | b.buckets.keys()):
        if name not in b.buckets:
            out.append(f"bucket {_show(name)}: only in {A}")
            continue
        if name not in a.buckets:
            out.append(f"bucket {_show(name)}: only in {B}")
            continue
        fa, fb = a.buckets[name], b.buckets[name]
        for f in BUCKET_FIELDS:
            if fa.get(f) != fb.get(f):
                out.append(
                    f"bucket {_show(name)} {f}: {A}={_value(fa.get(f))} {B}={_value(fb.get(f))}"
                )
    for vk in sorted(a.versions.keys() | b.versions.keys()):
        bucket, key, uid = vk
        what = f"version {_show(bucket)}/{_show(key)} {uid}"
        va, vb = a.versions.get(vk), b.versions.get(vk)
        if va is None or vb is None:
            have = vb if va is None else va
            assert have is not None
            out.append(f"{what}: only in {B if va is None else A} ({have.state})")
            continue
        if va.state != vb.state:
            out.append(f"{what} state: {A}={va.state} {B}={vb.state}")
        if lww.DELETED in (va.state, vb.state):
            continue
        for f in COMPARED:
            x, y = getattr(va, f), getattr(vb, f)
            if x != y:
                out.append(f"{what} {f}: {A}={_value(x)} {B}={_value(y)}")
    for bk in sorted(a.current.keys() | b.current.keys()):
        ca, cb = a.current.get(bk, "none"), b.current.get(bk, "none")
        if ca != cb:
            out.append(f"current {_show(bk[0])}/{_show(bk[1])}: {A}={ca} {B}={cb}")
    for kek in sorted(a.keks ^ b.keks):
        out.append(f"kek {kek}: only in {A if kek in a.keks else B}")
    for side in (a, b):
        for d in sorted(side.chunk_problems):
            out.append(f"chunk {d.hex()} {side.label}: {side.chunk_problems[d]}")
    return out


def summary(a: StoreState, b: StoreState, *, deep: bool) -> str:
    live = sum(1 for f in a.versions.values() if f.state != lww.DELETED)
    text = (
        f"repl-validate: {a.label} and {b.label} hold the same state: {len(a.buckets)} buckets, "
        f"{len(a.versions)} versions ({live} not deleted), {len(a.current)} current keys, "
        f"{len(a.keks)} KEKs"
    )
    if deep:
        text += f"; {a.chunks_checked} + {b.chunks_checked} chunks read and verified"
    return text
