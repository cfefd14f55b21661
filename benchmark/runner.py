"""``benchmark run``: the stages in order, with resume and per-architecture failure isolation.

data → splits → training → metrics → comparison → output. Each finished
(architecture, fold) is saved before the next starts; a rerun with the same
``--out`` loads finished folds instead of retraining them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

import architectures
from benchmark import UsageError, backend
from benchmark.comparison import ArchOutcome, pairwise_comparison, rank, summarise
from benchmark.config import RunConfig, environment, settings_diff
from benchmark.data import discover, load_images, warn_skipped
from benchmark.files import read_json, write_json
from benchmark.gradcam import explain_heldout
from benchmark.heldout import predict_heldout
from benchmark.metrics import best_epoch, binary_metrics
from benchmark.output import RunFolder
from benchmark.splits import NestedStratifiedKFold, load_splits, save_splits
from benchmark.training import ArchitectureError, TrainSettings, train_fold


@dataclass
class Progress:
    """One line per (arch, fold) with an ETA for the whole run; live epoch updates on a terminal."""

    total: int
    quiet: bool = False
    stream: object = field(default_factory=lambda: sys.stderr)  # looked up when created, not at import
    done: int = 0
    trained_seconds: list[float] = field(default_factory=list)

    def _eta(self) -> str:
        if not self.trained_seconds:
            return "ETA after the first fold"
        left = sum(self.trained_seconds) / len(self.trained_seconds) * (self.total - self.done)
        return f"ETA {left / 60:.0f} min" if left >= 60 else f"ETA {left:.0f} s"

    def _prefix(self, arch: str, fold: int, folds: int) -> str:
        width = len(str(self.total))
        return f"[{self.done + 1:>{width}}/{self.total}] {arch} fold {fold + 1}/{folds}"

    def epoch(self, arch: str, fold: int, folds: int, epochs: int):
        def report(epoch: int, logs: dict) -> None:
            if not self.quiet and self.stream.isatty():
                val_loss = logs.get("val_loss", float("nan"))
                line = f"{self._prefix(arch, fold, folds)}  epoch {epoch}/{epochs}  val_loss {val_loss:.4f}"
                print(f"\r{line}  {self._eta()}\033[K", end="", file=self.stream, flush=True)

        return report

    def skip(self, n: int) -> None:
        """Count ``n`` (arch, fold) pairs that will not run (their architecture failed)."""
        self.done += n

    def fold_done(
        self, arch: str, fold: int, folds: int, record: dict | None, seconds: float | None, note: str = ""
    ) -> None:
        if seconds is not None:
            self.trained_seconds.append(seconds)
        prefix = self._prefix(arch, fold, folds)
        self.done += 1
        if self.quiet:
            return
        if record:
            m = record["metrics"]
            detail = (
                f"{record['epochs']} epochs (best {record['best_epoch']})  "
                f"f1 {m['f1']:.3f}  roc_auc {m['roc_auc']:.3f}  {record['fit_seconds']:.0f} s"
            )
        else:
            detail = ""
        line = f"{prefix}  {note}{detail}  {self._eta()}"
        print(f"\r{line}\033[K" if self.stream.isatty() else line, file=self.stream, flush=True)


def _log(config: RunConfig):
    return (lambda msg: None) if config.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _check_run_folder(folder: RunFolder, config: RunConfig) -> None:
    saved = read_json(folder.config)
    if saved is None or config.overwrite:
        return
    diff = settings_diff(saved.get("settings", {}), config.result_settings())
    if diff:
        raise UsageError(
            f"--out {folder.path} holds a run with other settings: {', '.join(diff)}. Resuming would mix "
            "results. Use another --out, the same settings, or --overwrite to start that folder afresh."
        )


def run(config: RunConfig) -> int:
    """Run the benchmark; return the exit status (0, or 1 when an architecture failed)."""
    for path in config.arch_modules:
        architectures.load_file(path)
    names = architectures.select(config.archs)
    _gradcam_names(config.gradcam_archs, names)  # a typo fails now, not after hours of training
    dataset = discover(config.data, config.positive)
    splitter = NestedStratifiedKFold(config.folds, config.val_fraction, config.seed)
    splitter.check(dataset.train.labels)  # fail before the slow decode
    folder = _prepare_folder(config)
    with folder.locked():
        if config.overwrite:
            folder.clear()
        return _benchmark(config, names, dataset, splitter, folder)


def _benchmark(config: RunConfig, names: list[str], dataset, splitter, folder: RunFolder) -> int:
    # Stage 1 — data, decoded once for the whole run.
    log = _log(config)
    images = load_images(dataset.root, dataset.train, config.image_size, config.channels, config.cache_dir, log=log)
    warn_skipped(images.skipped, config.strict)
    device = backend.setup(config.mixed_precision, config.deterministic, config.strategy)

    # Stage 2 — one set of folds for every architecture, reused on resume.
    folds = load_splits(folder.splits, images.paths) if folder.splits.exists() else None
    if folds is None:
        folds = splitter.split(images.labels)
        save_splits(folder.splits, folds, images.paths, config.folds, config.seed, config.val_fraction)
    run_info = _run_info(config, dataset, images, device)
    write_json(folder.config, {"settings": config.to_dict(), "run": run_info, "device": vars(device), **environment()})

    # Stages 3–7 — train and score every (architecture, fold), resuming finished ones; after each
    # architecture, compare and write results and reports, so a long run can be read early.
    started = time.perf_counter()
    progress = Progress(total=len(names) * len(folds), quiet=config.quiet)
    outcomes = []
    for name in names:
        outcomes.append(_cross_validate(name, folder, images, folds, config, device, progress))
        if name != names[-1]:  # the last one is published below, with the held-out predictions
            run_info["wall_seconds"] = time.perf_counter() - started  # of this invocation
            _publish(folder, run_info, outcomes, config)

    # Stage 6 — the held-out test split, scored once by the saved fold models, after all training
    # and ranking; Grad-CAM explains the chosen architectures on it.
    if dataset.test is not None and config.save_models:
        test = load_images(dataset.root, dataset.test, config.image_size, config.channels, config.cache_dir, log=log)
        warn_skipped(test.skipped, config.strict)
        entries = rank([summarise(o, config.patience) for o in outcomes], config.rank_by)
        ranked = [e["name"] for e in entries if e["status"] == "ok"]
        explained = _gradcam_names(config.gradcam_archs, ranked)
        scored = [n for n in ranked if n in ranked[: config.test_top] or n in explained]
        predict_heldout(folder, scored, len(folds), test, config.batch_size, log)
        explain_heldout(folder, explained, len(folds), test, log)
    run_info["wall_seconds"] = time.perf_counter() - started
    entries, table = _publish(folder, run_info, outcomes, config)
    print(table if config.quiet else f"\n{table}\n\nRun folder: {folder.path}\nReport: {folder.path / 'report.html'}")
    return 1 if any(e["status"] != "ok" for e in entries) else 0


def _gradcam_names(expression: str, ranked: list[str]) -> list[str]:
    """The architectures to explain with Grad-CAM: ``winner`` (the first of ``ranked``), ``none``, or an
    ``--archs`` expression (kept to those in ``ranked``)."""
    if expression == "none" or not ranked:
        return []
    if expression == "winner":
        return ranked[:1]
    return [n for n in architectures.select(expression) if n in ranked]


def _publish(folder: RunFolder, run_info: dict, outcomes: list[ArchOutcome], config: RunConfig):
    """Stages 5–7: rank, compare, write results.json and the tables, then the reports."""
    from benchmark.report import write_report  # matplotlib is imported only here

    entries = rank([summarise(o, config.patience) for o in outcomes], config.rank_by)
    records = [r for o in outcomes for r in o.folds]
    oof = pd.concat([o.predictions for o in outcomes if o.folds] or [pd.DataFrame(columns=OOF_COLUMNS)])
    comparison = pairwise_comparison(entries, records, config.rank_by)
    table = folder.write_results(run_info, entries, comparison, records, oof[OOF_COLUMNS])
    write_report(folder.path)
    return entries, table


OOF_COLUMNS = ["arch", "fold", "path", "label", "probability"]


def _prepare_folder(config: RunConfig) -> RunFolder:
    folder = RunFolder(Path(config.out))
    _check_run_folder(folder, config)
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"--out {folder.path}: cannot create the run folder ({err.strerror}). Choose a writable folder."
        ) from None
    return folder


def _run_info(config: RunConfig, dataset, images, device) -> dict:
    """The ``run`` part of results.json: what was run, on which data, where."""
    negative, positive = dataset.classes
    return {
        **{k: v for k, v in config.to_dict().items() if k in ("data", "folds", "seed", "image_size", "rank_by")},
        "classes": {"negative": negative, "positive": positive},
        "n_images": len(images.paths),
        "counts": _by_class(dataset.classes, images.labels),
        "test_counts": _by_class(dataset.classes, dataset.test.labels) if dataset.test else None,
        "skipped": images.skipped,
        "backend": device.backend,
        "devices": list(device.devices),
    }


def _by_class(classes: tuple[str, str], labels) -> dict[str, int]:
    return dict(zip(classes, np.bincount(labels, minlength=2).tolist(), strict=True))


def _cross_validate(name, folder, images, folds, config, device, progress) -> ArchOutcome:
    """Every fold of one architecture: loaded when saved, trained otherwise; stops at its first failure."""
    spec = architectures.get(name)
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_decay_epochs=config.lr_decay_epochs,
        patience=config.patience,
        augment=config.augment,
    )
    outcome = ArchOutcome(name, spec.description, spec.tags)
    predictions = []
    for i, fold in enumerate(folds):
        saved = folder.read_fold(name, i)
        if saved is not None:
            progress.fold_done(name, i, len(folds), saved[0], None, note="(saved) ")
        else:
            try:
                saved = _train_and_save(folder, spec, images, fold, i, settings, config, device, progress, len(folds))
            except OSError:
                raise  # disk full, unwritable folder: stop the run; finished folds stay saved
            except Exception as err:  # isolate a broken architecture; the others go on
                reason = str(err) if isinstance(err, ArchitectureError) else f"{type(err).__name__}: {err}"
                outcome.error = f"fold {i + 1}: {reason}"
                progress.fold_done(name, i, len(folds), None, None, note=f"FAILED: {reason}")
                progress.skip(len(folds) - i - 1)
                break
        record, history, fold_predictions = saved
        outcome.folds.append(record)
        outcome.histories.append(history)
        predictions.append(fold_predictions.assign(arch=name, fold=i))
    outcome.predictions = pd.concat(predictions, ignore_index=True) if predictions else None
    return outcome


def _train_and_save(folder, spec, images, fold, i, settings, config, device, progress, n_folds):
    report = progress.epoch(spec.name, i, n_folds, settings.epochs)
    model_path = folder.model_path(spec.name, i) if config.save_models else None
    started = time.perf_counter()
    try:
        result = train_fold(
            spec.build, images, fold, settings, config.seed + i, model_path, report, backend.model_scope(device)
        )
    except Exception as err:
        if not backend.is_out_of_memory(err) or settings.batch_size < 2:
            raise
        # Once, with half the batch: the fold's record keeps the batch size it trained with.
        smaller = dataclasses.replace(settings, batch_size=settings.batch_size // 2)
        _log(config)(
            f"{spec.name} fold {i + 1}: out of memory at batch size {settings.batch_size}; retrying once "
            f"with {smaller.batch_size}"
        )
        keras.backend.clear_session()  # free what the failed attempt held
        settings = smaller
        result = train_fold(
            spec.build, images, fold, settings, config.seed + i, model_path, report, backend.model_scope(device)
        )
    labels = images.labels[fold.score]
    record = {
        "arch": spec.name,
        "fold": i,
        "metrics": binary_metrics(labels, result.probabilities),
        "class_weight": {str(k): v for k, v in result.class_weight.items()},
        "initial_bias": result.initial_bias,
        "best_epoch": best_epoch(result.history["val_loss"]) + 1,
        "epochs": len(result.history["val_loss"]),
        "fit_seconds": result.fit_seconds,
        "predict_seconds": result.predict_seconds,
        "params": result.params,
        "seed": config.seed + i,
        "batch_size": settings.batch_size,
        "n_fit": len(fold.train),
        "n_val": len(fold.val),
        "n_score": len(fold.score),
    }
    predictions = pd.DataFrame(
        {
            "path": [images.paths[j] for j in fold.score],
            "label": labels.astype(int),
            "probability": result.probabilities,
        }
    )
    folder.write_fold(spec.name, i, record, result.history, predictions)
    progress.fold_done(spec.name, i, n_folds, record, time.perf_counter() - started)
    return record, result.history, predictions
