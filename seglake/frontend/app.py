"""The frontend's ASGI application.

Per request: assign a request id → enforce header/URL limits → answer a CORS
preflight (``OPTIONS``, unauthenticated by design) → route (path style, or
virtual-hosted style from the Host header) → authenticate (SigV4 over the
raw path as sent, before reading any body byte) → dispatch to the operation's
handler. CORS: a request with an ``Origin`` naming a bucket that has its own
CORS configuration (PutBucketCors) is answered by the bucket's rules
(``protocol/bucket_cors.py``, read per request); otherwise, while the
server-wide ``--cors-*`` policy is configured, every answer carries ``Vary:
Origin`` and, for an allowed Origin, ``Access-Control-Allow-Origin``/
``-Expose-Headers``. Error answers carry them too.
Every failure becomes AWS XML from the one error table, with
``x-amz-request-id``; unexpected exceptions are logged with their traceback
and answered with a bare ``InternalError`` (no traceback leaves the process). The frontend never writes: mutations go to the writer over IPC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from typing import Any

import apsw
import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend.authz import Authorizer
from seglake.frontend.bucket_cors import bucket_rules
from seglake.frontend.dispatch import bind_handlers
from seglake.frontend.family_base import Handler
from seglake.frontend.http import Message, Receive, Request, Scope, Send, new_request_id
from seglake.frontend.objects import ResponseAborted
from seglake.frontend.observe import (
    METRICS,
    METRICS_LISTENER_PATHS,
    S3_LISTENER_PATHS,
    is_loopback,
    serve_probe,
)
from seglake.frontend.postobject import FORM_SCOPE, read_form
from seglake.frontend.protection import Guard, timed_receive
from seglake.frontend.router import Route, host_bucket, route, split_path
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.report import report_forever
from seglake.logs import access_line
from seglake.meta.reads import MetaReader
from seglake.meta.schema import open_read
from seglake.metrics.requests import RequestCounters
from seglake.protocol import bucket_cors
from seglake.protocol.bucket_cors import CorsConfiguration
from seglake.protocol.cors import CorsPolicy
from seglake.protocol.endpoints import ENDPOINT_BY_NAME
from seglake.protocol.sigv4 import RequestView, authenticate
from seglake.protocol.unimplemented_headers import refuse_unimplemented
from seglake.protocol.xml import error_document

log = logging.getLogger("seglake.frontend")

# An error may be answered before the request body is read (auth, missing
# bucket, writer gone). Up to this much of the rest is read and dropped so the
# connection stays usable and the client sees the answer; a bigger or slower
# body gets the answer with ``Connection: close``.
DISCARD_LIMIT_BYTES = 16 * 1024 * 1024
DISCARD_SECONDS = 5.0
# Where ``_with_cors`` leaves the bucket's CORS configuration for ``_preflight``.
BUCKET_CORS_SCOPE = "seglake.bucket_cors"


class App:
    def __init__(self, cfg: Config, name: str = "frontend") -> None:
        self.cfg = cfg
        self.name = name  # as the supervisor knows it: "frontend-<n>"
        self.counters = RequestCounters() if cfg.metrics else None
        self._reader: MetaReader | None = None
        self._writer: WriterClient | None = None
        self._handlers: dict[str, Handler] = {}
        self._access_log = logging.getLevelName(cfg.log_level.upper()) <= logging.INFO
        self._pid = os.getpid()
        self.cors = CorsPolicy.from_config(cfg)
        self._domains = cfg.domain_list
        self.guard = Guard(cfg)  # auth-failure limits, replay cache
        self.authz: Authorizer | None = None

    def bind(self, nursery: trio.Nursery) -> None:
        """Attach to the process's long-lived nursery (writer channel reader)."""
        writer = WriterClient(str(self.cfg.writer_socket), nursery)
        reader = MetaReader(open_read(str(self.cfg.db_path)))
        self._writer = writer
        self._reader = reader
        self.authz = Authorizer(self.cfg, open_read(str(self.cfg.db_path)))
        self._handlers = bind_handlers(self.cfg, reader, writer)
        if self.counters is not None:
            nursery.start_soon(
                report_forever, str(self.cfg.supervisor_socket), self.name, "frontend",
                self._report, self.cfg.stats_interval,
            )  # fmt: skip

    def _report(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.counters is not None
        self.counters.replays = self.guard.replays_detected
        return self.counters.counters(), self.counters.gauges()

    def _begin(self, req: Request, op: str) -> None:
        if self.counters is not None:
            req.counted_op = op
            self.counters.begin(op)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        req: Request | None = None
        error_code = ""
        send = self._with_cors(scope, send)
        receive = timed_receive(receive, self.cfg.body_idle_timeout, self.cfg.body_min_rate)
        try:
            req = Request.from_scope(scope, receive, send)
            await self._handle(req)
        except S3Error as exc:
            if req is None:
                req = _fallback_request(scope, receive, send)
            error_code = exc.code
            await self._error(req, self.guard.on_error(req, exc))
        except ResponseAborted:
            raise
        except Exception:
            log.exception("unhandled error")
            if req is None:
                req = _fallback_request(scope, receive, send)
            if req.started:
                raise
            error_code = "InternalError"
            await self._error(req, S3Error("InternalError"))
        finally:
            if req is not None:
                self._finished(req, time.perf_counter() - started, error_code)

    def _finished(self, req: Request, seconds: float, error_code: str) -> None:
        """Count the request and write its access-log line."""
        route = req.route
        op = req.counted_op or (route.operation if route else "Unrouted")
        key_id = req.auth.access_key if req.auth is not None else None
        status = req.status or 499  # no answer sent: the client went away
        if self.counters is not None:
            if req.counted_op is not None:
                self.counters.end(req.counted_op)
            self.counters.done(
                op, status, seconds, bucket=route.bucket if route else "", key_id=key_id,
                bytes_in=req.bytes_in, bytes_out=req.bytes_out, error_code=error_code,
            )  # fmt: skip
        if self._access_log:
            # One line per request, written directly (logs.access_line).
            client = req.scope.get("client")
            line = access_line(
                self.cfg.log_format, "frontend", self._pid,
                {
                    "request_id": req.request_id,
                    "client": f"{client[0]}:{client[1]}" if client else "",
                    "access_key": key_id, "method": req.method, "op": op,
                    "bucket": route.bucket if route else "", "key": route.key if route else "",
                    "status": status, "bytes_in": req.bytes_in, "bytes_out": req.bytes_out,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )  # fmt: skip
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
        if req.method == "OPTIONS":
            await self._preflight(req)
            return
        vhost = (
            host_bucket(req.headers.get("host"), self._domains) if self.cfg.virtual_hosted else ""
        )
        probe = S3_LISTENER_PATHS.get(req.raw_path) if not vhost else None
        if probe is not None and req.method in ("GET", "HEAD"):
            await self._probe(req, probe)
            return
        req.route = route(
            req.method, req.raw_path, req.query,
            copy_source="x-amz-copy-source" in req.headers, vhost_bucket=vhost,
        )  # fmt: skip
        self._begin(req, req.route.operation)
        # The signature covers the path exactly as sent (for virtual-hosted
        # requests: without the bucket, which is in the signed Host header).
        view = RequestView(req.method, req.raw_path, req.query_string, req.raw_headers)
        # Keys: the bootstrap admin and the enabled keys of meta.db. Then
        # authorisation (identity, allow-list, policies, in-flight limit),
        # still before any byte of the body is read.
        assert self.authz is not None, "bind() first"
        self.guard.admit(req)
        req.auth = authenticate(
            view, self.authz.secret_for, dt.datetime.now(dt.UTC), region=self.cfg.region
        )
        if req.auth is None and ENDPOINT_BY_NAME[req.route.operation].signed_form:
            # A browser form upload is signed in its fields, not its headers.
            form = await read_form(req, self.cfg, self.authz.secret_for)
            req.scope[FORM_SCOPE] = form
            req.auth = form.auth
        else:
            self.guard.check_replay(req)
        with self.authz.authorize(req):
            await self._dispatch(req, req.route.operation)

    async def _probe(self, req: Request, kind: str) -> None:
        """A reserved ``/.seglake/...`` path (``observe.py``): health probes
        unauthenticated; metrics to loopback, or signed with --metrics-auth."""
        assert self._reader is not None and self._writer is not None and self.authz is not None
        req.route = Route(kind, "", "")
        self._begin(req, kind)
        if kind == METRICS:
            if self.cfg.metrics_auth:
                # Authorised as GetMetaStats: the same figures as /v1/meta/stats.
                req.route = Route("GetMetaStats", "", "")
                view = RequestView(req.method, req.raw_path, req.query_string, req.raw_headers)
                self.guard.admit(req)
                req.auth = authenticate(
                    view, self.authz.secret_for, dt.datetime.now(dt.UTC), region=self.cfg.region
                )
                with self.authz.authorize(req):
                    await serve_probe(kind, req, self.cfg, self._reader, self._writer)
                return
            if not is_loopback(req):
                raise S3Error(
                    "AccessDenied",
                    message="metrics are served to loopback clients only "
                    "(see --metrics-auth and --metrics-addr)",
                )
        await serve_probe(kind, req, self.cfg, self._reader, self._writer)

    async def metrics_listener(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app of the separate ``--metrics-addr`` listener: only
        ``/metrics`` and ``/health/*``, no S3, no auth."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        req = Request.from_scope(scope, receive, send)
        kind = METRICS_LISTENER_PATHS.get(req.raw_path)
        assert self._reader is not None and self._writer is not None
        try:
            if kind is None or req.method not in ("GET", "HEAD"):
                await req.respond(404, [], b"not found\n", b"text/plain")
                return
            await serve_probe(kind, req, self.cfg, self._reader, self._writer)
        except S3Error as exc:
            if not req.started:
                body = f"{exc.code}: {exc.text}\n".encode()
                await req.respond(exc.status, [(b"retry-after", b"5")], body, b"text/plain")

    def _names(self, scope: Scope) -> tuple[str, str]:
        """(bucket, key) the request's path names, path or virtual-hosted
        style; ("", "") for a path routing would refuse."""
        host = None
        for name, value in scope.get("headers", ()):
            if bytes(name).lower() == b"host":
                host = bytes(value).decode("latin-1")
                break
        vhost = host_bucket(host, self._domains) if self.cfg.virtual_hosted else ""
        try:
            return split_path(bytes(scope.get("raw_path") or b"/"), vhost)
        except S3Error:
            return "", ""

    def _bucket_rules(self, scope: Scope) -> CorsConfiguration | None:
        """The CORS configuration of the bucket this request names, or None
        (no bucket, no such bucket, no configuration: the server-wide
        ``--cors-*`` settings apply). Read anew for every request, so a
        PutBucketCors applies from the next request on."""
        if self._reader is None:
            return None
        bucket, _ = self._names(scope)
        try:
            return bucket_rules(self._reader.conn, bucket)
        except apsw.Error:
            log.warning("reading the CORS configuration failed", exc_info=True)
            return None

    def _with_cors(self, scope: Scope, send: Send) -> Send:
        """``send`` that adds the CORS headers for this request's Origin:
        the bucket's own rules when it has them, else the server-wide policy."""
        origin = None
        for name, value in scope.get("headers", ()):
            if bytes(name).lower() == b"origin":
                # Several Origin headers join into a value no origin matches.
                text = bytes(value).decode("latin-1")
                origin = text if origin is None else f"{origin},{text}"
        rules = self._bucket_rules(scope) if origin is not None else None
        scope[BUCKET_CORS_SCOPE] = rules
        method = str(scope.get("method"))
        if rules is not None:
            extra = bucket_cors.response_headers(rules, origin, method)
        elif self.cors.enabled:
            extra = self.cors.vary() + self.cors.response_headers(origin, method)
        else:
            extra = []
        if not extra:
            return send

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return send_with_cors

    async def _preflight(self, req: Request) -> None:
        """CORS preflight: no routing, no signature (browsers send none)."""
        req.route = Route("CorsPreflight", "", "")
        origin = req.headers.get("origin")
        method = req.headers.get("access-control-request-method")
        if not origin:
            raise S3Error(
                "InvalidRequest", message="Insufficient information. Origin request header needed."
            )
        if not method:
            raise S3Error(
                "InvalidRequest",
                message="Insufficient information. Access-Control-Request-Method header needed.",
            )
        requested = req.headers.get("access-control-request-headers")
        rules: CorsConfiguration | None = req.scope.get(BUCKET_CORS_SCOPE)
        if rules is not None:
            headers = bucket_cors.preflight(rules, origin, method, requested)
            if headers is None:
                # As AWS: the method asked for, and what the path names.
                _, key = self._names(req.scope)
                raise S3Error(
                    "AccessForbidden",
                    message="CORSResponse: This CORS request is not allowed. This is usually "
                    "because the evalution of Origin, request method / "
                    "Access-Control-Request-Method or Access-Control-Request-Headers are not "
                    "whitelisted by the resource's CORS spec.",
                    fields={"Method": method, "ResourceType": "OBJECT" if key else "BUCKET"},
                )
            await req.respond(200, headers)
            return
        answer = self.cors.preflight(origin, method, requested)
        if not answer.allowed:
            raise S3Error("AccessForbidden")
        await req.respond(200, answer.headers)

    async def _dispatch(self, req: Request, op: str) -> None:
        handler = self._handlers.get(op)
        if handler is None:
            raise S3Error("NotImplemented", message=f"{op} is not implemented by Seglake")
        refuse_unimplemented(op, req.headers)
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
        if exc.status == 503:
            # SlowDown and ServiceUnavailable: when to try again, HEAD too.
            headers.append((b"retry-after", b"1"))
        if exc.code == "NotModified" or req.method == "HEAD":
            await req.start(exc.status, headers)
            await req.body(b"")
            return
        body = error_document(exc.code, exc.text, resource, req.request_id, exc.fields)
        await req.xml(exc.status, body, headers)


def _fallback_request(scope: Scope, receive: Receive, send: Send) -> Request:
    return Request(
        scope=scope, receive=receive, send=send, method=str(scope.get("method", "GET")),
        raw_path=bytes(scope.get("raw_path") or b"/"), query_string=b"", raw_headers=[],
        request_id=new_request_id(),
    )  # fmt: skip
