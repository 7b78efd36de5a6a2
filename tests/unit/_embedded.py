"""Running writer requests through a real embedded writer in unit tests."""

from __future__ import annotations

from typing import Any

import trio

from seglake.config import Config
from seglake.errors import S3Error
from seglake.writer.embedded import EmbeddedWriter, run_embedded


def apply_all(cfg: Config, msgs: list[Any]) -> list[Any]:
    """Each request's reply in order, or the S3 error code it was refused with."""

    async def work(w: EmbeddedWriter) -> list[Any]:
        out: list[Any] = []
        for m in msgs:
            try:
                out.append(await w.apply(m))
            except S3Error as exc:
                out.append(exc.code)
        return out

    result: list[Any] = trio.run(run_embedded, cfg, "test", work)
    return result
