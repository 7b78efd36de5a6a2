"""Logging set-up shared by every process: one line per event, tagged with
the process role and pid so interleaved output from children stays readable.

``--log-format json`` makes every line one JSON object (``time``, ``role``,
``pid``, ``level``, ``logger``, ``message``), the per-request access lines
included (``access_line``). Either way each line passes the redaction rules
(``seglake/redaction.py``): no signature, Authorization value or secret.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any
from urllib.parse import quote

from seglake.redaction import RedactingFilter, redact


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": round(record.created, 6),
            "role": self.role,
            "pid": os.getpid(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            doc["traceback"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str, role: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s {role}[{os.getpid()}] %(levelname)s %(name)s: %(message)s"
            )
        )
    handler.addFilter(RedactingFilter())  # no signature or credential in any log line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # hypercorn's access log is replaced by our own per-request line.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)


def access_line(fmt: str, role: str, pid: int, fields: dict[str, Any]) -> str:
    """One request's access-log line (with its newline), written by the
    frontend straight to stderr: the logging machinery costs more than a
    small GET's own work. ``fields``: ``request_id``, ``client``,
    ``access_key``, ``method``, ``op``, ``bucket``, ``key``, ``status``,
    ``bytes_in``, ``bytes_out``, ``duration_ms``. The object key is user
    data: it is percent-quoted (one line, no spaces) and redacted like any
    message; nothing else here can carry a credential (the access key id is
    public, the secret and the signature are never in ``fields``)."""
    key = redact(str(fields.get("key") or ""))
    if fmt == "json":
        doc = {"time": round(time.time(), 6), "role": role, "pid": pid, "event": "access"}
        doc.update(fields)
        doc["key"] = key
        return json.dumps(doc, ensure_ascii=False) + "\n"
    f = fields
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} {role}[{pid}] access {f['request_id']} "
        f"{f.get('client') or '-'} {f.get('access_key') or '-'} {f['method']} {f['op']} "
        f"{f.get('bucket') or '-'} {quote(key, safe='/') or '-'} {f['status']} "
        f"{f['bytes_in']} {f['bytes_out']} {f['duration_ms']:.1f}ms\n"
    )
