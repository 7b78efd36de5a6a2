"""Get/Put/DeleteBucketLifecycle(Configuration) (``?lifecycle``), and the
``x-amz-expiration`` header of objects a rule will expire.

Rules this module keeps:

* A configuration is parsed completely before it is stored
  (``seglake/protocol/lifecycle.py``: AWS's schema and error codes) and
  nothing changes when it is refused. The writer parses it once more and
  stores its canonical XML, which GetBucketLifecycleConfiguration hands back
  (``NoSuchLifecycleConfiguration`` when the bucket has none).
* As AWS requires, the PUT body carries Content-MD5 or an
  ``x-amz-checksum-*`` value (header or trailer); neither is
  ``InvalidRequest``, a mismatch ``BadDigest``. The body is integrity-checked
  like any upload and at most ``MAX_BODY_BYTES`` are read.
* Who may call these is decided by ``authz.py`` like every operation
  (actions ``s3:GetLifecycleConfiguration``, ``s3:PutLifecycleConfiguration``;
  AWS has no separate delete action).
* The rules are carried out by the maintenance process
  (``seglake/expiry/``), never by a request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from seglake.errors import S3Error
from seglake.frontend.body import configuration_body
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.ipc.messages import SetBucketLifecycle
from seglake.meta.reads import MetaReader
from seglake.meta.schema import scalar
from seglake.protocol.lifecycle import (
    MAX_BODY_BYTES,
    Configuration,
    expiration_header,
    parse_configuration,
)

# Parsed configurations by their stored text: a frontend serves many GETs of
# few buckets, and a bucket's text changes rarely.
CONFIGURATION_CACHE_ENTRIES = 256


@functools.lru_cache(maxsize=CONFIGURATION_CACHE_ENTRIES)
def _parsed(text: str) -> Configuration:
    return parse_configuration(text.encode())


def stored_lifecycle(reader: MetaReader, bucket: str) -> str | None:
    text = scalar(reader.conn, "SELECT lifecycle FROM buckets WHERE name = ?", (bucket,))
    return None if text is None else str(text)


def expiration(
    reader: MetaReader,
    bucket: str,
    key: str,
    size: int,
    created_ns: int,
    day_ns: int,
    tags: Mapping[str, str] | None = None,
) -> list[tuple[bytes, bytes]]:
    """``x-amz-expiration`` for the current version of ``key`` (``[]`` when no
    rule expires it); ``tags``: the version's tags, for rules that filter on them."""
    text = stored_lifecycle(reader, bucket)
    if text is None:
        return []
    try:
        cfg = _parsed(text)
    except S3Error:
        return []  # the writer stores only what parses; never fail a read on it
    value = expiration_header(cfg, key, size, tags or {}, created_ns, day_ns)
    return [] if value is None else [(b"x-amz-expiration", value.encode())]


class BucketLifecycleHandlers(FamilyBase):
    async def get_lifecycle(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        text = stored_lifecycle(self.reader, req.bucket)
        if text is None:
            raise S3Error(
                "NoSuchLifecycleConfiguration", resource=req.bucket,
                fields={"BucketName": req.bucket},
            )  # fmt: skip
        await req.xml(200, text.encode())

    async def put_lifecycle(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        body = await configuration_body(req, self.cfg, MAX_BODY_BYTES)
        parse_configuration(body)  # AWS's errors, before the writer is asked
        text = body.decode("utf-8")  # parsed above, so it is UTF-8
        await self.writer.call(SetBucketLifecycle(bucket=req.bucket, configuration=text))
        await req.respond(200)

    async def delete_lifecycle(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        await self.writer.call(SetBucketLifecycle(bucket=req.bucket, configuration=None))
        await req.respond(204)
