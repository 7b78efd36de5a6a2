"""``GET /v1/meta/conflicts`` (policy action ``GetMetaConflicts``): the
versions that lost a concurrent write on another site and stand in state
CONFLICT (docs/design-replication.md §3), as JSON, paged by key.

Query: ``bucket``, ``prefix``, ``limit`` (1..1000, default 1000) and the
position to continue from, ``after_bucket``, ``after_key``,
``after_version``, which a truncated answer gives back in ``next``.
Answer: ``{"conflicts": [...], "truncated": bool, "next": {...} | null}``.
A key limited to some buckets (``seglake keys allow-bucket``) sees only
the conflicts of those.
"""

from __future__ import annotations

import json
from typing import Any

from seglake.errors import S3Error
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.meta.conflict_reads import DEFAULT_PAGE, MAX_PAGE, conflict_page
from seglake.protocol import hlc as hlc_rules

_AFTER = ("after_bucket", "after_key", "after_version")


def _bad(name: str, value: str, why: str) -> S3Error:
    return S3Error(
        "InvalidArgument", message=f"{name}: {why}",
        fields={"ArgumentName": name, "ArgumentValue": value[:256]},
    )  # fmt: skip


def _limit(req: Request) -> int:
    raw = req.q("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or len(raw) > 7 or not 1 <= int(raw) <= MAX_PAGE:
        raise _bad("limit", raw, f"an integer 1..{MAX_PAGE}")
    return int(raw)


class ConflictHandlers(FamilyBase):
    async def meta_conflicts(self, req: Request) -> None:
        limit = _limit(req)
        bucket = req.q("bucket") or None
        prefix = req.q("prefix") or ""
        given = [req.q(n) for n in _AFTER]
        after: tuple[str, str, str] | None = None
        if any(v is not None for v in given):
            if given[0] is None or given[1] is None:
                raise _bad("after_bucket", given[0] or "", "after_bucket and after_key go together")
            after = (given[0], given[1], given[2] or "")
        page = conflict_page(
            self.reader.conn, bucket=bucket, prefix=prefix, limit=limit, after=after
        )
        # A key limited to some buckets sees only theirs (as ListBuckets);
        # the page still ends where the scan did, so paging is unchanged.
        rows = [
            r for r in page.rows if req.identity is None or req.identity.may_use_bucket(r.bucket)
        ]
        doc: dict[str, Any] = {
            "conflicts": [
                {
                    "bucket": r.bucket,
                    "key": r.key,
                    "version_id": r.version_id,
                    "uid": r.uid,
                    "hlc": r.hlc,
                    "hlc_ms": hlc_rules.physical_ms(r.hlc),
                    "site": r.site,
                    "size": r.size,
                    "etag": r.etag,
                    "delete_marker": r.delete_marker,
                    "created_ns": r.created_ns,
                }
                for r in rows
            ],
            "truncated": page.next is not None,
            "next": None if page.next is None else dict(zip(_AFTER, page.next, strict=True)),
        }
        body = json.dumps(doc, sort_keys=True).encode()
        await req.respond(200, [(b"cache-control", b"no-store")], body, b"application/json")
