"""The last-writer-wins rule (seglake/protocol/lww.py): table cases, then a
model of 2–3 sites that write one bucket concurrently and exchange their
entries in any order, with duplicates. Every site must end in the same
state, and no DELETED may ever be undone."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seglake.protocol import lww
from seglake.protocol.lww import ACTIVE, CONFLICT, DAMAGED, DELETED, Row, Stamp


def test_newest_active_row_is_current() -> None:
    rows = [Row("a", 1, "s1", None), Row("b", 5, "s1", (1, "s1")), Row("c", 3, "s2", (1, "s1"))]
    v = lww.decide_key(rows)
    # b and c share prev from different sites: c (older) loses.
    assert v.current == "b"
    assert dict(v.states) == {"a": ACTIVE, "b": ACTIVE, "c": CONFLICT}


def test_same_site_same_prev_is_not_a_conflict() -> None:
    rows = [Row("a", 1, "s1", None), Row("b", 2, "s1", None)]
    v = lww.decide_key(rows)
    assert v.current == "b" and set(v.states.values()) == {ACTIVE}


def test_deleted_is_absorbing_and_still_a_sibling() -> None:
    rows = [Row("a", 2, "s1", None, DELETED), Row("b", 1, "s2", None)]
    v = lww.decide_key(rows)
    # a was the winner; deleting it does not revive its sibling.
    assert dict(v.states) == {"a": DELETED, "b": CONFLICT}
    assert v.current is None


def test_delete_marker_can_be_current_and_damaged_stays_damaged() -> None:
    rows = [Row("a", 1, "s1", None, DAMAGED), Row("m", 2, "s1", (1, "s1"), delete_marker=True)]
    v = lww.decide_key(rows)
    assert v.current == "m" and v.states["a"] == DAMAGED
    rows = [Row("a", 1, "s1", None, DAMAGED), Row("b", 2, "s2", None)]
    v = lww.decide_key(rows)
    assert v.current == "b" and v.states["a"] == DAMAGED


def test_ties_on_hlc_break_by_site() -> None:
    rows = [Row("a", 7, "s1", None), Row("b", 7, "s2", None)]
    v = lww.decide_key(rows)
    assert v.current == "b" and v.states["a"] == CONFLICT


def test_registers_and_gone() -> None:
    assert lww.newer((2, "a"), None) and lww.newer((2, "b"), (2, "a"))
    assert not lww.newer((2, "a"), (2, "a"))
    assert lww.below_gone((1, "z"), (2, "a")) and not lww.below_gone((2, "a"), (2, "a"))
    assert not lww.below_gone((1, "a"), None)
    assert not lww.bucket_exists([(1, "a")], [], (2, "a"))
    assert lww.bucket_exists([(1, "a")], [(3, "a")], (2, "a"))
    assert lww.bucket_exists([(3, "a")], [], (2, "a"))
    assert not lww.bucket_exists([], [], None)


# ---- the model ---------------------------------------------------------------

KEYS = ("k0", "k1", "k2")
FIELDS = ("created_ns", "versioning", "policy")
# Deleting the bucket is rarer than writing in it, as in life.
WHAT = ("put", "put", "marker", "delete", "field", "gone", "deliver", "deliver", "deliver")


@dataclass(frozen=True)
class Ent:
    op: str  # version | state | bucket | gone
    stamp: Stamp
    uid: str = ""
    key: str = ""
    prev: Stamp | None = None
    marker: bool = False
    field: str = ""
    value: int = 0


@dataclass
class Site:
    name: str
    clock: int = 0
    rows: dict[str, Row] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # uid -> key
    deleted: set[str] = field(default_factory=set)
    registers: dict[str, tuple[Stamp, int]] = field(default_factory=dict)
    gone: Stamp | None = None
    seen: set[Ent] = field(default_factory=set)

    def tick(self) -> Stamp:
        self.clock += 1
        return (self.clock, self.name)

    def exists(self) -> bool:
        return lww.bucket_exists(
            (s for s, _ in self.registers.values()),
            (r.stamp for r in self.rows.values()),
            self.gone,
        )

    def current(self, key: str) -> Row | None:
        verdict = lww.decide_key(r for r in self.rows.values() if self.keys[r.uid] == key)
        return None if verdict.current is None else self.rows[verdict.current]

    def _recompute(self, key: str) -> None:
        mine = [r for r in self.rows.values() if self.keys[r.uid] == key]
        verdict = lww.decide_key(mine)
        for r in mine:
            new = verdict.states[r.uid]
            if new != r.state:
                self.rows[r.uid] = Row(r.uid, r.hlc, r.site, r.prev, new, r.delete_marker)

    def apply(self, e: Ent) -> None:
        self.clock = max(self.clock, e.stamp[0])  # observe
        if e in self.seen:
            return  # the oplog identity: a duplicate is skipped
        self.seen.add(e)
        if e.op == "version":
            if lww.below_gone(e.stamp, self.gone):
                return
            state = DELETED if e.uid in self.deleted else ACTIVE
            self.rows[e.uid] = Row(e.uid, *e.stamp, e.prev, state, e.marker)
            self.keys[e.uid] = e.key
            self._recompute(e.key)
        elif e.op == "state":
            self.deleted.add(e.uid)
            r = self.rows.get(e.uid)
            if r is not None:
                self.rows[e.uid] = Row(r.uid, r.hlc, r.site, r.prev, DELETED, r.delete_marker)
                self._recompute(e.key)
        elif e.op == "bucket":
            if lww.below_gone(e.stamp, self.gone):
                return
            old = self.registers.get(e.field)
            if lww.newer(e.stamp, None if old is None else old[0]):
                self.registers[e.field] = (e.stamp, e.value)
        elif e.op == "gone":
            if self.gone is None or e.stamp > self.gone:
                self.gone = e.stamp
            self.registers = {
                f: v for f, v in self.registers.items() if not lww.below_gone(v[0], self.gone)
            }
            dropped = {u for u, r in self.rows.items() if lww.below_gone(r.stamp, self.gone)}
            for u in dropped:
                del self.rows[u]
            for key in {self.keys[u] for u in dropped}:
                self._recompute(key)

    def snapshot(self) -> Any:
        return (
            sorted((u, r.state) for u, r in self.rows.items()),
            sorted((k, None if (c := self.current(k)) is None else c.uid) for k in KEYS),
            sorted(self.registers.items()),
            self.gone,
            self.exists(),
        )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip
@given(st.integers(min_value=2, max_value=3), st.data())
def test_sites_converge_whatever_the_delivery(n_sites: int, data: st.DataObject) -> None:
    sites = [Site(f"s{i}") for i in range(n_sites)]
    log: list[Ent] = []
    uids = itertools.count()
    ever_deleted: list[set[str]] = [set() for _ in sites]

    def check_absorbing(i: int) -> None:
        s = sites[i]
        for u in ever_deleted[i]:
            r = s.rows.get(u)
            assert r is None or r.state == DELETED, f"{s.name} undid DELETED of {u}"
            assert u in s.deleted
        ever_deleted[i] |= {u for u, r in s.rows.items() if r.state == DELETED}

    def local(i: int, e: Ent) -> None:
        log.append(e)
        sites[i].apply(e)
        check_absorbing(i)

    for _ in range(data.draw(st.integers(min_value=1, max_value=30), label="steps")):
        i = data.draw(st.integers(0, n_sites - 1), label="site")
        s = sites[i]
        what = data.draw(st.sampled_from(WHAT))
        if what in ("put", "marker") and s.exists():
            key = data.draw(st.sampled_from(KEYS))
            cur = s.current(key)
            uid = f"u{next(uids)}"
            prev = None if cur is None else cur.stamp
            local(i, Ent("version", s.tick(), uid, key, prev, what == "marker"))
        elif what == "delete":
            live = sorted(u for u, r in s.rows.items() if r.state != DELETED)
            if live:
                uid = data.draw(st.sampled_from(live))
                local(i, Ent("state", s.tick(), uid, s.keys[uid]))
        elif what == "field":
            f = data.draw(st.sampled_from(FIELDS))
            local(i, Ent("bucket", s.tick(), field=f, value=data.draw(st.integers(0, 3))))
        elif what == "gone" and s.exists():
            local(i, Ent("gone", s.tick()))
        elif what == "deliver" and log:
            e = data.draw(st.sampled_from(log))
            s.apply(e)
            check_absorbing(i)
    # Everyone gets everything, each site in its own order, some twice.
    for i, s in enumerate(sites):
        order = data.draw(st.permutations(log + log[: len(log) // 3]), label=f"order {i}")
        for e in order:
            s.apply(e)
            check_absorbing(i)
    first = sites[0].snapshot()
    for s in sites[1:]:
        assert s.snapshot() == first
