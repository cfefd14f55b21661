"""The driver of ``benchmark run``: the stages in order, with resume and failure isolation.

data → splits → training (execution) → evaluation → run folder → reporting (see
``benchmark/__init__.py``). Each finished (architecture, fold) is saved before the
next starts; a rerun with the same ``--out`` loads finished folds instead of
retraining them. Everything published is read back from the saved folds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import architectures
from architectures._applications import weights_file
from benchmark import UsageError
from benchmark.config import DataSettings, RunConfig, environment, settings_diff
from benchmark.console import error_paragraph
from benchmark.data import (
    Dataset,
    Fold,
    Images,
    NestedStratifiedKFold,
    class_counts,
    discover,
    file_groups,
    file_table,
    fingerprint,
    load_images,
    load_splits,
    same_bytes,
    save_splits,
    straddling,
    table_diff,
    warn_skipped,
)
from benchmark.evaluation import (
    ArchOutcome,
    best_epoch,
    best_fold,
    cv_means,
    default_rank_by,
    fold_metrics,
    folds_table,
    heldout_scores,
    heldout_transfer,
    metric_names,
    oof_scores,
    pairwise_comparison,
    ranked,
    read_all,
)
from benchmark.inference import explain_heldout, model_output, predict_heldout
from benchmark.progress import Progress
from benchmark.report import leaderboard_md, leaderboard_text
from benchmark.store import (
    FORMAT,
    RESULTS_FORMAT,
    ArchResult,
    RunFolder,
    RunResults,
    Status,
    parse,
    predictions_table,
    probabilities_of,
    read_json,
    write_json,
)
from benchmark.tracking import Tracker, trackers
from benchmark.training import (
    ArchitectureError,
    ClassCountError,
    DeviceInfo,
    FoldOutput,
    FoldTask,
    auto_jobs,
    backend,
    build_for,
    choose_trial,
    execute,
    forward_flops,
    load_fold_model,
    setups,
)

OOF_COLUMNS = ["arch", "fold", "path", "label", "probability"]


@dataclass
class Run:
    """One invocation of ``benchmark run``: what the stages after the data share."""

    config: RunConfig
    folder: RunFolder
    names: list[str]  # the architectures, in --archs order
    dataset: Dataset
    images: Images  # the decoded cross-validation images
    test_images: Images | None  # the decoded held-out split: only held-out scoring reads its pixels
    folds: list[Fold]
    device: DeviceInfo
    info: dict  # the ``run`` part of results.json
    progress: Progress
    log: Callable[[str], None]
    trackers: list[Tracker] = field(default_factory=list)  # TensorBoard, MLflow
    started: float = field(default_factory=time.perf_counter)
    trials: list[dict] = field(default_factory=list)  # --tune: each trial's settings, the same for every fold
    costs: dict[str, float] = field(default_factory=dict)  # forward FLOPs per image, per architecture

    def outcomes(self, names: list[str], errors: dict[str, str]) -> list[ArchOutcome]:
        return [outcome(n, self.folder, len(self.folds), errors.get(n)) for n in names]


@dataclass
class Checked:
    """What ``run`` establishes before it writes anything: the candidates, the data, how it will be split."""

    config: RunConfig  # with the task's ranking metric resolved
    names: list[str]  # the architectures, in --archs order
    dataset: Dataset
    splitter: NestedStratifiedKFold
    group_of: dict[str, str] | None  # each training image's group (--groups, --groups-file), or None
    files: list[tuple]  # files.csv's rows: what a resumed run compares
    costs: dict[str, float]  # forward FLOPs per image, per architecture that builds


def check(config: RunConfig) -> Checked:
    """Every check that needs no training, before anything is written: a mistake fails in seconds."""
    cv, images = config.cv, config.images
    architectures.load_files(cv.arch_modules)
    architectures.check()  # a file that failed to import would silently shrink the run
    names = architectures.select(cv.archs)
    gradcam_names(config.output.gradcam_archs, names)  # a typo fails now, not after hours of training
    dataset = discover(images.data, images.positive, images.label_from)
    config = with_task(config, len(dataset.classes))
    splitter = NestedStratifiedKFold(cv.folds, cv.val_fraction, cv.seed, cv.repeats)
    groups = file_groups(dataset.train.paths, cv.groups, cv.groups_file, cv.ungrouped)
    splitter.check(dataset.train.labels, groups, dataset.classes)  # fail before the slow decode
    shape = (images.image_size, images.image_size, images.channels)
    costs = check_builds(names, shape, len(dataset.classes), config.training.weights)
    group_of = None if groups is None else dict(zip(dataset.train.paths, groups, strict=True))
    return Checked(config, names, dataset, splitter, group_of, file_table(dataset), costs)


def run(
    config: RunConfig, interrupted: threading.Event | None = None, callback=None, console=None, table: bool = True
) -> int:
    """Run the benchmark; return the exit status (0, or 1 when an architecture failed).

    ``interrupted`` is set by a Ctrl-C handler: the run stops at the next epoch or fold.
    ``callback`` receives each progress event as a dict (:class:`benchmark.progress.Progress`);
    ``console`` (:class:`benchmark.console.Console`) keeps the backends' chatter in ``run.log``.
    ``table``: print the leaderboard when done (the command line; the Python API returns it instead).
    """
    checked = check(config)
    config = checked.config
    folder = open_folder(config, checked.files, checked.dataset.root)
    with folder.locked():
        if config.output.overwrite:
            folder.clear()
        folder.mark(config.to_dict(), data_record(config, checked.files))
        if console is not None:
            console.keep_in(folder.run_log)
        followers = trackers(config, folder)  # an unreachable tracking server stops the run here
        ctx = start(checked, folder, interrupted or threading.Event())
        read = [ctx.images, *([ctx.test_images] if ctx.test_images else [])]
        folder.write_files(checked.files, {path: digest for images in read for path, digest in images.content.items()})
        ctx.progress.callback, ctx.trackers = callback, followers
        errors = cross_validate(ctx, on_complete=lambda done, errors: publish(ctx, ctx.outcomes(done, errors)))
        outcomes = ctx.outcomes(ctx.names, errors)
        score_heldout(ctx, outcomes)
        results, board = publish(ctx, outcomes)
        for tracker in ctx.trackers:
            tracker.finish()
        keep_models(folder, results.architectures, len(ctx.folds), ctx.config)
    if table:
        print(board if config.output.quiet else f"\n{board}\n\nRun folder: {folder.path}\nReport: {folder.report_html}")
    if not results.ok and (table or not config.output.quiet):
        print(error_paragraph(nothing_trained(results.architectures, folder)), file=sys.stderr)
    return results.status


def keep_models(folder: RunFolder, entries: list[ArchResult], n_folds: int, config: RunConfig) -> None:
    """What ``--save-models`` keeps once the held-out split is scored and the models are tracked: every
    fold's model, the best fold's of each architecture (by the ranking metric), or none."""
    if config.output.save_models == "all":
        return
    for e in entries:
        best = {best_fold(e, config.cv.rank_by)} if config.output.save_models == "best" and e.ok else set()
        folder.keep_models(e.name, n_folds, best)


def nothing_trained(entries: list[ArchResult], folder: RunFolder) -> str:
    """One paragraph for a run in which no architecture finished its folds."""
    reasons = "; ".join(f"{e.name}: {e.error}" for e in entries)
    return (
        f"every architecture failed, so nothing is ranked ({reasons}). The reasons are in {folder.report_md}. "
        "Fix them and rerun the same command: failed folds are trained again."
    )


def check_builds(
    names: list[str], input_shape: tuple[int, int, int], n_classes: int, weights: str = "none"
) -> dict[str, float]:
    """Build each architecture once, before anything is written, and return each one's forward FLOPs per
    image: the ETA's prior and the order of parallel tasks (none for one that fails to build: its folds
    will say why). A UsageError names the first architecture that cannot serve ``n_classes`` classes, or
    the first Keras application (``keras:``) that cannot take ``input_shape`` or whose weight file
    (``--weights``) is missing."""
    import keras

    costs = {}
    for name in names:
        application = name.startswith(architectures.APPLICATION_PREFIX)
        try:
            model = build_for(architectures.get(name).build, input_shape, n_classes, weights if application else "none")
            costs[name] = forward_flops(model)
        except ClassCountError as err:
            raise UsageError(f"--archs {name}: {err}") from None
        except ArchitectureError as err:
            if application:
                raise application_error(name, err, input_shape) from None
        finally:
            keras.backend.clear_session()
    return costs


def application_error(name: str, err: ArchitectureError, input_shape: tuple[int, int, int]) -> UsageError:
    """The paragraph for a Keras application that failed to build: its weight file missing, or its minimum
    size above ``input_shape``."""
    if isinstance(err.__cause__, UsageError):  # a weight file missing
        return err.__cause__
    least = re.search(r"at least (\d+)x", str(err))
    fix = f"give --image-size {least[1]} or more" if least else "give another --image-size or --channels"
    reason = str(err).removeprefix("build failed: ValueError: ")
    return UsageError(f"--archs {name}: {reason} (from --image-size {input_shape[0]}); {fix}.")


def weight_files(names: list[str], input_shape: tuple[int, int, int], weights: str) -> dict[str, dict]:
    """config.json's record of the pretrained weights each Keras application starts from: file and SHA-256."""
    if weights == "none":
        return {}
    records = {}
    for name in (n for n in names if n.startswith(architectures.APPLICATION_PREFIX)):
        application = name[len(architectures.APPLICATION_PREFIX) :]
        path = weights_file(application, weights, (*input_shape[:2], 3))
        records[name] = {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return records


def with_task(config: RunConfig, n_classes: int) -> RunConfig:
    """``config`` with ``rank_by`` resolved for a task of ``n_classes`` classes, checked against its metrics."""
    rank_by = config.cv.rank_by or default_rank_by(n_classes)
    if rank_by not in metric_names(n_classes):
        raise UsageError(
            f"--rank-by {rank_by}: not a metric of a {n_classes}-class task; choose one of "
            f"{', '.join(metric_names(n_classes))}."
        )
    return dataclasses.replace(config, cv=dataclasses.replace(config.cv, rank_by=rank_by))


def start(checked: Checked, folder: RunFolder, interrupted: threading.Event) -> Run:
    """Decode the images, set up the backend, make or reload the folds, write config.json."""
    config, dataset, images = checked.config, checked.dataset, checked.config.images
    execution, shape = config.execution, (images.image_size, images.image_size, images.channels)
    log = logger(config.output.quiet)
    decoded = decode(images, dataset, dataset.train, log)
    test = dataset.test and decode(images, dataset, dataset.test, log)  # decoded now for its files' digests
    device = backend.setup(execution.mixed_precision, execution.deterministic, execution.strategy, config.compile_cache)
    folds, groups = make_folds(config, folder, decoded, checked.splitter, checked.group_of)
    if execution.jobs == "auto":  # decided now that the devices and the images are known
        jobs = auto_jobs(device.gpus, len(decoded.paths), len(checked.names) * len(folds))
        config = dataclasses.replace(config, execution=dataclasses.replace(execution, jobs=jobs))
        execution = config.execution
    info = run_info(config, dataset, decoded, device, groups)
    weights = weight_files(checked.names, shape, config.training.weights)
    write_json(folder.config, {"format": FORMAT, "settings": config.to_dict(),
                               "data": data_record(config, checked.files), "weights": weights, "run": info,
                               "device": vars(device), **environment()})  # fmt: skip
    plan = [name for name in checked.names for _ in folds]
    progress = Progress(plan, config.output.quiet, config.cv.rank_by, jobs=execution.jobs, interrupted=interrupted,
                        costs=checked.costs)  # fmt: skip
    trials = config.tuning.trial_settings(config.cv.seed)
    return Run(config, folder, checked.names, dataset, decoded, test, folds, device, info, progress, log, trials=trials,
               costs=checked.costs)  # fmt: skip


def decode(settings: DataSettings, dataset: Dataset, split, log: Callable[[str], None]) -> Images:
    """A split of ``dataset`` decoded (or read from the cache) at the run's size; unreadable files said."""
    what = "test images" if split is dataset.test else "training images"
    images = load_images(dataset.root, split, settings.image_size, settings.channels, settings.cache_dir, log=log,
                         what=what)  # fmt: skip
    warn_skipped(images.skipped, settings.strict)
    return images


def make_folds(config: RunConfig, folder: RunFolder, images: Images, splitter, group_of: dict | None):
    """(folds, each image's group or None): one set of folds for every architecture, made once and
    reused on resume; no group straddles the parts of a fold."""
    groups = None if group_of is None else np.array([group_of[p] for p in images.paths], dtype=object)
    cv = config.cv
    if folder.splits.exists():
        folds = load_splits(folder.splits, images.paths, groups)
        if folds is None:
            raise UsageError(
                f"--out {folder.path}: its splits.json does not match the images and groups of this run (a groups "
                "file or a file changed). Use another --out, or --overwrite to start it afresh."
            )
    else:
        folds = splitter.split(images.labels, groups)
        save_splits(folder.splits, folds, images.paths, cv.folds, cv.seed, cv.val_fraction, groups, cv.repeats)
    if problem := straddling(folds, groups):
        raise UsageError(f"{folder.splits}: {problem}. Images of one group must stay in one part of each fold.")
    return folds, groups


def logger(quiet: bool) -> Callable[[str], None]:
    """Where progress messages go: the ``benchmark`` logger, and standard error unless -q."""

    def log(message: str) -> None:
        LOG.info(message)
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return log


LOG = logging.getLogger("benchmark")


def cross_validate(ctx: Run, on_complete: Callable[[list[str], dict[str, str]], None]) -> dict[str, str]:
    """Train and save every (architecture, fold) not saved yet; return each failed architecture's first error.

    ``on_complete(done, errors)`` is called when an architecture finishes while others are still
    training, so a long run can be read early.
    """
    tasks = fold_tasks(ctx)
    pending = Counter(t.arch for t in tasks)
    trials_left = Counter((t.arch, t.fold) for t in tasks if t.trial is not None)
    unsettled = {(t.arch, t.fold) for t in tasks}  # folds (not trials) still to save: what the progress counts
    errors: dict[str, str] = {}
    execution = ctx.config.execution
    local = execution.backend == "local" and execution.jobs == 1

    def settle(out: FoldOutput) -> None:
        """Save a finished fold (or its failure) and say so."""
        arch, i = out.task.arch, out.task.fold
        unsettled.discard((arch, i))
        if out.error:
            ctx.folder.write_error(arch, i, out.traceback)
            where = f" (traceback: {ctx.folder.error(arch, i)})"
            errors.setdefault(arch, f"fold {i + 1}: {out.error}{where}")
            ctx.progress.fold_done(arch, i, len(ctx.folds), None, None, note=f"FAILED: {out.error}{where}")
            if local:  # its remaining folds will be skipped
                ctx.progress.skip(arch, sum(a == arch for a, _ in unsettled))
                pending[arch] = 0
            return
        out.record = scored(out.record, out.history, out.predictions)
        ctx.folder.write_fold(arch, i, out.record, out.history, out.predictions, out.model)
        for tracker in ctx.trackers:
            tracker.fold(arch, i, out.record, out.history)
        ctx.progress.fold_done(arch, i, len(ctx.folds), out.record, out.record["task_seconds"])

    for arch, i in tuned_ready(ctx, trials_left):  # every trial saved before a kill: choose now
        settle(finish_tuned(ctx, arch, i))
    outputs = execute(
        tasks,
        ctx.images,
        execution.jobs,
        execution.backend,
        execution.scheduler,
        skip=lambda task: task.arch in errors,  # an architecture stops at its first failure
        report=lambda t: starting(ctx, t),
        scope=backend.model_scope(ctx.device),
    )
    for out in outputs:
        arch, i, trial = out.task.arch, out.task.fold, out.task.trial
        for line in out.log:
            ctx.log(line)
        pending[arch] -= 1
        if trial is None:
            settle(out)
        else:  # a trial: saved, or its failure kept; the fold is settled once its last trial is in
            if out.error:
                ctx.folder.write_trial_error(arch, i, trial, out.traceback)
                ctx.log(f"{arch} fold {i + 1} trial {trial + 1}: FAILED: {out.error}")
            else:
                saw = {"fit": f"splits.json folds[{i}].train", "inner validation": f"splits.json folds[{i}].val"}
                values = {k: getattr(out.task.settings, k) for k in ctx.trials[trial]}  # what it trained with
                record = {**out.record, "trial": trial, "values": values, "saw": saw}
                ctx.folder.write_trial(arch, i, trial, record, out.history, out.model)
            trials_left[(arch, i)] -= 1
            if not trials_left[(arch, i)]:
                settle(finish_tuned(ctx, arch, i))
        if pending[arch] == 0 and sum(pending.values()):  # the last one is published by the caller
            on_complete([n for n in ctx.names if not pending[n]], errors)
    return errors


def starting(ctx: Run, task: FoldTask):
    """A task starts in this process: the trackers hear of its fold; its per-epoch progress callback."""
    for tracker in ctx.trackers:
        tracker.started(task.arch, task.fold)
    return ctx.progress.epoch(task.arch, task.fold, len(ctx.folds), ctx.config.training.epochs)


def scored(record: dict, history: dict, predictions: pd.DataFrame) -> dict:
    """A trained fold's record with its scores on the score fold and its best epoch (1-based)."""
    labels, probabilities = predictions["label"].to_numpy(), probabilities_of(predictions)
    return {**record, "metrics": fold_metrics(labels, probabilities), "best_epoch": best_epoch(history["val_loss"]) + 1}


def fold_tasks(ctx: Run) -> list[FoldTask]:
    """The (architecture, fold) pairs still to train, in order, or with --tune each fold's trials still to
    train; saved ones are counted as done."""
    config = ctx.config
    settings = dataclasses.replace(config.training, n_classes=len(ctx.dataset.classes))
    each = setups(config.execution, ctx.device.gpus, config.compile_cache)
    tasks = []
    for name in ctx.names:
        for i, fold in enumerate(ctx.folds):
            saved = ctx.folder.read_fold(name, i)
            if saved is not None:
                for tracker in ctx.trackers:  # a tracker added on resume catches up; none logs a fold twice
                    tracker.fold(name, i, saved[0], saved[1])
                ctx.progress.fold_done(name, i, len(ctx.folds), saved[0], None, note="(saved) ")
                continue
            task = FoldTask(
                arch=name,
                fold=i,
                split=fold,
                seed=config.cv.seed + i,  # every trial of the fold too: trials differ by their settings alone
                settings=settings,
                save_model=config.output.save_models != "none",
                arch_modules=config.cv.arch_modules,
                setup=each[len(tasks) % len(each)],
                raise_errors=config.execution.raise_errors,
            )
            if not ctx.trials:
                tasks.append(task)
                continue
            trial_split = Fold(fold.train, fold.val, np.array([], dtype=np.int64))  # no trial sees the score fold
            for t, values in enumerate(ctx.trials):
                if ctx.folder.read_trial(name, i, t) is None:
                    tasks.append(dataclasses.replace(task, split=trial_split, settings=dataclasses.replace(
                        settings, **values), save_model=True, trial=t, setup=each[len(tasks) % len(each)]))  # fmt: skip
    if config.execution.jobs > 1:  # the longest first, so the last to finish are short (one architecture's in order)
        tasks.sort(key=lambda task: -ctx.costs.get(task.arch, 0.0))
    return tasks


def tuned_ready(ctx: Run, trials_left: Counter) -> list[tuple[str, int]]:
    """The tuned folds not finished whose every trial is saved (a run killed between its last trial and the
    fold's choice)."""
    if not ctx.trials:
        return []
    return [(name, i) for name in ctx.names for i in range(len(ctx.folds))
            if not trials_left[(name, i)] and ctx.folder.read_fold(name, i) is None]  # fmt: skip


def finish_tuned(ctx: Run, arch: str, i: int) -> FoldOutput:
    """A tuned fold from its saved trials: the trial with the lowest inner-validation loss is kept, its model
    becomes the fold model and predicts the score fold, once (the only time any model of this fold sees it)."""
    fold, folder = ctx.folds[i], ctx.folder
    task = FoldTask(arch, i, fold, ctx.config.cv.seed + i, ctx.config.training)
    saved = {t: folder.read_trial(arch, i, t) for t in range(len(ctx.trials))}
    done = {t: s for t, s in saved.items() if s is not None}
    if not done:
        error = folder.trial_file(arch, i, 0, "error.txt")
        return FoldOutput(task, error=f"every trial failed (the first's traceback: {error})", traceback=None)
    losses = {t: float(np.nanmin(history["val_loss"])) for t, (_, history) in done.items()}
    chosen = choose_trial(losses)
    record, history = done[chosen]
    model_path = folder.trial_file(arch, i, chosen, "model.keras")
    start = time.perf_counter()
    probabilities = model_output(load_fold_model(model_path), ctx.images.pixels[fold.score], record["batch_size"])
    predictions = predictions_table([ctx.images.paths[j] for j in fold.score], ctx.images.labels[fold.score],
                                    probabilities)  # fmt: skip
    tuning = {
        "chosen": chosen,
        "values": ctx.trials[chosen],
        "trials": ctx.trials,
        "inner_loss": [losses.get(t) for t in range(len(ctx.trials))],  # None: a failed trial
        "epochs": [s[0]["epochs"] if s else None for s in saved.values()],
        "fit_seconds": [s[0]["fit_seconds"] if s else None for s in saved.values()],
    }
    kept = {k: v for k, v in record.items() if k not in ("trial", "values", "saw")}  # the fold's, not a trial's
    task_seconds = sum(s[0]["task_seconds"] for s in done.values())  # the fold's whole cost: every trial
    record = {**kept, "n_score": len(fold.score), "predict_seconds": time.perf_counter() - start,
              "task_seconds": task_seconds, "tuning": tuning}  # fmt: skip
    model = model_path.read_bytes() if ctx.config.output.save_models != "none" else None
    for t in done:  # the chosen one lives on as the fold model; the trials keep their records
        folder.trial_file(arch, i, t, "model.keras").unlink(missing_ok=True)
    return FoldOutput(task, record, history, predictions, model)


def score_heldout(ctx: Run, outcomes: list[ArchOutcome]) -> None:
    """The held-out test split, scored once by the saved fold models after all training and ranking;
    Grad-CAM explains the chosen architectures on it."""
    config, output, test = ctx.config, ctx.config.output, ctx.test_images
    if test is None or output.save_models == "none":
        return
    ranking = ranked(outcomes, config.cv.rank_by, config.training.patience)
    names = [e["name"] for e in ranking if e["status"] == Status.OK]
    explained = gradcam_names(output.gradcam_archs, names)
    scored = [n for n in names if n in names[: output.test_top] or n in explained]
    predict_heldout(ctx.folder, scored, len(ctx.folds), test, config.training.batch_size, ctx.log, output.tta)
    explain_heldout(ctx.folder, explained, len(ctx.folds), test, ctx.log, ctx.dataset.classes)


def publish(ctx: Run, outcomes: list[ArchOutcome]) -> tuple[RunResults, str]:
    """Rank and compare, write results.json, the tables and the reports; return (the results, as read back
    by the report, the trackers and ``benchmark.load``; the leaderboard)."""
    from benchmark.report import write_report  # matplotlib is imported only here

    config = ctx.config
    ctx.info["wall_seconds"] = time.perf_counter() - ctx.started  # of this invocation
    entries = ranked(outcomes, config.cv.rank_by, config.training.patience)
    records = [r for o in outcomes for r in o.folds]
    oof = pd.concat([o.predictions for o in outcomes if o.folds] or [pd.DataFrame(columns=OOF_COLUMNS)])
    oof = oof[[*OOF_COLUMNS[:4], *(c for c in oof.columns if c.startswith("probability"))]]
    comparison = pairwise_comparison(entries, records, config.cv.rank_by, config.cv.repeats)
    heldout = read_all(ctx.folder, entries, len(ctx.folds))  # the test predictions, read once
    transfer = heldout_transfer(heldout, cv_means(entries, config.cv.rank_by), config.cv.rank_by)
    ok = [e["name"] for e in entries if e["status"] == Status.OK]
    results = {
        "format": RESULTS_FORMAT,
        "run": ctx.info,
        "architectures": entries,
        "comparison": comparison,
        "transfer": transfer,
        "heldout": heldout_scores(heldout, oof),  # the test-split tables, computed here; the report formats them
        "oof_scores": oof_scores(oof, ok),
    }
    typed = parse(results, ctx.folder, read_json(ctx.folder.config), folds_table(records), oof)
    text = leaderboard_text(typed)
    ctx.folder.write_results(results, typed.folds, oof, leaderboard_md(typed.info, text))
    write_report(typed)
    for tracker in ctx.trackers:
        tracker.published(typed)
    return typed, text


def gradcam_names(expression: str, names: list[str]) -> list[str]:
    """The architectures to explain with Grad-CAM: ``winner`` (the first of ``names``, ranked), ``none``,
    or an ``--archs`` expression (kept to those in ``names``)."""
    if expression == "none" or not names:
        return []
    if expression == "winner":
        return names[:1]
    return [n for n in architectures.select(expression) if n in names]


def data_record(config: RunConfig, files: list[tuple]) -> dict:
    """config.json's ``data``: the folder as given, and its content's fingerprint (what resume compares)."""
    return {"path": str(config.images.data), "fingerprint": fingerprint(files), "files": len(files)}


def open_folder(config: RunConfig, files: list[tuple], root: Path) -> RunFolder:
    """The run folder, created. Refused before anything is written: a folder inside ``--data`` (or
    holding it), a non-empty folder that is not a run folder, and a run with other settings or data."""
    folder = RunFolder(Path(config.output.out))
    check_out(folder, config)
    check_resume(folder, config, files, root)
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"--out {folder.path}: cannot create the run folder ({err.strerror}). Choose a writable folder."
        ) from None
    return folder


def check_out(folder: RunFolder, config: RunConfig) -> None:
    """Refuse an ``--out`` (or ``--cache-dir``) where the tool's files could mix with or replace the user's."""
    out, data = folder.path.resolve(), Path(config.images.data).resolve()  # symlinks followed
    cache = config.images.cache_dir and Path(config.images.cache_dir).resolve()
    for flag, path in (("--out", out), ("--cache-dir", cache)):
        if path and (path == data or data in path.parents):
            raise UsageError(
                f"{flag} {path} is {'--data itself' if path == data else f'inside --data {data}'}. The tool never "
                "writes into the data: its files would be deleted by --overwrite or become images or a class of the "
                f"next run there. Choose a {flag} outside --data."
            )
    if out in data.parents:
        raise UsageError(
            f"--data {data} is inside --out {out}. A run folder must not hold the data (--overwrite clears a run "
            "folder). Choose an --out beside the data, e.g. reports/NAME."
        )
    if folder.path.exists() and not folder.path.is_dir():
        raise UsageError(f"--out {folder.path} is a file. Give a new folder, or a run folder to resume.")
    if not folder.path.is_dir() or folder.is_run_folder():
        return
    if held := sorted(p.name for p in folder.path.iterdir() if not p.name.startswith(".lock")):
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        overwrite = "--overwrite removes only a run folder's own files, so it refuses this one: "
        refused = overwrite if config.output.overwrite else ""
        raise UsageError(
            f"--out {folder.path} is not empty and is not a run folder (it has no config.json of `benchmark run`): "
            f"it holds {shown}. {refused}none of them is touched. Choose a new or empty folder, e.g. "
            "--out reports/NAME."
        )


def check_resume(folder: RunFolder, config: RunConfig, files: list[tuple], root: Path) -> None:
    """Refuse to resume a run made with other settings or other data (compared by content: files whose
    modification time alone changed are compared by the digest of their bytes, under the data's ``root``)."""
    saved = read_json(folder.config)
    if saved is None or config.output.overwrite:
        return
    fix = "Resuming would mix results. Use another --out, the same settings, or --overwrite to start it afresh."
    diff = settings_diff(saved.get("settings", {}), config.result_settings())
    if diff:
        raise UsageError(f"--out {folder.path} holds a run with other settings: {', '.join(diff)}. {fix}")
    if "data" not in saved:  # written before fingerprints: compare the folder itself
        if Path(saved["settings"]["data"]).resolve() != Path(config.images.data).resolve():
            raise UsageError(f"--out {folder.path} holds a run on other data ({saved['settings']['data']}). {fix}")
        return
    saved_files = folder.read_files()
    saved_table = saved_files and [row[:-1] for row in saved_files]  # without the digests
    if saved["data"]["fingerprint"] == fingerprint(files) or saved_table == files:
        return
    changes = table_diff(saved_table or [], files)
    if saved_files:  # a file whose time alone changed (same class and size) is compared by its bytes
        before, now = {r[0]: r[1:3] for r in saved_table}, {r[0]: r[1:3] for r in files}
        same = set(same_bytes(root, saved_files, [p for p in changes["changed"] if before[p] == now[p]]))
        changes["changed"] = [p for p in changes["changed"] if p not in same]
        if not any(changes.values()):
            return  # a copy that kept the bytes, not the modification times
    counts = ", ".join(f"{len(v)} {k}" for k, v in changes.items()) if saved_files is not None else "unknown"
    example = next((f" (e.g. {k}: {v[0]})" for k, v in changes.items() if v), "")
    raise UsageError(
        f"--out {folder.path} holds a run on other data than --data {config.images.data}: {counts} file(s){example}. "
        + fix
    )


def run_info(config: RunConfig, dataset: Dataset, images: Images, device: DeviceInfo, groups) -> dict:
    """The ``run`` part of results.json: what was run, on which data, where."""
    classes = dataset.classes
    return {
        **{k: v for k, v in config.to_dict().items() if k in ("data", "folds", "seed", "image_size", "rank_by")},
        "repeats": config.cv.repeats,
        "splits": splits_in_words(config, images, groups, classes),
        "classes": {"negative": classes[0], "positive": classes[1]} if len(classes) == 2 else {"all": list(classes)},
        "class_names": list(classes),
        "n_images": len(images.paths),
        "counts": class_counts(dataset.classes, images.labels),
        "test_counts": class_counts(dataset.classes, dataset.test.labels) if dataset.test else None,
        "skipped": images.skipped,
        "backend": device.backend,
        "devices": list(device.devices),
    }


def splits_in_words(config: RunConfig, images: Images, groups, classes) -> str:
    """How the folds were made, for the report."""
    cv = config.cv
    how = f"stratified {cv.folds}-fold" + (f", repeated {cv.repeats} times" if cv.repeats > 1 else "")
    if groups is None:
        return f"{how}, image by image"
    source = f"--groups {cv.groups}" if cv.groups else f"--groups-file {cv.groups_file}"
    counts = ", ".join(f"{c} {len(set(groups[images.labels == i]))}" for i, c in enumerate(classes))
    return f"{how}, grouped ({source}; groups per class: {counts}); no group straddles fit, validation and score"


def outcome(name: str, folder: RunFolder, n_folds: int, error: str | None) -> ArchOutcome:
    """One architecture's results, read back from its saved folds (in order, up to the first missing)."""
    spec = architectures.get(name)
    result = ArchOutcome(name, spec.description, spec.tags, error=error)
    predictions = []
    for i in range(n_folds):
        saved = folder.read_fold(name, i)
        if saved is None:
            break
        record, history, fold_predictions = saved
        result.folds.append(record)
        result.histories.append(history)
        predictions.append(fold_predictions.assign(arch=name, fold=i))
    if not error and len(result.folds) < n_folds:
        result.error = f"fold {len(result.folds) + 1}: not trained"
    result.predictions = pd.concat(predictions, ignore_index=True) if predictions else None
    return result
