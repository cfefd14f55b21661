"""Shared by the benchmarks in tests/perf: timing with CPU time, the machine line, appending to the docs."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_224 = ROOT.parent / "shared" / "data" / "chest_xray_224"
DATA_FULLRES = ROOT.parent / "shared" / "data" / "chest_xray_fullres_sample"
DOC = ROOT / "docs" / "performance.md"
BENCHMARK = [sys.executable, "-m", "benchmark.cli"]  # the `benchmark` command of this environment


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    versions = ", ".join(f"{p} {_version(p)}" for p in ("keras", "tensorflow", "numpy", "joblib") if _version(p))
    return f"{os.cpu_count()} vCPU {cpu}; Python {platform.python_version()}; {versions}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class Timer:
    """Wall time and this process's CPU time (user + system) of a block."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0

    @property
    def ratio(self) -> float:
        return self.cpu / self.wall


def run_timed(cmd: list[str], **kwargs) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one whole command.

    The peak RSS comes from GNU time, which forks the command from its own small process: a
    process started straight from this one would inherit, in its maximum RSS, this process's
    own high-water mark (Linux carries it across exec), which overstates the command's memory.
    """
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as peak:
        timed = ["/usr/bin/time", "-q", "-o", peak.name, "-f", "%M", *cmd] if Path("/usr/bin/time").exists() else cmd
        proc = subprocess.Popen(timed, stdout=subprocess.DEVNULL, **kwargs)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd)
        rss_kb = int(peak.read().strip().splitlines()[-1]) if timed is not cmd else usage.ru_maxrss
    return wall, usage.ru_utime + usage.ru_stime, rss_kb / 1024


def median(values) -> float:
    return statistics.median(values)


def record(title: str, command: str, lines: list[str]) -> None:
    """Print a section and append it to docs/performance.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"\n### {title}\n\n`{command}` — {stamp}; {machine()}\n\n" + "\n".join(lines) + "\n"
    print(text, flush=True)
    if not DOC.exists():
        DOC.write_text(HEADER)
    with DOC.open("a", encoding="utf-8") as f:
        f.write(text)


HEADER = """# Performance

Appended by `tox -e perf` (`python tests/perf/run_all.py`); each section names its command, date,
machine and versions. Timings on a shared 2-vCPU machine swing up to 2× for tens of seconds: each
figure states its CPU time / wall time (≈ 1.85 is two busy threads; ≈ 1.0 is the slow mode) and
comparisons are interleaved repetitions in one run, reported as medians.
"""

if __name__ == "__main__":
    print(machine(), file=sys.stderr)
