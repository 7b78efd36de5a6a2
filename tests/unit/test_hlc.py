"""The hybrid logical clock (seglake/protocol/hlc.py) with an injected wall clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.protocol import hlc
from seglake.protocol.hlc import Hlc, pack


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_pack_and_parts() -> None:
    v = pack(1_700_000_000_123, 7)
    assert (hlc.physical_ms(v), hlc.logical(v)) == (1_700_000_000_123, 7)
    assert hlc.from_ns(1_700_000_000_123_456_789) == pack(1_700_000_000_123, 0)
    with pytest.raises(ValueError):
        pack(1, 1 << 16)
    with pytest.raises(ValueError):
        pack(-1, 0)


def test_tick_follows_the_wall_clock() -> None:
    wall = Wall(1000)
    c = Hlc(wall)
    assert c.tick() == pack(1000, 0)
    assert c.tick() == pack(1000, 1)
    wall.ms = 1005
    assert c.tick() == pack(1005, 0)


def test_clock_going_back_keeps_counting() -> None:
    wall = Wall(5000)
    c = Hlc(wall)
    first = c.tick()
    wall.ms = 4000  # NTP step back
    later = [c.tick() for _ in range(3)]
    assert later == [pack(5000, 1), pack(5000, 2), pack(5000, 3)]
    assert first < later[0]
    wall.ms = 5001
    assert c.tick() == pack(5001, 0)


def test_logical_overflow_moves_to_the_next_ms() -> None:
    wall = Wall(10)
    c = Hlc(wall, last=pack(10, 0xFFFE))
    assert c.tick() == pack(10, 0xFFFF)
    assert c.tick() == pack(11, 0)
    assert c.tick() == pack(11, 1)


def test_start_is_max_of_persisted_and_now() -> None:
    assert Hlc(Wall(100), last=pack(200, 5)).start() == pack(200, 5)
    assert Hlc(Wall(300), last=pack(200, 5)).start() == pack(300, 0)
    c = Hlc(Wall(100), last=pack(200, 5))
    c.start()
    assert c.tick() == pack(200, 6)  # restart with the clock behind: never back
    with pytest.raises(ValueError):
        Hlc(Wall(0), last=-1)


def test_observe_remote_ahead() -> None:
    c = Hlc(Wall(1000))
    c.tick()
    c.observe(pack(9000, 3))  # a remote with a fast clock
    assert c.tick() == pack(9000, 4)
    c.observe(pack(10, 0))  # an old remote stamp changes nothing
    assert c.tick() == pack(9000, 5)
    with pytest.raises(ValueError):
        c.observe(1 << 63)


def test_stamp_key_goes_above_prev() -> None:
    wall = Wall(1000)
    c = Hlc(wall)
    assert c.stamp_key(None) == pack(1000, 0)
    assert c.stamp_key(pack(500, 0)) == pack(1000, 1)
    # the key's current version is stamped ahead (its origin's clock was fast)
    s = c.stamp_key(pack(2000, 0xFFFF))
    assert s == pack(2001, 0)
    assert c.tick() > s  # and the clock stays above it


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 10_000),
            st.integers(0, pack(20_000, 0xFFFF)),
        ),
        max_size=60,
    )
)
def test_model_stamps_strictly_increase(ops: list[tuple[int, int, int]]) -> None:
    """Whatever the wall clock does and whatever is observed, every issued
    stamp is above every earlier stamp, observed value and key prev."""
    wall = Wall(0)
    c = Hlc(wall)
    high = -1
    for kind, ms, other in ops:
        wall.ms = ms
        if kind == 0:
            s = c.tick()
        elif kind == 1:
            c.observe(other)
            high = max(high, other)
            continue
        elif kind == 2:
            s = c.stamp_key(other)
            assert s > other
        else:
            s = c.stamp_key(None)
        assert s > high
        assert hlc.physical_ms(s) >= ms
        high = s
