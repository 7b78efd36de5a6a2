"""Counters, histograms and their renderings (JSON stats, Prometheus text).

Pure code: no I/O, no imports of ours. The processes that do the work
(frontends, the writer) count into these structures, the supervisor merges
what they report, and the maintenance process and the frontends render it.
"""
