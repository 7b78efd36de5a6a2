"""Every request the writer serves, and its reply, as one declared type each;
likewise the supervisor's control socket and the admin socket's typed
commands.

Rules this file keeps:
- A request is a frozen ``msgspec.Struct``; its wire name (the frame
  header's ``name``, see ``framing.py``) is its ``name`` class variable and
  its reply type is its ``Request[...]`` parameter. Each server's table
  (``WRITER``, ``SUPERVISOR``, ``ADMIN``) maps its names to types; ``REQUESTS``
  is the writer's. Nothing else on either side spells a request by hand.
- A name means one type per server only: the supervisor's ``stats`` and the
  admin socket's ``stats`` are different requests to different sockets.
- On the wire a message is the msgpack map of its fields (defaults left
  out), so the frame format and every other peer stay plain msgpack.
- Decoding validates: a field of the wrong type, a missing required field,
  an unknown field, an unknown name or bytes that are not msgpack raise
  ``MessageError`` before any handler runs; the server answers it as an
  error reply (``InternalError``, or ``NotImplemented`` for an unknown
  name), never with a crash.
- The writer checks *values* (a bucket exists, an access-key id is well
  formed, a limit is in range) where it applies them; the types here only
  promise shape.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, TypeVar

import msgspec

from seglake.errors import S3Error

R = TypeVar("R")

# Replies that are documents for people (status, quiesce state) rather than
# fields a caller reads: typed as a map, checked by their readers.
Doc = dict[str, Any]


class Reply(msgspec.Struct, frozen=True):
    """Base of structured replies: a msgpack map with every field, so an
    untyped reader (the CLI through the admin relay) sees them all."""


class Request(
    msgspec.Struct, Generic[R], frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Base of every writer request; ``R`` is the type of its reply."""

    name: ClassVar[str]


class Chunk(msgspec.Struct, frozen=True, array_like=True):
    """A stored chunk: ``[segment_id, offset, length, digest]`` on the wire."""

    segment_id: int
    offset: int
    length: int
    digest: bytes


class Done(Reply, frozen=True):
    """The reply of a mutation that has nothing to report."""


# ---- data path (frontends) ---------------------------------------------------


class Appended(msgspec.Struct, frozen=True, array_like=True):
    """Where ``Append`` stored the frame body: ``[segment_id, offset, length]``."""

    segment_id: int
    offset: int
    length: int


class Append(Request[Appended], frozen=True):
    name: ClassVar[str] = "append"
    digest: bytes


class Retention(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An object-lock retention: GOVERNANCE or COMPLIANCE until ``until_ms``
    (milliseconds since the epoch)."""

    mode: str
    until_ms: int


class VersionMetaInit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A new version's mutable metadata as its write request gives it
    (``x-amz-tagging``, ``x-amz-acl``/grants, ``x-amz-object-lock-*``), checked
    by the frontend. ``acl`` is opaque to the writer (the ACL work's format:
    ``{"canned": str}`` or ``{"grants": [[type, id, permission], ...]}``).
    Stored in ``versions.vmeta`` (``seglake/format/vmeta.py``)."""

    tags: list[tuple[str, str]] = []
    acl: dict[str, Any] | None = None
    lock: Retention | None = None
    legal_hold: bool = False


class Written(Reply, frozen=True):
    # Only an enabled bucket announces a new version's id (None otherwise).
    version_id: str | None = None
    created_ns: int = 0


class Put(Request[Written], frozen=True):
    """PutObject / POST upload. The frame body, if any, is the last chunk,
    sent inline to save a round trip; ``tail_digest`` is its BLAKE3."""

    name: ClassVar[str] = "put"
    bucket: str
    key: str
    size: int
    etag: str
    meta: dict[str, Any] = {}
    chunks: list[Chunk] = []
    tail_digest: bytes | None = None
    # The write's own conditions (If-None-Match: *, If-Match), decided in the
    # writer's transaction; with one, ``seen_uid`` is the key's current
    # version uid when the request began ("" for none), for the 409.
    if_none_match: bool = False
    if_match: str | None = None
    seen_uid: str | None = None
    vmeta: VersionMetaInit | None = None
    # The canonical id of the writing key (seglake/auth/canonical.py), kept
    # in the manifest meta as "owner"; "" for writes without one.
    owner: str = ""


class Deleted(Reply, frozen=True):
    version_id: str | None = None
    delete_marker: bool = False


class DeleteCondition(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A delete's conditions (If-Match, x-amz-if-match-last-modified-time,
    x-amz-if-match-size; DeleteObjects' per-object ETag, LastModifiedTime,
    Size), decided against the key's current version in the writer's
    transaction (``seglake/protocol/conditions.py``, rule 8)."""

    if_match: str | None = None  # an ETag list, or "*"
    last_modified_s: int | None = None  # seconds since the epoch
    size: int | None = None


class DeleteObject(Request[Deleted], frozen=True):
    name: ClassVar[str] = "delete_object"
    bucket: str
    key: str
    conditions: DeleteCondition | None = None


class DeleteVersion(Request[Deleted], frozen=True):
    name: ClassVar[str] = "delete_version"
    bucket: str
    key: str
    version_id: str
    conditions: DeleteCondition | None = None  # on the current version, as AWS
    # Object Lock: the request may remove a GOVERNANCE-locked version (the
    # frontend sets it only with the header and s3:BypassGovernanceRetention).
    bypass_governance: bool = False


class DeleteResult(Reply, frozen=True):
    """One key of DeleteObjects: deleted, or its own S3 error."""

    version_id: str | None = None
    delete_marker: bool = False
    error: str | None = None
    message: str | None = None


class DeletedMany(Reply, frozen=True):
    results: list[DeleteResult] = []


class DeleteObjects(Request[DeletedMany], frozen=True):
    name: ClassVar[str] = "delete_objects"
    bucket: str
    objects: list[tuple[str, str | None]]  # (key, version id or None)
    bypass_governance: bool = False  # as DeleteVersion's, for every entry
    # Empty, or aligned with ``objects``: each key's conditions or None.
    conditions: list[DeleteCondition | None] = []


class BucketCreated(Reply, frozen=True):
    created: bool = False


class CreateBucket(Request[BucketCreated], frozen=True):
    name: ClassVar[str] = "create_bucket"
    bucket: str
    versioning: str
    # The new bucket's owner and ACL (``protocol/acl.bucket_acl_text``) and
    # its ownership controls, stored with the row it creates (nothing when
    # the bucket exists already), so a bucket never exists without its owner.
    acl: str | None = None
    ownership: str | None = None
    # Object Lock enabled at creation: the canonical ObjectLockConfiguration
    # XML (versioning is then "enabled", and stays so).
    object_lock: str | None = None


class DeleteBucket(Request[Done], frozen=True):
    name: ClassVar[str] = "delete_bucket"
    bucket: str


class Copied(Reply, frozen=True):
    """CopyObject's outcome; ``source_changed`` alone means "read it again"."""

    source_changed: bool = False
    version_id: str | None = None
    created_ns: int = 0
    etag: str = ""
    source_version_id: str | None = None
    checksums: dict[str, str] = {}


class CopyObject(Request[Copied], frozen=True):
    """``src_uid``, ``etag`` and ``checksums`` are sent only for a source
    uploaded in parts, whose bytes the frontend read (see ``ops.py``)."""

    name: ClassVar[str] = "copy_object"
    bucket: str
    key: str
    src_bucket: str
    src_key: str
    src_version_id: str | None = None
    directive: str = "COPY"
    meta: dict[str, Any] = {}
    # If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since of the source.
    conditions: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
    checksum_algorithm: str | None = None
    # The copy's own conditions on its destination, as on ``Put``.
    if_none_match: bool = False
    if_match: str | None = None
    seen_uid: str | None = None
    src_uid: str | None = None
    etag: str | None = None
    checksums: dict[str, str] = {}
    # A copy that changes encryption (or copies an encrypted source uploaded
    # in parts): the frontend read the source (``src_uid``), re-sealed its
    # bytes into new chunks (``chunks``, appended already) and says how the
    # copy is encrypted (``sse``: the manifest's ``sse`` map, None: plain).
    chunks: list[Chunk] | None = None
    sse: dict[str, Any] | None = None
    # The copy's own ACL/lock (and tags with REPLACE); ``tagging_directive``
    # COPY takes the source's tags, REPLACE the ones in ``vmeta``.
    vmeta: VersionMetaInit | None = None
    tagging_directive: str = "COPY"
    owner: str = ""


class VersioningSet(Reply, frozen=True):
    previous: str
    status: str


class SetVersioning(Request[VersioningSet], frozen=True):
    name: ClassVar[str] = "set_versioning"
    bucket: str
    status: str


class Marked(Reply, frozen=True):
    # False when the writer found the data readable (moved by segment GC).
    marked: bool = True


class MarkDamaged(Request[Marked], frozen=True):
    name: ClassVar[str] = "mark_damaged"
    uid: str


# ---- multipart -------------------------------------------------------------------


class UploadCreated(Reply, frozen=True):
    upload_id: str
    created_ns: int


class CreateUpload(Request[UploadCreated], frozen=True):
    name: ClassVar[str] = "create_upload"
    bucket: str
    key: str
    meta: dict[str, Any] = {}
    checksum_algorithm: str | None = None
    # COMPOSITE or FULL_OBJECT; None: AWS's default for the algorithm.
    checksum_type: str | None = None
    # Kept in the upload's row, given to the version CompleteUpload makes.
    vmeta: VersionMetaInit | None = None
    owner: str = ""


class PartStored(Reply, frozen=True):
    created_ns: int


class UploadPart(Request[PartStored], frozen=True):
    """UploadPart and UploadPartCopy; the frame body, if any, is the last chunk."""

    name: ClassVar[str] = "upload_part"
    bucket: str
    key: str
    upload_id: str
    part_number: int
    size: int
    etag: str
    checksums: dict[str, str] = {}
    chunks: list[Chunk] = []
    tail_digest: bytes | None = None
    # An encrypted upload's part: the random nonce base its chunks were
    # sealed with (required exactly when the upload's meta has "sse").
    sse_nonce: bytes | None = None


class Completed(Reply, frozen=True):
    version_id: str | None
    created_ns: int
    etag: str
    size: int
    checksums: dict[str, str] = {}
    checksum_type: str | None = None  # of ``checksums``: COMPOSITE or FULL_OBJECT
    # True: the answer of an earlier Complete of the same upload with the
    # same part list (a retry after a lost response), nothing new written.
    replayed: bool = False


class CompleteUpload(Request[Completed], frozen=True):
    name: ClassVar[str] = "complete_upload"
    bucket: str
    key: str
    upload_id: str
    # As the client listed them: (part number, ETag, {algorithm: base64 value}).
    parts: list[tuple[int, str, dict[str, str]]]
    max_size: int = 0  # 0: no limit
    # Every part but the last must be at least this big; 0: AWS's 5 MiB.
    # Only lowered (``--min-part-size``) by tests; never raised above AWS's.
    min_part_size: int = 0
    expect_checksums: dict[str, str] = {}
    expect_size: int = -1  # -1: not given
    # Decided against the key as it was when the upload was created (the
    # writer recorded that itself), so there is no ``seen_uid`` here.
    if_none_match: bool = False
    if_match: str | None = None


class AbortUpload(Request[Done], frozen=True):
    name: ClassVar[str] = "abort_upload"
    bucket: str
    key: str
    upload_id: str


# ---- keys and bucket policies (CLI through the admin relay, frontends) ------------


class KeyChanged(Reply, frozen=True):
    access_key: str
    bucket: str | None = None
    removed: bool | None = None


class KeyCreate(Request[KeyChanged], frozen=True):
    name: ClassVar[str] = "key_create"
    access_key: str
    secret_enc: bytes  # sealed by seglake/auth/keystore.py; never clear text
    policy: str = "rw"
    enabled: bool = True
    inflight: int = 0


class KeyUpdate(Request[KeyChanged], frozen=True):
    """Only the fields given change (``UNSET``: left as stored)."""

    name: ClassVar[str] = "key_update"
    access_key: str
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    policy: str | msgspec.UnsetType = msgspec.UNSET
    inflight: int | msgspec.UnsetType = msgspec.UNSET


class KeyDelete(Request[KeyChanged], frozen=True):
    name: ClassVar[str] = "key_delete"
    access_key: str


class KeyAllowBucket(Request[KeyChanged], frozen=True):
    name: ClassVar[str] = "key_allow_bucket"
    access_key: str
    bucket: str


class KeyDisallowBucket(Request[KeyChanged], frozen=True):
    name: ClassVar[str] = "key_disallow_bucket"
    access_key: str
    bucket: str


class BucketPolicySet(Reply, frozen=True):
    bucket: str


class SetBucketPolicy(Request[BucketPolicySet], frozen=True):
    name: ClassVar[str] = "set_bucket_policy"
    bucket: str
    policy: str | None  # None deletes it


# ---- per-version metadata and bucket settings (frontends) -----------------------------


class VersionMetaSet(Reply, frozen=True):
    """The version actually changed: its S3 version id ("null" for a null
    version) and its uid."""

    version_id: str
    uid: str


class SetVersionMeta(Request[VersionMetaSet], frozen=True):
    """Put/DeleteObjectTagging, PutObjectAcl, PutObjectRetention,
    PutObjectLegalHold: one message, only the given fields change (``UNSET``:
    kept as stored). ``version_id`` None is the key's current version,
    decided inside the writer's transaction. ``acl`` / ``retention`` None
    removes them. ``bypass_governance`` only when the request carried the
    header and the key may use it (the frontend decides that)."""

    name: ClassVar[str] = "set_version_meta"
    bucket: str
    key: str
    version_id: str | None = None
    tags: list[tuple[str, str]] | msgspec.UnsetType = msgspec.UNSET
    acl: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    retention: Retention | msgspec.UnsetType | None = msgspec.UNSET
    legal_hold: bool | msgspec.UnsetType = msgspec.UNSET
    bypass_governance: bool = False


class BucketConfigSet(Reply, frozen=True):
    bucket: str
    field: str


# The bucket settings SetBucketConfig may change: columns of ``buckets``.
BUCKET_CONFIG_FIELDS: Final = ("tags", "acl", "ownership", "object_lock", "encryption")


class SetBucketConfig(Request[BucketConfigSet], frozen=True):
    """Bucket tags, ACL, ownership controls, object-lock configuration,
    default encryption: the canonical text (XML or JSON) the frontend made
    of the client's document, stored as given; None deletes it."""

    name: ClassVar[str] = "set_bucket_config"
    bucket: str
    field: str  # one of BUCKET_CONFIG_FIELDS
    value: str | None


# ---- bucket lifecycle (frontends; the maintenance process and lifecycle-run) -------


class BucketLifecycleSet(Reply, frozen=True):
    bucket: str


class SetBucketLifecycle(Request[BucketLifecycleSet], frozen=True):
    """Put/DeleteBucketLifecycleConfiguration: the client's XML, parsed again
    by the writer before it stores it; None deletes it."""

    name: ClassVar[str] = "set_bucket_lifecycle"
    bucket: str
    configuration: str | None


# ---- bucket CORS (frontends) ----------------------------------------------------------


class KekRow(msgspec.Struct, frozen=True, array_like=True):
    """One SSE key-encryption key as stored: wrapped by the master ``master_id``."""

    id: str
    wrapped: bytes
    master_id: str


class KekReply(Reply, frozen=True):
    kek: KekRow


class EnsureKek(Request[KekReply], frozen=True):
    """Frontends: the store's current KEK. ``candidate`` (made and wrapped by
    the frontend; the writer never holds keys) is stored only if the store has
    none yet, so concurrent frontends agree on one."""

    name: ClassVar[str] = "sse_ensure_kek"
    candidate: KekRow


class KeksRewrapped(Reply, frozen=True):
    count: int


class RewrapKeks(Request[KeksRewrapped], frozen=True):
    """``seglake sse rotate-master``: every KEK re-wrapped under a new master,
    in one batch. Refused unless ``keks`` names exactly the stored KEKs."""

    name: ClassVar[str] = "sse_rewrap_keks"
    keks: list[KekRow]


class BucketCorsSet(Reply, frozen=True):
    bucket: str


class SetBucketCors(Request[BucketCorsSet], frozen=True):
    """Put/DeleteBucketCors: the client's XML, parsed again by the writer
    before it stores it; None deletes it."""

    name: ClassVar[str] = "set_bucket_cors"
    bucket: str
    configuration: str | None


class LifecycleAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One planned lifecycle action, with the state it was planned on.

    ``action``: ``expire-current`` | ``delete-version`` | ``remove-marker``
    (``version_id`` and ``uid``: the version as the plan saw it; the uid is
    unique where a version id is not, "null") or ``abort-upload``
    (``upload_id``)."""

    key: str
    action: str
    rule_id: str = ""
    version_id: str = ""
    uid: str = ""
    upload_id: str = ""


class LifecycleApplied(Reply, frozen=True):
    # One entry per action, in order: "applied", or why it was skipped.
    results: list[str] = []


class LifecycleExpire(Request[LifecycleApplied], frozen=True):
    """Apply planned actions of one bucket; the writer re-checks each one
    against the state it finds inside its transaction (``lifecycle_ops.py``)."""

    name: ClassVar[str] = "lifecycle_expire"
    bucket: str
    actions: list[LifecycleAction]
    now_ns: int  # the time the plan was made for
    day_ns: int  # the length of a lifecycle day (--lifecycle-day-seconds)


# ---- maintenance and the operator's toolbox ----------------------------------------


class RunRecorded(Reply, frozen=True):
    id: int


class RecordOpRun(Request[RunRecorded], frozen=True):
    name: ClassVar[str] = "record_op_run"
    mode: str
    status: str
    started_ns: int = 0
    finished_ns: int = 0
    report: str = ""  # JSON


class SetMaintenance(Request[Done], frozen=True):
    """The writer's own: persists the quiesce state document (JSON)."""

    name: ClassVar[str] = "set_maintenance"
    doc: str


class MpuGcAborted(Reply, frozen=True):
    aborted: list[str] = []
    parts: int = 0


class MpuGcAbort(Request[MpuGcAborted], frozen=True):
    name: ClassVar[str] = "mpu_gc_abort"
    upload_ids: list[str]
    cutoff_ns: int


class Reindexed(Reply, frozen=True):
    indexes: int


class DbReindex(Request[Reindexed], frozen=True):
    name: ClassVar[str] = "db_reindex"


class ReplChunk(msgspec.Struct, frozen=True, array_like=True):
    """A chunk a replication pull stored locally (through ``Append``) for
    an entry's manifest: its digest and where it now is."""

    digest: bytes
    segment_id: int
    offset: int
    length: int


class ReplApplied(Reply, frozen=True):
    applied: int
    skipped: int
    conflicts: int
    cursor: int


class ReplApply(Request[ReplApplied], frozen=True):
    """Apply oplog entries from another site (seglake/writer/repl_ops.py), in
    one batch with moving that remote's cursor: ``direction`` "pull" raises
    ``repl_remotes.pull_cursor`` of ``remote`` to ``to_seq``; "push" (a
    batch another site POSTed) raises ``repl_inbound`` of the sending site.
    ``entries``: ``seglake.protocol.repl_wire.Entry`` as msgpack arrays (decoded and
    validated by the writer); ``chunks``: local locations of chunks those
    entries' manifests name that the sender stored before this request
    (others must already be in ``chunk_index``, or the batch is refused)."""

    name: ClassVar[str] = "repl_apply"
    remote: str
    direction: str
    epoch: str
    from_seq: int
    to_seq: int
    entries: list[Any]
    chunks: list[ReplChunk] = []
    remote_site: str = ""


class ReplSetPushCursor(Request[Done], frozen=True):
    """Raise ``repl_remotes.push_cursor`` of ``remote`` after the remote
    acknowledged our entries up to ``cursor`` of our oplog ``epoch``
    (seglake/writer/repl_cursor_ops.py). Within one epoch the cursor only
    moves forward unless ``rewind``; ``bytes_out`` is added to the remote's counter."""

    name: ClassVar[str] = "repl_set_push_cursor"
    remote: str
    epoch: str
    cursor: int
    last_push_hlc: int = 0
    bytes_out: int = 0
    remote_site: str = ""
    # The remote lost our cursor (ReplicationGap): move back to ``cursor``.
    rewind: bool = False


class ReplNoteRemote(Request[Done], frozen=True):
    """Record the outcome of a replication step for ``remote`` that is not
    itself a cursor move: ``error`` (None = leave, "" = clear) into
    ``repl_remotes.last_error``; ``bytes_in`` added to its counter."""

    name: ClassVar[str] = "repl_note_remote"
    remote: str
    error: str | None = None
    bytes_in: int = 0


class ReplPruned(Reply, frozen=True):
    pruned: int  # rows deleted
    floor: int  # settings['oplog_floor'] now
    more: bool  # rows below ``below`` are left for another call


class ReplPruneOplog(Request[ReplPruned], frozen=True):
    """Delete up to ``limit`` oplog rows with seq < ``below`` from the
    floor up and raise ``settings['oplog_floor']`` past them
    (seglake/writer/oplog_prune.py). The newest row of the oplog is kept
    (seq must never be handed out twice), and so is the newest ``vmeta``
    row of a uid: applying a later entry reads that version's metadata
    stamps from it."""

    name: ClassVar[str] = "repl_prune_oplog"
    below: int
    limit: int = 1000


class Pong(Reply, frozen=True):
    pid: int
    uptime: float


class Ping(Request[Pong], frozen=True):
    name: ClassVar[str] = "ping"


class Status(Request[Doc], frozen=True):
    name: ClassVar[str] = "status"


class MaintenanceStatus(Request[Doc], frozen=True):
    name: ClassVar[str] = "maintenance_status"


class MaintenanceSet(Request[Doc], frozen=True):
    name: ClassVar[str] = "maintenance_set"
    target: str


# ---- segment GC ------------------------------------------------------------------


class GcDropped(Reply, frozen=True):
    deleted: list[int] = []
    skipped: dict[str, str] = {}  # segment id → why it stays
    purged_versions: int = 0
    purge_remaining: int = 0


class GcDeleted(GcDropped, frozen=True):
    freed_bytes: int = 0


class GcDeleteSegments(Request[GcDeleted], frozen=True):
    name: ClassVar[str] = "gc_delete_segments"
    segments: list[int]
    yes: bool = False  # run even though the store is not quiesced
    sealed_before_ns: int = 0
    purge_limit: int = 0
    # Tombstone horizon: a DELETED row is purged only once its deletion is
    # older than this and below the oplog floor (meta/oplog_horizon.py).
    retention_ms: int = 7 * 86_400_000


class GcRewritten(Reply, frozen=True):
    segment: int
    moved_chunks: int = 0
    moved_bytes: int = 0
    remaining_chunks: int = 0
    damaged: list[dict[str, Any]] = []
    versions_repointed: int = 0
    parts_repointed: int = 0
    deleted: list[int] = []
    freed_bytes: int = 0
    skipped: dict[str, str] = {}


class GcRewriteChunks(Request[GcRewritten], frozen=True):
    name: ClassVar[str] = "gc_rewrite_chunks"
    segment: int
    max_bytes: int = 0  # 0: the writer's per-call bound
    yes: bool = False


class GcDropSegments(Request[GcDropped], frozen=True):
    """The writer's own GC step (never accepted from a peer)."""

    name: ClassVar[str] = "gc_drop_segments"
    segments: list[int]
    below: int
    sealed_before_ns: int = 0
    purge_limit: int = 0
    retention_ms: int = 7 * 86_400_000
    # Where the segments are: their manifest and metadata records are
    # copied forward before they are dropped.
    segments_dir: str = ""


class GcRepointed(Reply, frozen=True):
    versions: int = 0
    parts: int = 0
    pending: list[str] = []


class GcRepoint(Request[GcRepointed], frozen=True):
    """The writer's own GC step (never accepted from a peer)."""

    name: ClassVar[str] = "gc_repoint"
    # (segment, offset, length, digest, new segment, new offset) per moved chunk.
    moves: list[tuple[int, int, int, bytes, int, int]]


# The GC requests an operator's run sends, one step at a time.
GcStep = GcDeleteSegments | GcRewriteChunks


# ---- the supervisor's control socket (``seglake/supervisor/main.py``) ---------------


class ProcessList(Reply, frozen=True):
    """The listening address and every process, the supervisor first; each
    process is a document (name, role, pid, alive, uptime, restarts, ...)."""

    address: str
    processes: list[Doc]


class ListProcesses(Request[ProcessList], frozen=True):
    name: ClassVar[str] = "processes"


class Report(Request[Done], frozen=True):
    """A process's counters, every ``--stats-interval`` (``ipc/report.py``).

    Counters are monotonic for one start of one process (``pid`` and
    ``started`` name the start); gauges describe it now. Both are nested maps
    whose leaves are numbers (``seglake/metrics/merge.py`` adds them up). The
    supervisor keeps a report only if ``pid`` is the process it runs as
    ``process``."""

    name: ClassVar[str] = "report"
    process: str  # as the supervisor knows it: "writer", "frontend-<n>"
    role: str
    pid: int
    started: float  # the process's start, seconds since the epoch
    at: float  # when this report was made
    counters: Doc = {}
    gauges: Doc = {}


class MergedStats(ProcessList, frozen=True):
    """``ProcessList`` (with each process's RSS and CPU time) and the merged
    reports: ``{"counters", "gauges"}`` summed over every start of every
    frontend and of the writer, and name → (pid, started, at) of the
    current reports."""

    frontends: Doc
    writer: Doc
    reports: dict[str, Doc]


class SupervisorStats(Request[MergedStats], frozen=True):
    name: ClassVar[str] = "stats"


# ---- the admin socket's typed commands (``seglake/maintenance/main.py``) ------------


class AdminStats(Request[Doc], frozen=True):
    """The stats document (``seglake/metrics/view.py``) behind
    ``/v1/meta/stats``, ``/metrics``, ``seglake stats`` and the dashboard."""

    name: ClassVar[str] = "stats"
    token: str = ""  # the admin token (``.seglake-admin.token``), checked first


# ---- the table -------------------------------------------------------------------------


class MessageError(Exception):
    """A message that is not one of ours, or not a well-formed one."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown

    def as_s3(self) -> S3Error:
        """The error reply a peer gets: a bug on its side, not the client's."""
        return S3Error("NotImplemented" if self.unknown else "InternalError", message=str(self))


@dataclass(frozen=True)
class _Spec:
    type: type[Request[Any]]
    request: msgspec.msgpack.Decoder[Any]
    reply: msgspec.msgpack.Decoder[Any]


def _reply_type(cls: type[Request[Any]]) -> Any:
    for base in getattr(cls, "__orig_bases__", ()):
        if typing.get_origin(base) is Request:
            return typing.get_args(base)[0]
    raise TypeError(f"{cls.__name__} does not declare its reply type")


def _table(*types: type[Request[Any]]) -> dict[str, _Spec]:
    table: dict[str, _Spec] = {}
    for cls in types:
        if cls.name in table:
            raise RuntimeError(f"request name {cls.name!r} declared twice")
        table[cls.name] = _Spec(
            cls, msgspec.msgpack.Decoder(cls), msgspec.msgpack.Decoder(_reply_type(cls))
        )
    return table


_any_decoder: Final = msgspec.msgpack.Decoder()


class Service:
    """The requests one server declares. ``plain``: names it still serves
    as plain msgpack values (the admin socket's older commands), decoded
    untyped; any other undeclared name is an unknown request."""

    def __init__(
        self, server: str, *types: type[Request[Any]], plain: frozenset[str] = frozenset()
    ) -> None:
        self.server = server
        self._specs = _table(*types)
        if plain & self._specs.keys():
            raise RuntimeError(f"{server}: {sorted(plain & self._specs.keys())} typed and plain")
        self.plain = plain
        self.requests: dict[str, type[Request[Any]]] = {n: s.type for n, s in self._specs.items()}

    def _spec(self, name: str) -> _Spec:
        spec = self._specs.get(name)
        if spec is None:
            raise MessageError(f"unknown {self.server} request {name!r}", unknown=True)
        return spec

    def decode(self, name: str, raw: bytes | msgspec.Raw | memoryview) -> Request[Any]:
        """The request a frame carries (header ``name``, encoded ``args``)."""
        spec = self._spec(name)
        try:
            msg: Request[Any] = spec.request.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise MessageError(f"malformed {name} request: {exc}") from None
        return msg

    def decode_any(self, name: str, raw: bytes | msgspec.Raw | memoryview) -> Any:
        """``decode`` for a server with ``plain`` names: those as plain values."""
        if name in self.plain:
            return decode_any(raw)
        return self.decode(name, raw)

    def convert(self, name: str, args: Any) -> Request[Any]:
        """A request from already-decoded msgpack values, validated exactly
        as ``decode`` would."""
        spec = self._spec(name)
        try:
            msg: Request[Any] = msgspec.convert(args, spec.type)
        except msgspec.ValidationError as exc:
            raise MessageError(f"malformed {name} request: {exc}") from None
        return msg


WRITER: Final = Service(
    "writer",
    Append, Put, DeleteObject, DeleteVersion, DeleteObjects, CreateBucket, DeleteBucket,
    CopyObject, SetVersioning, MarkDamaged, CreateUpload, UploadPart, CompleteUpload,
    AbortUpload, KeyCreate, KeyUpdate, KeyDelete, KeyAllowBucket, KeyDisallowBucket,
    SetBucketPolicy, SetBucketLifecycle, SetBucketCors, SetVersionMeta, SetBucketConfig,
    LifecycleExpire, RecordOpRun, SetMaintenance,
    MpuGcAbort, DbReindex, Ping, Status, MaintenanceStatus, MaintenanceSet, GcDeleteSegments, GcRewriteChunks, GcDropSegments,
    GcRepoint, EnsureKek, RewrapKeks, ReplApply, ReplSetPushCursor, ReplNoteRemote,
    ReplPruneOplog,
)  # fmt: skip
SUPERVISOR: Final = Service("supervisor", ListProcesses, Report, SupervisorStats)
# The admin socket: ``stats`` typed; its older commands (each carrying the
# token in a plain map) are still plain values.
ADMIN: Final = Service(
    "admin", AdminStats, plain=frozenset({"status", "ping", "maintenance", "writer_mutation"})
)
_BY_TYPE: Final = {
    spec.type: spec for service in (WRITER, SUPERVISOR, ADMIN) for spec in service._specs.values()
}

# Wire name → request type, of the writer.
REQUESTS: Final[dict[str, type[Request[Any]]]] = WRITER.requests


def decode_request(name: str, raw: bytes | msgspec.Raw | memoryview) -> Request[Any]:
    """The writer request a frame carries (header ``name``, encoded ``args``)."""
    return WRITER.decode(name, raw)


def request_from(name: str, args: Any) -> Request[Any]:
    """A writer request from already-decoded msgpack values (the admin
    relay's ``args``), validated exactly as ``decode_request`` would."""
    return WRITER.convert(name, args)


def decode_reply(msg: Request[R], raw: bytes | msgspec.Raw | memoryview) -> R:
    """The reply to ``msg``, validated as its declared reply type."""
    try:
        reply: R = _BY_TYPE[type(msg)].reply.decode(raw)
    except msgspec.DecodeError as exc:
        raise MessageError(f"malformed {msg.name} reply: {exc}") from None
    return reply


def decode_any(raw: bytes | msgspec.Raw | memoryview) -> Any:
    """Untyped msgpack, for peers other than the writer (admin, supervisor)."""
    try:
        return _any_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise MessageError(f"undecodable message: {exc}") from None
