"""The start-up check that refuses Hypercorn and h11 versions the frontend's
patches were not tested on: its decision, case by case, and that
``pyproject.toml`` declares the same ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from seglake.frontend import patched_versions
from seglake.frontend.patched_versions import TESTED, parse_release, refusal

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.mark.parametrize(
    "text,release",
    [
        ("0.18.0", (0, 18, 0)),
        ("0.18", (0, 18)),
        ("0.19.0rc1", (0, 19, 0)),
        ("0.16.0.post1", (0, 16, 0)),
        (" 1.2.3 ", (1, 2, 3)),
        ("", None),
        ("dev", None),
    ],
)
def test_parse_release(text: str, release: tuple[int, ...] | None) -> None:
    assert parse_release(text) == release


@pytest.mark.parametrize(
    "package,version,accepted",
    [
        ("hypercorn", "0.18.0", True),
        ("hypercorn", "0.18.7", True),
        ("hypercorn", "0.17.3", False),
        ("hypercorn", "0.19.0", False),
        # A pre-release of the next minor is that minor, untested.
        ("hypercorn", "0.19.0a1", False),
        ("hypercorn", "1.0", False),
        ("hypercorn", "garbage", False),
        ("h11", "0.16.0", True),
        ("h11", "0.15.0", False),
        ("h11", "0.17.0", False),
    ],
)
def test_refusal_decision(package: str, version: str, accepted: bool) -> None:
    reason = refusal(package, version)
    if accepted:
        assert reason is None
        return
    assert reason is not None
    # The message names the package, the installed version and the tested range.
    low, high = TESTED[package]
    tested_range = f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
    assert f"{package} {version}" in reason
    assert f"{package}{tested_range}" in reason


def test_missing_package_refused() -> None:
    reason = refusal("h11", None)
    assert reason is not None and "h11 is not installed" in reason


def test_check_names_every_untested_package(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {"hypercorn": "0.99.0", "h11": "0.16.1"}
    monkeypatch.setattr(patched_versions, "installed_version", versions.get)
    with pytest.raises(patched_versions.UntestedVersion) as exc:
        patched_versions.check()
    assert "hypercorn 0.99.0" in str(exc.value) and "h11" not in str(exc.value)
    versions["h11"] = "0.17.0"
    with pytest.raises(patched_versions.UntestedVersion) as exc:
        patched_versions.check()
    assert "hypercorn 0.99.0" in str(exc.value) and "h11 0.17.0" in str(exc.value)
    versions.update(hypercorn="0.18.2", h11="0.16.1")
    patched_versions.check()


def test_installed_versions_pass() -> None:
    """The environment the tests run in is a tested one (or every e2e test fails)."""
    patched_versions.check()


def test_pyproject_declares_the_tested_ranges() -> None:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for package, (low, high) in TESTED.items():
        spec = f"{package}>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        declared = [d for d in deps if re.match(rf"{package}\b", d)]
        assert declared == [spec], (package, declared)
