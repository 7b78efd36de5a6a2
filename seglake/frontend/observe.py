"""Seeing the server: ``GET /v1/meta/stats``, Prometheus text, health probes.

Reserved paths. S3 owns the whole path space of a listener (``/<bucket>``,
``/<bucket>/<key>``), so Seglake's own paths must be ones no S3 request can
mean:

* ``/v1/meta/stats`` — ``v1`` is too short to be a bucket name (3..63
  characters); SigV4 and the policy action ``GetMetaStats`` (endpoint table).
* ``/.seglake/health/live``, ``/.seglake/health/ready``,
  ``/.seglake/metrics`` — a bucket name cannot start with a dot, so a bucket
  called ``health`` or ``metrics`` stays reachable at ``/health/...`` and
  ``/metrics/...`` as S3 says. The probes are unauthenticated and say
  nothing about the data (no bucket, key or count): ``live`` that the
  process answers, ``ready`` whether it can take writes (writer reachable,
  free space above ``--min-free-bytes``, maintenance mode off), otherwise
  ``503`` with the reason and ``Retry-After``. Metrics go to loopback
  clients without a signature, or with ``--metrics-auth`` to anyone whose
  signed request may ``GetMetaStats``.
* ``--metrics-addr HOST:PORT``: a separate plain listener, not S3, serving
  ``/metrics``, ``/health/live`` and ``/health/ready`` without auth (bind it
  where only the monitoring network reaches).

Stats come from the maintenance process's admin socket (``stats``): one
document, merged from every process's reports (``seglake/metrics/``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from typing import Any, Final

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend.family_base import FamilyBase
from seglake.frontend.http import Request
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.call import call_typed, call_writer
from seglake.ipc.channel import ChannelBroken, ChannelClosed
from seglake.ipc.messages import AdminStats, MessageError, Ping
from seglake.meta.maintenance_state import OFF, read_state
from seglake.meta.reads import MetaReader
from seglake.metrics import prometheus

log = logging.getLogger("seglake.frontend")

RESERVED_PREFIX: Final = b"/.seglake/"
LIVE, READY, METRICS = "HealthLive", "HealthReady", "Metrics"
# Paths of the S3 listener and of the metrics listener → what they serve.
S3_LISTENER_PATHS: Final = {
    b"/.seglake/health/live": LIVE,
    b"/.seglake/health/ready": READY,
    b"/.seglake/metrics": METRICS,
}
METRICS_LISTENER_PATHS: Final = {
    b"/health/live": LIVE,
    b"/health/ready": READY,
    b"/metrics": METRICS,
}
WRITER_PING_S: Final = 1.0  # a writer slower than this to answer is not ready
RETRY_AFTER_S: Final = b"5"
PROMETHEUS_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"


async def fetch_stats(cfg: Config) -> dict[str, Any]:
    """The stats document from the admin socket (``ServiceUnavailable`` if
    the maintenance process does not answer)."""
    try:
        token = cfg.admin_token_path.read_text().strip()
        doc = await call_typed(str(cfg.admin_socket), AdminStats(token=token))
    except (OSError, MessageError, ChannelBroken, ChannelClosed, trio.TooSlowError) as exc:
        raise S3Error(
            "ServiceUnavailable", message=f"statistics are not available: {exc!r}"
        ) from None
    return doc


def is_loopback(req: Request) -> bool:
    client = req.scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(str(client[0])).is_loopback
    except ValueError:
        return False


async def readiness(cfg: Config, reader: MetaReader, writer: WriterClient) -> str:
    """ "" when ready to take writes, else why not (no data named)."""
    # A fresh connection, not the shared one: that one waits for a writer
    # being restarted, and a probe must say "not now" instead.
    try:
        with trio.fail_after(WRITER_PING_S):
            await call_writer(str(cfg.writer_socket), Ping())
    except (S3Error, trio.TooSlowError, OSError, ChannelBroken, ChannelClosed):
        return "writer unavailable"
    try:
        st = os.statvfs(cfg.root)
    except OSError:
        return "data directory unavailable"
    if st.f_bavail * st.f_frsize < cfg.min_free_bytes:
        return "free space below the reserve"
    if read_state(reader.conn).get("state", OFF) != OFF:
        return "maintenance mode"
    return ""


async def serve_probe(
    kind: str, req: Request, cfg: Config, reader: MetaReader, writer: WriterClient
) -> None:
    """Answer a health probe or (already authorised) the metrics text."""
    no_store = [(b"cache-control", b"no-store")]
    if kind == LIVE:
        await req.respond(200, no_store, b'{"status":"live"}\n', b"application/json")
        return
    if kind == READY:
        reason = await readiness(cfg, reader, writer)
        if reason:
            body = json.dumps({"status": "unavailable", "reason": reason}).encode() + b"\n"
            await req.respond(
                503, [*no_store, (b"retry-after", RETRY_AFTER_S)], body, b"application/json"
            )
        else:
            await req.respond(200, no_store, b'{"status":"ready"}\n', b"application/json")
        return
    doc = await fetch_stats(cfg)
    await req.respond(200, no_store, prometheus.render(doc).encode(), PROMETHEUS_TYPE)


class ObserveHandlers(FamilyBase):
    async def meta_stats(self, req: Request) -> None:
        doc = await fetch_stats(self.cfg)
        body = json.dumps(doc, sort_keys=True).encode()
        await req.respond(200, [(b"cache-control", b"no-store")], body, b"application/json")
