"""The endpoint table (seglake/protocol/endpoints.py) keeps the rules it states:
every endpoint has policy actions and, when implemented, a real handler; every
handler method of every family is reachable from the table."""

from __future__ import annotations

import inspect
from collections import Counter

import pytest

from seglake.errors import S3Error
from seglake.frontend.dispatch import FAMILIES, split_handler
from seglake.frontend.http import Request
from seglake.frontend.router import Route, route
from seglake.protocol.endpoints import (
    BUCKET,
    ENDPOINT_BY_NAME,
    ENDPOINTS,
    OBJECT,
    OWN_ENDPOINTS,
    OWN_OPERATIONS,
    SERVICE,
    SUBRESOURCES,
    Endpoint,
)
from seglake.protocol.policy import KNOWN_ACTIONS

IMPLEMENTED = [e for e in (*ENDPOINTS, *OWN_ENDPOINTS) if e.handler is not None]


def _is_handler(member: object) -> bool:
    """A public coroutine method taking just the request: the shape the app
    dispatches to (helpers take more, or are private)."""
    if not inspect.iscoroutinefunction(member):
        return False
    params = list(inspect.signature(member).parameters)
    return params == ["self", "req"]


def test_names_are_unique() -> None:
    counts = Counter(e.name for e in ENDPOINTS)
    assert [n for n, c in counts.items() if c > 1] == []
    own = {e.name for e in OWN_ENDPOINTS}
    assert set(ENDPOINT_BY_NAME) == set(counts) | own
    assert not set(OWN_OPERATIONS) & set(counts)


@pytest.mark.parametrize("e", OWN_ENDPOINTS, ids=lambda e: e.name)
def test_own_endpoint_rows(e: Endpoint) -> None:
    """Seglake's own endpoints: a declared own operation, its own action,
    at a path no bucket can name (``/v1``: too short for a bucket name)."""
    assert len(e.actions) == 1 and e.actions[0] in OWN_OPERATIONS
    if e.name in OWN_OPERATIONS:
        assert e.actions == (e.name,)
    assert e.target == SERVICE and e.path.startswith("/v1/")
    assert e.handler is not None
    assert route(e.method, e.path.encode(), {}) == Route(e.name, "", "")
    # virtual-hosted: the path is a key of the Host's bucket, as S3 says
    # (or no S3 operation at all: a POST to a key is 405)
    try:
        vhost_op: str | None = route(e.method, e.path.encode(), {}, vhost_bucket="bkt").operation
    except S3Error:
        vhost_op = None
    assert vhost_op != e.name


@pytest.mark.parametrize("e", ENDPOINTS, ids=lambda e: e.name)
def test_row_is_well_formed(e: Endpoint) -> None:
    assert e.method in {"GET", "PUT", "POST", "DELETE", "HEAD"}
    assert e.target in {SERVICE, BUCKET, OBJECT}
    assert e.subresource == "" or e.subresource in SUBRESOURCES
    assert e.actions, "every endpoint, implemented or not, is a policy action"
    assert set(e.actions) <= KNOWN_ACTIONS
    if e.per_object is not None:
        assert ENDPOINT_BY_NAME[e.per_object].target == OBJECT
        assert e.per_object in e.actions
    if e.copy_source or e.version_action or e.per_object or e.listing:
        assert e.target != SERVICE
    if e.listing:
        assert e.target == BUCKET


def test_each_route_has_one_plain_endpoint() -> None:
    """The conditional endpoints refine exactly one plain one."""
    plain = Counter(
        (e.method, e.target, e.subresource)
        for e in ENDPOINTS
        if e.query is None and not e.copy_source
    )
    assert [k for k, c in plain.items() if c > 1] == []
    for e in ENDPOINTS:
        assert plain[(e.method, e.target, e.subresource)] == 1, e.name


def test_every_subresource_keyword_selects_something() -> None:
    assert len(set(SUBRESOURCES)) == len(SUBRESOURCES)
    assert set(SUBRESOURCES) == {e.subresource for e in ENDPOINTS if e.subresource}


@pytest.mark.parametrize("e", IMPLEMENTED, ids=lambda e: e.name)
def test_every_named_handler_exists(e: Endpoint) -> None:
    assert e.handler is not None
    family, method = split_handler(e.handler)
    assert family in FAMILIES, f"{e.name}: no family {family!r}"
    member = getattr(FAMILIES[family], method, None)
    assert member is not None, f"{e.name}: {FAMILIES[family].__name__} has no {method}"
    assert _is_handler(member), f"{e.handler} is not an async (self, req) method"
    assert inspect.signature(member).parameters["req"].annotation in (Request, "Request")


def test_every_handler_method_is_reachable_from_the_table() -> None:
    named = {split_handler(e.handler) for e in IMPLEMENTED if e.handler is not None}
    assert {family for family, _ in named} == set(FAMILIES), "a family serves no endpoint"
    unreachable = [
        f"{family}.{name}"
        for family, cls in FAMILIES.items()
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and _is_handler(member) and (family, name) not in named
    ]
    assert unreachable == []


def test_one_handler_per_endpoint() -> None:
    """Two endpoints may not share a handler: each one says which it is."""
    handlers = Counter(e.handler for e in IMPLEMENTED)
    assert [h for h, c in handlers.items() if c > 1] == []
