"""Authorisation: who may do what, decided before any byte of a body is read.

Order per request (after the SigV4 check in ``app.py``):

1. Identity. A signed request names a key: the bootstrap admin key or an
   enabled key of ``api_keys`` (a disabled or deleted key already fails
   signature lookup with ``InvalidAccessKeyId``). An unsigned request is
   anonymous: refused unless its bucket is in ``--public-buckets``, and
   ``GET /`` (ListBuckets) and Seglake's own endpoints never are anonymous.
2. Bucket allow-list of the key (empty = every bucket); the copy source's
   bucket counts too.
3. Policies (``seglake/protocol/policy.py``): the key's own policy and the
   bucket's policy, AWS same-account logic — an explicit deny anywhere
   wins, otherwise one allow suffices. The admin has no key policy, but a
   bucket policy's explicit deny binds it too, except for the three bucket
   policy operations (so the operator can always repair a policy). An
   anonymous request (only on a bucket in ``--public-buckets``) needs an
   allow whose principal is ``"*"`` or a grant of the bucket's or object's
   ACL (``frontend/access.py``, ``protocol/acl.py``), and no explicit deny;
   a GET/HEAD of a missing object goes on to its 404 only when the caller
   may list the bucket, else it is 403 (as AWS). For signed requests ACLs
   add nothing: the key's own policy stays the ceiling.
   CopyObject/UploadPartCopy also need GetObject on the source.
   DeleteObjects is checked per key (``Request.object_check``) after a
   cheap up-front check that some statement could allow deleting at all.
4. Per-key in-flight limits, two pools counted apart (``InflightLimiter``),
   ``SlowDown`` (503, ``Retry-After``) when the request's pool is full. With
   ``L`` the key's own ``inflight`` or else ``--key-inflight-limit``:

   * writes — every request that is not a GET or HEAD, i.e. what may reach
     the single writer — at most ``ceil(L / frontends)`` per frontend, so the
     store-wide bound stays close to ``L`` without shared state between
     processes: this is what keeps one key from starving the writer;
   * reads — GET and HEAD, served from segment files and ``meta.db`` by the
     frontend alone — at most ``READS_PER_WRITE_SLOT * L`` per frontend, not
     divided: a read costs only the frontend that serves it, and the kernel
     spreads one client's connections unevenly over the frontends, so a
     divided share refused reads while the key was under its own limit.
     This bound keeps one key from exhausting a frontend (each read in
     flight may hold one verified chunk, ``CHUNK_SIZE``).

What an operation needs is read from its row of the endpoint table
(``seglake/protocol/endpoints.py``): its policy actions and target, and the
flags ``policy_repair``, ``copy_source`` and ``per_object`` used above.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Final

import apsw

from seglake.auth.canonical import canonical_id
from seglake.auth.directory import KeyDirectory, KeyRecord
from seglake.config import Config, csv_list
from seglake.errors import S3Error
from seglake.format.errors import FormatError
from seglake.format.vmeta import decode_vmeta
from seglake.frontend.access import AccessView
from seglake.frontend.http import Request
from seglake.meta.schema import query
from seglake.protocol.acl import READ, WRITE, needed_permission
from seglake.protocol.endpoints import BYPASS_GOVERNANCE, ENDPOINT_BY_NAME, OBJECT, SERVICE
from seglake.protocol.policy import (
    ALLOW,
    AUTH_HEADER,
    AUTH_POST,
    AUTH_QUERY,
    DENY,
    Policy,
    RequestContext,
    decide,
    decide_with_acl,
)
from seglake.protocol.tagging import parse_tagging_header

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# X-Forwarded-For hops examined at most: a hostile header of thousands of
# entries costs nothing beyond this.
MAX_FORWARDED_HOPS: Final = 32


def _denied(message: str = "Access Denied") -> S3Error:
    return S3Error("AccessDenied", message=message)


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in csv_list(text))


@functools.lru_cache(maxsize=1024)
def _peer_address(peer: str) -> IpAddress | None:
    """The TCP peer's address, parsed once per distinct peer (every request
    needs it, and ``ip_address`` costs ~10 µs); None if it does not parse."""
    try:
        return ipaddress.ip_address(peer)
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[IpNetwork, ...]
) -> IpAddress | None:
    """The client's address: the TCP peer, or — only when the peer is a
    trusted proxy — the nearest ``X-Forwarded-For`` hop that is not itself a
    trusted proxy (walking from the right, as each proxy appends)."""
    addr = _peer_address(peer) if peer else None
    if addr is None or not forwarded_for or not any(addr in net for net in trusted):
        return addr
    hops = [h.strip() for h in forwarded_for.split(",")][-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        try:
            hop_addr = ipaddress.ip_address(hop)
        except ValueError:
            return addr  # a hop we cannot read ends what we can trust
        if not any(hop_addr in net for net in trusted):
            return hop_addr
        addr = hop_addr
    return addr


# Reads a key may have running in one frontend per unit of its limit: 4 makes
# the default (32) allow 128 reads per frontend, so one key at c=128 is never
# refused however the kernel spreads its connections, while the chunks its
# reads may hold stay bounded (128 x 4 MiB at worst, for large objects sent
# to slow readers).
READS_PER_WRITE_SLOT: Final = 4

READ_METHODS: Final = frozenset({"GET", "HEAD"})


# Object writes whose x-amz-acl / x-amz-grant-* headers set the new object's ACL.
ACL_SETTING_WRITES: Final = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})


def _sets_acl(req: Request) -> bool:
    return "x-amz-acl" in req.headers or any(
        name.startswith("x-amz-grant-") for name in req.headers
    )


class InflightLimiter:
    """Per-key in-flight counts of one frontend, reads and writes apart
    (the rule is in this module's docstring)."""

    def __init__(self, default_limit: int, processes: int) -> None:
        self._default = default_limit
        self._processes = max(1, processes)
        self._writes: dict[str, int] = {}
        self._reads: dict[str, int] = {}

    def limit_for(self, record: KeyRecord, *, read: bool = False) -> int:
        """This frontend's limit for ``record`` in one pool; 0 = unlimited."""
        limit = record.inflight or self._default
        if limit <= 0:
            return 0
        if read:
            return limit * READS_PER_WRITE_SLOT
        return max(1, math.ceil(limit / self._processes))

    @contextlib.contextmanager
    def slot(self, record: KeyRecord, *, read: bool = False) -> Iterator[None]:
        limit = self.limit_for(record, read=read)
        counts = self._reads if read else self._writes
        key = record.access_key
        running = counts.get(key, 0)
        if limit and running >= limit:
            kind = "reads" if read else "writes"
            raise S3Error(
                "SlowDown",
                message=f"Too many {kind} in flight for this access key ({limit} per frontend)",
            )
        counts[key] = running + 1
        try:
            yield
        finally:
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]


def _header_tags(req: Request) -> tuple[tuple[str, str], ...] | None:
    """The tags ``x-amz-tagging`` asks for, for s3:RequestObjectTag/...; a
    malformed header gives none here (its handler refuses it)."""
    raw = req.headers.get("x-amz-tagging")
    if raw is None:
        return None
    try:
        return tuple(parse_tagging_header(raw))
    except S3Error:
        return None


class Authorizer:
    def __init__(self, cfg: Config, conn: apsw.Connection) -> None:
        self.cfg = cfg
        self.conn = conn
        self.directory = KeyDirectory(conn, cfg.root, cfg.access_key, cfg.secret_key)
        self.public_buckets = frozenset(csv_list(cfg.public_buckets))
        self.trusted = parse_networks(cfg.trusted_proxies)
        self.limiter = InflightLimiter(cfg.key_inflight_limit, cfg.frontend_count())
        self.access = AccessView(conn, cfg.access_key)

    def secret_for(self, access_key: str) -> str | None:
        """The SigV4 verifier's lookup: only enabled keys can sign."""
        record = self.directory.lookup(access_key)
        if record is None or not record.enabled:
            return None
        return record.secret

    # ---- the decision ----------------------------------------------------
    @contextlib.contextmanager
    def authorize(self, req: Request) -> Iterator[None]:
        """Raise ``S3Error`` unless ``req`` may run; hold its in-flight slot."""
        assert req.route is not None
        record: KeyRecord | None = None
        if req.auth is not None:
            record = self.directory.lookup(req.auth.access_key)
            if record is None or not record.enabled:
                # Revoked between signature check and here.
                raise S3Error("InvalidAccessKeyId")
        req.identity = record
        op = req.route.operation
        bucket = req.route.bucket

        def bypass_check(key: str, version_id: str | None = None) -> bool:
            try:
                self._check(req, record, BYPASS_GOVERNANCE, bucket, key, version_id)
            except S3Error:
                return False
            return True

        req.bypass_check = bypass_check
        endpoint = ENDPOINT_BY_NAME[op]
        per_object = endpoint.per_object
        if per_object is not None:
            self._check_may_act(req, record, per_object)

            def object_check(key: str, version_id: str | None = None) -> None:
                self._check(req, record, per_object, req.bucket, key, version_id)

            req.object_check = object_check
        else:
            version = req.q("versionId")
            self._check(req, record, op, req.route.bucket, req.route.key, version)
            if record is not None and op in ACL_SETTING_WRITES and _sets_acl(req):
                # AWS: a write that also sets the new object's ACL needs
                # s3:PutObjectAcl too (a key allowed only PutObject may not
                # publish what it writes). Anonymous writers are bounded by
                # the bucket ACL and --public-buckets instead.
                self._check(req, record, "PutObjectAcl", req.route.bucket, req.route.key)
            if endpoint.copy_source:
                self._check_copy_source(req, record)
            if op == "PutObjectTagging":
                # Its tags are in the body, read after this decision: the
                # handler asks again with them (s3:RequestObjectTag/...).
                bucket, key = req.route.bucket, req.route.key

                def tag_check(tags: Sequence[tuple[str, str]]) -> None:
                    self._check(req, record, op, bucket, key, version, request_tags=tuple(tags))

                req.tag_check = tag_check
        if record is None:
            yield
            return
        with self.limiter.slot(record, read=endpoint.method in READ_METHODS):
            yield

    def _context(
        self,
        req: Request,
        record: KeyRecord | None,
        op: str,
        bucket: str,
        key: str,
        version_id: str | None,
        request_tags: tuple[tuple[str, str], ...] | None = None,
    ) -> RequestContext:
        client = req.scope.get("client")
        peer = str(client[0]) if client else None
        endpoint = ENDPOINT_BY_NAME.get(op)  # None: a permission, not an operation
        listing = endpoint is not None and endpoint.listing
        auth_type = None
        if req.auth is not None:
            if endpoint is not None and endpoint.signed_form:
                auth_type = AUTH_POST
            else:
                auth_type = AUTH_QUERY if req.auth.presigned else AUTH_HEADER
        return RequestContext(
            operation=op,
            bucket=bucket,
            key=key,
            principal=record.access_key if record is not None else None,
            source_ip=client_address(peer, req.headers.get("x-forwarded-for"), self.trusted),
            now=datetime.now(UTC),
            secure_transport=self._secure(req, peer),
            headers=req.headers,
            prefix=req.q("prefix") if listing else None,
            delimiter=req.q("delimiter") if listing else None,
            version_id=version_id,
            admin=record is not None and record.admin,
            max_keys=req.q("max-keys") if listing else None,
            auth_type=auth_type,
            region=self.cfg.region,
            canonical_id=canonical_id(record.access_key) if record is not None else None,
            request_tags=request_tags if request_tags is not None else _header_tags(req),
            existing_tags=(
                (lambda: self._existing_tags(bucket, key, version_id))
                # The bypass permission (no endpoint) is checked on an object too.
                if (endpoint is None or endpoint.target == OBJECT) and key
                else None
            ),
        )

    def _existing_tags(
        self, bucket: str, key: str, version_id: str | None
    ) -> Sequence[tuple[str, str]]:
        """The tags of the version a request addresses (none if it has none
        or does not exist): s3:ExistingObjectTag/<key>."""
        if version_id is None:
            sql = (
                "SELECT v.vmeta FROM current c JOIN versions v ON v.id = c.version "
                "WHERE c.bucket = ? AND c.key = ?"
            )
            params: tuple[str, ...] = (bucket, key)
        else:
            sql = (
                "SELECT vmeta FROM versions WHERE bucket = ? AND key = ? AND version_id = ? "
                "AND state != 'DELETED' AND tombstone = 0"
            )
            params = (bucket, key, version_id)
        rows = query(self.conn, sql, params)
        if not rows:
            return ()
        try:
            return decode_vmeta(rows[0][0]).tags
        except FormatError:
            return ()

    def _secure(self, req: Request, peer: str | None) -> bool:
        if req.scope.get("scheme") == "https":
            return True
        proto = req.headers.get("x-forwarded-proto")
        if proto is None or peer is None:
            return False
        try:
            trusted_peer = any(ipaddress.ip_address(peer) in net for net in self.trusted)
        except ValueError:
            return False
        return trusted_peer and proto.strip().lower() == "https"

    def _policies(self, bucket: str) -> Policy | None:
        return self.directory.bucket_policy(bucket) if bucket else None

    def _check(
        self,
        req: Request,
        record: KeyRecord | None,
        op: str,
        bucket: str,
        key: str,
        version_id: str | None = None,
        request_tags: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        if record is None:
            self._check_anonymous(req, op, bucket, key, version_id, request_tags)
            return
        if bucket and not record.may_use_bucket(bucket):
            raise _denied("This access key may not use this bucket")
        bucket_policy = self._policies(bucket)
        if record.admin:
            # The request context (client address, clock) is built only when
            # a policy will read it: most admin requests meet none.
            if (
                bucket_policy is not None
                and not (op in ENDPOINT_BY_NAME and ENDPOINT_BY_NAME[op].policy_repair)
                and bucket_policy.explicit_deny(
                    self._context(req, record, op, bucket, key, version_id, request_tags)
                )
            ):
                raise _denied("Explicitly denied by the bucket policy")
            return
        ctx = self._context(req, record, op, bucket, key, version_id, request_tags)
        assert record.policy is not None
        verdict = decide(ctx, record.policy, bucket_policy)
        if verdict == DENY:
            raise _denied("Explicitly denied by a policy")
        if verdict != ALLOW:
            raise _denied()

    def _check_anonymous(
        self,
        req: Request,
        op: str,
        bucket: str,
        key: str,
        version_id: str | None,
        request_tags: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        if op not in ENDPOINT_BY_NAME or ENDPOINT_BY_NAME[op].target == SERVICE or not bucket:
            raise _denied("Anonymous access is not allowed")
        if bucket not in self.public_buckets:
            raise _denied("Anonymous access is not allowed")
        policy = self._policies(bucket)
        ctx = self._context(req, None, op, bucket, key, version_id, request_tags)
        if policy is not None and policy.explicit_deny(ctx):
            raise _denied("Anonymous access is not allowed for this operation")
        if policy is not None and policy.allows_anonymous(ctx):
            return
        if not self._acl_allows_anonymous(req, op, bucket, key, version_id):
            raise _denied("Anonymous access is not allowed for this operation")

    def _acl_allows_anonymous(
        self, req: Request, op: str, bucket: str, key: str, version_id: str | None
    ) -> bool:
        """Does the bucket's or the object's ACL let an anonymous caller run
        ``op``? (Its explicit denies were checked already.) For an object
        that does not exist, AWS answers 404 to a caller who may list the
        bucket and 403 to others, so the request goes on to its handler
        (and its 404) exactly when the caller may list."""
        needed = needed_permission(op, version_id)
        if needed is None:
            return False
        target, permission = needed
        state = self.access.bucket(bucket)
        if state is None:
            return False  # no bucket: AccessDenied, as AWS tells strangers
        if target == "bucket":
            return state.allows(None, permission)
        obj = self.access.object(state, bucket, key, version_id)
        if obj is not None and not (obj.delete_marker and version_id is None):
            return obj.allows(None, permission)
        if state.allows(None, READ):
            return True
        policy = self._policies(bucket)
        if policy is None:
            return False
        ctx = self._context(req, None, "ListObjects", bucket, "", None)
        return decide_with_acl(ctx, None, policy, False) == ALLOW

    def _bucket_acl_may_write(self, bucket: str) -> bool:
        state = self.access.bucket(bucket)
        return state is not None and state.allows(None, WRITE)

    def _check_copy_source(self, req: Request, record: KeyRecord | None) -> None:
        # Imported here: the copy family imports the request module we share.
        from seglake.frontend.copy import parse_copy_source

        source = parse_copy_source(req.headers.get("x-amz-copy-source", ""))
        self._check(req, record, "GetObject", source.bucket, source.key, source.version_id)

    def _check_may_act(self, req: Request, record: KeyRecord | None, action: str) -> None:
        """Up-front check for operations authorised per object later: the
        bucket must be usable and some statement must be able to allow
        ``action`` for this principal at all."""
        assert req.route is not None
        bucket = req.route.bucket
        if record is None:
            if bucket not in self.public_buckets:
                raise _denied("Anonymous access is not allowed")
        elif not record.may_use_bucket(bucket):
            raise _denied("This access key may not use this bucket")
        if record is not None and record.admin:
            return
        if record is not None:
            # A key's own policy is its ceiling: only it can allow (policy.decide).
            assert record.policy is not None
            hopeful = record.policy.may_allow(action, record.access_key)
        else:
            bucket_policy = self._policies(bucket)
            hopeful = (
                bucket_policy is not None and bucket_policy.may_allow(action, None)
            ) or self._bucket_acl_may_write(bucket)
        if not hopeful:
            raise _denied()
