"""What every handler family (objects, buckets, multipart, ...) is built from.

A family is one class per module holding the handler methods of related
endpoints; which method serves which endpoint is said by the endpoint table
(``seglake/protocol/endpoints.py``), not by the family.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend.access import AccessView
from seglake.frontend.http import Request
from seglake.frontend.writer_client import WriterClient
from seglake.meta.reads import BucketRow, MetaReader

Handler = Callable[[Request], Awaitable[None]]


class Family(Protocol):
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None: ...


class FamilyBase:
    """What most families hold, and the "bucket must exist" check they share."""

    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        self.cfg = cfg
        self.reader = reader
        self.writer = writer
        # Owners, ACLs and canonical ids, as listings and ACL calls show them.
        self.access = AccessView(reader.conn, cfg.access_key)

    def require_bucket(self, name: str) -> BucketRow:
        """The bucket ``name``, or ``NoSuchBucket`` if there is none."""
        bucket = self.reader.bucket(name)
        if bucket is None:
            raise S3Error("NoSuchBucket", resource=name, fields={"BucketName": name})
        return bucket
