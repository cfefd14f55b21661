"""Mutation check of the method tests: apply each plausible regression to a scratch copy of HEAD, run
the tests that guard it, and say whether they fail (they must).

    python -m tests.mutations [TITLE-SUBSTRING ...]

Each regression is one text replacement in one file; the copy is a git worktree in a temporary folder
(with ../shared linked beside it), so the working tree is never touched. Each regression runs only
the tests that guard it (0.3–50 s each on 2 vCPUs).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REGRESSIONS = [
    (
        "class_weight not passed to fit",
        "benchmark/training.py",
        '"class_weight": weights, "batch_size"',
        '"batch_size"',
        ["tests/test_end_to_end.py::test_fit_gets_the_fit_part_the_inner_split_and_the_fit_parts_class_weights"],
    ),
    (
        "early stopping watches the scored fold",
        "benchmark/training.py",
        "x_val, y_val = images.pixels[fold.val], targets(images.labels[fold.val], k)",
        "x_val, y_val = images.pixels[fold.score], targets(images.labels[fold.score], k)",
        ["tests/test_end_to_end.py::test_fit_gets_the_fit_part_the_inner_split_and_the_fit_parts_class_weights"],
    ),
    (
        "best weights not restored",
        "benchmark/training.py",
        "restore_best_weights=True",
        "restore_best_weights=False",
        ["tests/test_training.py::test_early_stopping_watches_the_inner_split_and_keeps_its_best_weights"],
    ),
    (
        "thresholds chosen on the test split",
        "benchmark/sections.py",
        "rules = oof_thresholds(arch_oof.label, arch_oof.probability) if r.binary",
        'rules = oof_thresholds(labels, fold_ensemble(runs, "probability")) if r.binary',
        ["tests/test_end_to_end.py::test_held_out_thresholds_are_chosen_on_the_out_of_fold_predictions"],
    ),
    (
        "a fold metric computed wrongly",
        "benchmark/metrics.py",
        '"specificity": _ratio(tn, tn + fp),',
        '"specificity": _ratio(tn, tn + fn),',
        ["tests/test_end_to_end.py::test_every_fold_metric_is_recomputed_from_its_saved_predictions"],
    ),
    (
        "JAX step uncompiled",
        "benchmark/training.py",
        'JIT_COMPILE = {"jax": True,',
        'JIT_COMPILE = {"jax": False,',
        [
            "tests/test_training.py::test_under_jax",
            "tests/test_end_to_end.py::test_jax_backend_runs_where_tensorflow_is_missing",
        ],
    ),
    (
        "a temporary file left behind by a failed write",
        "benchmark/files.py",
        "        if os.path.exists(tmp):\n            os.unlink(tmp)",
        "        pass",
        ["tests/test_reliability.py::test_a_failed_write_mid_run_stops_clearly_and_a_rerun_resumes"],
    ),
    (
        "TTA averages the shifted views only",
        "benchmark/heldout.py",
        "for view in tta_views(test.pixels)]",
        "for view in tta_views(test.pixels)[1:]]",
        ["tests/test_end_to_end.py::test_tta_is_added_to_the_held_out_split_without_retraining"],
    ),
    (
        "Grad-CAM picks three of each kind",
        "benchmark/gradcam.py",
        "        chosen = pick(test.labels, probability, classes=classes)",
        "        chosen = pick(test.labels, probability, per_kind=3, classes=classes)",
        ["tests/test_end_to_end.py::test_gradcam_explains_the_winner_on_test_images"],
    ),
    (
        "--overwrite keeps the old files",
        "benchmark/runner.py",
        "        if config.overwrite:\n            folder.clear()",
        "        pass",
        ["tests/test_reliability.py::test_truncated_fold_files_are_redone_and_overwrite_starts_afresh"],
    ),
    (
        "a truncated history.csv is taken as finished",
        "benchmark/runfolder.py",
        'if len(predictions) != record.get("n_score") or not history.get("val_loss"):',
        'if len(predictions) != record.get("n_score"):',
        ["tests/test_reliability.py::test_truncated_fold_files_are_redone_and_overwrite_starts_afresh"],
    ),
    (
        "--strict ignored",
        "benchmark/data.py",
        "    if strict:\n        raise UsageError(",
        "    if False:\n        raise UsageError(",
        ["tests/test_reliability.py::test_strict_makes_an_unreadable_image_an_error"],
    ),
    (
        "JAX out-of-memory not recognised",
        "benchmark/backend.py",
        '"RESOURCE_EXHAUSTED", ',
        "",
        ["tests/test_training.py::test_out_of_memory_of_each_backend_is_retried_once_with_half_the_batch"],
    ),
    (
        "transient read errors cached as unreadable",
        "benchmark/data.py",
        "        if err.errno is not None:",
        "        if False:",
        ["tests/test_data.py::test_a_transient_read_error_is_retried_and_never_cached"],
    ),
    (
        "resume compares the spelling of --data",
        "benchmark/config.py",
        'RESULT_SETTINGS = (\n    "positive",',
        'RESULT_SETTINGS = (\n    "data",\n    "positive",',
        ["tests/test_reliability.py::test_resume_follows_the_data_not_its_spelling"],
    ),
    (
        "failure reasons missing from report.md",
        "benchmark/render.py",
        "            else:\n                out.append(_md(part))",
        "            elif not str(part).startswith('Failed'):\n                out.append(_md(part))",
        ["tests/test_reliability.py::test_failures_are_isolated_and_out_of_memory_retries_with_half_the_batch"],
    ),
    (
        "groups ignored by the outer folds",
        "benchmark/splits.py",
        "outer = (StratifiedKFold if groups is None else StratifiedGroupKFold)(",
        "outer = (StratifiedKFold if True else StratifiedGroupKFold)(",
        ["tests/test_splits.py::test_grouped_folds_keep_every_real_file_name_group_on_one_side"],
    ),
    (
        "interval without the Nadeau-Bengio correction",
        "benchmark/statistics.py",
        "(1 / len(arr) + test_fraction)",
        "(1 / len(arr))",
        ["tests/test_statistics.py::test_the_leaderboard_interval_carries_the_same_correction_by_hand"],
    ),
    (
        "batch-norm statistics not re-estimated before validation",
        "benchmark/training.py",
        "        recalibrate_batchnorm(self.model, self.recalibration, probes=self.probes)\n",
        "",
        ["tests/test_training.py::test_the_validation_loss_is_that_of_the_re_estimated_model"],
    ),
    (
        "K-class weights computed as for two classes",
        "benchmark/training.py",
        "n / (n_classes * counts[c])",
        "n / (2 * counts[c])",
        ["tests/test_multiclass.py::test_fit_gets_one_hot_targets_and_the_fit_parts_class_weights"],
    ),
]


def main() -> int:
    chosen = [r for r in REGRESSIONS if not sys.argv[1:] or any(a in r[0] for a in sys.argv[1:])]
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy"
        subprocess.run(["git", "worktree", "add", "--detach", str(copy), "HEAD"], cwd=ROOT, check=True)
        (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")
        try:
            for title, file, old, new, tests in chosen:
                path = copy / file
                text = path.read_text()
                if old not in text:
                    print(f"NOT APPLIED  {title}: the text to replace is gone from {file}", flush=True)
                    missed += 1
                    continue
                path.write_text(text.replace(old, new, 1))
                cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-x", *tests]
                result = subprocess.run(cmd, cwd=copy, capture_output=True, text=True)
                path.write_text(text)
                caught = result.returncode != 0
                missed += not caught
                print(f"{'CAUGHT     ' if caught else 'NOT CAUGHT '} {title} ({', '.join(tests)})", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(copy)], cwd=ROOT, check=False)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
