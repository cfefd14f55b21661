"""Stage 6 — reporting across runs: ``benchmark compare RUN_A RUN_B ...``.

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
from benchmark.files import read_json, write_text
from benchmark.heldout import fold_ensemble, read_heldout
from benchmark.metrics import clip_to_range, metric_value
from benchmark.render import Figure, Section, Table, to_html, to_markdown
from benchmark.runfolder import RunFolder
from benchmark.statistics import corrected_ttest, mean_ci

IGNORED_SETTINGS = {"out", "overwrite", "quiet", "jobs", "backend", "scheduler", "cache_dir", "arch_modules"}


@dataclass
class Run:
    label: str  # "A", "B", ...
    folder: RunFolder
    results: dict
    settings: dict
    splits: dict | None

    @property
    def entries(self) -> dict[str, dict]:
        return {e["name"]: e for e in self.results["architectures"] if e["status"] == "ok"}

    def interval(self, name: str, metric: str) -> tuple[float, float, float]:
        entry = self.entries[name]
        fraction = entry.get("test_fraction", 1 / (self.results["run"]["folds"] - 1))
        mean, low, high = mean_ci(entry["metrics"][metric]["folds"], fraction)
        return (mean, *clip_to_range(metric, low, high))

    def held_out(self, name: str) -> float | None:
        """The fold ensemble's ranking metric on the held-out split, from the saved test predictions."""
        info = self.results["run"]
        runs = read_heldout(self.folder, name, info["folds"] * info.get("repeats", 1))
        if runs is None:
            return None
        return metric_value(runs[0].label.to_numpy(), fold_ensemble(runs), info["rank_by"])


def load_runs(paths: list[Path]) -> list[Run]:
    if len(paths) < 2:
        raise UsageError("benchmark compare: give two or more run folders (the --out folders of benchmark run).")
    runs = []
    for i, path in enumerate(paths):
        folder = RunFolder(Path(path))
        saved = folder.read_results()  # a UsageError naming the folder when it holds no results
        settings = (saved["config"] or {}).get("settings", {})
        runs.append(Run(chr(ord("A") + i), folder, saved["results"], settings, read_json(folder.splits)))
    return runs


def compare_sections(runs: list[Run], figure: Path) -> list[Section]:
    metric = runs[0].results["run"]["rank_by"]
    names = [n for n in runs[0].entries if all(n in r.entries for r in runs[1:])]
    from benchmark import plots

    rows = [(n, r.label, *r.interval(n, metric), r.held_out(n)) for n in names for r in runs]
    intro = [
        Figure(
            plots.forest_runs(rows, metric, figure),
            f"{metric} per architecture and run: the CV mean with its "
            "corrected 95 % interval; the diamond is the held-out test split where the run has one.",
        ),  # fmt: skip
        Table(["run", "folder"], [[r.label, str(r.folder.path)] for r in runs]),
        settings_table(runs),
    ]
    return [
        Section("1. Runs and what differs", intro),
        Section("2. Ranking metric and held-out figures", [metric_table(runs, names, metric)]),
        Section("3. Paired comparisons between runs", paired_parts(runs, names, metric)),
    ]


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
            test = r.held_out(n)
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
            a, b = (r.entries[n]["metrics"][metric]["folds"] for r in (other, base))
            test = asdict(corrected_ttest(a, b, base.entries[n].get("test_fraction")))
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
    return a.splits is not None and b.splits is not None and a.splits.get("folds") == b.splits.get("folds")


def write_compare(paths: list[Path], out: Path) -> tuple[str, Path]:
    """Compare the runs; write ``out/compare.html`` (and its figure under ``out/compare_files``)."""
    runs = load_runs(paths)
    figures = Path(out) / "compare_files"
    figures.mkdir(parents=True, exist_ok=True)
    sections = compare_sections(runs, figures / "forest.png")
    title = "CNN benchmark comparison — " + ", ".join(r.folder.path.name for r in runs)
    page = Path(out) / "compare.html"
    write_text(page, to_html(sections, title))
    return to_markdown(sections, title, Path(out)), page
