"""The replication endpoints against two real servers: who may call them,
paging, manifests, chunks, ``have``, and pushes — good ones applied end to
end, hostile ones (forged, truncated, bad chunk, malformed, over a bound)
refused with their code and nothing of them applied."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import httpx
import msgspec
import pytest
import trio

from seglake.format.manifest import decode_manifest
from seglake.protocol import repl_wire
from seglake.protocol.repl_wire import Entry, OplogPage, PushBatch
from seglake.protocol.sigv4 import UNSIGNED_PAYLOAD, sign_request
from seglake.repl.client import ReplClient, ReplHTTPError, encode_query, parse_error
from tests.e2e._helpers import cli, db_rows, flip_chunk_byte
from tests.harness import ACCESS_KEY, SECRET_KEY, SeglakeServer

REPL_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["seglake:ReplicationRead", "seglake:ReplicationWrite"],
         "Resource": "*"},
    ]}
)  # fmt: skip
READ_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "seglake:ReplicationRead", "Resource": "*"},
    ]}
)  # fmt: skip
KEYS = {
    "rokey": ("ro-secret-1", "ro"),
    "rwkey": ("rw-secret-1", "rw"),
    "replkey": ("repl-secret-1", REPL_POLICY),
    "readkey": ("read-secret-1", READ_POLICY),
    # may replicate by its policy, but is limited to one bucket
    "boundkey": ("bound-secret-1", REPL_POLICY),
}
BUCKET = "replsrc"
OBJECTS = {f"obj-{i:02d}": (f"object {i} ".encode() * (i + 1)) for i in range(12)}
BIG = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(200_000))  # 6.4 MB


def _setup(srv: SeglakeServer) -> None:
    for key, (secret, policy) in KEYS.items():
        out = subprocess.run(
            [sys.executable, "-m", "seglake.cli", "-mode", "keys", "-keys-action", "create",
             f"-key-access={key}", f"-key-secret={secret}", f"-key-policy={policy}",
             "-data-dir", str(srv.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
    out = cli(srv.data_dir, "keys", "allow-bucket", "--key-access", "boundkey",
              "--key-bucket", BUCKET)  # fmt: skip
    assert out.returncode == 0, out.stderr


def _server(tmp: Path, name: str) -> Iterator[SeglakeServer]:
    # A short keep-alive: the client meets connections the server closed.
    with SeglakeServer(tmp / name, frontends=1, extra_args=["--keep-alive-timeout", "2"]) as srv:
        _setup(srv)
        yield srv


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeglakeServer]:
    gen = _server(tmp_path_factory.mktemp("src"), "data")
    srv = next(gen)
    s3 = srv.s3()
    s3.create_bucket(Bucket=BUCKET)
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    s3.put_object(Bucket=BUCKET, Key="big", Body=BIG)
    yield srv
    gen.close()


@pytest.fixture(scope="module")
def dst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeglakeServer]:
    yield from _server(tmp_path_factory.mktemp("dst"), "data")


# ---- helpers -------------------------------------------------------------------


def client(srv: SeglakeServer, key: str = "replkey") -> ReplClient:
    secret = SECRET_KEY if key == ACCESS_KEY else KEYS[key][0]
    return ReplClient(srv.endpoint, access_key=key, secret_key=secret, timeout=30)


def run(srv: SeglakeServer, fn: Any, key: str = "replkey") -> Any:
    """``fn(client)`` on a fresh client for ``srv``, in trio."""

    async def main() -> Any:
        c = client(srv, key)
        try:
            return await fn(c)
        finally:
            await c.aclose()

    return trio.run(main)


def raw(
    srv: SeglakeServer,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    key: str = "replkey",
    secret: str | None = None,
    payload_hash: str | None = None,
    send_body: bytes | None = None,
) -> httpx.Response:
    """One request signed by ``sign_request``; ``payload_hash`` defaults to
    the body's SHA-256 (UNSIGNED-PAYLOAD for GET); ``send_body`` goes on the
    wire instead of ``body`` (what was signed)."""
    qs = encode_query(query or [])
    host = f"127.0.0.1:{srv.port}".encode()
    wire = body if send_body is None else send_body
    headers = [(b"host", host)]
    if method != "GET":
        headers.append((b"content-length", str(len(wire)).encode()))
    if payload_hash is None:
        payload_hash = UNSIGNED_PAYLOAD if method == "GET" else hashlib.sha256(body).hexdigest()
    headers += sign_request(
        method, path.encode(), qs, headers, access_key=key,
        secret=secret or (SECRET_KEY if key == ACCESS_KEY else KEYS[key][0]),
        region="us-east-1", payload_hash=payload_hash, now=datetime.now(UTC),
    )  # fmt: skip
    url = f"{srv.endpoint}{path}" + (f"?{qs.decode()}" if qs else "")
    return httpx.request(
        method, url, headers=[(k.decode(), v.decode()) for k, v in headers], content=wire,
        timeout=60,
    )  # fmt: skip


def code_of(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, parse_error(resp.status_code, resp.content).code


def full_page(srv: SeglakeServer) -> OplogPage:
    page: OplogPage = run(srv, lambda c: c.oplog("0", repl_wire.MAX_PAGE_ENTRIES))
    assert not page.more
    return page


def state_of(srv: SeglakeServer) -> tuple[Any, ...]:
    """What a refused push must leave unchanged."""
    return (
        db_rows(srv.data_dir, "SELECT count(*), ifnull(max(seq), 0) FROM oplog")[0],
        db_rows(srv.data_dir, "SELECT count(*) FROM versions")[0],
        db_rows(srv.data_dir, "SELECT count(*) FROM repl_inbound")[0],
    )


def digests_of(entries: list[Entry]) -> list[bytes]:
    out: list[bytes] = []
    for e in entries:
        if e.op == "version" and e.manifest is not None:
            m = decode_manifest(e.manifest, path="remote", with_meta=False)
            out += [c.digest for c in m.chunks]
    return list(dict.fromkeys(out))


def push_body(src_page: OplogPage, frames: list[tuple[bytes, bytes]]) -> bytes:
    batch = PushBatch(site=src_page.site, epoch=src_page.epoch, from_seq=0,
                      to_seq=src_page.next, entries=src_page.entries)  # fmt: skip
    return repl_wire.encode_push_body(batch, frames)


# ---- who may call ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "read", "write"),
    [("rokey", 403, 403), ("rwkey", 403, 403), ("readkey", 200, 403), ("replkey", 200, 200),
     (ACCESS_KEY, 200, 200)],
)  # fmt: skip
def test_policy_gate(src: SeglakeServer, key: str, read: int, write: int) -> None:
    resp = raw(src, "GET", "/v1/replication/oplog", [("since", "0"), ("limit", "1")], key=key)
    assert resp.status_code == read, resp.text
    if read == 403:
        assert code_of(resp) == (403, "AccessDenied")
    for path in ("/v1/replication/manifest", "/v1/replication/chunk"):
        q = [("uid", "x" * 20)] if "manifest" in path else [("digest", "00" * 32)]
        assert raw(src, "GET", path, q, key=key).status_code == read
    resp = raw(src, "POST", "/v1/replication/have", body=repl_wire.encode_digests([]), key=key)
    assert resp.status_code == write, resp.text
    if write == 403:
        assert code_of(resp) == (403, "AccessDenied")


def test_key_limited_to_buckets_refused(src: SeglakeServer) -> None:
    resp = raw(src, "GET", "/v1/replication/oplog", [("since", "0")], key="boundkey")
    assert code_of(resp) == (403, "AccessDenied")
    resp = raw(src, "POST", "/v1/replication/have", body=repl_wire.encode_digests([]),
               key="boundkey")  # fmt: skip
    assert code_of(resp) == (403, "AccessDenied")


def test_client_survives_server_closing_idle_connection(src: SeglakeServer) -> None:
    async def main(c: ReplClient) -> None:
        await c.oplog("0", 1)
        first = c._conn
        await trio.sleep(3)  # past the server's keep-alive timeout
        await c.oplog("0", 1)
        assert c._conn is not None and c._conn is not first and c._conn.requests == 1

    run(src, main)


def test_stats_through_the_client(src: SeglakeServer) -> None:
    doc = json.loads(run(src, lambda c: c.fetch("GET", "/v1/meta/stats"), key=ACCESS_KEY))
    assert isinstance(doc, dict)


# ---- oplog ---------------------------------------------------------------------------


def test_oplog_paging_returns_every_entry_once(src: SeglakeServer) -> None:
    whole = full_page(src)
    assert len(whole.entries) >= len(OBJECTS) + 2
    versions = [e for e in whole.entries if e.op == "version"]
    assert {e.key for e in versions} == {*OBJECTS, "big"}
    assert all(e.manifest for e in versions)

    async def pages(c: ReplClient) -> list[int]:
        seen: list[int] = []
        cursor = repl_wire.format_cursor(whole.epoch, 0)
        for _ in range(100):
            page = await c.oplog(cursor, 5)
            assert len(page.entries) <= 5
            seen += [e.seq for e in page.entries]
            cursor = repl_wire.format_cursor(page.epoch, page.next)
            if not page.more:
                return seen
        raise AssertionError("paging did not end")

    seqs = run(src, pages)
    assert seqs == [e.seq for e in whole.entries]
    assert len(set(seqs)) == len(seqs)


def test_oplog_other_epoch_starts_over(src: SeglakeServer) -> None:
    whole = full_page(src)
    page = run(src, lambda c: c.oplog("0123456789abcdef:5", 3))
    assert page.epoch == whole.epoch
    assert [e.seq for e in page.entries] == [e.seq for e in whole.entries[:3]]


def test_oplog_exclude_site(src: SeglakeServer) -> None:
    whole = full_page(src)
    page = run(src, lambda c: c.oplog("0", 10_000, exclude_site=whole.site))
    assert page.entries == [] and page.next == whole.next and not page.more


def test_oplog_json(src: SeglakeServer) -> None:
    resp = raw(src, "GET", "/v1/replication/oplog", [("since", "0"), ("limit", "3"),
                                                     ("format", "json")])  # fmt: skip
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert len(doc["entries"]) == 3 and doc["more"] is True
    assert doc["cursor"] == f"{doc['epoch']}:{doc['next']}"
    whole = raw(src, "GET", "/v1/replication/oplog", [("format", "json")]).json()
    version = next(e for e in whole["entries"] if e["op"] == "version")
    assert {"version_id", "size", "etag"} <= set(version["body"])
    assert version["manifest_bytes"] > 0


def test_oplog_truncated_below_floor(src: SeglakeServer) -> None:
    import apsw

    conn = apsw.Connection(str(src.data_dir / "meta.db"))
    conn.setbusytimeout(10_000)
    try:
        conn.execute("INSERT INTO settings(name, value) VALUES ('oplog_floor', '4')")
        with pytest.raises(ReplHTTPError) as info:
            run(src, lambda c: c.oplog("0", 10))
        assert (info.value.status, info.value.code) == (410, "OplogTruncated")
        assert not info.value.retryable
        page = run(src, lambda c: c.oplog("4", 2))
        assert page.floor == 4 and page.entries[0].seq == 5
    finally:
        conn.execute("DELETE FROM settings WHERE name = 'oplog_floor'")
        conn.close()


@pytest.mark.parametrize(
    "query",
    [
        [("limit", "0")], [("limit", "10001")], [("limit", "ten")], [("limit", "-1")],
        [("since", "abc")], [("since", "x:y:z")], [("since", "1"), ("since", "2")],
        [("exclude_site", "XYZ")], [("exclude_site", "0123456789ABCDEF")], [("format", "xml")],
    ],
)  # fmt: skip
def test_oplog_bad_query(src: SeglakeServer, query: list[tuple[str, str]]) -> None:
    assert code_of(raw(src, "GET", "/v1/replication/oplog", query)) == (400, "InvalidArgument")


# ---- manifests and chunks ----------------------------------------------------------------


def test_manifests(src: SeglakeServer) -> None:
    versions = [e for e in full_page(src).entries if e.op == "version"]
    uids = [e.uid for e in versions if e.uid]
    got = run(src, lambda c: c.manifests([*uids, "ffffffffffffffff00000000"]))
    assert set(got) == set(uids)  # the unknown uid is absent
    assert all(got[e.uid] == e.manifest for e in versions if e.uid)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/replication/manifest", [("uid", f"u{i:019d}") for i in range(101)]),
        ("/v1/replication/manifest", [("uid", "a b")]),
        ("/v1/replication/manifest", [("uid", "x" * 129)]),
        ("/v1/replication/manifest", []),
        ("/v1/replication/chunk", [("digest", f"{i:064x}") for i in range(65)]),
        ("/v1/replication/chunk", [("digest", "zz" * 32)]),
        ("/v1/replication/chunk", [("digest", "00" * 31)]),
        ("/v1/replication/chunk", []),
    ],
    ids=["uids-101", "uid-space", "uid-long", "uids-none", "digests-65", "digest-not-hex",
         "digest-short", "digests-none"],
)  # fmt: skip
def test_lists_over_bounds(src: SeglakeServer, path: str, query: list[tuple[str, str]]) -> None:
    assert code_of(raw(src, "GET", path, query)) == (400, "InvalidArgument")


def test_chunks_verified_and_absent(src: SeglakeServer) -> None:
    whole = full_page(src)
    digests = digests_of(whole.entries)
    unknown = blake3.blake3(b"nobody stored this").digest()
    got = run(src, lambda c: c.chunks([*digests, unknown]))
    assert set(got) == set(digests)
    assert all(blake3.blake3(v).digest() == k for k, v in got.items())
    big = next(e for e in whole.entries if e.key == "big")
    m = decode_manifest(big.manifest or b"", path="big", with_meta=False)
    assert b"".join(got[c.digest] for c in m.chunks) == BIG


def test_chunks_over_one_answer(dst: SeglakeServer) -> None:
    """More than 64 MiB asked at once: the server sends what fits and says
    how many it left; the client asks again for those."""
    body = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(2_200_000))
    s3 = dst.s3()
    s3.create_bucket(Bucket="huge")
    s3.put_object(Bucket="huge", Key="k", Body=body)  # 70.4 MB: 17 chunks
    entry = next(e for e in full_page(dst).entries if e.bucket == "huge" and e.op == "version")
    m = decode_manifest(entry.manifest or b"", path="k", with_meta=False)
    digests = [c.digest for c in m.chunks]
    assert len(digests) == 17
    resp = raw(dst, "GET", "/v1/replication/chunk", [("digest", d.hex()) for d in digests])
    assert resp.status_code == 200 and resp.headers["x-seglake-chunks-left"] == "1"
    assert len(list(repl_wire.decode_frames(resp.content, max_length=4 << 20))) == 16
    got = run(dst, lambda c: c.chunks(digests))
    assert b"".join(got[d] for d in digests) == body


def test_damaged_chunk_is_not_served(dst: SeglakeServer) -> None:
    s3 = dst.s3()
    s3.create_bucket(Bucket="dmg")
    s3.put_object(Bucket="dmg", Key="k", Body=b"soon to be damaged" * 100)
    entry = next(e for e in full_page(dst).entries if e.key == "k")
    m = decode_manifest(entry.manifest or b"", path="k", with_meta=False)
    flip_chunk_byte(dst.data_dir, m.chunks[0], 3)
    assert run(dst, lambda c: c.chunks([m.chunks[0].digest])) == {}


# ---- have ------------------------------------------------------------------------------


def test_have(src: SeglakeServer) -> None:
    held = digests_of(full_page(src).entries)
    unknown = [blake3.blake3(str(i).encode()).digest() for i in range(3)]
    assert run(src, lambda c: c.have([*held, *unknown])) == unknown


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # not msgpack
        msgspec.msgpack.encode({"a": 1}),  # not a list
        repl_wire.encode_digests([b"short"]),
        repl_wire.encode_digests([b"\0" * 32] * (repl_wire.MAX_HAVE_DIGESTS + 1)),
    ],
)
def test_have_bad_body(src: SeglakeServer, body: bytes) -> None:
    assert code_of(raw(src, "POST", "/v1/replication/have", body=body)) == (400, "InvalidArgument")


def test_have_body_bounds(src: SeglakeServer) -> None:
    big = b"\0" * (repl_wire.MAX_HAVE_BODY_BYTES + 1)
    assert code_of(raw(src, "POST", "/v1/replication/have", body=big)) == (
        400, "MaxMessageLengthExceeded")  # fmt: skip
    unsigned = raw(src, "POST", "/v1/replication/have", body=repl_wire.encode_digests([]),
                   payload_hash=UNSIGNED_PAYLOAD)  # fmt: skip
    assert code_of(unsigned) == (403, "AccessDenied")


# ---- push: refusals ------------------------------------------------------------------


def _good_push(src: SeglakeServer, dst: SeglakeServer) -> tuple[bytes, OplogPage, list[Any]]:
    page = full_page(src)
    missing = run(dst, lambda c: c.have(digests_of(page.entries)))
    chunks = run(src, lambda c: c.chunks(missing))
    frames = [(d, chunks[d]) for d in missing]
    return push_body(page, frames), page, frames


def test_push_forged_signature(src: SeglakeServer, dst: SeglakeServer) -> None:
    body, _, _ = _good_push(src, dst)
    before = state_of(dst)
    resp = raw(dst, "POST", "/v1/replication/oplog", body=body, secret="not-the-secret")
    assert code_of(resp) == (403, "SignatureDoesNotMatch")
    # a valid signature over another body: the body is not what was signed
    other = raw(dst, "POST", "/v1/replication/oplog", body=body[:-1] + b"\0", send_body=body)
    assert code_of(other) == (400, "XAmzContentSHA256Mismatch")
    assert state_of(dst) == before


def test_push_unsigned_payload_refused(src: SeglakeServer, dst: SeglakeServer) -> None:
    body, _, _ = _good_push(src, dst)
    resp = raw(dst, "POST", "/v1/replication/oplog", body=body, payload_hash=UNSIGNED_PAYLOAD)
    assert code_of(resp) == (403, "AccessDenied")


@pytest.mark.parametrize("cut", [2, 20, -5])
def test_push_truncated(src: SeglakeServer, dst: SeglakeServer, cut: int) -> None:
    body, _, frames = _good_push(src, dst)
    assert frames, "the destination lacks the source's chunks"
    before = state_of(dst)
    resp = raw(dst, "POST", "/v1/replication/oplog", body=body[:cut])
    assert code_of(resp) == (400, "ReplicationBadBatch")
    assert state_of(dst) == before


def test_push_truncated_at_frame_boundary(src: SeglakeServer, dst: SeglakeServer) -> None:
    """Cut after a whole frame and signed for the whole body: the reader
    sees a well-formed body, the signed hash does not match."""
    body, _, frames = _good_push(src, dst)
    last = repl_wire.encode_frame(*frames[-1])
    before = state_of(dst)
    resp = raw(dst, "POST", "/v1/replication/oplog", body=body,
               send_body=body[: -len(last)])  # fmt: skip
    assert code_of(resp) == (400, "XAmzContentSHA256Mismatch")
    assert state_of(dst) == before


def test_push_bad_chunk(src: SeglakeServer, dst: SeglakeServer) -> None:
    _, page, frames = _good_push(src, dst)
    digest, data = frames[0]
    bad = [(digest, data[:-1] + bytes([data[-1] ^ 1])), *frames[1:]]
    before = state_of(dst)
    resp = raw(dst, "POST", "/v1/replication/oplog", body=push_body(page, bad))
    assert code_of(resp) == (400, "ReplicationBadChunk")
    assert state_of(dst) == before


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00\x00\x03\xc1\xc1\xc1",
        b"\x00\x00\x00\x02\x91\x01",
        b"\xff\xff\xff\xff",
        repl_wire.PUSH_PREFIX.pack(4) + b"\x81\xa1a\x01",
    ],
)
def test_push_malformed(dst: SeglakeServer, body: bytes) -> None:
    before = state_of(dst)
    assert code_of(raw(dst, "POST", "/v1/replication/oplog", body=body)) == (
        400, "ReplicationBadBatch")  # fmt: skip
    assert state_of(dst) == before


def test_push_own_site_refused(dst: SeglakeServer) -> None:
    page = full_page(dst)
    body = repl_wire.encode_push_body(
        PushBatch(site=page.site, epoch=page.epoch, from_seq=0, to_seq=0, entries=[]), []
    )
    assert code_of(raw(dst, "POST", "/v1/replication/oplog", body=body)) == (
        400, "ReplicationBadBatch")  # fmt: skip


def test_push_body_over_bound(dst: SeglakeServer) -> None:
    headers = [(b"host", f"127.0.0.1:{dst.port}".encode()),
               (b"content-length", str(repl_wire.MAX_PUSH_BODY_BYTES + 1).encode())]  # fmt: skip
    headers += sign_request(
        "POST", b"/v1/replication/oplog", b"", headers, access_key="replkey",
        secret=KEYS["replkey"][0], region="us-east-1", payload_hash="0" * 64,
        now=datetime.now(UTC),
    )  # fmt: skip
    # Refused from the headers alone: the body is never sent.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", dst.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/replication/oplog", skip_host=True,
                        skip_accept_encoding=True)  # fmt: skip
        for k, v in headers:
            conn.putheader(k.decode(), v.decode())
        conn.endheaders()
        resp = conn.getresponse()
        assert (resp.status, parse_error(resp.status, resp.read()).code) == (
            400, "MaxMessageLengthExceeded")  # fmt: skip
    finally:
        conn.close()


# ---- push: applied -------------------------------------------------------------------


def test_push_applies_end_to_end(src: SeglakeServer, dst: SeglakeServer) -> None:
    page = full_page(src)

    async def push(c_dst: ReplClient) -> tuple[Any, Any]:
        missing = await c_dst.have(digests_of(page.entries))
        c_src = client(src)
        try:
            chunks = await c_src.chunks(missing)
        finally:
            await c_src.aclose()
        assert set(chunks) == set(missing)
        batch = PushBatch(site=page.site, epoch=page.epoch, from_seq=0, to_seq=page.next,
                          entries=page.entries)  # fmt: skip
        first = await c_dst.push(batch, [(d, chunks[d]) for d in missing])
        # the same batch again: a replay, every entry skipped, nothing stored
        again = await c_dst.push(batch, [])
        return first, again

    first, again = run(dst, push)
    assert first.applied == len(page.entries) and first.skipped == 0
    assert first.cursor == page.next
    assert again.applied == 0 and again.skipped == len(page.entries)
    s3 = dst.s3()
    for key, body in {**OBJECTS, "big": BIG}.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    inbound = db_rows(dst.data_dir, "SELECT site, epoch, cursor FROM repl_inbound")
    assert inbound == [(page.site, page.epoch, page.next)]


# ---- maintenance ---------------------------------------------------------------------


def test_quiesced_reads_work_posts_refused(src: SeglakeServer) -> None:
    out = cli(src.data_dir, "maintenance", "enable")
    assert out.returncode == 0, out.stderr
    try:
        page = full_page(src)
        assert page.entries
        assert run(src, lambda c: c.chunks(digests_of(page.entries)[:1]))
        resp = raw(src, "POST", "/v1/replication/have", body=repl_wire.encode_digests([]))
        assert code_of(resp) == (503, "MaintenanceMode")
        body = push_body(page, [])
        assert code_of(raw(src, "POST", "/v1/replication/oplog", body=body)) == (
            503, "MaintenanceMode")  # fmt: skip
    finally:
        assert cli(src.data_dir, "maintenance", "disable").returncode == 0


def test_client_sees_early_refusal_of_a_big_push(dst: SeglakeServer) -> None:
    """The server refuses the first frame and stops reading a body far
    over what it drains: the client reports that answer, not a broken pipe."""
    page = full_page(dst)
    other_site = "f" * 16 if page.site != "f" * 16 else "e" * 16
    batch = PushBatch(site=other_site, epoch="a" * 16, from_seq=0, to_seq=0, entries=[])
    chunk = bytes(4 << 20)
    frames = [(b"\1" * 32, chunk), *[(blake3.blake3(chunk).digest(), chunk)] * 15]  # 64 MiB
    before = state_of(dst)

    async def main(c: ReplClient) -> None:
        with pytest.raises(ReplHTTPError) as info:
            await c.push(batch, frames)
        assert (info.value.status, info.value.code) == (400, "ReplicationBadChunk")
        # the connection was dropped (mid-request), the next call works
        assert (await c.oplog("0", 1)).epoch == page.epoch

    run(dst, main)
    assert state_of(dst) == before
