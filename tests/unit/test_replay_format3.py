"""Replay (seglake/audit/replay.py) of format-3 segments: version-meta
records (type 4) are kept last-per-uid, key records (type 5) are verified
and left alone, a record under the wrong segment type is reported, and a
version-2 segment next to them reads as before."""

from __future__ import annotations

from pathlib import Path

from seglake.audit.replay import replay
from seglake.format import segment as seg
from seglake.format.layout import segment_file_name
from seglake.format.records import (
    KIND_BUCKET,
    KIND_KEY,
    KIND_STATE,
    KIND_VERSION_META,
    bucket_body,
    encode_record,
    key_body,
    key_gone_body,
    vmeta_body,
)


def write_segment(
    folder: Path, sid: int, items: list[tuple[int, bytes]], *, version: int, sealed: bool
) -> Path:
    out = bytearray(seg.encode_header(sid, 1, version=version))
    records = []
    for rtype, data in items:
        d = seg.record_digest(rtype, data)
        records.append(seg.RecordInfo(len(out), len(data), d, rtype))
        out += seg.encode_record_header(d, len(data), rtype, version=version) + data
    if sealed:
        out += seg.encode_footer(records, len(out), version=version)
    path = folder / segment_file_name(sid)
    path.write_bytes(bytes(out))
    return path


def test_last_version_meta_record_per_uid_wins(tmp_path: Path) -> None:
    first = vmeta_body("u1", 1, {"tags": [["a", "1"]]})
    second = vmeta_body("u1", 2, {"tags": [["a", "2"]], "legal_hold": True})
    other = vmeta_body("u2", 1, {"lock": {"mode": "GOVERNANCE", "until_ms": 5}})
    kek = key_body("0123456789abcdef", bytes(60), "fedcba9876543210", 7)
    old = bucket_body("b", 1, "enabled", None)
    write_segment(
        tmp_path,
        1,
        [(seg.TYPE_CHUNK, b"data"), (seg.TYPE_BUCKET, encode_record(KIND_BUCKET, old))],
        version=2,
        sealed=True,
    )
    for sealed in (True, False):
        write_segment(
            tmp_path,
            2,
            [
                (seg.TYPE_VERSION_META, encode_record(KIND_VERSION_META, first)),
                (seg.TYPE_KEY, encode_record(KIND_KEY, kek)),
                (seg.TYPE_VERSION_META, encode_record(KIND_VERSION_META, other)),
            ],
            version=3,
            sealed=True,
        )
        write_segment(
            tmp_path,
            3,
            [(seg.TYPE_VERSION_META, encode_record(KIND_VERSION_META, second))],
            version=3,
            sealed=sealed,
        )
        log = replay(tmp_path)
        assert log.problems == []
        assert log.vmeta == {"u1": second, "u2": other}
        assert log.keks == {"0123456789abcdef": kek}
        assert log.buckets == {"b": old}
        assert [s.version for s in log.segments] == [2, 3, 3]
        assert log.records == 5
    # A "gone" record (recovery, after an uncommitted insert) removes it.
    write_segment(
        tmp_path, 4, [(seg.TYPE_KEY, encode_record(KIND_KEY, key_gone_body(kek["id"])))],
        version=3, sealed=True,
    )  # fmt: skip
    assert replay(tmp_path).keks == {}


def test_record_under_the_wrong_segment_type_is_reported(tmp_path: Path) -> None:
    body = vmeta_body("u1", 1, {})
    write_segment(
        tmp_path,
        1,
        [
            (seg.TYPE_STATE, encode_record(KIND_VERSION_META, body)),
            (seg.TYPE_VERSION_META, encode_record(KIND_STATE, {"uid": "u1", "state": "DELETED"})),
        ],
        version=3,
        sealed=True,
    )
    log = replay(tmp_path)
    assert log.vmeta == {} and log.states == {}
    assert len(log.problems) == 2
    assert all("segment record" in p for p in log.problems), log.problems


def test_damaged_version_meta_record_is_skipped_not_fatal(tmp_path: Path) -> None:
    good = vmeta_body("u1", 1, {"tags": [["k", "v"]]})
    bad = bytearray(encode_record(KIND_VERSION_META, vmeta_body("u1", 2, {})))
    bad[-1] ^= 1  # the record's own checksum; re-digest the segment record
    write_segment(
        tmp_path,
        1,
        [
            (seg.TYPE_VERSION_META, encode_record(KIND_VERSION_META, good)),
            (seg.TYPE_VERSION_META, bytes(bad)),
        ],
        version=3,
        sealed=False,
    )
    log = replay(tmp_path)
    assert log.vmeta == {"u1": good}
    assert len(log.problems) == 1 and "checksum" in log.problems[0]
