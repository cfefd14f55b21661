"""End to end on the real chest X-rays: a small run (32 px, 60 images, 3 folds, 2 epochs)
checked file by file, then resumed, killed and resumed, and run under the JAX backend."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn import metrics as skm

from benchmark.cli import main
from benchmark.data.images import discover, load_images
from benchmark.evaluation.metrics import METRICS, binary_metrics, max_f1_threshold, oof_thresholds, youden_threshold
from benchmark.inference.gradcam import pick
from benchmark.inference.predict import tta_views
from benchmark.training.fit import ArchitectureError, Validate, load_fold_model
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

ARGS = ["--folds", "3", "--epochs", "2", "--image-size", "32", "--rank-by", "roc_auc", "--patience", "2"]
BROKEN = textwrap.dedent("""
    from architectures import register

    @register("zz_broken", description="<script>alert('raises while building')</script>")
    def build(input_shape):
        raise ValueError("this builder is broken on purpose")
""")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return link_kaggle_subset(tmp_path_factory.mktemp("kaggle"), {"NORMAL": 24, "PNEUMONIA": 36}, test_per_class=6)


def run_argv(data, base, archs, *extra):
    """``benchmark run`` arguments for a small run on ``data``, its folders under ``base``."""
    folders = ["--out", str(base / "out"), "--cache-dir", str(base / "cache")]
    return ["run", "--data", str(data), *folders, "--archs", archs, *extra]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """One run of two real architectures and one broken one; what ``Model.fit`` received is kept."""
    base = tmp_path_factory.mktemp("run")
    broken = base / "broken.py"
    broken.write_text(BROKEN)
    argv = run_argv(data, base, "baseline,pyramid_up,zz_broken", "--arch-module", str(broken), *ARGS)
    fits, real_fit = [], keras.Model.fit

    def spy(model, *args, **kwargs):
        fits.append({"args": args, **kwargs})
        return real_fit(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "fit", spy)
        code = main(argv)
    return {"argv": argv, "code": code, "out": base / "out", "data": data, "cache": base / "cache", "fits": fits}


def read(path):
    return json.loads(Path(path).read_text())


def test_run_folder_is_complete(run):
    out = run["out"]
    assert run["code"] == 1  # zz_broken failed; the others completed
    for name in ("config.json", "splits.json", "folds.csv", "oof.csv", "results.json", "leaderboard.md"):
        assert (out / name).is_file(), name
    for arch in ("baseline", "pyramid_up"):
        for i in range(3):
            fold = out / arch / f"fold-{i}"
            files = {"history.csv", "metrics.json", "model.keras", "predictions.csv", "test_predictions.csv"}
            assert {p.name for p in fold.iterdir()} == files
    config = read(out / "config.json")
    assert config["settings"]["image_size"] == 32 and config["run"]["backend"] == "tensorflow"
    assert config["run"]["counts"] == {"NORMAL": 24, "PNEUMONIA": 36}
    assert config["run"]["test_counts"] == {"NORMAL": 6, "PNEUMONIA": 6}
    assert {"keras", "numpy"} <= set(config["packages"])


def test_splits_are_stratified_disjoint_and_relative_to_data(run):
    splits = read(run["out"] / "splits.json")
    assert splits["k"] == 3 and len(splits["folds"]) == 3
    scored = [p for f in splits["folds"] for p in f["score"]]
    assert len(scored) == len(set(scored)) == 60
    for fold in splits["folds"]:
        parts = [set(fold[p]) for p in ("train", "val", "score")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert all((run["data"] / p).is_file() for p in fold["score"])
        assert sum("/NORMAL/" in p for p in fold["score"]) == 8  # 24 NORMAL over 3 folds
        assert sum("/PNEUMONIA/" in p for p in fold["score"]) == 12


def test_class_weights_and_bias_come_from_each_folds_fit_part(run):
    splits = read(run["out"] / "splits.json")
    for i, fold in enumerate(splits["folds"]):
        n_neg = sum("/NORMAL/" in p for p in fold["train"])
        n_pos = sum("/PNEUMONIA/" in p for p in fold["train"])
        n = n_neg + n_pos
        for arch in ("baseline", "pyramid_up"):
            record = read(run["out"] / arch / f"fold-{i}" / "metrics.json")
            assert record["class_weight"] == {"0": pytest.approx(n / (2 * n_neg)), "1": pytest.approx(n / (2 * n_pos))}
            assert record["initial_bias"] == pytest.approx(np.log(n_pos / n_neg))
            assert record["n_fit"] == n and record["seed"] == 42 + i


def test_fit_gets_the_fit_part_the_inner_split_and_the_fit_parts_class_weights(run):
    """What each fold's model was fitted on and stopped early by, checked where it acts: Model.fit's arguments."""
    splits = read(run["out"] / "splits.json")["folds"]
    dataset = discover(run["data"])
    images = load_images(dataset.root, dataset.train, 32, cache_dir=run["cache"], log=lambda m: None)
    row = {p: i for i, p in enumerate(images.paths)}

    def pixels(paths):
        return np.asarray(images.pixels[sorted(row[p] for p in paths)])

    assert len(run["fits"]) == 6  # baseline and pyramid_up × 3 folds; zz_broken fails before fitting
    for k, call in enumerate(run["fits"]):
        fold = splits[k % 3]
        assert not set(fold["val"]) & set(fold["score"]) and not set(fold["train"]) & set(fold["score"])
        np.testing.assert_array_equal(call["x"], pixels(fold["train"]))
        assert "validation_data" not in call  # the inner split is scored by Validate, after BN recalibration
        (validate,) = [c for c in call["callbacks"] if isinstance(c, Validate)]
        np.testing.assert_array_equal(validate.x_val, pixels(fold["val"]))  # early stopping watches the inner split
        expected = [float("/PNEUMONIA/" in p) for p in sorted(fold["val"], key=row.get)]
        np.testing.assert_array_equal(validate.y_val.reshape(-1), expected)
        assert set(map(bytes, validate.recalibration)) <= set(map(bytes, call["x"]))  # BN statistics from fit images
        n_pos = sum("/PNEUMONIA/" in p for p in fold["train"])
        n = len(fold["train"])
        assert call["class_weight"] == {0: pytest.approx(n / (2 * (n - n_pos))), 1: pytest.approx(n / (2 * n_pos))}


def test_every_fold_metric_is_recomputed_from_its_saved_predictions(run):
    """metrics.json against scikit-learn on predictions.csv; results.json against the metrics.json files."""
    results = read(run["out"] / "results.json")
    for entry in (e for e in results["architectures"] if e["status"] == "ok"):
        folds = []
        for i in range(3):
            pred = pd.read_csv(run["out"] / entry["name"] / f"fold-{i}" / "predictions.csv")
            y, p = pred.label.to_numpy(), pred.probability.to_numpy()
            hard = (p >= 0.5).astype(int)
            tn, fp, fn, tp = skm.confusion_matrix(y, hard, labels=[0, 1]).ravel()
            expected = {
                "accuracy": skm.accuracy_score(y, hard),
                "precision": skm.precision_score(y, hard, zero_division=0),
                "recall": skm.recall_score(y, hard, zero_division=0),
                "specificity": tn / (tn + fp),
                "f1": skm.f1_score(y, hard, zero_division=0),
                "roc_auc": skm.roc_auc_score(y, p),
                "pr_auc": skm.average_precision_score(y, p),
                "mcc": skm.matthews_corrcoef(y, hard),
                "log_loss": skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]),
            }
            record = read(run["out"] / entry["name"] / f"fold-{i}" / "metrics.json")
            assert record["metrics"]["confusion_matrix"] == [[tn, fp], [fn, tp]]
            for m, value in expected.items():
                assert record["metrics"][m] == pytest.approx(value, abs=1e-9), (entry["name"], i, m)
            folds.append(record["metrics"])
        for m in METRICS:
            values = [f[m] for f in folds]
            assert entry["metrics"][m]["folds"] == pytest.approx(values)
            assert entry["metrics"][m]["mean"] == pytest.approx(np.mean(values))
            assert entry["metrics"][m]["std"] == pytest.approx(np.std(values, ddof=1))


def test_held_out_thresholds_are_chosen_on_the_out_of_fold_predictions(run):
    """Section 7's threshold rows: the rules applied to oof.csv, then the test split scored at them."""
    oof = pd.read_csv(run["out"] / "oof.csv")
    markdown = (run["out"] / "report.md").read_text()
    heldout = markdown[markdown.index("## 7. Held-out test") : markdown.index("## 8. Does the ranking transfer?")]
    rows = [[c.strip().split(" [")[0] for c in line.strip("|").split("|")]  # each value without its interval
            for line in heldout.splitlines() if line.startswith("| ")]  # fmt: skip
    differs = False
    for name in ("baseline", "pyramid_up"):
        part = oof[oof.arch == name]
        tests = [pd.read_csv(run["out"] / name / f"fold-{i}" / "test_predictions.csv") for i in range(3)]
        labels, ensemble = tests[0].label.to_numpy(), np.mean([t.probability for t in tests], axis=0)
        saved = read(run["out"] / "results.json")["heldout"][name]["ensemble"]  # what the report formats
        assert [r["threshold"] for r in saved] == list(oof_thresholds(part.label, part.probability).values())
        for rule, t in oof_thresholds(part.label, part.probability).items():
            m = binary_metrics(labels, ensemble, t)
            label = f"{t:.3f}" if rule == "0.5" else f"{t:.3f} ({rule})"
            row = [name, label, *(f"{m[k]:.3f}" for k in ("accuracy", "precision", "recall", "specificity", "f1"))]
            assert row in [r[:7] for r in rows], row
        on_test = {max_f1_threshold(labels, ensemble), youden_threshold(labels, ensemble)}
        differs |= on_test != set(oof_thresholds(part.label, part.probability).values()) - {0.5}
    assert differs  # thresholds chosen on the test split would have given other rows


def test_the_ranking_transfer_is_computed_from_the_saved_test_predictions(run):
    from scipy import stats

    results = read(run["out"] / "results.json")
    transfer = results["transfer"]
    names = [e["name"] for e in results["architectures"] if e["status"] == "ok"]
    assert transfer["architectures"] == names and transfer["metric"] == "roc_auc"
    test = []
    for name in names:
        runs = [pd.read_csv(run["out"] / name / f"fold-{i}" / "test_predictions.csv") for i in range(3)]
        test.append(binary_metrics(runs[0].label, np.mean([r.probability for r in runs], axis=0))["roc_auc"])
    cv = [e["metrics"]["roc_auc"]["mean"] for e in results["architectures"][:2]]
    assert transfer["test"] == pytest.approx(test) and transfer["cv"] == pytest.approx(cv)
    summary = (run["out"] / "report.md").read_text().split("## 2.")[0]
    assert f"On the held-out test split the CV winner {names[0]} scores roc_auc {test[0]:.3f}" in summary
    if np.ptp(cv) == 0 or np.ptp(test) == 0:  # 12 test images: two architectures can tie, and τ is then undefined
        assert np.isnan(transfer["kendall_tau"]) and transfer["verdict"] == "tied"
        assert "neither confirm nor refute" in summary and "τ = undefined (tied scores)" in summary
        return
    assert transfer["kendall_tau"] == pytest.approx(stats.kendalltau(cv, test).statistic)
    low, high = transfer["kendall_tau_ci"]
    assert -1 <= low <= high <= 1 and transfer["verdict"] in ("agree", "unresolved", "disagree")


def test_a_failed_fold_keeps_its_traceback_named_in_the_results_and_the_report(run):
    error = run["out"] / "zz_broken" / "fold-0" / "error.txt"
    text = error.read_text()
    assert text.startswith("Traceback (most recent call last)")
    assert 'raise ValueError("this builder is broken on purpose")' in text  # the user's own line
    failed = next(e for e in read(run["out"] / "results.json")["architectures"] if e["name"] == "zz_broken")
    assert failed["error"].endswith(f"(traceback: {error})")
    assert f"(traceback: {error})" in " ".join((run["out"] / "report.md").read_text().split())


def test_raise_stops_at_the_first_failure_with_its_traceback(data, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN.replace("zz_broken", "zz_broken_raise"))  # a name the module's other run did not load
    argv = run_argv(data, tmp_path, "zz_broken_raise,baseline", "--arch-module", str(broken), *ARGS, "--raise")
    with pytest.raises(ArchitectureError, match="build failed") as raised:
        main(argv)
    assert isinstance(raised.value.__cause__, ValueError)  # the builder's own error, with its traceback
    assert not (tmp_path / "out" / "baseline").exists()  # nothing trained after it


def test_leaderboard_is_ranked_and_traceable_to_fold_files(run):
    results = read(run["out"] / "results.json")
    entries = results["architectures"]
    ok = [e for e in entries if e["status"] == "ok"]
    means = [e["metrics"]["roc_auc"]["mean"] for e in ok]
    assert means == sorted(means, reverse=True) and [e["rank"] for e in ok] == [1, 2]
    failed = entries[-1]
    assert failed["name"] == "zz_broken" and failed["status"] == "failed" and failed["rank"] is None
    assert "this builder is broken on purpose" in failed["error"]
    folds = pd.read_csv(run["out"] / "folds.csv")
    oof = pd.read_csv(run["out"] / "oof.csv")
    for e in ok:
        assert set(e["metrics"]) == set(METRICS)
        assert len(e["curves"]["epochs"]) == 3 and len(e["fit_seconds"]) == 3
        rows = folds[folds.arch == e["name"]]
        for m in METRICS:
            assert e["metrics"][m]["mean"] == pytest.approx(rows[m].mean())
            assert e["metrics"][m]["std"] == pytest.approx(rows[m].std(ddof=1))
        for i in range(3):
            pred = pd.read_csv(run["out"] / e["name"] / f"fold-{i}" / "predictions.csv")
            part = oof[(oof.arch == e["name"]) & (oof.fold == i)]
            np.testing.assert_allclose(part.probability.to_numpy(), pred.probability.to_numpy())
    board = (run["out"] / "leaderboard.md").read_text()
    assert board.index(f"| {ok[0]['name']}") < board.index(f"| {ok[1]['name']}")
    assert "zz_broken: fold 1: build failed: ValueError: this builder is broken on purpose" in board
    comparison = results["comparison"]
    assert comparison["best"] == ok[0]["name"] and comparison["metric"] == "roc_auc"
    assert f"{ok[0]['name']} vs the runner-up {ok[1]['name']} on roc_auc" in board


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


def test_reports_are_written_self_contained_and_escaped(run):
    page = (run["out"] / "report.html").read_text()
    markdown = (run["out"] / "report.md").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page and f"## {title}" in markdown
    assert "<script>" not in page and "&lt;script&gt;alert(" in page
    assert "<script>" not in markdown and "&lt;script&gt;alert(" in markdown
    assert "this builder is broken on purpose" in markdown  # the failure's reason
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    # folds, loss curves, curve bars, OOF roc/pr, reliability, test roc/pr, the winner's Grad-CAM
    # (no critical-difference diagram: Friedman's test needs three architectures)
    assert page.count("src='data:image/png;base64,") == 8
    winner = read(run["out"] / "results.json")["architectures"][0]
    figures = ["forest", "folds", "loss_curves", "curve_bars", "roc_pr", "reliability", "test_roc_pr"]
    for link in [f"report_files/{f}.png" for f in figures] + [f"report_files/gradcam-{winner['name']}.png"]:
        assert f"]({link})" in markdown and (run["out"] / link).stat().st_size > 10_000
    assert f"Winner on roc_auc: {winner['name']}" in markdown
    assert "P(practically equal)" in markdown  # scipy alone: no optional package needed
    assert "critical-difference diagram need three or more architectures" in markdown


def test_gradcam_explains_the_winner_on_test_images(run):
    winner, runner_up = [e["name"] for e in read(run["out"] / "results.json")["architectures"][:2]]
    assert not (run["out"] / runner_up / "gradcam.npz").exists()  # default --gradcam-archs winner
    with np.load(run["out"] / winner / "gradcam.npz") as panel:
        kinds, paths = list(panel["kinds"]), list(panel["paths"])
        assert panel["pixels"].shape == (len(kinds), 32, 32, 1) and panel["heatmaps"].shape == (len(kinds), 32, 32)
        assert panel["heatmaps"].min() >= 0 and panel["heatmaps"].max() <= 1
        probabilities, labels = panel["probabilities"], panel["labels"]
    # The two most confident test images of each kind of the fold ensemble (the mean of the saved test predictions).
    tests = [pd.read_csv(run["out"] / winner / f"fold-{i}" / "test_predictions.csv") for i in range(3)]
    ensemble = np.mean([t.probability for t in tests], axis=0)
    chosen = pick(tests[0].label.to_numpy(), ensemble)
    assert kinds == [k for _, k in chosen] and paths == [tests[0].path[i] for i, _ in chosen]
    assert all("/test/" in p for p in paths)
    np.testing.assert_allclose(probabilities, ensemble[[i for i, _ in chosen]], rtol=1e-6)
    for kind, label, p in zip(kinds, labels, probabilities, strict=True):
        assert (
            kind
            == {
                (1, True): "true positive",
                (0, False): "true negative",
                (0, True): "false positive",
                (1, False): "false negative",
            }[(int(label), bool(p >= 0.5))]
        )


def test_report_command_rebuilds_from_the_saved_files(run, capsys):
    (run["out"] / "report.md").unlink()
    assert main(["report", str(run["out"])]) == 0
    assert "## 4. Statistical comparison" in (run["out"] / "report.md").read_text()
    assert main(["report", str(run["out"] / "missing")]) == 2


def test_report_open_hands_the_page_to_the_browser(run, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    assert main(["report", str(run["out"]), "--open"]) == 0
    assert opened == [(run["out"] / "report.html").resolve().as_uri()]


def test_rerun_resumes_without_retraining(run, capsys):
    marker = run["out"] / "baseline" / "fold-0" / "metrics.json"
    before = marker.stat().st_mtime_ns
    results_before = read(run["out"] / "results.json")
    assert main(run["argv"]) == 1
    err = capsys.readouterr().err
    assert err.count("(saved)") == 6
    assert marker.stat().st_mtime_ns == before
    after = read(run["out"] / "results.json")
    assert [e["metrics"] for e in after["architectures"][:2]] == [
        e["metrics"] for e in results_before["architectures"][:2]
    ]


def test_tta_is_added_to_the_held_out_split_without_retraining(run, capsys):
    fold = run["out"] / "baseline" / "fold-0"
    before = pd.read_csv(fold / "test_predictions.csv")
    trained = (fold / "metrics.json").stat().st_mtime_ns
    assert main([*run["argv"], "--tta"]) == 1  # zz_broken still fails
    assert "(+ TTA)" in capsys.readouterr().err
    after = pd.read_csv(fold / "test_predictions.csv")
    np.testing.assert_array_equal(after.probability, before.probability)  # the plain scores are unchanged
    dataset = discover(run["data"])
    test = load_images(dataset.root, dataset.test, 32, cache_dir=run["cache"], log=lambda m: None)
    model = load_fold_model(fold / "model.keras")
    views = [model.predict(np.asarray(v), verbose=0).reshape(-1) for v in tta_views(np.asarray(test.pixels))]
    assert len(views) == 5 and list(after.path) == list(test.paths)
    np.testing.assert_allclose(after.probability_tta, np.mean(views, axis=0), atol=1e-6)  # the mean of 5 views
    np.testing.assert_allclose(views[0], after.probability, atol=1e-6)  # the first view is the image itself
    assert (fold / "metrics.json").stat().st_mtime_ns == trained
    markdown = (run["out"] / "report.md").read_text()
    tta_rows = [line for line in markdown.splitlines() if line.startswith("|") and "+ TTA" in line]
    assert len(tta_rows) == 6  # two architectures × (0.5, max-F1 and Youden OOF thresholds)
    assert sum("(Youden) + TTA" in line for line in tta_rows) == 2


def test_a_second_run_on_the_same_folder_is_refused(run, capsys):
    lock = run["out"] / ".lock"
    lock.write_text(str(os.getpid()))  # a live process holds the folder
    try:
        assert main(run["argv"]) == 2
    finally:
        lock.unlink()
    assert f"is in use by another run (pid {os.getpid()})" in " ".join(capsys.readouterr().err.split())


def test_a_lock_left_by_a_dead_run_is_taken_over(run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run["out"] / ".lock").write_text(str(dead.pid))
    assert main(run["argv"]) == 1  # resumes (zz_broken still fails)
    assert not list(run["out"].glob(".lock*"))


def test_resume_with_other_settings_is_refused(run, capsys):
    argv = [a if a != "32" else "48" for a in run["argv"]]
    assert main(argv) == 2
    assert "image_size (32 → 48)" in " ".join(capsys.readouterr().err.split())  # the paragraph is wrapped


def _cli(args, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _start_and_wait_for_the_first_fold(data, tmp_path):
    """A 3-fold run in a subprocess, returned once its first fold is saved."""
    out = tmp_path / "out"
    args = run_argv(data, tmp_path, "baseline", *["--folds", "3", "--epochs", "3", "--image-size", "32"])
    proc = _cli([*args, "--deterministic"])
    first = out / "baseline" / "fold-0" / "metrics.json"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    return proc, args, out, first


def test_a_killed_run_resumes(data, tmp_path):
    proc, args, out, first = _start_and_wait_for_the_first_fold(data, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert first.exists() and not (out / "results.json").exists()
    saved = first.read_text()
    proc = _cli([*args, "--deterministic"])
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "baseline fold 1/3  (saved)" in stderr
    assert first.read_text() == saved
    resumed = read(out / "results.json")["architectures"][0]
    assert resumed["folds_done"] == 3
    # With --deterministic, the killed-and-resumed run gives exactly the numbers of an uninterrupted one.
    whole = tmp_path / "uninterrupted"
    assert main([*args, "--deterministic", "--out", str(whole), "-q"]) == 0
    assert resumed["metrics"] == read(whole / "results.json")["architectures"][0]["metrics"]


def test_ctrl_c_keeps_finished_folds_and_says_how_to_resume(data, tmp_path):
    proc, _, out, first = _start_and_wait_for_the_first_fold(data, tmp_path)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert f"Resume with the same command and --out {out}" in stderr
    assert "Traceback" not in stderr
    assert first.exists() and not list(out.glob(".lock*"))


def test_jax_backend_runs_where_tensorflow_is_missing(data, tmp_path):
    """A registry architecture from scratch and a Keras application from a weight file, warmed up then
    fine-tuned, on JAX without TensorFlow."""
    from tests.test_applications import write_keras_weights

    out, weights = tmp_path / "out", tmp_path / "weights"
    weights.mkdir()
    write_keras_weights(weights, "MobileNetV3Small")  # the .h5 file is the same for every backend
    argv = run_argv(data, tmp_path, "pyramid_up,keras:MobileNetV3Small", "--folds", "2", "--epochs", "2",
                    "--warmup-epochs", "1", "--weights", str(weights), "--image-size", "32", "-q")  # fmt: skip
    # As on a GPU machine that has JAX but no TensorFlow: any import of tensorflow fails.
    code = textwrap.dedent(f"""
        import sys

        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tensorflow":
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, NoTensorFlow())
        from benchmark.cli import main
        rc = main({argv!r})
        assert "tensorflow" not in sys.modules
        sys.exit(rc)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = read(out / "config.json")
    assert config["run"]["backend"] == "jax" and config["device"]["backend"] == "jax"
    assert [e["status"] for e in read(out / "results.json")["architectures"]] == ["ok", "ok"]
    for arch, phases in (("pyramid_up", {"train": 2}), ("keras_MobileNetV3Small", {"warmup": 1, "finetune": 1})):
        for i in range(2):  # the training step ran XLA-compiled, not op by op
            record = read(out / arch / f"fold-{i}" / "metrics.json")
            assert record["jit_compile"] is True and len(record["epoch_seconds"]) == record["epochs"] == 2
            assert record["phases"] == phases


def test_report_renders_in_headless_chromium(run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    page = (run["out"] / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2400"]
    env = {**os.environ, "HOME": str(tmp_path)}  # chromium writes its profile under HOME
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in dom.stdout, title
    shot = tmp_path / "report.png"
    shooting = subprocess.run([browser, *flags, f"--screenshot={shot}", page], capture_output=True, timeout=99, env=env)
    assert shooting.returncode == 0, shooting.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text and figures drawn, not a blank page
