"""What the admin socket carries: the names of the writer mutations the
maintenance process relays for the operator CLI.

Both ends read this one list: the maintenance process refuses to relay any
other name, and the CLI (``seglake/ops/``) sends only these. The writer owns
what each name does (its mutation tables); ``tests/unit/test_admin_relay.py``
checks that every name here is one the writer serves, and that every key
and bucket-policy mutation of the writer is relayed.
"""

from __future__ import annotations

from typing import Final

# Results of CLI tools (fsck, scrub): they record what they found and never
# change object data.
RECORD_MUTATIONS: Final = frozenset({"record_op_run", "mark_damaged"})
# Key and bucket-policy management (``seglake keys``, ``seglake
# bucket-policy``): the writer owns every SQLite write.
KEY_ADMIN_MUTATIONS: Final = frozenset(
    {
        "key_create", "key_update", "key_delete", "key_allow_bucket", "key_disallow_bucket",
        "set_bucket_policy",
    }
)  # fmt: skip
# The toolbox modes' changes (``buckets``, ``mpu-gc-run``, ``db-reindex``);
# ``buckets delete NAME --force`` empties the bucket first with the same
# mutations a client's AbortMultipartUpload and DeleteObjects make.
TOOLBOX_MUTATIONS: Final = frozenset(
    {"create_bucket", "delete_bucket", "mpu_gc_abort", "db_reindex", "abort_upload",
     "delete_objects"}
)  # fmt: skip
# Segment GC steps (``seglake gc-*``); the writer re-checks liveness in each.
GC_RELAYED: Final = frozenset({"gc_delete_segments", "gc_rewrite_chunks"})

RELAYED_MUTATIONS: Final = RECORD_MUTATIONS | KEY_ADMIN_MUTATIONS | TOOLBOX_MUTATIONS | GC_RELAYED
