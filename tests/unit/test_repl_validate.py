"""repl-validate's pure parts: the state derived from snapshot items (LWW
current and CONFLICT) and the difference lines."""

from __future__ import annotations

import os

import trio

from seglake.format.manifest import ChunkRef, Manifest, encode_manifest
from seglake.protocol import repl_entries as re_
from seglake.protocol.repl_snapshot import SnapshotEnd, encode_stream
from seglake.protocol.repl_wire import Entry
from seglake.repl.validate import StoreState, VersionFacts, compare, read_endpoint

A_SITE, B_SITE = "a" * 16, "b" * 16
DELETED = re_.encode_body(re_.StateBody("DELETED"))


def _version(uid: str, hlc: int, site: str, prev: re_.Stamp | None) -> Entry:
    chunk = ChunkRef(1, 4096, 3, os.urandom(32))
    manifest = encode_manifest(Manifest("bk", "k", uid, 3, (chunk,), {}))
    body = re_.VersionBody(version_id=uid, size=3, etag='"e"', created_ns=1, prev=prev)
    return Entry(0, hlc, site, "version", "bk", "k", uid, re_.encode_body(body), manifest)


class _Source:
    def __init__(self, items: list[Entry | SnapshotEnd]) -> None:
        self.raw = b"".join(encode_stream(items))

    def snapshot(self) -> object:
        raw = self.raw

        class _Ctx:
            async def __aenter__(self) -> object:
                async def body() -> object:
                    for i in range(0, len(raw), 7):
                        yield raw[i : i + 7]

                return body()

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Ctx()

    async def chunks(self, digests: list[bytes]) -> dict[bytes, bytes]:
        raise AssertionError("not deep")


def test_siblings_from_a_snapshot_become_conflict_and_the_larger_is_current() -> None:
    bucket = re_.encode_body(re_.BucketBody("versioning", "enabled"))
    items: list[Entry | SnapshotEnd] = [
        Entry(0, 1 << 16, A_SITE, "bucket", "bk", None, "versioning", bucket),
        _version("0000000000000001", 5 << 16, A_SITE, None),
        _version("0000000000000002", 6 << 16, B_SITE, None),  # sibling, larger stamp
        # Written over 0002 (its prev), then deleted: 0002 is current again.
        _version("0000000000000003", 7 << 16, A_SITE, re_.Stamp(6 << 16, B_SITE)),
        Entry(0, 8 << 16, A_SITE, "state", "bk", "k", "0000000000000003", DELETED),
        SnapshotEnd("e" * 16, 9, A_SITE, 8 << 16),
    ]
    st = trio.run(read_endpoint, _Source(items), "A")  # type: ignore[arg-type]
    assert st.site == A_SITE and st.buckets == {"bk": {"versioning": "enabled"}}
    states = {uid: f.state for (_, _, uid), f in st.versions.items()}
    assert states == {
        "0000000000000001": "CONFLICT",
        "0000000000000002": "ACTIVE",
        "0000000000000003": "DELETED",
    }
    assert st.current == {("bk", "k"): "0000000000000002"}
    assert st.versions[("bk", "k", "0000000000000003")] == VersionFacts("DELETED")


def test_difference_lines() -> None:
    a, b = StoreState("A"), StoreState("B")
    a.buckets = {"x": {"versioning": "enabled"}, "only-a": {}}
    b.buckets = {"x": {"versioning": "suspended"}}
    facts = VersionFacts("ACTIVE", 1, A_SITE, "v", '"e"', 3, False, (b"\x01" * 32,), ())
    a.versions = {("x", "k k", "u1"): facts, ("x", "k", "u2"): facts}
    b.versions = {("x", "k k", "u1"): VersionFacts(**{**facts.__dict__, "size": 4})}
    a.current = {("x", "k"): "u2"}
    b.keks = {"0123456789abcdef"}
    assert compare(a, b) == [
        "bucket only-a: only in A",
        "bucket x versioning: A='enabled' B='suspended'",
        "version x/k u2: only in A (ACTIVE)",
        'version x/"k k" u1 size: A=3 B=4',
        "current x/k: A=u2 B=none",
        "kek 0123456789abcdef: only in B",
    ]
    assert compare(a, a) == []


def test_a_truncated_snapshot_is_refused_not_compared() -> None:
    import pytest

    from seglake.protocol.repl_wire import WireError

    items: list[Entry | SnapshotEnd] = [
        _version("0000000000000001", 5 << 16, A_SITE, None),
        SnapshotEnd("e" * 16, 1, A_SITE, 5 << 16),
    ]
    source = _Source(items)
    source.raw = source.raw[:-3]
    with pytest.raises(WireError, match="truncated"):
        trio.run(read_endpoint, source, "A")  # type: ignore[arg-type]
