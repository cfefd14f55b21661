"""``benchmark run``: the stages in order, with resume and per-architecture failure isolation.

data → splits → training → metrics → comparison → output. Each finished
(architecture, fold) is saved before the next starts; a rerun with the same
``--out`` loads finished folds instead of retraining them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import architectures
from benchmark import UsageError, backend
from benchmark.comparison import ArchOutcome, pairwise_comparison, rank, summarise
from benchmark.config import RunConfig, environment, settings_diff
from benchmark.data import (
    default_cache_dir,
    discover,
    file_table,
    fingerprint,
    load_images,
    table_diff,
    warn_skipped,
)
from benchmark.execution import FoldTask, execute, setups
from benchmark.files import read_json, write_json
from benchmark.gradcam import explain_heldout
from benchmark.heldout import predict_heldout
from benchmark.output import RunFolder
from benchmark.splits import NestedStratifiedKFold, load_splits, save_splits
from benchmark.training import TrainSettings


@dataclass
class Progress:
    """One line per (arch, fold) with an ETA for the whole run; live epoch updates on a terminal."""

    total: int
    quiet: bool = False
    jobs: int = 1  # trainings running at once
    interrupted: threading.Event = field(default_factory=threading.Event)  # set by the Ctrl-C handler
    stream: object = field(default_factory=lambda: sys.stderr)  # looked up when created, not at import
    done: int = 0
    trained_seconds: list[float] = field(default_factory=list)

    def _eta(self) -> str:
        if not self.trained_seconds:
            return "ETA after the first fold"
        left = sum(self.trained_seconds) / len(self.trained_seconds) * (self.total - self.done) / self.jobs
        return f"ETA {left / 60:.0f} min" if left >= 60 else f"ETA {left:.0f} s"

    def _prefix(self, arch: str, fold: int, folds: int) -> str:
        width = len(str(self.total))
        return f"[{self.done + 1:>{width}}/{self.total}] {arch} fold {fold + 1}/{folds}"

    def epoch(self, arch: str, fold: int, folds: int, epochs: int):
        def report(epoch: int, logs: dict) -> None:
            self.check()
            if not self.quiet and self.stream.isatty():
                val_loss = logs.get("val_loss", float("nan"))
                line = f"{self._prefix(arch, fold, folds)}  epoch {epoch}/{epochs}  val_loss {val_loss:.4f}"
                print(f"\r{line}  {self._eta()}\033[K", end="", file=self.stream, flush=True)

        return report

    def check(self) -> None:
        """Raise KeyboardInterrupt after a Ctrl-C, even one whose own KeyboardInterrupt was swallowed
        (raised inside a finalizer, Python ignores it)."""
        if self.interrupted.is_set():
            raise KeyboardInterrupt

    def skip(self, n: int) -> None:
        """Count ``n`` (arch, fold) pairs that will not run (their architecture failed)."""
        self.done += n

    def fold_done(
        self, arch: str, fold: int, folds: int, record: dict | None, seconds: float | None, note: str = ""
    ) -> None:
        self.check()
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


def _check_run_folder(folder: RunFolder, config: RunConfig, files: list[tuple]) -> None:
    """Refuse to resume a run made with other settings or other data (compared by content)."""
    saved = read_json(folder.config)
    if saved is None or config.overwrite:
        return
    fix = "Resuming would mix results. Use another --out, the same settings, or --overwrite to start it afresh."
    diff = settings_diff(saved.get("settings", {}), config.result_settings())
    if diff:
        raise UsageError(f"--out {folder.path} holds a run with other settings: {', '.join(diff)}. {fix}")
    if "data" not in saved:  # written before fingerprints: compare the folder itself
        if Path(saved["settings"]["data"]).resolve() != Path(config.data).resolve():
            raise UsageError(f"--out {folder.path} holds a run on other data ({saved['settings']['data']}). {fix}")
        return
    if saved["data"]["fingerprint"] != fingerprint(files):
        changes = table_diff(folder.read_files() or [], files)
        counts = ", ".join(f"{len(v)} {k}" for k, v in changes.items())
        example = next((f" (e.g. {k}: {v[0]})" for k, v in changes.items() if v), "")
        raise UsageError(
            f"--out {folder.path} holds a run on other data than --data {config.data}: {counts} file(s){example}. {fix}"
        )


def run(config: RunConfig, interrupted: threading.Event | None = None) -> int:
    """Run the benchmark; return the exit status (0, or 1 when an architecture failed).

    ``interrupted`` is set by a Ctrl-C handler: the run stops at the next epoch or fold.
    """
    for path in config.arch_modules:
        architectures.load_file(path)
    names = architectures.select(config.archs)
    _gradcam_names(config.gradcam_archs, names)  # a typo fails now, not after hours of training
    dataset = discover(config.data, config.positive)
    splitter = NestedStratifiedKFold(config.folds, config.val_fraction, config.seed)
    splitter.check(dataset.train.labels)  # fail before the slow decode
    files = file_table(dataset)
    folder = _prepare_folder(config, files)
    with folder.locked():
        if config.overwrite:
            folder.clear()
        folder.write_files(files)
        data = {"path": str(config.data), "fingerprint": fingerprint(files), "files": len(files)}
        return _benchmark(config, names, dataset, splitter, folder, data, interrupted or threading.Event())


def _benchmark(config: RunConfig, names: list[str], dataset, splitter, folder: RunFolder, data, interrupted) -> int:
    # Stage 1 — data, decoded once for the whole run.
    log = _log(config)
    images = load_images(dataset.root, dataset.train, config.image_size, config.channels, config.cache_dir, log=log)
    warn_skipped(images.skipped, config.strict)
    device = backend.setup(config.mixed_precision, config.deterministic, config.strategy, compile_cache(config))

    # Stage 2 — one set of folds for every architecture, reused on resume.
    folds = load_splits(folder.splits, images.paths) if folder.splits.exists() else None
    if folds is None:
        folds = splitter.split(images.labels)
        save_splits(folder.splits, folds, images.paths, config.folds, config.seed, config.val_fraction)
    run_info = _run_info(config, dataset, images, device)
    config_json = {"settings": config.to_dict(), "data": data, "run": run_info, "device": vars(device)}
    write_json(folder.config, {**config_json, **environment()})

    # Stages 3–7 — train and score every (architecture, fold) not saved yet, here or in workers; when
    # an architecture is complete, compare and write results and reports, so a long run can be read early.
    started = time.perf_counter()
    progress = Progress(total=len(names) * len(folds), quiet=config.quiet, jobs=config.jobs, interrupted=interrupted)
    errors = _train(names, folds, images, folder, config, device, progress, run_info, started)
    outcomes = [_outcome(n, folder, len(folds), errors.get(n)) for n in names]

    # Stage 6 — the held-out test split, scored once by the saved fold models, after all training
    # and ranking; Grad-CAM explains the chosen architectures on it.
    if dataset.test is not None and config.save_models:
        test = load_images(dataset.root, dataset.test, config.image_size, config.channels, config.cache_dir, log=log)
        warn_skipped(test.skipped, config.strict)
        entries = rank([summarise(o, config.patience) for o in outcomes], config.rank_by)
        ranked = [e["name"] for e in entries if e["status"] == "ok"]
        explained = _gradcam_names(config.gradcam_archs, ranked)
        scored = [n for n in ranked if n in ranked[: config.test_top] or n in explained]
        predict_heldout(folder, scored, len(folds), test, config.batch_size, log, config.tta)
        explain_heldout(folder, explained, len(folds), test, log)
    run_info["wall_seconds"] = time.perf_counter() - started
    entries, table = _publish(folder, run_info, outcomes, config)
    print(table if config.quiet else f"\n{table}\n\nRun folder: {folder.path}\nReport: {folder.path / 'report.html'}")
    return 1 if any(e["status"] != "ok" for e in entries) else 0


def _train(names, folds, images, folder: RunFolder, config: RunConfig, device, progress, run_info, started) -> dict:
    """Train every (architecture, fold) not saved yet and save it; publish each architecture once complete.

    Returns the first error of each architecture that failed.
    """
    log = _log(config)
    tasks = _tasks(names, folds, folder, config, device, progress)
    pending = Counter(t.arch for t in tasks)
    errors: dict[str, str] = {}
    local = config.backend == "local" and config.jobs == 1
    outputs = execute(
        tasks,
        images,
        config.jobs,
        config.backend,
        config.scheduler,
        skip=lambda task: task.arch in errors,  # an architecture stops at its first failure
        report=lambda t: progress.epoch(t.arch, t.fold, len(folds), config.epochs),
        scope=backend.model_scope(device),
    )
    for out in outputs:
        arch, i = out.task.arch, out.task.fold
        for line in out.log:
            log(line)
        pending[arch] -= 1
        if out.error:
            errors.setdefault(arch, f"fold {i + 1}: {out.error}")
            progress.fold_done(arch, i, len(folds), None, None, note=f"FAILED: {out.error}")
            if local:  # its remaining folds will be skipped
                progress.skip(pending[arch])
                pending[arch] = 0
        else:
            folder.write_fold(arch, i, out.record, out.history, out.predictions, out.model)
            progress.fold_done(arch, i, len(folds), out.record, out.record["task_seconds"])
        if pending[arch] == 0 and sum(pending.values()):  # the last one: by the caller, with the held-out split
            run_info["wall_seconds"] = time.perf_counter() - started  # of this invocation
            done = [n for n in names if not pending[n]]
            _publish(folder, run_info, [_outcome(n, folder, len(folds), errors.get(n)) for n in done], config)
    return errors


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


def _prepare_folder(config: RunConfig, files: list[tuple]) -> RunFolder:
    folder = RunFolder(Path(config.out))
    _check_run_folder(folder, config, files)
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


def _tasks(names, folds, folder: RunFolder, config: RunConfig, device, progress) -> list[FoldTask]:
    """The (architecture, fold) pairs still to train, in order; saved ones are counted as done."""
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_decay_epochs=config.lr_decay_epochs,
        patience=config.patience,
        augment=config.augment,
        label_smoothing=config.label_smoothing,
    )
    each = setups(
        config.jobs,
        config.backend,
        config.mixed_precision,
        config.deterministic,
        config.strategy,
        device.gpus,
        compile_cache(config),
    )
    tasks = []
    for name in names:
        for i, fold in enumerate(folds):
            saved = folder.read_fold(name, i)
            if saved is not None:
                progress.fold_done(name, i, len(folds), saved[0], None, note="(saved) ")
                continue
            setup = each[len(tasks) % len(each)]
            tasks.append(
                FoldTask(name, i, fold, config.seed + i, settings, config.save_models, config.arch_modules, setup)
            )
    return tasks


def compile_cache(config: RunConfig) -> str:
    """JAX's compilation cache: ``xla/`` in the image cache folder."""
    return str(Path(config.cache_dir or default_cache_dir()) / "xla")


def _outcome(name: str, folder: RunFolder, n_folds: int, error: str | None) -> ArchOutcome:
    """One architecture's results, read back from its saved folds (in order, up to the first missing)."""
    spec = architectures.get(name)
    outcome = ArchOutcome(name, spec.description, spec.tags, error=error)
    predictions = []
    for i in range(n_folds):
        saved = folder.read_fold(name, i)
        if saved is None:
            break
        record, history, fold_predictions = saved
        outcome.folds.append(record)
        outcome.histories.append(history)
        predictions.append(fold_predictions.assign(arch=name, fold=i))
    if not error and len(outcome.folds) < n_folds:
        outcome.error = f"fold {len(outcome.folds) + 1}: not trained"
    outcome.predictions = pd.concat(predictions, ignore_index=True) if predictions else None
    return outcome
