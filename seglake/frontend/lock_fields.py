"""Object Lock fields of writes and reads, shared by the object families.

PutObject, CopyObject, CreateMultipartUpload and POST uploads take a new
version's lock from here (``lock_init``: its headers, else the bucket's
default retention; ``with_lock`` adds it to the write's ``VersionMetaInit``);
PutObject and UploadPart check the integrity header a lock-enabled bucket
requires (``require_integrity``); GET and HEAD send ``lock_headers``. The
S3 operations of Object Lock itself are ``frontend/object_lock.py``.
"""

from __future__ import annotations

import time

import msgspec

from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.vmeta import decode_vmeta
from seglake.frontend.http import Request
from seglake.ipc.messages import Retention, VersionMetaInit
from seglake.meta.lock_reads import bucket_object_lock
from seglake.meta.reads import MetaReader
from seglake.protocol import object_lock as ol
from seglake.protocol.checksums import ALGORITHMS, header_name


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def bucket_lock(reader: MetaReader, bucket: str) -> ol.LockConfiguration | None:
    """The bucket's lock configuration (None: not lock-enabled); NoSuchBucket."""
    exists, xml = bucket_object_lock(reader.conn, bucket)
    if not exists:
        raise S3Error("NoSuchBucket", resource=bucket, fields={"BucketName": bucket})
    return None if xml is None else ol.parse_lock_configuration(xml.encode())


def _has_integrity_header(req: Request) -> bool:
    if "content-md5" in req.headers:
        return True
    names = {header_name(alg) for alg in ALGORITHMS}
    if any(name in req.headers for name in names):
        return True
    trailer = req.headers.get("x-amz-trailer", "").strip().lower()
    return trailer in names


def require_integrity(reader: MetaReader, req: Request) -> None:
    """PutObject and UploadPart to a lock-enabled bucket (AWS refuses them
    without Content-MD5 or a checksum, before the body)."""
    exists, xml = bucket_object_lock(reader.conn, req.bucket)
    if exists and xml is not None and not _has_integrity_header(req):
        raise S3Error("InvalidRequest", message=ol.CHECKSUM_REQUIRED_MSG)


def lock_init(reader: MetaReader, req: Request) -> tuple[Retention | None, bool]:
    """The lock a new version gets from PutObject, CopyObject or
    CreateMultipartUpload (its ``VersionMetaInit.lock`` and ``legal_hold``):
    its headers, else the bucket's default retention. Lock headers on a
    bucket without Object Lock are InvalidRequest."""
    now = wall_ms()
    asked = ol.parse_lock_headers(req.headers, now)
    config = bucket_lock(reader, req.bucket)
    if config is None:
        if asked.any:
            raise S3Error("InvalidRequest", message=ol.MISSING_CONFIG_MSG)
        return None, False
    retention = asked.retention
    if retention is None and config.rule is not None:
        retention = ol.Retention(config.rule.mode, config.rule.until_ms(now))
    lock = (
        None if retention is None else Retention(mode=retention.mode, until_ms=retention.until_ms)
    )
    return lock, bool(asked.legal_hold)


def with_lock(
    vmeta: VersionMetaInit | None, lock: Retention | None, hold: bool
) -> VersionMetaInit | None:
    """``vmeta`` (whatever else a write sets) with the version's lock added."""
    if lock is None and not hold:
        return vmeta
    if vmeta is None:
        return VersionMetaInit(lock=lock, legal_hold=hold)
    return msgspec.structs.replace(vmeta, lock=lock, legal_hold=hold)


def lock_headers(vmeta: bytes | None) -> list[tuple[bytes, bytes]]:
    """The ``x-amz-object-lock-*`` headers of a GET/HEAD answer, from the
    version's vmeta value (read with its row, so no extra query): mode and
    date when it has a retention, the legal-hold status when it has either.
    A damaged value sends none (the writer's copy is what enforces)."""
    if vmeta is None:
        return []
    try:
        value = decode_vmeta(vmeta)
    except FormatError:
        return []
    if value.lock is None and not value.legal_hold:
        return []
    mode = None if value.lock is None else value.lock.mode
    until = None if value.lock is None else value.lock.until_ms
    fields = ol.response_headers(mode, until, value.legal_hold, lock_bucket=True)
    return [(k.encode(), v.encode()) for k, v in fields.items()]
