"""The frontend's ASGI application.

Per request: assign a request id → enforce header/URL limits → route →
authenticate (SigV4, before reading any body byte) → dispatch to the
operation's handler. Every failure becomes AWS XML from the one error table,
with ``x-amz-request-id``; unexpected exceptions are logged with their
traceback and answered with a bare ``InternalError`` (no traceback leaves the
process). The frontend never writes: mutations go to the writer over IPC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend.families import FAMILIES
from seglake.frontend.family import Handler
from seglake.frontend.http import Receive, Request, Scope, Send, new_request_id
from seglake.frontend.objects import ResponseAborted
from seglake.frontend.router import route
from seglake.frontend.writer_client import WriterClient
from seglake.meta.reads import MetaReader
from seglake.meta.schema import open_read
from seglake.protocol.sigv4 import RequestView, authenticate
from seglake.protocol.xml import error_document

log = logging.getLogger("seglake.frontend")

# An error may be answered before the request body is read (auth, missing
# bucket, writer gone). Up to this much of the rest is read and dropped so the
# connection stays usable and the client sees the answer; a bigger or slower
# body gets the answer with ``Connection: close``.
DISCARD_LIMIT_BYTES = 16 * 1024 * 1024
DISCARD_SECONDS = 5.0


class App:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._writer: WriterClient | None = None
        self._handlers: dict[str, Handler] = {}
        self.secrets = {cfg.access_key: cfg.secret_key} if cfg.access_key else {}
        self._access_log = logging.getLevelName(cfg.log_level.upper()) <= logging.INFO
        self._pid = os.getpid()

    def bind(self, nursery: trio.Nursery) -> None:
        """Attach to the process's long-lived nursery (writer channel reader)."""
        writer = WriterClient(str(self.cfg.writer_socket), nursery)
        reader = MetaReader(open_read(str(self.cfg.db_path)))
        self._writer = writer
        for family in FAMILIES:
            for op, handler in family(self.cfg, reader, writer).handlers().items():
                if op in self._handlers:
                    raise RuntimeError(f"two handlers for {op}")
                self._handlers[op] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        req: Request | None = None
        try:
            req = Request.from_scope(scope, receive, send)
            await self._handle(req)
        except S3Error as exc:
            if req is None:
                req = _fallback_request(scope, receive, send)
            await self._error(req, exc)
        except ResponseAborted:
            raise
        except Exception:
            log.exception("unhandled error")
            if req is None:
                req = _fallback_request(scope, receive, send)
            if req.started:
                raise
            await self._error(req, S3Error("InternalError"))
        finally:
            if req is not None and self._access_log:
                # One line per request, written directly: the logging
                # machinery costs more than the rest of a small GET's own work.
                line = (
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')} frontend[{self._pid}] access "
                    f"{req.request_id} {req.method} "
                    f"{req.route.operation if req.route else '-'} {req.status} "
                    f"{req.bytes_out} {(time.perf_counter() - started) * 1000:.1f}ms\n"
                )
                with contextlib.suppress(OSError):
                    os.write(2, line.encode("utf-8", "replace"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, req: Request) -> None:
        if len(req.raw_path) + len(req.query_string) > self.cfg.max_url_bytes:
            raise S3Error("InvalidURI", message="The URL is too long")
        if sum(len(k) + len(v) + 4 for k, v in req.raw_headers) > self.cfg.max_header_bytes:
            raise S3Error("RequestHeaderSectionTooLarge")
        req.route = route(
            req.method, req.raw_path, req.query,
            copy_source="x-amz-copy-source" in req.headers,
        )  # fmt: skip
        view = RequestView(req.method, req.raw_path, req.query_string, req.raw_headers)
        req.auth = authenticate(
            view, self.secrets.get, dt.datetime.now(dt.UTC), region=self.cfg.region
        )
        if req.auth is None:
            raise S3Error("AccessDenied", message="Anonymous access is not allowed")
        await self._dispatch(req, req.route.operation)

    async def _dispatch(self, req: Request, op: str) -> None:
        handler = self._handlers.get(op)
        if handler is None:
            raise S3Error("NotImplemented", message=f"{op} is not implemented by Seglake")
        await handler(req)

    async def _error(self, req: Request, exc: S3Error) -> None:
        if req.started:
            # Too late for an error document; cut the connection instead of
            # letting a truncated body look complete.
            raise ResponseAborted() from exc
        resource = exc.resource or req.raw_path.decode("utf-8", "replace")
        headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        if not await req.discard_body(DISCARD_LIMIT_BYTES, DISCARD_SECONDS):
            # The client is still sending and will not read our answer until
            # it is done: close the connection after the answer instead.
            headers.append((b"connection", b"close"))
        if exc.status >= 500:
            log.warning("%s %s: %s", req.request_id, exc.code, exc.text)
        if exc.code == "NotModified" or req.method == "HEAD":
            await req.start(exc.status, headers)
            await req.body(b"")
            return
        body = error_document(exc.code, exc.text, resource, req.request_id, exc.fields)
        if exc.status == 503:
            headers.append((b"retry-after", b"1"))
        await req.xml(exc.status, body, headers)


def _fallback_request(scope: Scope, receive: Receive, send: Send) -> Request:
    return Request(
        scope=scope, receive=receive, send=send, method=str(scope.get("method", "GET")),
        raw_path=bytes(scope.get("raw_path") or b"/"), query_string=b"", raw_headers=[],
        request_id=new_request_id(),
    )  # fmt: skip
