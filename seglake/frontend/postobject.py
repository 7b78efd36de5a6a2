"""PostObject: browser form uploads (``POST /bucket``, multipart/form-data).

Two steps, split around authorisation:

1. ``read_form`` (called by the app in place of header authentication, since
   a form carries its signature in its fields): reads the fields up to the
   file part through the streaming parser (``seglake.protocol.formdata``),
   verifies the SigV4 signature over the policy and every policy condition
   (``seglake.protocol.postpolicy``), and works out the key. Nothing of the
   file has been read yet. A form with no signing fields at all stays
   anonymous: the authoriser then allows it only where a public bucket's
   policy lets anyone PutObject, as S3 does for unsigned forms.
2. ``PostObjectHandlers.post_object`` (after the authoriser has accepted the
   signer): the file is streamed through the same ingest path as PutObject
   (``seglake.frontend.body.ingest``: chunked to the writer as it arrives,
   hashed, checked), capped by ``content-length-range`` and
   ``--max-object-size`` while it streams, and committed only once every
   check has passed. A form that fails any check stores nothing.

The bucket is always the one in the URL; form fields cannot change it.
Fields with S3 semantics Seglake does not implement (ACLs other than
private, server-side encryption, storage classes, website redirects,
session tokens) are refused with 501 rather than ignored. ``tagging`` (a
Tagging XML document) gives the new object its tags.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode, urlsplit

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend import lock_fields
from seglake.frontend.access import with_acl
from seglake.frontend.body import ingest
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Message, Request
from seglake.frontend.objects import (
    STORED_HEADERS,
    require_content_md5,
    require_if_match,
    stored_meta,
    validate_key,
)
from seglake.frontend.protection import CLAIMED_KEY_SCOPE
from seglake.frontend.router import Route
from seglake.frontend.sse import SseKeyring, bucket_default_sse
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.messages import Chunk, Put, VersionMetaInit
from seglake.meta.reads import MetaReader
from seglake.protocol import checksums
from seglake.protocol.formdata import (
    Event,
    Field,
    FileData,
    FileStart,
    FormDataParser,
    FormEnd,
    boundary_from_content_type,
)
from seglake.protocol.postpolicy import PostPolicy, check_conditions, check_length, verify_signature
from seglake.protocol.sigv4 import AuthContext
from seglake.protocol.tagging import parse_tagging
from seglake.protocol.xml import document, el

# Where ``read_form`` leaves the verified form for the handler.
FORM_SCOPE: Final = "seglake.post_form"
FILENAME_VARIABLE: Final = "${filename}"
# Form fields copied to the object as if they were PutObject headers.
_HEADER_FIELDS: Final = frozenset({"content-type", "content-md5", *STORED_HEADERS})
# Fields with a meaning Seglake does not implement, and the one value of
# each that means "the default" (None: no value is acceptable).
_UNSUPPORTED: Final[dict[str, str | None]] = {
    "x-amz-storage-class": "STANDARD",
    "x-amz-website-redirect-location": None,
    "x-amz-server-side-encryption": None,
    "x-amz-server-side-encryption-aws-kms-key-id": None,
    "x-amz-server-side-encryption-context": None,
    "x-amz-server-side-encryption-customer-algorithm": None,
    "x-amz-server-side-encryption-customer-key": None,
    "x-amz-server-side-encryption-customer-key-md5": None,
    "x-amz-security-token": None,
    "x-amz-object-lock-mode": None,
    "x-amz-object-lock-retain-until-date": None,
    "x-amz-object-lock-legal-hold": None,
}
_SUCCESS_STATUSES: Final = frozenset({"200", "201", "204"})
# Any of these makes a form a signed one, to be verified (SigV2 names too, so
# they get their clear refusal instead of being taken as anonymous).
_SIGNING_FIELDS: Final = frozenset(
    {"policy", "x-amz-signature", "x-amz-algorithm", "x-amz-credential", "x-amz-date"}
    | {"signature", "awsaccesskeyid"}
)


class FormStream:
    """Pulls the request body through the form parser, one event at a time."""

    def __init__(self, req: Request, parser: FormDataParser) -> None:
        self.req = req
        self.parser = parser
        self.pending: deque[Event] = deque()
        self.body_done = False

    async def next_event(self) -> Event | None:
        """The next event, or None once the body has ended (and was complete)."""
        while not self.pending:
            if self.body_done:
                return None
            message = await self.req.recv()
            if message["type"] == "http.disconnect":
                raise S3Error("IncompleteBody")
            data = message.get("body", b"")
            if data:
                self.pending.extend(self.parser.feed(bytes(data)))
            if not message.get("more_body", False):
                self.body_done = True
                self.parser.eof()
        return self.pending.popleft()

    async def receive_file(self) -> Message:
        """ASGI-style ``receive`` that yields only the file's content; after
        the file, the rest of the form is read (and dropped) to its end."""
        while True:
            event = await self.next_event()
            if isinstance(event, FileData):
                return {"type": "http.request", "body": event.data, "more_body": True}
            if event is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            # FileEnd, FormEnd: keep reading to the end of the body.


@dataclass
class PostForm:
    """A form whose fields have been read and checked. ``auth`` and
    ``policy`` are None for an unsigned form, which only a public bucket whose
    policy lets anyone PutObject accepts (the authoriser decides)."""

    fields: dict[str, str]
    policy: PostPolicy | None
    auth: AuthContext | None
    key: str
    stream: FormStream


def _field_text(f: Field) -> tuple[str, str]:
    try:
        return f.name.lower(), f.value.decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error(
            "InvalidArgument",
            message=f"The form field {f.name[:64]!r} is not valid UTF-8.",
            fields={"ArgumentName": f.name[:64]},
        ) from None


def _base_name(filename: str) -> str:
    # Some browsers send the client's full path; only the name is meant.
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


async def read_form(
    req: Request,
    cfg: Config,
    lookup_secret: Callable[[str], str | None],
) -> PostForm:
    """Read and verify a POST form's fields (everything before the file)."""
    boundary = boundary_from_content_type(req.headers.get("content-type"))
    if not boundary:
        raise S3Error(
            "PreconditionFailed",
            message="Bucket POST must be of the enclosure-type multipart/form-data",
            fields={"Condition": "Bucket POST must be of the enclosure-type multipart/form-data"},
        )
    stream = FormStream(req, FormDataParser(boundary))
    fields: dict[str, str] = {}
    start: FileStart | None = None
    while start is None:
        event = await stream.next_event()
        if event is None or isinstance(event, FormEnd):
            raise S3Error("IncorrectNumberOfFilesInPostRequest")
        if isinstance(event, FileStart):
            start = event
        elif isinstance(event, Field):
            name, value = _field_text(event)
            if name in fields:
                raise S3Error(
                    "MalformedPOSTRequest",
                    message=f"The form field {name[:64]!r} appears more than once.",
                )
            fields[name] = value
    credential = fields.get("x-amz-credential")
    if credential is not None:
        # For the auth-failure limits, before the signature is checked.
        req.scope[CLAIMED_KEY_SCOPE] = credential.split("/", 1)[0]
    bucket = req.route.bucket if req.route is not None else ""
    if fields.get("bucket", bucket) != bucket:
        raise S3Error(
            "InvalidArgument",
            message="The bucket form field does not match the bucket in the URL.",
            fields={"ArgumentName": "bucket"},
        )
    policy: PostPolicy | None = None
    auth: AuthContext | None = None
    if _SIGNING_FIELDS & fields.keys():
        post = verify_signature(fields, lookup_secret, dt.datetime.now(dt.UTC), region=cfg.region)
        check_conditions(post.policy, fields, bucket)
        policy, auth = post.policy, post.auth
    for name, default in _UNSUPPORTED.items():
        sent = fields.get(name)
        if sent is not None and (default is None or sent != default):
            raise S3Error(
                "NotImplemented", message=f"The form field {name!r} is not supported by Seglake"
            )
    template = fields.get("key")
    if template is None:
        raise S3Error(
            "InvalidArgument",
            message="Bucket POST must contain a field named 'key'.  If it is specified, "
            "please check the order of the fields.",
            fields={"ArgumentName": "key"},
        )
    # The policy approved the key as sent; the file name is filled in after.
    key = template.replace(FILENAME_VARIABLE, _base_name(start.filename))
    if not key:
        raise S3Error("InvalidArgument", message="The object key is empty.")
    validate_key(key)
    # The file part's own Content-Type is not used: like S3, only the form's
    # Content-Type field (which the policy covers) describes the object.
    return PostForm(fields, policy, auth, key, stream)


def _redirect_target(fields: dict[str, str]) -> str | None:
    """The success redirect URL, if one was given and is a usable http(s) URL."""
    url = fields.get("success_action_redirect") or fields.get("redirect")
    if not url:
        return None
    # It becomes a Location header: printable ASCII only, no spaces.
    if not url.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


class PostObjectHandlers(FamilyBase):
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        super().__init__(cfg, reader, writer)
        self.sse = SseKeyring(cfg, reader, writer)

    async def post_object(self, req: Request) -> None:
        form = req.scope.get(FORM_SCOPE)
        if not isinstance(form, PostForm):
            # Only the app's read_form puts a form here: this request was
            # signed some other way (an Authorization header), which does not
            # sign a form's fields.
            raise S3Error(
                "InvalidRequest",
                message="POST uploads are authenticated by the form's policy and signature",
            )
        if req.object_check is not None:
            req.object_check(form.key)
        self.require_bucket(req.bucket)
        # The form's ``acl`` field is the upload's x-amz-acl (AWS's POST).
        acl_headers = {"x-amz-acl": form.fields["acl"]} if "acl" in form.fields else {}
        acl, owner = self.access.new_object(acl_headers, req.identity, req.bucket, self.cfg)
        upload = self._upload_request(req, form)
        require_content_md5(self.cfg, upload)
        require_if_match(self.cfg, upload)
        # A lock bucket's default retention (the form's own lock fields are refused).
        lock, hold = lock_fields.lock_init(self.reader, upload)
        meta = stored_meta(upload)
        # The form's ``tagging`` field is a Tagging XML document (AWS's form).
        raw_tags = form.fields.get("tagging")
        vmeta = None
        if raw_tags is not None:
            vmeta = VersionMetaInit(tags=parse_tagging(raw_tags.encode("utf-8")))
        if not self.cfg.allow_unsigned_payload:
            raise S3Error(
                "AccessDenied",
                message="UNSIGNED-PAYLOAD is disabled on this server, and a form's file is unsigned",
            )
        cap = form.policy.max_length if form.policy is not None else None
        if self.cfg.max_object_size:
            cap = self.cfg.max_object_size if cap is None else min(cap, self.cfg.max_object_size)
        refs: dict[int, Chunk] = {}
        # The form's own encryption fields are refused (501) above; the
        # bucket's default encryption applies as to any PUT.
        sealing = (
            await self.sse.seal_s3()
            if bucket_default_sse(self.reader, req.bucket) is not None else None
        )  # fmt: skip

        async def on_chunk(data: bytes, digest: bytes, index: int) -> None:
            refs[index] = await self.writer.append(data, digest)

        body = await ingest(
            upload, self.cfg, (1 << 63) if cap is None else cap, on_chunk, at_most=True,
            sealer=None if sealing is None else sealing.cipher().seal,
        )  # fmt: skip
        if form.policy is not None:
            check_length(form.policy, body.size)
        if body.checksums:
            meta["checksums"] = body.checksums
        if sealing is not None:
            meta["sse"] = sealing.info.to_meta()
        put = Put(
            bucket=req.bucket, key=form.key, size=body.size, etag=body.etag, meta=meta,
            chunks=[refs[i] for i in range(len(refs))], tail_digest=body.tail_digest,
            owner=owner, vmeta=lock_fields.with_lock(with_acl(vmeta, acl), lock, hold),
        )  # fmt: skip
        result = await self.writer.call(put, body.tail)
        etag = f'"{body.etag}"'
        location = self._location(req, form.key)
        headers = [(b"etag", etag.encode()), (b"location", location.encode())]
        if sealing is not None:
            headers += sealing.response_headers()
        if result.version_id:
            headers.append((b"x-amz-version-id", result.version_id.encode()))
        for alg, value in body.checksums.items():
            headers.append((checksums.header_name(alg).encode(), value.encode()))
        target = _redirect_target(form.fields)
        if target is not None:
            query = urlencode({"bucket": req.bucket, "key": form.key, "etag": etag})
            sep = "&" if "?" in target else "?"
            redirect = [(b"location", f"{target}{sep}{query}".encode("ascii"))]
            await req.respond(303, [h for h in headers if h[0] != b"location"] + redirect)
            return
        status = form.fields.get("success_action_status", "204")
        if status not in _SUCCESS_STATUSES:
            status = "204"  # S3 answers 204 for a value it does not accept
        if status == "201":
            doc = document(
                "PostResponse",
                [
                    el("Location", location),
                    el("Bucket", req.bucket),
                    el("Key", form.key),
                    el("ETag", etag),
                ],
                namespace=False,
            )
            await req.xml(201, doc, headers)
        else:
            await req.respond(int(status), headers)

    def _upload_request(self, req: Request, form: PostForm) -> Request:
        """A Request view of the file for the PutObject machinery: the body is
        the file's content, the headers are the form's header-like fields."""
        headers = {
            name: value
            for name, value in form.fields.items()
            if name in _HEADER_FIELDS
            or name.startswith("x-amz-meta-")
            or checksums.algorithm_from_header(name) is not None
        }
        return Request(
            scope=req.scope, receive=form.stream.receive_file, send=req.send,
            method="PUT", raw_path=req.raw_path, query_string=b"", raw_headers=[],
            request_id=req.request_id, headers=headers,
            route=Route("PostObject", req.bucket, form.key), auth=form.auth,
        )  # fmt: skip

    @staticmethod
    def _location(req: Request, key: str) -> str:
        host = req.headers.get("host", "")
        if not host.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in host):
            host = ""
        scheme = "https" if req.scope.get("scheme") == "https" else "http"
        path = f"/{quote(req.bucket, safe='')}/{quote(key, safe='/')}"
        return f"{scheme}://{host}{path}" if host else path
