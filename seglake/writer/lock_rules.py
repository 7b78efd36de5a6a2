"""Object-lock rules (owned by the object-lock work, issue #19;
docs/design-version-metadata.md §3).

``check_lock_change`` is called by the writer's ``SetVersionMeta`` handler
(``vmeta_ops.py``) inside the batch transaction when a request changes a
version's retention, after the version is resolved and before anything is
written, with the stored retention and the one the request would leave. It
raises ``S3Error`` to refuse the change with the exact AWS error.

Until the object-lock work fills it in it allows everything (retention
cannot be set through S3 before that work exists either).
"""

from __future__ import annotations

from typing import Protocol


class RetentionLike(Protocol):
    @property
    def mode(self) -> str: ...

    @property
    def until_ms(self) -> int: ...


def check_lock_change(
    old_mode: str | None,
    old_until_ms: int | None,
    new: RetentionLike | None,
    *,
    bypass: bool,
    key: str = "",
) -> None:
    """May a version's retention go from (``old_mode``, ``old_until_ms``)
    to ``new``? Raise ``S3Error`` if not. Pass-through for now."""
    del old_mode, old_until_ms, new, bypass, key
