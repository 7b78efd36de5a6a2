"""Bucket versioning mutations, applied inside the committer's batch transaction.

Rules this file keeps (the contract of ``ops.py`` holds: each ``apply_*``
runs under its own SAVEPOINT, raising ``S3Error`` rolls back only that
mutation, nothing here touches files):
- A bucket's versioning state moves only between ``enabled`` and
  ``suspended`` through PutBucketVersioning. ``unversioned`` is a creation
  state: it may become ``enabled`` or ``suspended`` but is never re-entered,
  because versions written since then would lose their meaning.
- A bucket with Object Lock stays ``enabled``: suspending it is
  ``InvalidBucketState``, as AWS answers.
- Changing the state never touches a stored version: suspending keeps every
  version id, enabling keeps the null version. Only later writes differ.
"""

from __future__ import annotations

from typing import Final

import apsw

from seglake.errors import S3Error
from seglake.ipc.messages import SetVersioning, VersioningSet
from seglake.protocol import object_lock
from seglake.writer import lock_rules
from seglake.writer.ops import BatchContext, Mutations, bucket_versioning

# The states PutBucketVersioning may set (AWS's Status values, lowercased).
SETTABLE_STATES: Final = ("enabled", "suspended")


def apply_set_versioning(
    conn: apsw.Connection, ctx: BatchContext, a: SetVersioning
) -> VersioningSet:
    """PutBucketVersioning: the new status, and the one it replaced."""
    bucket, status = a.bucket, a.status
    if status not in SETTABLE_STATES:
        raise S3Error("IllegalVersioningConfigurationException")
    previous = bucket_versioning(conn, bucket)
    if status != "enabled" and lock_rules.bucket_lock_config(conn, bucket) is not None:
        raise S3Error("InvalidBucketState", message=object_lock.SUSPEND_MSG)
    if previous != status:
        conn.execute("UPDATE buckets SET versioning = ? WHERE name = ?", (status, bucket))
    return VersioningSet(previous=previous, status=status)


APPLY: Final[Mutations] = {
    SetVersioning: apply_set_versioning,
}
