"""S3's limits and naming rules, stated once for every layer that checks them.

The frontend refuses a request that breaks one before reading its body; the
writer checks again in its transaction (it trusts no caller), and the
operator CLI applies the same bucket-name rule. Values are AWS's documented
ones ("Amazon S3 multipart upload limits", "Bucket naming rules"), so a
client that works against AWS works here and vice versa.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from seglake.errors import S3Error
from seglake.units import GiB, MiB

MIN_PART_SIZE: Final = 5 * MiB  # every part but the last
MAX_PART_SIZE: Final = 5 * GiB
MAX_PART_NUMBER: Final = 10_000
# CopyObject refuses larger sources (multipart copy is the way).
MAX_COPY_SOURCE_BYTES: Final = 5 * GiB

_BUCKET_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Prefixes and suffixes AWS reserves for its own naming schemes (punycode,
# access-point aliases, Object Lambda); a bucket named so could never move
# to AWS, so refuse it here too.
RESERVED_PREFIXES: Final = ("xn--", "sthree-", "sthree-configurator", "amzn-s3-demo-")
RESERVED_SUFFIXES: Final = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def validate_bucket_name(name: str) -> None:
    """S3's naming rules for new buckets (lowercase, 3..63, no IP form)."""
    ok = (
        bool(_BUCKET_RE.match(name))
        and ".." not in name
        and ".-" not in name
        and "-." not in name
        and not name.startswith(RESERVED_PREFIXES)
        and not name.endswith(RESERVED_SUFFIXES)
    )
    if ok:
        try:
            ipaddress.ip_address(name)
            ok = False
        except ValueError:
            pass
    if not ok:
        raise S3Error("InvalidBucketName", resource=name, fields={"BucketName": name})
