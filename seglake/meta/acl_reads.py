"""What access control reads of a bucket or an object (read-only).

One primary-key lookup per question, on the caller's read-only connection:
authorisation asks these for anonymous requests before any body is read,
and the ACL handlers for Get/Put*Acl. The values are returned as stored;
``protocol/acl.py`` interprets them (and treats a damaged one as private).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import msgpack

from seglake.format.errors import FormatError
from seglake.format.vmeta import decode_vmeta
from seglake.meta.schema import live_version, query


@dataclass(frozen=True)
class BucketAccess:
    acl: str | None  # buckets.acl: the owner and the ACL (protocol/acl.bucket_acl_text)
    ownership: str | None  # buckets.ownership: an OwnershipControls setting, or None


@dataclass(frozen=True)
class ObjectAccess:
    version_id: str
    delete_marker: bool
    owner: str | None  # the writer's canonical id (manifest meta "owner"); None before ACLs
    acl: Any  # the version metadata's "acl" (format/vmeta.py), or None (private)


def bucket_access(conn: apsw.Connection, bucket: str) -> BucketAccess | None:
    """None when the bucket does not exist."""
    rows = query(conn, "SELECT acl, ownership FROM buckets WHERE name = ?", (bucket,))
    if not rows:
        return None
    acl, ownership = rows[0]
    return BucketAccess(
        None if acl is None else str(acl), None if ownership is None else str(ownership)
    )


def _decode(blob: Any) -> dict[str, Any]:
    if not blob:
        return {}
    try:
        value = msgpack.unpackb(blob, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return {}  # damage: no owner, no ACL — private, so it only narrows access
    return value if isinstance(value, dict) else {}


def object_access(
    conn: apsw.Connection, bucket: str, key: str, version_id: str | None
) -> ObjectAccess | None:
    """The current version of ``key`` (or the one ``version_id`` names);
    None when there is none."""
    cols = "v.version_id, v.delete_marker, v.meta, v.vmeta"
    row = live_version(conn, cols, bucket, key, version_id)
    if row is None:
        return None
    vid, marker, meta, vmeta = row
    try:
        acl = decode_vmeta(None if vmeta is None else bytes(vmeta)).acl
    except FormatError:
        acl = None  # damage reads as private: it only narrows access
    return ObjectAccess(
        version_id=str(vid), delete_marker=bool(marker), owner=_owner_of(meta), acl=acl
    )


def _owner_of(meta: Any) -> str | None:
    owner = _decode(meta).get("owner")
    return owner if isinstance(owner, str) and owner else None


def current_owners(conn: apsw.Connection, bucket: str, keys: Sequence[str]) -> dict[str, str]:
    """The recorded owner of each key's current version (a listing page,
    at most 1000 keys: one query); keys without one are left out."""
    if not keys:
        return {}
    marks = ",".join("?" * len(keys))
    rows = query(
        conn,
        "SELECT c.key, v.meta FROM current c JOIN versions v ON v.id = c.version "
        f"WHERE c.bucket = ? AND c.key IN ({marks})",
        (bucket, *keys),
    )
    return {str(k): owner for k, meta in rows if (owner := _owner_of(meta)) is not None}


def version_owners(
    conn: apsw.Connection, bucket: str, versions: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The recorded owner of each (key, version id) of a version listing page."""
    if not versions:
        return {}
    marks = ",".join("(?, ?)" for _ in versions)
    flat = [x for pair in versions for x in pair]
    rows = query(
        conn,
        "SELECT key, version_id, meta FROM versions "
        f"WHERE bucket = ? AND (key, version_id) IN (VALUES {marks}) AND state != 'DELETED' "
        "AND tombstone = 0",
        (bucket, *flat),
    )
    return {
        (str(k), str(v)): owner for k, v, meta in rows if (owner := _owner_of(meta)) is not None
    }


def upload_owners(conn: apsw.Connection, upload_ids: Sequence[str]) -> dict[str, str]:
    """Who created each multipart upload (``uploads.owner``), where recorded."""
    if not upload_ids:
        return {}
    marks = ",".join("?" * len(upload_ids))
    rows = query(
        conn,
        f"SELECT upload_id, owner FROM uploads WHERE upload_id IN ({marks})",
        tuple(upload_ids),
    )
    return {str(u): str(o) for u, o in rows if o}
