"""Bucket CORS mutations, applied inside the committer's batch transaction
(the contract of ``ops.py``: each ``apply_*`` runs under its own SAVEPOINT,
raising ``S3Error`` rolls back only that mutation, nothing here touches
files).

Rules this file keeps:
- A configuration is parsed again here before it is stored, whoever sent
  it (``seglake/protocol/bucket_cors.py``), and stored as the canonical XML
  of what was parsed, so ``meta.db`` only holds configurations the frontends
  can match against. The bucket row change reaches the bucket record through
  the record journal's triggers, so ``rebuild-index`` restores it; a deleted
  bucket's row, configuration included, is gone with it.
- Frontends read ``buckets.cors`` on each request that carries an
  ``Origin``, so a committed change applies from the next such request on.
"""

from __future__ import annotations

from typing import Final

import apsw

from seglake.ipc.messages import BucketCorsSet, SetBucketCors
from seglake.protocol.bucket_cors import cors_xml, parse_cors
from seglake.writer.ops import BatchContext, Mutations, bucket_versioning


def apply_set_bucket_cors(
    conn: apsw.Connection, ctx: BatchContext, a: SetBucketCors
) -> BucketCorsSet:
    """``configuration`` None deletes it."""
    bucket_versioning(conn, a.bucket)  # NoSuchBucket
    stored = None
    if a.configuration is not None:
        stored = cors_xml(parse_cors(a.configuration.encode())).decode()
    conn.execute("UPDATE buckets SET cors = ? WHERE name = ?", (stored, a.bucket))
    return BucketCorsSet(bucket=a.bucket)


APPLY: Final[Mutations] = {SetBucketCors: apply_set_bucket_cors}
