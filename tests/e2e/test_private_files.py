"""A store is its owner's alone (#20): another local user can neither list,
read nor connect to anything in a live store's data dir, though the server
was started with umask 022; an older store's open modes are reported by
start-up and fsck and repaired by ``seglake doctor --fix-permissions``.

The other user is created by the test (CI runs as root); without root the
test skips, since only root can make and become another user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_ops_toolbox import cli, cli_json
from tests.harness import SeglakeServer

PROBE_USER = "seglake-probe"
MARKER = b"private-marker-7f3a91"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="needs root and useradd to act as another local user",
)


@pytest.fixture
def probe() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PROBE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             PROBE_USER],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return pwd.getpwnam(PROBE_USER)


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A world-traversable parent (pytest's own tmp dirs are 0700, which
    would hide the store whatever its modes): only the store's modes may
    stand between the other user and the data."""
    base = Path(tempfile.mkdtemp(prefix="seglake-private-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def as_user(user: pwd.struct_passwd, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        list(argv), user=user.pw_uid, group=user.pw_gid, extra_groups=[],
        capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def tree(root: Path) -> list[tuple[Path, int]]:
    out = [(root, stat.S_IMODE(root.lstat().st_mode))]
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode):
                out.append((p, stat.S_IMODE(st.st_mode)))
    return out


def populate(srv: SeglakeServer) -> None:
    s3 = srv.s3()
    s3.create_bucket(Bucket="secret")
    s3.put_object(Bucket="secret", Key="plain.txt", Body=MARKER * 100)
    up = s3.create_multipart_upload(Bucket="secret", Key="mpu")["UploadId"]
    part = s3.upload_part(Bucket="secret", Key="mpu", UploadId=up, PartNumber=1, Body=MARKER * 10)
    s3.complete_multipart_upload(
        Bucket="secret", Key="mpu", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip


def test_live_store_is_private_to_its_owner(
    probe: pwd.struct_passwd, open_base: Path, umask_022: None
) -> None:
    data = open_base / "data"
    with SeglakeServer(data, frontends=1) as srv:
        populate(srv)
        snap = cli_json(data, "snapshot")
        bundle = cli_json(data, "support-bundle")
        made = tree(data)
        files = [p for p, _ in made if p.is_file()]
        # What the attacker would want is all there, in these files.
        assert Path(snap["path"]).is_file() and Path(bundle["path"]).is_file()
        assert any(MARKER in p.read_bytes() for p in files if p.suffix == ".seg")
        assert {p.name for p in files} >= {"meta.db", "meta.db-wal", "meta.db-shm"}
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        open_modes = [(str(p), f"{m:04o}") for p, m in made if m & 0o077]
        assert open_modes == []

        # The other user: no listing, no reading, no grep, no admin socket.
        listing = as_user(probe, "ls", str(data))
        assert listing.returncode != 0 and b"Permission denied" in listing.stderr
        grep = as_user(probe, "grep", "-rl", MARKER.decode(), str(data))
        assert grep.returncode != 0 and grep.stdout == b""
        # Even with the directory opened for traversal, every file refuses:
        # the files' own modes hold, not just the directory's.
        data.chmod(0o711)
        for d in (p for p, _ in made if p.is_dir()):
            d.chmod(0o711)
        try:
            for path in files:
                read = as_user(probe, "cat", str(path))
                assert read.returncode != 0 and read.stdout == b"", path
                assert b"Permission denied" in read.stderr, (path, read.stderr)
            sock_paths = [p for p, _ in made if p.is_socket()]
            assert sock_paths, "the admin and writer sockets live in the data dir"
            for sock_path in sock_paths:
                connect = as_user(
                    probe, "python3", "-c",
                    "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                    str(sock_path),
                )  # fmt: skip
                assert connect.returncode != 0 and b"PermissionError" in connect.stderr
        finally:
            for p, m in made:
                if p.is_dir():
                    p.chmod(m)
        # And the store still works for its owner.
        got = srv.s3().get_object(Bucket="secret", Key="plain.txt")["Body"].read()
        assert got == MARKER * 100


def test_older_store_is_reported_and_repaired(open_base: Path, umask_022: None) -> None:
    data = open_base / "data"
    with SeglakeServer(data, frontends=1) as srv:
        populate(srv)
    # What an older version left: 0755 directories, 0644 files.
    for p, _ in tree(data):
        p.chmod(0o755 if p.is_dir() else 0o644)
    with SeglakeServer(data, frontends=1) as srv:
        assert srv.s3().get_object(Bucket="secret", Key="mpu")["Body"].read() == MARKER * 10
        log = srv.log_tail(400)
    assert "doctor --fix-permissions" in log and "group or other users can access" in log

    fsck = cli_json(data, "fsck")
    exposed = {w["path"] for w in fsck["warnings"] if w["kind"] == "exposed"}
    assert str(data) in exposed and str(data / "meta.db") in exposed
    assert fsck["clean"] is True  # a warning: the store itself is intact

    report = cli(data, "doctor")
    assert report.returncode == 1 and "seglake doctor --fix-permissions" in report.stdout
    listed = cli(data, "doctor", "--json")
    before = {e["path"] for e in json.loads(listed.stdout)["exposed"]}
    # Everything the older version left open (files the second server made are
    # private): the data dir, objects/, segments/ and a segment, meta.db and
    # its WAL files, the locks (no manifest or record files since format 2).
    assert before >= exposed and len(before) >= 8
    fixed = cli_json(data, "doctor", "--fix-permissions")
    assert {f["path"] for f in fixed["fixed"]} == before and fixed["still_exposed"] == []
    assert {f["to"] for f in fixed["fixed"]} <= {"0700", "0600"}
    assert [m for _, m in tree(data) if m & 0o077] == []
    assert cli(data, "doctor").returncode == 0
    after = cli_json(data, "fsck")
    assert not [w for w in after["warnings"] if w["kind"] == "exposed"]
