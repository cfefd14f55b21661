"""The report's and compare's figures at 2, 8 and 30 architectures: drawn headless (Agg) from the checked-in
run folder (tests/fixtures/run/, real images) widened to that many architectures, each figure is checked
where matplotlib lays it out: its size, no text box over another or outside the figure, no legend over
the data, no marker cut by the frame, integer epochs, and a panel of zeros still shows its values."""

import copy
import functools
import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.text import Text
from PIL import Image

from benchmark.cli import main
from benchmark.data.images import decode
from benchmark.evaluation.comparison import pairwise_comparison, rank
from benchmark.evaluation.results import completed, read
from benchmark.report import plots
from benchmark.store.files import write_json
from benchmark.store.runfolder import RunFolder
from tests.conftest import REAL_224, ROOT

pytestmark = pytest.mark.realdata
FIXTURE = ROOT / "tests" / "fixtures" / "run"
SOURCES = ["separable", "pyramid_up", "baseline"]  # the fixture's trained architectures
NAMES = [  # the registry's and Keras's names, short and long
    "baseline", "separable", "pyramid_up", "pyramid_down", "pyramid_bn_gap", "baseline_bn_dropout", "densenet121",
    "efficientnet_v2_b0", "mobilenet_v3_small", "resnet50_v2", "convnext_tiny", "inception_resnet_v2", "xception",
    "nasnet_mobile", "vgg16", "baseline_batchnorm", "baseline_dropout", "efficientnet_b0", "mobilenet_v2",
    "resnet101_v2", "densenet169", "regnet_x002", "regnet_y002", "efficientnet_v2_s", "convnext_small",
    "mobilenet_v3_large", "resnet152_v2", "densenet201", "vgg19", "inception_v3",
]  # fmt: skip
MAX_PIXELS = (1600, 4200)  # width, height: a figure a report page can show


def widened(dest, names: list[str]):
    """The fixture run folder with ``names`` for architectures, each one of the fixture's trained ones
    (its fold folders, fold rows and out-of-fold predictions, cycled), and results.json recomputed for
    them as the runner would: ranks and the paired comparison here, each one's held-out tables its source's
    (the same saved predictions), the transfer by the reader's own completion. The first architecture's
    curves stop at epoch 2."""
    shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns(*SOURCES))
    results = copy.deepcopy(fixture_results())
    saved = {e["name"]: e for e in results["architectures"]}
    folds, oof = pd.read_csv(FIXTURE / "folds.csv"), pd.read_csv(FIXTURE / "oof.csv")
    entries, fold_rows, oof_rows, sources = [], [], [], [SOURCES[i % len(SOURCES)] for i in range(len(names))]
    for i, (name, source) in enumerate(zip(names, sources, strict=True)):
        shutil.copytree(FIXTURE / source, dest / name)
        if i == 0:  # stopped early after two epochs: its curves span epochs 1 and 2
            for history in (dest / name).glob("fold-*/history.csv"):
                pd.read_csv(history).head(2).to_csv(history, index=False)
        entries.append({**saved[source], "name": name})
        fold_rows.append(folds[folds.arch == source].assign(arch=name))
        oof_rows.append(oof[oof.arch == source].assign(arch=name))
    entries = rank(entries + [saved["zz_broken"]], results["run"]["rank_by"])
    folds, oof = pd.concat([*fold_rows, folds[folds.arch == "zz_broken"]]), pd.concat(oof_rows)
    folds.to_csv(dest / "folds.csv", index=False)
    oof.to_csv(dest / "oof.csv", index=False)
    comparison = pairwise_comparison(entries, folds.to_dict("records"), results["run"]["rank_by"])
    tables = {k: {n: results[k][s] for n, s in zip(names, sources, strict=True)} for k in ("heldout", "oof_scores")}
    results = {"run": results["run"], "architectures": entries, "comparison": comparison, "transfer": {}, **tables}
    write_json(dest / "results.json", completed(results, RunFolder(dest), oof))  # the transfer
    return dest


@functools.cache
def fixture_results() -> dict:
    """The fixture's results.json, completed (its held-out tables computed once for the module)."""
    folder = RunFolder(FIXTURE)
    saved = folder.read_results()
    return completed(saved["results"], folder, saved["oof"])


def gradcam_of(folder, name: str, kinds: list[str]) -> None:
    """A Grad-CAM panel for ``name`` over real test images (the heat map here is the image's own brightness:
    only the layout is under test)."""
    paths = sorted((REAL_224 / "test" / "PNEUMONIA").glob("*.jpeg"))[: len(kinds)]
    pixels = np.stack([decode(p, 32, 1) for p in paths])
    np.savez(folder / name / "gradcam.npz", pixels=pixels, heatmaps=pixels[..., 0] / 255.0, kinds=np.array(kinds),
             paths=np.array([p.name for p in paths]), labels=np.ones(len(kinds), int),
             probabilities=np.linspace(0.05, 0.95, len(kinds)), layer=np.array("conv2d_2"))  # fmt: skip


@dataclass
class Drawn:
    """A figure as saved: the PNG, and every text box matplotlib drew in it (after its layout)."""

    fig: object
    png: Path
    boxes: dict = field(default_factory=dict)  # id(text) -> (text, window extent)


@pytest.fixture
def drawn(monkeypatch):
    """Every figure the report code saves, by ``<folder>/<name>`` (report_files/forest, compare_files/forest)."""
    figures, by_fig, save, draw = {}, {}, plots._save, Text.draw

    def text_draw(text, renderer):  # what was drawn, not every Text object (hidden axes keep theirs)
        draw(text, renderer)
        fig = text.get_figure(root=True)
        if fig in by_fig and text.get_visible() and text.get_text().strip():
            by_fig[fig].boxes[id(text)] = (text, text.get_window_extent(renderer))

    def keep(fig, path):
        by_fig[fig] = figures[f"{path.parent.name}/{path.stem}"] = Drawn(fig, path)
        saved = save(fig, path)  # closes the figure after drawing it at the PNG's resolution
        by_fig[fig].boxes.clear()
        FigureCanvasAgg(fig).draw()  # again, at the figure's own resolution, in which its frames are measured
        return saved

    monkeypatch.setattr(Text, "draw", text_draw)
    monkeypatch.setattr(plots, "_save", keep)
    return figures


def overlaps(a, b, slack: float = 1.0) -> bool:
    return a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1 and b.y0 + slack < a.y1


def markers(ax) -> list[tuple[float, float, float]]:
    """(x, y, radius) in display pixels of each marker drawn in ``ax`` (lines with markers, scatter points)."""
    dpi = ax.figure.dpi
    found = []
    for line in ax.lines:
        if line.get_marker() not in (None, "None", "", " ") and len(line.get_xdata()):
            xy = ax.transData.transform(np.column_stack(line.get_data()))
            found += [(x, y, line.get_markersize() * dpi / 72 / 2) for x, y in xy]
    for c in ax.collections:
        if isinstance(c, PathCollection) and len(c.get_offsets()):
            radius = np.sqrt(c.get_sizes().max()) * dpi / 72 / 2
            found += [(x, y, radius) for x, y in c.get_offset_transform().transform(c.get_offsets())]
    return found


def data_points(ax, step: float = 3.0) -> np.ndarray:
    """Display positions along everything plotted in ``ax`` (lines and error bars, every ``step`` pixels)."""
    paths = [ax.transData.transform(np.column_stack(line.get_data())) for line in ax.lines if len(line.get_xdata())]
    paths += [
        ax.transData.transform(s) for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()
    ]
    points = [np.array([(x, y) for x, y, _ in markers(ax)]).reshape(-1, 2)]
    for xy in paths:
        xy = xy[np.isfinite(xy).all(axis=1)]
        for a, b in zip(xy[:-1], xy[1:], strict=True):
            n = max(2, int(np.hypot(*(b - a)) / step))
            points.append(a + np.linspace(0, 1, n)[:, None] * (b - a))
        points.append(xy)
    return np.concatenate(points)


def check(figure: Drawn) -> list[str]:
    """What is wrong with the saved ``figure``, in words (empty when it fits)."""
    fig, renderer = figure.fig, figure.fig.canvas.get_renderer()
    with Image.open(figure.png) as png:
        width, height = png.size
    problems = [] if width <= MAX_PIXELS[0] and height <= MAX_PIXELS[1] else [f"{width} × {height} px"]
    page, boxes = fig.bbox, list(figure.boxes.values())
    for t, box in boxes:
        if box.x0 < page.x0 - 1 or box.x1 > page.x1 + 1 or box.y0 < page.y0 - 1 or box.y1 > page.y1 + 1:
            problems.append(f"{t.get_text()!r} cut by the figure's edge")
    for (s, a), (t, b) in itertools.combinations(boxes, 2):
        if overlaps(a, b):
            problems.append(f"{s.get_text()!r} over {t.get_text()!r}")
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        legend, frame = ax.get_legend(), ax.get_window_extent(renderer)
        if legend is not None:
            box = legend.get_window_extent(renderer)
            inside = [(x, y) for x, y in data_points(ax) if box.x0 < x < box.x1 and box.y0 < y < box.y1]
            if inside:
                problems.append(f"{ax.get_title()!r}: the legend covers {len(inside)} plotted points")
        air = [(x, y, r + 3) for x, y, r in markers(ax)]  # a marker and 3 px of air inside the frame
        cut = [
            (x, y) for x, y, a in air if not (frame.x0 + a <= x <= frame.x1 - a and frame.y0 + a <= y <= frame.y1 - a)
        ]
        if cut:
            problems.append(f"{ax.get_title() or ax.get_xlabel()!r}: {len(cut)} markers on or past the frame")
        if ax.get_xlabel() == "epoch":
            labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
            if not all(label.lstrip("−-").isdigit() for label in labels):
                problems.append(f"{ax.get_title()!r}: epochs labelled {labels}")
    return problems


@pytest.mark.parametrize("n", [2, 8, 30])
def test_the_reports_and_compares_figures_fit_at_any_count(n, drawn, tmp_path, capsys):
    names = NAMES[:n]
    a = widened(tmp_path / "a", names)
    b = shutil.copytree(a, tmp_path / "b")  # a second run on the same folds
    winner = json.loads((a / "results.json").read_text())["architectures"][0]["name"]
    gradcam_of(a, winner, ["true positive", "true negative", "false positive", "false negative"] * 2)
    assert main(["report", str(a)]) == 0
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "compare")]) == 0
    capsys.readouterr()
    report = {"forest", "folds", "loss_curves", "curve_bars", "roc_pr", "reliability", f"gradcam-{winner}"}
    report |= {"cd"} if n > 2 else set()  # Friedman's ranks need three
    assert {f"report_files/{name}" for name in report} | {"compare_files/forest"} <= set(drawn)
    problems = {name: check(figure) for name, figure in drawn.items()}
    assert not any(problems.values()), "\n".join(f"{k}: {len(p)}: {p[:4]}" for k, p in problems.items() if p)


def test_a_gradcam_panel_of_three_classes_keeps_its_titles_apart(drawn, tmp_path):
    kinds = ["bacteria, right", "bacteria, taken for virus", "NORMAL, taken for bacteria", "virus, taken for NORMAL"]
    paths = sorted((REAL_224 / "test" / "NORMAL").glob("*.jpeg"))[:8]
    pixels = np.stack([decode(p, 56, 3) for p in paths])
    panel = {"pixels": pixels, "heatmaps": pixels[..., 0] / 255.0, "kinds": np.array(kinds * 2),
             "probabilities": np.linspace(0.4, 0.99, 8)}  # fmt: skip
    plots.gradcam_panel(panel, "P(predicted)", tmp_path / "gradcam.png")
    assert check(drawn[f"{tmp_path.name}/gradcam"]) == []


def test_a_panel_whose_values_are_all_zero_still_shows_them(drawn, tmp_path):
    """Oscillation 0 for every architecture (every curve fell steadily) is a finding, not an empty panel."""
    folder = RunFolder(shutil.copytree(FIXTURE, tmp_path / "run"))
    entries = read(folder).ok
    for e in entries:
        e.curves["oscillation"]["mean"] = 0.0
    plots.curve_bars(entries, 0.3, tmp_path / "curve_bars.png")
    fig = drawn[f"{tmp_path.name}/curve_bars"].fig
    oscillation = next(ax for ax in fig.axes if ax.get_title() == "Oscillation")
    shown = np.array([(x, y) for x, y, _ in markers(oscillation)])
    assert len(shown) == len(entries) and np.allclose(oscillation.transData.inverted().transform(shown)[:, 0], 0)
    assert check(drawn[f"{tmp_path.name}/curve_bars"]) == []


def test_a_forest_plot_of_two_wide_intervals_keeps_its_legend_and_markers_clear(drawn, tmp_path):
    """Two architectures whose intervals span the axis and held-out figures at its ends (as a small run
    gives): no corner is free for the legend, and the outer markers sit at the axis' limits."""
    plots.forest([("separable", 0.71, 0.05, 1.0, 1.0), ("baseline", 0.33, 0.0, 0.95, 0.0)], "f1", tmp_path / "f.png")
    assert check(drawn[f"{tmp_path.name}/f"]) == []
