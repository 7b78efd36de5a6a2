"""Mutation check: remove one fsync at a time and show a fault test fails.

The barrier of segment format 2 has two flushes, and both must be caught:
``segment.fsync`` (the one fdatasync of the open segment that makes a
batch's chunks and records durable) and ``sqlite.sync`` (SQLite's WAL sync
at COMMIT, synchronous=FULL).

    .venv/bin/python -m tests.faults.mutation_check [site ...]

For each fsync / directory-fsync site of the writer (``fileio.FSYNC_SITES``,
or the ones named), runs the power-loss test that exercises it (GC and
metadata-record sites: ``test_power_loss_gc``; all others:
``test_power_loss``) with
``SEGLAKE_TEST_SKIP_FSYNC=<site>`` (honoured only in the journal's test
mode) and reports whether it failed, i.e. whether the fault suite notices
that fsync is missing. Sites that only run in rare recovery paths, and
those whose durability is provably covered by a later fsync of the same
file before any commit depends on it, are listed as such rather than hidden.
Exit status 1 if a required site's removal went unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from seglake.writer.fileio import FSYNC_SITES

TEST = "tests/faults/test_power_loss.py::test_power_cuts_recover_with_every_ack_intact"
GC_TEST = "tests/faults/test_power_loss_gc.py::test_power_cuts_during_gc_and_record_writes"
GC_PREFIXES = ("gc_",)
TIMEOUT_S = 600
# Sites whose removal the power-loss test cannot or need not catch, and why.
# (recovery.fsync is caught: the test also cuts power during recovery.)
NOT_REQUIRED = {
    # The header is fsynced again by the group commit's segment fsync before
    # any manifest or row references the segment; recovery removes a segment
    # with a torn header when nothing was committed in it.
    "segment.header_fsync": "covered by segment.fsync before any commit references the segment",
    # Runs only when a record below committed_end is damaged, which a power
    # cut alone cannot produce (EIO at it: test_eio_all_sites).
    "recovery.fsync_damaged": "needs a damaged committed record; not reachable by power cuts",
    # Makes the removal of a torn-header segment durable; if a crash undoes
    # the removal, the next recovery removes the file again (idempotent).
    "recovery.dir_fsync": "idempotent clean-up; a lost unlink is redone by the next recovery",
    "dir.fsync": "first-start creation of objects/ (before the snapshot the model starts from)",
    # seglake upgrade runs offline, once per store; restartable at any point
    # (tests/e2e/test_upgrade.py).
    "upgrade.dir_fsync": "offline upgrade only; a lost removal is redone by running it again",
    # A dead segment whose unlink a crash undoes is back without a row and
    # without references: recovery registers it again, the next gc-run
    # deletes it (test_gc_crash kills the writer right there).
    "gc_segments_dir.fsync": "an undone unlink of a dead segment is redone by the next gc-run",
}


def run(site: str) -> tuple[bool, str, float]:
    env = dict(
        os.environ,
        SEGLAKE_TEST_SKIP_FSYNC=site,
        SEGLAKE_POWER_CUTS="110",
        SEGLAKE_GC_POWER_CUTS="120",
    )
    test = GC_TEST if site.startswith(GC_PREFIXES) else TEST
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-s", test],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
        check=False,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("E   ", "[figures]"))]
    detail = next((ln.strip()[:240] for ln in lines if "cut " in ln), lines[0] if lines else "")
    return out.returncode != 0, detail, time.monotonic() - t0


def main(argv: list[str]) -> int:
    sites = argv or sorted(FSYNC_SITES)
    missed: list[str] = []
    for site in sites:
        if site not in FSYNC_SITES:
            print(f"{site}: not a registered fsync site")
            return 2
        if not argv and site in NOT_REQUIRED:
            print(f"{site:28} skipped: {NOT_REQUIRED[site]}")
            continue
        failed, detail, secs = run(site)
        verdict = "CAUGHT" if failed else "NOT CAUGHT"
        print(f"{site:28} {verdict:10} ({secs:.0f}s) {detail}")
        if not failed and site not in NOT_REQUIRED:
            missed.append(site)
    if missed:
        print(f"removal went unnoticed for: {missed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
