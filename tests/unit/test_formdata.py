"""The multipart/form-data parser, tested the way h11 tests its readers.

One table of valid forms, each fed whole, then a byte at a time, then with
an epilogue that must be ignored; a table of hostile or malformed forms;
every truncation; the budget; and hypothesis for random forms split at
random points.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.protocol.formdata import (
    Event,
    Field,
    FileData,
    FileEnd,
    FileStart,
    FormDataParser,
    FormEnd,
    boundary_from_content_type,
    parse_part_headers,
)

B = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"


def part(
    name: str, value: bytes, *, filename: str | None = None, ctype: str | None = None
) -> bytes:
    disp = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disp += f'; filename="{filename}"'
    head = disp + "\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
    return b"--" + B + b"\r\n" + head.encode() + b"\r\n" + value + b"\r\n"


def form(*parts: bytes, close: bytes = b"--" + B + b"--\r\n") -> bytes:
    return b"".join(parts) + close


def run(data: bytes, splits: list[int] | None = None, **kwargs: int) -> list[Event]:
    """Feed ``data`` cut at ``splits`` (or whole); merge FileData for comparison."""
    parser = FormDataParser(B, **kwargs)
    events: list[Event] = []
    cuts = [0, *(splits or []), len(data)]
    for a, b in itertools.pairwise(cuts):
        events += parser.feed(data[a:b])
    parser.eof()
    merged: list[Event] = []
    for e in events:
        if isinstance(e, FileData) and merged and isinstance(merged[-1], FileData):
            merged[-1] = FileData(merged[-1].data + e.data)
        elif not (isinstance(e, FileData) and not e.data):
            merged.append(e)
    return merged


FILE = b"line1\r\nline2\r\n--not-the-boundary\r\n\r\n--" + B[:-1] + b"\r\n"

VALID: list[tuple[str, bytes, list[Event]]] = [
    (
        "fields-then-file",
        form(part("key", b"a/b.txt"), part("policy", b"eyJ9"), part("file", FILE, filename="x")),
        [
            Field("key", b"a/b.txt"),
            Field("policy", b"eyJ9"),
            FileStart("file", "x", None),
            FileData(FILE),
            FileEnd(),
            FormEnd(),
        ],
    ),
    (
        "preamble-empty-values-content-type",
        b"ignored preamble\r\n"
        + form(part("a", b""), part("File", b"", filename="e.txt", ctype="text/plain")),
        [Field("a", b""), FileStart("File", "e.txt", "text/plain"), FileEnd(), FormEnd()],
    ),
    (
        "parts-after-file-are-dropped",
        form(part("file", b"data", filename="d"), part("submit", b"Upload")),
        [FileStart("file", "d", None), FileData(b"data"), FileEnd(), FormEnd()],
    ),
    (
        "no-file",
        form(part("key", b"k")),
        [Field("key", b"k"), FormEnd()],
    ),
    (
        "transport-padding-after-delimiter",
        b"--"
        + B
        + b"  \r\n"
        + b'Content-Disposition: form-data; name="k"\r\n\r\nv\r\n'
        + b"--"
        + B
        + b"--",
        [Field("k", b"v"), FormEnd()],
    ),
    (
        "quoted-name-with-semicolon-and-escape",
        b"--"
        + B
        + b'\r\nContent-Disposition: form-data; name="a;b"; filename="q\\"x"\r\n\r\n'
        + b"v\r\n--"
        + B
        + b"--",
        [Field("a;b", b"v"), FormEnd()],
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in VALID], ids=[i for i, _, _ in VALID]
)
def test_valid_whole(data: bytes, expected: list[Event]) -> None:
    assert run(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in VALID], ids=[i for i, _, _ in VALID]
)
def test_valid_byte_at_a_time(data: bytes, expected: list[Event]) -> None:
    assert run(data, list(range(1, len(data)))) == expected


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in VALID], ids=[i for i, _, _ in VALID]
)
def test_epilogue_ignored(data: bytes, expected: list[Event]) -> None:
    assert run(data + b"\r\ntrailing epilogue --" + B + b"\r\n") == expected


def test_file_content_is_streamed_not_held() -> None:
    parser = FormDataParser(B)
    events = parser.feed(part("key", b"k")[:-2] + b"\r\n--" + B + b"\r\n")
    events += parser.feed(b'Content-Disposition: form-data; name="file"; filename="f"\r\n\r\n')
    assert events[-1] == FileStart("file", "f", None)
    chunk = b"z" * 100_000
    out = parser.feed(chunk)
    # All but a possible delimiter prefix is released at once.
    released = sum(len(e.data) for e in out if isinstance(e, FileData))
    assert released >= len(chunk) - len(B) - 4
    assert len(parser._buf) <= len(B) + 4


HOSTILE: list[tuple[str, bytes]] = [
    ("no-disposition", b"--" + B + b"\r\nX-Other: 1\r\n\r\nv\r\n--" + B + b"--"),
    ("not-form-data", b"--" + B + b'\r\nContent-Disposition: attachment; name="a"\r\n\r\nv\r\n--' + B + b"--"),
    ("no-name", b"--" + B + b"\r\nContent-Disposition: form-data\r\n\r\nv\r\n--" + B + b"--"),
    ("header-without-colon", b"--" + B + b"\r\nbogus\r\n\r\nv\r\n--" + B + b"--"),
    ("garbage-after-boundary", b"--" + B + b"garbage\r\n\r\nv\r\n--" + B + b"--"),
    ("two-dispositions", b"--" + B + b'\r\nContent-Disposition: form-data; name="a"\r\n'
     b'Content-Disposition: form-data; name="b"\r\n\r\nv\r\n--' + B + b"--"),
    ("unterminated-quote", b"--" + B + b'\r\nContent-Disposition: form-data; name="a\r\n\r\nv\r\n--' + B + b"--"),
    ("control-bytes", b"--" + B + b'\r\nContent-Disposition: form-data; name="a\x01"\r\n\r\nv\r\n--' + B + b"--"),
]  # fmt: skip


@pytest.mark.parametrize("data", [d for _, d in HOSTILE], ids=[i for i, _ in HOSTILE])
def test_malformed_refused(data: bytes) -> None:
    for splits in (None, list(range(1, len(data)))):
        with pytest.raises(S3Error) as info:
            run(data, splits)
        assert info.value.code == "MalformedPOSTRequest"


def test_second_file_part_is_dropped() -> None:
    # Whatever follows the file is dropped, including another file part
    # (names compare without case): one form stores one object.
    data = form(part("file", b"a", filename="1"), part("FILE", b"b", filename="2"))
    events = run(data)
    assert [e for e in events if isinstance(e, FileStart)] == [FileStart("file", "1", None)]


@pytest.mark.parametrize("cut", range(0, 120, 7))
def test_every_truncation_is_refused(cut: int) -> None:
    data = form(part("key", b"k" * 20), part("file", b"payload" * 5, filename="f"))
    assert cut < len(data)
    parser = FormDataParser(B)
    with pytest.raises(S3Error) as info:
        parser.feed(data[:cut])
        parser.eof()
    assert info.value.code == "MalformedPOSTRequest"


def test_field_budget() -> None:
    big = form(part("key", b"k" * 5000), part("file", b"x", filename="f"))
    with pytest.raises(S3Error) as info:
        run(big, max_form_bytes=4096)
    assert info.value.code == "MalformedPOSTRequest"
    # The file's content is not charged to the budget.
    ok = form(part("key", b"k"), part("file", b"x" * 50_000, filename="f"))
    assert isinstance(run(ok, max_form_bytes=1024)[2], FileData)
    # Parts after the file, and the epilogue, are charged.
    after = form(part("file", b"x", filename="f"), part("junk", b"j" * 5000))
    with pytest.raises(S3Error):
        run(after, max_form_bytes=4096)
    with pytest.raises(S3Error):
        run(form(part("file", b"x", filename="f")) + b"e" * 5000, max_form_bytes=4096)


def test_part_count_and_header_size_capped() -> None:
    many = form(*[part(f"f{i}", b"") for i in range(20)], part("file", b"", filename="f"))
    with pytest.raises(S3Error):
        run(many, max_parts=10)
    long_header = b"--" + B + b'\r\nContent-Disposition: form-data; name="' + b"n" * 9000
    with pytest.raises(S3Error):
        FormDataParser(B, max_form_bytes=1 << 20).feed(long_header)


def test_preamble_without_boundary_is_bounded() -> None:
    parser = FormDataParser(B, max_form_bytes=1000)
    with pytest.raises(S3Error):
        for _ in range(100):
            parser.feed(b"x" * 100)


def test_refused_parser_stays_refused() -> None:
    parser = FormDataParser(B)
    with pytest.raises(S3Error):
        parser.feed(b"--" + B + b"\r\nbogus\r\n\r\n")
    with pytest.raises(S3Error):
        parser.feed(b"more")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('Multipart/Form-Data; charset=utf-8; boundary="a b:c"', b"a b:c"),
        ("text/plain", b""),
        (None, b""),
        ("application/x-www-form-urlencoded", b""),
    ],
)
def test_boundary_from_content_type(value: str | None, expected: bytes) -> None:
    assert boundary_from_content_type(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "a" * 71,
        'multipart/form-data; boundary="bad\x00"',
        "multipart/form-data; boundary=caf\u00e9",
        'multipart/form-data; boundary="trailing "',
    ],
)
def test_bad_boundary_refused(value: str) -> None:
    with pytest.raises(S3Error) as info:
        boundary_from_content_type(value)
    assert info.value.code == "MalformedPOSTRequest"


def test_part_headers_utf8_filename() -> None:
    block = 'Content-Disposition: form-data; name="file"; filename="caf\u00e9.txt"'.encode()
    assert parse_part_headers(block) == ("file", "caf\u00e9.txt", None)


# --------------------------------------------------------------------------
# Property: any form of random fields and file content, split anywhere,
# parses to exactly the fields and content that were sent.

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)
values = st.binary(max_size=300)


@settings(max_examples=300)
@given(
    fields=st.lists(st.tuples(names, values), max_size=6),
    content=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_random_forms_round_trip(
    fields: list[tuple[str, bytes]], content: bytes, cuts: list[int]
) -> None:
    fields = [(n, v) for n, v in fields if n.lower() != "file"]
    # The sender picks a boundary absent from its content, as browsers do.
    if B in content or any(B in v for _, v in fields):
        return
    data = form(*[part(n, v) for n, v in fields], part("file", content, filename="r.bin"))
    splits = sorted({c for c in cuts if 0 < c < len(data)})
    events = run(data, splits)
    expected: list[Event] = [Field(n, v) for n, v in fields]
    expected += [FileStart("file", "r.bin", None)]
    expected += [FileData(content)] if content else []
    expected += [FileEnd(), FormEnd()]
    assert events == expected


@settings(max_examples=300)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_random_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    parser = FormDataParser(B, max_form_bytes=4096)
    splits = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    try:
        for a, b in itertools.pairwise(splits):
            parser.feed(data[a:b])
        parser.eof()
    except S3Error as exc:
        assert exc.code == "MalformedPOSTRequest"
