"""The pure parts of multipart: request parsing and ListMultipartUploads pagination."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglake.errors import S3Error
from seglake.frontend.multipart import paginate_uploads, parse_copy_range, parse_part_number
from seglake.meta.multipart_reads import UploadRow
from seglake.protocol.xml_requests import MAX_COMPLETE_BODY_BYTES, ListedPart, parse_complete
from seglake.writer.multipart_ops import composite_checksum, multipart_etag

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
SHA = base64.b64encode(hashlib.sha256(b"x").digest()).decode()


def part(n: object, etag: str = '"abc"', extra: str = "") -> str:
    return f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>{extra}</Part>"


def doc(*parts: str, ns: bool = False) -> bytes:
    attr = f' xmlns="{NS}"' if ns else ""
    return f"<CompleteMultipartUpload{attr}>{''.join(parts)}</CompleteMultipartUpload>".encode()


# ---- CompleteMultipartUpload bodies ------------------------------------------------------

GOOD = [
    (doc(part(1)), [ListedPart(1, "abc")]),
    (doc(part(1), part(2, "ABC"), ns=True), [ListedPart(1, "abc"), ListedPart(2, "abc")]),
    (doc(part(3), part(10000)), [ListedPart(3, "abc"), ListedPart(10000, "abc")]),
    (
        doc(part(1, extra=f"<ChecksumSHA256>{SHA}</ChecksumSHA256>")),
        [ListedPart(1, "abc", {"SHA256": SHA})],
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + doc(part(" 1 ", ' "abc" ')),
        [ListedPart(1, "abc")],
    ),
]


@pytest.mark.parametrize(("body", "expected"), GOOD)
def test_parse_complete_good(body: bytes, expected: list[ListedPart]) -> None:
    assert parse_complete(body) == expected


BAD = [
    (b"", "MalformedXML"),
    (b"<CompleteMultipartUpload>", "MalformedXML"),
    (doc(), "MalformedXML"),
    (b"<Other>" + part(1).encode() + b"</Other>", "MalformedXML"),
    (doc("<Junk/>"), "MalformedXML"),
    (doc("<Part><PartNumber>1</PartNumber></Part>"), "MalformedXML"),
    (doc("<Part><ETag>x</ETag></Part>"), "MalformedXML"),
    (doc(part("x")), "InvalidArgument"),
    (doc(part(0)), "InvalidArgument"),
    (doc(part(10001)), "InvalidArgument"),
    (doc(part(2), part(1)), "InvalidPartOrder"),
    (doc(part(1), part(1)), "InvalidPartOrder"),
    (doc(part(1, extra="<ChecksumMD4>AAAA</ChecksumMD4>")), "MalformedXML"),
    (doc(part(1, extra="<ChecksumSHA256>short</ChecksumSHA256>")), "InvalidRequest"),
    # No DTDs, no entities: never expanded.
    (
        b'<!DOCTYPE x [<!ENTITY a "aaaaaaaa">]>' + doc(part(1, "&a;")),
        "MalformedXML",
    ),
    (
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + doc(part(1, "&e;")),
        "MalformedXML",
    ),
    (b"x" * (MAX_COMPLETE_BODY_BYTES + 1), "MaxMessageLengthExceeded"),
]


@pytest.mark.parametrize(("body", "code"), BAD)
def test_parse_complete_bad(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_complete(body)
    assert exc.value.code == code


def test_parse_complete_ten_thousand_parts_fit() -> None:
    etag = '"' + "0123456789abcdef" * 2 + '"'
    extra = f"<ChecksumSHA256>{SHA}</ChecksumSHA256>"
    body = doc(*(part(n, etag, extra) for n in range(1, 10001)), ns=True)
    assert len(body) < MAX_COMPLETE_BODY_BYTES
    parsed = parse_complete(body)
    assert len(parsed) == 10000
    assert parsed[-1].number == 10000


# ---- small parameters ---------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "9999", "10000", "00001"])
def test_part_number_good(raw: str) -> None:
    assert parse_part_number(raw) == int(raw)


@pytest.mark.parametrize("raw", [None, "", "0", "10001", "-1", "1.0", " 1", "１", "999999"])
def test_part_number_bad(raw: str | None) -> None:
    with pytest.raises(S3Error) as exc:
        parse_part_number(raw)
    assert exc.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        (None, 10, (0, 9)),
        (None, 0, (0, -1)),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=3-9", 10, (3, 9)),
        (" bytes=3-4 ", 10, (3, 4)),
    ],
)
def test_copy_range_good(value: str | None, size: int, expected: tuple[int, int]) -> None:
    assert parse_copy_range(value, size) == expected


@pytest.mark.parametrize(
    "value",
    ["bytes=3-10", "bytes=5-4", "bytes=-3", "bytes=3-", "bytes=1-2,4-5", "3-4", "bytes=a-b"],
)
def test_copy_range_bad(value: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_copy_range(value, 10)
    assert exc.value.code == "InvalidArgument"


# ---- ETag and composite checksums -----------------------------------------------------


def test_multipart_etag_matches_s3_rule() -> None:
    parts = [b"a" * 10, b"b" * 3]
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    assert multipart_etag([hashlib.md5(p).hexdigest() for p in parts]) == (
        hashlib.md5(joined).hexdigest() + "-2"
    )


def test_composite_checksum() -> None:
    parts = [b"one", b"two", b"three"]
    raws = [hashlib.sha1(p).digest() for p in parts]
    want = base64.b64encode(hashlib.sha1(b"".join(raws)).digest()).decode() + "-3"
    assert composite_checksum("SHA1", [base64.b64encode(r).decode() for r in raws]) == want


# ---- ListMultipartUploads pagination ---------------------------------------------------


def row(key: str, upload_id: str) -> UploadRow:
    return UploadRow(upload_id, "b", key, 0, {}, None)


def fetcher(rows: list[UploadRow], prefix: str):  # type: ignore[no-untyped-def]
    ordered = sorted(rows, key=lambda r: (r.key.encode(), r.upload_id))

    def fetch(key: str, upload_id: str | None) -> Iterator[UploadRow]:
        if prefix and key < prefix:
            key, upload_id = prefix, ""
        for r in ordered:
            after = r.key.encode() > key.encode() or (
                r.key == key and upload_id is not None and r.upload_id > upload_id
            )
            if after and r.key.startswith(prefix):
                yield r

    return fetch


def model(rows: list[UploadRow], prefix: str, delimiter: str) -> list[tuple[str, str]]:
    """Everything S3 would list, in order: ("upload", key/id) or ("prefix", p)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for r in sorted(rows, key=lambda r: (r.key.encode(), r.upload_id)):
        if not r.key.startswith(prefix):
            continue
        idx = r.key.find(delimiter, len(prefix)) if delimiter else -1
        if idx >= 0:
            cp = r.key[: idx + len(delimiter)]
            if cp not in seen:
                seen.add(cp)
                out.append(("prefix", cp))
        else:
            out.append(("upload", f"{r.key}/{r.upload_id}"))
    return out


keys = st.text(alphabet="ab/", min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(st.tuples(keys, st.sampled_from(["01", "02", "03"])), unique=True),
    prefix=st.sampled_from(["", "a", "a/", "b"]),
    delimiter=st.sampled_from(["", "/", "b"]),
    max_uploads=st.integers(1, 4),
)
def test_pages_cover_everything_once(
    entries: list[tuple[str, str]], prefix: str, delimiter: str, max_uploads: int
) -> None:
    rows = [row(k, u) for k, u in entries]
    fetch = fetcher(rows, prefix)
    got: list[tuple[str, str]] = []
    key_marker, upload_id_marker = "", None
    for _ in range(len(rows) + 2):
        page = paginate_uploads(
            fetch, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            upload_id_marker=upload_id_marker, max_uploads=max_uploads,
        )  # fmt: skip
        items = [("upload", f"{u.key}/{u.upload_id}") for u in page.uploads]
        items += [("prefix", p) for p in page.common_prefixes]
        assert len(items) <= max_uploads
        got += items
        if not page.is_truncated:
            break
        assert page.next_key is not None
        # A client passes the markers back as it got them ("" for none).
        key_marker, upload_id_marker = page.next_key, page.next_upload_id or None
    else:
        pytest.fail("pagination did not end")
    assert sorted(got) == sorted(model(rows, prefix, delimiter))
    assert len(got) == len(model(rows, prefix, delimiter))


def test_upload_id_marker_resumes_within_a_key() -> None:
    rows = [row("k", "01"), row("k", "02"), row("k", "03"), row("l", "01")]
    page = paginate_uploads(
        fetcher(rows, ""), prefix="", delimiter="", key_marker="k", upload_id_marker="01",
        max_uploads=10,
    )  # fmt: skip
    assert [(u.key, u.upload_id) for u in page.uploads] == [("k", "02"), ("k", "03"), ("l", "01")]
    page = paginate_uploads(
        fetcher(rows, ""), prefix="", delimiter="", key_marker="k", upload_id_marker=None,
        max_uploads=10,
    )  # fmt: skip
    assert [(u.key, u.upload_id) for u in page.uploads] == [("l", "01")]


def test_zero_max_uploads() -> None:
    page = paginate_uploads(
        fetcher([row("k", "01")], ""), prefix="", delimiter="", key_marker="",
        upload_id_marker=None, max_uploads=0,
    )  # fmt: skip
    assert page.uploads == [] and not page.is_truncated
