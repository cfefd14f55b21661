"""Time the README's main job as a whole process: wall time, CPU time, peak RSS.

    python tests/perf/main_job.py [extra benchmark-run flags]

Not part of ``tox -e perf`` (it takes ≈ 36 min on 2 vCPUs); its figures are recorded in docs/results.md.
"""

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        cmd = ["benchmark", "run", "--folds", "5", "--archs", "all", "--out", out, *sys.argv[1:]]
        start = time.perf_counter()
        code = subprocess.call(cmd)
        wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(
        f"{' '.join(cmd[:6])}: wall {wall:.0f} s, CPU {cpu:.0f} s (CPU/wall {cpu / wall:.2f}), "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB, {platform.machine()} × {os.cpu_count()} CPUs"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
