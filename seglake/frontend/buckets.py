"""Service and bucket operations: ListBuckets, Create/Delete/HeadBucket,
GetBucketLocation, ListObjects V1 and V2."""

from __future__ import annotations

from collections.abc import Iterator

from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.ipc.messages import CreateBucket, DeleteBucket
from seglake.meta.reads import ListEntry
from seglake.protocol import bucket_listing, listing, object_lock
from seglake.protocol.limits import validate_bucket_name
from seglake.protocol.xml import document, el, iso8601

OWNER_ID = "seglake"
LIST_BATCH = 1000
# CreateBucket may carry a CreateBucketConfiguration of a few hundred bytes.
SMALL_BODY_LIMIT = 64 * 1024


def owner_xml(tag: str = "Owner") -> str:
    """The one owner every bucket and object has, as a listing shows it
    (also as a multipart upload's ``Initiator``)."""
    return f"<{tag}>" + el("ID", OWNER_ID) + el("DisplayName", OWNER_ID) + f"</{tag}>"


class BucketHandlers(FamilyBase):
    async def list_objects_v1(self, req: Request) -> None:
        await self.list_objects(req, v2=False)

    async def list_objects_v2(self, req: Request) -> None:
        await self.list_objects(req, v2=True)

    async def list_buckets(self, req: Request) -> None:
        q = bucket_listing.parse_query(req.query)
        visible = (
            b
            for b in self.reader.buckets()
            # The key's bucket allow-list (set by frontend/authz.py).
            if req.identity is None or req.identity.may_use_bucket(b.name)
        )
        created = {b.name: b.created_ns for b in visible}
        got = bucket_listing.page(created, q, self.cfg.region)
        items = "".join(
            "<Bucket>"
            + el("Name", name)
            + el("CreationDate", iso8601(created[name]))
            + el("BucketRegion", self.cfg.region)
            + "</Bucket>"
            for name in got.names
        )
        tail = []
        if got.next_token is not None:
            tail.append(el("ContinuationToken", got.next_token))
        if q.prefix:
            tail.append(el("Prefix", q.prefix))
        await req.xml(
            200,
            document("ListAllMyBucketsResult", [owner_xml(), f"<Buckets>{items}</Buckets>", *tail]),
        )

    async def create_bucket(self, req: Request) -> None:
        validate_bucket_name(req.bucket)
        await req.small_body(SMALL_BODY_LIMIT, allow_unsigned=self.cfg.allow_unsigned_payload)
        versioning = (
            req.headers.get("x-seglake-versioning", self.cfg.default_versioning).strip().lower()
        )
        # Object Lock at creation: versioning comes with it (the writer sees to it).
        lock = object_lock.parse_bucket_lock_enabled(req.headers)
        config = object_lock.LockConfiguration().to_xml().decode() if lock else None
        await self.writer.call(
            CreateBucket(bucket=req.bucket, versioning=versioning, object_lock=config)
        )
        await req.respond(200, [(b"location", f"/{req.bucket}".encode())])

    async def delete_bucket(self, req: Request) -> None:
        await self.writer.call(DeleteBucket(bucket=req.bucket))
        await req.respond(204)

    async def head_bucket(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        await req.respond(200, [(b"x-amz-bucket-region", self.cfg.region.encode())])

    async def get_bucket_location(self, req: Request) -> None:
        self.require_bucket(req.bucket)
        # us-east-1 is reported as an empty LocationConstraint, as AWS does.
        region = "" if self.cfg.region == "us-east-1" else self.cfg.region
        await req.xml(200, document("LocationConstraint", [region]))

    async def list_objects(self, req: Request, v2: bool) -> None:
        self.require_bucket(req.bucket)
        lq = listing.ListQuery.parse(req.q)
        prefix, delimiter, enc = lq.prefix, lq.delimiter, lq.show
        max_keys = listing.parse_max_keys(req.q("max-keys"))
        token = req.q("continuation-token") if v2 else None
        start_after = req.q("start-after" if v2 else "marker") or ""
        after = listing.decode_token(token) if token is not None else start_after
        after = listing.skip_cursor(after, delimiter, prefix)

        def fetch(cursor: str) -> Iterator[ListEntry]:
            return self.reader.live_keys(req.bucket, cursor, prefix, LIST_BATCH)

        page = listing.paginate(
            fetch, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )
        fetch_owner = v2 and req.q("fetch-owner") == "true"
        parts = [el("Name", req.bucket), el("Prefix", enc(prefix))]
        if v2:
            if token is not None:
                parts.append(el("ContinuationToken", token))
            if start_after:
                parts.append(el("StartAfter", enc(start_after)))
            parts.append(el("KeyCount", len(page.contents) + len(page.common_prefixes)))
        else:
            parts.append(el("Marker", enc(start_after)))
        parts += [el("MaxKeys", max_keys), *lq.echo_xml(), el("IsTruncated", page.is_truncated)]
        if page.is_truncated and page.last is not None:
            if v2:
                parts.append(el("NextContinuationToken", listing.encode_token(page.last)))
            elif delimiter:
                parts.append(el("NextMarker", enc(page.last)))
        for e in page.contents:
            item = (
                el("Key", enc(e.key)) + el("LastModified", iso8601(e.created_ns))
                + el("ETag", f'"{e.etag}"') + el("Size", e.size)
                + el("StorageClass", "STANDARD")
            )  # fmt: skip
            if fetch_owner or not v2:
                item += owner_xml()
            parts.append(f"<Contents>{item}</Contents>")
        parts += lq.common_prefixes_xml(page.common_prefixes)
        await req.xml(200, document("ListBucketResult", parts))
