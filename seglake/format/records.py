"""Metadata records: the state manifests do not carry, so ``rebuild-index``
can restore ``meta.db`` from the segments alone.

Where they live: in segment format versions 2 and 3 each record below is
the data of one typed segment record (type 2 bucket and bucket gone, type 3
version state; in version 3 also type 4 version meta and type 5 key record;
see ``segment.py``), appended by the writer in the batch that changed the state,
before the batch's one segment flush. Replayed in (segment id, offset)
order, the last record of a bucket name or a uid is its state. Version 1
stores kept one file each (the paths below); only ``seglake upgrade`` reads
those now.

Manifests describe each stored version (and each delete marker) as written.
Two things change later and are kept here:

- a **bucket record** per bucket: name, creation time, versioning state,
  policy, lifecycle and CORS configurations. Written when a bucket is created or changed, removed when it is
  deleted. Path: ``<data>/objects/records/buckets/<name>.bucket``.
- a **version state record** for every version whose row is no longer
  ``ACTIVE``: ``DELETED`` (overwritten null version, deleted version,
  unversioned delete), ``DAMAGED``, ``CONFLICT``, or ``PURGED`` (the row was
  removed from the database, e.g. a bucket's delete markers when the bucket
  is deleted). No record means ``ACTIVE``. Path:
  ``<data>/objects/records/versions/<uid[0:4]>/<uid[4:7]>/<uid>.state`` (the
  manifest's shard).
- a **bucket-gone record** (kind 3, segments only) when a bucket row is
  removed: a log cannot delete the bucket's earlier records, so it says so.
- in segments, a state record may also say ``ACTIVE``: written when a
  touched version is ACTIVE after all (a batch that failed after its
  records were flushed is corrected this way).
- a **version-meta record** (kind 4, segment type 4, format 3 only): the
  whole mutable metadata of one version (tags, ACL, retention, legal
  hold) after a change, never a diff, so the last one per uid is the
  value (docs/design-version-metadata.md §1). A record with only defaults
  says "back to defaults".
- a **key record** (kind 5, segment type 5, format 3 only): one SSE
  key-encryption key as ``sse_keks`` holds it, wrapped by the SSE master
  key (never in clear; ``seglake/sse/keys.py``). A rotation re-wraps a KEK
  and writes its record again; the last one per id is its value.

File layout (integers big-endian)::

    0   8  magic b"SGLKREC1"
    8   2  format version (1)
    10  2  kind: 1 = bucket, 2 = version state, 3 = bucket gone,
               4 = version meta, 5 = key
    12  4  body length L (1 .. 1 MiB)
    16  L  body: one msgpack map
            bucket:  {"name", "created_ns", "versioning", "policy" (str|nil),
                      "lifecycle" (str, only when the bucket has one),
                      "cors" (str, only when the bucket has one),
                      "tags", "acl", "ownership", "object_lock",
                      "encryption" (str each, only when set)}
            state:   {"uid", "state"}
            gone:    {"name"}
            vmeta:   {"uid", "rev" (int), "tags" ([[k, v], ...]),
                      "acl" (map | nil), "lock" ({"mode", "until_ms"} | nil),
                      "legal_hold" (bool)}
            key:     {"id" (16 hex), "wrapped" (60 bytes), "master_id" (16 hex),
                      "created_ns"}, or {"id", "gone": true} for a KEK
                      without a row (a batch that never committed)
    16+L 32 BLAKE3 of bytes 0 .. 16+L

Rules this file keeps:
- The codec is pure and treats input as hostile: ``decode_record`` raises
  only ``FormatError`` naming the file and offset.
- Every write is a new file fsynced and renamed into place, then its
  directory fsynced, so a record is either the old one or the new one
  (``seglake/writer/fileio.py``'s ``replace_file``; a crash may leave a
  ``.tmp`` file next to it, which readers ignore).
- The writer writes records inside the batch, after the mutations and
  before COMMIT (like manifests): a committed change always has its record.
  A crash between the two leaves a record ahead of the database, for a
  request that was never acknowledged.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any, Final

import blake3
import msgpack

from seglake.format.errors import FormatError
from seglake.format.layout import RECORDS_DIR
from seglake.format.manifest import shard_of

RECORD_MAGIC: Final = b"SGLKREC1"
RECORD_VERSION: Final = 1
KIND_BUCKET: Final = 1
KIND_STATE: Final = 2
KIND_BUCKET_GONE: Final = 3
KIND_VERSION_META: Final = 4
KIND_KEY: Final = 5
KINDS: Final = (KIND_BUCKET, KIND_STATE, KIND_BUCKET_GONE, KIND_VERSION_META, KIND_KEY)
# The segment record type (segment.py) that carries each kind; a record found
# under another type is damage, not data. Plain ints: records.py stays
# importable without segment.py.
SEGMENT_TYPE_OF_KIND: Final = {
    KIND_BUCKET: 2, KIND_BUCKET_GONE: 2, KIND_STATE: 3, KIND_VERSION_META: 4, KIND_KEY: 5,
}  # fmt: skip
LOCK_MODES: Final = ("GOVERNANCE", "COMPLIANCE")
# The bucket settings a bucket record may carry besides the original ones;
# each is canonical text (XML or JSON) and written only when set.
BUCKET_TEXT_FIELDS: Final = (
    "policy", "lifecycle", "cors", "tags", "acl", "ownership", "object_lock", "encryption",
)  # fmt: skip
# A bucket policy is the largest thing a record holds; AWS caps those at 20 KiB.
MAX_BODY_BYTES: Final = 1024 * 1024
BUCKET_SUFFIX: Final = ".bucket"
STATE_SUFFIX: Final = ".state"
STATES: Final = ("ACTIVE", "DELETED", "DAMAGED", "CONFLICT", "PURGED")
VERSIONING_STATES: Final = ("enabled", "suspended", "unversioned")

_HEAD: Final = struct.Struct(">8sHHI")
_SUM: Final = 32
# Bucket names become file names as they are when they are plain S3 names;
# anything else (never produced by our own validation) is hex-encoded.
_PLAIN_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,62}")


def records_dir(objects_root: Path) -> Path:
    return objects_root / RECORDS_DIR


def bucket_record_path(objects_root: Path, name: str) -> Path:
    stem = name if _PLAIN_BUCKET.fullmatch(name) else "x-" + name.encode().hex()
    return records_dir(objects_root) / "buckets" / f"{stem}{BUCKET_SUFFIX}"


def state_record_path(objects_root: Path, uid: str) -> Path:
    return records_dir(objects_root) / "versions" / shard_of(uid) / f"{uid}{STATE_SUFFIX}"


def encode_record(kind: int, body: dict[str, Any]) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind}")
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    if not 0 < len(packed) <= MAX_BODY_BYTES:
        raise ValueError(f"record body is {len(packed)} bytes, must be 1..{MAX_BODY_BYTES}")
    head = _HEAD.pack(RECORD_MAGIC, RECORD_VERSION, kind, len(packed))
    data = head + packed
    return data + blake3.blake3(data).digest()


def decode_record(buf: bytes, *, path: str) -> tuple[int, dict[str, Any]]:
    """``(kind, body)`` of a verified record; ``FormatError`` otherwise."""
    if len(buf) < _HEAD.size + _SUM:
        raise FormatError(path, len(buf), "record truncated")
    magic, version, kind, length = _HEAD.unpack_from(buf)
    if magic != RECORD_MAGIC:
        raise FormatError(path, 0, f"not a record: magic {magic!r}")
    if version != RECORD_VERSION:
        raise FormatError(path, 8, f"unsupported record version {version}")
    if kind not in KINDS:
        raise FormatError(path, 10, f"unknown record kind {kind}")
    if not 0 < length <= MAX_BODY_BYTES:
        raise FormatError(path, 12, f"body length {length} outside 1..{MAX_BODY_BYTES}")
    end = _HEAD.size + length
    if len(buf) != end + _SUM:
        raise FormatError(path, min(len(buf), end + _SUM), "record length does not match header")
    if blake3.blake3(buf[:end]).digest() != buf[end:]:
        raise FormatError(path, end, "record checksum does not match")
    try:
        body = msgpack.unpackb(buf[_HEAD.size : end], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for bad bytes
        raise FormatError(path, _HEAD.size, f"body is not valid msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise FormatError(path, _HEAD.size, "body is not a map")
    problem = _body_problem(kind, body)
    if problem:
        raise FormatError(path, _HEAD.size, problem)
    return kind, body


def _body_problem(kind: int, body: dict[str, Any]) -> str | None:
    if kind == KIND_BUCKET:
        if not isinstance(body.get("name"), str) or not body["name"]:
            return "bucket record without a name"
        if not isinstance(body.get("created_ns"), int):
            return "bucket record without created_ns"
        if body.get("versioning") not in VERSIONING_STATES:
            return f"bucket record with versioning {body.get('versioning')!r}"
        for name in BUCKET_TEXT_FIELDS:
            if body.get(name) is not None and not isinstance(body[name], str):
                return f"bucket record {name} is not text"
        return None
    if kind == KIND_BUCKET_GONE:
        if not isinstance(body.get("name"), str) or not body["name"]:
            return "bucket-gone record without a name"
        return None
    if kind == KIND_KEY:
        return _key_problem(body)
    if kind == KIND_VERSION_META:
        return _vmeta_problem(body)
    if not isinstance(body.get("uid"), str) or not body["uid"]:
        return "state record without a uid"
    if body.get("state") not in STATES:
        return f"state record with state {body.get('state')!r}"
    return None


def _vmeta_problem(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("uid"), str) or not body["uid"]:
        return "version-meta record without a uid"
    rev = body.get("rev")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        return "version-meta record without a rev"
    tags = body.get("tags")
    if not isinstance(tags, list) or not all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in tags
    ):
        return "version-meta record tags are not [[key, value], ...]"
    if body.get("acl") is not None and not isinstance(body["acl"], dict):
        return "version-meta record acl is not a map"
    lock = body.get("lock")
    if lock is not None and (
        not isinstance(lock, dict)
        or lock.get("mode") not in LOCK_MODES
        or not isinstance(lock.get("until_ms"), int)
        or isinstance(lock.get("until_ms"), bool)
    ):
        return "version-meta record lock is not {mode, until_ms}"
    if not isinstance(body.get("legal_hold"), bool):
        return "version-meta record legal_hold is not a bool"
    return None


def bucket_body(
    name: str,
    created_ns: int,
    versioning: str,
    policy: str | None,
    lifecycle: str | None = None,
    cors: str | None = None,
    **settings: str | None,
) -> dict[str, Any]:
    """A bucket record's body. ``lifecycle``, ``cors`` and the newer
    ``settings`` (``BUCKET_TEXT_FIELDS``: tags, acl, ownership, object_lock,
    encryption) are written only when set, so the record of a bucket without
    them is byte for byte what older writers made."""
    body: dict[str, Any] = {
        "name": name,
        "created_ns": created_ns,
        "versioning": versioning,
        "policy": policy,
    }
    if lifecycle is not None:
        body["lifecycle"] = lifecycle
    if cors is not None:
        body["cors"] = cors
    for key, value in settings.items():
        if key not in BUCKET_TEXT_FIELDS[3:]:
            raise ValueError(f"unknown bucket setting {key!r}")
        if value is not None:
            body[key] = value
    return body


_KEY_ID_HEX: Final = 16
_WRAPPED_KEY_BYTES: Final = 60


def _hex_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == _KEY_ID_HEX
        and all(c in "0123456789abcdef" for c in value)
    )


def _key_problem(body: dict[str, Any]) -> str | None:
    if not _hex_id(body.get("id")):
        return "key record without a 16-hex id"
    if "gone" in body:
        return None if body["gone"] is True and len(body) == 2 else "malformed key-gone record"
    if not _hex_id(body.get("master_id")):
        return "key record without a 16-hex master id"
    wrapped = body.get("wrapped")
    if not isinstance(wrapped, bytes) or len(wrapped) != _WRAPPED_KEY_BYTES:
        return "key record without a 60-byte wrapped key"
    created = body.get("created_ns")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        return "key record without created_ns"
    return None


def key_body(kek_id: str, wrapped: bytes, master_id: str, created_ns: int) -> dict[str, Any]:
    """A key record's body: one ``sse_keks`` row."""
    return {"id": kek_id, "wrapped": wrapped, "master_id": master_id, "created_ns": created_ns}


def key_gone_body(kek_id: str) -> dict[str, Any]:
    """A key record saying the KEK has no row: one whose batch never
    committed (recovery writes it after the uncommitted record)."""
    return {"id": kek_id, "gone": True}


def vmeta_body(uid: str, rev: int, meta: dict[str, Any]) -> dict[str, Any]:
    """A version-meta record's body: ``meta`` (the decoded ``versions.vmeta``
    map, ``{}`` for defaults) as a full snapshot with every field present."""
    return {
        "uid": uid,
        "rev": rev,
        "tags": [[str(k), str(v)] for k, v in meta.get("tags") or []],
        "acl": meta.get("acl"),
        "lock": meta.get("lock"),
        "legal_hold": bool(meta.get("legal_hold", False)),
    }
