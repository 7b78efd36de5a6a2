"""The refusal table: defaults pass (any case, padded), anything else is
NotImplemented naming the header and never echoing its value."""

from __future__ import annotations

import pytest

from seglake.errors import S3Error
from seglake.protocol.unimplemented_headers import BY_OPERATION, refuse_unimplemented


def test_defaults_pass_in_any_case() -> None:
    refuse_unimplemented(
        "PutObject",
        {"x-amz-storage-class": "standard", "x-amz-tagging": ""},
    )
    refuse_unimplemented("CreateBucket", {"x-amz-bucket-object-lock-enabled": "False"})
    refuse_unimplemented("DeleteObject", {"x-amz-server-side-encryption": "AES256"})


@pytest.mark.parametrize(
    ("op", "header", "value"),
    [
        ("PutObject", "x-amz-server-side-encryption", "AES256"),
        ("PutObject", "x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("CreateMultipartUpload", "x-amz-storage-class", "GLACIER"),
        ("GetObject", "x-amz-server-side-encryption-customer-key", "c2VjcmV0LWtleQ=="),
        ("CopyObject", "x-amz-copy-source-server-side-encryption-customer-key", "c2VjcmV0"),
    ],
)
def test_refused_names_header_not_value(op: str, header: str, value: str) -> None:
    with pytest.raises(S3Error) as err:
        refuse_unimplemented(op, {header: value})
    assert err.value.code == "NotImplemented" and err.value.status == 501
    assert header in err.value.text and value not in err.value.text
    assert err.value.fields == {"Header": header}


def test_every_sse_c_header_is_refused_where_objects_are_read_or_written() -> None:
    sse_c = "x-amz-server-side-encryption-customer-key"
    for op in ("PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart",
               "UploadPartCopy", "GetObject", "HeadObject"):  # fmt: skip
        assert sse_c in BY_OPERATION[op], op
