"""Named failpoints for fault tests (off unless ``SEGLAKE_FAILPOINTS`` is set).

``SEGLAKE_FAILPOINTS="name=action[@n][:marker],..."``:
- ``action``: ``eio`` (raise OSError EIO), ``enospc`` (raise OSError ENOSPC)
  or ``kill`` (SIGKILL this process on the spot);
- ``@n``: fire on the n-th hit of that site in this process (default 1);
- ``:marker``: fire only if this file does not exist, and create it when
  firing, so a failpoint fires once even across a restarted process.

With the variable unset, ``hit()`` is one dictionary lookup on an empty
dict: cheap enough to stay in production code paths.

``SEGLAKE_TEST_MODE=1`` enables test-only settings (``--test-clock-offset-ms``:
``test_mode()``); unset in production.

``SEGLAKE_TEST_CLOCK_OFFSET_FILE=path``: the object-lock clock's tests move
the writer's and frontends' wall clock by the integer milliseconds the file
holds (``clock_offset_ms``); unset, the offset is 0 and no file is read.
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
_CLOCK_FILE = os.environ.get("SEGLAKE_TEST_CLOCK_OFFSET_FILE") or None


def test_mode() -> bool:
    return os.environ.get("SEGLAKE_TEST_MODE") == "1"


def clock_offset_ms() -> int:
    """The test clock offset (0 in production: the variable is unset)."""
    if _CLOCK_FILE is None:
        return 0
    try:
        with open(_CLOCK_FILE, encoding="ascii") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


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
