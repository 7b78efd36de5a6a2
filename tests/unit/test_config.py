"""Config layering (defaults → secrets file → env → flags) and the CLI's
seed-style flag spelling."""

from __future__ import annotations

from pathlib import Path

import pytest

from seglake.cli import normalise, parse
from seglake.config import Config, build_config, parse_duration, parse_size
from seglake.units import MiB


def test_defaults() -> None:
    cfg = build_config({}, env={})
    assert cfg.addr == ":9000" and cfg.region == "us-east-1"
    assert cfg.segment_max_bytes == 1024 * MiB and cfg.max_object_size == 5 * 1024 * MiB


def test_layering(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("# comment\nSEGLAKE_SECRET_KEY=fromfile\naccess-key=filekey\naddr=:1\n")
    secrets.chmod(0o600)
    env = {"SEGLAKE_ADDR": "127.0.0.1:2", "SEGLAKE_SEGMENT_MAX_BYTES": "8MiB"}
    cfg = build_config({"addr": "127.0.0.1:3"}, env=env, secrets_file=str(secrets))
    assert cfg.secret_key == "fromfile" and cfg.access_key == "filekey"
    assert cfg.addr == "127.0.0.1:3"  # flag beats env beats file
    assert cfg.segment_max_bytes == 8 * MiB
    assert build_config({}, env=env, secrets_file=str(secrets)).addr == "127.0.0.1:2"


def test_seed_spelling() -> None:
    argv = ["-data-dir", "./d", "-access-key", "test", "-secret-key", "s", "-addr", "127.0.0.1:9"]
    assert normalise(argv)[0] == "--data-dir"
    args, cfg = parse(argv)
    assert (cfg.data_dir, cfg.access_key, cfg.secret_key, cfg.addr) == (
        "./d",
        "test",
        "s",
        "127.0.0.1:9",
    )
    args, cfg = parse(["-mode", "status", "-data-dir=./x"])
    assert args.mode == "status" and cfg.data_dir == "./x"
    args, cfg = parse(["serve", "--frontends", "3", "--virtual-hosted=false"])
    assert args.command == ["serve"] and cfg.frontends == 3 and cfg.virtual_hosted is False


def test_json_round_trip() -> None:
    cfg = build_config({"frontends": "4", "sync_interval": "250ms"}, env={})
    assert Config.from_json(cfg.to_json()) == cfg and cfg.sync_interval == 0.25


@pytest.mark.parametrize(
    "text,n", [("10", 10), ("4KiB", 4096), ("1MiB", MiB), ("2G", 2 << 30), ("1kb", 1000)]
)
def test_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text,s", [("1.5", 1.5), ("250ms", 0.25), ("10m", 600.0), ("2h", 7200.0)])
def test_durations(text: str, s: float) -> None:
    assert parse_duration(text) == s


@pytest.mark.parametrize(
    "flags",
    [
        {"addr": "nocolon"},
        {"default_versioning": "maybe"},
        {"segment_max_bytes": "10"},
        {"virtual_hosted": "perhaps"},
    ],
)
def test_invalid(flags: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        build_config(flags, env={})  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o666])
def test_secrets_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("SEGLAKE_SECRET_KEY=s3cr3t\n")
    secrets.chmod(mode)
    with pytest.raises(ValueError, match=f"mode {mode:04o}.*chmod 600") as exc:
        build_config({}, env={}, secrets_file=str(secrets))
    assert "s3cr3t" not in str(exc.value)
    secrets.chmod(0o400)  # what systemd's LoadCredential copy looks like
    assert build_config({}, env={}, secrets_file=str(secrets)).secret_key == "s3cr3t"
