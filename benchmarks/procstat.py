"""Cheap readings from /proc: a process tree's RSS and CPU time, machine CPU.

Everything here reads a handful of small text files and never blocks on
anything but the kernel, so the load generator can call it every 100 ms while
it is driving traffic without disturbing the figures it measures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the ``(comm)`` field, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses; it ends at the last ')'.
    return raw[raw.rfind(b")") + 2 :].decode("ascii").split()


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it, by a walk of ppid links."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None:
            continue
        # fields[0] is the state, fields[1] the parent pid.
        children.setdefault(int(fields[1]), []).append(int(name))
    found = {root}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of VmRSS over ``pids`` (processes that have gone count as 0)."""
    total_kib = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total_kib += int(line.split()[1])
                        break
        except OSError:
            continue
    return total_kib * 1024


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds consumed so far by ``pids``."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime and stime are fields 14 and 15 of stat, 12 and 13 here.
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS_PER_S


@dataclass(frozen=True)
class MachineCpu:
    busy_s: float
    total_s: float


def machine_cpu() -> MachineCpu:
    """Busy and total CPU seconds over all cores since boot (from /proc/stat)."""
    with open("/proc/stat", "rb") as f:
        first = f.readline().split()
    values = [int(v) for v in first[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice;
    # guest time is already counted in user, so only the first 8 add up.
    total = sum(values[:8])
    idle = values[3] + values[4]
    return MachineCpu(busy_s=(total - idle) / CLOCK_TICKS_PER_S, total_s=total / CLOCK_TICKS_PER_S)


def all_cpu_seconds() -> dict[int, float]:
    """CPU seconds of every live process, by pid."""
    out: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None:
                out[int(name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    return out


def command_line(pid: int, limit: int = 70) -> str:
    """A short human-readable command line for ``pid`` ("?" if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    # Drop the interpreter's path: "python -m pytest ..." reads better.
    args[0] = os.path.basename(args[0])
    text = " ".join(a.decode(errors="replace") for a in args)
    return text if len(text) <= limit else text[: limit - 1] + "…"
