"""The report, built from a checked-in run folder (tests/fixtures/run/, made by tests/fixtures/make_run.py
from real images) without training: sections, numbers traced to the saved files, escaping, figures."""

import html
import json
import re
import shlex
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.evaluation.heldout import bootstrap_intervals
from benchmark.evaluation.metrics import binary_metrics, oof_thresholds
from benchmark.evaluation.results import read
from benchmark.report.leaderboard import leaderboard_md, leaderboard_text
from benchmark.report.render import Figure, Section, Table, to_html, to_markdown
from benchmark.report.sections import build_sections
from benchmark.store.runfolder import RunFolder
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "run"
SECTIONS = [
    "1. Summary",
    "2. Leaderboard",
    "3. Per-fold detail",
    "4. Statistical comparison",
    "5. Loss curves and diagnostics",
    "6. Out-of-fold curves",
    "7. Held-out test (not used for ranking)",
    "8. Does the ranking transfer?",
    "9. Grad-CAM",
    "10. Reproduce",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The fixture run folder, copied, with its report written by `benchmark report`."""
    folder = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(FIXTURE, folder)
    assert main(["report", str(folder)]) == 0
    return {
        "folder": RunFolder(folder),
        "md": (folder / "report.md").read_text(),
        "html": (folder / "report.html").read_text(),
        "results": json.loads((folder / "results.json").read_text()),
    }


def table_rows(markdown: str, start: str, end: str) -> list[list[str]]:
    part = markdown[markdown.index(start) : markdown.index(end)]
    return [[c.strip() for c in line.strip("|").split("|")] for line in part.splitlines() if line.startswith("| ")]


def test_every_section_is_in_both_renderings_in_order(report):
    positions = [report["md"].index(f"## {title}") for title in SECTIONS]
    assert positions == sorted(positions)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in report["html"]
    # forest, folds, loss curves, curve bars, CD diagram, OOF roc/pr, reliability, test roc/pr, the winner's Grad-CAM
    assert report["html"].count("src='data:image/png;base64,") == 9
    assert "http://" not in report["html"] and "https://" not in report["html"]


def test_the_leaderboard_cells_are_the_saved_fold_values_with_their_interval(report):
    rows = table_rows(report["md"], "## 2. Leaderboard", "## 3. Per-fold")
    for entry in (e for e in report["results"]["architectures"] if e["status"] == "ok"):
        folds = [json.loads(report["folder"].metrics(entry["name"], i).read_text()) for i in range(3)]
        f1 = [f["metrics"]["f1"] for f in folds]
        row = next(r for r in rows if r[1] == entry["name"] and len(r) > 3)  # the first table: f1's group
        cell = row[2]  # rank, architecture, then the ranking metric
        assert cell.startswith(f"{np.mean(f1):.3f} ± {np.std(f1, ddof=1):.3f} [")


def test_summary_names_the_winner_and_the_failure(report):
    winner = report["results"]["architectures"][0]
    m = winner["metrics"]["f1"]
    assert f"Winner on f1: {winner['name']} ({m['mean']:.3f} ± {m['std']:.3f})." in report["md"]
    assert "Failed: zz_broken: fold 1: build failed: ValueError: this builder is broken on purpose" in report["md"]


def test_user_strings_are_escaped_in_both_renderings(report):
    for text in (report["md"], report["html"]):
        assert "<script>" not in text and "&lt;script&gt;alert(" in text


def test_held_out_rows_and_their_intervals_are_recomputed_from_the_saved_test_predictions(report):
    oof = pd.read_csv(report["folder"].oof)
    rows = table_rows(report["md"], "## 7. Held-out test", "Each fold model alone")
    folder = report["folder"]
    for name in oof.arch.unique():
        tests = [pd.read_csv(folder.test_predictions(name, i)) for i in range(3)]
        labels, ensemble = tests[0].label.to_numpy(), np.mean([t.probability for t in tests], axis=0)
        part = oof[oof.arch == name]
        for rule, t in oof_thresholds(part.label, part.probability).items():
            m, ci = binary_metrics(labels, ensemble, t), bootstrap_intervals(labels, ensemble, t)
            label = f"{t:.3f}" if rule == "0.5" else f"{t:.3f} ({rule})"
            cells = [f"{m[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" for k in ("accuracy", "precision")]
            assert [name, label, *cells] in [r[:4] for r in rows]


def test_dataset_words_come_from_the_run_not_the_code(report, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    results = json.loads((folder / "results.json").read_text())
    results["run"]["classes"]["positive"] = "COVID"
    (folder / "results.json").write_text(json.dumps(results))
    markdown = to_markdown(build_sections(read(RunFolder(folder))), "t", folder)
    assert "observed COVID rate" in markdown and "P(COVID)" in markdown and "PNEUMONIA rate" not in markdown


def test_the_leaderboard_file_is_rebuilt_byte_for_byte_from_results_json(report):
    results = read(report["folder"])
    assert leaderboard_md(results.info, leaderboard_text(results)) == report["folder"].leaderboard.read_text()


def test_renderers_escape_and_lay_out_parts():
    section = Section(
        "A <b>", ["x | y", Table(["h|1"], [["1.000 [0.9, 1.0]"]], caption="c"), Figure(ROOT / "f.png", "f")]
    )
    markdown = to_markdown([section], "T", ROOT)
    assert "## 1. A &lt;b&gt;" in markdown and "h\\|1" in markdown and "![f](f.png)" in markdown
    page = to_html([Section("A <b>", ["x | y", Table(["h"], [["1.000 [0.9, 1.0]"]])])], "T")
    assert "<h2>1. A &lt;b&gt;</h2>" in page and "<td class='num'>1.000<br><small>[0.9, 1.0]</small></td>" in page


def test_report_of_a_folder_without_results_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no readable results.json" in capsys.readouterr().err


def test_the_transfer_section_and_the_summary_say_whether_the_ranking_holds(report):
    transfer = report["results"]["transfer"]
    summary = report["md"].split("## 2. Leaderboard")[0]
    winner = transfer["architectures"][0]
    assert transfer["cv_winner"] == winner
    assert f"the CV winner {winner} scores f1 {transfer['test'][0]:.3f}" in summary
    assert ("DISAGREE" in summary) == (transfer["verdict"] == "disagree")
    rows = table_rows(report["md"], "## 8. Does the ranking transfer?", "## 9. Grad-CAM")
    columns = (transfer["architectures"], transfer["cv"], transfer["test"], transfer["gap"])
    for name, cv, test, gap in zip(*columns, strict=True):
        assert [name, f"{cv:.3f}", f"{test:.3f}", f"{gap:+.3f}"] in [r[:4] for r in rows]
    assert f"Kendall's τ = {transfer['kendall_tau']:.2f}" in report["md"]


def test_the_paired_comparisons_against_the_cv_winner_are_saved_and_shown(report):
    """12 test images: the test split's winner (pyramid_up, +0.094 F1) is not evidence against the CV winner;
    the saved comparisons, recomputed from the test predictions, are in section 8 and the summary's sentence."""
    transfer, folder = report["results"]["transfer"], report["folder"]
    test = dict(zip(transfer["architectures"], transfer["test"], strict=True))
    labels = pd.read_csv(folder.test_predictions("separable", 0)).label.to_numpy()
    for name in transfer["architectures"]:
        runs = [pd.read_csv(folder.test_predictions(name, i)) for i in range(3)]
        assert binary_metrics(labels, np.mean([r.probability for r in runs], axis=0))["f1"] == pytest.approx(test[name])
    assert transfer["test_winner"] == "pyramid_up" and not transfer["same_winner"]
    assert transfer["verdict"] == "unresolved"  # the rule before issue 21 said 'disagree' here
    rows = table_rows(report["md"], "Each architecture against the CV winner", "The verdict claims")
    paired = transfer["paired"]
    assert [c["architecture"] for c in paired] == ["pyramid_up", "baseline"]
    ps = [c["p"] for c in paired]
    assert [c["p_holm"] for c in paired] == pytest.approx([min(1, max(ps) * 1), min(ps) * 2])  # Holm over two
    for c in paired:
        assert c["difference"] == pytest.approx(test[c["architecture"]] - test["separable"])
        assert c["ci"][0] < 0 < c["ci"][1] and not c["beats_cv_winner"]
        assert [
            c["architecture"],
            f"{test[c['architecture']]:.3f}",
            f"{c['difference']:+.3f}",
            f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]",
            f"{c['p']:.3g}",
            f"{c['p_holm']:.3g}",
            "no",
        ] in rows
    summary = report["md"].split("## 2. Leaderboard")[0]
    up = paired[0]
    assert "this test split does not resolve whether the CV ranking holds" in summary
    assert (
        f"the best of the others, pyramid_up, leads it by {up['difference']:+.3f} f1 (95 % paired bootstrap interval "
        f"[{up['ci'][0]:+.3f}, {up['ci'][1]:+.3f}], Holm-adjusted p = {up['p_holm']:.3g} over 2 comparisons)"
    ) in summary


def test_an_older_runs_transfer_verdict_is_recomputed_under_todays_rule(tmp_path):
    """A results.json saved before the paired tests (here the fixture's own, as the old rule wrote it:
    'disagree' because the test split has another winner) is reported with today's verdict."""
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    results = json.loads((folder / "results.json").read_text())
    old = {k: v for k, v in results["transfer"].items() if k not in ("cv_winner", "test_winner", "alpha", "paired")}
    results["transfer"] = {**old, "verdict": "disagree"}
    (folder / "results.json").write_text(json.dumps(results))
    assert main(["report", str(folder)]) == 0
    summary = (folder / "report.md").read_text().split("## 2. Leaderboard")[0]
    assert "DISAGREE" not in summary and "this test split does not resolve" in summary


HOSTILE_ARGS = [
    "run",
    "--data",
    "/data/chest x-ray's",
    "--label-from",
    "_(bacteria|virus)_",
    "--archs",
    'baseline,"quoted"',
    "--out",
    "runs/a<b>&c;$HOME`id`",
    "--note",
    "```",
]


def test_the_reproduce_command_pastes_into_bash_as_the_exact_argv(tmp_path):
    """The command in report.md, run by bash, calls the program with exactly the saved arguments (a stand-in
    program, in a folder with a space, prints them); shlex reads the same; report.html shows it verbatim."""
    program = tmp_path / "my tools" / "benchmark"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nprintf '%s\\0' \"$@\"\n")
    program.chmod(0o755)
    argv = [str(program), *HOSTILE_ARGS]
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "argv": argv}))
    assert main(["report", str(folder)]) == 0
    section = (folder / "report.md").read_text().split("## 10. Reproduce")[1]
    fence = re.search(r"^(`{3,})$", section, re.M).group(1)
    command = section.split(fence)[1][1:-1]  # the fenced block, verbatim, between its two fence lines
    assert shlex.split(command) == argv
    printed = subprocess.run(["bash", "-c", command], capture_output=True, check=True).stdout
    assert printed.decode().split("\0")[:-1] == HOSTILE_ARGS
    page = (folder / "report.html").read_text()
    assert f"<pre><code>{html.escape(command)}</code></pre>" in page


def test_the_report_opens_with_the_forest_plot(report):
    summary = report["md"].split("## 1. Summary")[1].split("\n\n")[1]
    assert summary.startswith("![f1 of each architecture, best on top") and "report_files/forest.png" in summary
    assert (report["folder"].figures / "forest.png").stat().st_size > 5_000
