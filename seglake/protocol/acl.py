"""Access control lists: canned ACLs, grant headers, the AccessControlPolicy
document, and what an ACL grants (pure, sans-IO).

Rules this module keeps:

* An ACL is stored as AWS lets a client state it: a canned name
  (``{"canned": "public-read"}``) or an explicit grant list
  (``{"grants": [[grantee_type, grantee, permission], ...]}``; the type is
  ``"id"`` for a canonical user, ``"group"`` for a group URI). A canned ACL
  is expanded only when it is read (``Acl.expand``), because two of them
  (``bucket-owner-read``, ``bucket-owner-full-control``) name the bucket
  owner, who is known only then. No stored ACL means ``private``.
* Grants are exactly what the client gave: grant headers or an
  AccessControlPolicy list the owner only if the client did. The owner of
  a resource may always read and write its ACL (AWS: "the owner has
  implicit READ_ACP and WRITE_ACP"), whatever the list says.
* Hostile input gets AWS's errors: a canned ACL together with grant headers
  is ``InvalidRequest``; an unknown canned ACL, grantee type, group or
  canonical id is ``InvalidArgument``; an e-mail grantee is
  ``UnresolvableGrantByEmailAddress`` (Seglake keys have no e-mail
  addresses, as AWS answers for an address it cannot resolve); a document
  that does not parse or does not follow the schema is ``MalformedACLError``.
* Evaluation (``grants_permission``): ``FULL_CONTROL`` implies every
  permission; ``AllUsers`` is everyone, anonymous callers included;
  ``AuthenticatedUsers`` is every signed caller; ``LogDelivery`` is nobody
  Seglake has. ``OPERATION_PERMISSION`` says which ACL permission, on the
  bucket or on the object, each operation needs (AWS's "mapping of ACL
  permissions and access policy permissions").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from xml.etree.ElementTree import Element

from seglake.errors import S3Error
from seglake.protocol.xml import el
from seglake.protocol.xml_requests import document_root, local_name

FULL_CONTROL: Final = "FULL_CONTROL"
READ: Final = "READ"
WRITE: Final = "WRITE"
READ_ACP: Final = "READ_ACP"
WRITE_ACP: Final = "WRITE_ACP"
PERMISSIONS: Final = (FULL_CONTROL, WRITE, WRITE_ACP, READ, READ_ACP)

ALL_USERS: Final = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS: Final = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY: Final = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS: Final = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)

USER: Final = "id"  # grantee type: a canonical user id
GROUP: Final = "group"  # grantee type: a group URI

XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

# The grant headers and the permission each grants.
GRANT_HEADERS: Final[Mapping[str, str]] = {
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
    "x-amz-grant-full-control": FULL_CONTROL,
}

PRIVATE: Final = "private"
PUBLIC_READ: Final = "public-read"
PUBLIC_READ_WRITE: Final = "public-read-write"
AUTHENTICATED_READ: Final = "authenticated-read"
BUCKET_OWNER_READ: Final = "bucket-owner-read"
BUCKET_OWNER_FULL_CONTROL: Final = "bucket-owner-full-control"
LOG_DELIVERY_WRITE: Final = "log-delivery-write"
# AWS's canned ACLs for objects, and for buckets. On a bucket AWS accepts
# the two bucket-owner ones and ignores them (the creator is the bucket
# owner: they say nothing beyond private); log-delivery-write is for
# buckets only. aws-exec-read names an EC2 service Seglake does not have.
OBJECT_CANNED: Final = (
    PRIVATE, PUBLIC_READ, PUBLIC_READ_WRITE, AUTHENTICATED_READ, BUCKET_OWNER_READ,
    BUCKET_OWNER_FULL_CONTROL,
)  # fmt: skip
BUCKET_CANNED: Final = (*OBJECT_CANNED, LOG_DELIVERY_WRITE)
UNSUPPORTED_CANNED: Final = ("aws-exec-read",)

# AWS: "an ACL can have up to 100 grants".
MAX_GRANTS: Final = 100
# A 100-grant document with display names is under 40 KiB.
MAX_ACL_BODY_BYTES: Final = 64 * 1024
# A canonical id as Seglake makes them (``auth/canonical.py``): 64 hex digits.
CANONICAL_ID_RE: Final = re.compile(r"[0-9a-f]{64}")

# Which ACL permission an operation needs, and on what: "bucket" (the
# bucket's ACL) or "object" (the object's). AWS's mapping of ACL permissions
# to operations; an operation not here is never granted by an ACL.
OPERATION_PERMISSION: Final[Mapping[str, tuple[str, str]]] = {
    "HeadBucket": ("bucket", READ),
    "ListObjects": ("bucket", READ),
    "ListObjectsV2": ("bucket", READ),
    "ListObjectVersions": ("bucket", READ),
    "ListMultipartUploads": ("bucket", READ),
    "PutObject": ("bucket", WRITE),
    "PostObject": ("bucket", WRITE),
    "CopyObject": ("bucket", WRITE),
    "DeleteObject": ("bucket", WRITE),
    "DeleteObjects": ("bucket", WRITE),
    "CreateMultipartUpload": ("bucket", WRITE),
    "UploadPart": ("bucket", WRITE),
    "UploadPartCopy": ("bucket", WRITE),
    "CompleteMultipartUpload": ("bucket", WRITE),
    "AbortMultipartUpload": ("bucket", WRITE),
    "GetBucketAcl": ("bucket", READ_ACP),
    "PutBucketAcl": ("bucket", WRITE_ACP),
    "GetObject": ("object", READ),
    "HeadObject": ("object", READ),
    "GetObjectAcl": ("object", READ_ACP),
    "PutObjectAcl": ("object", WRITE_ACP),
}


def needed_permission(operation: str, version_id: str | None = None) -> tuple[str, str] | None:
    """("bucket" | "object", permission) an operation needs from an ACL;
    None when no ACL can grant it. Bucket WRITE deletes a version by its id
    only for the bucket owner (AWS), so such a delete needs what no grant
    gives (the owner is never anonymous and keys are ruled by policies)."""
    if operation in ("DeleteObject", "DeleteObjects") and version_id is not None:
        return None
    return OPERATION_PERMISSION.get(operation)


@dataclass(frozen=True)
class Grant:
    grantee_type: str  # USER or GROUP
    grantee: str  # a canonical id or a group URI
    permission: str


@dataclass(frozen=True)
class Acl:
    """An ACL as given: a canned name, or explicit grants."""

    canned: str | None = None
    grants: tuple[Grant, ...] = ()

    def to_value(self) -> dict[str, Any]:
        """The msgpack/JSON-able form stored in vmeta or a bucket record."""
        if self.canned is not None:
            return {"canned": self.canned}
        return {"grants": [[g.grantee_type, g.grantee, g.permission] for g in self.grants]}

    @classmethod
    def from_value(cls, value: Any) -> Acl:
        """The stored form back; None (nothing stored) is ``private``.
        Stored data is hostile too: anything else is ``ValueError``, which a
        caller turns into ``private`` (damage only narrows access)."""
        if value is None:
            return cls(canned=PRIVATE)
        if not isinstance(value, Mapping):
            raise ValueError("an ACL is a map")
        if "canned" in value:
            canned = value["canned"]
            if canned not in BUCKET_CANNED:
                raise ValueError(f"unknown canned ACL {canned!r}")
            return cls(canned=str(canned))
        raw = value.get("grants")
        if not isinstance(raw, list | tuple) or len(raw) > MAX_GRANTS:
            raise ValueError("grants must be a list")
        grants = []
        for item in raw:
            if not isinstance(item, list | tuple) or len(item) != 3:
                raise ValueError("a grant is [type, grantee, permission]")
            kind, who, perm = item
            if kind not in (USER, GROUP) or not isinstance(who, str) or perm not in PERMISSIONS:
                raise ValueError("bad grant")
            grants.append(Grant(kind, who, perm))
        return cls(grants=tuple(grants))

    @property
    def is_private(self) -> bool:
        return self.canned == PRIVATE

    def expand(self, owner: str, bucket_owner: str) -> tuple[Grant, ...]:
        """The grants this ACL stands for; ``owner`` owns the resource and
        ``bucket_owner`` its bucket (the same for a bucket's own ACL)."""
        if self.canned is None:
            return self.grants
        full = Grant(USER, owner, FULL_CONTROL)
        extra: tuple[Grant, ...] = ()
        if self.canned == PUBLIC_READ:
            extra = (Grant(GROUP, ALL_USERS, READ),)
        elif self.canned == PUBLIC_READ_WRITE:
            extra = (Grant(GROUP, ALL_USERS, READ), Grant(GROUP, ALL_USERS, WRITE))
        elif self.canned == AUTHENTICATED_READ:
            extra = (Grant(GROUP, AUTHENTICATED_USERS, READ),)
        elif self.canned == LOG_DELIVERY_WRITE:
            extra = (Grant(GROUP, LOG_DELIVERY, WRITE), Grant(GROUP, LOG_DELIVERY, READ_ACP))
        elif (
            self.canned in (BUCKET_OWNER_READ, BUCKET_OWNER_FULL_CONTROL) and bucket_owner != owner
        ):
            perm = READ if self.canned == BUCKET_OWNER_READ else FULL_CONTROL
            extra = (Grant(USER, bucket_owner, perm),)
        return (full, *extra)

    def is_public(self, owner: str, bucket_owner: str) -> bool:
        """Does it grant anything to AllUsers or AuthenticatedUsers? (AWS's
        "public ACL", which Block Public Access refuses.)"""
        return any(
            g.grantee_type == GROUP and g.grantee in (ALL_USERS, AUTHENTICATED_USERS)
            for g in self.expand(owner, bucket_owner)
        )

    def grants_all_users(self, owner: str, bucket_owner: str) -> bool:
        """Does it grant anything to anonymous callers (AllUsers)?"""
        return any(
            g.grantee_type == GROUP and g.grantee == ALL_USERS
            for g in self.expand(owner, bucket_owner)
        )


def grants_permission(
    grants: Iterable[Grant], owner: str, requester: str | None, permission: str
) -> bool:
    """Do ``grants`` on a resource owned by ``owner`` give ``requester`` (a
    canonical id; None for an anonymous caller) ``permission``?"""
    if requester is not None and requester == owner and permission in (READ_ACP, WRITE_ACP):
        return True  # the owner's implicit right to its ACL
    for g in grants:
        if g.permission not in (permission, FULL_CONTROL):
            continue
        if g.grantee_type == GROUP:
            if g.grantee == ALL_USERS:
                return True
            if g.grantee == AUTHENTICATED_USERS and requester is not None:
                return True
        elif requester is not None and g.grantee == requester:
            return True
    return False


# ---- grant headers ---------------------------------------------------------------

# One grantee of a grant header: ``type=value`` or ``type="value"``.
_GRANTEE_RE: Final = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,"\s]*))\s*')


def _invalid(message: str, name: str = "", value: str = "") -> S3Error:
    fields = {"ArgumentName": name, "ArgumentValue": value} if name else {}
    return S3Error("InvalidArgument", message=message, fields=fields)


def check_grantee_id(grantee: str, known_id: Callable[[str], bool]) -> None:
    """A canonical user id must name a key (AWS: InvalidArgument, "Invalid id")."""
    if not CANONICAL_ID_RE.fullmatch(grantee) or not known_id(grantee):
        raise _invalid("Invalid id", "CanonicalUser/ID", grantee)


def _check_group(uri: str) -> None:
    if uri not in GROUPS:
        raise _invalid("Invalid group uri", "Group/URI", uri)


def _unresolvable(address: str) -> S3Error:
    return S3Error(
        "UnresolvableGrantByEmailAddress",
        message="Seglake keys have no e-mail addresses: grant to a canonical user id instead",
        fields={"EmailAddress": address},
    )


def parse_grant_header(name: str, value: str, known_id: Callable[[str], bool]) -> tuple[Grant, ...]:
    """The grantees of one ``x-amz-grant-*`` header."""
    permission = GRANT_HEADERS[name]
    out: list[Grant] = []
    text = value.strip()
    pos = 0
    while True:
        m = _GRANTEE_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise _invalid(f"malformed {name} header", name, value)
        kind, grantee = m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3)
        if kind == "id":
            check_grantee_id(grantee, known_id)
            out.append(Grant(USER, grantee, permission))
        elif kind == "uri":
            _check_group(grantee)
            out.append(Grant(GROUP, grantee, permission))
        elif kind == "emailaddress":
            raise _unresolvable(grantee)
        else:
            raise _invalid(f"unknown grantee type {m.group(1)!r} in {name}", name, value)
        if len(out) > MAX_GRANTS:
            raise _invalid(f"more than {MAX_GRANTS} grants", name, value)
        pos = m.end()
        if pos == len(text):
            return tuple(out)
        if text[pos] != ",":
            raise _invalid(f"malformed {name} header", name, value)
        pos += 1


def acl_from_headers(
    headers: Mapping[str, str], known_id: Callable[[str], bool], *, bucket: bool
) -> Acl | None:
    """The ACL a request's ``x-amz-acl`` or ``x-amz-grant-*`` headers ask
    for (``headers`` lower-cased); None if it carries neither. Objects have
    no ``WRITE`` permission: AWS's object operations take no
    ``x-amz-grant-write`` header, and one sent is ignored as AWS does."""
    canned = headers.get("x-amz-acl")
    names = [n for n in GRANT_HEADERS if n in headers and (bucket or n != "x-amz-grant-write")]
    if canned is not None and names:
        raise S3Error(
            "InvalidRequest",
            message="Specifying both Canned ACLs and Header Grants is not allowed",
        )
    if canned is not None:
        value = canned.strip()
        if value in UNSUPPORTED_CANNED:
            raise S3Error(
                "NotImplemented",
                message=f"Seglake does not implement the canned ACL {value}",
                fields={"Header": "x-amz-acl"},
            )
        if value not in (BUCKET_CANNED if bucket else OBJECT_CANNED):
            raise _invalid("Invalid canned ACL", "x-amz-acl", canned)
        return Acl(canned=value)
    if not names:
        return None
    grants: list[Grant] = []
    for n in names:
        grants.extend(parse_grant_header(n, headers[n], known_id))
    if len(grants) > MAX_GRANTS:
        raise _invalid(f"more than {MAX_GRANTS} grants")
    return Acl(grants=tuple(grants))


# ---- the AccessControlPolicy document --------------------------------------------


def _malformed(message: str) -> S3Error:
    return S3Error(
        "MalformedACLError",
        message=f"The XML you provided was not well-formed or did not validate against our "
        f"published schema: {message}",
    )


def _only_child(node: Element, name: str, *, required: bool = True) -> Element | None:
    found = [c for c in node if local_name(c.tag) == name]
    if len(found) > 1 or (required and not found):
        raise _malformed(f"{local_name(node.tag)} needs exactly one {name}")
    return found[0] if found else None


def _text_of(node: Element, name: str) -> str:
    child = _only_child(node, name)
    assert child is not None
    return (child.text or "").strip()


def _grantee_type(node: Element) -> str:
    for attr, value in node.attrib.items():
        if local_name(attr) == "type":
            return value.split(":", 1)[-1]  # "xsi:CanonicalUser" would be odd, but harmless
    raise _malformed("Grantee needs an xsi:type")


def _grant(node: Element, known_id: Callable[[str], bool]) -> Grant:
    for child in node:
        if local_name(child.tag) not in ("Grantee", "Permission"):
            raise _malformed(f"unexpected element {local_name(child.tag)} in Grant")
    grantee = _only_child(node, "Grantee")
    assert grantee is not None
    permission = _text_of(node, "Permission")
    if permission not in PERMISSIONS:
        raise _malformed(f"unknown Permission {permission!r}")
    kind = _grantee_type(grantee)
    allowed = {"ID", "DisplayName", "URI", "EmailAddress"}
    for child in grantee:
        if local_name(child.tag) not in allowed:
            raise _malformed(f"unexpected element {local_name(child.tag)} in Grantee")
    if kind == "CanonicalUser":
        ident = _text_of(grantee, "ID")
        check_grantee_id(ident, known_id)
        return Grant(USER, ident, permission)
    if kind == "Group":
        uri = _text_of(grantee, "URI")
        _check_group(uri)
        return Grant(GROUP, uri, permission)
    if kind == "AmazonCustomerByEmail":
        raise _unresolvable(_text_of(grantee, "EmailAddress"))
    raise _malformed(f"unknown grantee type {kind!r}")


def parse_access_control_policy(body: bytes, known_id: Callable[[str], bool]) -> tuple[str, Acl]:
    """An AccessControlPolicy body → (the Owner ID it names, its grants).
    The caller checks the owner against the resource's."""
    if len(body) > MAX_ACL_BODY_BYTES:
        raise S3Error("MaxMessageLengthExceeded")
    try:
        root = document_root(body, "AccessControlPolicy", MAX_ACL_BODY_BYTES)
    except S3Error as exc:
        if exc.code == "MalformedXML":
            raise _malformed("not an AccessControlPolicy document") from None
        raise
    for child in root:
        if local_name(child.tag) not in ("Owner", "AccessControlList"):
            raise _malformed(f"unexpected element {local_name(child.tag)}")
    owner = _only_child(root, "Owner")
    assert owner is not None
    for child in owner:
        if local_name(child.tag) not in ("ID", "DisplayName"):
            raise _malformed(f"unexpected element {local_name(child.tag)} in Owner")
    owner_id = _text_of(owner, "ID")
    acl_node = _only_child(root, "AccessControlList")
    assert acl_node is not None
    grants = []
    for node in acl_node:
        if local_name(node.tag) != "Grant":
            raise _malformed(f"unexpected element {local_name(node.tag)} in AccessControlList")
        grants.append(_grant(node, known_id))
        if len(grants) > MAX_GRANTS:
            raise _malformed(f"more than {MAX_GRANTS} grants")
    return owner_id, Acl(grants=tuple(grants))


def owner_xml(owner_id: str, display_name: str, tag: str = "Owner") -> str:
    return f"<{tag}>" + el("ID", owner_id) + el("DisplayName", display_name) + f"</{tag}>"


def render_access_control_policy(
    owner_id: str,
    owner_name: str,
    grants: Iterable[Grant],
    display_name: Callable[[str], str | None],
) -> list[str]:
    """The children of an AccessControlPolicy response (GetBucketAcl,
    GetObjectAcl); ``display_name`` names a canonical id, or None."""
    items = []
    for g in grants:
        if g.grantee_type == GROUP:
            grantee = (
                f'<Grantee xmlns:xsi="{XSI_NS}" xsi:type="Group">' + el("URI", g.grantee)
                + "</Grantee>"
            )  # fmt: skip
        else:
            name = display_name(g.grantee)
            grantee = (
                f'<Grantee xmlns:xsi="{XSI_NS}" xsi:type="CanonicalUser">' + el("ID", g.grantee)
                + (el("DisplayName", name) if name is not None else "") + "</Grantee>"
            )  # fmt: skip
        items.append("<Grant>" + grantee + el("Permission", g.permission) + "</Grant>")
    return [
        owner_xml(owner_id, owner_name),
        "<AccessControlList>" + "".join(items) + "</AccessControlList>",
    ]


# ---- a bucket's stored ACL ---------------------------------------------------------


def bucket_acl_text(owner: str, acl: Acl) -> str:
    """``buckets.acl``: the bucket's owner (buckets have no other place to
    keep it) and its ACL, as canonical JSON."""
    return json.dumps({"owner": owner, **acl.to_value()}, sort_keys=True, separators=(",", ":"))


def parse_bucket_acl_text(text: str | None, default_owner: str) -> tuple[str, Acl]:
    """(owner, ACL) of ``buckets.acl``. A bucket with none (created before
    ACLs existed) is the account's (``default_owner``) and private; a
    stored value that does not parse is private too, so damage only narrows
    access."""
    if text is None:
        return default_owner, Acl(canned=PRIVATE)
    try:
        doc = json.loads(text)
        owner = doc.get("owner") if isinstance(doc, dict) else None
        if not isinstance(owner, str) or not owner:
            raise ValueError("no owner")
        rest = {k: v for k, v in doc.items() if k != "owner"}
        return owner, Acl.from_value(rest)
    except (ValueError, AttributeError):
        return default_owner, Acl(canned=PRIVATE)
