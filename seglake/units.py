"""Byte units, for constants that carry their unit (``32 * KiB``).

Imports nothing, so every layer (format codecs included) may use it.
"""

from __future__ import annotations

from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
