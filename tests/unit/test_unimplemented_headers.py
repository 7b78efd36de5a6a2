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
        ("PutObject", "x-amz-server-side-encryption-aws-kms-key-id", "arn:aws:kms:k"),
        ("PutObject", "x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("CreateMultipartUpload", "x-amz-storage-class", "GLACIER"),
        ("CopyObject", "x-amz-server-side-encryption-context", "c2VjcmV0"),
    ],
)
def test_refused_names_header_not_value(op: str, header: str, value: str) -> None:
    with pytest.raises(S3Error) as err:
        refuse_unimplemented(op, {header: value})
    assert err.value.code == "NotImplemented" and err.value.status == 501
    assert header in err.value.text and value not in err.value.text
    assert err.value.fields == {"Header": header}


def test_implemented_encryption_headers_are_not_refused() -> None:
    """SSE-S3 and SSE-C are implemented (seglake/sse/headers.py decides, and
    refuses aws:kms itself); KMS key ids and contexts stay refused."""
    sse_c = "x-amz-server-side-encryption-customer-key"
    for op in ("PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart",
               "UploadPartCopy", "GetObject", "HeadObject"):  # fmt: skip
        table = BY_OPERATION.get(op, {})
        assert sse_c not in table and "x-amz-server-side-encryption" not in table, op
    for op in ("PutObject", "CopyObject", "CreateMultipartUpload"):
        assert "x-amz-server-side-encryption-aws-kms-key-id" in BY_OPERATION[op], op
