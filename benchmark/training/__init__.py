"""Training: model assembly and one fold's fit (:mod:`.fit`), the Keras backend (:mod:`.backend`),
where folds run (:mod:`.execution`), a model's forward cost (:mod:`.flops`) and the nested search of
``--tune`` (:mod:`.tuning`).

This file holds the stage's settings, light to import (no Keras), each group checked where it is
defined: :class:`TrainSettings` (how a fold is trained), :class:`TuningSettings` (what each fold searches)
and :class:`ExecutionSettings` (where).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import UsageError, check_finite
from benchmark.lazy import attach

# Random ranges per level (fractions as Keras's preprocessing layers take them). No flips:
# a heart on the right is not a normal X-ray. "strong" doubles the geometry and adds
# brightness, for scanners and exposures the training split does not show.
AUGMENTATIONS = {
    "none": {},
    "light": {"rotation": 0.03, "zoom": 0.1, "translation": 0.05, "contrast": 0.1},
    "strong": {"rotation": 0.06, "zoom": 0.2, "translation": 0.1, "contrast": 0.3, "brightness": 0.2},
}

STRATEGIES = ("auto", "none", "mirrored")  # multi-GPU data parallelism (benchmark.training.backend)
BACKENDS = ("local", "dask")  # where the trainings run (benchmark.training.execution)

# The stage's face for the driver, imported on first use: Keras loads only when training does.
__getattr__, __all__ = attach(
    __name__,
    {
        "backend": ["DeviceInfo"],
        "execution": ["FoldOutput", "FoldTask", "auto_jobs", "execute", "setups"],
        "fit": ["ArchitectureError", "ClassCountError", "build_for", "load_fold_model"],
        "flops": ["forward_flops"],
        "tuning": ["choose_trial"],
    },
)
__all__ += ["AUGMENTATIONS", "BACKENDS", "STRATEGIES", "ExecutionSettings", "TrainSettings", "TuningSettings"]
DERIVED = {"derived": True}  # a field's metadata: set from the data, not a setting of `benchmark run`


@dataclass(frozen=True)
class TrainSettings:
    """How each fold is trained. The defaults (with the data's ``image_size``) are chosen so that the
    README's main job, 7 architectures × 5 folds on the 5,216 Kaggle training images, fits in 45 minutes
    on a 2-core CPU: see docs/results.md."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_decay_epochs: float = 10.0
    patience: int = 5
    augment: str = "light"  # a key of AUGMENTATIONS
    label_smoothing: float = 0.0
    weights: str = "none"  # for builders that take `weights` (Keras applications): none, imagenet or a folder
    # Pretrained only: epochs (of --epochs) that train the output layer alone before the whole network is
    # fine-tuned. Two are ~120 Adam steps on the Kaggle folds, enough for one Dense layer on pooled features
    # to leave its random start, and leave eight of the default ten to fine-tuning (README).
    warmup_epochs: int = 2
    n_classes: int = field(default=2, metadata=DERIVED)  # 2: one sigmoid unit; more: a softmax over the classes

    def __post_init__(self):
        check_finite(self)
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: give a positive whole number.")
        if self.lr <= 0 or self.lr_decay_epochs <= 0:
            raise UsageError("--lr and --lr-decay-epochs must be positive.")
        if self.augment not in AUGMENTATIONS:
            raise UsageError(f"--augment {self.augment}: choose one of {', '.join(AUGMENTATIONS)}.")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"--label-smoothing {self.label_smoothing}: give a number from 0 (off) up to below 1.")
        if self.warmup_epochs < 0:
            raise UsageError(f"--warmup-epochs {self.warmup_epochs}: give 0 (no warm-up) or a positive whole number.")
        if self.weights not in ("none", "imagenet") and not Path(self.weights).is_dir():
            raise UsageError(
                f"--weights {self.weights}: give none, imagenet (Keras's cache) or a folder holding Keras's weight "
                "files under their own names."
            )


@dataclass(frozen=True)
class TuningSettings:
    """The nested search of every outer fold (``--tune``, ``--trials``): the same trials for every architecture
    and fold, each judged by its inner-validation loss (:mod:`benchmark.training.tuning`)."""

    tune: str | None = None  # e.g. "lr=3e-4,1e-3,3e-3 batch_size=32,64" or "lr=log(1e-4,1e-2)"
    trials: int | None = None  # a seeded sample of this many trials (Optuna's RandomSampler); None: the grid

    def __post_init__(self):
        from benchmark.training.tuning import check_tuning

        check_tuning(self.tune, self.trials)

    def trial_settings(self, seed: int) -> list[dict]:
        """Every trial's settings (empty without --tune)."""
        from benchmark.training.tuning import parse_tune, trial_settings

        return trial_settings(parse_tune(self.tune), self.trials, seed) if self.tune else []


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how the trainings run: worker processes or a Dask cluster, the backend's numerics."""

    jobs: int | str = "auto"  # trainings at once in worker processes (local backend); "auto": execution.auto_jobs
    backend: str = "local"  # or "dask": the tasks go to the Dask cluster at `scheduler`
    scheduler: str | None = None
    deterministic: bool = False
    mixed_precision: bool = False
    strategy: str = "auto"
    raise_errors: bool = False  # re-raise the first failing fold's error, with its traceback (debugging)

    def __post_init__(self):
        if self.jobs != "auto" and not (isinstance(self.jobs, int) and self.jobs >= 1):
            raise UsageError(f"--jobs {self.jobs}: give auto or a positive whole number of worker processes.")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend}: choose one of {', '.join(BACKENDS)}.")
        if self.backend == "dask" and not self.scheduler:
            raise UsageError(
                "--backend dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786), the address of a running "
                "Dask scheduler whose workers can read --data and the image cache at the same paths."
            )
