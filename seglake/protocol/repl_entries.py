"""The body of each oplog op (``oplog.body``, ``wire.Entry.body``): one
msgspec Struct per op, encoded as a msgpack map.

- ``version`` (PutObject, CopyObject, CompleteMultipartUpload, a delete
  marker, the hidden tombstone an unversioned DELETE leaves): the version's
  S3 fields, its ``prev`` stamp (the key's current version at the origin
  when it was written; the sibling rule of ``protocol/lww.py``) and its
  ``vmeta`` blob. The manifest travels next to the body (``Entry.manifest``).
- ``state``: a version became DELETED (DeleteObject with versionId,
  lifecycle expiry, a replaced null version).
- ``bucket``: one bucket config field's new value (an LWW register each).
- ``bucket_gone``: DeleteBucket.
- ``vmeta``: a version's tags/ACL/retention/legal hold, as a whole snapshot.
- ``kek``: an SSE key-encryption key (wrapped by the SSE master key, which
  sites replicating SSE objects must share).
"""

from __future__ import annotations

from typing import Final

import msgspec

# The bucket config fields, each its own LWW register (bucket_stamps.field).
BUCKET_FIELDS: Final = (
    "created_ns", "versioning", "policy", "lifecycle", "cors", "tags", "acl",
    "ownership", "object_lock", "encryption",
)  # fmt: skip


class Stamp(msgspec.Struct, frozen=True, array_like=True):
    hlc: int
    site: str


class VersionBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version_id: str
    size: int
    etag: str
    created_ns: int
    delete_marker: bool = False
    # An unversioned DELETE's hidden null delete marker: the key's tombstone,
    # left out of listings, kept so a late older put cannot bring it back.
    tombstone: bool = False
    prev: Stamp | None = None
    vmeta: bytes | None = None


class StateBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    state: str  # "DELETED": absorbing, never undone


class BucketBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    field: str
    value: str | int | None


class BucketGoneBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class VmetaBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    vmeta: bytes | None  # seglake/format/vmeta.py; None = all defaults


class KekBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    wrapped: bytes
    master_id: str
    created_ns: int


Body = VersionBody | StateBody | BucketBody | BucketGoneBody | VmetaBody | KekBody
BODY_TYPES: Final[dict[str, type[Body]]] = {
    "version": VersionBody,
    "state": StateBody,
    "bucket": BucketBody,
    "bucket_gone": BucketGoneBody,
    "vmeta": VmetaBody,
    "kek": KekBody,
}
_encoder: Final = msgspec.msgpack.Encoder()


class BodyError(ValueError):
    """An entry body that is not what its op holds."""


def encode_body(body: Body) -> bytes:
    return _encoder.encode(body)


def decode_body(op: str, raw: bytes) -> Body:
    kind = BODY_TYPES.get(op)
    if kind is None:
        raise BodyError(f"unknown op {op!r}")
    try:
        body: Body = msgspec.msgpack.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise BodyError(f"malformed {op} body: {exc}") from None
    if isinstance(body, BucketBody) and body.field not in BUCKET_FIELDS:
        raise BodyError(f"unknown bucket field {body.field!r}")
    if isinstance(body, StateBody) and body.state != "DELETED":
        raise BodyError(f"state {body.state!r} is not replicated")
    return body
