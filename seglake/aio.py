"""Small helpers for structured concurrency."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from seglake.errors import S3Error


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextlib.contextmanager
def s3_error_from_group() -> Iterator[None]:
    """Re-raise what a nursery failed with as the caller expects it.

    trio wraps every nursery error in an exception group; a request handler
    wants the S3 error that ended it (the first one, if tasks failed
    together). Anything else is re-raised unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            raise leaves[0] from None
        first = next((e for e in leaves if isinstance(e, S3Error)), None)
        if first is not None:
            raise first from None
        raise
