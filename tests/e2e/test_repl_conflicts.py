"""CONFLICT versions as clients see them (docs/design-replication.md §3):
two concurrent writes of one key from two other sites are applied to the
real server through its writer's socket (as a pull would), then GET/HEAD
flag the key, ListObjectVersions lists both, and ``GET /v1/meta/conflicts``
pages the loser."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from seglake.errors import S3Error
from seglake.ipc.call import call_writer
from seglake.ipc.messages import ReplApplied, ReplApply
from seglake.protocol import repl_entries as re_
from tests.e2e._helpers import cli
from tests.e2e._signing import signed_request
from tests.harness import REGION, SeglakeServer
from tests.unit.test_repl_apply import T0, Origin

A = "1" * 16
B = "2" * 16


def writer(server: SeglakeServer, msg: ReplApply) -> ReplApplied:
    reply: ReplApplied = trio.run(call_writer, str(server.data_dir / ".seglake-writer.sock"), msg)
    return reply


def _siblings(server: SeglakeServer, bucket: str, key: str) -> tuple[str, str]:
    """(loser uid, winner uid) of two concurrent first writes of ``key``."""
    a, b = Origin(A), Origin(B)
    va, ua, _ = a.version(bucket, key, [], hlc=T0 + 10)
    vb, ub, _ = b.version(bucket, key, [], hlc=T0 + 20)
    assert writer(server, a.pull([va], direction="bootstrap", to_seq=0)).applied == 1
    assert writer(server, b.pull([vb], direction="bootstrap", to_seq=0)).conflicts == 1
    return ua, ub


def _conflicts(server: SeglakeServer, query: str) -> dict[str, Any]:
    r = signed_request(server, "GET", "/v1/meta/conflicts", query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


def test_conflict_is_flagged_listed_and_paged(
    server: SeglakeServer, s3: Any, make_bucket: Any
) -> None:
    bucket = make_bucket()
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    loser, winner = _siblings(server, bucket, "k")
    s3.put_object(Bucket=bucket, Key="calm", Body=b"x")

    got = s3.get_object(Bucket=bucket, Key="k", VersionId=loser)
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-seglake-conflict"] == "true"
    assert got["Body"].read() == b""
    head = s3.head_object(Bucket=bucket, Key="k")  # the winner, of a key with a conflict
    assert head["VersionId"] == winner
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-seglake-conflict"] == "true"
    calm = s3.head_object(Bucket=bucket, Key="calm")
    assert "x-seglake-conflict" not in calm["ResponseMetadata"]["HTTPHeaders"]
    listed = s3.list_object_versions(Bucket=bucket, Prefix="k")
    assert sorted(v["VersionId"] for v in listed["Versions"]) == sorted([loser, winner])

    other = make_bucket("other")
    s3.put_bucket_versioning(Bucket=other, VersioningConfiguration={"Status": "Enabled"})
    _siblings(server, other, "k1")
    _siblings(server, other, "k2")
    doc = _conflicts(server, f"bucket={bucket}")
    assert [(c["bucket"], c["key"], c["uid"]) for c in doc["conflicts"]] == [(bucket, "k", loser)]
    c = doc["conflicts"][0]
    assert (c["site"], c["hlc"], c["version_id"], c["delete_marker"]) == (A, T0 + 10, loser, False)
    assert doc["truncated"] is False and doc["next"] is None

    # Paging by key: one row a page, each page after the previous one.
    seen = []
    q = f"bucket={other}&limit=1"
    for _ in range(5):
        page = _conflicts(server, q)
        seen += [x["key"] for x in page["conflicts"]]
        if not page["truncated"]:
            break
        n = page["next"]
        q = (
            f"bucket={other}&limit=1&after_bucket={n['after_bucket']}"
            f"&after_key={n['after_key']}&after_version={n['after_version']}"
        )
    assert seen == ["k1", "k2"]
    assert [x["key"] for x in _conflicts(server, f"bucket={other}&prefix=k2")["conflicts"]] == [
        "k2"
    ]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=x", "after_key=k", "after_version=v"]
)
def test_conflicts_refuses_bad_queries(server: SeglakeServer, query: str) -> None:
    r = signed_request(server, "GET", "/v1/meta/conflicts", query)
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text


def test_conflicts_needs_a_signature(server: SeglakeServer) -> None:
    assert httpx.get(f"{server.endpoint}/v1/meta/conflicts").status_code == 403


def test_bad_batch_through_the_socket_is_refused(
    server: SeglakeServer, make_bucket: Any, s3: Any
) -> None:
    bucket = make_bucket()
    a = Origin(A)
    v, uid, _ = a.version(bucket, "x", [b"not held here"])
    with pytest.raises(S3Error) as err:
        writer(server, a.pull([v], direction="bootstrap", to_seq=0))
    assert err.value.code == "ReplicationMissingChunk"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="x")
    body = re_.encode_body(re_.StateBody("DELETED"))
    with pytest.raises(S3Error) as err:
        writer(
            server,
            a.pull([[1, T0, A, "state", bucket, "x", "zz", body]], direction="bootstrap", to_seq=0),
        )
    assert err.value.code == "ReplicationBadBatch"
    assert uid


def test_a_key_limited_to_buckets_sees_only_theirs(
    server: SeglakeServer, s3: Any, make_bucket: Any
) -> None:
    mine, other = make_bucket("mine"), make_bucket("other")
    for b in (mine, other):
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        _siblings(server, b, "k")
    out = cli(server.data_dir, "keys", "create", "--key-access", "conflictro",
              "--key-secret", "conflict-secret-1", "--key-policy", "ro")  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = cli(server.data_dir, "keys", "allow-bucket", "--key-access", "conflictro",
              "--key-bucket", mine)  # fmt: skip
    assert out.returncode == 0, out.stderr
    url = f"{server.endpoint}/v1/meta/conflicts?limit=1000"
    req = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials("conflictro", "conflict-secret-1"), "s3", REGION).add_auth(req)
    r = httpx.get(url, headers=dict(req.headers.items()))
    assert r.status_code == 200, r.text
    buckets = {c["bucket"] for c in r.json()["conflicts"]}
    assert mine in buckets and other not in buckets


def test_rebuild_index_keeps_the_lww_winner_current(tmp_path: Any) -> None:
    """A version from a site whose clock ran ahead wins by its stamp though
    it is older by creation time; the local sibling it beat is CONFLICT.
    rebuild-index must restore exactly that: the winner current, the
    CONFLICT row never."""
    import time

    from tests.e2e._helpers import cli_json

    data = tmp_path / "s"
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        s3.create_bucket(Bucket="skew")
        s3.put_bucket_versioning(Bucket="skew", VersioningConfiguration={"Status": "Enabled"})
        local = s3.put_object(Bucket="skew", Key="k", Body=b"local, later")["VersionId"]
        ahead = ((time.time_ns() // 1_000_000) + 600_000) << 16  # ten minutes ahead
        origin = Origin(B)
        entry, remote, _ = origin.version("skew", "k", [], hlc=ahead)  # created_ns 9: long ago
        assert writer(srv, origin.pull([entry], direction="bootstrap", to_seq=0)).conflicts == 1
        assert s3.head_object(Bucket="skew", Key="k")["VersionId"] == remote
        srv.stop()
    code, check = cli_json(data, "rebuild-index", "--dry-run")
    assert code == 0 and check["differences"] == 0, str(check)
    assert cli(data, "rebuild-index", "--force").returncode == 0
    with SeglakeServer(data, frontends=1) as srv:
        s3 = srv.s3()
        head = s3.head_object(Bucket="skew", Key="k")
        assert head["VersionId"] == remote
        loser = s3.head_object(Bucket="skew", Key="k", VersionId=local)
        assert loser["ResponseMetadata"]["HTTPHeaders"]["x-seglake-conflict"] == "true"
        assert s3.get_object(Bucket="skew", Key="k", VersionId=local)["Body"].read() == (
            b"local, later"
        )
