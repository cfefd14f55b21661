"""After the verdict: the chosen architecture of a run at work on new images (``benchmark predict``), every
architecture scored on another labelled collection (``benchmark evaluate``: external validation), the chosen
architecture trained once more on every training image (``benchmark refit``), and the chosen model as one
deployable file (``benchmark export``).

The fold ensemble is the mean of the architecture's saved fold models, as the report's held-out section
scores it (``--model folds``); the refit is one model (``--model refit``). The images are decoded by the run's
own code at the run's size and channels (:func:`benchmark.data.images.load_images`) and predicted by the same
call as the held-out split (:func:`benchmark.inference.predict.model_output`). Two classes are decided at a
threshold chosen on the out-of-fold predictions (never on new images); more classes by the most probable one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import UsageError
from benchmark.data.images import (
    KAGGLE_HINT,
    ImageSet,
    class_counts,
    discover,
    fingerprint,
    listing,
    load_images,
    unlabelled,
)
from benchmark.errors import counted
from benchmark.evaluation import heldout_scores, heldout_transfer, read, refit_against_folds
from benchmark.inference.predict import (
    fold_ensemble,
    model_outputs,
    predict_heldout,
    prediction_table,
    read_heldout,
    saved_folds,
    site_predictions,
)
from benchmark.store import RunFolder, RunResults, read_json, write_json
from benchmark.store.files import write_bytes, write_csv, write_text
from benchmark.store.runfolder import history_table, probabilities_of, probability_columns, safe_name

THRESHOLDS = {"f1": "max F1", "youden": "Youden", "0.5": "0.5"}  # --threshold → the rule's name in results.json
# Youden's J (the highest sensitivity + specificity) does not depend on the share of positives, which at
# another site differs from the training split's; the highest F1 does.
DEFAULT_THRESHOLD = "youden"
MODELS = ("folds", "refit")  # --model: the fold ensemble, or the refit on every training image


@dataclass
class Chosen:
    """One architecture of a finished run, the fold models it has saved, and which model predicts: the fold
    ensemble (``folds``) or the refit (``refit``)."""

    results: RunResults
    name: str
    folds: list[int]
    model: str = "folds"

    @property
    def folder(self) -> RunFolder:
        return self.results.folder

    @property
    def models(self) -> dict[str, Path]:
        """The saved models whose mean predicts, by member name: each fold model, or the refit alone."""
        if self.model == "refit":
            return {"refit": self.folder.refit_file(self.name, "model.keras")}
        return {f"fold_{i}": self.folder.model_path(self.name, i) for i in self.folds}

    def in_words(self) -> str:
        if self.model == "refit":
            return f"the model refitted on all {self.results.refits[self.name]['n_images']} training images"
        return f"the mean of {len(self.folds)} fold model(s)"

    def decode(self, paths: ImageSet, log: Callable[[str], None]):
        return decode_as_run(self.results, Path("."), paths, log)

    def outputs(self, pixels: np.ndarray) -> np.ndarray:
        """Each model's probabilities: (models, n) or (models, n, K)."""
        return model_outputs(list(self.models.values()), pixels, self.results.batch_size)

    def saved_test(self) -> tuple[list[str], np.ndarray] | None:
        """(paths relative to --data, probabilities) the run saved for its test split with these models, or None."""
        if self.model == "refit":
            paths = [self.folder.refit_file(self.name, "test_predictions.csv")]
        else:
            paths = [self.folder.test_predictions(self.name, i) for i in self.folds]
        if not all(p.exists() for p in paths):
            return None
        runs = [pd.read_csv(p) for p in paths]
        return list(runs[0].path), fold_ensemble(runs)


def decode_as_run(results: RunResults, root: Path, images: ImageSet, log: Callable[[str], None], what="images"):
    """``images`` (paths under ``root``) decoded as the run decoded its own: its size and channels, its cache;
    ``what`` names them in the progress line."""
    settings = results.settings
    size, channels, cache = settings["image_size"], settings["channels"], settings.get("cache_dir")
    return load_images(root, images, size, channels, cache and Path(cache), log=log, what=what)


def choose(run_dir: str | Path, arch: str = "winner", models: bool = True, model: str = "folds") -> Chosen:
    """The run's architecture ``arch`` (``winner``: the first in rank) with its saved fold models, which must exist
    unless ``models`` is False; ``model`` refit: its refit, which must exist."""
    if model not in MODELS:
        raise UsageError(f"--model {model}: choose folds (the fold ensemble) or refit (`benchmark refit`'s model).")
    results = read(RunFolder(Path(run_dir)))
    finished = [a.name for a in results.ok]
    if not finished:
        raise UsageError(f"{run_dir}: no architecture of this run finished its folds, so none can predict.")
    name = finished[0] if arch == "winner" else arch
    if name not in finished:
        raise UsageError(
            f"--arch {arch}: not a finished architecture of the run {run_dir}; choose one of {', '.join(finished)} "
            "(or winner, the first in rank)."
        )
    if model == "refit":
        if name not in results.refits or not results.folder.refit_file(name, "model.keras").exists():
            raise UsageError(
                f"--model refit: {name} has not been refitted in {run_dir}. Run `benchmark refit {run_dir} --arch "
                f"{name}` first (it trains {name} once on all the run's training images), or use --model folds."
            )
        return Chosen(results, name, [], model)
    folds = saved_folds(results.folder, name, results.info.n_folds)
    if not folds and models:
        raise not_saved(run_dir, "nothing can predict", name)
    return Chosen(results, name, folds)


def not_saved(run_dir, consequence: str, arch: str | None = None) -> UsageError:
    """The paragraph for a run whose fold models (of ``arch``, or of every architecture) were not kept."""
    whose = f"{arch}'s fold models were" if arch else "its fold models were"
    return UsageError(
        f"{run_dir}: {whose} not saved (--save-models none or --no-save-models), so {consequence}. Run it again "
        "into a new --out with --save-models all (or best) to keep them, or `benchmark refit` one architecture."
    )


def threshold(chosen: Chosen, rule: str) -> tuple[float | None, str]:
    """(threshold, in words) for two classes: ``f1``, ``youden`` or ``0.5`` chosen on the architecture's
    out-of-fold predictions, or a number in (0, 1); (None, "argmax") for more classes."""
    if not chosen.results.info.binary:
        return None, "the most probable class (argmax)"
    if rule in THRESHOLDS:
        chosen_rules = chosen.results.oof_scores[chosen.name]["thresholds"]
        value = next(c["threshold"] for c in chosen_rules if c["rule"] == THRESHOLDS[rule])
        return value, f"{value:.4f} ({THRESHOLDS[rule]}, chosen on the out-of-fold predictions of {chosen.name})"
    try:
        value = float(rule)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise UsageError(f"--threshold {rule}: give f1, youden, 0.5 or a probability between 0 and 1.")
    return value, f"{value:g} (given)"


def predict(
    run_dir: str | Path,
    images: list[str | Path],
    arch: str = "winner",
    rule: str = DEFAULT_THRESHOLD,
    gradcam: str | Path | None = None,
    log: Callable[[str], None] = print,
    model: str = "folds",
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The fold ensemble of ``arch`` (or its refit: ``model``) on ``images`` (files or folders): one row per
    readable image with its predicted class, the probabilities and, for an ensemble, their spread over the fold
    models (std); and the unreadable files with their reasons. ``gradcam``: a folder for one heat-map PNG per
    image."""
    chosen = choose(run_dir, arch, model=model)
    cut, words = threshold(chosen, rule)
    files = unlabelled(images)
    if not len(files):
        raise UsageError(f"images {' '.join(map(str, images))}: no image files found there. Give image files or "
                         "folders holding them (.png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp).")  # fmt: skip
    decoded = chosen.decode(files, log)
    if not len(decoded.paths):
        reasons = "; ".join(f"{path}: {why}" for path, why in list(decoded.skipped.items())[:3])
        raise UsageError(f"images: none of the {len(files)} image file(s) could be read ({reasons}).")
    per_model = chosen.outputs(decoded.pixels)
    probabilities = per_model.mean(axis=0)
    classes = chosen.results.info.class_names
    predicted = probabilities.argmax(axis=1) if cut is None else (probabilities >= cut).astype(int)
    skipped = f"; {len(decoded.skipped)} unreadable file(s) skipped" if decoded.skipped else ""
    log(f"{chosen.name}: {chosen.in_words()} on {len(decoded.paths)} image(s); class by {words}{skipped}")
    spread = probability_columns(per_model.std(axis=0), "probability_std") if len(per_model) > 1 else {}
    frame = pd.DataFrame(
        {"path": decoded.paths, "predicted": [classes[c] for c in predicted], **probability_columns(probabilities),
         **spread}
    )  # fmt: skip
    if gradcam is not None:
        write_heatmaps(chosen, decoded, probabilities, cut, Path(gradcam))
    return frame, decoded.skipped


def write_heatmaps(chosen: Chosen, decoded, probabilities: np.ndarray, cut: float | None, folder: Path) -> None:
    """One PNG per image in ``folder``: the image with the fold models' mean Grad-CAM map of its predicted class."""
    from PIL import Image

    from benchmark.inference.gradcam import fold_heatmaps, overlay, signs_of

    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"--gradcam {folder}: not empty. Give a new or empty folder for the heat maps.")
    signs = signs_of(probabilities, 0.5 if cut is None else cut)
    maps, _ = fold_heatmaps(list(chosen.models.values()), np.asarray(decoded.pixels), signs)
    for i, (path, pixels, heat) in enumerate(zip(decoded.paths, decoded.pixels, maps, strict=True)):
        image = Image.fromarray(overlay(np.asarray(pixels), heat))
        with BytesIO() as png:
            image.save(png, format="PNG")
            write_bytes(folder / f"{i:05d}_{safe_name(Path(path).stem)}.png", png.getvalue())


def write_predictions(frame: pd.DataFrame, out: Path, overwrite: bool = False) -> None:
    """``frame`` as CSV at ``out``, atomically; an existing file is replaced only with ``overwrite``."""
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out}: exists. Give a new file name, or add --overwrite to replace it.")
    write_csv(out, frame)


def evaluate(
    run_dir: str | Path, data_dir: str | Path, name: str | None = None, log=print, report: bool = True
) -> dict:
    """Score every finished architecture's fold ensemble of the run on the labelled folder ``data_dir`` (a new
    site): the held-out tables of the official test split (thresholds chosen on the run's out-of-fold
    predictions, bootstrap intervals) and whether the CV ranking transfers there; each refit (``benchmark refit``)
    beside its fold ensemble. Saved as ``RUN/sites/<name>/`` (``site.json`` and each model's predictions) and
    shown in the report (rewritten unless ``report`` is false); nothing else of the run changes. A rerun with the
    same name and data reuses the saved predictions."""
    from benchmark.report import write_report  # matplotlib only here

    results = read(RunFolder(Path(run_dir)))
    folder, info = results.folder, results.info
    site = name or Path(data_dir).resolve().name
    root, images, split, rows = site_images(results, Path(data_dir))
    decoded = decode_as_run(results, root, images, log)
    content = fingerprint(sorted(decoded.content.items()))  # a copy without its modification times is the same
    data = {"path": str(data_dir), "fingerprint": fingerprint(rows), "content": content, "files": len(rows),
            "split": split}  # fmt: skip
    saved = read_json(folder.site(site))
    if isinstance(saved, dict) and saved.get("data", {}).get("fingerprint") != data["fingerprint"] \
            and saved.get("data", {}).get("content") != content:  # fmt: skip
        raise UsageError(
            f"--name {site}: the run folder already holds an evaluation of {saved.get('data', {}).get('path')} "
            f"under that name, on other images. Choose another --name for {data_dir}."
        )
    models = {a.name: saved_folds(folder, a.name, info.n_folds) for a in results.ok}
    models = {n: folds for n, folds in models.items() if folds}
    if not models:
        raise not_saved(run_dir, "nothing can be scored")
    with folder.locked():
        where = lambda arch, fold: folder.site_predictions(site, arch, fold)  # noqa: E731
        predict_heldout(folder, list(models), info.n_folds, decoded, results.batch_size, log, where=where)
        heldout = site_predictions(folder, site, models)
        cv = {a.name: a.metrics[info.rank_by].mean for a in results.ok}
        refits = {}
        for arch in results.refits:  # `benchmark refit`'s models too, beside their fold ensembles
            path, model = folder.site_predictions(site, arch, "refit"), folder.refit_file(arch, "model.keras")
            if not path.exists():
                outputs = model_outputs([model], decoded.pixels, results.batch_size)[0]
                write_csv(path, prediction_table(decoded, outputs))
            refits[arch] = refit_scores(results, arch, pd.read_csv(path), heldout.get(arch))
        summary = {
            "name": site,
            "data": data,
            "counts": class_counts(info.class_names, decoded.labels),
            "skipped": decoded.skipped,
            "models": models,  # each architecture's fold models that scored the site
            "heldout": heldout_scores(heldout, results.oof),
            "transfer": heldout_transfer(heldout, cv, info.rank_by),
            "refits": refits,
        }
        write_json(folder.site(site), summary)
        if report:
            write_report(read(folder))
    return summary


def site_images(results: RunResults, data_dir: Path) -> tuple[Path, ImageSet, str, list[tuple]]:
    """(root, images labelled as the run labels them, which images, their listing): a folder of class folders
    gives all its images, a Kaggle layout its test/ split. Its classes must be the run's; none of its images may
    be one the run cross-validated on (the same file name and size as a training image in files.csv)."""
    info, given = results.info, f"evaluate {data_dir}"
    if not data_dir.is_dir():
        raise UsageError(f"{given}: no such folder. Give a folder of class folders named as the run's classes.")
    try:
        dataset = discover(data_dir, None, results.settings.get("label_from"))
    except UsageError as err:  # said of --data by the data stage: here the folder is evaluate's
        fix = "Give a folder of class folders named as the run's classes."
        raise UsageError(str(err).replace(f"--data {data_dir}", given).replace(KAGGLE_HINT, fix)) from None
    if set(dataset.classes) != set(info.class_names):
        raise UsageError(
            f"{given}: its classes are {', '.join(dataset.classes)}; the run's are {', '.join(info.class_names)}. "
            "Give a folder with one folder per class of the run, named as the run names them."
        )
    images, split = (dataset.test, "test/ split") if dataset.test is not None else (dataset.train, "all images")
    labels = np.array([info.class_names.index(dataset.classes[c]) for c in images.labels], dtype=np.int8)
    trained = {(Path(p).name, size) for p, size in training_files(results.folder)}
    rows = listing(dataset.root, images)
    seen = [p for p, size, _ in rows if (Path(p).name, size) in trained]
    if seen:
        raise UsageError(
            f"{given}: {len(seen)} of its images are images the run cross-validated on (e.g. {seen[0]}, the same "
            "name and size as a training image). External validation needs images the run never trained on."
        )
    return dataset.root, ImageSet(images.paths, labels), split, rows


def training_files(folder: RunFolder) -> list[tuple[str, int]]:
    """(path, size) of the run's cross-validation images: files.csv's rows outside a test/ folder."""
    rows = folder.read_files() or []
    return [(path, size) for path, _, size, *_ in rows if "test" not in (p.lower() for p in Path(path).parts[:-1])]


def refit(run_dir: str | Path, arch: str = "winner", log: Callable[[str], None] = print) -> dict:
    """Train ``arch`` once more on every image the run cross-validated on (scikit-learn's ``refit``, PyCaret's
    ``finalize_model``): for the median of its folds' best epochs, with the class weights and output bias of all
    those images, and no early stopping (no image is left to watch). Score it on the run's test split beside the
    fold ensemble, with the same out-of-fold thresholds. Saved in ``RUN/<arch>/refit/`` (refit.json last) and shown
    in the report; a rerun reuses it. Returns refit.json, or ``{"error": ...}`` where the training failed (its
    traceback in ``refit/error.txt``)."""
    from benchmark.data import Fold
    from benchmark.report import write_report
    from benchmark.report.sections import in_words
    from benchmark.training import FoldTask, backend, setups
    from benchmark.training.execution import run_fold

    chosen = choose(run_dir, arch, models=False)
    results, folder, name = chosen.results, chosen.folder, chosen.name
    best = results.arch(name).curves["best_epoch"]
    epochs = refit_epochs(best)
    saved = read_json(folder.refit_file(name, "refit.json"))
    if isinstance(saved, dict) and saved.get("epochs") == epochs and folder.refit_file(name, "model.keras").exists():
        log(f"{name}: refitted already ({folder.refit_dir(name)}); delete that folder to train it again")
        return saved
    config = run_config(results)
    tuned = refit_values(results.arch(name).tuning)  # a tuned run: the values its folds chose most often
    images, test = training_images(results, log)
    execution, k = config.execution, len(results.info.class_names)
    device = backend.setup(execution.mixed_precision, execution.deterministic, execution.strategy,
                           config.compile_cache)  # fmt: skip
    none = np.array([], dtype=np.int64)
    task = FoldTask(
        arch=name,
        fold=-1,  # not a fold
        split=Fold(np.arange(len(images.paths)), none, none),
        seed=config.cv.seed,
        settings=replace(config.training, n_classes=k, epochs=epochs, **tuned),
        arch_modules=config.cv.arch_modules,
        setup=setups(replace(execution, jobs=1, backend="local"), device.gpus, config.compile_cache)[0],
    )
    with_tuned = f", with {in_words(tuned)}" if tuned else ""
    log(f"{name}: refit on all {len(images.paths)} training images for {counted(epochs, 'epoch')} (the median of "
        f"its folds' best epochs {', '.join(map(str, best))}){with_tuned}")  # fmt: skip

    def report(epoch: int, logs: dict) -> None:
        log(f"{name} refit: epoch {epoch}/{epochs}, loss {logs.get('loss', float('nan')):.4f}")

    with folder.locked():
        for stale in folder.sites.glob(f"*/{safe_name(name)}/refit.csv"):  # an earlier refit's, at other epochs
            stale.unlink()
        out = run_fold(task, images, report, backend.model_scope(device))
        for line in out.log:  # an out-of-memory retry
            log(line)
        if out.error:
            write_text(folder.refit_file(name, "error.txt"), out.traceback or "")
            return {"architecture": name, "error": f"{out.error} (traceback: {folder.refit_file(name, 'error.txt')})"}
        write_bytes(folder.refit_file(name, "model.keras"), out.model)
        write_csv(folder.refit_file(name, "history.csv"), history_table(out.history))
        record = {
            "architecture": name,
            "epochs": epochs,
            "best_epochs": best,
            "n_images": len(images.paths),
            "counts": class_counts(results.info.class_names, images.labels),
            "tuned": tuned,
            **{
                key: out.record[key]
                for key in ("seed", "class_weight", "initial_bias", "fit_seconds", "params", "batch_size", "phases")
            },  # fmt: skip
            **(score_refit(chosen, test) if test is not None else {"heldout": None, "against_folds": None}),
        }
        folder.refit_file(name, "error.txt").unlink(missing_ok=True)  # an earlier attempt's failure
        write_json(folder.refit_file(name, "refit.json"), record)  # last: marks the refit finished
    for site in results.sites.values():  # the sites evaluated before: scored by the refit too
        try:
            evaluate(run_dir, site["data"]["path"], site["name"], log, report=False)
        except UsageError as err:
            log(f"site {site['name']}: not scored by the refit ({err})")
    with folder.locked():
        write_report(read(folder))  # once, with the refit on every site
    return record


def refit_values(tuning: dict | None) -> dict:
    """A tuned architecture's settings for its refit: the trial its folds chose most often (on a tie, the one
    with the lowest mean inner loss over the folds); nothing for an untuned one.

    >>> refit_values({"trials": [{"lr": 1e-3}, {"lr": 3e-3}], "chosen": [1, 0, 1], "inner_loss": [[.3, .2]] * 3})
    {'lr': 0.003}
    """
    if not tuning:
        return {}
    losses = np.array([[np.nan if v is None else v for v in fold] for fold in tuning["inner_loss"]], dtype=float)
    mean = np.nanmean(losses, axis=0)
    best = max(set(tuning["chosen"]), key=lambda t: (tuning["chosen"].count(t), -mean[t]))
    return dict(tuning["trials"][best])


def refit_epochs(best: list[int]) -> int:
    """The median of the folds' best epochs, a half rounded up.

    >>> refit_epochs([3, 5, 4, 10, 2]), refit_epochs([2, 3])
    (4, 3)
    """
    return int(np.floor(np.median(best) + 0.5))


def run_config(results: RunResults):
    """The run's settings (config.json) that decide how a model is trained, as a RunConfig: the data, folds,
    training and execution settings; the output and tracking ones (an older run wrote some in an older form)
    and any this version no longer knows are left at their defaults."""
    from benchmark.config import RunConfig, setting_names

    kept = {key for key, group in setting_names().items() if group not in ("output", "tracking")}
    settings = {key: value for key, value in results.settings.items() if key in kept}
    return RunConfig.from_flat(**settings, out=results.folder.path)


def training_images(results: RunResults, log: Callable[[str], None]):
    """(the images the run cross-validated on, its test split or None), decoded as the run decoded them; refused
    where ``--data`` no longer holds exactly the images of the run's folds."""
    settings, folder = results.settings, results.folder
    dataset = discover(settings["data"], settings.get("positive"), settings.get("label_from"))
    if tuple(dataset.classes) != results.info.class_names:
        raise UsageError(
            f"{settings['data']}: its classes are now {', '.join(dataset.classes)}; the run's were "
            f"{', '.join(results.info.class_names)}. Refit trains on the run's images: restore the data as it was."
        )
    images = decode_as_run(results, dataset.root, dataset.train, log, "training images")
    fold = (read_json(folder.splits) or {"folds": [{}]})["folds"][0]
    cross_validated = {p for part in ("train", "val", "score") for p in fold.get(part, ())}
    if cross_validated != set(images.paths):
        missing, new = len(cross_validated - set(images.paths)), len(set(images.paths) - cross_validated)
        raise UsageError(
            f"{settings['data']}: its training images are not those the run cross-validated on ({missing} of the "
            f"run's missing or unreadable, {new} new; splits.json lists them). Refit trains on exactly the run's "
            "images: restore the data as it was, or run the benchmark again on the data as it is now."
        )
    test = None if dataset.test is None else decode_as_run(results, dataset.root, dataset.test, log, "test images")
    return images, test


def score_refit(chosen: Chosen, test) -> dict:
    """The refit on the run's test split: its predictions saved, then :func:`refit_scores` of them as saved, beside
    the fold models' saved test predictions (kept even when the fold models are not)."""
    results, folder, name = chosen.results, chosen.folder, chosen.name
    model, saved = folder.refit_file(name, "model.keras"), folder.refit_file(name, "test_predictions.csv")
    write_csv(saved, prediction_table(test, model_outputs([model], test.pixels, results.batch_size)[0]))
    return refit_scores(results, name, pd.read_csv(saved), read_heldout(folder, name, results.info.n_folds))


def refit_scores(results: RunResults, name: str, frame: pd.DataFrame, fold_runs: list[pd.DataFrame] | None) -> dict:
    """A refit on one held-out set, from its predictions ``frame``: the held-out rows (at the fold models'
    out-of-fold thresholds, with bootstrap intervals) and, where the fold models' predictions of the same images
    are given (``fold_runs``), the ranking metric against the fold ensemble (None otherwise)."""
    scores = {"heldout": heldout_scores({name: [frame]}, results.oof)[name]["ensemble"], "against_folds": None}
    if fold_runs is None:
        return scores
    ensemble = pd.DataFrame(probability_columns(fold_ensemble(fold_runs)), index=fold_runs[0].path)
    ensemble = ensemble.reindex(frame.path)
    if not ensemble.isna().any(axis=None):  # the same images (the data may have changed since the run)
        labels, refit, folds = frame.label.to_numpy(), probabilities_of(frame), probabilities_of(ensemble)
        scores["against_folds"] = refit_against_folds(labels, refit, folds, results.rank_by)
    return scores


EXPORT_NEEDS = {"onnx": ("onnx", "onnxruntime", "tf2onnx"), "savedmodel": ("tensorflow",)}


def export(run_dir: str | Path, arch: str = "winner", fmt: str = "keras", out: str | Path | None = None,
           overwrite: bool = False, log=print, model: str = "folds") -> Path:  # fmt: skip
    """Write the fold ensemble of ``arch`` (or its refit: ``model``) as one model in ``fmt`` (keras, onnx,
    savedmodel) into ``out`` (default ``RUN/export/<arch>/``, ``RUN/export/<arch>-refit/``) with ``model.json``
    beside it: what it takes and returns, the classes, the thresholds chosen on the out-of-fold predictions,
    versions and the run. Where the run's test split can be read, the exported model is checked against the
    run's saved test predictions of the same models."""
    import keras

    from benchmark.inference.export import FORMATS, ensemble_model, save
    from benchmark.report import write_card

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}.")
    check_export_packages(fmt, keras.backend.backend())
    chosen = choose(run_dir, arch, model=model)
    refit = chosen.model == "refit"
    out = Path(out) if out else chosen.folder.path / "export" / safe_name(chosen.name + ("-refit" if refit else ""))
    target, sidecar = out / FORMATS[fmt], out / "model.json"
    if target.exists() and not overwrite:
        raise UsageError(f"--out {out}: {target.name} exists. Give another --out, or add --overwrite to replace it.")
    exported = ensemble_model(chosen.models, f"{chosen.name}_{'refit' if refit else 'fold_ensemble'}")
    out.mkdir(parents=True, exist_ok=True)
    save(exported, fmt, target)
    card = description(chosen, fmt, target)
    card["check"] = check_export(chosen, fmt, target, log)
    write_json(sidecar, card)
    write_card(chosen.results, chosen.name, out / "model_card.md", chosen.model)
    return target


def check_export_packages(fmt: str, backend: str) -> None:
    """One paragraph where ``fmt`` cannot be written here: a missing package, or ONNX under JAX."""
    if fmt == "onnx" and backend == "jax":
        raise UsageError(
            "--format onnx under JAX: the exported graph fails in onnxruntime today (max-pooling). Export with "
            "another backend (KERAS_BACKEND=tensorflow benchmark export ...), or use --format keras."
        )
    for package in EXPORT_NEEDS.get(fmt, ()):
        try:
            importlib.import_module(package)
        except ImportError:
            extra = "pip install tensorflow" if package == "tensorflow" else "pip install -e '.[export]'"
            raise UsageError(f"--format {fmt} needs {package}: {extra}, then run again.") from None


def description(chosen: Chosen, fmt: str, target: Path) -> dict:
    """model.json: how to call the exported model and where it comes from."""
    import keras

    info, settings = chosen.results.info, chosen.results.settings
    config = chosen.results.config
    thresholds = chosen.results.oof_scores.get(chosen.name, {}).get("thresholds", [])
    return {
        "architecture": chosen.name,
        "model": "refit on all training images" if chosen.model == "refit" else "fold ensemble",
        "format": fmt,
        "file": target.name,
        "fold_models": chosen.folds,
        "input": {
            "shape": [None, settings["image_size"], settings["image_size"], settings["channels"]],
            "dtype": "uint8",
            "values": "0-255, as decoded (resized, greyscale or RGB); scaled inside",
        },  # fmt: skip
        "output": (
            f"probability of {info.positive}, shape (n, 1)"
            if info.binary
            else f"probability of each class in this order: {', '.join(info.class_names)}, shape (n, K)"
        ),  # fmt: skip
        "classes": list(info.class_names),
        "positive": info.positive,
        "thresholds": [{"rule": t["rule"], "threshold": t["threshold"]} for t in thresholds],
        "default_threshold": THRESHOLDS[DEFAULT_THRESHOLD] if info.binary else "argmax",
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(), **config.get("packages", {})},
        "run": {
            "folder": str(chosen.folder.path.resolve()),
            "git_commit": config.get("git_commit"),
            "data": config.get("data"),
            "settings": settings,
        },  # fmt: skip
    }


def check_export(chosen: Chosen, fmt: str, target: Path, log) -> dict | None:
    """The exported model on the run's test images against the run's saved predictions of them by the same
    models (None where they cannot be read: no test split, data moved, or missing saved test predictions)."""
    saved, root = chosen.saved_test(), Path(chosen.results.settings["data"])
    if saved is None or not all((root / p).is_file() for p in saved[0]):
        log("not checked: the run's test images or their saved predictions cannot be read here")
        return None
    paths, expected = saved
    decoded = chosen.decode(ImageSet(tuple(str(root / p) for p in paths), np.zeros(len(paths), np.int8)), log)
    got = exported_outputs(fmt, target, np.asarray(decoded.pixels))
    worst = float(np.abs(got.reshape(expected.shape) - expected).max())
    log(f"checked: the exported model on the run's {len(got)} test images against the saved predictions of "
        f"{chosen.in_words()}, largest difference {worst:.2g}")  # fmt: skip
    return {"images": len(got), "largest_difference": worst}


def exported_outputs(fmt: str, target: Path, pixels: np.ndarray) -> np.ndarray:
    """What the exported file returns for ``pixels``, run as a user would run it."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(target))
        return session.run(None, {session.get_inputs()[0].name: pixels})[0]
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(target))  # held while it serves: its variables live in it
        return np.asarray(loaded.serve(pixels))
    import keras

    return np.asarray(keras.models.load_model(target, compile=False).predict(pixels, batch_size=128, verbose=0))
