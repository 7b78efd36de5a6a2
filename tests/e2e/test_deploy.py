"""The appliance install: deploy/install.sh and deploy/seglake.service.

- The unit passes ``systemd-analyze verify`` and scores <= 2.5 ("OK") in
  ``systemd-analyze security`` (skipped only where systemd-analyze is absent).
- ``--dry-run`` in a fresh root lists every step and changes nothing.
- A real install into a staging root (``--root``) creates the account, the
  directories with their modes, the settings, a 0600 secrets file with a key
  pair, a virtual environment whose ``seglake`` runs; re-running it upgrades
  in place and keeps data and secrets; ``uninstall`` keeps data and settings,
  ``--purge`` removes everything.
- On CI (``CI=true``, as root) the same script installs into the machine's
  real root; the installed unit is verified there, the installed server is
  started as the ``seglake`` user with the generated key pair and answers a
  PUT/GET, and ``uninstall --purge`` leaves the machine as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"
UNIT = REPO / "deploy" / "seglake.service"
MAX_EXPOSURE = 2.5
INSTALL_TIMEOUT_S = 600
KEY_LINE = re.compile(r"^SEGLAKE_(ACCESS|SECRET)_KEY=(\S+)$", re.M)


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return path


def sh(*args: str | Path, timeout: float = INSTALL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
        # A careful admin's umask (and any Seglake process's): the installer
        # must still leave a venv and a unit the service user can read.
        umask=0o077,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def exposure(unit: str | Path, *extra: str) -> float:
    out = sh(analyze(), "security", "--offline=yes", *extra, str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout + out.stderr)
    assert found, out.stdout + out.stderr
    return float(found.group(1))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---- the unit -----------------------------------------------------------------


def test_unit_security_score_is_ok() -> None:
    score = exposure(UNIT)
    assert score <= MAX_EXPOSURE, f"systemd-analyze security rates the unit {score}"


def test_unit_verifies_with_its_binary_in_place(tmp_path: Path) -> None:
    """`verify` checks that ExecStart exists: point it at a stand-in binary."""
    fake = tmp_path / "venv" / "bin" / "seglake"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = tmp_path / "seglake.service"
    unit.write_text(UNIT.read_text().replace("/opt/seglake/venv", str(tmp_path / "venv")))
    result = sh(analyze(), "verify", unit)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_unit_states_what_the_appliance_needs() -> None:
    text = UNIT.read_text()
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "TimeoutStartSec=",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "UMask=0077",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "StateDirectory=seglake",
        "LoadCredential=secrets:/etc/seglake/secrets.env",
        "--secrets-file %d/secrets",
    ]:
        assert line in text, line
    assert "SECRET_KEY" not in text and "Environment=SEGLAKE_SECRET" not in text


# ---- install.sh into a staging root ---------------------------------------------


def test_dry_run_lists_every_step_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = ok(sh(INSTALL, "--dry-run", "--root", root))
    steps = [line for line in out.splitlines() if line.startswith("+ ")]
    joined = "\n".join(steps)
    for expected in [
        "groupadd --prefix",
        "useradd --prefix",
        f"install -d -m 0700 -o seglake -g seglake {root}/var/lib/seglake",
        f"write {root}/etc/seglake/seglake.env (mode 0644)",
        f"write {root}/etc/seglake/secrets.env (mode 0600)",
        f"-m venv {root}/opt/seglake/venv",
        f"{root}/opt/seglake/venv/bin/pip install",
        f"{root}/etc/systemd/system/seglake.service",
    ]:
        assert expected in joined, f"{expected!r} not in:\n{joined}"
    assert "systemctl" not in joined  # a staging root is never started
    assert tree(root) == []
    assert "SEGLAKE_SECRET_KEY" not in out  # a dry run generates no key


def test_uninstall_dry_run_keeps_data_unless_purge(tmp_path: Path) -> None:
    keep = ok(sh(INSTALL, "uninstall", "--dry-run", "--root", tmp_path))
    assert "rm -rf " + str(tmp_path / "opt/seglake") in keep
    steps = "".join(line for line in keep.splitlines() if line.startswith("+"))
    assert "/var/lib/seglake" not in steps
    purge = ok(sh(INSTALL, "uninstall", "--purge", "--dry-run", "--root", tmp_path))
    assert f"{tmp_path}/var/lib/seglake" in purge and "userdel" in purge


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    bad = sh(INSTALL, "--frobnicate")
    assert bad.returncode == 2 and "unknown argument: --frobnicate" in bad.stderr
    missing = sh(INSTALL, "--root", tmp_path / "nope")
    assert missing.returncode == 2 and "not a directory" in missing.stderr


def _keys(secrets: Path) -> dict[str, str]:
    return dict(KEY_LINE.findall(secrets.read_text()))


@pytest.mark.skipif(os.geteuid() != 0, reason="a real install needs root")
def test_install_upgrade_uninstall_in_a_staging_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = ok(sh(INSTALL, "--root", root))
    passwd = (root / "etc/passwd").read_text()
    assert re.search(
        r"^seglake:x:(\d+):(\d+):[^:]*:/var/lib/seglake:/usr/sbin/nologin$", passwd, re.M
    )
    uid = int(passwd.split(":")[2])
    data, conf = root / "var/lib/seglake", root / "etc/seglake"
    assert mode_of(data) == 0o700 and data.stat().st_uid == uid
    assert mode_of(conf / "secrets.env") == 0o600 and (conf / "secrets.env").stat().st_uid == 0
    keys = _keys(conf / "secrets.env")
    assert set(keys) == {"ACCESS", "SECRET"} and len(keys["SECRET"]) >= 30
    assert keys["SECRET"] in first  # printed once, at creation
    assert "SEGLAKE_ADDR=:9000" in (conf / "seglake.env").read_text()
    unit = root / "etc/systemd/system/seglake.service"
    assert unit.read_text() == UNIT.read_text()
    seglake = root / "opt/seglake/venv/bin/seglake"
    assert "--data-dir" in ok(sh(seglake, "serve", "--help", timeout=60))
    # Readable by the service user and systemd even though sh() runs with 077.
    assert mode_of(unit) == 0o644 and mode_of(conf / "seglake.env") == 0o644
    for path in (root / "opt/seglake", seglake, *(root / "opt/seglake/venv/lib").rglob("*.py")):
        want = 0o005 if path.is_dir() or mode_of(path) & 0o100 else 0o004
        assert mode_of(path) & want == want, oct(mode_of(path)) + f" {path}"

    # Re-running upgrades in place: data, settings and secrets are kept.
    (data / "meta.db").write_bytes(b"operator data")
    (conf / "seglake.env").write_text("SEGLAKE_ADDR=:9100\n")
    again = ok(sh(INSTALL, "--root", root))
    assert "secrets.env kept" in again and keys["SECRET"] not in again
    assert _keys(conf / "secrets.env") == keys
    assert (data / "meta.db").read_bytes() == b"operator data"
    assert (conf / "seglake.env").read_text() == "SEGLAKE_ADDR=:9100\n"
    assert passwd == (root / "etc/passwd").read_text()  # no second account

    # A privileged port gets exactly the capability to bind it, via a drop-in
    # that goes away with the port; the merged unit still rates OK.
    dropin = root / "etc/systemd/system/seglake.service.d/10-privileged-port.conf"
    assert not dropin.exists()
    (conf / "seglake.env").write_text('SEGLAKE_ADDR=":443"\n')
    ok(sh(INSTALL, "--root", root))
    lines = dropin.read_text().splitlines()
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in lines and "PrivateUsers=no" in lines
    if shutil.which("systemd-analyze"):
        merged = tmp_path / "merged.service"
        merged.write_text(unit.read_text() + "\n" + dropin.read_text())
        assert exposure(merged) <= MAX_EXPOSURE
    (conf / "seglake.env").write_text("SEGLAKE_ADDR=:9100\n")
    ok(sh(INSTALL, "--root", root))
    assert not dropin.exists()

    ok(sh(INSTALL, "uninstall", "--root", root))
    assert not (root / "opt/seglake").exists() and not unit.exists()
    assert not dropin.parent.exists()
    assert (data / "meta.db").exists() and (conf / "secrets.env").exists()
    ok(sh(INSTALL, "uninstall", "--purge", "--root", root))
    assert not data.exists() and not conf.exists()
    assert "seglake:" not in (root / "etc/passwd").read_text()
    assert "seglake:" not in (root / "etc/group").read_text()


# ---- the real root (CI only) --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    os.environ.get("CI") != "true" or os.geteuid() != 0,
    reason="installs into the machine's real root: CI only (CI=true, as root)",
)
def test_real_install_serves_as_the_seglake_user(tmp_path: Path) -> None:
    for path in ("/opt/seglake", "/etc/seglake", "/var/lib/seglake"):
        if os.path.exists(path):
            pytest.fail(f"{path} exists already: refusing to install over it")
    cred: Path | None = None
    try:
        ok(sh(INSTALL))
        installed = Path("/etc/systemd/system/seglake.service")
        verify = sh(analyze(), "verify", installed)
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
        assert exposure(installed) <= MAX_EXPOSURE
        keys = _keys(Path("/etc/seglake/secrets.env"))
        # What systemd would do: the credential copy, private to the user.
        # pytest's own temporary root is private to root: use one in /tmp.
        cred = Path(tempfile.mkdtemp(prefix="seglake-cred-"))
        shutil.copy("/etc/seglake/secrets.env", cred / "secrets")
        shutil.chown(cred / "secrets", "seglake", "seglake")
        (cred / "secrets").chmod(0o400)
        shutil.chown(cred, "seglake", "seglake")
        cred.chmod(0o500)
        port = _free_port()
        log = (tmp_path / "server.log").open("wb")
        proc = subprocess.Popen(
            ["setpriv", "--reuid=seglake", "--regid=seglake", "--clear-groups",
             "/opt/seglake/venv/bin/seglake", "serve", "--data-dir", "/var/lib/seglake",
             "--secrets-file", str(cred / "secrets"), "--addr", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            import boto3
            from botocore.config import Config

            s3 = boto3.client(
                "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                aws_access_key_id=keys["ACCESS"], aws_secret_access_key=keys["SECRET"],
                config=Config(retries={"total_max_attempts": 1}),
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while True:
                try:
                    s3.create_bucket(Bucket="installed")
                    break
                except Exception:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        log.flush()
                        print((tmp_path / "server.log").read_text()[-4000:])
                        raise
                    time.sleep(0.2)
            s3.put_object(Bucket="installed", Key="k", Body=b"appliance")
            assert s3.get_object(Bucket="installed", Key="k")["Body"].read() == b"appliance"
            owners = {p.stat().st_uid for p in Path("/var/lib/seglake").rglob("*")}
            assert owners == {Path("/var/lib/seglake").stat().st_uid}  # all the service user's
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    finally:
        sh(INSTALL, "uninstall", "--purge")
        if cred is not None:
            shutil.rmtree(cred, ignore_errors=True)
    for path in ("/opt/seglake", "/etc/seglake", "/var/lib/seglake"):
        assert not os.path.exists(path)
