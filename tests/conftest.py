"""Suite-wide settings.

Hypothesis's per-example deadline (200 ms by default) measures wall time; on
a shared 2-core CI machine a busy moment can fail a correct example. Every
property test is bounded by its example count instead.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("seglake", deadline=None)
settings.load_profile("seglake")
