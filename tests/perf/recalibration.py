"""Batch-norm re-estimation per epoch: one eager pass over the graph (today) against one probe model
per batch-norm layer (commit 38d57c0, loaded from git), on the same 512 real fit images.

Each epoch of every batch-norm architecture runs it once before the inner split is scored, so its
time adds to every epoch. The two are timed in turns (interleaved), up to three times each, medians kept;
the old one's probes are built once beforehand, as its callback did once per fold. Both must give
the same statistics: the largest difference, relative to each channel's spread, is printed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.perf.common import DATA_224, ROOT, Timer, median, record

OLD = "38d57c0"
# (architecture, image size, repetitions): the registry's at the main job's 56 px, Keras's at 64 px
CANDIDATES = [
    ("baseline_batchnorm", 56, 3),
    ("baseline_bn_dropout", 56, 3),
    ("pyramid_bn_gap", 56, 3),
    ("separable", 56, 3),
    ("keras:MobileNetV3Small", 64, 3),
    ("keras:EfficientNetV2B0", 64, 1),  # the probes take half a minute a time
    ("keras:DenseNet121", 64, 1),  # and two minutes here
]


OLD_IMPORTS = {  # the modules :data:`OLD` imported, where they are now
    "from benchmark import backend": "from benchmark.training import backend",
    "from benchmark.config import AUGMENTATIONS": "from benchmark.training import AUGMENTATIONS",
    "from benchmark.data import Images": "from benchmark.data.images import Images",
    "from benchmark.files import atomic_path": "from benchmark.store.files import atomic_path",
    "from benchmark.splits import Fold": "from benchmark.data.splits import Fold",
}


def old_training():
    """benchmark/training.py as it was at :data:`OLD`, imported under another name (its imports moved since)."""
    source = subprocess.run(["git", "show", f"{OLD}:benchmark/training.py"], cwd=ROOT, capture_output=True, text=True)
    for old, new in OLD_IMPORTS.items():
        source.stdout = source.stdout.replace(old, new)
    path = Path(tempfile.mkdtemp()) / "training_old.py"
    path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("training_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def fit_images(size: int, n: int = 512) -> np.ndarray:
    """The first ``n`` training images (both classes, alternating), decoded as the tool does."""
    from benchmark.data.images import decode

    lists = [sorted((DATA_224 / "train" / c).glob("*.jpeg"))[: n // 2] for c in ("NORMAL", "PNEUMONIA")]
    return np.stack([decode(f, size) for pair in zip(*lists, strict=True) for f in pair])


def statistics(model) -> list[np.ndarray]:
    import keras

    from benchmark.training.fit import _all_layers

    norms = [x for x in _all_layers(model) if isinstance(x, keras.layers.BatchNormalization)]
    return [keras.ops.convert_to_numpy(v) for n in norms for v in (n.moving_mean, n.moving_variance)]


def main() -> None:
    import keras

    import architectures
    from benchmark.training import fit as training

    old = old_training()
    lines = ["| architecture | px | batch-norm layers | runs | probe per layer (s) | one pass (s) | CPU/wall | diff. |",
             "|:--|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for name, size, reps in CANDIDATES:
        pixels = fit_images(size)
        keras.utils.set_random_seed(0)
        model, _ = training.assemble(architectures.get(name).build, pixels.shape[1:], "light", name)
        probes = old.batchnorm_probes(model)
        times = {"old": [], "new": []}
        for _ in range(reps):
            with Timer() as t:
                old.recalibrate_batchnorm(model, pixels, probes=probes)
            times["old"].append(t.wall)
            before = statistics(model)
            with Timer() as t:
                layers = training.recalibrate_batchnorm(model, pixels)
            times["new"].append(t.wall)
            ratio = t.ratio
            after = statistics(model)
        scale = [
            x for v in before[1::2] for x in (np.sqrt(v) + 1e-6, v + 1e-6)
        ]  # a mean by its std, a variance by itself
        diff = max(float(np.max(np.abs(a - b) / s)) for a, b, s in zip(after, before, scale, strict=True))
        old_s, new_s = median(times["old"]), median(times["new"])
        lines.append(f"| {name} | {size} | {layers} | {reps} | {old_s:.2f} | {new_s:.2f} | {ratio:.2f} | {diff:.1e} |")
        print(lines[-1], file=sys.stderr, flush=True)
        keras.backend.clear_session()
    record(
        "Batch-norm re-estimation per epoch: one pass against one probe per layer",
        "python -m tests.perf.recalibration",
        [
            *lines,
            "",
            "512 real training images (the tool's RECALIBRATION_IMAGES), un-augmented; medians of the "
            "interleaved repetitions (runs); diff.: the largest difference between the two's statistics, a moving "
            "mean's relative to its channel's std, a moving variance's relative to itself.",
        ],  # fmt: skip
    )


if __name__ == "__main__":
    main()
