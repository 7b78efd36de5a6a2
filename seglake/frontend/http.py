"""The request object handlers receive, and response helpers (ASGI)."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

import trio

from seglake.auth.canonical import canonical_id
from seglake.errors import S3Error
from seglake.frontend.h11_fixes import send_continue
from seglake.frontend.router import Route
from seglake.protocol.sigv4 import AuthContext
from seglake.protocol.upload_checks import check_content_md5

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ObjectCheck(Protocol):
    def __call__(self, key: str, version_id: str | None = None) -> None:
        """Raise ``S3Error('AccessDenied')`` unless the endpoint's per-object
        operation (``Endpoint.per_object``) on ``key`` (of the request's
        bucket; ``version_id`` if it names one) is allowed."""


def new_request_id() -> str:
    return os.urandom(8).hex().upper()


@dataclass
class Request:
    scope: Scope
    receive: Receive
    send: Send
    method: str
    raw_path: bytes
    query_string: bytes
    raw_headers: list[tuple[bytes, bytes]]
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    route: Route | None = None
    auth: AuthContext | None = None
    started: bool = False  # response headers sent
    status: int = 0
    bytes_out: int = 0
    bytes_in: int = 0  # request body bytes received
    # The operation this request is counted under while in flight (metrics).
    counted_op: str | None = None
    body_complete: bool = False  # the last request body message was received
    body_started: bool = False
    disconnected: bool = False
    # Set by the authoriser (frontend/authz.py): the key making the request
    # (None: anonymous), and the check a handler runs for each object an
    # operation names in its body (DeleteObjects, PostObject).
    identity: Any = None
    object_check: ObjectCheck | None = None
    # PutObjectTagging: the policy decision again, with the body's tags
    # (set by the authorizer; seglake/frontend/authz.py).
    tag_check: Callable[[Sequence[tuple[str, str]]], None] | None = None

    async def recv(self) -> Message:
        """``receive()`` that remembers whether the request body was consumed."""
        if not self.body_started:
            self.body_started = True
            if self.headers.get("expect", "").lower() == "100-continue":
                sender = send_continue.get()
                if sender is not None:
                    await sender()
        message = await self.receive()
        self.bytes_in += len(message.get("body", b""))
        if message["type"] == "http.disconnect":
            self.disconnected = True
        elif not message.get("more_body", False):
            self.body_complete = True
        return message

    async def small_body(self, limit: int, *, allow_unsigned: bool) -> bytes:
        """The whole body of a request that carries a small document (XML),
        verified like an object body: it must be what was signed (hex
        x-amz-content-sha256), match Content-MD5 if sent, and may be unsigned
        only where the server allows it. More than ``limit`` bytes is refused
        without reading further."""
        declared = self.headers.get("x-amz-content-sha256", "")
        unsigned = declared == "UNSIGNED-PAYLOAD" or (
            self.auth is not None and self.auth.content_sha256 == "UNSIGNED-PAYLOAD"
        )
        if unsigned and not allow_unsigned:
            raise S3Error("AccessDenied", message="UNSIGNED-PAYLOAD is disabled on this server")
        if declared.startswith("STREAMING-"):
            raise S3Error("NotImplemented", message="aws-chunked bodies are not accepted here")
        data = bytearray()
        while True:
            message = await self.recv()
            if message["type"] == "http.disconnect":
                raise S3Error("IncompleteBody")
            data += message.get("body", b"")
            if len(data) > limit:
                raise S3Error("MaxMessageLengthExceeded")
            if not message.get("more_body", False):
                break
        body = bytes(data)
        if len(declared) == 64 and not hmac.compare_digest(
            hashlib.sha256(body).hexdigest(), declared.lower()
        ):
            raise S3Error("XAmzContentSHA256Mismatch")
        content_md5 = self.headers.get("content-md5")
        if content_md5 is not None:
            check_content_md5(content_md5, hashlib.md5(body).digest())
        return body

    async def discard_body(self, limit: int, seconds: float) -> bool:
        """Read and drop what is left of the request body, within bounds.

        An error answered while the client is still sending must either let
        the client finish (so it reads the answer) or close the connection;
        True means the body was fully consumed.
        """
        if self.body_complete or self.disconnected:
            return not self.disconnected
        if not self.body_started and self.headers.get("expect", "").lower() == "100-continue":
            return False  # reading now would invite the upload we are refusing
        seen = 0
        with trio.move_on_after(seconds):
            while not self.body_complete and not self.disconnected and seen <= limit:
                message = await self.recv()
                seen += len(message.get("body", b""))
        return self.body_complete

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, send: Send) -> Request:
        raw_headers = [(bytes(k), bytes(v)) for k, v in scope["headers"]]
        headers: dict[str, str] = {}
        for k, v in raw_headers:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        qs = bytes(scope.get("query_string", b""))
        try:
            query = parse_qs(qs.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise S3Error("InvalidURI", message="The query string is not valid UTF-8") from None
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        return cls(
            scope=scope, receive=receive, send=send, method=scope["method"],
            raw_path=bytes(raw_path), query_string=qs, raw_headers=raw_headers,
            request_id=new_request_id(), headers=headers, query=query,
        )  # fmt: skip

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def owner(self) -> str:
        """The canonical id of the key that signed this request ("" for an
        anonymous one): the owner of what it writes."""
        return "" if self.auth is None else canonical_id(self.auth.access_key)

    @property
    def bucket(self) -> str:
        assert self.route is not None
        return self.route.bucket

    @property
    def key(self) -> str:
        assert self.route is not None
        return self.route.key

    def common_headers(self) -> list[tuple[bytes, bytes]]:
        rid = self.request_id.encode()
        return [(b"x-amz-request-id", rid), (b"x-amz-id-2", rid), (b"server", b"Seglake")]

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.status = status
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": self.common_headers() + headers,
            }
        )

    async def body(self, data: bytes, more: bool = False) -> None:
        self.bytes_out += len(data)
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        content_type: bytes | None = None,
    ) -> None:
        hdrs = list(headers or [])
        if content_type is not None:
            hdrs.append((b"content-type", content_type))
        if self.method != "HEAD" or not any(k == b"content-length" for k, _ in hdrs):
            hdrs.append((b"content-length", str(len(body)).encode()))
        await self.start(status, hdrs)
        await self.body(b"" if self.method == "HEAD" else body)

    async def xml(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await self.respond(status, headers, body, content_type=b"application/xml")
