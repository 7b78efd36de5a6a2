"""Every operation family the frontend serves.

Each family maps the router's operation names to its handlers; an operation
the router knows but no family handles is answered 501 NotImplemented.
"""

from __future__ import annotations

from typing import Final

from seglake.frontend.buckets import BucketHandlers
from seglake.frontend.family import Family
from seglake.frontend.objects import ObjectHandlers

FAMILIES: Final[list[type[Family]]] = [
    BucketHandlers,
    ObjectHandlers,
]
