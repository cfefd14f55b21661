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
        "benchmark/training/fit.py",
        '"class_weight": weights, "batch_size"',
        '"batch_size"',
        ["tests/test_end_to_end.py::test_fit_gets_the_fit_part_the_inner_split_and_the_fit_parts_class_weights"],
    ),
    (
        "early stopping watches the scored fold",
        "benchmark/training/fit.py",
        "x_val, y_val = images.pixels[fold.val], targets(images.labels[fold.val], k)",
        "x_val, y_val = images.pixels[fold.score], targets(images.labels[fold.score], k)",
        ["tests/test_end_to_end.py::test_fit_gets_the_fit_part_the_inner_split_and_the_fit_parts_class_weights"],
    ),
    (
        "best weights not restored",
        "benchmark/training/fit.py",
        "restore_best_weights=True",
        "restore_best_weights=False",
        ["tests/test_training.py::test_early_stopping_watches_the_inner_split_and_keeps_its_best_weights"],
    ),
    (
        "thresholds chosen on the test split",
        "benchmark/evaluation/heldout.py",
        "rules = oof_thresholds(part.label, part.probability) if binary",
        "rules = oof_thresholds(labels, fold_ensemble(runs)) if binary",
        ["tests/test_end_to_end.py::test_held_out_thresholds_are_chosen_on_the_out_of_fold_predictions"],
    ),
    (
        "a fold metric computed wrongly",
        "benchmark/evaluation/metrics.py",
        '"specificity": _ratio(tn, tn + fp),',
        '"specificity": _ratio(tn, tn + fn),',
        ["tests/test_end_to_end.py::test_every_fold_metric_is_recomputed_from_its_saved_predictions"],
    ),
    (
        "JAX step uncompiled",
        "benchmark/training/fit.py",
        'JIT_COMPILE = {"jax": True,',
        'JIT_COMPILE = {"jax": False,',
        [
            "tests/test_training.py::test_under_jax",
            "tests/test_end_to_end.py::test_jax_backend_runs_where_tensorflow_is_missing",
        ],
    ),
    (
        "a temporary file left behind by a failed write",
        "benchmark/store/files.py",
        "        if os.path.exists(tmp):\n            os.unlink(tmp)",
        "        pass",
        ["tests/test_reliability.py::test_a_failed_write_mid_run_stops_clearly_and_a_rerun_resumes"],
    ),
    (
        "TTA averages the shifted views only",
        "benchmark/inference/predict.py",
        "for view in tta_views(test.pixels)]",
        "for view in tta_views(test.pixels)[1:]]",
        ["tests/test_end_to_end.py::test_tta_is_added_to_the_held_out_split_without_retraining"],
    ),
    (
        "Grad-CAM picks three of each kind",
        "benchmark/inference/gradcam.py",
        "        chosen = pick(test.labels, probability, classes=classes)",
        "        chosen = pick(test.labels, probability, per_kind=3, classes=classes)",
        ["tests/test_end_to_end.py::test_gradcam_explains_the_winner_on_test_images"],
    ),
    (
        "--overwrite keeps the old files",
        "benchmark/runner.py",
        "        if config.output.overwrite:\n            folder.clear()",
        "        pass",
        ["tests/test_reliability.py::test_truncated_fold_files_are_redone_and_overwrite_starts_afresh"],
    ),
    (
        "a truncated history.csv is taken as finished",
        "benchmark/store/runfolder.py",
        'if len(predictions) != record.get("n_score") or not history.get("val_loss"):',
        'if len(predictions) != record.get("n_score"):',
        ["tests/test_reliability.py::test_truncated_fold_files_are_redone_and_overwrite_starts_afresh"],
    ),
    (
        "--strict ignored",
        "benchmark/data/images.py",
        "    if strict:\n        raise UsageError(",
        "    if False:\n        raise UsageError(",
        ["tests/test_reliability.py::test_strict_makes_an_unreadable_image_an_error"],
    ),
    (
        "JAX out-of-memory not recognised",
        "benchmark/training/backend.py",
        '"RESOURCE_EXHAUSTED", ',
        "",
        ["tests/test_training.py::test_out_of_memory_of_each_backend_is_retried_once_with_half_the_batch"],
    ),
    (
        "transient read errors cached as unreadable",
        "benchmark/data/images.py",
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
        "benchmark/report/render.py",
        "            else:\n                out.append(_md(part))",
        "            elif not str(part).startswith('Failed'):\n                out.append(_md(part))",
        ["tests/test_reliability.py::test_failures_are_isolated_and_out_of_memory_retries_with_half_the_batch"],
    ),
    (
        "groups ignored by the outer folds",
        "benchmark/data/splits.py",
        "outer = (StratifiedKFold if groups is None else StratifiedGroupKFold)(",
        "outer = (StratifiedKFold if True else StratifiedGroupKFold)(",
        ["tests/test_splits.py::test_grouped_folds_keep_every_real_file_name_group_on_one_side"],
    ),
    (
        "interval without the Nadeau-Bengio correction",
        "benchmark/evaluation/statistics.py",
        "(1 / len(arr) + test_fraction)",
        "(1 / len(arr))",
        ["tests/test_statistics.py::test_the_leaderboard_interval_carries_the_same_correction_by_hand"],
    ),
    (
        "batch-norm statistics not re-estimated before validation",
        "benchmark/training/fit.py",
        "        recalibrate_batchnorm(self.model, self.recalibration)\n",
        "",
        ["tests/test_training.py::test_the_validation_loss_is_that_of_the_re_estimated_model"],
    ),
    (
        "K-class weights computed as for two classes",
        "benchmark/training/fit.py",
        "n / (n_classes * counts[c])",
        "n / (2 * counts[c])",
        ["tests/test_multiclass.py::test_fit_gets_one_hot_targets_and_the_fit_parts_class_weights"],
    ),
    # Issue 21: nothing lost, nothing wrong.
    (
        "--overwrite deletes every file in --out",
        "benchmark/store/runfolder.py",
        "        for path in self.own_files():\n",
        '        for path in [p for p in self.path.rglob("*") if p.is_file() and ".lock" not in p.name]:\n',
        ["tests/test_safety.py::test_overwrite_removes_the_runs_own_files_and_nothing_else"],
    ),
    (
        "--out not checked against --data and the folder's content",
        "benchmark/runner.py",
        "    check_out(folder, config)\n",
        "",
        [
            "tests/test_safety.py::test_a_folder_that_is_not_a_run_folder_is_refused_and_left_as_it_was",
            "tests/test_safety.py::test_out_inside_or_equal_to_data_or_holding_it_is_refused_before_anything_is_written",
        ],
    ),
    (
        "a run folder marked only once its images are decoded",
        "benchmark/runner.py",
        "        folder.mark(config.to_dict(), data_record(config, checked.files))\n",
        "",
        ["tests/test_safety.py::test_a_run_interrupted_before_its_first_fold_is_still_a_run_folder"],
    ),
    (
        "a folds.csv without rows crashes the report",
        "benchmark/store/runfolder.py",
        "except (FileNotFoundError, pd.errors.EmptyDataError):",
        "except FileNotFoundError:",
        ["tests/test_safety.py::test_every_architecture_failing_is_one_paragraph_and_still_a_report"],
    ),
    (
        "non-finite numbers accepted",
        "benchmark/errors.py",
        "if isinstance(value, float) and not math.isfinite(value):",
        "if False:",
        ["tests/test_safety.py::test_non_finite_numbers_are_refused_before_anything_is_written"],
    ),
    (
        "a registered name that cannot name a model",
        "architectures/__init__.py",
        "if not VALID_NAME.fullmatch(key):",
        "if False:",
        ["tests/test_safety.py::test_a_name_that_cannot_name_a_model_is_refused_at_registration"],
    ),
    (
        "results.json of the wrong shape read as it is",
        "benchmark/store/runfolder.py",
        "if problem := results_problem(results):",
        "if problem := None:",
        ["tests/test_safety.py::test_a_damaged_run_file_is_one_paragraph_in_report_and_load"],
    ),
    (
        "a read-only run folder is a traceback in `report`",
        "benchmark/cli.py",
        "    except OSError as err:  # a read-only run folder",
        "    except ZeroDivisionError as err:  # a read-only run folder",
        ["tests/test_safety.py::test_a_read_only_run_folder_is_one_paragraph"],
    ),
    (
        "a FIFO under an image name is opened (hangs)",
        "benchmark/data/images.py",
        "    _check_regular(path)\n",
        "",
        ["tests/test_data.py::test_a_fifo_under_an_image_name_is_skipped_and_listed_not_read"],
    ),
    (
        "a test class that train/ lacks is dropped silently",
        "benchmark/data/images.py",
        'for split in ("val", "test"):',
        'for split in ("val",):',
        ["tests/test_data.py::test_a_test_or_val_class_that_train_lacks_is_an_error"],
    ),
    (
        "the cache is used without checking its checksum",
        "benchmark/data/images.py",
        'pixels = np.load(npy, mmap_mode="r") if _file_hash(npy) == meta.get("sha256") else None',
        'pixels = np.load(npy, mmap_mode="r")',
        ["tests/test_data.py::test_a_cache_overwritten_in_place_is_decoded_again"],
    ),
    (
        "an image size whose cache cannot fit is reported as a full disk",
        "benchmark/data/images.py",
        "            _check_space(cache_dir, len(images), image_size, channels)\n",
        "",
        ["tests/test_data.py::test_an_image_size_whose_cache_cannot_fit_is_refused_before_decoding"],
    ),
    (
        "transfer: the old rule (τ <= 0 disagrees)",
        "benchmark/evaluation/heldout.py",
        'if tau_ci[1] < 0 or any(c["beats_cv_winner"] for c in paired):',
        'if tau <= 0 or any(c["beats_cv_winner"] for c in paired):',
        ["tests/test_statistics.py::test_pure_noise_is_unresolved_not_disagree"],
    ),
    (
        "transfer: no Holm adjustment",
        "benchmark/evaluation/heldout.py",
        'adjusted = holm({n: r["p"] for n, r in rows.items()})',
        'adjusted = {n: r["p"] for n, r in rows.items()}',
        ["tests/test_statistics.py::test_the_comparisons_against_the_cv_winner_are_holm_adjusted_by_hand"],
    ),
    (
        "transfer: a significant loss counts as a win",
        "benchmark/evaluation/heldout.py",
        '"beats_cv_winner": bool(adjusted[n] < alpha and sign * r["difference"] > 0),',
        '"beats_cv_winner": bool(adjusted[n] < alpha),',
        ["tests/test_statistics.py::test_rank_agreement_on_constructed_cases"],
    ),
    (
        "transfer: an interval spanning 0 disagrees",
        "benchmark/evaluation/heldout.py",
        'return "agree" if tau_ci[0] > 0 else "unresolved"',
        'return "agree" if tau_ci[0] > 0 else "disagree"',
        ["tests/test_statistics.py::test_pure_noise_is_unresolved_not_disagree"],
    ),
    (
        "reproduce command unquoted",
        "benchmark/report/sections.py",
        'Code(shlex.join(r.config.get("argv", ["benchmark", "run"]))),',
        'Code(" ".join(r.config.get("argv", ["benchmark", "run"]))),',
        ["tests/test_report.py::test_the_reproduce_command_pastes_into_bash_as_the_exact_argv"],
    ),
    (
        "MLflow fold scores logged under the curves' names",
        "benchmark/tracking/mlflow_tracking.py",
        'scores = {f"fold/{k}": v',
        'scores = {f"epoch/{k}": v',
        ["tests/test_tracking.py::test_every_number_mlflow_shows_is_the_run_folders"],
    ),
    (
        "MLflow rank set once, with the architecture's summary",
        "benchmark/tracking/mlflow_tracking.py",
        "                self._summary(entry)\n"
        '            if self.state["archs"].get(entry.name, {}).get("summary") and entry.rank is not None:\n',
        "                self._summary(entry)\n"
        '                self.client.set_tag(self._arch(entry.name), "rank", str(entry.rank))\n'
        "            if False:\n",
        ["tests/test_tracking.py::test_an_architectures_rank_is_updated_as_the_others_finish"],
    ),
    (
        "a tracking server lost mid-run is a traceback",
        "benchmark/tracking/mlflow_tracking.py",
        "except (MlflowException, RequestException, OSError) as err:",
        "except ImportError as err:",
        [
            "tests/test_tracking.py::test_a_server_lost_mid_run_stops_it_in_seconds_with_one_paragraph_and_the_resume_catches_up"
        ],
    ),
    (
        "--track-optional warns at every call to a lost server",
        "benchmark/tracking/mlflow_tracking.py",
        "self.off = True",
        "self.off = False",
        ["tests/test_tracking.py::test_with_track_optional_a_server_lost_mid_run_is_a_warning_and_the_run_goes_on"],
    ),
    (
        "MLflow fold runs opened only when the fold ends",
        "benchmark/tracking/mlflow_tracking.py",
        'self.state["open"][key] = self._open_fold(arch, fold, start_time=None)',
        "pass",
        [
            "tests/test_tracking.py::"
            "test_mlflows_default_local_store_the_experiment_from_the_environment_and_fold_runs_open_while_they_train"
        ],
    ),
    (
        "MLFLOW_EXPERIMENT_NAME ignored",
        "benchmark/tracking/mlflow_tracking.py",
        'config.tracking.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT',
        "config.tracking.experiment or EXPERIMENT",
        [
            "tests/test_tracking.py::"
            "test_mlflows_default_local_store_the_experiment_from_the_environment_and_fold_runs_open_while_they_train"
        ],
    ),
    (
        "MLflow's View run lines printed on the progress line",
        "benchmark/tracking/mlflow_tracking.py",
        "(SHORT_RETRIES | QUIET_URLS)",
        "SHORT_RETRIES",
        [
            "tests/test_tracking.py::"
            "test_a_server_lost_mid_run_stops_it_in_seconds_with_one_paragraph_and_the_resume_catches_up"
        ],
    ),
    (
        "loss curves label fractional epochs",
        "benchmark/report/plots.py",
        "        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole\n",
        "",
        ["tests/test_figures.py::test_the_reports_and_compares_figures_fit_at_any_count[2]"],
    ),
    (
        "a bar chart of zeros shows nothing",
        "benchmark/report/plots.py",
        '        ax.plot(values, rows, "o", color=color, ms=4)',
        "        pass",
        ["tests/test_figures.py::test_a_panel_whose_values_are_all_zero_still_shows_them"],
    ),
    (
        "legends back in the plots' corners",
        "benchmark/report/plots.py",
        'loc="upper left", bbox_to_anchor=(1.02, 1.0)',
        'loc="best"',
        ["tests/test_figures.py::test_the_reports_and_compares_figures_fit_at_any_count[30]"],
    ),
    (
        "the ETA's prior ignores the architectures' FLOPs",
        "benchmark/runner.py",
        "                        costs=costs)  # fmt: skip",
        "                        costs={})  # fmt: skip",
        ["tests/test_parallel.py::test_the_eta_knows_each_architectures_forward_flops_before_it_trains"],
    ),
    (
        "the ETA counts a fold's training alone",
        "benchmark/progress.py",
        "max(seconds, now - self.last) if self.jobs == 1 else seconds",
        "seconds",
        [
            "tests/test_cli.py::"
            "test_with_one_job_a_folds_time_is_the_wait_between_folds_and_unmeasured_ones_scale_by_their_flops"
        ],
    ),
    (
        "worker processes get the tasks in --archs order",
        "benchmark/runner.py",
        "        tasks.sort(key=lambda task: -ctx.costs.get(task.arch, 0.0))",
        "        pass",
        ["tests/test_parallel.py::test_two_worker_processes_give_the_results_of_one_job_costliest_first"],
    ),
    (
        "compare lists a tracking setting as changing numbers",
        "benchmark/report/compare.py",
        '"track_models", "experiment"}',
        '"track_models"}',
        ["tests/test_compare.py::test_every_tracking_setting_is_listed_as_changing_no_number"],
    ),
    (
        "SIGTERM not handled as Ctrl-C",
        "benchmark/cli.py",
        "for s in (signal.SIGINT, signal.SIGTERM)}",
        "for s in (signal.SIGINT,)}",
        [
            "tests/test_signals.py::test_sigterm_saves_the_finished_folds_releases_the_lock_and_prints_the_resume_command"
        ],
    ),
    (
        "the resume command keeps --overwrite",
        "benchmark/cli.py",
        'kept = [a for a in argv if not (a.startswith("--ov") and "--overwrite".startswith(a))]',
        "kept = list(argv)",
        [
            "tests/test_signals.py::test_sigterm_saves_the_finished_folds_releases_the_lock_and_prints_the_resume_command"
        ],
    ),
    (
        "compare: runs on other classes compared",
        "benchmark/report/compare.py",
        "if len({r.classes for r in runs}) > 1:",
        "if False:",
        ["tests/test_compare.py::test_compare_refuses_runs_on_different_classes"],
    ),
    (
        "compare: held-out figure on each run's own ranking metric",
        "benchmark/report/compare.py",
        'scores["ensemble"][0]["metrics"][metric]',
        'scores["ensemble"][0]["metrics"][self.rank_by]',
        ["tests/test_compare.py::test_compare_on_different_ranking_metrics_uses_the_first_runs_and_says_so"],
    ),
    (
        "compare: different ranking metrics not said",
        "benchmark/report/compare.py",
        "if len({r.rank_by for r in runs}) > 1:",
        "if False:",
        ["tests/test_compare.py::test_compare_on_different_ranking_metrics_uses_the_first_runs_and_says_so"],
    ),
    (
        "compare: architectures left out not said",
        "benchmark/report/compare.py",
        "    if left_out:",
        "    if False:",
        ["tests/test_compare.py::test_compare_says_which_architectures_it_leaves_out_and_refuses_runs_sharing_none"],
    ),
    (
        "compare: --out naming a file not checked",
        "benchmark/report/compare.py",
        "if out.exists() and not out.is_dir():",
        "if False:",
        ["tests/test_compare.py::test_compare_out_naming_a_file_is_refused_and_the_file_kept"],
    ),
    (
        "compare: results.json's shape not checked",
        "benchmark/evaluation/results.py",
        "    except SHAPE_ERRORS as err:\n        raise folder.damaged",
        "    except KeyError as err:\n        raise folder.damaged",
        ["tests/test_compare.py::test_compare_refuses_a_results_json_of_the_wrong_shape"],
    ),
    (
        "compare: folds.csv's columns not checked",
        "benchmark/report/compare.py",
        "if results.ok and results.rank_by not in results.folds.columns:",
        "if False:",
        ["tests/test_compare.py::test_compare_refuses_a_damaged_folds_csv"],
    ),
    (
        "an older results.json with a damaged test_predictions.csv is a traceback",
        "benchmark/evaluation/results.py",
        "except (OSError, *SHAPE_ERRORS) as err:",
        "except OSError as err:",
        ["tests/test_compare.py::test_compare_reads_the_held_out_figures_from_results_json"],
    ),
    (
        "batch-norm layers inside nested models not reached",
        "benchmark/training/fit.py",
        "        if (inner := _graph(op)) is not None:\n",
        "        if False:\n",
        [
            "tests/test_training.py::test_batchnorm_statistics_are_re_estimated_through_nested_models",
            "tests/test_training.py::test_nested_models_train_with_batchnorm_re_estimated",
        ],
    ),
    (
        "batch-norm layers re-estimated outputs first",
        "benchmark/training/fit.py",
        "sorted(graph._nodes_by_depth, reverse=True)",
        "sorted(graph._nodes_by_depth)",
        [
            "tests/test_training.py::test_batchnorm_statistics_are_re_estimated_through_nested_models",
            "tests/test_training.py::test_batchnorm_statistics_are_re_estimated_on_plain_images_layer_after_layer",
        ],
    ),
    (
        "a batch-norm layer called twice re-estimated on its first call only",
        "benchmark/training/fit.py",
        "    calls = pooled.setdefault(norm, [])\n",
        "    calls = pooled[norm] = []\n",
        ["tests/test_training.py::test_batchnorm_statistics_are_re_estimated_through_nested_models"],
    ),
    (
        "an output NaN before training blamed on the learning rate",
        "benchmark/training/fit.py",
        "    check_untrained_output(model, recalibration, max(settings.batch_size, 128))\n",
        "",
        [
            "tests/test_training.py::test_an_output_not_finite_before_training_is_blamed_on_the_architecture_not_the_learning_rate"
        ],
    ),
    (
        "one-epoch folds told to lower --lr",
        "benchmark/evaluation/diagnostics.py",
        'zip(curves["best_epoch"], curves["epochs"], strict=True) if e > 1]',
        'zip(curves["best_epoch"], curves["epochs"], strict=True)]',
        ["tests/test_diagnostics.py::test_one_epoch_runs_are_not_told_to_lower_the_learning_rate"],
    ),
    (
        "a caffe-family application scaled without RGB → BGR",
        "architectures/_applications.py",
        "flip = (255.0 * np.eye(3)[::-1]).tolist()",
        "flip = (255.0 * np.eye(3)).tolist()",
        ["tests/test_applications.py::test_each_family_gets_its_own_pixel_scaling"],
    ),
    (
        "a Keras application's minimum size found only while training",
        "benchmark/runner.py",
        "    costs = check_builds(names, shape, len(dataset.classes), config.training.weights)",
        "    costs = {}",
        [
            "tests/test_applications.py::test_a_size_below_the_familys_minimum_is_one_paragraph_before_anything_is_written"
        ],
    ),
    (
        "a DenseNet scaled to [-1, 1]",
        "architectures/_applications.py",
        '"densenet": "torch",',
        '"densenet": "tf",',
        ["tests/test_applications.py::test_each_family_gets_its_own_pixel_scaling"],
    ),
    (
        "a pretrained backbone's weights not copied",
        "architectures/_applications.py",
        "            mine.set_weights(theirs.get_weights())\n",
        "            pass\n",
        [
            "tests/test_applications.py::test_greyscale_reaches_a_pretrained_backbone_as_three_channels_with_its_familys_scaling"
        ],
    ),
    (
        "builders not given --weights",
        "benchmark/training/fit.py",
        "    if pretrained(build, weights):\n",
        "    if False:\n",
        ["tests/test_applications.py::test_fold_training_starts_from_the_weight_files_weights"],
    ),
    (
        "a missing weight file reported as a size problem",
        "benchmark/runner.py",
        "            if isinstance(err.__cause__, UsageError):  # a weight file missing\n"
        "                raise err.__cause__ from None\n",
        "",
        [
            "tests/test_applications.py::test_a_missing_weight_file_is_one_paragraph_naming_it_before_anything_is_written"
        ],
    ),
    (
        "warm-up trains the backbone too",
        "benchmark/training/fit.py",
        'layer.trainable = phase != "warmup" or layer is arch.layers[-1]',
        "layer.trainable = True",
        ["tests/test_applications.py::test_pretrained_weights_warm_the_head_up_then_fine_tune_with_batchnorm_frozen"],
    ),
    (
        "fine-tuning trains the batch-norm layers",
        "benchmark/training/fit.py",
        "                layer.trainable = False\n",
        "                layer.trainable = True\n",
        ["tests/test_applications.py::test_pretrained_weights_warm_the_head_up_then_fine_tune_with_batchnorm_frozen"],
    ),
    (
        "fine-tuning at the warm-up's learning rate",
        "benchmark/training/fit.py",
        "FINETUNE_LR_FACTOR = 0.1",
        "FINETUNE_LR_FACTOR = 1.0",
        ["tests/test_applications.py::test_pretrained_weights_warm_the_head_up_then_fine_tune_with_batchnorm_frozen"],
    ),
    (
        "re-estimation overwrites a frozen batch-norm layer's statistics",
        "benchmark/training/fit.py",
        "isinstance(op, layers.BatchNormalization) and op.trainable:",
        "isinstance(op, layers.BatchNormalization):",
        ["tests/test_applications.py::test_pretrained_weights_warm_the_head_up_then_fine_tune_with_batchnorm_frozen"],
    ),
    (
        "pretrained weights trained without the warm-up",
        "benchmark/training/fit.py",
        "warmup = min(settings.warmup_epochs, settings.epochs) if from_pretrained else 0",
        "warmup = 0",
        [
            "tests/test_applications.py::test_from_scratch_the_recipe_is_one_phase",
            "tests/test_applications.py::test_pretrained_weights_warm_the_head_up_then_fine_tune_with_batchnorm_frozen",
        ],
    ),
    (
        "early stopping starts afresh in each phase",
        "benchmark/training/fit.py",
        "        if not self.begun:\n",
        "        if True:\n",
        ["tests/test_training.py::test_early_stopping_spans_the_phases_and_restores_the_best_weights_of_either"],
    ),
    (
        "fold models saved with the optimizer's state",
        "benchmark/training/fit.py",
        "keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)",
        "model.save(tmp)",
        ["tests/test_save_models.py::test_best_keeps_the_best_folds_model_only_after_every_fold_scored_the_test_split"],
    ),
    (
        "--save-models best keeps every fold's model",
        "benchmark/runner.py",
        '    if config.output.save_models == "all":\n        return\n',
        '    if config.output.save_models != "none":\n        return\n',
        ["tests/test_save_models.py::test_best_keeps_the_best_folds_model_only_after_every_fold_scored_the_test_split"],
    ),
    (
        "best fold picked as the worst",
        "benchmark/evaluation/comparison.py",
        "    return max(range(len(folds)), key=lambda i: better(rank_by) * folds[i])",
        "    return min(range(len(folds)), key=lambda i: better(rank_by) * folds[i])",
        ["benchmark/evaluation/comparison.py::benchmark.evaluation.comparison.best_fold"],
    ),
    (
        "the report does not say which weights a candidate started from",
        "benchmark/report/sections.py",
        '    record = (config.get("weights") or {}).get(name)\n',
        "    record = None\n",
        ["tests/test_applications.py::test_fold_training_starts_from_the_weight_files_weights"],
    ),
    (
        "a failed fold's traceback not kept",
        "benchmark/runner.py",
        "            ctx.folder.write_error(arch, i, out.traceback)\n",
        "",
        ["tests/test_end_to_end.py::test_a_failed_fold_keeps_its_traceback_named_in_the_results_and_the_report"],
    ),
    (
        "--raise records the failure and goes on",
        "benchmark/training/execution.py",
        "            if task.raise_errors:\n",
        "            if False:\n",
        ["tests/test_end_to_end.py::test_raise_stops_at_the_first_failure_with_its_traceback"],
    ),
    (
        "the number of classes taken for a setting of benchmark run",
        "benchmark/config.py",
        'if not f.metadata.get("derived")\n    }\n\n\ndef defaults',
        "if True\n    }\n\n\ndef defaults",
        ["tests/test_config.py::test_every_flag_of_benchmark_run_is_one_field_of_one_group"],
    ),
    (
        "the training group does not check its numbers",
        "benchmark/training/__init__.py",
        'for name in ("epochs", "batch_size", "patience"):',
        "for name in ():",
        ["tests/test_config.py::test_each_group_refuses_a_bad_value_of_its_own_naming_the_flag"],
    ),
    (
        "the driver imports a stage's modules",
        "benchmark/runner.py",
        "from benchmark.inference import explain_heldout, predict_heldout\n",
        "from benchmark.inference.gradcam import explain_heldout\n"
        "from benchmark.inference.predict import predict_heldout\n",
        ["tests/test_layout.py::test_the_driver_imports_the_stages_not_their_modules"],
    ),
    (
        "a stage's face names what its module lacks",
        "benchmark/evaluation/__init__.py",
        '"read_all"',
        '"read_every"',
        ["tests/test_layout.py::test_every_name_of_a_stages_face_is_found_in_its_module"],
    ),
    (
        "the Python API names settings as command-line flags",
        "benchmark/api.py",
        '        raise err.in_python({**defaults(), **settings, "data": data, "out": out}) from None\n',
        "        raise\n",
        ["tests/test_api.py::test_a_bad_setting_is_named_as_it_was_typed_in_python"],
    ),
    (
        "training imports evaluation (an import against the stages' order)",
        "benchmark/training/execution.py",
        "from benchmark.data.images import Images\n",
        "from benchmark.data.images import Images\nfrom benchmark.evaluation.metrics import fold_metrics\n",
        ["tests/test_layout.py::test_every_stage_imports_only_the_stages_before_it_and_nothing_on_top"],
    ),
    (
        "predict decides at 0.5, not at the out-of-fold threshold",
        "benchmark/use.py",
        'value = next(c["threshold"] for c in chosen_rules if c["rule"] == THRESHOLDS[rule])',
        "value = 0.5",
        ["tests/test_use.py::test_predict_gives_the_runs_own_test_images_their_saved_fold_ensemble"],
    ),
    (
        "predict uses one fold model, not the ensemble",
        "benchmark/use.py",
        "probabilities = per_model.mean(axis=0)",
        "probabilities = per_model[0]",
        ["tests/test_use.py::test_predict_gives_the_runs_own_test_images_their_saved_fold_ensemble"],
    ),
    (
        "evaluate accepts the run's own training images",
        "benchmark/use.py",
        "    rows = folder.read_files() or []\n",
        "    rows = []\n",
        ["tests/test_use.py::test_bad_inputs_to_evaluate_are_one_paragraph_each"],
    ),
    (
        "held-out intervals without resampling",
        "benchmark/evaluation/heldout.py",
        "idx = rng.integers(0, len(labels), (n_boot, len(labels)))",
        "idx = np.tile(np.arange(len(labels)), (n_boot, 1))",
        ["benchmark/evaluation/heldout.py::benchmark.evaluation.heldout.bootstrap_intervals"],
    ),
    (
        "a site scored with another decoding than the run's",
        "benchmark/use.py",
        '    size, channels, cache = settings["image_size"], settings["channels"], settings.get("cache_dir")',
        '    size, channels, cache = settings["image_size"], 3, settings.get("cache_dir")',
        ["tests/test_use.py::test_evaluate_on_the_official_test_split_reproduces_the_held_out_section"],
    ),
    (
        "export keeps one fold model, not the ensemble",
        "benchmark/inference/export.py",
        "outputs = [member(inputs) for member in members]",
        "outputs = [member(inputs) for member in members[:1]]",
        ["tests/test_use.py::test_export_writes_the_fold_ensemble_that_gives_the_runs_held_out_predictions"],
    ),
    (
        "the model card leaves out the ranking-transfer verdicts",
        "benchmark/report/card.py",
        "parts += [transfer_sentence(results, t, where) for where, (_, t) in sets.items() if t]",
        "parts += []",
        ["tests/test_use.py::test_the_model_card_names_the_transfer_verdict_and_the_versions"],
    ),
    (
        "refit trains for the longest fold's best epoch, not the median",
        "benchmark/use.py",
        "    epochs = refit_epochs(best)\n",
        "    epochs = max(best)\n",
        ["tests/test_use.py::test_refit_trains_once_for_the_median_best_epoch_on_every_training_image"],
    ),
    (
        "refit fits nine tenths of the training images",
        "benchmark/use.py",
        "split=Fold(np.arange(len(images.paths)), none, none)",
        "split=Fold(np.arange(len(images.paths))[: len(images.paths) * 9 // 10], none, none)",
        ["tests/test_use.py::test_refit_trains_once_for_the_median_best_epoch_on_every_training_image"],
    ),
    (
        "refit trained again on every rerun",
        "benchmark/use.py",
        'saved.get("epochs") == epochs and',
        'False and saved.get("epochs") == epochs and',
        ["tests/test_use.py::test_refit_trains_once_for_the_median_best_epoch_on_every_training_image"],
    ),
    (
        "a refit's batch-norm statistics left as training made them",
        "benchmark/training/fit.py",
        "    if not validating:\n        recalibrate_batchnorm(model, recalibration)\n",
        "",
        [
            "tests/test_training.py::test_a_fold_without_an_inner_split_trains_every_epoch_and_ends_with_re_estimated_batchnorm"
        ],
    ),
    (
        "refit against the fold ensemble names a winner inside the interval",
        "benchmark/evaluation/heldout.py",
        '"better": "cannot tell" if not low > 0 and not high < 0 else lead,',
        '"better": lead,',
        ["benchmark/evaluation/heldout.py::benchmark.evaluation.heldout.refit_against_folds"],
    ),
    (
        "predict --model refit predicts with the fold models",
        "benchmark/use.py",
        '            return {"refit": self.folder.refit_file(self.name, "model.keras")}\n',
        "",
        ["tests/test_use.py::test_the_refit_predicts_exports_and_stands_beside_the_fold_ensemble_in_the_report"],
    ),
    (
        "every trial predicts the outer score fold",
        "benchmark/runner.py",
        "trial_split = Fold(fold.train, fold.val, np.array([], dtype=np.int64))",
        "trial_split = fold",
        ["tests/test_tuning.py::test_no_trial_fits_or_is_judged_on_an_outer_score_fold_image"],
    ),
    (
        "a tuned fold keeps the trial with the lowest training loss",
        "benchmark/runner.py",
        'losses = {t: float(np.nanmin(history["val_loss"]))',
        'losses = {t: float(np.nanmin(history["loss"]))',
        ["tests/test_tuning.py::test_each_fold_keeps_the_trial_with_the_lowest_saved_inner_loss"],
    ),
    (
        "architectures get their trials in different orders",
        "benchmark/runner.py",
        "for t, values in enumerate(ctx.trials):",
        "for t, values in enumerate(ctx.trials if name == ctx.names[0] else ctx.trials[::-1]):",
        ["tests/test_tuning.py::test_every_architecture_gets_the_same_trials_and_trial_0_is_the_untuned_training"],
    ),
    (
        "a resumed tuned fold trains all its trials again",
        "benchmark/runner.py",
        "if ctx.folder.read_trial(name, i, t) is None:",
        "if True:",
        ["tests/test_tuning.py::test_a_run_killed_mid_trial_redoes_only_that_trial_and_a_failing_trial_is_recorded"],
    ),
    (
        "an empty --tune range accepted",
        "benchmark/training/tuning.py",
        "if not values or len(set(values)) != len(values):",
        "if len(set(values)) != len(values):",
        ["tests/test_tuning.py::test_a_malformed_tune_is_one_paragraph"],
    ),
    (
        "Dodge's estimator weights every trial alike",
        "benchmark/evaluation/tuning.py",
        "weights = ((t - i + 1) / t) ** n - ((t - i) / t) ** n",
        "weights = np.full(t, 1 / t)",
        ["benchmark/evaluation/tuning.py::benchmark.evaluation.tuning.expected_best"],
    ),
    (
        "the Bayesian test ignores the measured n_test/n_train",
        "benchmark/evaluation/comparison.py",
        "bayesian_correlated_ttest(folds[best], folds[b], ratio, higher_is_better=higher)",
        "bayesian_correlated_ttest(folds[best], folds[b], higher_is_better=higher)",
        ["tests/test_statistics.py::test_repeated_cv_statistics_by_hand"],
    ),
    (
        "the held-out τ interval warns when τ is undefined",
        "benchmark/evaluation/heldout.py",
        'return np.percentile(finite, [2.5, 97.5]).tolist() if len(finite) else [float("nan"), float("nan")]',
        "return np.nanpercentile(values, [2.5, 97.5]).tolist()",
        ["tests/test_statistics.py::test_rank_agreement_on_constructed_cases"],
    ),
    (
        "library warnings shown on the terminal",
        "benchmark/console.py",
        "if LIBRARY_FILE.search(filename):",
        "if False:",
        ["tests/test_cli.py::test_a_librarys_warning_goes_to_the_log_and_the_users_own_to_the_terminal"],
    ),
    (
        "the Python API leaves the backends' output on the notebook",
        "benchmark/api.py",
        "with Console() as console:",
        "with Console(verbose=True) as console:",
        ["tests/test_api.py::test_a_quiet_run_in_a_jupyter_kernel_prints_nothing_and_shows_a_short_leaderboard"],
    ),
    (
        "a resume trusts a changed modification time without reading the bytes",
        "benchmark/data/images.py",
        "return bool(digests.get(path)) and content_digest((root / path).read_bytes()) == digests[path]",
        "return True",
        ["tests/test_reliability.py::test_resume_follows_the_data_not_its_spelling"],
    ),
    (
        "a copied data set without its modification times refused",
        "benchmark/runner.py",
        "        if not any(changes.values()):\n            return  # a copy",
        "        if False:\n            return  # a copy",
        ["tests/test_reliability.py::test_resume_follows_the_data_not_its_spelling"],
    ),
    (
        "a worker's thread cap set after TensorFlow's runtime starts",
        "benchmark/training/execution.py",
        "    backend.limit_threads(setup.threads)\n"
        "    backend.setup(setup.mixed_precision, setup.deterministic, setup.strategy, setup.compile_cache)\n",
        "    backend.setup(setup.mixed_precision, setup.deterministic, setup.strategy, setup.compile_cache)\n"
        "    backend.limit_threads(setup.threads)\n",
        ["tests/test_parallel.py::test_a_worker_process_trains_with_its_share_of_the_cores"],
    ),
    (
        "deterministic workers capped to their share of the threads",
        "benchmark/training/execution.py",
        "    if e.deterministic:  # TensorFlow's sums",
        "    if False:  # TensorFlow's sums",
        ["tests/test_parallel.py::test_two_worker_processes_give_the_results_of_one_job_costliest_first"],
    ),
    (
        "a tuned architecture's refit trained with the default values",
        "benchmark/use.py",
        "settings=replace(config.training, n_classes=k, epochs=epochs, **tuned),",
        "settings=replace(config.training, n_classes=k, epochs=epochs),",
        ["tests/test_tuning.py::test_the_refit_of_a_tuned_architecture_trains_with_the_values_its_folds_chose"],
    ),
    (
        "the refit's card silent on the tuned values",
        "benchmark/report/card.py",
        "best epochs){tuned}, ",
        "best epochs), ",
        ["tests/test_tuning.py::test_the_refit_of_a_tuned_architecture_trains_with_the_values_its_folds_chose"],
    ),
    (
        "the report not rewritten once the refit has scored the sites",
        "benchmark/use.py",
        "        write_report(read(folder))  # once, with the refit on every site",
        "        pass",
        ["tests/test_use.py::test_the_refit_predicts_exports_and_stands_beside_the_fold_ensemble_in_the_report"],
    ),
    (
        "an architecture without batch norm run over 512 images each epoch to re-estimate none",
        "benchmark/training/fit.py",
        "    if not any(isinstance(layer, layers.BatchNormalization) and layer.trainable"
        " for layer in _all_layers(graph)):",
        "    if False:",
        ["tests/test_training.py::test_an_architecture_without_trainable_batch_norm_is_not_run_to_re_estimate_it"],
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
