"""What the admin socket carries: the writer requests the maintenance
process relays for the operator CLI.

Both ends read these sets: the maintenance process refuses to relay any
other name (and validates the rest as their request types before the writer
sees them), and the CLI (``seglake/ops/``) sends only these. The sets are
built from the request types of ``messages.py``, so a name cannot be
misspelt here; the writer owns what each request does (its dispatch table).
``tests/unit/test_admin_relay.py`` checks that every name here is one the
writer serves, and that every key and bucket-policy mutation of the writer
is relayed.
"""

from __future__ import annotations

from typing import Any, Final

from seglake.ipc.messages import (
    AbortUpload,
    CreateBucket,
    DbReindex,
    DeleteBucket,
    DeleteObjects,
    GcDeleteSegments,
    GcRewriteChunks,
    KeyAllowBucket,
    KeyCreate,
    KeyDelete,
    KeyDisallowBucket,
    KeyUpdate,
    LifecycleExpire,
    MarkDamaged,
    MpuGcAbort,
    RecordOpRun,
    Request,
    RewrapKeks,
    SetBucketPolicy,
)


def _names(*types: type[Request[Any]]) -> frozenset[str]:
    return frozenset(t.name for t in types)


# Results of CLI tools (fsck, scrub): they record what they found and never
# change object data.
RECORD_MUTATIONS: Final = _names(RecordOpRun, MarkDamaged)
# Key and bucket-policy management (``seglake keys``, ``seglake
# bucket-policy``): the writer owns every SQLite write.
KEY_ADMIN_MUTATIONS: Final = _names(
    KeyCreate, KeyUpdate, KeyDelete, KeyAllowBucket, KeyDisallowBucket, SetBucketPolicy
)
# The toolbox modes' changes (``buckets``, ``mpu-gc-run``, ``db-reindex``);
# ``buckets delete NAME --force`` empties the bucket first with the same
# requests a client's AbortMultipartUpload and DeleteObjects make.
TOOLBOX_MUTATIONS: Final = _names(
    CreateBucket, DeleteBucket, MpuGcAbort, DbReindex, AbortUpload, DeleteObjects
)
# Segment GC steps (``seglake gc-*``); the writer re-checks liveness in each.
# Its two internal GC mutations (``gc_drop_segments``, ``gc_repoint``) are
# never relayed.
GC_RELAYED: Final = _names(GcDeleteSegments, GcRewriteChunks)
# ``seglake lifecycle-run`` against a live server: the same re-checked
# batches the maintenance process's schedule sends.
LIFECYCLE_RELAYED: Final = _names(LifecycleExpire)
# ``seglake sse rotate-master``: every KEK re-wrapped (never a key in clear).
SSE_RELAYED: Final = _names(RewrapKeks)

RELAYED_MUTATIONS: Final = (
    RECORD_MUTATIONS
    | KEY_ADMIN_MUTATIONS
    | TOOLBOX_MUTATIONS
    | GC_RELAYED
    | LIFECYCLE_RELAYED
    | SSE_RELAYED
)
