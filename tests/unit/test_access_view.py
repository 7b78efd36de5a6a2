"""Owners and ACLs as access control reads them from ``meta.db``
(``seglake/meta/acl_reads.py``, ``seglake/frontend/access.py``): defaults for
rows written before ACLs, BucketOwnerEnforced overriding recorded owners and
ACLs, damaged values reading as private, canonical ids of keys."""

from __future__ import annotations

from pathlib import Path

import apsw
import msgpack
import pytest

from seglake.auth.canonical import canonical_id
from seglake.errors import S3Error
from seglake.format.vmeta import VersionMeta, encode_vmeta
from seglake.frontend.access import AccessView
from seglake.meta.acl_reads import current_owners, upload_owners, version_owners
from seglake.meta.schema import open_write
from seglake.protocol.acl import READ, Acl, bucket_acl_text

ADMIN = canonical_id("admin")
ALICE = canonical_id("alice")


@pytest.fixture
def conn(tmp_path: Path) -> apsw.Connection:
    c = open_write(str(tmp_path / "meta.db"))
    c.execute("INSERT INTO api_keys VALUES ('alice', x'00', 'rw', 1, 0, 0)")
    return c


def _bucket(c: apsw.Connection, name: str, acl: str | None, ownership: str | None) -> None:
    c.execute(
        "INSERT INTO buckets(name, created_ns, versioning, acl, ownership) VALUES (?, 1, 'enabled', ?, ?)",
        (name, acl, ownership),
    )


def _version(
    c: apsw.Connection, bucket: str, key: str, vid: str, owner: str | None, vmeta: bytes | None
) -> None:
    meta = msgpack.packb({"owner": owner} if owner else {})
    c.execute(
        "INSERT INTO versions(uid, bucket, key, version_id, size, etag, created_ns, state, hlc, "
        "meta, vmeta) VALUES (?, ?, ?, ?, 0, 'e', 1, 'ACTIVE', 1, ?, ?)",
        (f"{bucket}/{key}/{vid}", bucket, key, vid, meta, vmeta),
    )
    row = c.execute("SELECT last_insert_rowid()").fetchone()
    assert row is not None
    c.execute("INSERT OR REPLACE INTO current VALUES (?, ?, ?)", (bucket, key, row[0]))


def test_defaults_for_rows_written_before_acls(conn: apsw.Connection) -> None:
    _bucket(conn, "old", None, None)
    _version(conn, "old", "k", "v1", None, None)
    view = AccessView(conn, "admin")
    state = view.bucket("old")
    assert state is not None
    assert (state.owner, state.acl, state.ownership) == (ADMIN, Acl(canned="private"), None)
    obj = view.object(state, "old", "k", None)
    assert obj is not None and obj.owner == ADMIN and obj.acl == Acl(canned="private")
    assert not obj.allows(None, READ)
    assert view.bucket("missing") is None
    assert view.object(state, "old", "nope", None) is None


def test_recorded_owner_and_acl(conn: apsw.Connection) -> None:
    _bucket(conn, "b", bucket_acl_text(ALICE, Acl(canned="public-read")), None)
    public = encode_vmeta(VersionMeta(rev=1, acl={"canned": "public-read"}))
    _version(conn, "b", "k", "v1", ALICE, public)
    view = AccessView(conn, "admin")
    state = view.bucket("b")
    assert state is not None and state.owner == ALICE and state.allows(None, READ)
    obj = view.object(state, "b", "k", "v1")
    assert obj is not None and obj.owner == ALICE and obj.allows(None, READ)
    assert view.display_name(ALICE) == "alice" and view.display_name(ADMIN) == "admin"
    assert view.index.known(ALICE) and not view.index.known(canonical_id("nobody"))
    assert current_owners(conn, "b", ["k", "x"]) == {"k": ALICE}
    assert version_owners(conn, "b", [("k", "v1"), ("k", "v9")]) == {("k", "v1"): ALICE}
    assert upload_owners(conn, []) == {}


def test_bucket_owner_enforced_overrides(conn: apsw.Connection) -> None:
    _bucket(conn, "e", bucket_acl_text(ADMIN, Acl(canned="public-read")), "BucketOwnerEnforced")
    public = encode_vmeta(VersionMeta(rev=1, acl={"canned": "public-read"}))
    _version(conn, "e", "k", "v1", ALICE, public)
    view = AccessView(conn, "admin")
    state = view.bucket("e")
    assert state is not None and not state.allows(None, READ)  # ACLs disabled
    obj = view.object(state, "e", "k", None)
    assert obj is not None and obj.owner == ADMIN and not obj.allows(None, READ)
    assert view.listed_owner(state, ALICE) == ADMIN


@pytest.mark.parametrize("blob", [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"acl": 7})])
def test_damaged_values_read_as_private(conn: apsw.Connection, blob: bytes) -> None:
    _bucket(conn, "d", "{not json", "Everyone")
    _version(conn, "d", "k", "v1", ALICE, blob)
    view = AccessView(conn, "admin")
    state = view.bucket("d")
    assert state is not None and state.acl == Acl(canned="private") and state.ownership is None
    obj = view.object(state, "d", "k", None)
    assert obj is not None and obj.acl == Acl(canned="private") and not obj.allows(None, READ)


def test_new_object_checks(conn: apsw.Connection) -> None:
    from seglake.config import Config

    _bucket(conn, "n", None, "BucketOwnerEnforced")
    view = AccessView(conn, "admin")
    cfg = Config(public_buckets="n")
    assert view.new_object({"x-amz-acl": "private"}, None, "n", cfg) == (None, ADMIN)
    with pytest.raises(S3Error) as err:
        view.new_object({"x-amz-acl": "public-read"}, None, "n", cfg)
    assert err.value.code == "AccessControlListNotSupported"
    _bucket(conn, "w", None, None)
    with pytest.raises(S3Error) as err:
        view.new_object({"x-amz-acl": "public-read"}, None, "w", cfg)
    assert err.value.code == "AccessDenied"  # not in --public-buckets
    with pytest.raises(S3Error) as err:
        view.new_object({}, None, "missing", cfg)
    assert err.value.code == "NoSuchBucket"
