"""Helpers for the process-model and crash tests: bounded waits, status
polling, /proc inspection and a concurrent PUT load that records, for every
request, whether the server acknowledged it.

Every wait here is bounded in time and in iterations; every process touched
is addressed by pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.harness import ACCESS_KEY, REGION, SECRET_KEY, SeglakeServer, ServerError

T = TypeVar("T")

MiB = 1024 * 1024
KiB = 1024


# ---- bounded waiting ---------------------------------------------------------
def wait_for(
    pred: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``pred`` until it returns a truthy value (returned); bounded by
    ``timeout`` seconds and by a matching number of attempts. Exceptions from
    ``pred`` count as "not yet"; the last one is reported on timeout."""
    deadline = time.monotonic() + timeout
    max_tries = int(timeout / max(interval, 0.001)) + 2
    last_exc: BaseException | None = None
    for _ in range(max_tries):
        try:
            value = pred()
        except Exception as exc:
            last_exc = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.1f}s waiting for {what} (last error: {last_exc!r})"
    )


def retry(
    fn: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.2, what: str = "call"
) -> T:
    """Call ``fn`` until it does not raise, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    max_tries = int(timeout / interval) + 2
    last_exc: BaseException | None = None
    for _ in range(max_tries):
        try:
            return fn()
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"{what} kept failing for {timeout:.1f}s; last error: {last_exc!r}")


# ---- processes -----------------------------------------------------------------
def proc_stat(pid: int) -> tuple[str, int]:
    """(state, ppid) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    rest = text.rsplit(")", 1)[1].split()
    return rest[0], int(rest[1])


def ppid_of(pid: int) -> int:
    return proc_stat(pid)[1]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        state, _ = proc_stat(pid)
    except (OSError, IndexError, ValueError):
        return False
    return state != "Z"


def proc_cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]


def sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def status_retry(server: SeglakeServer, timeout: float = 15.0) -> dict[str, Any]:
    """``seglake status --json``, retried while the admin socket is restarting."""
    return retry(server.status, timeout=timeout, interval=0.2, what="seglake status")


def processes_by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in status["processes"]}


def wait_restarted(
    server: SeglakeServer, name: str, old_pid: int, *, timeout: float = 20.0
) -> dict[str, Any]:
    """Wait until ``status`` shows process ``name`` alive with a pid other than
    ``old_pid`` and at least one restart; returns its status entry."""

    def check() -> dict[str, Any] | None:
        procs = processes_by_name(server.status())
        p = procs.get(name)
        if (
            p
            and p.get("alive")
            and p.get("pid")
            and p["pid"] != old_pid
            and p.get("restarts", 0) >= 1
        ):
            return p
        return None

    entry = wait_for(check, timeout=timeout, interval=0.2, what=f"{name} to be restarted")
    server.known_pids.add(int(entry["pid"]))
    return entry


def role_pids(server: SeglakeServer, timeout: float = 15.0) -> dict[str, list[int]]:
    return retry(server.refresh_pids, timeout=timeout, what="refresh_pids")


# ---- S3 clients ----------------------------------------------------------------
def client(
    server: SeglakeServer,
    *,
    max_attempts: int = 1,
    connect_timeout: float = 3.0,
    read_timeout: float = 15.0,
) -> Any:
    """A boto3 client with its own session (safe to build and use per thread)."""
    cfg = BotoConfig(
        # total_max_attempts counts the first try; botocore's "max_attempts"
        # counts retries only (max_attempts=1 means two tries).
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
    )
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION, config=cfg,
    )  # fmt: skip


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{err.get('Code', '?')}/{status}"
    return type(exc).__name__


def is_no_such_key(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "NoSuchKey",
        "404",
    )


# ---- concurrent PUT load ---------------------------------------------------------
@dataclass
class PutRecord:
    key: str
    data: bytes
    md5: str
    started: float
    finished: float = 0.0
    acked: bool = False
    etag: str | None = None
    error: str | None = None


@dataclass
class LoadResult:
    records: list[PutRecord] = field(default_factory=list)

    @property
    def acked(self) -> list[PutRecord]:
        return [r for r in self.records if r.acked]

    @property
    def unacked(self) -> list[PutRecord]:
        return [r for r in self.records if not r.acked]

    def errors(self) -> Counter[str]:
        return Counter(r.error or "?" for r in self.unacked)


def random_size(rng: random.Random) -> int:
    """0 B sometimes, mostly 1 B–64 KiB, now and then 1–9 MiB."""
    x = rng.random()
    if x < 0.08:
        return 0
    if x < 0.95:
        return rng.randint(1, 64 * KiB)
    return rng.randint(1 * MiB, 9 * MiB)


class PutLoad:
    """``threads`` workers PUT unique keys with unique random bytes into
    ``bucket`` until stopped (or ``max_seconds`` / ``max_puts`` is reached),
    recording for each PUT whether a 200 with the right ETag came back."""

    def __init__(
        self,
        server: SeglakeServer,
        bucket: str,
        *,
        threads: int = 8,
        seed: int,
        prefix: str = "",
        max_seconds: float = 60.0,
        max_puts_per_thread: int = 5000,
        read_timeout: float = 10.0,
        size_fn: Callable[[random.Random], int] | None = None,
    ) -> None:
        self.bucket = bucket
        self.threads = threads
        self.seed = seed
        self.prefix = prefix
        self.max_seconds = max_seconds
        self.max_puts = max_puts_per_thread
        self.size_fn = size_fn or random_size
        self.stop_event = threading.Event()
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._clients = [
            client(server, connect_timeout=2.0, read_timeout=read_timeout) for _ in range(threads)
        ]
        self._workers: list[threading.Thread] = []
        self.crashes: list[str] = []

    def start(self) -> PutLoad:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), name=f"put-load-{i}", daemon=True)
            self._workers.append(t)
            t.start()
        return self

    def stop(self, join_timeout: float = 30.0) -> LoadResult:
        self.stop_event.set()
        deadline = time.monotonic() + join_timeout
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._workers if t.is_alive()]
        assert not stuck, f"load threads did not stop in {join_timeout}s: {stuck}"
        assert not self.crashes, f"load threads crashed: {self.crashes}"
        return self.result

    def acked_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for r in self.result.records if r.acked and r.started >= t)

    def _run(self, index: int) -> None:
        try:
            self._loop(index)
        except BaseException as exc:  # never let a thread die silently
            self.crashes.append(f"thread {index}: {exc!r}")

    def _loop(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        s3 = self._clients[index]
        deadline = time.monotonic() + self.max_seconds
        for n in range(self.max_puts):
            if self.stop_event.is_set() or time.monotonic() > deadline:
                return
            size = self.size_fn(rng)
            data = rng.randbytes(size)
            key = f"{self.prefix}t{index}/{n:05d}-{rng.getrandbits(48):012x}"
            rec = PutRecord(key, data, hashlib.md5(data).hexdigest(), time.monotonic())
            with self._lock:
                self.result.records.append(rec)
            try:
                resp = s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            except Exception as exc:
                rec.error = error_code(exc)
                rec.finished = time.monotonic()
                # the server is down or restarting: do not spin
                self.stop_event.wait(0.02)
                continue
            rec.finished = time.monotonic()
            rec.etag = resp.get("ETag", "").strip('"')
            status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 200:
                rec.acked = True
            else:
                rec.error = f"status {status}"


@dataclass
class Verdict:
    acked: int = 0
    unacked_present: int = 0
    unacked_absent: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.acked += other.acked
        self.unacked_present += other.unacked_present
        self.unacked_absent += other.unacked_absent
        self.problems.extend(other.problems)

    def line(self) -> str:
        return (
            f"acked={self.acked} unacked-present={self.unacked_present} "
            f"unacked-absent={self.unacked_absent} problems={len(self.problems)}"
        )


def verify_records(s3: Any, bucket: str, records: list[PutRecord]) -> Verdict:
    """Every acknowledged PUT reads back byte for byte with the right ETag;
    every unacknowledged one is absent or exactly right, never partial."""
    v = Verdict()
    for r in records:
        if r.acked and r.etag != r.md5:
            v.problems.append(f"{r.key}: PUT acked with ETag {r.etag!r}, expected {r.md5!r}")
        try:
            resp = s3.get_object(Bucket=bucket, Key=r.key)
            body = resp["Body"].read()
            etag = resp.get("ETag", "").strip('"')
        except Exception as exc:
            if is_no_such_key(exc):
                if r.acked:
                    v.problems.append(
                        f"{r.key}: ACKNOWLEDGED PUT ({len(r.data)} B) is missing after the crash"
                    )
                else:
                    v.unacked_absent += 1
                continue
            v.problems.append(f"{r.key}: GET failed with {error_code(exc)}: {exc}")
            continue
        if body != r.data:
            v.problems.append(
                f"{r.key}: {'acked' if r.acked else 'unacked'} object has wrong bytes: "
                f"got {len(body)} B (md5 {hashlib.md5(body).hexdigest()}), "
                f"expected {len(r.data)} B (md5 {r.md5})"
            )
            continue
        if etag != r.md5:
            v.problems.append(f"{r.key}: GET ETag {etag!r}, expected {r.md5!r}")
            continue
        if r.acked:
            v.acked += 1
        else:
            v.unacked_present += 1
    return v


def list_keys(s3: Any, bucket: str, max_pages: int = 1000) -> dict[str, int]:
    """key → size of every object in ``bucket`` (ListObjectsV2, bounded pages)."""
    out: dict[str, int] = {}
    token: str | None = None
    for _ in range(max_pages):
        kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        for item in page.get("Contents", []):
            out[item["Key"]] = int(item["Size"])
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]
    raise AssertionError(f"listing of {bucket} did not end within {max_pages} pages")


def check_listing(s3: Any, bucket: str, records: list[PutRecord]) -> list[str]:
    """The listing holds every acked key, only keys we wrote, with the right sizes."""
    by_key = {r.key: r for r in records}
    listed = list_keys(s3, bucket)
    problems = []
    for key, size in listed.items():
        r = by_key.get(key)
        if r is None:
            problems.append(f"listing shows unknown key {key!r}")
        elif size != len(r.data):
            problems.append(f"listing shows {key!r} with size {size}, expected {len(r.data)}")
    for r in records:
        if r.acked and r.key not in listed:
            problems.append(f"acked key {r.key!r} missing from the listing")
    return problems


def server_status_ok(server: SeglakeServer, timeout: float = 20.0) -> dict[str, Any]:
    """A fresh ``seglake status`` works, every process is alive and the writer
    answers (no ``error`` in the store section)."""

    def check() -> dict[str, Any] | None:
        st = server.status()
        if all(p.get("alive") for p in st["processes"]) and "error" not in (st.get("store") or {}):
            return st
        return None

    try:
        return wait_for(check, timeout=timeout, interval=0.25, what="a healthy seglake status")
    except AssertionError:
        try:
            last = server.status()
        except ServerError as exc:
            last = {"status error": str(exc)}
        raise AssertionError(f"status never became healthy; last: {last}") from None


# ---- a PUT the test streams piece by piece ----------------------------------------
class RawPut:
    """A SigV4-signed PUT over one HTTP/1.1 connection, sent under the test's
    control: ``open()`` connects and proves the connection was accepted by a
    frontend (a signed HEAD on the bucket answered on the same keep-alive
    connection), ``send_headers()``, ``send(n)`` streams the next ``n`` body
    bytes, ``finish()`` sends the rest and returns (status, headers, body)."""

    def __init__(self, server: SeglakeServer, bucket: str, key: str, data: bytes) -> None:
        self.server = server
        self.bucket = bucket
        self.key = key
        self.data = data
        self.sent = 0
        self.conn: http.client.HTTPConnection | None = None

    def _signed(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> dict[str, str]:
        # The S3 signer (re)computes x-amz-content-sha256 from the body it is given.
        req = AWSRequest(
            method=method, url=f"{self.server.endpoint}{path}", headers=headers, data=body
        )
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
        # the signer signs the URL's host but leaves the header to the sender
        return {"Host": f"127.0.0.1:{self.server.port}", **dict(req.headers.items())}

    def open(self, timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=timeout)
        empty = hashlib.sha256(b"").hexdigest()
        path = f"/{quote(self.bucket)}"
        headers = self._signed("HEAD", path, {"X-Amz-Content-SHA256": empty})
        self.conn.putrequest("HEAD", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            self.conn.putheader(name, value)
        self.conn.endheaders()
        resp = self.conn.getresponse()
        resp.read()
        assert resp.status == 200, f"warm-up HEAD {path}: {resp.status}"
        assert not resp.will_close, "server closed the warm-up connection"

    def send_headers(self) -> None:
        assert self.conn is not None
        path = f"/{quote(self.bucket)}/{quote(self.key)}"
        headers = self._signed(
            "PUT", path,
            {
                "Content-Length": str(len(self.data)),
                "X-Amz-Content-SHA256": hashlib.sha256(self.data).hexdigest(),
            },
            self.data,
        )  # fmt: skip
        self.conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            self.conn.putheader(name, value)
        self.conn.endheaders()

    def send(self, n: int, piece: int = 256 * KiB) -> None:
        assert self.conn is not None
        end = min(len(self.data), self.sent + n)
        view = memoryview(self.data)
        while self.sent < end:
            step = min(piece, end - self.sent)
            self.conn.send(view[self.sent : self.sent + step])
            self.sent += step

    def finish(self) -> tuple[int, dict[str, str], bytes]:
        assert self.conn is not None
        self.send(len(self.data) - self.sent)
        resp = self.conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


@dataclass
class Ack:
    """A write the client saw acknowledged, to be read back by version id."""

    key: str
    version_id: str
    data: bytes | None  # None: a delete marker
    # A copy whose source had an overwrite that failed for the client but was
    # committed (the writer died after COMMIT) holds that content instead;
    # either is right.
    alts: tuple[bytes, ...] = ()


def verify_acked(srv: SeglakeServer, bucket: str, acked: list[Ack]) -> int:
    """Read back every acknowledged version byte for byte (delete markers must
    still be markers); fails listing the problems, returns the count checked."""
    s3 = srv.s3(max_attempts=5, read_timeout=30)
    problems: list[str] = []
    n = 0
    for a in acked:
        try:
            if a.data is None:
                try:
                    s3.head_object(Bucket=bucket, Key=a.key, VersionId=a.version_id)
                    problems.append(f"delete marker {a.key} {a.version_id} served as an object")
                except ClientError as exc:
                    hdrs = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                    if hdrs.get("x-amz-delete-marker") != "true":
                        problems.append(f"acked delete {a.key} {a.version_id}: {exc}")
                continue
            body = s3.get_object(Bucket=bucket, Key=a.key, VersionId=a.version_id)["Body"].read()
        except ClientError as exc:
            problems.append(f"ACKED {a.key} {a.version_id}: {exc}")
            continue
        if body != a.data and body not in a.alts:
            problems.append(f"ACKED {a.key} {a.version_id}: wrong bytes")
        else:
            n += 1
    assert not problems, problems[:20]
    return n
