"""``seglake bucket delete NAME --force``: empty a bucket, then delete it.

The seed's ``segctl bucket delete --force``. Every change is an ordinary
writer mutation, the same ones a client's requests make: open uploads go
with ``abort_upload``, every version and delete marker with
``delete_objects`` (by version id, so nothing new is written), and the
bucket with ``delete_bucket``. So the writer's own rules hold throughout
(maintenance mode refuses it like any data change), each batch is one
transaction, and a crash half-way leaves a smaller bucket, never a torn one:
running the command again finishes the job.

Clients may keep writing while this runs. A write that lands after its key
was passed over makes the final ``delete_bucket`` refuse (``BucketNotEmpty``);
the purge then goes round again, at most ``MAX_ROUNDS`` times, and reports a
bucket that keeps filling rather than looping for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TypeVar

from seglake.errors import S3Error
from seglake.ipc.messages import AbortUpload, DeleteBucket, DeleteObjects, Request
from seglake.meta.maintenance_reads import read_rows
from seglake.protocol.xml_requests import MAX_DELETE_KEYS

# One DeleteObjects' worth per writer batch: the bound the writer already
# accepts from any client, so a purge holds the writer no longer than a
# client's request can.
PURGE_BATCH: Final = MAX_DELETE_KEYS
MAX_ROUNDS: Final = 5

R = TypeVar("R")
Progress = Callable[[int], None]


class Apply(Protocol):
    """Runs one writer request (live or embedded); raises ``S3Error`` on a refusal."""

    def __call__(self, msg: Request[R], /) -> R: ...


@dataclass
class PurgeReport:
    bucket: str
    versions_deleted: int = 0
    uploads_aborted: int = 0
    rounds: int = 0
    # Per-version refusals from the writer, ``key@version: code``, capped.
    errors: list[str] = field(default_factory=list)


class PurgeFailed(Exception):
    """The bucket could not be emptied and deleted; ``report`` says how far it got."""

    def __init__(self, message: str, report: PurgeReport) -> None:
        super().__init__(message)
        self.report = report


def pending_counts(db_path: Path, bucket: str) -> tuple[int, int]:
    """(live versions incl. delete markers, open uploads) of ``bucket``."""
    rows = read_rows(
        db_path,
        ("versions", "uploads"),
        "SELECT (SELECT count(*) FROM versions WHERE bucket = ? AND state != 'DELETED'), "
        "(SELECT count(*) FROM uploads WHERE bucket = ?)",
        (bucket, bucket),
    )
    return int(rows[0]["versions"]), int(rows[0]["uploads"])


def locked_versions(db_path: Path, bucket: str) -> int:
    """How many of ``bucket``'s versions Object Lock protects now, by the
    later of this clock and the writer's lock-clock high-water mark (the
    writer refuses each of them anyway; this answers before any change)."""
    rows = read_rows(
        db_path,
        ("n",),
        "SELECT count(*) FROM versions WHERE bucket = ? "
        "AND (lock_until_ms IS NOT NULL OR legal_hold = 1) AND state != 'DELETED' "
        "AND (legal_hold = 1 OR lock_until_ms > max(?, coalesce((SELECT CAST(value AS INTEGER) "
        "FROM settings WHERE name = 'lock_clock_hwm'), 0)))",
        (bucket, time.time_ns() // 1_000_000),
    )
    return int(rows[0]["n"])


def bucket_exists(db_path: Path, bucket: str) -> bool:
    return bool(read_rows(db_path, ("one",), "SELECT 1 FROM buckets WHERE name = ?", (bucket,)))


def _abort_uploads(db_path: Path, report: PurgeReport, apply: Apply, progress: Progress) -> None:
    uploads = read_rows(
        db_path,
        ("key", "upload_id"),
        "SELECT key, upload_id FROM uploads WHERE bucket = ? ORDER BY created_ns",
        (report.bucket,),
    )
    for u in uploads:
        try:
            apply(AbortUpload(bucket=report.bucket, key=u["key"], upload_id=u["upload_id"]))
            report.uploads_aborted += 1
        except S3Error as exc:
            # Completed or aborted by a client meanwhile: gone either way.
            if exc.code != "NoSuchUpload":
                raise
        progress(1)


def _delete_versions(db_path: Path, report: PurgeReport, apply: Apply, progress: Progress) -> None:
    after = 0
    while True:
        rows = read_rows(
            db_path,
            ("id", "key", "version_id"),
            "SELECT id, key, version_id FROM versions WHERE bucket = ? AND state != 'DELETED' "
            "AND id > ? ORDER BY id LIMIT ?",
            (report.bucket, after, PURGE_BATCH),
        )
        if not rows:
            return
        after = int(rows[-1]["id"])
        objects: list[tuple[str, str | None]] = [(r["key"], r["version_id"]) for r in rows]
        result = apply(DeleteObjects(bucket=report.bucket, objects=objects))
        for (key, version_id), item in zip(objects, result.results, strict=True):
            if item.error:
                if len(report.errors) < 20:
                    report.errors.append(f"{key}@{version_id}: {item.error}")
            else:
                report.versions_deleted += 1
        progress(len(rows))


def purge_bucket(
    db_path: Path, bucket: str, apply: Apply, progress: Progress | None = None
) -> PurgeReport:
    """Abort ``bucket``'s uploads, delete its versions, then the bucket.

    ``apply(request)`` runs one writer request (live or embedded) and
    raises ``S3Error`` on a refusal. Raises ``PurgeFailed`` when the
    bucket is still not empty after ``MAX_ROUNDS`` passes or a version
    could not be deleted.
    """
    report = PurgeReport(bucket)
    tick: Progress = progress or (lambda n: None)
    if not bucket_exists(db_path, bucket):
        raise S3Error("NoSuchBucket", resource=bucket, fields={"BucketName": bucket})
    locked = locked_versions(db_path, bucket)
    if locked:
        # Refused before anything is deleted: a purge that stopped at the
        # first locked version would already have destroyed the others.
        raise PurgeFailed(
            f"{bucket} holds {locked} version(s) protected by Object Lock (retention or "
            "legal hold); it cannot be deleted until they expire or are released",
            report,
        )
    for _ in range(MAX_ROUNDS):
        report.rounds += 1
        _abort_uploads(db_path, report, apply, tick)
        _delete_versions(db_path, report, apply, tick)
        if report.errors:
            raise PurgeFailed(f"{len(report.errors)} version(s) could not be deleted", report)
        try:
            apply(DeleteBucket(bucket=bucket))
            return report
        except S3Error as exc:
            if exc.code != "BucketNotEmpty":
                raise
    raise PurgeFailed(
        f"still not empty after {MAX_ROUNDS} passes: clients keep writing to {bucket}", report
    )
