"""The persisted maintenance (quiesce) state: its names and how it is read.

The writer owns the state machine (``seglake/writer/quiesce.py``) and is the
only one to write the setting; read-only tools (``seglake maintenance
status`` with no server) read the same document here.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import apsw

from seglake.meta.schema import get_setting

log = logging.getLogger("seglake.writer.quiesce")

# The settings row holding the state document.
MAINTENANCE_SETTING: Final = "maintenance"
OFF: Final = "off"
ENTERING: Final = "entering"
QUIESCED: Final = "quiesced"
EXITING: Final = "exiting"
STATES: Final = (OFF, ENTERING, QUIESCED, EXITING)


def decode_doc(raw: str | None) -> dict[str, Any]:
    """The persisted document, or the default ``off`` one."""
    doc: dict[str, Any] = {"state": OFF, "since": 0.0, "history": []}
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError:
            log.error("unreadable maintenance setting %r; assuming quiesced", raw)
            # Fail safe: an unreadable state must not open the store to writes.
            loaded = {"state": QUIESCED}
        if isinstance(loaded, dict) and loaded.get("state") in STATES:
            doc.update(loaded)
    if not isinstance(doc.get("history"), list):
        doc["history"] = []
    return doc


def read_state(conn: apsw.Connection) -> dict[str, Any]:
    """The persisted document (for read-only tools: no restart mapping)."""
    return decode_doc(get_setting(conn, MAINTENANCE_SETTING))
