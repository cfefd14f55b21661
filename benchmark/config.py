"""Run settings, where ``--data`` comes from, and the environment recorded in config.json."""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from benchmark import UsageError
from benchmark.data.images import KAGGLE_HINT, default_cache_dir
from benchmark.evaluation.metrics import ALL_METRICS
from benchmark.training import AUGMENTATIONS

BACKENDS = ("local", "dask")  # where the trainings run (benchmark.training.execution)
TRACK_MODELS = ("best", "all", "none")  # fold models logged to MLflow
SAVE_MODELS = ("all", "best", "none")  # fold models kept in the run folder

# Settings that change the numbers: resuming a run folder requires them unchanged. The data is
# compared by content (benchmark.data.images.fingerprint), not by how --data is spelt.
RESULT_SETTINGS = (
    "positive",
    "label_from",
    "folds",
    "seed",
    "val_fraction",
    "image_size",
    "channels",
    "epochs",
    "batch_size",
    "lr",
    "lr_decay_epochs",
    "patience",
    "augment",
    "label_smoothing",
    "groups",
    "groups_file",
    "ungrouped",
    "repeats",
    "weights",
    "warmup_epochs",
)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of ``benchmark run``; the CLI flags map one to one onto these fields."""

    data: Path
    out: Path
    archs: str = "all"
    folds: int = 5
    repeats: int = 1  # repeated cross-validation: repeats × folds trainings per architecture
    seed: int = 42
    val_fraction: float = 0.1
    groups: str | None = None  # a regular expression (or preset) naming each file's group
    groups_file: Path | None = None  # or a CSV of path, group
    ungrouped: str = "error"  # a file without a group: "error", or "own" (a group of its own)
    positive: str | None = None
    label_from: str | None = None  # classes from file names: a regular expression's first capture group
    # image_size, epochs, batch_size and patience are chosen so that the README's main job
    # (7 architectures × 5 folds on the 5,216 Kaggle training images) fits in 45 minutes on
    # a 2-core CPU: see docs/results.md.
    image_size: int = 56
    channels: int = 1
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_decay_epochs: float = 10.0
    patience: int = 5
    augment: str = "light"  # a level of AUGMENTATIONS
    label_smoothing: float = 0.0
    weights: str = "none"  # pretrained weights of Keras applications: none, imagenet or a folder of Keras's files
    # Pretrained only: epochs (of --epochs) that train the output layer alone before the whole network is
    # fine-tuned. Two are ~120 Adam steps on the Kaggle folds, enough for one Dense layer on pooled features
    # to leave its random start, and leave eight of the default ten to fine-tuning (README).
    warmup_epochs: int = 2
    rank_by: str | None = None  # None: f1 for two classes, f1_macro for more
    test_top: int | None = None  # held-out scoring of the N best only (None: all)
    tta: bool = False  # held-out scoring also with test-time augmentation
    gradcam_archs: str = "winner"  # "winner", "none" or an --archs expression
    cache_dir: Path | None = None
    save_models: str = "all"  # fold models kept: all, the best fold's per architecture, or none (no held-out scoring)
    strict: bool = False
    raise_errors: bool = False  # re-raise the first failing fold's error, with its traceback (debugging)
    deterministic: bool = False
    mixed_precision: bool = False
    strategy: str = "auto"
    jobs: int = 1  # trainings at once in worker processes (local backend)
    backend: str = "local"  # or "dask": the tasks go to the Dask cluster at `scheduler`
    scheduler: str | None = None
    arch_modules: tuple[str, ...] = ()
    overwrite: bool = False
    quiet: bool = False
    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard
    track: str | None = None  # "mlflow": log the run to MLflow
    tracking_uri: str | None = None  # else MLFLOW_TRACKING_URI, else MLflow's default local store
    track_optional: bool = False  # an unreachable tracking server: warn and go on
    track_models: str = "best"  # models logged to MLflow: the best fold's, all, or none

    def __post_init__(self):
        for f in dataclasses.fields(self):  # nan passes every comparison below, and inf most of them
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"--{f.name.replace('_', '-')} {value}: give a finite number.")
        if self.rank_by is not None and self.rank_by not in ALL_METRICS:
            raise UsageError(f"--rank-by {self.rank_by}: choose one of {', '.join(ALL_METRICS)}.")
        for name in ("image_size", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: give a positive whole number.")
        if self.channels not in (1, 3):
            raise UsageError(f"--channels {self.channels}: give 1 (greyscale) or 3 (RGB).")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"--val-fraction {self.val_fraction}: give a fraction between 0 and 1, e.g. 0.1.")
        if self.warmup_epochs < 0:
            raise UsageError(f"--warmup-epochs {self.warmup_epochs}: give 0 (no warm-up) or a positive whole number.")
        if self.save_models not in SAVE_MODELS:
            raise UsageError(f"--save-models {self.save_models}: choose one of {', '.join(SAVE_MODELS)}.")
        if self.jobs < 1:
            raise UsageError(f"--jobs {self.jobs}: give a positive whole number of worker processes.")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend}: choose one of {', '.join(BACKENDS)}.")
        if self.backend == "dask" and not self.scheduler:
            raise UsageError(
                "--backend dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786), the address of a running "
                "Dask scheduler whose workers can read --data and the image cache at the same paths."
            )
        if self.test_top is not None and self.test_top < 1:
            raise UsageError(f"--test-top {self.test_top}: give a positive whole number (or leave it out for all).")
        if self.augment not in AUGMENTATIONS:
            raise UsageError(f"--augment {self.augment}: choose one of {', '.join(AUGMENTATIONS)}.")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"--label-smoothing {self.label_smoothing}: give a number from 0 (off) up to below 1.")
        if self.lr <= 0 or self.lr_decay_epochs <= 0:
            raise UsageError("--lr and --lr-decay-epochs must be positive.")
        if self.groups and self.groups_file:
            raise UsageError("--groups and --groups-file: give one of them (a file-name pattern or a CSV of groups).")
        if self.track not in (None, "mlflow"):
            raise UsageError(f"--track {self.track}: the tracker is mlflow.")
        if self.track_models not in TRACK_MODELS:
            raise UsageError(f"--track-models {self.track_models}: choose one of {', '.join(TRACK_MODELS)}.")
        if self.weights not in ("none", "imagenet") and not Path(self.weights).is_dir():
            raise UsageError(
                f"--weights {self.weights}: give none, imagenet (Keras's cache) or a folder holding Keras's weight "
                "files under their own names."
            )
        if self.ungrouped not in ("error", "own"):
            raise UsageError(f"--ungrouped {self.ungrouped}: choose error or own.")

    @property
    def compile_cache(self) -> str:
        """JAX's compilation cache: ``xla/`` in the image cache folder."""
        return str(Path(self.cache_dir or default_cache_dir()) / "xla")

    @classmethod
    def from_args(cls, args, **overrides) -> RunConfig:
        """The settings parsed by the CLI, taken field by field by name (``overrides`` win)."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        return cls(**{**given, **overrides})

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    def result_settings(self) -> dict:
        d = self.to_dict()
        return {k: d[k] for k in RESULT_SETTINGS}


def default_data_dir(cwd: Path | None = None, environ=os.environ) -> Path:
    """``BENCHMARK_DATA``, else ``data =`` under ``[tool:benchmark]`` in ``./setup.cfg`` (relative to it)."""
    if environ.get("BENCHMARK_DATA"):
        return Path(environ["BENCHMARK_DATA"])
    cfg_path = Path(cwd or Path.cwd()) / "setup.cfg"
    parser = configparser.ConfigParser()
    if cfg_path.is_file():
        parser.read(cfg_path, encoding="utf-8")
        value = parser.get("tool:benchmark", "data", fallback=None)
        if value:
            return (cfg_path.parent / value.strip()).resolve()
    raise UsageError(f"no data folder given. {KAGGLE_HINT}")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    """Versions, machine and git commit, for config.json."""
    packages = ("keras", "tensorflow", "jax", "jaxlib", "torch", "numpy", "scikit-learn", "pandas", "pillow")
    return {
        "python": sys.version.split()[0],
        "packages": {p: v for p in packages if (v := _version(p))},
        "benchmark": _version("cnn-benchmark"),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "git_commit": _git_commit(Path(__file__).resolve().parent),
        "argv": sys.argv,
    }


def settings_diff(saved: dict, current: dict) -> list[str]:
    """Names of result-changing settings that differ between a saved run and this one.

    A run folder written before a setting existed ran with its default; one written
    when ``augment`` was on/off ran with today's ``light``/``none``.

    >>> settings_diff({"augment": True, "epochs": 10}, {"augment": "light", "label_smoothing": 0.0, "epochs": 12})
    ['epochs (10 → 12)']
    """
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    saved = {**defaults, **saved}
    if isinstance(saved.get("augment"), bool):
        saved["augment"] = "light" if saved["augment"] else "none"
    return [f"{k} ({saved.get(k)!r} → {current[k]!r})" for k in current if saved.get(k) != current[k]]
