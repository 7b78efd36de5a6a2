"""Maintenance mode: the writer's quiesce state machine (SPEC §7).

Quiesce protocol, the rules this file keeps:

- States ``off → entering → quiesced → exiting → off``. Only the writer
  owns the state; maintenance and the CLI ask for a target (``quiesced`` or
  ``off``) and poll.
- While the state is anything but ``off`` every NEW data request (``append``
  and every mutation except the ``INTERNAL`` ones of ``maintenance_ops``) is
  refused with ``MaintenanceMode`` (503, clients retry) *before* it touches a
  segment or the queue. Requests already admitted run to the end: they are
  committed or refused by the committer, never dropped.
- ``entering`` becomes ``quiesced`` only when no admitted data request is
  left in the writer (appends and mutations alike). A PUT whose body is still
  streaming has its next ``append`` or its final ``put`` refused, so it
  fails cleanly and nothing of it is visible.
- Every state change is persisted through the committer (mutation
  ``set_maintenance``), so it is durable like any write, and survives
  restarts: a writer starting in ``entering`` or ``quiesced`` comes back
  ``quiesced`` (nothing is in flight after a restart), one starting in
  ``exiting`` comes back ``off``.
- Reads are never gated: frontends read SQLite and segments directly.
- The writer's own recovery and the transitions themselves are not data
  requests and are never refused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import apsw
import trio

from seglake.errors import S3Error
from seglake.meta.maintenance_state import (
    ENTERING,
    EXITING,
    MAINTENANCE_SETTING,
    OFF,
    QUIESCED,
    read_state,
)
from seglake.meta.schema import set_setting
from seglake.writer.maintenance_ops import INTERNAL
from seglake.writer.mutations import MUTATION_NAMES

log = logging.getLogger("seglake.writer.quiesce")

TARGETS: Final = (QUIESCED, OFF)
# Enough to see the last few enable/disable cycles; the row stays small.
HISTORY_LEN: Final = 20
# What a restart turns each persisted state into.
ON_RESTART: Final = {OFF: OFF, ENTERING: QUIESCED, QUIESCED: QUIESCED, EXITING: OFF}

Persist = Callable[[str], Awaitable[None]]


def gated(name: str) -> bool:
    """Is ``name`` a data request that maintenance mode refuses?"""
    return name == "append" or (name in MUTATION_NAMES and name not in INTERNAL)


class Quiesce:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.state: str = str(doc["state"])
        self.since: float = float(doc.get("since") or 0.0)
        self.history: list[dict[str, Any]] = list(doc["history"])[-HISTORY_LEN:]
        self.data_in_flight = 0
        self._idle = trio.Event()
        self._idle.set()
        self._generation = 0

    @classmethod
    def load(cls, conn: apsw.Connection) -> Quiesce:
        """Read the state at start-up (before the committer runs) and apply
        the restart rule, persisting the result directly."""
        q = cls(read_state(conn))
        after = ON_RESTART[q.state]
        if after != q.state:
            q._move(after, "writer restart")
            with conn:
                set_setting(conn, MAINTENANCE_SETTING, q.doc())
        return q

    def doc(self) -> str:
        return json.dumps(
            {"state": self.state, "since": self.since, "history": self.history}, sort_keys=True
        )

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since,
            "write_in_flight": self.data_in_flight,
            "history": list(self.history),
        }

    def _move(self, to: str, reason: str) -> None:
        now = time.time()
        self.history.append({"from": self.state, "to": to, "at": now, "reason": reason})
        del self.history[:-HISTORY_LEN]
        log.info("maintenance state %s -> %s (%s)", self.state, to, reason)
        self.state, self.since = to, now

    # ---- the gate ------------------------------------------------------
    @contextmanager
    def admit(self, name: str) -> Iterator[None]:
        """Refuse ``name`` if it is a data request and writes are quiesced;
        otherwise count it as in flight until it is answered."""
        if not gated(name):
            yield
            return
        if self.state != OFF:
            raise S3Error(
                "MaintenanceMode",
                message=f"the server is in maintenance mode ({self.state}); retry later",
            )
        self.data_in_flight += 1
        self._idle = trio.Event() if self.data_in_flight == 1 else self._idle
        try:
            yield
        finally:
            self.data_in_flight -= 1
            if self.data_in_flight == 0:
                self._idle.set()

    # ---- transitions ---------------------------------------------------
    async def set_target(
        self, target: str, persist: Persist, nursery: trio.Nursery
    ) -> dict[str, Any]:
        """Start moving towards ``target``; returns at once with the status
        (``entering`` finishes in the background once writes drained)."""
        if target not in TARGETS:
            raise S3Error("InvalidArgument", message=f"maintenance target must be one of {TARGETS}")
        if target == QUIESCED:
            if self.state in (ENTERING, QUIESCED):
                return self.status()
            self._generation += 1
            self._move(ENTERING, "enable requested")
            await persist(self.doc())
            nursery.start_soon(self._finish_entering, self._generation, persist)
            return self.status()
        if self.state == OFF:
            return self.status()
        self._generation += 1  # an unfinished entering stops waiting
        self._move(EXITING, "disable requested")
        await persist(self.doc())
        self._move(OFF, "disable done")
        await persist(self.doc())
        return self.status()

    async def _finish_entering(self, generation: int, persist: Persist) -> None:
        await self._idle.wait()
        if generation != self._generation or self.state != ENTERING:
            return
        self._move(QUIESCED, "writes drained")
        try:
            await persist(self.doc())
        except S3Error as exc:
            # The state holds in memory (writes stay refused); a restart
            # turns the persisted ``entering`` into ``quiesced`` anyway.
            log.error("could not persist the quiesced state: %s", exc)
