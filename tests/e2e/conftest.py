"""Fixtures for the end-to-end suite: the real multi-process server on loopback.

One server is shared by the whole session for the ordinary read/write tests;
a test that needs its own server (other flags, a seed-style command line, a
crash) starts one itself and tears it down the same way. Every server is
stopped by pid, whatever happens to the tests.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import SeglakeServer, server_fixture

_bucket_counter = itertools.count()


# The server most tests share: two frontends, default flags.
server = server_fixture(frontends=2, scope="session")


@pytest.fixture(scope="session")
def s3(server: SeglakeServer) -> Any:
    return server.s3()


def bucket_name(hint: str) -> str:
    """A valid, session-unique bucket name (3–63 chars, lowercase) from a hint."""
    n = next(_bucket_counter)
    slug = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:30].strip("-") or "b"
    digest = hashlib.sha1(hint.encode()).hexdigest()[:6]
    name = f"t{n:04d}-{slug}-{digest}"
    assert 3 <= len(name) <= 63
    return name


@pytest.fixture
def make_bucket(request: pytest.FixtureRequest, s3: Any) -> Callable[..., str]:
    """Create a fresh bucket named after the calling test; returns its name."""

    def make(suffix: str = "") -> str:
        name = bucket_name(f"{request.node.name}-{suffix}" if suffix else request.node.name)
        s3.create_bucket(Bucket=name)
        return name

    return make


@pytest.fixture
def bucket(make_bucket: Callable[..., str]) -> str:
    return make_bucket()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source seeded from the test id, so every run sends the same bytes."""
    seed = int.from_bytes(hashlib.sha256(request.node.nodeid.encode()).digest()[:8], "big")
    return random.Random(seed)
