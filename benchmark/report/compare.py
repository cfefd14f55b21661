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
from benchmark.evaluation.comparison import ranking_change
from benchmark.evaluation.results import read
from benchmark.evaluation.statistics import corrected_ttest
from benchmark.report.render import Figure, Section, Table, to_html, to_markdown
from benchmark.store.files import read_json, write_text
from benchmark.store.results import RunResults
from benchmark.store.runfolder import RunFolder

# Where and how a run ran: never listed.
IGNORED_SETTINGS = {"out", "overwrite", "quiet", "jobs", "backend", "scheduler", "cache_dir", "arch_modules"}
IGNORED_SETTINGS |= {"raise_errors"}
# What a run mirrors or draws besides its numbers: listed apart, as changing no number. The tracking settings
# (config.TrackingSettings, which this stage may not import: tests/test_compare.py checks the names) and Grad-CAM.
NO_NUMBER_SETTINGS = {"tensorboard", "track", "tracking_uri", "track_optional", "track_models", "experiment"}
NO_NUMBER_SETTINGS |= {"gradcam_archs"}


@dataclass
class ComparedRun:
    """One run of the comparison: its results, its letter and its folds."""

    label: str  # "A", "B", ...
    results: RunResults
    splits: list | None  # splits.json's folds

    @property
    def folder(self) -> RunFolder:
        return self.results.folder

    @property
    def rank_by(self) -> str:
        return self.results.rank_by

    @property
    def classes(self) -> tuple[str, ...]:
        return self.results.info.class_names

    @property
    def settings(self) -> dict:
        return self.results.settings

    @property
    def finished(self) -> list[str]:
        """The finished architectures, in rank order."""
        return [a.name for a in self.results.ok]

    def interval(self, name: str, metric: str) -> tuple[float, float, float]:
        summary = self.results.arch(name).metrics[metric]
        return (summary.mean, *summary.ci)

    def held_out(self, name: str, metric: str) -> float | None:
        """The fold ensemble's ``metric`` on the held-out split (at 0.5 or argmax), where it was scored."""
        scores = self.results.heldout.get(name)
        return scores["ensemble"][0]["metrics"][metric] if scores else None


def load_runs(paths: list[Path]) -> list[ComparedRun]:
    if len(paths) < 2:
        raise UsageError("benchmark compare: give two or more run folders (the --out folders of benchmark run).")
    runs = [read_run(RunFolder(Path(path)), chr(ord("A") + i)) for i, path in enumerate(paths)]
    check_same_task(runs)
    return runs


def read_run(folder: RunFolder, label: str) -> ComparedRun:
    """The run folder's results (:func:`benchmark.evaluation.results.read` checks their shape) and folds; the
    paired tests read folds.csv's ranking metric; a file of the wrong shape is a UsageError naming it."""
    results = read(folder)
    if results.ok and results.rank_by not in results.folds.columns:
        raise folder.damaged(folder.folds_table, f"no column {results.rank_by}")
    if not isinstance(results.config.get("settings", {}), dict):
        raise folder.damaged(folder.config, "its settings are not an object")
    splits = read_json(folder.splits)  # unreadable: as if missing, so no paired test
    return ComparedRun(label, results, splits.get("folds") if isinstance(splits, dict) else None)


def check_same_task(runs: list[ComparedRun]) -> None:
    """Runs on other classes score another task: their metrics cannot be set side by side."""
    if len({r.classes for r in runs}) > 1:
        raise UsageError(
            "benchmark compare: the runs are on different classes — "
            + "; ".join(f"{r.label} {r.folder.path}: {', '.join(r.classes)}" for r in runs)
            + ". Their metrics measure different tasks; compare runs on the same classes."
        )


def compare_sections(runs: list[ComparedRun], figure: Path) -> list[Section]:
    metric = runs[0].rank_by
    names = [n for n in runs[0].finished if all(n in r.finished for r in runs[1:])]
    if not names:
        raise UsageError(
            "benchmark compare: the runs share no finished architecture — "
            + "; ".join(f"{r.label} {r.folder.path}: {', '.join(r.finished) or 'none'}" for r in runs)
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
        *settings_parts(runs),
    ]
    return [
        Section("Runs and what differs", intro),
        Section("Ranking metric and held-out figures", [*notes(runs, names), metric_table(runs, names, metric)]),
        Section("Paired comparisons between runs", paired_parts(runs, names, metric)),
    ]


def notes(runs: list[ComparedRun], names: list[str]) -> list[str]:
    """What the comparison leaves out or changes: said, never silent."""
    parts = []
    if len({r.rank_by for r in runs}) > 1:
        ranked = ", ".join(f"{r.label} by {r.rank_by}" for r in runs)
        parts.append(
            f"The runs were ranked by different metrics ({ranked}); every run is compared here on "
            f"{runs[0].rank_by}, the first run's. Put first the run whose metric you want."
        )
    left_out = [f"{r.label}: {', '.join(n for n in r.finished if n not in names)}" for r in runs
                if any(n not in names for n in r.finished)]  # fmt: skip
    if left_out:
        parts.append(f"Compared: the architectures every run finished. Left out: {'; '.join(left_out)}.")
    return parts


def settings_parts(runs: list[ComparedRun]) -> list:
    """The settings that differ between the runs: a table of those that can change a number, then a sentence
    naming those that cannot (tracking, TensorBoard, which Grad-CAM figures are drawn)."""
    keys = sorted({k for r in runs for k in r.settings} - IGNORED_SETTINGS)
    differing = [k for k in keys if len({repr(r.settings.get(k)) for r in runs}) > 1]
    rows = [[k, *(str(r.settings.get(k, "—")) for r in runs)] for k in differing if k not in NO_NUMBER_SETTINGS]
    caption = "Settings that differ between the runs." if rows else "The runs have the same settings."
    parts: list = [Table(["setting", *(r.label for r in runs)], rows, caption=caption)]
    apart = [f"{k} ({', '.join(f'{r.label} {r.settings.get(k, chr(8212))}' for r in runs)})"
             for k in differing if k in NO_NUMBER_SETTINGS]  # fmt: skip
    if apart:
        parts.append(f"Differ too, but change no number (what the runs mirrored or drew): {'; '.join(apart)}.")
    return parts


def metric_table(runs: list[ComparedRun], names: list[str], metric: str) -> Table:
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


def paired_parts(runs: list[ComparedRun], names: list[str], metric: str) -> list:
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
            a, b = (r.results.arch(n).metrics[metric].folds for r in (other, base))
            test = asdict(corrected_ttest(a, b, base.results.arch(n).test_fraction))
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
        parts.append(ranking_sentence(base, other, names, metric, sum(float(row[-1]) < 0.05 for row in rows)))
    return parts


def ranking_sentence(base: ComparedRun, other: ComparedRun, names: list[str], metric: str, significant: int) -> str:
    """Whether the second run ranks the architectures as the first does (say so where one is tuned and the other
    not: then it says whether tuning changed the ranking)."""
    means = [{n: r.results.arch(n).metrics[metric].mean for n in names} for r in (base, other)]
    change = ranking_change(*means, metric)
    tuned = [r.label for r in (base, other) if r.settings.get("tune")]
    what = "Does the ranking change"
    if len(tuned) == 1:
        untuned = other.label if tuned[0] == base.label else base.label
        spec = (base if tuned[0] == base.label else other).settings["tune"]
        what = f"Did tuning change the ranking ({tuned[0]} is tuned, --tune {spec}; {untuned} is not)"
    held_out = []  # each run's CV ranking against its own held-out figures, over these architectures
    for r, cv in zip((base, other), means, strict=True):
        test = {n: r.held_out(n, metric) for n in names}
        if all(v is not None for v in test.values()):
            held_out.append(f"{r.label} {ranking_change(cv, test, metric)['kendall_tau']:.2f}")
    winner = "the same winner" if change["same_winner"] else f"the winner changes from {change['order'][0][0]} to " \
        f"{change['order'][1][0]}"  # fmt: skip
    return (
        f"{what}? {base.label} ranks {', '.join(change['order'][0])}; {other.label} ranks "
        f"{', '.join(change['order'][1])}: Kendall's τ = {change['kendall_tau']:.2f} between the two CV rankings, "
        f"{winner}; {significant} of {len(names)} paired differences above have p < 0.05 (uncorrected for the "
        f"{len(names)} tests)."
        + (
            f" Kendall's τ between each run's CV ranking and its test-split figures, over these {len(names)}: "
            f"{', '.join(held_out)}."
            if held_out
            else ""
        )  # fmt: skip
    )


def same_folds(a: ComparedRun, b: ComparedRun) -> bool:
    return a.splits is not None and a.splits == b.splits


def write_compare(paths: list[Path], out: Path | None = None) -> tuple[str, Path]:
    """Compare the runs; write ``out/compare.html`` (and its figure under ``out/compare_files``); ``out`` by
    default ``reports/compare-<run>-<run>...``, named after the run folders."""
    runs = load_runs(paths)
    out = Path(out) if out else Path("reports") / "-".join(["compare", *(r.folder.path.resolve().name for r in runs)])
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"compare --out {out}: a file, not a folder. Give a folder for compare.html (made if missing)."
        )
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
