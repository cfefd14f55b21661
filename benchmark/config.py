"""Run settings, grouped by role, where ``--data`` comes from, and the environment recorded in config.json.

:class:`RunConfig` holds seven groups, each checked where it is defined: the data (:class:`DataSettings`),
the cross-validation (:class:`CVSettings`), training (:class:`~benchmark.training.TrainSettings`), the
nested tuning (:class:`~benchmark.training.TuningSettings`),
execution (:class:`~benchmark.training.ExecutionSettings`), the output (:class:`OutputSettings`) and
tracking (:class:`TrackingSettings`). At the edges the settings are flat, one name per flag of
``benchmark run``: :meth:`RunConfig.from_flat` takes them so (the CLI, ``benchmark.run(**settings)``),
:meth:`RunConfig.to_dict` gives them so (config.json's ``settings``).
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from benchmark import UsageError
from benchmark.data.images import KAGGLE_HINT, default_cache_dir
from benchmark.errors import check_finite
from benchmark.evaluation.metrics import ALL_METRICS
from benchmark.training import ExecutionSettings, TrainSettings, TuningSettings

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
    "tune",
    "trials",
)


@dataclass(frozen=True)
class DataSettings:
    """Which images, as what: the folder, its classes, the input size and channels, the decoded-image cache."""

    data: Path
    positive: str | None = None
    label_from: str | None = None  # classes from file names: a regular expression's first capture group
    image_size: int = 56  # chosen with TrainSettings' defaults for the README's main job (docs/results.md)
    channels: int = 1
    cache_dir: Path | None = None
    strict: bool = False  # an unreadable image is an error, not a skip

    def __post_init__(self):
        if self.image_size < 1:
            raise UsageError(f"--image-size {self.image_size}: give a positive whole number.")
        if self.channels not in (1, 3):
            raise UsageError(f"--channels {self.channels}: give 1 (greyscale) or 3 (RGB).")


@dataclass(frozen=True)
class CVSettings:
    """The cross-validation: the candidates, their folds (identical for every candidate), the ranking metric."""

    archs: str = "all"
    arch_modules: tuple[str, ...] = ()  # files of architectures loaded besides the registry's
    folds: int = 5
    repeats: int = 1  # repeated cross-validation: repeats × folds trainings per architecture
    seed: int = 42
    val_fraction: float = 0.1  # the inner split early stopping watches
    groups: str | None = None  # a regular expression (or preset) naming each file's group
    groups_file: Path | None = None  # or a CSV of path, group
    ungrouped: str = "error"  # a file without a group: "error", or "own" (a group of its own)
    rank_by: str | None = None  # None: f1 for two classes, f1_macro for more

    def __post_init__(self):
        check_finite(self)
        if self.rank_by is not None and self.rank_by not in ALL_METRICS:
            raise UsageError(f"--rank-by {self.rank_by}: choose one of {', '.join(ALL_METRICS)}.")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"--val-fraction {self.val_fraction}: give a fraction between 0 and 1, e.g. 0.1.")
        if self.groups and self.groups_file:
            raise UsageError("--groups and --groups-file: give one of them (a file-name pattern or a CSV of groups).")
        if self.ungrouped not in ("error", "own"):
            raise UsageError(f"--ungrouped {self.ungrouped}: choose error or own.")


@dataclass(frozen=True)
class OutputSettings:
    """What the run writes and keeps: the run folder, the fold models, the held-out scoring and Grad-CAM."""

    out: Path
    overwrite: bool = False
    quiet: bool = False
    save_models: str = "all"  # fold models kept: all, the best fold's per architecture, or none (no held-out scoring)
    test_top: int | None = None  # held-out scoring of the N best only (None: all)
    tta: bool = False  # held-out scoring also with test-time augmentation
    gradcam_archs: str = "winner"  # "winner", "none" or an --archs expression

    def __post_init__(self):
        if self.save_models not in SAVE_MODELS:
            raise UsageError(f"--save-models {self.save_models}: choose one of {', '.join(SAVE_MODELS)}.")
        if self.test_top is not None and self.test_top < 1:
            raise UsageError(f"--test-top {self.test_top}: give a positive whole number (or leave it out for all).")


@dataclass(frozen=True)
class TrackingSettings:
    """Mirrors of the run folder: TensorBoard event files, MLflow runs."""

    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard
    track: str | None = None  # "mlflow": log the run to MLflow
    tracking_uri: str | None = None  # else MLFLOW_TRACKING_URI, else MLflow's default local store
    track_optional: bool = False  # an unreachable tracking server: warn and go on
    track_models: str = "best"  # models logged to MLflow: the best fold's, all, or none
    experiment: str | None = None  # else MLFLOW_EXPERIMENT_NAME, else cnn-benchmark

    def __post_init__(self):
        if self.track not in (None, "mlflow"):
            raise UsageError(f"--track {self.track}: the tracker is mlflow.")
        if self.track_models not in TRACK_MODELS:
            raise UsageError(f"--track-models {self.track_models}: choose one of {', '.join(TRACK_MODELS)}.")


@dataclass(frozen=True)
class RunConfig:
    """Every setting of ``benchmark run``, by role; the CLI flags map one to one onto the groups' fields."""

    images: DataSettings
    output: OutputSettings
    cv: CVSettings = field(default_factory=CVSettings)
    training: TrainSettings = field(default_factory=TrainSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)

    @classmethod
    def from_flat(cls, **settings) -> RunConfig:
        """The settings by their flat names (``data=..., out=..., folds=5, epochs=10, ...``), each to its group;
        ``data`` and ``out`` are required."""
        names = setting_names()
        if unknown := sorted(set(settings) - set(names)):
            known = ", ".join(sorted(names))
            raise UsageError(f"benchmark.run: unknown setting(s) {', '.join(unknown)}; known: {known}.")
        groups = {group: {} for group in GROUPS}
        for name, value in settings.items():
            groups[names[name]][name] = value
        return cls(**{group: kind(**groups[group]) for group, kind in GROUPS.items()})

    @classmethod
    def from_args(cls, args, **overrides) -> RunConfig:
        """The settings parsed by the CLI, taken by their names (``overrides`` win)."""
        given = {name: getattr(args, name) for name in setting_names() if hasattr(args, name)}
        return cls.from_flat(**{**given, **overrides})

    @property
    def compile_cache(self) -> str:
        """JAX's compilation cache: ``xla/`` in the image cache folder."""
        return str(Path(self.images.cache_dir or default_cache_dir()) / "xla")

    def to_dict(self) -> dict:
        """The settings, flat (config.json's ``settings``)."""
        return {
            name: str(value) if isinstance(value, Path) else value
            for group in GROUPS
            for name, value in dataclasses.asdict(getattr(self, group)).items()
            if name in setting_names()
        }

    def result_settings(self) -> dict:
        d = self.to_dict()
        return {k: d[k] for k in RESULT_SETTINGS}


GROUPS = {
    "images": DataSettings,
    "cv": CVSettings,
    "training": TrainSettings,
    "tuning": TuningSettings,
    "execution": ExecutionSettings,
    "output": OutputSettings,
    "tracking": TrackingSettings,
}


def setting_names() -> dict[str, str]:
    """Each setting's flat name (a flag of ``benchmark run``) → its group in :class:`RunConfig`."""
    return {
        f.name: group
        for group, kind in GROUPS.items()
        for f in dataclasses.fields(kind)
        if not f.metadata.get("derived")
    }


def defaults() -> dict:
    """Each setting's default, by its flat name (``data`` and ``out`` have none)."""
    return {
        f.name: f.default
        for kind in GROUPS.values()
        for f in dataclasses.fields(kind)
        if f.default is not dataclasses.MISSING and not f.metadata.get("derived")
    }


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
    saved = {**defaults(), **saved}
    if isinstance(saved.get("augment"), bool):
        saved["augment"] = "light" if saved["augment"] else "none"
    return [f"{k} ({saved.get(k)!r} → {current[k]!r})" for k in current if saved.get(k) != current[k]]
