"""Named failpoints for fault tests (off unless ``SEGLAKE_FAILPOINTS`` is set).

``SEGLAKE_FAILPOINTS="name=action[@n][:marker],..."``:
- ``action``: ``eio`` (raise OSError EIO), ``enospc`` (raise OSError ENOSPC)
  or ``kill`` (SIGKILL this process on the spot);
- ``@n``: fire on the n-th hit of that site in this process (default 1);
- ``:marker``: fire only if this file does not exist, and create it when
  firing, so a failpoint fires once even across a restarted process.

With the variable unset, ``hit()`` is one dictionary lookup on an empty
dict: cheap enough to stay in production code paths.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass


@dataclass
class _Armed:
    action: str
    at: int
    marker: str | None
    hits: int = 0


def _parse(spec: str) -> dict[str, _Armed]:
    armed: dict[str, _Armed] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, rest = item.partition("=")
        rest, _, marker = rest.partition(":")
        action, _, at = rest.partition("@")
        if action not in ("eio", "enospc", "kill"):
            raise ValueError(f"failpoint {name!r}: unknown action {action!r}")
        armed[name.strip()] = _Armed(action, int(at or 1), marker or None)
    return armed


_ARMED = _parse(os.environ.get("SEGLAKE_FAILPOINTS", ""))


def hit(name: str) -> None:
    fp = _ARMED.get(name)
    if fp is None:
        return
    fp.hits += 1
    if fp.hits != fp.at:
        return
    if fp.marker is not None:
        try:
            fd = os.open(fp.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        os.close(fd)
    if fp.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    code = errno.EIO if fp.action == "eio" else errno.ENOSPC
    raise OSError(code, f"{os.strerror(code)} (failpoint {name})")
