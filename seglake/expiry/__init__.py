"""Bucket lifecycle execution: planned from ``meta.db`` with the pure rules
of ``seglake/protocol/lifecycle.py``, applied as writer mutations. Shared by
the maintenance process's schedule and ``seglake lifecycle-plan|run``."""
