"""Helpers the end-to-end modules share: the CLI run against a data dir, the
metadata database read directly, a chunk's byte flipped on disk, and boto3
clients that send extra headers or report an error's status and code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest
from botocore.exceptions import ClientError

from seglake.format.manifest import ChunkRef

CLI_TIMEOUT_S = 120


def cli(
    data_dir: Path, *args: str, timeout_s: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """``python -m seglake.cli ARGS --data-dir DATA_DIR``, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "seglake.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def cli_json(
    data_dir: Path, *args: str, timeout_s: float = CLI_TIMEOUT_S
) -> tuple[int, dict[str, Any]]:
    """The exit code and the JSON document of ``cli(..., "--json")``."""
    out = cli(data_dir, *args, "--json", timeout_s=timeout_s)
    assert out.stdout, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return out.returncode, doc


def db_rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of ``sql`` on the data dir's ``meta.db``, opened read-only."""
    conn = apsw.Connection(str(data_dir / "meta.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def flip_chunk_byte(data_dir: Path, chunk: ChunkRef, at: int) -> Path:
    """Invert the byte ``at`` bytes into ``chunk`` in its segment file; that file."""
    seg = data_dir / "objects" / "segments" / f"{chunk.segment_id:016x}.seg"
    with open(seg, "r+b") as f:
        f.seek(chunk.offset + at)
        byte = f.read(1)
        f.seek(chunk.offset + at)
        f.write(bytes([byte[0] ^ 0xFF]))
    return seg


def with_headers(s3: Any, headers: dict[str, str]) -> Any:
    """``s3`` made to add ``headers`` to every request (signed with them)."""

    def add(request: Any, **_: Any) -> None:
        for k, v in headers.items():
            request.headers[k] = v

    s3.meta.events.register("before-sign.s3.*", add)
    return s3


def status_and_code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    """The HTTP status and the S3 error code of a failed boto3 call."""
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]
