"""Hypothesis settings the fuzz targets share (``test_fuzz_*.py``).

``SEGLAKE_FUZZ_EXAMPLES`` sets the examples per target: ``DEFAULT_EXAMPLES``
is small enough for ``make test``; ``make fuzz`` runs many more.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 300
EXAMPLES = int(os.environ.get("SEGLAKE_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
