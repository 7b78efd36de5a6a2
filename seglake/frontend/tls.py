"""Native TLS for the frontends, with certificate reload and no restarts.

Rules this file keeps:
- TLS 1.2 or later; TLS 1.2 only with ECDHE key exchange and AEAD ciphers
  (TLS 1.3's suites are all of that kind); no compression; ALPN offers
  HTTP/1.1 only (the app is served and tested over h11, not h2).
- One ``ssl.SSLContext`` lives as long as the frontend. A new certificate is
  loaded *into* it: connections already open keep the certificate they were
  handshaken with, every handshake after the reload gets the new one, and no
  connection is dropped.
- A new certificate/key pair is first loaded into a scratch context. If that
  fails (a half-written file, a key that does not match, garbage) it is
  refused with a log line and the old one stays in service; the next change
  to either file is tried again.
- Reloads are noticed by polling the two files' identity (inode, size,
  mtime) and on SIGHUP; both run in the frontend's trio thread, the one
  thread that also drives every handshake, so a reload never races one.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio
from hypercorn.config import Config as _HypercornConfig

log = logging.getLogger("seglake.frontend.tls")

TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN: Final = ["http/1.1"]
# A replaced certificate is in service within this long (a rotation tool
# that renames files into place is seen on the next look).
POLL_INTERVAL_S: Final = 1.0

FileId = tuple[int, int, int] | None  # (inode, size, mtime_ns), None: missing


def _file_id(path: Path) -> FileId:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(ALPN)
    return ctx


def check_pair(cert: Path, key: Path) -> None:
    """Raise ``ssl.SSLError``/``OSError`` unless the pair loads (start-up check)."""
    server_context().load_cert_chain(str(cert), str(key))


@dataclass
class ReloadingContext:
    cert: Path
    key: Path

    def __post_init__(self) -> None:
        self.context = server_context()
        self.context.load_cert_chain(str(self.cert), str(self.key))
        self._seen = (_file_id(self.cert), _file_id(self.key))
        self.reloads = 0
        self.refusals = 0

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Load the files into the live context if they changed; True if it did."""
        seen = (_file_id(self.cert), _file_id(self.key))
        if seen == self._seen and not force:
            return False
        self._seen = seen
        try:
            check_pair(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            self.refusals += 1
            log.warning(
                "new TLS certificate %s / key %s refused, the old one stays in service: %s",
                self.cert, self.key, exc,
            )  # fmt: skip
            return False
        self.context.load_cert_chain(str(self.cert), str(self.key))
        self.reloads += 1
        log.info("TLS certificate reloaded from %s (reload #%d)", self.cert, self.reloads)
        return True

    async def watch(self) -> None:
        """Poll the files, and reload at once on SIGHUP; runs until cancelled."""
        with trio.open_signal_receiver(signal.SIGHUP) as hups:

            async def on_hup() -> None:
                async for _ in hups:
                    self.reload_if_changed(force=True)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_hup)
                while True:
                    await trio.sleep(POLL_INTERVAL_S)
                    self.reload_if_changed()


class HypercornConfig(_HypercornConfig):
    """Hypercorn's settings, serving TLS from ``tls``'s live context when set
    (Hypercorn alone would build a context from file names once, at start-up,
    and never look at the files again)."""

    tls: ReloadingContext | None = None

    @property
    def ssl_enabled(self) -> bool:
        return self.tls is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else self.tls.context
