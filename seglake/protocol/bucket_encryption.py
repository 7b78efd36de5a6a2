"""Bucket default encryption (pure): AWS's ServerSideEncryptionConfiguration,
parsed, validated and written back.

Rules this file keeps:
- A configuration is exactly one ``Rule`` holding one
  ``ApplyServerSideEncryptionByDefault`` with one ``SSEAlgorithm`` (and an
  optional ``BucketKeyEnabled``); any other element, or a missing one, is
  ``MalformedXML``.
- ``AES256`` (SSE-S3) is what Seglake implements. ``aws:kms`` and
  ``aws:kms:dsse`` are ``501 NotImplemented`` (the same answer PUTs with
  those values get), never stored; any other algorithm is AWS's
  ``InvalidArgument``, and so is a ``KMSMasterKeyID`` next to ``AES256``.
  ``BlockedEncryptionTypes`` (AWS's switch for SSE-C) is ``NotImplemented``:
  Seglake always accepts SSE-C.
- ``BucketKeyEnabled`` is kept and answered back as sent; it changes nothing
  for SSE-S3 (AWS ignores it there too).
- The canonical XML ``encryption_xml`` makes is what the writer stores and
  GetBucketEncryption answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from xml.etree.ElementTree import Element

from seglake.errors import S3Error
from seglake.protocol.xml import document, el
from seglake.protocol.xml_requests import children_by_name, document_root

# A configuration is a few hundred bytes; AWS caps request bodies of this
# kind far higher, 64 KiB keeps a hostile body cheap to refuse.
MAX_BODY_BYTES: Final = 64 * 1024
AES256: Final = "AES256"
_KMS: Final = ("aws:kms", "aws:kms:dsse")


@dataclass(frozen=True)
class EncryptionConfiguration:
    algorithm: str  # always AES256 once parsed
    bucket_key_enabled: bool | None = None


def _only(found: dict[str, list[Element]], name: str, *, required: bool) -> Element | None:
    nodes = found.get(name, [])
    if len(nodes) > 1 or (required and not nodes):
        raise S3Error("MalformedXML", message=f"exactly one {name} is expected")
    return nodes[0] if nodes else None


def _text(node: Element) -> str:
    if len(node):
        raise S3Error("MalformedXML", message="a value element must hold text")
    return (node.text or "").strip()


def parse_encryption(body: bytes) -> EncryptionConfiguration:
    """PutBucketEncryption's body → a validated configuration."""
    root = document_root(body, "ServerSideEncryptionConfiguration", MAX_BODY_BYTES)
    rule = _only(children_by_name(root, ("Rule",)), "Rule", required=True)
    assert rule is not None
    found = children_by_name(
        rule, ("ApplyServerSideEncryptionByDefault", "BucketKeyEnabled", "BlockedEncryptionTypes")
    )
    if "BlockedEncryptionTypes" in found:
        raise S3Error(
            "NotImplemented",
            message="Seglake does not implement BlockedEncryptionTypes",
            fields={"Header": "BlockedEncryptionTypes"},
        )
    default = _only(found, "ApplyServerSideEncryptionByDefault", required=True)
    assert default is not None
    inner = children_by_name(default, ("SSEAlgorithm", "KMSMasterKeyID"))
    alg_node = _only(inner, "SSEAlgorithm", required=True)
    assert alg_node is not None
    algorithm = _text(alg_node)
    key_node = _only(inner, "KMSMasterKeyID", required=False)
    if algorithm.lower() in _KMS:
        raise S3Error(
            "NotImplemented",
            message=f"Seglake does not implement default encryption with {algorithm}",
            fields={"Header": "SSEAlgorithm"},
        )
    if algorithm != AES256:
        raise S3Error("InvalidArgument", message="The encryption method specified is not supported")
    if key_node is not None:
        raise S3Error(
            "InvalidArgument",
            message="a KMSMasterKeyID is not applicable if the default sse algorithm is not "
            "aws:kms or aws:kms:dsse",
        )
    bke = _only(found, "BucketKeyEnabled", required=False)
    enabled: bool | None = None
    if bke is not None:
        value = _text(bke).lower()
        if value not in ("true", "false"):
            raise S3Error("MalformedXML", message="BucketKeyEnabled must be true or false")
        enabled = value == "true"
    return EncryptionConfiguration(AES256, enabled)


def encryption_xml(cfg: EncryptionConfiguration) -> bytes:
    rule = (
        "<ApplyServerSideEncryptionByDefault>" + el("SSEAlgorithm", cfg.algorithm)
        + "</ApplyServerSideEncryptionByDefault>"
    )  # fmt: skip
    if cfg.bucket_key_enabled is not None:
        rule += el("BucketKeyEnabled", cfg.bucket_key_enabled)
    return document("ServerSideEncryptionConfiguration", [f"<Rule>{rule}</Rule>"])


def stored_algorithm(text: str | None) -> str | None:
    """The default algorithm of a stored configuration (frontends store only
    canonical XML that parsed), or None for none. One that no longer parses
    fails the write (``InternalError``) rather than storing plaintext in a
    bucket that asked for encryption."""
    if text is None:
        return None
    try:
        return parse_encryption(text.encode("utf-8")).algorithm
    except S3Error:
        raise S3Error(
            "InternalError", message="the bucket's default encryption is unreadable"
        ) from None
