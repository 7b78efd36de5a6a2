"""Every operation family the frontend serves.

Each family maps the router's operation names to its handlers; an operation
the router knows but no family handles is answered 501 NotImplemented.
"""

from __future__ import annotations

from typing import Final

from seglake.frontend.bucket_policy import BucketPolicyHandlers
from seglake.frontend.buckets import BucketHandlers
from seglake.frontend.copy import CopyHandlers
from seglake.frontend.family import Family
from seglake.frontend.multidelete import MultiDeleteHandlers
from seglake.frontend.multipart import MultipartHandlers
from seglake.frontend.objects import ObjectHandlers
from seglake.frontend.postobject import PostObjectHandlers
from seglake.frontend.versioning import VersioningHandlers

FAMILIES: Final[list[type[Family]]] = [
    BucketHandlers,
    ObjectHandlers,
    CopyHandlers,
    MultiDeleteHandlers,
    VersioningHandlers,
    MultipartHandlers,
    PostObjectHandlers,
    BucketPolicyHandlers,
]
