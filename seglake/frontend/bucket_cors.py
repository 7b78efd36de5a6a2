"""Get/Put/DeleteBucketCors (``?cors``), and the bucket's rules as the CORS
headers of requests that carry an ``Origin``.

Rules this module keeps:

* A configuration is parsed completely before it is stored
  (``seglake/protocol/bucket_cors.py``: AWS's schema and error codes) and
  nothing changes when it is refused. The writer parses it once more and
  stores its canonical XML, which GetBucketCors hands back
  (``NoSuchCORSConfiguration`` when the bucket has none).
* As AWS requires, the PUT body carries Content-MD5 or an
  ``x-amz-checksum-*`` value (header or trailer); neither is
  ``InvalidRequest``, a mismatch ``BadDigest``. The body is integrity-checked
  like any upload and at most ``MAX_BODY_BYTES`` are read.
* Who may call these is decided by ``authz.py`` like every operation
  (actions ``s3:GetBucketCORS``, ``s3:PutBucketCORS``; AWS has no separate
  delete action).
* ``bucket_rules`` is read on every request that carries an ``Origin`` (one
  primary-key lookup on the frontend's read-only connection; parsed
  configurations are cached by their text), so a committed Put or Delete
  applies from the next request on, in every frontend, with no message
  between processes.
"""

from __future__ import annotations

import apsw

from seglake.errors import S3Error
from seglake.frontend.body import configuration_body
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.ipc.messages import SetBucketCors
from seglake.meta.schema import query
from seglake.protocol.bucket_cors import MAX_BODY_BYTES, CorsConfiguration, parse_cors, parse_stored


def stored_cors(conn: apsw.Connection, bucket: str) -> str | None:
    rows = query(conn, "SELECT cors FROM buckets WHERE name = ?", (bucket,))
    return None if not rows or rows[0][0] is None else str(rows[0][0])


def bucket_rules(conn: apsw.Connection, bucket: str) -> CorsConfiguration | None:
    """The bucket's CORS configuration; None when it has none (or does not
    exist): the server-wide ``--cors-*`` settings apply then."""
    if not bucket:
        return None
    text = stored_cors(conn, bucket)
    if text is None:
        return None
    try:
        return parse_stored(text)
    except S3Error:
        return None  # the writer stores only what parses; never fail a request on it


class BucketCorsHandlers(FamilyBase):
    async def get_cors(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        text = stored_cors(self.reader.conn, req.bucket)
        if text is None:
            raise S3Error(
                "NoSuchCORSConfiguration", resource=req.bucket, fields={"BucketName": req.bucket}
            )
        await req.xml(200, text.encode())

    async def put_cors(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        body = await configuration_body(req, self.cfg, MAX_BODY_BYTES)
        parse_cors(body)  # AWS's errors, before the writer is asked
        text = body.decode("utf-8")  # parsed above, so it is UTF-8
        await self.writer.call(SetBucketCors(bucket=req.bucket, configuration=text))
        await req.respond(200)

    async def delete_cors(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        await self.writer.call(SetBucketCors(bucket=req.bucket, configuration=None))
        await req.respond(204)
