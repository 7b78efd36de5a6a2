"""Typed IPC messages: every declared request and reply round-trips, and
anything else (a field of the wrong type, a missing or unknown field, an
unknown name, bytes that are not msgpack) is refused with ``MessageError``;
over a real channel the refusal comes back as an error reply and the
connection stays usable."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest
import trio

from seglake.errors import S3Error
from seglake.ipc import messages as m
from seglake.ipc.channel import Channel, ChannelBroken, serve_channel
from seglake.ipc.framing import REQUEST, Frame, FrameDecoder, encode_frame

DIGEST = bytes(range(32))
CHUNK = m.Chunk(3, 100, 4096, DIGEST)

# One filled-in example of every request the writer knows (optional fields
# given where they exist, so that they round-trip too).
EXAMPLES: list[m.Request[Any]] = [
    m.Append(digest=DIGEST),
    m.Put(
        bucket="b", key="k/ü", size=4097, etag="e" * 32, meta={"content_type": "x/y"},
        chunks=[CHUNK], tail_digest=DIGEST, if_none_match=True, if_match='"abc"', seen_uid="",
        vmeta=m.VersionMetaInit(
            tags=[("k", "v")], acl={"canned": "public-read"},
            lock=m.Retention(mode="COMPLIANCE", until_ms=5), legal_hold=True,
        ),
        owner="ab" * 32,
    ),
    m.DeleteObject(bucket="b", key="k", conditions=m.DeleteCondition(if_match="*", size=3)),
    m.DeleteVersion(
        bucket="b", key="k", version_id="v1", conditions=m.DeleteCondition(last_modified_s=9),
    ),
    m.DeleteObjects(
        bucket="b", objects=[("a", None), ("b", "v2")],
        conditions=[None, m.DeleteCondition(if_match='"e"', last_modified_s=1, size=0)],
    ),
    m.CreateBucket(bucket="b", versioning="enabled"),
    m.DeleteBucket(bucket="b"),
    m.CopyObject(
        bucket="b", key="k", src_bucket="s", src_key="sk", src_version_id="v", directive="REPLACE",
        meta={"user": {"a": "1"}}, conditions=('"x"', None, "Tue, 01 Jan 2030 00:00:00 GMT", None),
        checksum_algorithm="SHA256", if_none_match=True, if_match=None, seen_uid="u0", src_uid="u",
        etag="f" * 32, checksums={"SHA256": "AAAA"}, vmeta=m.VersionMetaInit(tags=[("a", "")]),
        tagging_directive="REPLACE", owner="o",
    ),
    m.SetVersioning(bucket="b", status="suspended"),
    m.MarkDamaged(uid="u1"),
    m.CreateUpload(
        bucket="b", key="k", meta={}, checksum_algorithm="CRC32",
        vmeta=m.VersionMetaInit(acl={"grants": [["CanonicalUser", "id", "READ"]]}), owner="o",
    ),
    m.UploadPart(
        bucket="b", key="k", upload_id="u", part_number=2, size=4097, etag="e",
        checksums={"CRC32": "AAAA"}, chunks=[CHUNK], tail_digest=DIGEST,
    ),
    m.CompleteUpload(
        bucket="b", key="k", upload_id="u", parts=[(1, '"e1"', {}), (2, "e2", {"CRC32": "x"})],
        max_size=10, expect_checksums={"CRC32": "y"}, expect_size=5, if_none_match=True,
        if_match="m",
    ),
    m.AbortUpload(bucket="b", key="k", upload_id="u"),
    m.KeyCreate(access_key="AK", secret_enc=b"\x01sealed", policy="ro", enabled=False, inflight=3),
    m.KeyUpdate(access_key="AK", enabled=True, inflight=0),
    m.KeyDelete(access_key="AK"),
    m.KeyAllowBucket(access_key="AK", bucket="bkt"),
    m.KeyDisallowBucket(access_key="AK", bucket="bkt"),
    m.SetBucketPolicy(bucket="bkt", policy=None),
    m.SetBucketLifecycle(bucket="bkt", configuration="<LifecycleConfiguration/>"),
    m.SetBucketCors(bucket="bkt", configuration="<CORSConfiguration/>"),
    m.EnsureKek(candidate=m.KekRow(id="a" * 16, wrapped=b"w" * 60, master_id="b" * 16)),
    m.RewrapKeks(keks=[m.KekRow(id="a" * 16, wrapped=b"w" * 60, master_id="c" * 16)]),
    m.SetVersionMeta(bucket="bkt", key="k", tags=[("a", "b")]),
    m.SetVersionMeta(
        bucket="bkt", key="k", version_id="null", acl=None, retention=None, legal_hold=False,
        bypass_governance=True,
    ),
    m.SetVersionMeta(
        bucket="bkt", key="k", retention=m.Retention(mode="GOVERNANCE", until_ms=1)
    ),
    m.SetBucketConfig(bucket="bkt", field="tags", value="<Tagging/>"),
    m.SetBucketConfig(bucket="bkt", field="encryption", value=None),
    m.LifecycleExpire(bucket="bkt", now_ns=5, day_ns=86_400_000_000_000, actions=[
        m.LifecycleAction(key="k", action="expire-current", rule_id="r", version_id="v", uid="u"),
        m.LifecycleAction(key="k", action="abort-upload", upload_id="up"),
    ]),
    m.RecordOpRun(mode="fsck", status="ok", started_ns=1, finished_ns=2, report="{}"),
    m.SetMaintenance(doc='{"state": "off"}'),
    m.MpuGcAbort(upload_ids=["u1", "u2"], cutoff_ns=7),
    m.DbReindex(),
    m.Ping(),
    m.Status(),
    m.MaintenanceStatus(),
    m.MaintenanceSet(target="quiesced"),
    m.GcDeleteSegments(segments=[1, 2], yes=True, sealed_before_ns=5, purge_limit=9),
    m.GcRewriteChunks(segment=4, max_bytes=1024, yes=True),
    m.GcDropSegments(segments=[1], below=9, sealed_before_ns=1, purge_limit=2),
    m.GcRepoint(moves=[(1, 2, 3, DIGEST, 4, 5)]),
    m.ReplApply(remote="http://b:9000", direction="pull", epoch="e1", from_seq=0, to_seq=2,
                entries=[[1, 5 << 16, "ab", "bucket_gone", "bkt", None, None, b"\x80", None]],
                chunks=[m.ReplChunk(DIGEST, 1, 0, 4)], remote_site="ab"),
    m.ReplSetPushCursor(remote="http://b:9000", epoch="e1", cursor=7, last_push_hlc=9 << 16,
                        bytes_out=10, remote_site="ab"),
    m.ReplNoteRemote(remote="http://b:9000", error="503 ServiceUnavailable", bytes_in=4),
    m.ReplPruneOplog(below=10, limit=100),
]  # fmt: skip

# One example of every structured reply.
REPLIES: list[m.Reply | m.Appended] = [
    m.Appended(1, 2, 3),
    m.Done(),
    m.ReplPruned(pruned=3, floor=9, more=False),
    m.Written(version_id="v", created_ns=1),
    m.KekReply(kek=m.KekRow(id="a" * 16, wrapped=b"w" * 60, master_id="b" * 16)),
    m.KeksRewrapped(count=2),
    m.Deleted(version_id=None, delete_marker=True),
    m.DeletedMany(results=[m.DeleteResult(version_id="v"), m.DeleteResult(error="E", message="x")]),
    m.BucketCreated(created=True),
    m.Copied(source_changed=False, version_id="v", created_ns=1, etag="e", checksums={"A": "b"}),
    m.VersioningSet(previous="enabled", status="suspended"),
    m.Marked(marked=False),
    m.UploadCreated(upload_id="u", created_ns=1),
    m.PartStored(created_ns=1),
    m.Completed(version_id=None, created_ns=1, etag="e-2", size=9, checksums={}, replayed=True),
    m.KeyChanged(access_key="AK", bucket="b", removed=True),
    m.BucketPolicySet(bucket="b"),
    m.BucketLifecycleSet(bucket="bkt"),
    m.BucketCorsSet(bucket="bkt"),
    m.VersionMetaSet(version_id="null", uid="u1"),
    m.BucketConfigSet(bucket="bkt", field="tags"),
    m.LifecycleApplied(results=["applied", "skipped: gone"]),
    m.RunRecorded(id=4),
    m.MpuGcAborted(aborted=["u"], parts=2),
    m.Reindexed(indexes=3),
    m.Pong(pid=1, uptime=0.5),
    m.ReplApplied(applied=2, skipped=1, conflicts=0, cursor=9),
    m.GcDeleted(deleted=[1], skipped={"2": "live"}, purged_versions=1, freed_bytes=10),
    m.GcRewritten(segment=1, damaged=[{"segment": 1, "offset": 0, "reason": "bad"}]),
    m.GcDropped(deleted=[1]),
    m.GcRepointed(versions=1, parts=2, pending=["u"]),
]  # fmt: skip


def test_every_request_has_an_example() -> None:
    assert {type(x) for x in EXAMPLES} == set(m.REQUESTS.values())
    assert {x.name for x in EXAMPLES} == set(m.REQUESTS)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda x: x.name)
def test_request_round_trips(msg: m.Request[Any]) -> None:
    raw = msgspec.msgpack.encode(msg)
    assert m.decode_request(msg.name, raw) == msg
    # The relay's path: plain msgpack values, then validated into the type.
    assert m.request_from(msg.name, msgspec.msgpack.decode(raw)) == msg
    # Through a whole frame, as the server's decoder sees it.
    (frame,) = FrameDecoder(raw_args=True).feed(
        b"".join(encode_frame(Frame(REQUEST, 1, msg.name, msg)))
    )
    assert m.decode_request(frame.name, frame.args) == msg


def test_every_reply_type_has_an_example() -> None:
    declared = set()
    for cls in m.REQUESTS.values():
        (reply,) = typing.get_args(cls.__orig_bases__[0])  # type: ignore[attr-defined]
        declared.add(reply)
    have = {type(r) for r in REPLIES} | {m.Doc}
    assert declared <= have
    assert m.GcDropped in have and m.DeleteResult not in declared  # nested types are covered too


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_reply_round_trips(reply: Any) -> None:
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(reply), type=type(reply)) == reply


def test_decode_reply_uses_the_requests_reply_type() -> None:
    raw = msgspec.msgpack.encode(m.Written(version_id="v", created_ns=3))
    assert m.decode_reply(m.Put(bucket="b", key="k", size=0, etag=""), raw) == m.Written("v", 3)
    with pytest.raises(m.MessageError):
        m.decode_reply(m.Ping(), raw)  # a Written is not a Pong


def test_wire_is_plain_msgpack() -> None:
    """Other peers (and people debugging) see a map of field names; chunks
    stay four-element arrays; fields left at their default are not sent."""
    put = m.Put(bucket="b", key="k", size=1, etag="e", chunks=[CHUNK])
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(put)) == {
        "bucket": "b", "key": "k", "size": 1, "etag": "e", "chunks": [[3, 100, 4096, DIGEST]],
    }  # fmt: skip
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(m.Appended(1, 2, 3))) == [1, 2, 3]


def _raw(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


@pytest.mark.parametrize(
    ("name", "raw", "why"),
    [
        ("delete_bucket", _raw({"bucket": 7}), "Expected `str`, got `int`"),
        ("put", _raw({"bucket": "b", "key": "k", "size": "1", "etag": "e"}), "$.size"),
        ("put", _raw({"bucket": "b", "key": "k", "size": 1, "etag": "e", "chunks": [[1, 2]]}),
         "chunks"),
        ("key_create", _raw({"access_key": "AK", "secret_enc": "text"}), "bytes"),
        ("key_update", _raw({"access_key": "AK", "enabled": "yes"}), "bool"),
        ("delete_object", _raw({"bucket": "b"}), "missing required field `key`"),
        ("delete_object", _raw({"bucket": "b", "key": "k", "conditions": {"size": "1"}}),
         "$.conditions.size"),
        ("delete_object", _raw({"bucket": "b", "key": "k", "conditions": {"etag": "x"}}),
         "unknown field `etag`"),
        ("delete_objects", _raw({"bucket": "b", "objects": [["a", None]], "conditions": [[1]]}),
         "$.conditions[0]"),
        ("put", _raw({"bucket": "b", "key": "k", "size": 1, "etag": "e", "seen_uid": 5}),
         "$.seen_uid"),
        ("gc_rewrite_chunks", _raw({}), "missing required field `segment`"),
        ("delete_bucket", _raw({"bucket": "b", "force": True}), "unknown field `force`"),
        ("create_bucket", _raw(["b", "enabled"]), "Expected `object`"),
        ("ping", _raw(None), "Expected `object`, got `None`"),
        ("put", b"\xc1", "malformed"),
        ("put", b"", "truncated"),
        ("delete_bucket", _raw({"bucket": "b"}) + b"\x00", "trailing"),
    ],
)  # fmt: skip
def test_malformed_requests_are_refused(name: str, raw: bytes, why: str) -> None:
    with pytest.raises(m.MessageError) as info:
        m.decode_request(name, raw)
    assert why in str(info.value)
    assert not info.value.unknown
    assert info.value.as_s3().code == "InternalError"


def test_unknown_name_is_refused() -> None:
    with pytest.raises(m.MessageError) as info:
        m.decode_request("drop_all_tables", _raw({}))
    assert info.value.unknown and info.value.as_s3().code == "NotImplemented"
    with pytest.raises(m.MessageError):
        m.request_from("drop_all_tables", {})
    with pytest.raises(m.MessageError):
        m.request_from("gc_rewrite_chunks", {"segment": "x", "yes": True})


async def test_refusals_over_a_channel_are_error_replies() -> None:
    """The server decodes before its handler runs: a malformed, unknown or
    garbage request gets an error reply, and later calls still work."""
    seen: list[Any] = []

    async def handler(name: str, msg: Any, body: memoryview) -> tuple[Any, bytes]:
        seen.append(msg)
        return m.BucketCreated(created=True), b""

    left, right = trio.socket.socketpair()
    ch = Channel(trio.SocketStream(left))

    async def serve() -> None:
        await serve_channel(trio.SocketStream(right), handler, decode=m.decode_request)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        nursery.start_soon(ch.run_reader)
        cases: list[tuple[str, Any, str]] = [
            ("create_bucket", {"bucket": 1, "versioning": "enabled"}, "InternalError"),
            ("create_bucket", {"bucket": "b"}, "InternalError"),
            ("create_bucket", {"bucket": "b", "versioning": "x", "extra": 1}, "InternalError"),
            ("no_such_request", {}, "NotImplemented"),
        ]
        for name, args, code in cases:
            with pytest.raises(S3Error) as info:
                await ch.call(name, args)
            assert info.value.code == code, name
        assert seen == []
        reply, _ = await ch.request(m.CreateBucket(bucket="b", versioning="enabled"))
        assert reply == m.BucketCreated(created=True)
        assert seen == [m.CreateBucket(bucket="b", versioning="enabled")]
        await ch.aclose()
        nursery.cancel_scope.cancel()


async def test_garbage_on_the_wire_ends_only_that_connection() -> None:
    """Bytes that are not msgpack where a message should be: the server
    drops the connection (a peer that speaks nonsense), without a traceback
    or a handler call, and the caller sees ``ChannelBroken``."""
    seen: list[Any] = []

    async def handler(name: str, msg: Any, body: memoryview) -> tuple[Any, bytes]:
        seen.append(msg)
        return None, b""

    left, right = trio.socket.socketpair()
    ch = Channel(trio.SocketStream(left))
    served = trio.Event()

    async def serve() -> None:
        await serve_channel(trio.SocketStream(right), handler, decode=m.decode_request)
        served.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        nursery.start_soon(ch.run_reader)
        with pytest.raises(ChannelBroken):
            await ch.call("create_bucket", msgspec.Raw(b"\xc1"))
        with trio.fail_after(5):
            await served.wait()
        await ch.aclose()
    assert seen == []


def test_every_request_is_served_and_every_mutation_declared() -> None:
    """The writer's table covers every declared request: a mutation type
    (``APPLY``), a GC request, or one of the writer's own handlers."""
    from seglake.writer.mutations import APPLY

    own = {m.Append, m.Ping, m.Status, m.MaintenanceStatus, m.MaintenanceSet}
    served = set(APPLY) | {m.GcDeleteSegments, m.GcRewriteChunks} | own
    assert served == set(m.REQUESTS.values())
    assert not own & set(APPLY)


# ---- the supervisor's control socket and the admin socket's typed commands ----------

SERVICE_EXAMPLES: list[tuple[m.Service, m.Request[Any], Any]] = [
    (m.SUPERVISOR, m.ListProcesses(), m.ProcessList("127.0.0.1:1", [{"name": "supervisor"}])),
    (m.SUPERVISOR,
     m.Report(process="frontend-1", role="frontend", pid=7, started=1.5, at=2.5,
              counters={"requests": {"GetObject": 3}, "latency": {"GetObject": [1, 2]}},
              gauges={"inflight": 1}),
     m.Done()),
    (m.SUPERVISOR, m.SupervisorStats(),
     m.MergedStats("h:1", [], frontends={"counters": {}, "gauges": {}},
                   writer={"counters": {"batches": 2}, "gauges": {}},
                   reports={"writer": {"pid": 3, "started": 1.0, "at": 2.0}})),
    (m.ADMIN, m.AdminStats(token="t" * 64), {"schema": 1}),
]  # fmt: skip


def test_every_service_request_has_an_example() -> None:
    for service in (m.SUPERVISOR, m.ADMIN):
        have = {type(msg) for s, msg, _ in SERVICE_EXAMPLES if s is service}
        assert have == set(service.requests.values()), service.server
    # A name means one type per server; the tables are separate.
    assert "stats" not in m.REQUESTS and "report" not in m.REQUESTS
    assert m.SUPERVISOR.requests["stats"] is not m.ADMIN.requests["stats"]


@pytest.mark.parametrize(
    ("service", "msg", "reply"), SERVICE_EXAMPLES, ids=lambda x: getattr(x, "name", "")
)
def test_service_request_and_reply_round_trip(
    service: m.Service, msg: m.Request[Any], reply: Any
) -> None:
    raw = msgspec.msgpack.encode(msg)
    assert service.decode(msg.name, raw) == msg
    assert service.decode_any(msg.name, raw) == msg
    assert service.convert(msg.name, msgspec.msgpack.decode(raw)) == msg
    assert m.decode_reply(msg, msgspec.msgpack.encode(reply)) == reply


@pytest.mark.parametrize(
    ("service", "name", "raw", "why"),
    [
        (m.SUPERVISOR, "report", _raw({"process": "writer", "role": "writer", "pid": "7",
                                       "started": 1.0, "at": 2.0}), "$.pid"),
        (m.SUPERVISOR, "report", _raw({"process": "writer", "role": "writer", "pid": 7}),
         "missing required field `started`"),
        (m.SUPERVISOR, "report", _raw({"process": "w", "role": "w", "pid": 7, "started": 1.0,
                                       "at": 2.0, "counters": [1]}), "$.counters"),
        (m.SUPERVISOR, "stats", _raw({"all": True}), "unknown field `all`"),
        (m.ADMIN, "stats", _raw({"token": 5}), "$.token"),
    ],
)  # fmt: skip
def test_malformed_service_requests_are_refused(
    service: m.Service, name: str, raw: bytes, why: str
) -> None:
    with pytest.raises(m.MessageError) as info:
        service.decode_any(name, raw)
    assert why in str(info.value) and not info.value.unknown


def test_service_names_typed_plain_or_unknown() -> None:
    """The admin socket's older commands stay plain maps; a name neither
    typed nor plain is unknown, as is a writer request sent to the supervisor."""
    assert m.ADMIN.decode_any("maintenance", _raw({"token": "t", "action": "status"})) == {
        "token": "t", "action": "status",
    }  # fmt: skip
    for service, name in ((m.ADMIN, "drop_all_tables"), (m.SUPERVISOR, "ping")):
        with pytest.raises(m.MessageError) as info:
            service.decode_any(name, _raw({}))
        assert info.value.unknown and info.value.as_s3().code == "NotImplemented"
    with pytest.raises(m.MessageError) as info:
        m.decode_request("report", _raw({}))
    assert info.value.unknown
