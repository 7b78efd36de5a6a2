"""Service and bucket operations: ListBuckets, Create/Delete/HeadBucket,
GetBucketLocation, ListObjects V1 and V2."""

from __future__ import annotations

from collections.abc import Iterator

from seglake.errors import S3Error
from seglake.frontend.access import refuse_public_acl
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.ipc.messages import CreateBucket, DeleteBucket
from seglake.meta.acl_reads import current_owners
from seglake.meta.reads import ListEntry
from seglake.protocol import bucket_listing, listing
from seglake.protocol.acl import PRIVATE, Acl, acl_from_headers, bucket_acl_text
from seglake.protocol.limits import validate_bucket_name
from seglake.protocol.ownership import acl_allowed, parse_ownership_header
from seglake.protocol.xml import document, el, iso8601

LIST_BATCH = 1000
# CreateBucket may carry a CreateBucketConfiguration of a few hundred bytes.
SMALL_BODY_LIMIT = 64 * 1024


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
            document(
                "ListAllMyBucketsResult",
                [self._caller_xml(req), f"<Buckets>{items}</Buckets>", *tail],
            ),
        )

    def _caller_xml(self, req: Request) -> str:
        """ListBuckets' Owner: the caller, as AWS shows the requesting account."""
        requester = self.access.requester(req.identity)
        return self.access.owner_xml(requester if requester is not None else self.access.account_id)

    async def create_bucket(self, req: Request) -> None:
        validate_bucket_name(req.bucket)
        await req.small_body(SMALL_BODY_LIMIT, allow_unsigned=self.cfg.allow_unsigned_payload)
        versioning = (
            req.headers.get("x-seglake-versioning", self.cfg.default_versioning).strip().lower()
        )
        owner = self.access.requester(req.identity) or self.access.account_id
        acl, ownership = self._new_bucket_access(req, owner)
        # Re-creating one's bucket answers 200 and changes nothing (AWS's
        # us-east-1 behaviour), its ACL and controls included.
        await self.writer.call(
            CreateBucket(
                bucket=req.bucket, versioning=versioning,
                acl=bucket_acl_text(owner, acl or Acl(canned=PRIVATE)), ownership=ownership,
            )
        )  # fmt: skip
        await req.respond(200, [(b"location", f"/{req.bucket}".encode())])

    def _new_bucket_access(self, req: Request, owner: str) -> tuple[Acl | None, str | None]:
        """The ACL and ownership controls CreateBucket asks for, checked as
        AWS does before anything is created."""
        acl = acl_from_headers(req.headers, self.access.index.known, bucket=True)
        header = req.headers.get("x-amz-object-ownership")
        ownership = parse_ownership_header(header) if header is not None else None
        if not acl_allowed(ownership, acl, owner):
            raise S3Error("InvalidBucketAclWithObjectOwnership")
        refuse_public_acl(acl, owner, owner, self.cfg, req.bucket)
        return acl, ownership

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
        fetch_owner = not v2 or req.q("fetch-owner") == "true"
        owners: dict[str, str] = {}
        bucket_acl = None
        owner_xml = self.access.owner_renderer()
        if fetch_owner:
            bucket_acl = self.access.bucket(req.bucket)
            owners = current_owners(self.reader.conn, req.bucket, [e.key for e in page.contents])
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
            if fetch_owner:
                item += owner_xml(self.access.listed_owner(bucket_acl, owners.get(e.key)))
            parts.append(f"<Contents>{item}</Contents>")
        parts += lq.common_prefixes_xml(page.common_prefixes)
        await req.xml(200, document("ListBucketResult", parts))
