"""The README's awscli walkthrough against a server started the way `make run` does.

The server is `./build/seglake` with the seed's single-dash flags, on a free
loopback port and a temporary data dir; the `aws` CLI (v1, from the venv) runs
with no config or credentials file, only the environment the README shows.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer, ServerError

REPO = Path(__file__).resolve().parents[2]
SEGLAKE_BIN = REPO / "build" / "seglake"
AWS_BIN = REPO / ".venv" / "bin" / "aws"
MiB = 1024 * 1024
AWS_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SeedStyleServer(SeglakeServer):
    """`./build/seglake -data-dir D -access-key test -secret-key testsecret -addr 127.0.0.1:P`."""

    def __init__(self, data_dir: Path, port: int) -> None:
        super().__init__(data_dir)
        self.chosen_port = port

    def command(self) -> list[str]:
        return [
            str(SEGLAKE_BIN), "-data-dir", str(self.data_dir),
            "-access-key", ACCESS_KEY, "-secret-key", SECRET_KEY,
            "-addr", f"127.0.0.1:{self.chosen_port}",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> SeedStyleServer:
        # Wait on the port we chose rather than on the listen file, as a user would.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.known_pids.add(self.proc.pid)
        self.port = self.chosen_port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._http_ready():
                self.refresh_pids()
                return self
            time.sleep(0.05)
        self.kill()
        raise ServerError(f"server did not answer in {timeout}s:\n{self.log_tail()}")


@pytest.fixture(scope="module")
def seed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedStyleServer]:
    if not os.access(SEGLAKE_BIN, os.X_OK):
        pytest.fail(f"{SEGLAKE_BIN} is missing: run `make build` first")
    root = tmp_path_factory.mktemp("awscli")
    last: ServerError | None = None
    for attempt in range(3):  # the free port can be taken between probe and bind
        srv = SeedStyleServer(root / f"data{attempt}", free_port())
        try:
            srv.start()
        except ServerError as exc:
            srv.close()
            last = exc
            continue
        try:
            yield srv
        finally:
            srv.close()
        return
    raise AssertionError(f"could not start ./build/seglake: {last}")


def aws(server: SeglakeServer, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    return subprocess.run(
        [str(AWS_BIN), *args, "--endpoint-url", server.endpoint],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=AWS_TIMEOUT_S, check=False,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def write_random(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def test_readme_walkthrough(seed_server: SeedStyleServer, tmp_path: Path) -> None:
    ok(aws(seed_server, "s3", "mb", "s3://demo", cwd=tmp_path))

    listing = ok(aws(seed_server, "s3", "ls", cwd=tmp_path))
    assert "demo" in [line.split()[-1] for line in listing.splitlines()]

    data = write_random(tmp_path / "file.bin", 5 * MiB, seed=5)
    out = ok(aws(seed_server, "s3", "cp", "./file.bin", "s3://demo/file.bin", cwd=tmp_path))
    assert "upload: ./file.bin to s3://demo/file.bin" in out

    objects = ok(aws(seed_server, "s3", "ls", "s3://demo/", cwd=tmp_path))
    rows = [line.split() for line in objects.splitlines()]
    assert [(r[-2], r[-1]) for r in rows] == [(str(5 * MiB), "file.bin")]

    out = ok(aws(seed_server, "s3", "cp", "s3://demo/file.bin", "./back.bin", cwd=tmp_path))
    assert "download: s3://demo/file.bin to ./back.bin" in out
    assert (tmp_path / "back.bin").read_bytes() == data

    out = ok(aws(seed_server, "s3", "rm", "s3://demo/file.bin", cwd=tmp_path))
    assert "delete: s3://demo/file.bin" in out
    assert ok(aws(seed_server, "s3", "ls", "s3://demo/", cwd=tmp_path)).strip() == ""

    missing = aws(seed_server, "s3", "cp", "s3://demo/file.bin", "./gone.bin", cwd=tmp_path)
    assert missing.returncode != 0
    assert "404" in missing.stderr
    assert not (tmp_path / "gone.bin").exists()


def test_awscli_errors(seed_server: SeedStyleServer, tmp_path: Path) -> None:
    result = aws(seed_server, "s3", "ls", "s3://no-such-bucket-here/", cwd=tmp_path)
    assert result.returncode != 0
    assert "NoSuchBucket" in result.stderr

    result = aws(seed_server, "s3api", "head-object", "--bucket", "no-such-bucket-here",
                 "--key", "k", cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert "404" in result.stderr


def test_awscli_small_files_and_prefixes(seed_server: SeedStyleServer, tmp_path: Path) -> None:
    ok(aws(seed_server, "s3", "mb", "s3://small-files", cwd=tmp_path))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {
        "a.txt": write_random(src / "a.txt", 0, seed=1),
        "name with spaces+plus.txt": write_random(src / "name with spaces+plus.txt", 1, seed=2),
        "sub/b.bin": write_random(src / "sub" / "b.bin", 100_000, seed=3),
    }
    for name in files:
        ok(aws(seed_server, "s3", "cp", f"./src/{name}", f"s3://small-files/{name}", cwd=tmp_path))

    top = ok(aws(seed_server, "s3", "ls", "s3://small-files/", cwd=tmp_path))
    assert "PRE sub/" in top
    assert "name with spaces+plus.txt" in top
    recursive = ok(aws(seed_server, "s3", "ls", "--recursive", "s3://small-files/", cwd=tmp_path))
    assert sorted(line.split(None, 3)[3] for line in recursive.splitlines()) == sorted(files)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for i, (name, data) in enumerate(files.items()):
        ok(aws(seed_server, "s3", "cp", f"s3://small-files/{name}", f"./out/{i}", cwd=tmp_path))
        assert (out_dir / str(i)).read_bytes() == data, name


def test_awscli_multipart_upload(seed_server: SeedStyleServer, tmp_path: Path) -> None:
    ok(aws(seed_server, "s3", "mb", "s3://big-demo", cwd=tmp_path))
    data = write_random(tmp_path / "big.bin", 30 * MiB, seed=30)
    ok(aws(seed_server, "s3", "cp", "./big.bin", "s3://big-demo/big.bin", cwd=tmp_path))
    ok(aws(seed_server, "s3", "cp", "s3://big-demo/big.bin", "./big-back.bin", cwd=tmp_path))
    assert (tmp_path / "big-back.bin").read_bytes() == data


def test_awscli_multipart_100mib(seed_server: SeedStyleServer, tmp_path: Path) -> None:
    """Issue #3: `aws s3 cp` of 100 MiB goes up as a multipart upload (8 MiB
    parts, several in parallel) and comes back byte for byte."""
    ok(aws(seed_server, "s3", "mb", "s3://big-100", cwd=tmp_path))
    data = write_random(tmp_path / "big.bin", 100 * MiB, seed=100)
    ok(aws(seed_server, "s3", "cp", "./big.bin", "s3://big-100/big.bin", cwd=tmp_path))
    head = json.loads(ok(aws(seed_server, "s3api", "head-object", "--bucket", "big-100",
                             "--key", "big.bin", cwd=tmp_path)))  # fmt: skip
    assert head["ContentLength"] == 100 * MiB
    assert head["ETag"].endswith('-13"')  # 8 MiB parts: a 13-part upload
    ok(aws(seed_server, "s3", "cp", "s3://big-100/big.bin", "./big-back.bin", cwd=tmp_path))
    assert (tmp_path / "big-back.bin").read_bytes() == data


def test_awscli_sync_both_ways_twice(seed_server: SeedStyleServer, tmp_path: Path) -> None:
    """`aws s3 sync` up and down; the second run of each transfers nothing."""
    ok(aws(seed_server, "s3", "mb", "s3://sync-demo", cwd=tmp_path))
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    files = {
        "top.txt": write_random(src / "top.txt", 10, seed=41),
        "deep/x.bin": write_random(src / "deep" / "x.bin", 300_000, seed=42),
        "deep/er/y z+.bin": write_random(src / "deep" / "er" / "y z+.bin", 9 * MiB, seed=43),
    }
    first = ok(aws(seed_server, "s3", "sync", "./src", "s3://sync-demo/tree", cwd=tmp_path))
    assert first.count("upload:") == len(files), first
    second = ok(aws(seed_server, "s3", "sync", "./src", "s3://sync-demo/tree", cwd=tmp_path))
    assert "upload:" not in second, second
    down = ok(aws(seed_server, "s3", "sync", "s3://sync-demo/tree", "./back", cwd=tmp_path))
    assert down.count("download:") == len(files), down
    again = ok(aws(seed_server, "s3", "sync", "s3://sync-demo/tree", "./back", cwd=tmp_path))
    assert "download:" not in again, again
    for name, data in files.items():
        assert (tmp_path / "back" / name).read_bytes() == data, name
