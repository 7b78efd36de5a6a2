"""--help lines and `seglake config show`: every setting explained, every
value traced to its source, no secret printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from seglake.cli import build_parser
from seglake.config import Config, build_config
from seglake.config_doc import HELP, REDACTED, effective, flag_help, sources


def test_every_setting_has_a_help_line() -> None:
    names = {f.name for f in fields(Config)}
    assert set(HELP) == names
    assert all(0 < len(line) <= 100 and not line.endswith(".") for line in HELP.values())


def test_help_names_default_and_environment_variable() -> None:
    assert flag_help("addr") == (
        "HOST:PORT to listen on (':9000' = every address, port 9000) "
        "(default :9000; env SEGLAKE_ADDR)"
    )
    assert flag_help("tls").endswith("(default false; env SEGLAKE_TLS)")
    assert flag_help("domains").endswith("(default ''; env SEGLAKE_DOMAINS)")
    text = build_parser().format_help()
    for f in fields(Config):
        assert f"env SEGLAKE_{f.name.upper()}" in " ".join(text.split()), f.name


def test_sources_follow_the_layering(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("SEGLAKE_SECRET_KEY=from-file\nregion=file-region\naddr=:1\n")
    secrets.chmod(0o600)
    env = {"SEGLAKE_REGION": "env-region", "SEGLAKE_LOG_LEVEL": "debug"}
    flags: dict[str, str | bool] = {"addr": "127.0.0.1:5"}
    cfg = build_config(flags, env=env, secrets_file=str(secrets))
    where = sources(flags, env, str(secrets))
    assert where["secret_key"] == f"file {secrets}"
    assert where["region"] == "env SEGLAKE_REGION" and cfg.region == "env-region"
    assert where["log_level"] == "env SEGLAKE_LOG_LEVEL"
    assert where["addr"] == "flag" and cfg.addr == "127.0.0.1:5"
    assert where["frontends"] == "default"
    rows = {r["name"]: r for r in effective(cfg, where)}
    assert rows["secret_key"]["value"] == REDACTED
    assert rows["addr"] == {"name": "addr", "value": "127.0.0.1:5", "source": "flag"}
    assert "from-file" not in json.dumps(list(rows.values()))


def test_config_show_command_redacts(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("SEGLAKE_SECRET_KEY=very-secret-value\n")
    secrets.chmod(0o600)
    base = [sys.executable, "-m", "seglake.cli", "config", "show", "--secrets-file", str(secrets)]
    out = subprocess.run(
        [*base, "--frontends", "3", "--json"], capture_output=True, text=True, timeout=60,
        check=True, env={"SEGLAKE_REGION": "eu-west-1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["frontends"] == {"name": "frontends", "value": 3, "source": "flag"}
    assert rows["region"]["source"] == "env SEGLAKE_REGION"
    assert rows["secret_key"]["value"] == REDACTED
    assert "very-secret-value" not in out.stdout + out.stderr
    table = subprocess.run(base, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "very-secret-value" not in table
    assert any(line.split()[:2] == ["secret-key", REDACTED] for line in table.splitlines())


def test_output_to_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """``seglake config show | head -1``: the reader leaves; no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "config", "show", "--data-dir", str(tmp_path)],
            stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
