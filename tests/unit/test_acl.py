"""ACLs and ownership controls, the pure parts (``seglake/protocol/acl.py``,
``seglake/protocol/ownership.py``): canned expansion, grant headers, the
AccessControlPolicy document both ways, evaluation, the OwnershipControls
document and what each setting allows. Every row names the AWS rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seglake.auth.canonical import canonical_id
from seglake.errors import S3Error
from seglake.protocol import ownership
from seglake.protocol.acl import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    FULL_CONTROL,
    GRANT_HEADERS,
    GROUP,
    LOG_DELIVERY,
    MAX_GRANTS,
    READ,
    READ_ACP,
    USER,
    WRITE,
    WRITE_ACP,
    Acl,
    Grant,
    acl_from_headers,
    bucket_acl_text,
    grants_permission,
    parse_access_control_policy,
    parse_bucket_acl_text,
    render_access_control_policy,
)
from seglake.protocol.xml import S3_NS
from tests.unit.fuzzing import FUZZ

ALICE = canonical_id("alice")
BOB = canonical_id("bob")
KNOWN = {ALICE, BOB}


def known(ident: str) -> bool:
    return ident in KNOWN


def test_canonical_id_is_stable_and_64_hex() -> None:
    assert canonical_id("alice") == canonical_id("alice") != canonical_id("bob")
    assert len(ALICE) == 64 and int(ALICE, 16) >= 0
    # Pinned: the id is part of stored data (owners, grants) and must not drift.
    assert ALICE == "36d478d00e81fce4dce7ce72a5931d16d552be39b5ce8450f8856c557deefc57"


# (canned, owner, bucket owner, expected grants, rule)
CANNED: list[tuple[str, str, str, tuple[Grant, ...], str]] = [
    ("private", ALICE, ALICE, (Grant(USER, ALICE, FULL_CONTROL),), "owner FULL_CONTROL only"),
    ("public-read", ALICE, ALICE,
     (Grant(USER, ALICE, FULL_CONTROL), Grant(GROUP, ALL_USERS, READ)), "AllUsers READ"),
    ("public-read-write", ALICE, ALICE,
     (Grant(USER, ALICE, FULL_CONTROL), Grant(GROUP, ALL_USERS, READ),
      Grant(GROUP, ALL_USERS, WRITE)), "AllUsers READ and WRITE"),
    ("authenticated-read", ALICE, ALICE,
     (Grant(USER, ALICE, FULL_CONTROL), Grant(GROUP, AUTHENTICATED_USERS, READ)),
     "AuthenticatedUsers READ"),
    ("bucket-owner-read", ALICE, BOB,
     (Grant(USER, ALICE, FULL_CONTROL), Grant(USER, BOB, READ)), "bucket owner READ"),
    ("bucket-owner-full-control", ALICE, BOB,
     (Grant(USER, ALICE, FULL_CONTROL), Grant(USER, BOB, FULL_CONTROL)),
     "bucket owner FULL_CONTROL"),
    ("bucket-owner-full-control", ALICE, ALICE, (Grant(USER, ALICE, FULL_CONTROL),),
     "owner is the bucket owner: one grant"),
    ("log-delivery-write", ALICE, ALICE,
     (Grant(USER, ALICE, FULL_CONTROL), Grant(GROUP, LOG_DELIVERY, WRITE),
      Grant(GROUP, LOG_DELIVERY, READ_ACP)), "LogDelivery WRITE and READ_ACP"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "owner", "bucket_owner", "grants", "rule"), CANNED,
                         ids=[r[4] for r in CANNED])  # fmt: skip
def test_canned_expansion(
    name: str, owner: str, bucket_owner: str, grants: tuple[Grant, ...], rule: str
) -> None:
    assert Acl(canned=name).expand(owner, bucket_owner) == grants, rule


# (headers, for a bucket, expected ACL or error code, rule)
HEADER_CASES: list[tuple[dict[str, str], bool, Acl | str | None, str]] = [
    ({}, False, None, "no ACL headers"),
    ({"x-amz-acl": "public-read"}, False, Acl(canned="public-read"), "canned"),
    ({"x-amz-acl": " private "}, True, Acl(canned="private"), "whitespace trimmed"),
    ({"x-amz-acl": "log-delivery-write"}, True, Acl(canned="log-delivery-write"),
     "log-delivery-write on a bucket"),
    ({"x-amz-acl": "log-delivery-write"}, False, "InvalidArgument", "not on an object"),
    ({"x-amz-acl": "Public-Read"}, False, "InvalidArgument", "canned names are exact"),
    ({"x-amz-acl": "everyone"}, False, "InvalidArgument", "unknown canned ACL"),
    ({"x-amz-acl": "aws-exec-read"}, False, "NotImplemented", "an EC2 grantee Seglake lacks"),
    ({"x-amz-acl": "private", "x-amz-grant-read": f'id="{ALICE}"'}, False, "InvalidRequest",
     "canned and grant headers together"),
    ({"x-amz-grant-read": f'id="{ALICE}"'}, False, Acl(grants=(Grant(USER, ALICE, READ),)),
     "one id grantee"),
    ({"x-amz-grant-read": f"id={ALICE}"}, False, Acl(grants=(Grant(USER, ALICE, READ),)),
     "unquoted value"),
    ({"x-amz-grant-read": f'uri="{ALL_USERS}", id="{BOB}"'}, False,
     Acl(grants=(Grant(GROUP, ALL_USERS, READ), Grant(USER, BOB, READ))), "two grantees"),
    ({"x-amz-grant-full-control": f'id="{ALICE}"', "x-amz-grant-read-acp": f'uri="{AUTHENTICATED_USERS}"'},
     False, Acl(grants=(Grant(GROUP, AUTHENTICATED_USERS, READ_ACP), Grant(USER, ALICE, FULL_CONTROL))),
     "several headers"),
    ({"x-amz-grant-write": f'uri="{ALL_USERS}"'}, True, Acl(grants=(Grant(GROUP, ALL_USERS, WRITE),)),
     "grant-write on a bucket"),
    ({"x-amz-grant-write": f'uri="{ALL_USERS}"'}, False, None,
     "objects take no grant-write (ignored as AWS)"),
    ({"x-amz-grant-write-acp": f'id="{BOB}"'}, False, Acl(grants=(Grant(USER, BOB, WRITE_ACP),)),
     "grant-write-acp"),
    ({"x-amz-grant-read": 'emailAddress="a@example.com"'}, False,
     "UnresolvableGrantByEmailAddress", "e-mail grantees cannot be resolved"),
    ({"x-amz-grant-read": f'id="{"0" * 64}"'}, False, "InvalidArgument", "unknown canonical id"),
    ({"x-amz-grant-read": 'id="alice"'}, False, "InvalidArgument", "not a canonical id"),
    ({"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/Nobody"'}, False,
     "InvalidArgument", "unknown group"),
    ({"x-amz-grant-read": 'name="x"'}, False, "InvalidArgument", "unknown grantee type"),
    ({"x-amz-grant-read": ""}, False, "InvalidArgument", "empty"),
    ({"x-amz-grant-read": f'id="{ALICE}" id="{BOB}"'}, False, "InvalidArgument",
     "grantees need a comma"),
    ({"x-amz-grant-read": f'id="{ALICE}",'}, False, "InvalidArgument", "trailing comma"),
    ({"x-amz-grant-read": ", ".join([f'uri="{ALL_USERS}"'] * (MAX_GRANTS + 1))}, False,
     "InvalidArgument", "more than 100 grants"),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "bucket", "expected", "rule"), HEADER_CASES,
                         ids=[r[3] for r in HEADER_CASES])  # fmt: skip
def test_acl_from_headers(
    headers: dict[str, str], bucket: bool, expected: Acl | str | None, rule: str
) -> None:
    if isinstance(expected, str):
        with pytest.raises(S3Error) as info:
            acl_from_headers(headers, known, bucket=bucket)
        assert info.value.code == expected, rule
        assert info.value.status in (400, 501)
    else:
        assert acl_from_headers(headers, known, bucket=bucket) == expected, rule


def _policy(grants: str, owner: str = f"<Owner><ID>{ALICE}</ID></Owner>", ns: str = "") -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    return (
        f'<AccessControlPolicy{xmlns} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"{owner}<AccessControlList>{grants}</AccessControlList></AccessControlPolicy>"
    ).encode()


def _user(ident: str, perm: str) -> str:
    return (f'<Grant><Grantee xsi:type="CanonicalUser"><ID>{ident}</ID></Grantee>'
            f"<Permission>{perm}</Permission></Grant>")  # fmt: skip


def _group(uri: str, perm: str) -> str:
    return (f'<Grant><Grantee xsi:type="Group"><URI>{uri}</URI></Grantee>'
            f"<Permission>{perm}</Permission></Grant>")  # fmt: skip


# (body, expected (owner, grants) or error code, rule)
XML_CASES: list[tuple[bytes, tuple[str, tuple[Grant, ...]] | str, str]] = [
    (_policy(_user(ALICE, "FULL_CONTROL")), (ALICE, (Grant(USER, ALICE, FULL_CONTROL),)),
     "one user grant"),
    (_policy(_user(ALICE, "FULL_CONTROL") + _group(ALL_USERS, "READ"), ns=S3_NS),
     (ALICE, (Grant(USER, ALICE, FULL_CONTROL), Grant(GROUP, ALL_USERS, READ))),
     "S3's namespace, a group"),
    (_policy(""), (ALICE, ()), "an empty list"),
    (_policy("", owner=f"<Owner><ID>{ALICE}</ID><DisplayName>alice</DisplayName></Owner>"),
     (ALICE, ()), "a display name is accepted"),
    (_policy(_user(ALICE, "READ"), owner=""), "MalformedACLError", "Owner is required"),
    (_policy(_user(ALICE, "EVERYTHING")), "MalformedACLError", "unknown permission"),
    (_policy('<Grant><Grantee><ID>x</ID></Grantee><Permission>READ</Permission></Grant>'),
     "MalformedACLError", "Grantee without xsi:type"),
    (_policy('<Grant><Grantee xsi:type="Robot"><ID>x</ID></Grantee>'
             '<Permission>READ</Permission></Grant>'), "MalformedACLError", "unknown xsi:type"),
    (_policy('<Grant><Grantee xsi:type="CanonicalUser"></Grantee>'
             '<Permission>READ</Permission></Grant>'), "MalformedACLError", "user without ID"),
    (_policy('<Grant><Permission>READ</Permission></Grant>'), "MalformedACLError",
     "Grant without Grantee"),
    (_policy(_user(ALICE, "READ") + "<Extra/>"), "MalformedACLError", "unknown element"),
    (_policy(_user("0" * 64, "READ")), "InvalidArgument", "unknown canonical id"),
    (_policy(_group("http://example.com/g", "READ")), "InvalidArgument", "unknown group"),
    (_policy('<Grant><Grantee xsi:type="AmazonCustomerByEmail"><EmailAddress>a@b.c'
             '</EmailAddress></Grantee><Permission>READ</Permission></Grant>'),
     "UnresolvableGrantByEmailAddress", "e-mail grantee"),
    (b"<AccessControlPolicy><Owner>", "MalformedACLError", "truncated document"),
    (b"", "MalformedACLError", "empty body"),
    (b"<Other/>", "MalformedACLError", "wrong root"),
    (b'<!DOCTYPE r [<!ENTITY a "x">]><AccessControlPolicy/>', "MalformedACLError",
     "a DTD is refused"),
    (_policy(_group(ALL_USERS, "READ") * (MAX_GRANTS + 1)), "MalformedACLError",
     "more than 100 grants"),
    (b"<AccessControlPolicy>" + b" " * (70 * 1024) + b"</AccessControlPolicy>",
     "MaxMessageLengthExceeded", "too big"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected", "rule"), XML_CASES, ids=[r[2] for r in XML_CASES])
def test_parse_access_control_policy(
    body: bytes, expected: tuple[str, tuple[Grant, ...]] | str, rule: str
) -> None:
    if isinstance(expected, str):
        with pytest.raises(S3Error) as info:
            parse_access_control_policy(body, known)
        assert info.value.code == expected, rule
    else:
        owner, acl = parse_access_control_policy(body, known)
        assert (owner, acl.grants) == expected, rule


def test_render_parses_back() -> None:
    grants = Acl(canned="public-read").expand(ALICE, ALICE)
    names = {ALICE: "alice"}
    body = (
        '<AccessControlPolicy xmlns="' + S3_NS + '">'
        + "".join(render_access_control_policy(ALICE, "alice", grants, names.get))
        + "</AccessControlPolicy>"
    ).encode()  # fmt: skip
    assert b"<DisplayName>alice</DisplayName>" in body
    assert b'xsi:type="Group"' in body and b'xsi:type="CanonicalUser"' in body
    owner, acl = parse_access_control_policy(body, known)
    assert owner == ALICE and acl.grants == grants


# (grants, owner, requester, permission, granted, rule)
EVAL: list[tuple[tuple[Grant, ...], str, str | None, str, bool, str]] = [
    ((), ALICE, ALICE, READ_ACP, True, "the owner may always read its ACL"),
    ((), ALICE, ALICE, WRITE_ACP, True, "... and write it"),
    ((), ALICE, ALICE, READ, False, "but an empty ACL grants the owner no READ"),
    ((), ALICE, None, READ_ACP, False, "anonymous is no owner"),
    ((Grant(USER, BOB, READ),), ALICE, BOB, READ, True, "a user grant"),
    ((Grant(USER, BOB, READ),), ALICE, BOB, WRITE, False, "only that permission"),
    ((Grant(USER, BOB, FULL_CONTROL),), ALICE, BOB, WRITE_ACP, True, "FULL_CONTROL is all"),
    ((Grant(USER, BOB, READ),), ALICE, None, READ, False, "a user grant is not anonymous"),
    ((Grant(GROUP, ALL_USERS, READ),), ALICE, None, READ, True, "AllUsers: anonymous"),
    ((Grant(GROUP, ALL_USERS, READ),), ALICE, BOB, READ, True, "AllUsers: signed too"),
    ((Grant(GROUP, AUTHENTICATED_USERS, READ),), ALICE, BOB, READ, True,
     "AuthenticatedUsers: any signed caller"),
    ((Grant(GROUP, AUTHENTICATED_USERS, READ),), ALICE, None, READ, False,
     "AuthenticatedUsers: not anonymous"),
    ((Grant(GROUP, LOG_DELIVERY, WRITE),), ALICE, None, WRITE, False, "LogDelivery: nobody"),
]  # fmt: skip


@pytest.mark.parametrize(("grants", "owner", "requester", "perm", "granted", "rule"), EVAL,
                         ids=[r[5] for r in EVAL])  # fmt: skip
def test_grants_permission(
    grants: tuple[Grant, ...], owner: str, requester: str | None, perm: str, granted: bool,
    rule: str,
) -> None:  # fmt: skip
    assert grants_permission(grants, owner, requester, perm) is granted, rule


@pytest.mark.parametrize(
    "acl", [Acl(canned="public-read"), Acl(grants=(Grant(GROUP, ALL_USERS, READ),)), Acl()]
)
def test_stored_forms_round_trip(acl: Acl) -> None:
    assert Acl.from_value(acl.to_value()) == acl
    owner, back = parse_bucket_acl_text(bucket_acl_text(BOB, acl), ALICE)
    assert (owner, back) == (BOB, acl)


@pytest.mark.parametrize(
    "value", [{"canned": "everyone"}, {"grants": [["id", ALICE]]}, {"grants": "x"}, 7,
              {"grants": [["robot", ALICE, "READ"]]}, {"grants": [["id", ALICE, "ALL"]]}],
)  # fmt: skip
def test_damaged_stored_acls_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        Acl.from_value(value)


@pytest.mark.parametrize("text", ["{", "[]", '{"canned": "public-read"}', '{"owner": 3}'])
def test_damaged_bucket_acl_is_private_and_the_accounts(text: str) -> None:
    assert parse_bucket_acl_text(text, ALICE) == (ALICE, Acl(canned="private"))


def test_missing_acl_is_private() -> None:
    assert Acl.from_value(None) == Acl(canned="private")
    assert parse_bucket_acl_text(None, ALICE) == (ALICE, Acl(canned="private"))


def test_public() -> None:
    assert Acl(canned="public-read").is_public(ALICE, ALICE)
    assert Acl(canned="authenticated-read").is_public(ALICE, ALICE)
    assert not Acl(canned="authenticated-read").grants_all_users(ALICE, ALICE)
    assert not Acl(canned="bucket-owner-full-control").is_public(ALICE, BOB)


# ---- ownership controls ----------------------------------------------------------


def _controls(inner: str) -> bytes:
    return f'<OwnershipControls xmlns="{S3_NS}">{inner}</OwnershipControls>'.encode()


@pytest.mark.parametrize("value", ownership.SETTINGS)
def test_ownership_round_trip(value: str) -> None:
    body = _controls("".join(ownership.render_ownership_controls(value)))
    assert ownership.parse_ownership_controls(body) == value


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (_controls(""), "no rule"),
        (_controls("<Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule>" * 2),
         "two rules"),
        (_controls("<Rule></Rule>"), "no ObjectOwnership"),
        (_controls("<Rule><ObjectOwnership>Everyone</ObjectOwnership></Rule>"), "unknown value"),
        (_controls("<Rule><ObjectOwnership>objectwriter</ObjectOwnership></Rule>"),
         "values are exact"),
        (_controls("<Other/>"), "unknown element"),
        (b"<OwnershipControls>", "truncated"),
    ],
)  # fmt: skip
def test_ownership_malformed(body: bytes, rule: str) -> None:
    with pytest.raises(S3Error) as info:
        ownership.parse_ownership_controls(body)
    assert info.value.code == "MalformedXML", rule


def test_ownership_header() -> None:
    assert ownership.parse_ownership_header("BucketOwnerPreferred") == ownership.PREFERRED
    with pytest.raises(S3Error) as info:
        ownership.parse_ownership_header("bucketownerenforced")
    assert info.value.code == "InvalidArgument"


# (ownership, acl, allowed, rule)
ALLOWED: list[tuple[str | None, Acl | None, bool, str]] = [
    (ownership.ENFORCED, None, True, "no ACL asked for"),
    (ownership.ENFORCED, Acl(canned="private"), True, "private is the enforced default"),
    (ownership.ENFORCED, Acl(canned="bucket-owner-full-control"), True, "AWS allows it"),
    (ownership.ENFORCED, Acl(canned="public-read"), False, "ACLs are disabled"),
    (ownership.ENFORCED, Acl(grants=(Grant(USER, ALICE, FULL_CONTROL),)), True,
     "the bucket owner's FULL_CONTROL, as a grant"),
    (ownership.ENFORCED, Acl(grants=(Grant(USER, BOB, FULL_CONTROL),)), False,
     "a grant to anyone else"),
    (ownership.ENFORCED, Acl(grants=(Grant(GROUP, ALL_USERS, READ),)), False, "a public grant"),
    (ownership.PREFERRED, Acl(canned="public-read"), True, "ACLs enabled"),
    (ownership.WRITER, Acl(canned="public-read"), True, "ACLs enabled"),
    (None, Acl(canned="public-read-write"), True, "no controls: ACLs enabled"),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "acl", "allowed", "rule"), ALLOWED,
                         ids=[r[3] for r in ALLOWED])  # fmt: skip
def test_acl_allowed(setting: str | None, acl: Acl | None, allowed: bool, rule: str) -> None:
    assert ownership.acl_allowed(setting, acl, ALICE) is allowed, rule


def test_object_owner() -> None:
    bofc = Acl(canned="bucket-owner-full-control")
    assert ownership.object_owner(ownership.ENFORCED, BOB, ALICE, None) == ALICE
    assert ownership.object_owner(ownership.PREFERRED, BOB, ALICE, bofc) == ALICE
    assert ownership.object_owner(ownership.PREFERRED, BOB, ALICE, None) == BOB
    assert ownership.object_owner(ownership.WRITER, BOB, ALICE, bofc) == BOB
    assert ownership.object_owner(None, BOB, ALICE, bofc) == BOB


# ---- hostile input: only S3 errors, never another exception --------------------------

_XML_PIECES = [
    "<AccessControlPolicy>", "</AccessControlPolicy>", "<Owner>", "</Owner>", f"<ID>{ALICE}</ID>",
    "<AccessControlList>", "</AccessControlList>", "<Grant>", "</Grant>",
    '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">',
    '<Grantee xsi:type="CanonicalUser">', "</Grantee>", f"<URI>{ALL_USERS}</URI>",
    "<Permission>READ</Permission>", "<Permission>x</Permission>", "<!DOCTYPE a>", "&amp;",
    "<EmailAddress>a@b</EmailAddress>", "\x00", "é",
]  # fmt: skip
_HEADER_PIECES = ["id=", "uri=", "emailAddress=", '"', ",", " ", ALICE, ALL_USERS, "x", "=", "\t"]


@FUZZ
@given(st.lists(st.sampled_from(_XML_PIECES), max_size=30), st.binary(max_size=8))
def test_policy_document_parser_only_s3error(pieces: list[str], noise: bytes) -> None:
    body = "".join(pieces).encode() + noise
    try:
        owner, acl = parse_access_control_policy(body, known)
    except S3Error as err:
        assert err.status in (400, 403)
        return
    assert owner and len(acl.grants) <= MAX_GRANTS


@FUZZ
@given(
    st.sampled_from(sorted(GRANT_HEADERS)),
    st.lists(st.sampled_from(_HEADER_PIECES), max_size=20),
    st.booleans(),
)
def test_grant_header_parser_only_s3error(name: str, pieces: list[str], bucket: bool) -> None:
    try:
        acl = acl_from_headers({name: "".join(pieces)}, known, bucket=bucket)
    except S3Error as err:
        assert err.status == 400
        return
    assert acl is None or all(g.grantee in KNOWN or g.grantee == ALL_USERS for g in acl.grants)


@FUZZ
@given(st.binary(max_size=200))
def test_ownership_parser_only_s3error(body: bytes) -> None:
    try:
        assert ownership.parse_ownership_controls(body) in ownership.SETTINGS
    except S3Error as err:
        assert err.code in ("MalformedXML", "MaxMessageLengthExceeded")
