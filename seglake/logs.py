"""Logging set-up shared by every process: one line per event, tagged with
the process role and pid so interleaved output from children stays readable."""

from __future__ import annotations

import logging
import os
import sys

from seglake.redaction import RedactingFilter


def setup_logging(level: str, role: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {role}[{os.getpid()}] %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter())  # no signature or credential in any log line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # hypercorn's access log is replaced by our own per-request line.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
