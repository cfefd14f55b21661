"""Reporting across runs: ``benchmark compare RUN_A RUN_B ...``.

What differs between the runs' settings; each architecture's ranking metric in every run (mean
and corrected 95 % interval); where two runs share their folds (the same ``splits.json``), a paired
corrected t-test per architecture between them (Nadeau–Bengio, as within a run); where they do not,
only the intervals, said to be the weaker comparison; and the held-out figures side by side. Written
as markdown (printed) and as one self-contained ``compare.html`` that opens with a forest plot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark import UsageError
from benchmark.evaluation.metrics import clip_to_range, metric_value
from benchmark.evaluation.statistics import corrected_ttest, mean_ci
from benchmark.inference.predict import fold_ensemble, read_heldout
from benchmark.report.render import Figure, Section, Table, to_html, to_markdown
from benchmark.store.files import read_json, write_text
from benchmark.store.runfolder import RunFolder

IGNORED_SETTINGS = {"out", "overwrite", "quiet", "jobs", "backend", "scheduler", "cache_dir", "arch_modules"}
SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError)


@dataclass
class Run:
    label: str  # "A", "B", ...
    folder: RunFolder
    rank_by: str
    classes: tuple[str, ...]
    n_models: int  # fold models per architecture (folds × repeats): each scored the held-out split
    scores: dict[str, dict[str, list[float]]]  # finished architecture → metric → fold values, in rank order
    test_fraction: dict[str, float]  # finished architecture → n_test / n_train (the t-test's correction)
    settings: dict
    splits: list | None  # splits.json's folds

    def interval(self, name: str, metric: str) -> tuple[float, float, float]:
        mean, low, high = mean_ci(self.scores[name][metric], self.test_fraction[name])
        return (mean, *clip_to_range(metric, low, high))

    def held_out(self, name: str, metric: str) -> float | None:
        """The fold ensemble's ``metric`` on the held-out split, from the saved test predictions."""
        try:
            runs = read_heldout(self.folder, name, self.n_models)
            return None if runs is None else metric_value(runs[0].label.to_numpy(), fold_ensemble(runs), metric)
        except (OSError, *SHAPE_ERRORS) as err:
            raise UsageError(
                f"{self.folder.arch_dir(name)}: a fold's test_predictions.csv cannot be read ({err}). Delete the "
                f"damaged file and rerun `benchmark run` with --out {self.folder.path} to score the test split again."
            ) from None


def load_runs(paths: list[Path]) -> list[Run]:
    if len(paths) < 2:
        raise UsageError("benchmark compare: give two or more run folders (the --out folders of benchmark run).")
    runs = [read_run(RunFolder(Path(path)), chr(ord("A") + i)) for i, path in enumerate(paths)]
    check_same_task(runs)
    return runs


def read_run(folder: RunFolder, label: str) -> Run:
    """The run folder's results: their files' shape is checked by RunFolder.read_results, the values compare
    uses here; any file of the wrong shape is a UsageError naming it."""
    saved = folder.read_results()
    try:
        info = saved["results"]["run"]
        rank_by, folds = str(info["rank_by"]), int(info["folds"])
        classes = class_names(info)
        scores, fractions = {}, {}
        for entry in (e for e in saved["results"]["architectures"] if e["status"] == "ok"):
            name = str(entry["name"])
            scores[name] = {m: [float(v) for v in s["folds"]] for m, s in entry["metrics"].items()}
            fractions[name] = float(entry.get("test_fraction", 1 / (folds - 1)))
        n_models = folds * int(info.get("repeats", 1))
    except SHAPE_ERRORS as err:
        raise folder.damaged(folder.results, f"an entry is missing or of the wrong kind ({err!r})") from None
    if scores and rank_by not in saved["folds"].columns:  # the paired tests read the folds' scores
        raise folder.damaged(folder.folds_table, f"no column {rank_by}")
    settings = saved["config"].get("settings", {})
    if not isinstance(settings, dict):
        raise folder.damaged(folder.config, "its settings are not an object")
    splits = read_json(folder.splits)  # unreadable: as if missing, so no paired test
    return Run(label, folder, rank_by, classes, n_models, scores, fractions, settings,
               splits.get("folds") if isinstance(splits, dict) else None)  # fmt: skip


def class_names(info: dict) -> tuple[str, ...]:
    """The run's classes (results.json before K-class support named only the negative and positive one)."""
    if "class_names" in info:
        return tuple(str(c) for c in info["class_names"])
    return str(info["classes"]["negative"]), str(info["classes"]["positive"])


def check_same_task(runs: list[Run]) -> None:
    """Runs on other classes score another task: their metrics cannot be set side by side."""
    if len({r.classes for r in runs}) > 1:
        raise UsageError(
            "benchmark compare: the runs are on different classes — "
            + "; ".join(f"{r.label} {r.folder.path}: {', '.join(r.classes)}" for r in runs)
            + ". Their metrics measure different tasks; compare runs on the same classes."
        )


def compare_sections(runs: list[Run], figure: Path) -> list[Section]:
    metric = runs[0].rank_by
    names = [n for n in runs[0].scores if all(n in r.scores for r in runs[1:])]
    if not names:
        raise UsageError(
            "benchmark compare: the runs share no finished architecture — "
            + "; ".join(f"{r.label} {r.folder.path}: {', '.join(r.scores) or 'none'}" for r in runs)
            + ". Compare runs of the same architectures (benchmark run --archs)."
        )
    from benchmark.report import plots

    rows = [(n, r.label, *r.interval(n, metric), r.held_out(n, metric)) for n in names for r in runs]
    intro = [
        Figure(
            plots.forest_runs(rows, metric, figure),
            f"{metric} per architecture and run: the CV mean with its "
            "corrected 95 % interval; the diamond is the held-out test split where the run has one.",
        ),  # fmt: skip
        Table(["run", "folder", "classes"], [[r.label, str(r.folder.path), ", ".join(r.classes)] for r in runs]),
        settings_table(runs),
    ]
    return [
        Section("1. Runs and what differs", intro),
        Section("2. Ranking metric and held-out figures", [*notes(runs, names), metric_table(runs, names, metric)]),
        Section("3. Paired comparisons between runs", paired_parts(runs, names, metric)),
    ]


def notes(runs: list[Run], names: list[str]) -> list[str]:
    """What the comparison leaves out or changes: said, never silent."""
    parts = []
    if len({r.rank_by for r in runs}) > 1:
        ranked = ", ".join(f"{r.label} by {r.rank_by}" for r in runs)
        parts.append(
            f"The runs were ranked by different metrics ({ranked}); every run is compared here on "
            f"{runs[0].rank_by}, the first run's. Put first the run whose metric you want."
        )
    left_out = [f"{r.label}: {', '.join(n for n in r.scores if n not in names)}" for r in runs
                if any(n not in names for n in r.scores)]  # fmt: skip
    if left_out:
        parts.append(f"Compared: the architectures every run finished. Left out: {'; '.join(left_out)}.")
    return parts


def settings_table(runs: list[Run]) -> Table:
    keys = sorted({k for r in runs for k in r.settings} - IGNORED_SETTINGS)
    differing = [k for k in keys if len({repr(r.settings.get(k)) for r in runs}) > 1]
    rows = [[k, *(str(r.settings.get(k, "—")) for r in runs)] for k in differing]
    caption = "Settings that differ between the runs." if rows else "The runs have the same settings."
    return Table(["setting", *(r.label for r in runs)], rows, caption=caption)


def metric_table(runs: list[Run], names: list[str], metric: str) -> Table:
    rows = []
    for n in names:
        cells = []
        for r in runs:
            mean, low, high = r.interval(n, metric)
            test = r.held_out(n, metric)
            cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]" + (f"; test {test:.3f}" if test is not None else ""))
        rows.append([n, *cells])
    caption = f"{metric}: CV mean [95 % corrected interval]; the fold ensemble on the held-out split."
    return Table(["architecture", *(r.label for r in runs)], rows, caption=caption)


def paired_parts(runs: list[Run], names: list[str], metric: str) -> list:
    base, parts = runs[0], []
    for other in runs[1:]:
        if not same_folds(base, other):
            parts.append(
                f"{base.label} and {other.label} were not cross-validated on the same folds (their splits.json "
                "differ), so no paired test is possible: compare their intervals above, a weaker comparison — "
                "the fold-to-fold variation of the data is not cancelled out."
            )
            continue
        rows = []
        for n in names:
            a, b = other.scores[n][metric], base.scores[n][metric]
            test = asdict(corrected_ttest(a, b, base.test_fraction[n]))
            rows.append([n, f"{test['mean_difference']:+.4f}", f"[{test['ci_low']:+.4f}, {test['ci_high']:+.4f}]",
                         f"{test['t']:.2f}", f"{test['p']:.3g}"])  # fmt: skip
        parts.append(
            Table(
                ["architecture", f"{other.label} − {base.label}", "95 % interval", "t", "p"],
                rows,
                caption=f"{other.label} against {base.label} on the same folds: {metric}, paired fold by fold "
                "(Nadeau–Bengio corrected resampled t-test).",
            )
        )
    return parts


def same_folds(a: Run, b: Run) -> bool:
    return a.splits is not None and a.splits == b.splits


def write_compare(paths: list[Path], out: Path) -> tuple[str, Path]:
    """Compare the runs; write ``out/compare.html`` (and its figure under ``out/compare_files``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"compare --out {out}: a file, not a folder. Give a folder for compare.html (made if missing)."
        )
    runs = load_runs(paths)
    figures = out / "compare_files"
    title = "CNN benchmark comparison — " + ", ".join(r.folder.path.name for r in runs)
    page = out / "compare.html"
    try:
        figures.mkdir(parents=True, exist_ok=True)
        sections = compare_sections(runs, figures / "forest.png")
        write_text(page, to_html(sections, title))
    except OSError as err:
        raise UsageError(
            f"compare --out {out}: cannot write there ({err.strerror}). Choose a writable folder."
        ) from None
    return to_markdown(sections, title, out), page
