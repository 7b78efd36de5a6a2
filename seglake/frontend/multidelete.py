"""DeleteObjects: POST ?delete with an XML list of keys (``aws s3 rm
--recursive``, rclone).

Rules this module keeps:

* The body is integrity-checked like any upload (payload SHA-256, aws-chunked
  signatures) and, as AWS requires, carries Content-MD5 or an
  ``x-amz-checksum-*`` value (header or trailer) that must match it
  (``BadDigest``); neither → ``InvalidRequest``. At most
  ``MAX_DELETE_BODY_BYTES`` are read.
* At most 1000 objects; none, more, or a malformed document → ``MalformedXML``
  (``seglake/protocol/xml_requests.py`` parses the body).
* Every object is deleted exactly as DeleteObject would delete it, all in one
  writer call (one transaction, a savepoint per key); a key that fails gets
  an ``<Error>`` entry and the others still happen.
* An object may carry conditions (``ETag``, ``LastModifiedTime``, ``Size``):
  the writer decides them against the key's current version under that
  key's savepoint, so an object whose condition fails gets its own
  ``<Error>`` (``PreconditionFailed``; ``NoSuchKey`` for an ETag on no
  object) and the others still happen.
* Quiet mode lists only the errors. Entries come back in request order.
"""

from __future__ import annotations

from seglake.errors import S3Error
from seglake.frontend.body import declared_length, has_integrity_header, ingest
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.objects import delete_condition, validate_key, validate_version_id
from seglake.ipc.messages import DeleteCondition, DeleteObjects, DeleteResult
from seglake.protocol.xml import document, el
from seglake.protocol.xml_requests import MAX_DELETE_BODY_BYTES, parse_delete


class MultiDeleteHandlers(FamilyBase):
    async def delete_objects(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        if not has_integrity_header(req):
            raise S3Error(
                "InvalidRequest", message="Missing required header for this request: Content-Md5"
            )
        length = declared_length(req, self.cfg)
        if length > MAX_DELETE_BODY_BYTES:
            raise S3Error("MaxMessageLengthExceeded")

        async def on_chunk(data: bytes, digest: bytes, index: int) -> None:
            raise S3Error("MaxMessageLengthExceeded")  # a full 4 MiB chunk: far too big

        body = await ingest(req, self.cfg, length, on_chunk)
        parsed = parse_delete(body.tail)

        # Keys that cannot exist are answered here; the rest go to the writer.
        entries: list[DeleteResult | None] = []
        todo: list[tuple[str, str | None]] = []
        todo_conds: list[DeleteCondition | None] = []
        for index, (key, version_id) in enumerate(parsed.objects):
            try:
                validate_key(key)
                if req.object_check is None:
                    raise S3Error("AccessDenied")  # never unauthorised by omission
                # Per-key policy check (AWS answers AccessDenied per entry).
                req.object_check(key, version_id)
                if version_id is not None:
                    try:
                        validate_version_id(version_id)
                    except S3Error:
                        # AWS answers a version id it could never have issued
                        # as a per-key NoSuchVersion.
                        raise S3Error(
                            "NoSuchVersion", message="The specified version does not exist."
                        ) from None
            except S3Error as exc:
                entries.append(DeleteResult(error=exc.code, message=exc.text))
                continue
            entries.append(None)
            todo.append((key, version_id))
            cond = parsed.conditions.get(index)
            todo_conds.append(None if cond is None else delete_condition(cond))
        results: list[DeleteResult] = []
        if todo:
            # Conditions only when some object carries one (aligned with todo).
            sent = todo_conds if any(c is not None for c in todo_conds) else []
            # Object Lock: one flag for the request, so it is set only when
            # every versioned entry may bypass GOVERNANCE retention.
            versioned = [(k, v) for k, v in todo if v is not None]
            bypass = bool(versioned) and all(req.may_bypass_governance(k, v) for k, v in versioned)
            reply = await self.writer.call(
                DeleteObjects(
                    bucket=req.bucket, objects=todo, conditions=sent, bypass_governance=bypass
                )
            )
            results = reply.results
        it = iter(results)
        parts: list[str] = []
        for (key, version_id), entry in zip(parsed.objects, entries, strict=True):
            r = entry if entry is not None else next(it)
            if r.error is not None:
                fields = [el("Key", key)]
                if version_id is not None:
                    fields.append(el("VersionId", version_id))
                fields += [el("Code", r.error), el("Message", r.message or "")]
                parts.append("<Error>" + "".join(fields) + "</Error>")
                continue
            if parsed.quiet:
                continue
            fields = [el("Key", key)]
            if version_id is not None:
                fields.append(el("VersionId", version_id))
            if r.delete_marker:
                fields.append(el("DeleteMarker", True))
                marker_id = version_id if version_id is not None else r.version_id
                if marker_id:
                    fields.append(el("DeleteMarkerVersionId", marker_id))
            parts.append("<Deleted>" + "".join(fields) + "</Deleted>")
        await req.xml(200, document("DeleteResult", parts))
