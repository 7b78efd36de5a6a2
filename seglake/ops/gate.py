"""The gate in front of every destructive CLI mode (gc-run, gc-rewrite,
rebuild-index, mpu-gc-run, db-reindex, buckets delete, ...).

Rules this file keeps (SPEC §7, the quiesce protocol of
``seglake/maintenance/main.py``):
- A live server is one whose admin socket answers. While one runs, a
  destructive mode proceeds only if the writer reports the maintenance state
  ``quiesced`` or the operator confirmed with ``--yes`` (``-yes``).
- A server that holds the data-dir lock but does not answer (starting,
  stopping, hung) is never bypassed, not even with ``--yes``: nobody could
  say what it is doing to the files.
- With no server, a command that works on the files itself does so under
  ``offline_lock`` (``seglake/locks.py``): the supervisor's data-dir lock and
  the writer's lock, both taken without waiting, so no server or orphaned
  writer can start (or still be running) while it changes the files. Writer
  mutations then run in the embedded writer (``seglake/writer/embedded.py``).
"""

from __future__ import annotations

import trio

from seglake.config import Config
from seglake.locks import DataDirBusy, lock_held
from seglake.locks import offline_lock as offline_lock  # re-exported: the gate's caller takes it
from seglake.meta.maintenance_state import QUIESCED
from seglake.ops.admin_client import AdminRefused, AdminUnavailable, admin_call

# The gate's refusals and the offline lock's are one condition for callers:
# the destructive mode must not run now; the message says what to do.
GateRefused = DataDirBusy


def live_state(cfg: Config) -> str | None:
    """The live server's maintenance state, or None when no server answers.

    Raises ``GateRefused`` when a server answers but refuses us (bad token).
    """
    try:
        doc = trio.run(admin_call, cfg, "maintenance", {"action": "status"})
    except AdminRefused as exc:
        raise GateRefused(f"the server on {cfg.root} refused the state query: {exc}") from None
    except AdminUnavailable:
        return None
    state = doc.get("state") if isinstance(doc, dict) else None
    return str(state) if state is not None else "unknown"


def require_quiesced_or_yes(cfg: Config, yes: bool, mode: str) -> None:
    """Refuse ``mode`` on a live server that is not quiesced, unless ``yes``.

    Returns normally when the mode may run: either a live server is quiesced
    (or the operator passed ``--yes``), or no server runs at all (then the
    caller works offline under ``offline_lock``).
    """
    state = live_state(cfg)
    if state is None:
        if lock_held(cfg.lock_path):
            raise GateRefused(
                f"{mode}: a Seglake server holds the lock on {cfg.root} but its admin socket "
                "does not answer (starting, stopping or hung); wait for it or stop it first"
            )
        return
    if state == QUIESCED or yes:
        return
    raise GateRefused(
        f"{mode} is destructive and the server on {cfg.root} is live with maintenance state "
        f"{state!r}; run `seglake maintenance enable` (seed: `-mode maintenance "
        "-maintenance-action enable`) and wait for 'quiesced', or pass --yes (-yes) to "
        "run it anyway"
    )
