"""The dashboard's layout, rendered with rich's recording console at the
smallest supported terminal (80×24) and a large one (200×50)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from seglake.metrics import view
from seglake.metrics.requests import RequestCounters
from seglake.ops.dashboard import Confirm, History, render, sparkline

OPS = ("PutObject", "GetObject", "HeadObject", "ListObjectsV2", "DeleteObject", "CreateBucket",
       "ListBuckets", "CompleteMultipartUpload", "UploadPart", "CreateMultipartUpload",
       "GetMetaStats", "HealthReady", "Metrics", "ListParts", "CopyObject", "DeleteObjects",
       "HeadBucket", "GetBucketVersioning", "PutBucketVersioning", "ListObjectVersions")  # fmt: skip


def _doc(t: float, scale: int) -> dict[str, object]:
    rc = RequestCounters()
    for i, op in enumerate(OPS):
        for _ in range(scale * (len(OPS) - i)):
            rc.done(op, 200, 0.002 * (i + 1), bucket="b", key_id="k", bytes_in=10, bytes_out=20)
    rc.done("GetObject", 404, 0.001, bucket="b", key_id="k", error_code="NoSuchKey")
    procs = [
        {"name": n, "pid": 100 + i, "alive": n != "frontend-1", "uptime": 5000.0, "restarts": i,
         "rss_bytes": 50 << 20, "cpu_seconds": 1.5}
        for i, n in enumerate(("supervisor", "writer", "frontend-0", "frontend-1", "maintenance"))
    ]  # fmt: skip
    sup = {"processes": procs, "frontends": {"counters": rc.counters(), "gauges": rc.gauges()},
           "writer": {"counters": {"batches": 3}, "gauges": {"queue_depth": 7,
                                                            "write_inflight": 2}}}  # fmt: skip
    store = {"objects": 123, "versions": 130, "segments": 4, "bytes_live": 10 << 20,
             "segment_bytes": 12 << 20,
             "maintenance": {"state": "quiesced", "since": t - 30, "history": [
                 {"from": "off", "to": "entering", "at": t - 40, "reason": "cli"},
                 {"from": "entering", "to": "quiesced", "at": t - 30, "reason": "drained"}]}}  # fmt: skip
    disk = {"free_bytes": 5 << 30, "reserve_bytes": 64 << 20, "above_reserve": True}
    return view.build(now=t, version="0.1.0", supervisor=sup, store=store, runs=[], disk=disk)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (200, 50)])
def test_layout_fits_and_shows_everything(width: int, height: int) -> None:
    hist = History()
    for s in range(1, 6):
        hist.add(_doc(1000.0 + s, s))
    doc = _doc(1005.0, 5)
    console = Console(record=True, width=width, height=height, file=io.StringIO(),
                      color_system=None, legacy_windows=False)  # fmt: skip
    console.print(render(doc, hist, height=height, now=1005.0), height=height)
    text = console.export_text()
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == height
    assert max(len(line) for line in lines) <= width
    for needle in (
        "Seglake",
        "processes",
        "writer",
        "frontend-0",
        "maintenance",
        "quiesced",
        "quiesced 30s",  # the transitions, newest first
        "entering 40s",
        "objects 123",
        "PutObject",
        "GetObject",
        "queue 7",
        "req/s",
        "q quit",
    ):
        assert needle in text, (needle, text)
    assert "DOWN" in text or "frontend-1" in text
    put = next(line for line in lines if line.lstrip().startswith("PutObject"))
    assert "20.0" in put  # 20 PutObjects a second between the last two samples
    if height >= 50:
        assert "ListObjectVersions" in text  # every operation fits at 200x50
    else:
        assert text.count("Object") >= 3


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([]) == ""
    assert sparkline([0, 0]) == "▁▁"
    assert len(sparkline(list(range(100)))) == 16


def test_only_a_key_press_answers_the_maintenance_question() -> None:
    c = Confirm()
    assert c.key("", "off") == "" and c.text == ""
    assert c.key("m", "off") == "" and c.pending == "enable"
    assert c.text.startswith("enable maintenance mode?")
    for _ in range(3):  # refreshes that found no key: still asking
        assert c.key("", "off") == "" and c.pending == "enable"
    assert c.key("y", "off") == "enable" and c.pending == ""
    assert c.key("m", "quiesced") == "" and c.pending == "disable"
    assert c.key("n", "quiesced") == "" and (c.pending, c.text) == ("", "cancelled")
    assert c.key("y", "quiesced") == ""  # no question open: y alone does nothing
    assert c.key("M", "entering") == "" and c.pending == "disable"
    assert c.key("Y", "entering") == "disable"
