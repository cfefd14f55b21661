"""Store: the run folder, every file a run writes, where it lives, and how it is read back.

::

    RUN/config.json             every setting, versions, machine, git commit, backend, devices,
                                the data's path and fingerprint; its ``format`` field marks the
                                folder as a run folder (written before anything else)
    RUN/files.csv               every image: path (relative to --data), class, size, modification time, a
                                digest of its bytes (taken while decoding)
    RUN/splits.json             the folds as paths relative to --data
    RUN/<arch>/fold-<i>/        history.csv, predictions.csv, metrics.json, model.keras,
                                test_predictions.csv (the held-out split)
    RUN/<arch>/fold-<i>/trials/trial-<t>/   --tune: each trial's record.json (written last), history.csv,
                                error.txt; its model.keras until the fold keeps the best trial's as its own
    RUN/<arch>/gradcam.npz      Grad-CAM heat maps of chosen test images (the report's Grad-CAM section)
    RUN/<arch>/refit/           `benchmark refit`: model.keras, history.csv, test_predictions.csv and
                                refit.json (written last: the epochs, the images, the held-out scores)
    RUN/folds.csv               one row per architecture × fold
    RUN/oof.csv                 out-of-fold probabilities: arch, fold, path, label, probability
    RUN/results.json            the aggregated, ranked results (the contract reports build on)
    RUN/leaderboard.md          the ranked table
    RUN/report.md, report.html  the report; RUN/report_files/ holds its figures
    RUN/run.log                 what the backends printed (TensorFlow/JAX start-up messages)
    RUN/tensorboard/            --tensorboard: <arch>/fold-<i>/ curves, <arch>/hparams/ (benchmark.tracking.tensorboard)
    RUN/tracking.json           --track mlflow: the MLflow run ids, so a resumed run continues them
    RUN/sites/<name>/           `benchmark evaluate`: site.json, <arch>/fold-<i>.csv (and refit.csv)
    RUN/export/<arch>/          `benchmark export`'s default folder (<arch>-refit/ for --model refit)

:class:`RunFolder` is the one place that spells these names. A fold's ``metrics.json``
is written last, so its presence marks the fold finished; every file is written
atomically (benchmark.store.files). ``--overwrite`` removes these files and nothing else: a user's
own file in a run folder stays, and a folder that is not a run folder is never cleared.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import UsageError
from benchmark.store.files import atomic_path, read_json, write_bytes, write_csv, write_json, write_text
from benchmark.store.results import Status

FILE_COLUMNS = ["path", "class", "size", "mtime_ns", "content"]  # content: a digest of the bytes read
OOF_COLUMNS = ["arch", "fold", "path", "label"]  # then one probability column per class (one for two classes)
FORMAT = "cnn-benchmark run folder 1"  # config.json's "format": what makes a folder a run folder
# results.json's "format": 2 adds "heldout" and "oof_scores", 3 each metric's interval "ci", 4 the held-out
# rows' bootstrap intervals; an older one (without "format": 1) is completed on reading
# (benchmark.evaluation.results.completed).
RESULTS_FORMAT = 4
TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.\w+)?")  # benchmark.store.files.atomic_path's names
FOLD_FILES = ("history.csv", "predictions.csv", "metrics.json", "model.keras", "test_predictions.csv", "error.txt")
TRIAL_FILES = ("record.json", "history.csv", "model.keras", "error.txt")  # fold-<i>/trials/trial-<t>/ (--tune)
REFIT_FILES = ("model.keras", "history.csv", "test_predictions.csv", "error.txt", "refit.json")


def results_problem(results) -> str | None:
    """What makes ``results`` (parsed results.json) unlike what ``benchmark run`` writes, or None.

    >>> results_problem({"run": {"folds": 5}, "architectures": []})
    "its 'run' lacks classes, rank_by"
    >>> results_problem({"format": 5, "run": {}, "architectures": []})
    'format 5, newer than this version of cnn-benchmark reads (4): upgrade it'
    """
    if not isinstance(results, dict):
        return f"a JSON {type(results).__name__}, not an object"
    run, entries = results.get("run"), results.get("architectures")
    if not isinstance(version := results.get("format", 1), int) or version > RESULTS_FORMAT:
        return f"format {version!r}, newer than this version of cnn-benchmark reads ({RESULTS_FORMAT}): upgrade it"
    if not isinstance(run, dict):
        return "no 'run' object"
    if missing := sorted({"folds", "rank_by", "classes"} - run.keys()):
        return f"its 'run' lacks {', '.join(missing)}"
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"name", "status"} <= set(e) for e in entries):
        return "its 'architectures' is not a list of entries with a name and a status"
    for e in (e for e in entries if e["status"] == Status.OK):
        if not isinstance(e.get("metrics"), dict) or not isinstance(e["metrics"].get(run["rank_by"]), dict):
            return f"architecture {e['name']!r} has no {run['rank_by']} (the ranking metric)"
    return None


def safe_name(name: str) -> str:
    """A file-system-safe folder name for an architecture name.

    >>> safe_name("resnet/v2 (wide)")
    'resnet_v2_wide_'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".") or "_"


@dataclass(frozen=True)
class RunFolder:
    path: Path

    # The run's own files.
    config = property(lambda self: self.path / "config.json")
    files = property(lambda self: self.path / "files.csv")
    splits = property(lambda self: self.path / "splits.json")
    folds_table = property(lambda self: self.path / "folds.csv")
    oof = property(lambda self: self.path / "oof.csv")
    results = property(lambda self: self.path / "results.json")
    leaderboard = property(lambda self: self.path / "leaderboard.md")
    report_md = property(lambda self: self.path / "report.md")
    report_html = property(lambda self: self.path / "report.html")
    figures = property(lambda self: self.path / "report_files")
    run_log = property(lambda self: self.path / "run.log")  # the backends' messages (see benchmark.console)
    tensorboard = property(lambda self: self.path / "tensorboard")  # --tensorboard event files
    tracking = property(lambda self: self.path / "tracking.json")  # the MLflow runs of this run folder

    def figure(self, name: str) -> Path:
        """A report figure (PNG) named ``name``, its folder made."""
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / f"{safe_name(name)}.png"

    # Each architecture's and each fold's files.
    def arch_dir(self, arch: str) -> Path:
        return self.path / safe_name(arch)

    def gradcam(self, arch: str) -> Path:
        return self.arch_dir(arch) / "gradcam.npz"

    def fold_dir(self, arch: str, fold: int) -> Path:
        return self.arch_dir(arch) / f"fold-{fold}"

    def model_path(self, arch: str, fold: int) -> Path:
        return self.fold_dir(arch, fold) / "model.keras"

    def history(self, arch: str, fold: int) -> Path:
        return self.fold_dir(arch, fold) / "history.csv"

    def predictions(self, arch: str, fold: int) -> Path:
        return self.fold_dir(arch, fold) / "predictions.csv"

    def metrics(self, arch: str, fold: int) -> Path:
        return self.fold_dir(arch, fold) / "metrics.json"

    def error(self, arch: str, fold: int) -> Path:
        """A failed fold's traceback."""
        return self.fold_dir(arch, fold) / "error.txt"

    def test_predictions(self, arch: str, fold: int) -> Path:
        return self.fold_dir(arch, fold) / "test_predictions.csv"

    # The trials of a tuned fold (--tune).
    def trial_file(self, arch: str, fold: int, trial: int, name: str) -> Path:
        """One of a trial's :data:`TRIAL_FILES`."""
        return self.fold_dir(arch, fold) / "trials" / f"trial-{trial}" / name

    def write_trial(self, arch: str, fold: int, trial: int, record: dict, history: dict, model: bytes) -> None:
        write_bytes(self.trial_file(arch, fold, trial, "model.keras"), model)
        write_csv(self.trial_file(arch, fold, trial, "history.csv"), history_table(history))
        write_json(self.trial_file(arch, fold, trial, "record.json"), record)  # last: marks the trial finished
        self.trial_file(arch, fold, trial, "error.txt").unlink(missing_ok=True)

    def write_trial_error(self, arch: str, fold: int, trial: int, text: str | None) -> None:
        write_text(self.trial_file(arch, fold, trial, "error.txt"), text or "")

    def read_trial(self, arch: str, fold: int, trial: int) -> tuple[dict, dict] | None:
        """(record, history) of a finished trial, or None when it must be (re)done."""
        record = read_json(self.trial_file(arch, fold, trial, "record.json"))
        try:
            history = pd.read_csv(self.trial_file(arch, fold, trial, "history.csv")).drop(columns="epoch")
        except (OSError, ValueError, KeyError):
            return None
        return None if record is None else (record, history.to_dict(orient="list"))

    # An architecture trained once more on every training image (`benchmark refit`).
    def refit_dir(self, arch: str) -> Path:
        return self.arch_dir(arch) / "refit"

    def refit_file(self, arch: str, name: str) -> Path:
        """One of the refit's :data:`REFIT_FILES`."""
        return self.refit_dir(arch) / name

    # Each external site scored after the fact (`benchmark evaluate`).
    sites = property(lambda self: self.path / "sites")

    def site(self, site: str) -> Path:
        """A site's summary: its data, and every architecture's scores and ranking transfer there."""
        return self.sites / safe_name(site) / "site.json"

    def site_predictions(self, site: str, arch: str, fold: int | str) -> Path:
        """A fold model's predictions of the site (``fold`` refit: the refit's)."""
        return self.sites / safe_name(site) / safe_name(arch) / ("refit.csv" if fold == "refit" else f"fold-{fold}.csv")

    @contextmanager
    def locked(self):
        """Hold ``.lock`` (this process's pid) while a run writes here. A second run on the same
        folder is refused; a lock left by a process that no longer exists is taken over."""
        lock = self.path / ".lock"
        mine = self.path / f".lock.{os.getpid()}"
        mine.write_text(str(os.getpid()))  # linked into place whole, so a lock is never seen empty
        try:
            while True:
                try:
                    os.link(mine, lock)
                    break
                except FileExistsError:
                    pid = _lock_pid(lock)
                    if pid is not None and _alive(pid):
                        raise UsageError(
                            f"--out {self.path} is in use by another run (pid {pid}). Wait for it to finish, "
                            f"or choose another --out. If no such run exists, delete {lock}."
                        ) from None
                    lock.unlink(missing_ok=True)  # stale: its process is gone
        finally:
            mine.unlink()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

    def is_run_folder(self) -> bool:
        """Whether config.json marks this folder as a run folder (or is one written before the marker)."""
        saved = read_json(self.config)
        return isinstance(saved, dict) and (saved.get("format") == FORMAT or isinstance(saved.get("settings"), dict))

    def own_files(self) -> list[Path]:
        """Every file this tool writes here that exists: the run's named files, each architecture's fold
        files, Grad-CAM and refit, the report's figures, TensorBoard's event files, the external sites' scores and
        predictions, the exported models (``export/``) and the temporary files of interrupted writes. Nothing
        else in the folder is the tool's to delete."""
        named = [self.config, self.files, self.splits, self.folds_table, self.oof, self.results, self.leaderboard,
                 self.report_md, self.report_html, self.run_log, self.tracking]  # fmt: skip
        found = [*named, *self.figures.glob("*.png"), *self.tensorboard.rglob("events.out.tfevents.*")]
        found += [
            *self.sites.glob("*/site.json"),
            *self.sites.glob("*/*/fold-*.csv"),
            *self.sites.glob("*/*/refit.csv"),
        ]
        found += [p for p in (self.path / "export").glob("*/**/*") if p.is_file()]  # benchmark export's default
        for arch in (d for d in self.path.iterdir() if d.is_dir() and not d.is_symlink()):
            found += [arch / "gradcam.npz", *(arch / "refit" / name for name in REFIT_FILES)]
            for fold in (f for f in arch.iterdir() if re.fullmatch(r"fold-\d+", f.name) and f.is_dir()):
                found += [fold / name for name in FOLD_FILES]
                found += [trial / name for trial in fold.glob("trials/trial-*") for name in TRIAL_FILES]
        found += [p for p in self.path.rglob(".*.tmp*") if TEMPORARY.fullmatch(p.name)]
        return [p for p in found if p.is_file() or p.is_symlink()]

    def clear(self) -> None:
        """Remove the run's own files (``--overwrite``) and the folders they leave empty; a user's files stay."""
        for path in self.own_files():
            path.unlink()
            for parent in path.parents:  # fold-<i>/, <arch>/, report_files/, tensorboard/...: while empty
                if parent == self.path or any(parent.iterdir()):
                    break
                parent.rmdir()

    def mark(self, settings: dict, data: dict) -> None:
        """Make this folder a run folder before anything else is written in it, so that an interrupted
        run is still recognised as one (``start`` completes config.json)."""
        write_json(self.config, {"format": FORMAT, "settings": settings, "data": data})

    def write_files(self, rows: list[tuple], content: dict[str, str]) -> None:
        """files.csv: each file's (path, class, size, modification time) and the digest of its bytes as
        decoded (``content``, by path; empty for a file never read)."""
        write_csv(self.files, pd.DataFrame([(*r, content.get(r[0], "")) for r in rows], columns=FILE_COLUMNS))

    def read_files(self) -> list[tuple] | None:
        """files.csv's rows, the digest last (empty where none was saved)."""
        try:
            table = pd.read_csv(self.files, keep_default_na=False, dtype={"content": str})
        except (OSError, ValueError):
            return None
        return sorted(table.reindex(columns=FILE_COLUMNS, fill_value="").itertuples(index=False, name=None))

    def write_fold(
        self, arch: str, fold: int, record: dict, history: dict, predictions: pd.DataFrame, model: bytes | None = None
    ) -> None:
        if model is not None:
            write_bytes(self.model_path(arch, fold), model)
        write_csv(self.history(arch, fold), history_table(history))
        write_csv(self.predictions(arch, fold), predictions)
        write_json(self.metrics(arch, fold), record)  # last: marks the fold finished
        self.error(arch, fold).unlink(missing_ok=True)  # an earlier attempt's failure

    def write_error(self, arch: str, fold: int, text: str | None) -> None:
        write_text(self.error(arch, fold), text or "")

    def read_fold(self, arch: str, fold: int) -> tuple[dict, dict, pd.DataFrame] | None:
        """(record, history, predictions) of a finished fold, or None when it must be (re)done."""
        record = read_json(self.metrics(arch, fold))
        if record is None:
            return None
        try:
            history = pd.read_csv(self.history(arch, fold)).drop(columns="epoch").to_dict(orient="list")
            predictions = pd.read_csv(self.predictions(arch, fold))
        except (OSError, ValueError, KeyError):
            return None
        if len(predictions) != record.get("n_score") or not history.get("val_loss"):
            return None
        return record, history, predictions

    def keep_models(self, arch: str, n_folds: int, kept: set[int]) -> None:
        """Remove ``arch``'s fold models but those of the folds in ``kept`` (--save-models best, none)."""
        for i in set(range(n_folds)) - kept:
            self.model_path(arch, i).unlink(missing_ok=True)

    def read_history(self, arch: str, fold: int) -> pd.DataFrame:
        return pd.read_csv(self.history(arch, fold))

    def write_results(self, results: dict, folds: pd.DataFrame, oof: pd.DataFrame, leaderboard: str) -> None:
        """Write folds.csv, oof.csv, results.json and leaderboard.md."""
        write_csv(self.folds_table, folds)
        write_csv(self.oof, oof)
        write_json(self.results, results)
        write_text(self.leaderboard, leaderboard)

    def read_results(self) -> dict:
        """results.json, config.json, folds.csv and oof.csv, as the report reads them; a missing, damaged or
        foreign file is a UsageError naming it."""
        results = read_json(self.results)
        if results is None:
            raise UsageError(
                f"{self.path}: no readable results.json. Give a run folder written by `benchmark run` (rerun its "
                f"command with --out {self.path}: finished folds are read, not trained, and the results written)."
            )
        if problem := results_problem(results):
            raise self.damaged(self.results, problem)
        config = read_json(self.config)
        return {
            "results": results,
            "config": config if isinstance(config, dict) else {},
            "folds": self._table(self.folds_table, ["arch", "fold"]),
            "oof": self._table(self.oof, OOF_COLUMNS),
        }

    def damaged(self, path: Path, problem: str) -> UsageError:
        """The paragraph for a file of this run folder that is not what ``benchmark run`` writes."""
        return UsageError(
            f"{path}: {problem}, not what `benchmark run` writes. Rerun the run's `benchmark run` command with "
            f"--out {self.path}: finished folds are read, not trained, and the file is written anew."
        )

    def _table(self, path: Path, columns: list[str]) -> pd.DataFrame:
        """A saved table; empty when missing or written with no rows (no fold finished)."""
        try:
            frame = pd.read_csv(path)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame(columns=columns)
        except (OSError, ValueError) as err:  # unreadable, or not CSV (pandas' errors are ValueErrors)
            raise self.damaged(path, f"cannot be read as a table ({err})") from None
        if missing := [c for c in columns if c not in frame.columns]:
            raise self.damaged(path, f"no column {', '.join(missing)}")
        return frame

    def write_gradcam(self, arch: str, panel: dict) -> None:
        with atomic_path(self.gradcam(arch)) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **panel)

    def read_gradcam(self, arch: str) -> dict | None:
        """The saved Grad-CAM panel (pixels, heatmaps, kinds, paths, labels, probabilities, layer), or None."""
        path = self.gradcam(arch)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):  # unreadable: the next run redoes it
            return None


def _lock_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def history_table(history: dict[str, list[float]]) -> pd.DataFrame:
    """A history.csv: one row per epoch (1-based ``epoch`` first), one column per logged value."""
    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    return frame


def predictions_table(paths, labels, probabilities: np.ndarray, **columns) -> pd.DataFrame:
    """A predictions file (a fold's score part, a held-out set): path, label, the probability column(s), then
    ``columns``."""
    return pd.DataFrame(
        {"path": list(paths), "label": np.asarray(labels).astype(int), **probability_columns(probabilities), **columns}
    )


def probability_columns(probabilities: np.ndarray, prefix: str = "probability") -> dict[str, np.ndarray]:
    """The columns of a predictions table: ``probability`` (of the positive class), or one
    ``probability_<label>`` per class.

    >>> list(probability_columns(np.zeros((2, 3))))
    ['probability_0', 'probability_1', 'probability_2']
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 1:
        return {prefix: probabilities}
    return {f"{prefix}_{c}": probabilities[:, c] for c in range(probabilities.shape[1])}


def probabilities_of(frame, prefix: str = "probability") -> np.ndarray:
    """The probabilities a predictions table holds, (n,) or (n, K), as :func:`probability_columns` wrote them."""
    if prefix in frame:
        return frame[prefix].to_numpy()
    k = sum(1 for c in frame.columns if c.startswith(prefix + "_") and c[len(prefix) + 1 :].isdigit())
    return frame[[f"{prefix}_{c}" for c in range(k)]].to_numpy()
