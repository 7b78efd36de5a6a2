"""Counts the fault tests report (power cuts, torn writes, failpoints hit,
bit flips, kills, objects verified).

Each test prints one line and, when ``SEGLAKE_FAULT_FIGURES`` names a file
(``make test-faults`` sets it), appends the same figures to it as a JSON
line; ``python -m tests.faults.figures <file>`` prints the totals.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path


def report(test: str, **counts: int) -> None:
    line = " ".join(f"{k}={v}" for k, v in counts.items())
    print(f"\n[figures] {test}: {line}")
    target = os.environ.get("SEGLAKE_FAULT_FIGURES")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a") as f:
            f.write(json.dumps({"test": test, "time": int(time.time()), **counts}) + "\n")


def totals(path: Path) -> Counter[str]:
    total: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for k, v in rec.items():
            if isinstance(v, int) and k != "time":
                total[k] += v
    return total


if __name__ == "__main__":
    p = Path(sys.argv[1])
    if not p.exists():
        print(f"no figures in {p}")
        sys.exit(0)
    for line in p.read_text().splitlines():
        print(line)
    print("totals:", json.dumps(dict(sorted(totals(p).items()))))
