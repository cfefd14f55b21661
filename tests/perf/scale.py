"""The data stage at scale: 10,000, 30,000 and 100,000 images.

    python -m tests.perf.scale [--counts 10000 30000 100000] [--dir /tmp]

For each count it builds a Kaggle-layout folder of JPEGs on local disk, made from the real 224 px
images with a random crop and shift each (so no two files are equal), and removes it afterwards.
It records: listing time (finding the files and the dataset fingerprint), decode time and peak RSS
of decoding into the cache (a fresh process each, so its own peak), the cache's size, the size and
write time of ``splits.json`` and ``oof.csv``, and the time to build the report from a run folder
fixture with that many out-of-fold predictions per architecture (8 architectures, 5 folds).
Figures go to docs/performance.md with a least-squares slope (seconds per 1,000 images).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from tests.perf.common import DATA_224, ROOT, Timer, record, run_timed

SIZE = 56
POSITIVE_SHARE = 3875 / 5216  # as in the Kaggle train split
DECODE = """
import sys, time
from benchmark.data.images import discover, load_images
start = time.perf_counter()
ds = discover(sys.argv[1])
images = load_images(ds.root, ds.train, int(sys.argv[3]), cache_dir=sys.argv[2], log=lambda m: None)
print(len(images.paths), time.perf_counter() - start)
"""


def _make(job: tuple[str, list[tuple[str, str]], int]) -> None:
    """Write one worker's share of synthetic images: (source, destination) pairs, seeded by ``seed``."""
    _, pairs, seed = job
    rng = np.random.default_rng(seed)
    for source, dest in pairs:
        with Image.open(source) as img:
            img = img.convert("L")
            w, h = img.size
            crop = rng.integers(int(0.8 * w), w + 1)  # a random 80–100 % crop at a random place
            x, y = rng.integers(0, w - crop + 1), rng.integers(0, h - crop + 1)
            img.crop((x, y, x + crop, y + crop)).resize((w, h)).save(dest, quality=90)


def build(root: Path, count: int) -> Path:
    """``root/train/{NORMAL,PNEUMONIA}`` with ``count`` JPEGs made from the real images."""
    sources = {c: sorted((DATA_224 / "train" / c).iterdir()) for c in ("NORMAL", "PNEUMONIA")}
    n_pos = round(count * POSITIVE_SHARE)
    pairs = []
    for cls, n in (("NORMAL", count - n_pos), ("PNEUMONIA", n_pos)):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(n):
            src = sources[cls][i % len(sources[cls])]
            pairs.append((str(src), str(root / "train" / cls / f"{cls.lower()}-{i:06d}.jpeg")))
    workers = os.cpu_count() or 1
    jobs = [("", pairs[w::workers], w) for w in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make, jobs))
    return root


def fixture_run(folder: Path, paths: tuple[str, ...], labels: np.ndarray) -> float:
    """A run folder with 8 architectures × 5 folds of random (but realistic) predictions over ``paths``;
    returns the seconds to write results.json, folds.csv, oof.csv, leaderboard.md and both reports."""
    import pandas as pd

    import architectures
    from benchmark.data.splits import NestedStratifiedKFold, save_splits
    from benchmark.evaluation.comparison import folds_table, pairwise_comparison, ranked
    from benchmark.evaluation.metrics import binary_metrics
    from benchmark.evaluation.results import read
    from benchmark.report.document import write_report
    from benchmark.report.leaderboard import leaderboard_md, leaderboard_text
    from benchmark.runner import OOF_COLUMNS, outcome
    from benchmark.store.results import parse
    from benchmark.store.runfolder import RunFolder

    run = RunFolder(folder)
    folds = NestedStratifiedKFold(5, 0.1, 42).split(labels)
    save_splits(run.splits, folds, paths, 5, 42, 0.1)
    rng = np.random.default_rng(0)
    names = architectures.list_architectures()
    for a, name in enumerate(names):
        for i, fold in enumerate(folds):
            y = labels[fold.score]
            p = 1 / (1 + np.exp(-(rng.normal(0, 1.5, len(y)) + (2 * y - 1) * (2 + 0.1 * a))))
            history = {"loss": list(np.linspace(0.6, 0.2, 10)), "val_loss": list(np.linspace(0.6, 0.3, 10))}
            record = {"arch": name, "fold": i, "metrics": binary_metrics(y, p), "best_epoch": 10, "epochs": 10,
                      "fit_seconds": 1.0, "predict_seconds": 0.1, "task_seconds": 1.1, "params": 1000, "seed": 42 + i,
                      "batch_size": 64, "class_weight": {"0": 1.0, "1": 1.0}, "initial_bias": 0.0,
                      "n_fit": len(fold.train), "n_val": len(fold.val), "n_score": len(y)}  # fmt: skip
            preds = pd.DataFrame({"path": [paths[j] for j in fold.score], "label": y, "probability": p})
            run.write_fold(name, i, record, history, preds)
    info = {"data": ".", "folds": 5, "seed": 42, "image_size": SIZE, "rank_by": "f1", "n_images": len(paths),
            "classes": {"negative": "NORMAL", "positive": "PNEUMONIA"}, "counts": {}, "test_counts": None,
            "skipped": {}, "backend": "none", "devices": [], "wall_seconds": 0.0}  # fmt: skip
    with Timer() as t:  # what benchmark.runner.publish does
        outcomes = [outcome(n, run, 5, None) for n in names]
        entries = ranked(outcomes, "f1", 5)
        records = [r for o in outcomes for r in o.folds]
        comparison = pairwise_comparison(entries, records, "f1")
        oof = pd.concat([o.predictions for o in outcomes])[OOF_COLUMNS]
        results = {"run": info, "architectures": entries, "comparison": comparison}
        typed = parse(results, run)
        run.write_results(results, folds_table(records), oof, leaderboard_md(typed.info, leaderboard_text(typed)))
        write_report(read(run))
    return t.wall


def measure(count: int, base: Path) -> dict:
    from benchmark.data.images import discover, file_table, fingerprint
    from benchmark.data.splits import NestedStratifiedKFold, save_splits
    from benchmark.store.files import write_csv

    with tempfile.TemporaryDirectory(dir=base) as name:
        tmp = Path(name)
        started = time.perf_counter()
        data = build(tmp / "data", count)
        made = time.perf_counter() - started
        with Timer() as listing:
            ds = discover(data)
            fingerprint(file_table(ds))
        wall, cpu, rss = run_timed([sys.executable, "-c", DECODE, str(data), str(tmp / "cache"), str(SIZE)], cwd=ROOT)
        cache = sum(p.stat().st_size for p in (tmp / "cache").glob("*.npy"))
        folds = NestedStratifiedKFold(5, 0.1, 42).split(ds.train.labels)
        with Timer() as splits:
            save_splits(tmp / "splits.json", folds, ds.train.paths, 5, 42, 0.1)
        import pandas as pd

        oof = pd.DataFrame(
            {
                "arch": np.repeat([f"arch{a}" for a in range(8)], count),
                "fold": np.tile(np.arange(count) % 5, 8),
                "path": list(ds.train.paths) * 8,
                "label": np.tile(ds.train.labels, 8),
                "probability": np.random.default_rng(0).random(8 * count),
            }  # fmt: skip
        )
        with Timer() as oof_write:
            write_csv(tmp / "oof.csv", oof)
        report = fixture_run(tmp / "run", ds.train.paths, ds.train.labels)
        return {
            "count": count,
            "made": made,
            "listing": listing.wall,
            "decode": wall,
            "decode_cpu": cpu,
            "rss": rss,
            "cache": cache / 2**20,
            "splits": (tmp / "splits.json").stat().st_size / 2**20,
            "splits_s": splits.wall,
            "oof": (tmp / "oof.csv").stat().st_size / 2**20,
            "oof_s": oof_write.wall,
            "report": report,
        }


def slope(rows: list[dict], key: str) -> float:
    """Least-squares seconds per 1,000 images."""
    x = np.array([r["count"] for r in rows], dtype=float) / 1000
    return float(np.polyfit(x, [r[key] for r in rows], 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="local disk for the images")
    args = parser.parse_args()
    rows = []
    for count in args.counts:
        rows.append(measure(count, args.dir))
        print(json.dumps(rows[-1]), flush=True)
    lines = [
        f"Synthetic Kaggle-layout folders on local disk ({args.dir}), made from the real 224 px images (random "
        f"80–100 % crops), decoded at {SIZE} px; decoding in a fresh process (its own peak RSS).",
        "",
        "| images | listing + fingerprint s | decode s (CPU/wall) | decode peak RSS MiB | cache MiB | RSS − cache MiB "
        "| splits.json MiB (s) | oof.csv 8 archs MiB (s) | report from fixture s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['count']:,} | {r['listing']:.2f} | {r['decode']:.1f} ({r['decode_cpu'] / r['decode']:.2f}) | "
            f"{r['rss']:.0f} | {r['cache']:.0f} | {r['rss'] - r['cache']:.0f} | "
            f"{r['splits']:.1f} ({r['splits_s']:.2f}) | {r['oof']:.1f} ({r['oof_s']:.2f}) | {r['report']:.1f} |"
        )
    if len(rows) > 1:
        lines += [
            "",
            f"Least-squares slopes per 1,000 images: listing {slope(rows, 'listing'):.3f} s, decode "
            f"{slope(rows, 'decode'):.2f} s, report {slope(rows, 'report'):.2f} s. Peak RSS of decoding minus the "
            f"cache's size stays at {min(r['rss'] - r['cache'] for r in rows):.0f}–"
            f"{max(r['rss'] - r['cache'] for r in rows):.0f} MiB (target ≤ 300 MB).",
        ]
    record("The data stage at scale", "python -m tests.perf.scale --counts " + " ".join(map(str, args.counts)), lines)


if __name__ == "__main__":
    sys.exit(main())
