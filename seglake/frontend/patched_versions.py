"""The Hypercorn and h11 versions whose private methods Seglake patches.

``h11_fixes`` and ``hypercorn_tuning`` replace private methods of Hypercorn
(``H11Protocol._send_h11_event``, ``H11Protocol._create_stream``,
``TCPServer.__init__``, ``TCPServer._read_data``) and rely on how h11
represents a response (``Response.reason``, the 100-continue state). Nothing
in either project promises those stay the same from one release to the
next, and a silent change would not crash: it would answer ``100 Continue``
before authentication again, or lose a reason phrase, or a body.

So a frontend refuses to start with a version outside the range the patches
were tested on (``TESTED``), and says which package, which version and which
range. ``pyproject.toml`` declares the same bounds (a unit test compares
them). To move a bound: install the new version, run the e2e suite
(``test_expect_continue.py`` and ``test_streaming.py`` first), re-read the
patched methods against the new source, then change both places.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Final

Version = tuple[int, ...]

# package name → (lowest tested version, first untested version)
TESTED: Final[dict[str, tuple[Version, Version]]] = {
    "hypercorn": ((0, 18), (0, 19)),
    "h11": ((0, 16), (0, 17)),
}

_RELEASE = re.compile(r"\d+(?:\.\d+)*")


class UntestedVersion(RuntimeError):
    """A patched package is installed in a version the patches were not tested on."""


def parse_release(version: str) -> Version | None:
    """The numeric release part of ``version`` ("0.18.0rc1" → (0, 18, 0)); None if none."""
    found = _RELEASE.match(version.strip())
    if found is None:
        return None
    return tuple(int(part) for part in found.group().split("."))


def _dotted(version: Version) -> str:
    return ".".join(str(part) for part in version)


def refusal(package: str, installed: str | None) -> str | None:
    """Why ``package`` at version ``installed`` may not be patched; None when it may.

    ``installed`` is None when the package is not installed at all.
    """
    low, high = TESTED[package]
    tested = f">={_dotted(low)},<{_dotted(high)}"
    if installed is None:
        return f"{package} is not installed; Seglake's HTTP patches need {package}{tested}"
    release = parse_release(installed)
    if release is None or not low <= release < high:
        return (
            f"{package} {installed} is installed, but Seglake patches private methods of "
            f"{package} and was tested only with {package}{tested}; install a version in "
            "that range (see seglake/frontend/patched_versions.py to move the range)"
        )
    return None


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check() -> None:
    """Raise ``UntestedVersion`` naming every patched package outside its range."""
    problems = [
        problem
        for package in TESTED
        if (problem := refusal(package, installed_version(package))) is not None
    ]
    if problems:
        raise UntestedVersion("; ".join(problems))
