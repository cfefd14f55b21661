"""``tox -e perf``: every benchmark in turn, each appending its section to docs/performance.md.

python -m tests.perf.run_all [decode flops jobs memory overhead]
"""

from __future__ import annotations

import subprocess
import sys

from tests.perf.common import ROOT

BENCHMARKS = ("decode", "flops", "jobs", "memory", "overhead", "scale")


def main() -> int:
    chosen = sys.argv[1:] or BENCHMARKS
    for name in chosen:
        subprocess.run([sys.executable, "-m", f"tests.perf.{name}"], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
