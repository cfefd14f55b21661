"""GPU benchmark: per-fold wall time, images/s and GPU utilisation on one NVIDIA GPU.

    python -m tests.perf.gpu [--data DIR] [--doc FILE] [--logs DIR] [PART ...]   # PART: main heavy jobs grid

With no PART, all four run. ``--cpu-smoke --extra "--epochs 1 ..."`` checks the script itself on a machine
without a GPU (no GPU check, no sampling; the extra flags are appended to every run).

For a GPU machine without network or TensorFlow (JAX and/or PyTorch with CUDA; ``../shared/gpu/prepare.sh``
bundles the rest). Each part runs ``benchmark run`` as a subprocess while ``nvidia-smi dmon`` samples the
GPU every second, and appends its figures to ``--doc`` (docs/performance.md) under a heading naming the
GPU, the driver, the backend and the versions. On a machine without a GPU it says so in one line.

- main:  the README's main job, ``--folds 5 --archs all`` under JAX (target ≤ 5 min wall on an H100);
         per-architecture fit time and mean streaming-multiprocessor (SM) use while it trains.
- heavy: ``--image-size 224 --archs pyramid_bn_gap``, 5 folds × 15 epochs (target ≤ 40 s, SM ≥ 60 %).
- jobs:  the main job's training with ``--jobs 1`` and ``--jobs 4`` on the one GPU: speed-up, and that the
         results are the same.
- grid:  ``baseline`` at 56, 128 and 224 px, fp32 and ``--mixed-precision``, under JAX and PyTorch:
         steady-state images/s (epochs after the first, so compilation is left out) and CV F1.

Expected device time on an H100: main ≈ 5 min, heavy ≈ 1 min, jobs ≈ 4 min, grid ≈ 4 min.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.perf.common import BENCHMARK, DATA_224, DOC, _version, median, run_timed

PARTS = ("main", "heavy", "jobs", "grid")


def gpu_line() -> str | None:
    """``name, memory, driver`` of GPU 0, or None without an NVIDIA GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    out = subprocess.run(query, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def backend_sees_gpu(backend: str) -> bool:
    probe = {
        "jax": "import jax; print(jax.default_backend())",
        "torch": "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')",
    }[backend]
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip().endswith("gpu")


def parse_dmon(text: str) -> list[tuple[float, float]]:
    """(UNIX time, SM %) of each sample of ``nvidia-smi dmon -s um -o DT``.

    >>> sample = (
    ...     "# Date       Time        gpu     sm    mem    enc    dec     fb   bar1\\n"
    ...     "# YYYYMMDD   HH:MM:SS    Idx      %      %      %      %     MB     MB\\n"
    ...     " 20261127   10:22:01      0     87     41      0      0   2448      4\\n"
    ...     " 20261127   10:22:02      0      -      0      0      0   2448      4\\n"
    ... )
    >>> rows = parse_dmon(sample)
    >>> [sm for _, sm in rows], rows[0][0] == time.mktime((2026, 11, 27, 10, 22, 1, 0, 0, -1))
    ([87.0], True)
    """
    header, rows = None, []
    for line in text.splitlines():
        fields = line.lstrip("#").split()
        if line.startswith("#"):
            header = fields if "sm" in fields else header  # the second "#" line holds the units
        elif header and len(fields) == len(header):
            row = dict(zip(header, fields, strict=True))
            if row["sm"].replace(".", "").isdigit():  # "-": not sampled
                stamp = time.mktime(time.strptime(f"{row['Date']} {row['Time']}", "%Y%m%d %H:%M:%S"))
                rows.append((stamp, float(row["sm"])))
    return rows


class Sampler:
    """``nvidia-smi dmon`` in the background, one sample a second; its output is kept in ``log``."""

    def __init__(self, log: Path):
        self.log = log

    def __enter__(self):
        cmd = ["nvidia-smi", "dmon", "-s", "um", "-d", "1", "-o", "DT"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.log.write_text(out)
        self.rows = parse_dmon(out)

    def sm(self, start: float, end: float) -> float | None:
        """Mean SM use (%) of the samples taken between ``start`` and ``end`` (UNIX times)."""
        values = [sm for t, sm in self.rows if start - 1 <= t <= end]  # dmon stamps whole seconds
        return sum(values) / len(values) if values else None


def fold_records(out: Path) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text())) for p in sorted(out.glob("*/fold-*/metrics.json"))]


def training_window(out: Path) -> tuple[float, float]:
    """From the first fold's start to the last fold's end: a fold's metrics.json is written when it ends."""
    spans = [(p.stat().st_mtime - r["task_seconds"], p.stat().st_mtime) for p, r in fold_records(out)]
    return min(s for s, _ in spans), max(e for _, e in spans)


@dataclass
class Context:
    data: Path
    tmp: Path
    logs: Path
    env: dict
    extra: list[str]  # appended to every run (--cpu-smoke)
    sample: bool  # nvidia-smi dmon while each run trains

    def run(self, args: list[str], name: str, backend: str = "jax") -> tuple[Path, float, float | None]:
        """One ``benchmark run``: (run folder, whole-process wall seconds, mean SM % while training)."""
        out = self.tmp / name
        cmd = [*BENCHMARK, "run", "--data", str(self.data), "--out", str(out), "--cache-dir", str(self.tmp / "cache"),
               "-q", *args, *self.extra]  # fmt: skip
        env = {**self.env, "KERAS_BACKEND": backend}
        if not self.sample:
            wall, _, _ = run_timed(cmd, env=env)
            return out, wall, None
        with Sampler(self.logs / f"dmon-{name}.txt") as sampler:
            wall, _, _ = run_timed(cmd, env=env)
        return out, wall, sampler.sm(*training_window(out))


def steady_images_per_second(records: list[dict]) -> float:
    """Fit images per second over the epochs after the first (the first includes compilation); median of folds."""
    rates = [r["n_fit"] / median(r["epoch_seconds"][1:]) for r in records if len(r["epoch_seconds"]) > 1]
    return median(rates) if rates else float("nan")


def compile_seconds(record: dict) -> float:
    """The first epoch's excess over the later ones: compilation (and the first batches' warm-up)."""
    return record["epoch_seconds"][0] - median(record["epoch_seconds"][1:])


def records_of(out: Path) -> list[dict]:
    return [r for _, r in fold_records(out)]


def f1(out: Path, arch: str | None = None) -> str:
    archs = json.loads((out / "results.json").read_text())["architectures"]
    a = next(a for a in archs if arch is None or a["name"] == arch)
    m = a["metrics"]["f1"]
    return f"{m['mean']:.3f} ± {m['std']:.3f}"


def fmt(sm: float | None) -> str:
    return "n/a" if sm is None else f"{sm:.0f} %"


def part_main(ctx: Context) -> list[str]:
    out, wall, sm = ctx.run(["--folds", "5", "--archs", "all"], "main")
    lines = [
        f"**Main job** `benchmark run --folds 5 --archs all` (JAX, fp32): **{wall:.0f} s wall** (whole process: "
        f"decode, training, held-out scoring, Grad-CAM, reports; target ≤ 300 s); mean SM {fmt(sm)} while training.",
        "",
        "| architecture | folds | summed fit s | median fold s | median compile s | steady img/s | CV F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    by_arch: dict[str, list[dict]] = {}
    for p, r in fold_records(out):
        by_arch.setdefault(p.parent.parent.name, []).append(r)
    for arch, records in by_arch.items():
        compiles = [compile_seconds(r) for r in records if len(r["epoch_seconds"]) > 1]
        lines.append(
            f"| {arch} | {len(records)} | {sum(r['fit_seconds'] for r in records):.1f} | "
            f"{median([r['task_seconds'] for r in records]):.1f} | {median(compiles) if compiles else 0:.1f} | "
            f"{steady_images_per_second(records):.0f} | {f1(out, arch)} |"
        )
    inputs = [r["input_seconds"] for _, r in fold_records(out) if r.get("input_seconds") is not None]
    fits = [r["fit_seconds"] for _, r in fold_records(out) if r.get("input_seconds") is not None]
    if inputs:
        lines += ["", f"Host time gathering batches: {sum(inputs):.1f} s of {sum(fits):.1f} s of fitting."]
    return lines


def part_heavy(ctx: Context) -> list[str]:
    args = ["--folds", "5", "--archs", "pyramid_bn_gap", "--image-size", "224", "--epochs", "15", "--patience", "15",
            "--no-save-models"]  # fmt: skip
    out, wall, sm = ctx.run(args, "heavy")
    start, end = training_window(out)
    records = records_of(out)
    folds = ", ".join(f"{r['task_seconds']:.1f}" for r in records)
    return [
        f"**224 px** `benchmark run {' '.join(args)}`: training {end - start:.1f} s wall for the 5 folds "
        f"(target ≤ 40 s; fold times {folds} s), whole process {wall:.0f} s; mean SM {fmt(sm)} while training "
        f"(target ≥ 60 %); steady {steady_images_per_second(records):.0f} img/s; CV F1 {f1(out)}."
    ]


def part_jobs(ctx: Context) -> list[str]:
    base = ["--folds", "5", "--archs", "all", "--no-save-models", "--deterministic"]
    lines = ["**`--jobs N` on one GPU** (`benchmark run " + " ".join(base) + " --jobs N`):", ""]
    results, windows = {}, {}  # jobs → metrics, training seconds
    for jobs in (1, 4):
        out, wall, sm = ctx.run([*base, "--jobs", str(jobs)], f"jobs{jobs}")
        start, end = training_window(out)
        windows[jobs] = end - start
        results[jobs] = [a["metrics"] for a in json.loads((out / "results.json").read_text())["architectures"]]
        lines.append(f"- `--jobs {jobs}`: training {end - start:.1f} s, whole process {wall:.0f} s, mean SM {fmt(sm)}")
    lines.append(
        f"- **speed-up {windows[1] / windows[4]:.2f}×** (training time); results.json metrics identical: "
        f"{results[1] == results[4]}"
    )
    return lines


GRID_ARGS = ["--archs", "baseline", "--folds", "2", "--epochs", "3", "--patience", "3", "--no-save-models"]


def part_grid(ctx: Context) -> list[str]:
    lines = [
        f"**Throughput** (`benchmark run {' '.join(GRID_ARGS)} --image-size S [--mixed-precision]`; "
        "steady img/s = fit images / median time of epochs 2–3):",
        "",
        "| backend | size | precision | steady img/s | mean SM | CV F1 (2 folds × 3 epochs) |",
        "|---|---|---|---|---|---|",
    ]
    for backend in ("jax", "torch"):
        if ctx.sample and not backend_sees_gpu(backend):
            lines.append(f"| {backend} | – | – | not measured: {backend} does not see a GPU here | | |")
            continue
        for size in (56, 128, 224):
            for precision in ("fp32", "mixed"):
                args = [*GRID_ARGS, "--image-size", str(size)] + (["--mixed-precision"] if precision == "mixed" else [])
                name = f"grid-{backend}-{size}-{precision}"
                out, _, sm = ctx.run(args, name, backend)
                rate = steady_images_per_second(records_of(out))
                lines.append(f"| {backend} | {size} | {precision} | {rate:.0f} | {fmt(sm)} | {f1(out)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"any of {', '.join(PARTS)} (default all)")
    parser.add_argument("--data", type=Path, default=DATA_224, help="Kaggle-layout folder (default the 224 px copy)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the file the figures are appended to")
    parser.add_argument("--logs", type=Path, help="keep the nvidia-smi dmon logs here")
    parser.add_argument("--cpu-smoke", action="store_true", help="run without a GPU, to check this script")
    parser.add_argument("--extra", default="", help="flags appended to every benchmark run (with --cpu-smoke)")
    args = parser.parse_args()
    parts = args.parts or list(PARTS)
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    gpu = gpu_line()
    if not args.cpu_smoke and (gpu is None or not backend_sees_gpu("jax")):
        print("no NVIDIA GPU visible to JAX on this machine (nvidia-smi, jax.default_backend()): nothing measured.")
        return 0
    versions = ", ".join(f"{p} {v}" for p in ("keras", "jax", "jaxlib", "torch") if (v := _version(p)))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    heading = (
        f"\n### GPU: {gpu or 'none (--cpu-smoke)'}\n\n`python -m tests.perf.gpu {' '.join(parts)}` — {stamp}; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}; {versions}; data {args.data.name}\n"
    )
    with tempfile.TemporaryDirectory() as name:
        ctx = Context(
            data=args.data,
            tmp=Path(name),
            logs=args.logs or Path(name),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            extra=args.extra.split(),
            sample=not args.cpu_smoke,
        )
        ctx.logs.mkdir(parents=True, exist_ok=True)
        with args.doc.open("a", encoding="utf-8") as f:
            f.write(heading)
        print(heading, flush=True)
        for part in parts:
            lines = globals()[f"part_{part}"](ctx)
            print("\n".join(lines), flush=True)
            with args.doc.open("a", encoding="utf-8") as f:  # each part as soon as it is measured
                f.write("\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
