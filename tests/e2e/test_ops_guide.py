"""docs/ops.md cannot rot: every ```sh test block runs, in order, in one
bash session with ``set -euo pipefail``, against a scratch server, with the
variables the guide tells operators to set."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "ops.md"
BLOCK = re.compile(r"^```sh test\n(.*?)^```$", re.M | re.S)
GUIDE_TIMEOUT_S = 600
MIN_BLOCKS = 8  # the guide's runbook sections; fewer means blocks lost their marker


def test_every_tested_block_of_the_guide_runs(tmp_path: Path) -> None:
    blocks = BLOCK.findall(GUIDE.read_text())
    assert len(blocks) >= MIN_BLOCKS, f"only {len(blocks)} tested blocks in docs/ops.md"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "seglake"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m seglake.cli "$@"\n')
    shim.chmod(0o755)
    script = "\n".join(
        f"echo '### docs/ops.md block {i + 1}' >&2\n{body}" for i, body in enumerate(blocks)
    )
    with SeglakeServer(tmp_path / "data") as srv:
        env = {
            "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(tmp_path),
            "SEGLAKE_DATA_DIR": str(srv.data_dir),
            # what sourcing /etc/seglake/secrets.env exports, as the guide says
            "SEGLAKE_ACCESS_KEY": ACCESS_KEY,
            "SEGLAKE_SECRET_KEY": SECRET_KEY,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "ENDPOINT": srv.endpoint,
            "PYTHONPATH": str(REPO),
        }
        try:
            out = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                capture_output=True, text=True, timeout=GUIDE_TIMEOUT_S, check=False,
            )  # fmt: skip
        finally:
            for leftover in ("ops-guide-hello.txt", "ops-guide-meta.db", "ops-guide-meta.db.json"):
                Path("/tmp", leftover).unlink(missing_ok=True)
        ran = out.stderr.count("### docs/ops.md block")
        assert out.returncode == 0, (
            f"block {ran} of docs/ops.md failed (exit {out.returncode})\n"
            f"stdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}"
        )
        assert ran == len(blocks)
        # What the blocks did is visible from outside too.
        s3 = srv.s3()
        assert "photos" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert "secret-key" in out.stdout and "<redacted>" in out.stdout
