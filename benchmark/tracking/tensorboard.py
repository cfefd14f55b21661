"""Tracking in TensorBoard (``--tensorboard``): the run folder's numbers as event files.

``RUN/tensorboard/<arch>/fold-<n>/`` holds each fold's per-epoch curves and final metrics (with ``--tune``,
``trial-<t>/`` inside it each trial's curves and an HParams session: its settings and inner-validation
loss; folds and trials numbered from 1, as on the console, in the report and in MLflow),
``RUN/tensorboard/<arch>/hparams/`` the architecture's HParams session (the settings, and the mean
of every metric), so ``tensorboard --logdir RUN/tensorboard`` shows every fold side by side.
Written with tensorboardX, which needs no TensorFlow.
"""

from __future__ import annotations

import os
import shutil

from benchmark import UsageError
from benchmark.store.results import RunResults
from benchmark.store.runfolder import RunFolder, safe_name
from benchmark.tracking import scalars

HPARAMS = ("folds", "repeats", "seed", "image_size", "channels", "epochs", "patience", "batch_size", "lr",
           "lr_decay_epochs", "augment", "label_smoothing", "groups")  # fmt: skip


class TensorBoard:
    def __init__(self, folder: RunFolder, settings: dict):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise UsageError(
                "--tensorboard writes its event files with tensorboardX: pip install -e '.[tensorboard]' (or "
                "pip install tensorboardX), then run again."
            ) from None
        self.writer = SummaryWriter
        self.folder, self.root = folder, folder.tensorboard
        self.settings = settings

    def started(self, arch: str, fold: int) -> None:
        pass  # event files are written when the fold is saved

    def fold(self, arch: str, fold: int, record: dict, history: dict) -> None:
        target = self.root / safe_name(arch) / f"fold-{fold + 1}"
        if target.exists():
            return  # written by an earlier invocation
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with self.writer(str(tmp)) as w:
            for key, values in history.items():
                for epoch, value in enumerate(values, start=1):
                    w.add_scalar(f"epoch/{key}", value, epoch)
            for metric, value in scalars(record["metrics"]).items():
                w.add_scalar(f"fold/{metric}", value, record["epochs"])
        if "tuning" in record:
            self._trials(arch, fold, record["tuning"], tmp)
        os.replace(tmp, target)

    def _trials(self, arch: str, fold: int, tuning: dict, folder) -> None:
        """Each trial of a tuned fold: its curves and an HParams session (its settings, its inner loss)."""
        from tensorboardX.summary import hparams

        for t, loss in enumerate(tuning["inner_loss"]):
            saved = self.folder.read_trial(arch, fold, t)
            if saved is None:  # a failed trial
                continue
            record, history = saved
            with self.writer(str(folder / f"trial-{t + 1}")) as w:
                for summary in hparams({k: _plain(v) for k, v in record["values"].items()}, {"inner_loss": loss}):
                    w.file_writer.add_summary(summary)
                w.add_scalar("inner_loss", loss)
                for key, values in history.items():
                    for epoch, value in enumerate(values, start=1):
                        w.add_scalar(f"epoch/{key}", value, epoch)

    def published(self, results: RunResults) -> None:
        from tensorboardX.summary import hparams

        for entry in (e for e in results.architectures if e.scored):
            target = self.root / safe_name(entry.name) / "hparams"
            tmp = target.with_name(".hparams.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            settings = {k: v for k, v in self.settings.items() if k in HPARAMS and v is not None}
            params = {"architecture": entry.name, "params": entry.params, **settings}
            metrics = {f"cv/{m}": v.mean for m, v in entry.metrics.items()}
            with self.writer(str(tmp)) as w:
                for summary in hparams({k: _plain(v) for k, v in params.items()}, metrics):
                    w.file_writer.add_summary(summary)
                for metric, value in metrics.items():
                    w.add_scalar(metric, value)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)

    def finish(self) -> None:
        """Nothing to close: every event file is written whole (see :meth:`published`)."""


def _plain(value):
    return value if isinstance(value, bool | int | float | str) else str(value)
