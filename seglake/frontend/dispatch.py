"""Endpoint → handler: the handler families, bound to the endpoint table.

Each endpoint of ``seglake/protocol/endpoints.py`` that Seglake implements
names its handler as ``"<family>.<method>"``; ``FAMILIES`` says which class
each family name is. An endpoint without a handler is answered 501
NotImplemented (``App._dispatch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from seglake.config import Config
from seglake.frontend.acl import AclHandlers
from seglake.frontend.bucket_cors import BucketCorsHandlers
from seglake.frontend.bucket_encryption import BucketEncryptionHandlers
from seglake.frontend.bucket_lifecycle import BucketLifecycleHandlers
from seglake.frontend.bucket_policy import BucketPolicyHandlers
from seglake.frontend.buckets import BucketHandlers
from seglake.frontend.conflicts import ConflictHandlers
from seglake.frontend.copy import CopyHandlers
from seglake.frontend.family_base import Family, Handler
from seglake.frontend.multidelete import MultiDeleteHandlers
from seglake.frontend.multipart import MultipartHandlers
from seglake.frontend.object_lock import ObjectLockHandlers
from seglake.frontend.objects import ObjectHandlers
from seglake.frontend.observe import ObserveHandlers
from seglake.frontend.postobject import PostObjectHandlers
from seglake.frontend.repl_snapshot import SnapshotHandlers
from seglake.frontend.replication import ReplicationHandlers
from seglake.frontend.tagging import TaggingHandlers
from seglake.frontend.versioning import VersioningHandlers
from seglake.frontend.writer_client import WriterClient
from seglake.meta.reads import MetaReader
from seglake.protocol.endpoints import ENDPOINTS, OWN_ENDPOINTS

# Family name (as the endpoint table writes it: the module's name) → class.
FAMILIES: Final[Mapping[str, type[Family]]] = {
    "buckets": BucketHandlers,
    "objects": ObjectHandlers,
    "copy": CopyHandlers,
    "multidelete": MultiDeleteHandlers,
    "versioning": VersioningHandlers,
    "multipart": MultipartHandlers,
    "postobject": PostObjectHandlers,
    "bucket_policy": BucketPolicyHandlers,
    "observe": ObserveHandlers,
    "bucket_lifecycle": BucketLifecycleHandlers,
    "bucket_cors": BucketCorsHandlers,
    "bucket_encryption": BucketEncryptionHandlers,
    "acl": AclHandlers,
    "object_lock": ObjectLockHandlers,
    "tagging": TaggingHandlers,
    "replication": ReplicationHandlers,
    "conflicts": ConflictHandlers,
    "repl_snapshot": SnapshotHandlers,
}


def split_handler(handler: str) -> tuple[str, str]:
    """``"objects.put_object"`` → ("objects", "put_object")."""
    family, _, method = handler.partition(".")
    return family, method


def bind_handlers(cfg: Config, reader: MetaReader, writer: WriterClient) -> dict[str, Handler]:
    """Operation name → bound handler method, for every endpoint that has a
    handler; one instance per family, shared by its endpoints. A handler the
    table names but no family has fails here, at start-up."""
    families = {name: cls(cfg, reader, writer) for name, cls in FAMILIES.items()}
    handlers: dict[str, Handler] = {}
    for endpoint in (*ENDPOINTS, *OWN_ENDPOINTS):
        if endpoint.handler is not None:
            family, method = split_handler(endpoint.handler)
            handlers[endpoint.name] = getattr(families[family], method)
    return handlers
