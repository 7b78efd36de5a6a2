"""Request → endpoint, decided once per request (pure).

The endpoint is a function of the method, whether a bucket and key are
present, which sub-resource query keyword is given and, for a few endpoints,
one query value or the ``x-amz-copy-source`` header. The endpoints are the
rows of ``seglake/protocol/endpoints.py``; this module only indexes and
searches them. A known operation Seglake does not implement is routed like
any other and answered 501 ``NotImplemented`` by dispatch — never a wrong
200; a request that names no operation at all is 501 when it carries a
sub-resource keyword and 405 ``MethodNotAllowed`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

from seglake.errors import S3Error
from seglake.protocol.endpoints import (
    BUCKET,
    ENDPOINTS,
    OBJECT,
    OWN_ENDPOINTS,
    SERVICE,
    SUBRESOURCES,
    Endpoint,
)

RouteKey = tuple[str, str, str]  # (method, target, sub-resource or "")


def _index(endpoints: Iterable[Endpoint]) -> dict[RouteKey, tuple[Endpoint, ...]]:
    """(method, target, sub-resource) → its endpoints, the conditional ones
    (``query``, ``copy_source``) before the one plain endpoint they refine."""
    index: dict[RouteKey, list[Endpoint]] = {}
    for e in endpoints:
        index.setdefault((e.method, e.target, e.subresource), []).append(e)
    return {
        key: tuple(sorted(group, key=lambda e: e.query is None and not e.copy_source))
        for key, group in index.items()
    }


ROUTE_INDEX: Final = _index(ENDPOINTS)
OWN_ROUTES: Final = {(e.method, e.path.encode()): e for e in OWN_ENDPOINTS}


def _selected(e: Endpoint, query: dict[str, list[str]], copy_source: bool) -> bool:
    if e.query is not None and query.get(e.query[0]) != [e.query[1]]:
        return False
    return copy_source or not e.copy_source


@dataclass(frozen=True)
class Route:
    operation: str
    bucket: str
    key: str


def split_path(raw_path: bytes, host_bucket: str = "") -> tuple[str, str]:
    """``/bucket/key`` (percent-encoded) → (bucket, key), both decoded.

    With ``host_bucket`` (virtual-hosted style) the bucket came from the Host
    header and the whole path is the key: ``/key`` → (host_bucket, key).
    """
    if not raw_path.startswith(b"/"):
        raise S3Error("InvalidURI")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", message="The path is not valid UTF-8") from None
    if host_bucket:
        return host_bucket, path[1:]
    bucket, _, key = path[1:].partition("/")
    return bucket, key


def host_bucket(host: str | None, domains: tuple[str, ...] = ()) -> str:
    """The bucket named by a virtual-hosted-style Host header, or "" for path style.

    ``<bucket>.<d>`` for a base domain ``d`` in ``domains`` (longest match
    wins) and ``<bucket>.localhost`` are virtual-hosted; everything else —
    IPs, ``localhost``, a bare base domain, dot-less or unlisted names — is
    path style, so ``myhost.lan:9000`` is never read as bucket ``myhost``.
    ``domains`` are lowercase without a leading dot (``Config.domain_list``).
    """
    if not host:
        return ""
    name = host.strip().lower()
    if name.startswith("["):
        return ""  # IPv6 literal
    name = name.rsplit(":", 1)[0] if ":" in name else name
    name = name.rstrip(".")
    if name.replace(".", "").isdigit():
        return ""  # IPv4 literal
    for base in sorted((*domains, "localhost"), key=len, reverse=True):
        if name.endswith("." + base):
            return name[: -len(base) - 1]
    return ""


def route(
    method: str,
    raw_path: bytes,
    query: dict[str, list[str]],
    *,
    copy_source: bool = False,
    vhost_bucket: str = "",
) -> Route:
    """``copy_source``: the request carries ``x-amz-copy-source``;
    ``vhost_bucket``: the bucket from the Host header (``host_bucket``)."""
    own = None if vhost_bucket else OWN_ROUTES.get((method, raw_path))
    if own is not None:
        return Route(own.name, "", "")
    bucket, key = split_path(raw_path, vhost_bucket)
    target = OBJECT if key else BUCKET if bucket else SERVICE
    sub = next((k for k in SUBRESOURCES if k in query), "")
    for e in ROUTE_INDEX.get((method, target, sub), ()):
        if _selected(e, query, copy_source):
            return Route(e.name, bucket, key)
    if sub:
        raise S3Error(
            "NotImplemented",
            message=f"{method} ?{sub} on {'an' if target == OBJECT else 'a'} {target} "
            "is not an operation Seglake implements",
        )
    raise S3Error("MethodNotAllowed")
